"""ONNX: direct emission vs torch.onnx.export, and onnxruntime vs torch eager inference.

    python benchmarks/bench_onnx.py [--skip-dynamo]

1. ResNet-50 export time: `build_onnx` from the IR and the weights (serialised to bytes) vs
   `torch.onnx.export(dynamo=True)` of the same module, in this process; both models run
   through onnxruntime on one input and must agree with torch.
2. Inference latency, onnxruntime (CPU provider) vs torch eager (eval, no_grad), at batch 1
   and 64, for LeNet-5 and ResNet-18. Medians of alternating runs.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import nnspec
from nnspec.compiler.onnx_build import build_onnx
from nnspec.compiler.torch_build import build_module

EXAMPLES = Path(__file__).parent.parent / "examples"


def module_of(name: str):
    graph = nnspec.load(EXAMPLES / name).graph
    torch.manual_seed(0)
    module = build_module(graph).eval()
    return graph, module


def session(model_bytes: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def export_benchmark(skip_dynamo: bool) -> None:
    graph, module = module_of("resnet50.nn")
    weights = {k: v.numpy() for k, v in module.state_dict().items()}
    direct = []
    for _ in range(3):
        began = time.perf_counter()
        data = build_onnx(graph, weights).SerializeToString()
        direct.append(time.perf_counter() - began)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = module(x).numpy()
    ours = session(data).run(None, {"x": x.numpy()})[0]
    print(f"resnet50 direct export: best {min(direct):.2f} s of {[round(t, 2) for t in direct]}, "
          f"{len(data) / 2**20:.0f} MiB; max |ort - torch| = {np.abs(ours - expected).max():.2e}")
    if skip_dynamo:
        return
    buffer = io.BytesIO()
    began = time.perf_counter()
    torch.onnx.export(module, (x,), buffer, dynamo=True, external_data=False, verbose=False)
    dynamo = time.perf_counter() - began
    exported = session(buffer.getvalue())
    theirs = exported.run(None, {exported.get_inputs()[0].name: x.numpy()})[0]
    print(f"resnet50 torch.onnx.export(dynamo=True): {dynamo:.2f} s; "
          f"max |ort - torch| = {np.abs(theirs - expected).max():.2e}; "
          f"direct is {dynamo / min(direct):.1f}x faster (goal >= 10x)")


def latency(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def inference_benchmark() -> None:
    print(f"{'model':10} {'batch':>5} {'torch ms':>10} {'ort ms':>10} {'torch/ort':>10}")
    for name, shape in (("lenet5.nn", (1, 32, 32)), ("resnet18.nn", (3, 224, 224))):
        graph, module = module_of(name)
        sess = session(build_onnx(graph, {k: v.numpy() for k, v in module.state_dict().items()})
                       .SerializeToString())
        for batch in (1, 64):
            x = torch.randn(batch, *shape)
            repeats = 50 if name == "lenet5.nn" else (20 if batch == 1 else 3)

            def eager(module=module, x=x):
                with torch.no_grad():
                    module(x)

            def runtime(sess=sess, x=x):
                sess.run(None, {"x": x.numpy()})

            t_torch, t_ort = latency(eager, repeats), latency(runtime, repeats)
            print(f"{name[:-3]:10} {batch:5d} {t_torch * 1e3:10.2f} {t_ort * 1e3:10.2f} "
                  f"{t_torch / t_ort:10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-dynamo", action="store_true")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"onnxruntime {ort.__version__}, {time.strftime('%Y-%m-%d %H:%M %Z')}")
    export_benchmark(args.skip_dynamo)
    inference_benchmark()


if __name__ == "__main__":
    main()
