"""Mutations of spec text, and a small grammar-based generator of specs.

Each mutator takes the text and a seeded ``random.Random`` and returns new text; inputs are
reproducible from (seed, index) alone. The mutations aim at the classes of failure seen in
practice: numbers at and past the bounds, names long enough to make did-you-mean slow,
brackets and expressions nested past the parser's limits, odd unicode and control bytes.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN = re.compile(r"[A-Za-z_][A-Za-z_0-9]*|\d[\d_.eE]*[KMG]?|\*\*|->|//|[<>=!]=|\S")

EXTREME_NUMBERS = [
    "0", "-1", "1e308", "1e999", "1e-400", "2**63", "2**63 - 1", "-(2**63)", "2**53", "2**53 + 1",
    "10**18", "10**19", "9" * 19, "9" * 20, "9" * 4301, "1" + "0" * 4353, "(10**56)**256",
    "2**2**2**2**2", "10**9", "2**31", "2**31 + 1", "4G", "9999999999G", "1e18G", "0.5", "-0.0",
    "1_000_000_000_000", "7 // 0", "1 / 0", "(-8) ** 0.5", "2.0 ** 2000", "10 ** -400",
    "int(1e300)", "round(1e300)", "max(2**62, 2**62) * 4", "1e308 * 10", "3 % 0", ".5e-3",
]
WEIRD_TEXT = ["\u00e9", "\u2192", "\u00d7", "\U0001f600", "\u200b", "\ufeff", "\x00", "\x07", "\t",
              "\r", "\r\n", "\u2028", "\\", '"', "#", "{", "}", "(", ")", "[", "]", ",", "->", "=",
              "ⅰ", "ａ", "\udcff"]
KEYWORDS = ["model", "block", "input", "output", "train", "search", "import", "assert", "if", "else",
            "rounding", "as", "and", "or", "not", "true", "false", "params", "macs", "data", "loss",
            "optimizer", "epochs", "batch", "seed", "split", "cv", "knn", "schedule", "metrics"]
OPS = ["conv", "linear", "relu", "maxpool", "avgpool", "adaptive_avgpool", "flatten", "reshape",
       "batchnorm", "dropout", "split", "chunk", "concat", "upsample", "embedding", "lstm", "gru",
       "attention", "layernorm", "softmax", "permute", "slice", "pad", "crop", "upconv", "knn",
       "global_avgpool", "positional", "repeat", "transformer"]


def corpus(root: Path = ROOT) -> list[str]:
    """The seeds: every example and every golden input of the diagnostics tests."""
    files = sorted((root / "examples").rglob("*.nn")) + sorted((root / "tests" / "diagnostics").glob("*.nn"))
    texts = []
    for path in files:
        try:
            texts.append(path.read_bytes().decode("utf-8"))
        except (OSError, UnicodeDecodeError):
            continue  # the golden cases of bad encodings: covered by byte flips of good files
    return texts


def _byte_flip(text: str, rng: random.Random) -> str:
    data = bytearray(text.encode("utf-8", "surrogatepass"))
    for _ in range(rng.randint(1, 4)):
        if data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return data.decode("utf-8", "replace")


def _tokens(text: str) -> list[re.Match[str]]:
    return list(TOKEN.finditer(text))


def _token_edit(text: str, rng: random.Random) -> str:
    tokens = _tokens(text)
    if not tokens:
        return text
    tok = rng.choice(tokens)
    choice = rng.random()
    if choice < 0.3:
        new = ""
    elif choice < 0.55:
        new = rng.choice(tokens).group()
    elif choice < 0.75:
        new = rng.choice(KEYWORDS + OPS)
    else:
        new = tok.group() + " " + rng.choice(tokens).group()
    return text[:tok.start()] + new + text[tok.end():]


def _splice_lines(text: str, rng: random.Random, other: str) -> str:
    lines, donor = text.split("\n"), other.split("\n")
    at = rng.randrange(len(lines) + 1)
    start = rng.randrange(len(donor))
    chunk = donor[start:start + rng.randint(1, 4)]
    if rng.random() < 0.3 and len(lines) > 1:
        del lines[rng.randrange(len(lines))]
    return "\n".join(lines[:at] + chunk + lines[at:])


def _extreme_number(text: str, rng: random.Random) -> str:
    numbers = [m for m in _tokens(text) if m.group()[0].isdigit()]
    new = rng.choice(EXTREME_NUMBERS)
    if not numbers:
        return text + "\n" + new
    tok = rng.choice(numbers)
    if rng.random() < 0.5 and new[0] not in "(-":
        new = f"({new})"
    return text[:tok.start()] + new + text[tok.end():]


def _deep_nesting(text: str, rng: random.Random) -> str:
    depth = rng.choice([50, 99, 100, 101, 255, 256, 257, 1000, 5000])
    tokens = [m for m in _tokens(text) if m.group()[0].isdigit() or m.group().isidentifier()]
    if not tokens:
        return text
    tok = rng.choice(tokens)
    kind = rng.randrange(4)
    inner = tok.group()
    if kind == 0:
        new = "(" * depth + inner + ")" * depth
    elif kind == 1:
        new = " + ".join([inner] * depth)
    elif kind == 2:
        new = "-" * depth + inner
    else:
        new = "[" * depth + inner + "]" * depth
    return text[:tok.start()] + new + text[tok.end():]


def _unicode(text: str, rng: random.Random) -> str:
    at = rng.randrange(len(text) + 1)
    return text[:at] + rng.choice(WEIRD_TEXT) * rng.choice([1, 1, 2, 50]) + text[at:]


def _long_name(text: str, rng: random.Random) -> str:
    names = [m for m in _tokens(text) if m.group().isidentifier()]
    if not names:
        return text
    tok = rng.choice(names)
    length = rng.choice([65, 200, 5000, 20000, 40000])
    new = (tok.group() * (length // len(tok.group()) + 1))[:length]
    if rng.random() < 0.5:  # two near-identical long names: the did-you-mean worst case
        other = rng.choice(names)
        text = text[:other.start()] + new[:-1] + "q" + text[other.end():] if other.start() > tok.end() else text
    return text[:tok.start()] + new + text[tok.end():]


def _repeat_line(text: str, rng: random.Random) -> str:
    lines = text.split("\n")
    at = rng.randrange(len(lines))
    return "\n".join(lines[:at] + [lines[at]] * rng.choice([2, 10, 200]) + lines[at:])


MUTATORS: list[tuple[str, Callable[..., str]]] = [
    ("byte_flip", _byte_flip), ("token_edit", _token_edit), ("splice", _splice_lines),
    ("extreme_number", _extreme_number), ("deep_nesting", _deep_nesting), ("unicode", _unicode),
    ("long_name", _long_name), ("repeat_line", _repeat_line),
]


def mutate(texts: list[str], rng: random.Random) -> tuple[str, str]:
    """One to three mutations of one seed; returns (how it was made, text)."""
    text = rng.choice(texts)
    made = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        name, fn = rng.choice(MUTATORS)
        text = fn(text, rng, rng.choice(texts)) if name == "splice" else fn(text, rng)
        made.append(name)
    return "+".join(made), text


# -- the generator --------------------------------------------------------------------------
def _number(rng: random.Random) -> str:
    return rng.choice(EXTREME_NUMBERS) if rng.random() < 0.15 else str(rng.choice([1, 2, 3, 4, 8, 16, 32, 64]))


def _expr(rng: random.Random, depth: int = 0) -> str:
    r = rng.random()
    if depth > 3 or r < 0.4:
        return rng.choice([_number(rng), "c", "k", "x.channels", "x.shape[1]", "0.5"])
    if r < 0.8:
        op = rng.choice(["+", "-", "*", "/", "//", "%", "**"])
        return f"{_expr(rng, depth + 1)} {op} {_expr(rng, depth + 1)}"
    if r < 0.9:
        return f"{rng.choice(['min', 'max', 'int', 'round', 'abs'])}({_expr(rng, depth + 1)})"
    return f"({_expr(rng, depth + 1)})"


def _layer(rng: random.Random) -> str:
    op = rng.choice(OPS)
    n = rng.choice([0, 0, 1, 1, 2, 3])
    args = [_expr(rng) for _ in range(n)]
    if rng.random() < 0.3:
        args.append(f"{rng.choice(['stride', 'padding', 'dim', 'axis', 'heads', 'scale', 'bias'])}={_expr(rng)}")
    return f"{op}({', '.join(args)})" if args or rng.random() < 0.5 else op


def generate(rng: random.Random) -> str:
    """A spec from a small grammar: params, an input, chains of layers, asserts and a recipe."""
    shape = ", ".join(_number(rng) for _ in range(rng.choice([1, 2, 3, 3, 4])))
    lines = [f"model G(c: int = {_number(rng)}, k = {_expr(rng)}) {{", f"    input x: [{shape}]"]
    names = ["x"]
    for i in range(rng.randint(1, 4)):
        chain = " -> ".join(_layer(rng) for _ in range(rng.randint(1, 5)))
        name = f"h{i}"
        lines.append(f"    {name} = {rng.choice(names)} -> {chain}")
        names.append(name)
    if rng.random() < 0.3:
        lines.append(f"    assert {rng.choice(['params', 'macs', 'c', 'k'])} {rng.choice(['<', '>', '=='])} {_expr(rng)}")
    lines.append(f"    {names[-1]} -> output")
    lines.append("}")
    if rng.random() < 0.5:
        settings = [
            f"data {rng.choice(['digits', 'digits(as_image=true)', 'iris', 'xor'])}",
            f"loss {rng.choice(['cross_entropy', 'mse'])}",
            f"optimizer {rng.choice(['adam', 'sgd'])}(lr={_expr(rng)})",
            f"epochs {_expr(rng)}", f"batch {_expr(rng)}", f"seed {_expr(rng)}",
            f"split {_expr(rng)} / {_expr(rng)} / {_expr(rng)}",
        ]
        rng.shuffle(settings)
        lines += ["train G {"] + [f"    {s}" for s in settings[:rng.randint(1, len(settings))]] + ["}"]
    return "\n".join(lines) + "\n"


MAX_INPUT = 200_000  # characters: checking is linear, about 3 µs a token, so a 1 s budget holds to here


def make_input(texts: list[str], seed: int, index: int) -> tuple[str, str]:
    """Input ``index`` of the run with ``seed``: a mutation (80%) or a generated spec, cut to
    :data:`MAX_INPUT` characters at a line end (mutations that repeat long lines grow fast)."""
    rng = random.Random(seed * 1_000_003 + index)
    if rng.random() < 0.2:
        return "generate", generate(rng)
    how, text = mutate(texts, rng)
    if len(text) > MAX_INPUT:
        cut = text.rfind("\n", 0, MAX_INPUT)
        text = text[:cut if cut > 0 else MAX_INPUT]
    return how, text
