"""`nnspec.generating.generate(...)`: characters sampled from a trained text run.

The sampler, the window rule and the ONNX path are runtime/inference/generate.py's; this
module adds the torch path: the run's model rebuilt from its ``ir.json`` with the weights its
test report describes (spec/recipe/rundir.py), in eval mode, on the CPU, float32.
torch is imported only for that path.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from nnspec.runtime.inference.generate import (
    Generated,
    GenerateError,
    Logits,
    TextRun,
    onnx_logits,
    open_text_run,
)
from nnspec.runtime.inference.generate import generate as sample


def torch_logits(run: TextRun) -> Logits:
    """The run's model as the window's logits, through torch."""
    import torch

    from nnspec.compiler.torch_build import build_module
    from nnspec.runtime.loop.checkpoint import check_state_dict, find_weights, load_weights
    from nnspec.spec.ir import Graph

    try:
        graph = Graph.model_validate_json((run.directory / "ir.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GenerateError(f"`{run.directory}` has no readable ir.json ({type(exc).__name__})",
                            "give the directory `nnspec train` wrote") from None
    weights, _ = find_weights(run.directory)
    tensors, _ = load_weights(weights)
    module = build_module(graph)
    check_state_dict(module.state_dict(), tensors, weights)
    module.load_state_dict(tensors)
    module.eval()

    def run_model(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(x)).float().numpy()

    return run_model


def generate(run_dir: str | os.PathLike[str], prompt: str, tokens: int, *,
             temperature: float = 1.0, top_k: int | None = None, seed: int = 0,
             onnx: str | os.PathLike[str] | None = None) -> Generated:
    """``tokens`` characters after ``prompt`` from the text run ``run_dir`` (its torch model,
    or the exported ``onnx`` file through onnxruntime: the same characters for the same
    seed). Raises GenerateError (the run, the prompt, an option) or CheckpointError."""
    run = open_text_run(run_dir)
    run.encode(prompt)  # a character outside the vocabulary: before any model is built
    logits: Any = onnx_logits(onnx, run) if onnx is not None else torch_logits(run)
    return sample(run, logits, prompt, tokens, temperature=temperature, top_k=top_k, seed=seed)


__all__ = ["GenerateError", "Generated", "generate", "torch_logits"]
