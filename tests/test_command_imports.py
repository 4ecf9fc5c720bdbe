"""Each command imports only what it uses (issue 11): the import sets, not times.

`check` and `explain` run on every save in an editor and must not pay for torch, onnx,
onnxruntime, numpy or matplotlib; `export` writes ONNX without onnxruntime or torch;
`predict` runs onnxruntime without torch. Each command runs in a fresh interpreter, as a
user runs it, and reports the top-level packages it imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LENET = str(ROOT / "examples" / "lenet5.nn")
HEAVY = {"torch", "onnx", "onnxruntime", "matplotlib", "numpy", "sklearn", "safetensors", "PIL"}

PROBE = """
import json, sys
heavy = set(json.loads(sys.argv[1]))
try:
    from nnspec.cli import main
    sys.argv = ["nnspec", *sys.argv[2:]]
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print(json.dumps({"code": code, "imported": sorted({m.split(".")[0] for m in sys.modules} & heavy)}),
      file=sys.__stderr__)
"""


def imported_by(*args: str, cwd: Path) -> set[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(sorted(HEAVY)), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300)
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report["code"] in (0, None), done.stderr
    return set(report["imported"])


@pytest.mark.parametrize("args", [
    ("check", LENET),
    ("check", LENET, "--json"),
    ("explain", "E2101"),
    ("compile", LENET, "--emit", "ir"),
])
def test_the_spec_commands_import_no_heavy_package(args, tmp_path):
    assert imported_by(*args, cwd=tmp_path) == set()


def test_a_cross_validated_recipe_adds_numpy_only(tmp_path):
    """`cv kfold(n)` is checked against the training split's exact size, which the seeded
    split (spec/recipe/splits.py) gives: numpy, nothing heavier."""
    assert imported_by("check", str(ROOT / "examples" / "logreg.nn"), cwd=tmp_path) == {"numpy"}


@pytest.fixture(scope="module")
def trained_weights(tmp_path_factory):
    """LeNet-5's initial weights as a safetensors file, and the model as ONNX."""
    pytest.importorskip("torch")
    from safetensors.torch import save_file

    from nnspec.api import load
    from nnspec.compiler.torch_build import initial_weights

    folder = tmp_path_factory.mktemp("weights")
    model = load(LENET)
    weights = folder / "lenet5.safetensors"
    save_file({k: v.contiguous() for k, v in initial_weights(model.graph).items()}, str(weights))
    onnx_file = folder / "lenet5.onnx"
    model_proto = model.to_onnx(weights)
    onnx_file.write_bytes(model_proto.SerializeToString())
    return weights, onnx_file


def test_export_needs_neither_onnxruntime_nor_torch(trained_weights, tmp_path):
    weights, _ = trained_weights
    imported = imported_by("export", LENET, "-w", str(weights), "-o", str(tmp_path / "m.onnx"),
                           cwd=tmp_path)
    assert (tmp_path / "m.onnx").is_file()
    assert "onnx" in imported and not imported & {"onnxruntime", "torch", "matplotlib"}


def test_predict_needs_no_torch(trained_weights, tmp_path):
    import numpy as np

    _, onnx_file = trained_weights
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 32, 32), np.float32))
    imported = imported_by("predict", str(onnx_file), "--input", str(tmp_path / "x.npy"),
                           cwd=tmp_path)
    assert "onnxruntime" in imported and not imported & {"torch", "matplotlib"}
