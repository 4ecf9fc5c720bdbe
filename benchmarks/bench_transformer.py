"""Transformers: a training step of the ViT and GPT examples, and vit_b_16's ONNX export.

    python benchmarks/bench_transformer.py [--steps 30] [--skip-dynamo]

1. Training step (forward, cross-entropy, backward, AdamW step) of examples/vit_tiny_digits.nn
   (batch 32 of [1, 8, 8]) as nnspec compiles it (GraphModule) vs the same ViT written by hand
   in torch with the same weights and the same kernels (conv, LayerNorm,
   F.scaled_dot_product_attention, Linear, GELU). Steps alternate between the two; the median
   of each is reported, and the ratio hand / generated (goal >= 0.98: the generated module
   is at most 2% slower). The same for examples/gpt_char.nn (batch 32 of 64 character ids,
   causal attention, the head tied to the token embedding) against a hand-written GPT.
2. vit_b_16's export to an .onnx file from the same weights in this process: nnspec's
   builder (with the ONNX checker and the write) vs `torch.onnx.export(dynamo=True)` of the
   same module (needs onnxscript: `pip install -e ".[bench]"`); and, for scale, the whole
   `nnspec compile --emit onnx` in a fresh process.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import nnspec
from nnspec.compiler.torch_build import build_module

ROOT = Path(__file__).resolve().parent.parent


class HandViT(nn.Module):
    """The ViT of vit_tiny_digits.nn, by hand: the same parameters in the same order."""

    def __init__(self, layers=4, heads=4, hidden=64, mlp=128, patch=2, size=8, classes=10):
        super().__init__()
        self.heads = heads
        self.conv = nn.Conv2d(1, hidden, patch, stride=patch)
        self.cls, self.pos = nn.Module(), nn.Module()  # submodules: state_dict order
        self.cls.token = nn.Parameter(torch.zeros(1, 1, hidden))
        self.pos.weight = nn.Parameter(torch.zeros((size // patch) ** 2 + 1, hidden))
        self.blocks = nn.ModuleList()
        for _ in range(layers):
            b = nn.Module()
            b.ln_1 = nn.LayerNorm(hidden, eps=1e-6)
            b.attn = nn.Module()
            b.attn.in_proj_weight = nn.Parameter(torch.empty(3 * hidden, hidden))
            b.attn.in_proj_bias = nn.Parameter(torch.zeros(3 * hidden))
            b.attn.out_proj = nn.Linear(hidden, hidden)
            b.ln_2 = nn.LayerNorm(hidden, eps=1e-6)
            b.fc1, b.fc2 = nn.Linear(hidden, mlp), nn.Linear(mlp, hidden)
            self.blocks.append(b)
        self.ln = nn.LayerNorm(hidden, eps=1e-6)
        self.head = nn.Linear(hidden, classes)
        self.drop = nn.Dropout(0.1)

    def forward(self, x):
        x = self.conv(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.drop(x + self.pos.weight)
        h = self.heads
        for b in self.blocks:
            q, k, v = F.linear(b.ln_1(x), b.attn.in_proj_weight, b.attn.in_proj_bias).chunk(3, dim=-1)
            q, k, v = (t.unflatten(-1, (h, -1)).transpose(1, 2) for t in (q, k, v))
            a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
            x = x + self.drop(b.attn.out_proj(a))
            x = x + self.drop(b.fc2(self.drop(F.gelu(b.fc1(b.ln_2(x))))))
        return self.head(self.ln(x)[:, 0])


class HandGPT(nn.Module):
    """The GPT of gpt_char.nn, by hand: the same parameters in the same order, the head
    tied to the token embedding."""

    def __init__(self, vocab=142, context=64, dim=64, layers=4, heads=4, mlp=256, dropout=0.1):
        super().__init__()
        self.heads = heads
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Module()
        self.wpe.weight = nn.Parameter(torch.zeros(context, dim))
        self.blocks = nn.ModuleList()
        for _ in range(layers):
            b = nn.Module()
            b.ln_1 = nn.LayerNorm(dim)
            b.attn = nn.Module()
            b.attn.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
            b.attn.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
            b.attn.out_proj = nn.Linear(dim, dim)
            b.ln_2 = nn.LayerNorm(dim)
            b.c_fc, b.c_proj = nn.Linear(dim, mlp), nn.Linear(mlp, dim)
            self.blocks.append(b)
        self.ln_f = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, tokens):
        x = self.drop(self.wte(tokens) + self.wpe.weight[: tokens.shape[1]])
        h = self.heads
        for b in self.blocks:
            q, k, v = F.linear(b.ln_1(x), b.attn.in_proj_weight, b.attn.in_proj_bias).chunk(3, dim=-1)
            q, k, v = (t.unflatten(-1, (h, -1)).transpose(1, 2) for t in (q, k, v))
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).flatten(2)
            x = x + self.drop(b.attn.out_proj(a))
            x = x + self.drop(b.c_proj(F.gelu(b.c_fc(b.ln_2(x)), approximate="tanh")))
        return F.linear(self.ln_f(x), self.wte.weight)


def _compare_steps(label: str, generated: nn.Module, hand: nn.Module, x, y, steps: int) -> None:
    """Median training step (forward, cross-entropy, backward, AdamW) of each, alternating."""
    hand.load_state_dict(dict(zip(hand.state_dict(), generated.state_dict().values(), strict=True)))
    with torch.no_grad():  # same weights, same function (dropout off)
        generated.eval(), hand.eval()
        err = float((generated(x) - hand(x)).abs().max())
        generated.train(), hand.train()
    optims = {m: torch.optim.AdamW(m.parameters(), lr=1e-3) for m in (generated, hand)}

    def step(m):
        began = time.perf_counter()
        optims[m].zero_grad(set_to_none=True)
        out = m(x)
        F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1)).backward()
        optims[m].step()
        return time.perf_counter() - began

    for _ in range(5):
        step(generated), step(hand)
    times: dict[nn.Module, list[float]] = {generated: [], hand: []}
    for _ in range(steps):
        for m in (generated, hand):
            times[m].append(step(m))
    g, h = statistics.median(times[generated]), statistics.median(times[hand])
    print(f"{label} training step (batch {x.shape[0]}, {torch.get_num_threads()} threads): "
          f"generated {g * 1e3:.2f} ms, hand-written {h * 1e3:.2f} ms, ratio hand/generated "
          f"{h / g:.3f} (goal >= 0.98); outputs agree to {err:.1e}")


def train_step_benchmark(steps: int) -> None:
    torch.manual_seed(0)
    vit = build_module(nnspec.load(ROOT / "examples" / "vit_tiny_digits.nn").graph).train()
    _compare_steps("vit_tiny_digits", vit, HandViT().train(),
                   torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,)), steps)
    gpt = build_module(nnspec.load(ROOT / "examples" / "gpt_char.nn").graph).train()
    tokens = torch.randint(0, 142, (32, 65))
    _compare_steps("gpt_char", gpt, HandGPT().train(), tokens[:, :-1], tokens[:, 1:], steps)


def export_benchmark(skip_dynamo: bool) -> None:
    """vit_b_16 to an .onnx file, from the same weights in this process: nnspec (the IR's
    lowerings, the checker on the bytes, the write) vs torch.onnx.export(dynamo=True) of the
    compiled module (tracing, decomposition, optimisation, the write). Then, for scale, the
    whole `nnspec compile --emit onnx` command in a fresh process (imports included)."""
    from nnspec.api import onnx_parts

    model = nnspec.load(ROOT / "examples" / "vit_b_16.nn")
    module = build_module(model.graph).eval()
    state = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "vit.onnx"
        direct = []
        for _ in range(3):
            began = time.perf_counter()
            onnx_parts(model, state).write(out)  # checks the graph, streams the weights
            direct.append(time.perf_counter() - began)
        size = out.stat().st_size / 2**20
        print(f"vit_b_16 nnspec export in process (build, check, write {size:.0f} MiB): "
              f"{min(direct):.2f} s (best of {len(direct)})")
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "nnspec", "compile",
                        str(ROOT / "examples" / "vit_b_16.nn"), "--emit", "onnx", "-o", str(out)],
                       check=True, capture_output=True)
        print(f"vit_b_16 `nnspec compile --emit onnx` in a fresh process: "
              f"{time.perf_counter() - began:.2f} s (imports, torch's initialisation)")
        if skip_dynamo:
            return
        x = torch.randn(1, 3, 224, 224)
        dynamo_out = Path(tmp) / "vit_dynamo.onnx"
        began = time.perf_counter()
        torch.onnx.export(module, (x,), str(dynamo_out), dynamo=True, external_data=False,
                          verbose=False)
        dynamo = time.perf_counter() - began
        print(f"vit_b_16 torch.onnx.export(dynamo=True) to a file: {dynamo:.2f} s; nnspec is "
              f"{dynamo / min(direct):.1f}x faster (goal >= 10x)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--skip-dynamo", action="store_true")
    parser.add_argument("--skip-export", action="store_true")
    parser.add_argument("--skip-train", action="store_true")
    args = parser.parse_args()
    if not args.skip_train:
        train_step_benchmark(args.steps)
    if not args.skip_export:
        export_benchmark(args.skip_dynamo)


if __name__ == "__main__":
    main()
