"""Sampling characters from a trained causal text model, one at a time (`nnspec generate`).

A text run (`data text(...)`) holds ``vocab.json`` (id k is the k-th character) and its
recipe's ``context``. From the prompt's ids, each step

1. takes the window: the last ``context`` ids, left-padded with id 0 (the vocabulary's
   first character, "\\n" in most texts) when there are fewer, so the newest id is always at
   the last position;
2. runs the model on it, [1, context] -> [1, context, V], and reads the logits z of the
   last position (the next character);
3. picks the next id in numpy, float64: temperature T = 0 is greedy (the first id of largest
   z); else z / T, with ``top_k`` only the k largest kept (the lower id first among equal
   logits), p = softmax, and the id is the first whose cumulative probability exceeds one
   uniform draw u of numpy's PCG64 seeded with ``seed`` (one draw per step).

The model is a function of the window (torch in nnspec/generating.py, onnxruntime here:
:func:`onnx_logits`), and both paths share this sampler and its one RNG, so the same seed
gives the same characters whenever their logits agree to within rounding. No torch here.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

Logits = Callable[[np.ndarray], np.ndarray]  # int64 [1, context] -> float [1, context, V]


class GenerateError(Exception):
    """A run, prompt, option or model that cannot generate; ``help`` says what to do."""

    def __init__(self, message: str, help: str | None = None):
        super().__init__(message)
        self.message, self.help = message, help

    def __str__(self) -> str:
        return self.message + (f" (help: {self.help})" if self.help else "")


@dataclass(frozen=True)
class TextRun:
    """What generation needs of a text run directory: the vocabulary and the window size."""

    directory: Path
    vocab: tuple[str, ...]
    context: int
    model: str

    def encode(self, prompt: str) -> list[int]:
        """The ids of ``prompt``; a character outside the vocabulary is a GenerateError."""
        lookup = {c: k for k, c in enumerate(self.vocab)}
        for position, char in enumerate(prompt):
            if char not in lookup:
                shown = "".join(c for c in self.vocab if c.isprintable() and c != " ")
                raise GenerateError(f"the prompt's character {char!r} (at position {position}) "
                                    f"is not in the vocabulary of `{self.directory}`",
                                    f"the model knows {len(self.vocab)} characters: {shown!r} "
                                    "and whitespace")
        return [lookup[c] for c in prompt]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.vocab[i] for i in ids)


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def open_text_run(directory: str | os.PathLike[str]) -> TextRun:
    """A run directory trained on `data text(...)`, checked: recipe.json says text and
    vocab.json holds the characters."""
    path = Path(directory)
    if not path.is_dir():
        raise GenerateError(f"`{path}` is not a run directory (no such folder)",
                            "give the directory `nnspec train` wrote for a text recipe")
    recipe = _json(path / "recipe.json")
    if not isinstance(recipe, dict) or not isinstance(recipe.get("data"), dict):
        raise GenerateError(f"`{path}` is not a run directory (no readable recipe.json)",
                            "give the directory `nnspec train` wrote for a text recipe")
    data = recipe["data"]
    if data.get("kind") != "text":
        raise GenerateError(f"`{path}` is not a text run: it was trained on "
                            f"{data.get('kind')!r} data, and generation samples characters",
                            'train a recipe with `data text("file.txt", context=...)`, e.g. '
                            "examples/char_lstm.nn")
    vocab = _json(path / "vocab.json")
    if not isinstance(vocab, list) or not vocab or not all(isinstance(c, str) and len(c) == 1
                                                           for c in vocab):
        raise GenerateError(f"`{path}` has no readable vocab.json (a list of characters)",
                            "train the recipe again: the run writes vocab.json")
    context = (data.get("args") or {}).get("context")
    if not isinstance(context, int) or context < 1:
        raise GenerateError(f"`{path}`'s recipe.json has no text context")
    return TextRun(path, tuple(vocab), context, str(recipe.get("model", "")))


def window(ids: list[int], context: int, pad: int = 0) -> np.ndarray:
    """int64 [1, context]: the last ``context`` ids, left-padded with ``pad``."""
    last = ids[-context:]
    return np.array([[pad] * (context - len(last)) + last], dtype=np.int64)


def check_sampling(tokens: int, temperature: float, top_k: int | None, vocab: int) -> None:
    if tokens < 0:
        raise GenerateError(f"--tokens must be >= 0, got {tokens}")
    if not math.isfinite(temperature) or temperature < 0:
        raise GenerateError(f"--temperature must be a number >= 0, got {temperature}",
                            "0 is greedy; 1 samples the model's own distribution")
    if top_k is not None and not 1 <= top_k <= vocab:
        raise GenerateError(f"--top-k must lie in [1, {vocab}] (the vocabulary), got {top_k}")


def pick(logits: np.ndarray, temperature: float, top_k: int | None,
         rng: np.random.Generator) -> int:
    """The next id from the last position's logits z [V] (see the module docstring)."""
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    if temperature == 0:
        return int(np.argmax(z))
    z = z / temperature
    if top_k is not None and top_k < len(z):
        keep = np.argsort(-z, kind="stable")[:top_k]
        masked = np.full_like(z, -np.inf)
        masked[keep] = z[keep]
        z = masked
    p = np.exp(z - z.max())
    cumulative = np.cumsum(p / p.sum())
    u = rng.random()
    return int(min(np.searchsorted(cumulative, u, side="right"), len(z) - 1))


@dataclass(frozen=True)
class Generated:
    prompt: str
    ids: tuple[int, ...]  # the generated ids, the prompt's excluded
    text: str  # the generated characters

    def __str__(self) -> str:
        return self.prompt + self.text


def generate(run: TextRun, logits: Logits, prompt: str, tokens: int, *,
             temperature: float = 1.0, top_k: int | None = None, seed: int = 0) -> Generated:
    """``tokens`` characters after ``prompt``, sampled from ``logits`` (the model)."""
    check_sampling(tokens, temperature, top_k, len(run.vocab))
    ids = run.encode(prompt)
    rng = np.random.default_rng(seed)
    new: list[int] = []
    for _ in range(tokens):
        out = np.asarray(logits(window(ids + new, run.context)))
        if out.shape[-2:] != (run.context, len(run.vocab)):
            raise GenerateError(f"the model outputs {list(out.shape[1:])} for a window, not "
                                f"[{run.context}, {len(run.vocab)}] (context, vocabulary)",
                                "use the model this run trained")
        new.append(pick(out[0, -1], temperature, top_k, rng))
    return Generated(prompt, tuple(new), run.decode(new))


def onnx_logits(path: str | os.PathLike[str], run: TextRun) -> Logits:
    """The exported model as the window's logits, through onnxruntime; checked against the
    run (an int64 input [N, context], an output [N, context, vocab])."""
    from nnspec.runtime.inference.session import PredictError, Session

    try:
        session = Session(path)
    except PredictError as exc:
        raise GenerateError(exc.message, exc.help) from None
    info, out = session.inputs[0], session.outputs[0]
    want = (run.context,)
    if info.dtype != "int64" or info.sample_shape != want:
        raise GenerateError(f"`{path}` takes {info.dtype} {list(info.sample_shape)}, but the run "
                            f"feeds int64 windows [{run.context}]",
                            f"export the run's model: nnspec export SPEC --weights {run.directory} "
                            "-o model.onnx")
    if out.sample_shape[-1:] not in ((len(run.vocab),), (-1,)):
        raise GenerateError(f"`{path}` outputs {list(out.sample_shape)}, but the run's vocabulary "
                            f"has {len(run.vocab)} characters", "export the run's own model")
    def run_model(x: np.ndarray) -> np.ndarray:
        return session.run(x, normalize=False)

    return run_model


__all__ = ["GenerateError", "Generated", "TextRun", "generate", "onnx_logits", "open_text_run",
           "pick", "window"]
