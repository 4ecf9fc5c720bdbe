"""Inference through onnxruntime: a checked session, batched runs, class predictions.

    session = Session("model.onnx")
    probabilities = session.predict(x, top_k=3).probabilities

:class:`Session` reads what ``nnspec export`` stored in the model's metadata: the class
names, the task, what the output holds (``output_kind``: logits, probabilities,
log_probabilities or values) and the input normaliser of the training run, which it applies
to the raw inputs it is given. Everything that can go wrong with a model file or an input
(missing, not ONNX, truncated, the wrong shape or dtype) is a :class:`PredictError` with a
message and a fix. Only onnxruntime is imported, never onnx or torch.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnspec.runtime.data.sources import IMAGE_SUFFIXES, Normalizer

_ORT_TYPES = {"tensor(float)": "float32", "tensor(int64)": "int64"}
KINDS = ("logits", "probabilities", "log_probabilities", "values")


class PredictError(Exception):
    """A model file or an input that cannot be used; ``help`` says what to do."""

    def __init__(self, message: str, help: str | None = None):
        super().__init__(message)
        self.message = message
        self.help = help

    def __str__(self) -> str:
        return self.message + (f" (help: {self.help})" if self.help else "")


@dataclass(frozen=True)
class TensorInfo:
    """A model input or output: its name, dtype and shape (the batch axis a name)."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample (the batch axis dropped); unknown sizes are -1."""
        return tuple(d if isinstance(d, int) else -1 for d in self.shape[1:])


@dataclass(frozen=True)
class Prediction:
    """Class probabilities [N, C], the top-k class indices [N, k] and the class names."""

    probabilities: np.ndarray
    top_k: np.ndarray
    classes: tuple[str, ...]

    @property
    def labels(self) -> np.ndarray:
        """The most probable class of each row."""
        return self.top_k[:, 0]

    def top_names(self) -> list[list[str]]:
        return [[self.classes[i] for i in row] for row in self.top_k]


def _shape(shape: Sequence[Any]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


class Session:
    """An onnxruntime session on the CPU, with the model's metadata and checked inputs."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._session = _open(self.path)
        self.inputs = [_info(i) for i in self._session.get_inputs()]
        self.outputs = [_info(o) for o in self._session.get_outputs()]
        self.metadata: dict[str, str] = dict(self._session.get_modelmeta().custom_metadata_map)
        classes = _json(self.metadata.get("classes"))
        self.classes = tuple(str(c) for c in classes) if isinstance(classes, list) else None
        self.task = self.metadata.get("task")
        kind = self.metadata.get("output_kind")
        self.output_kind = kind if kind in KINDS else "values"
        state = _json(self.metadata.get("normalizer"))
        try:
            self.normalizer = Normalizer.from_state(state) if isinstance(state, dict) else None
        except ValueError:
            self.normalizer = None

    @property
    def is_classifier(self) -> bool:
        """task=classification in the metadata, else an output [C] with C >= 2."""
        if self.task in ("classification", "regression"):
            return self.task == "classification"
        out = self.outputs[0].sample_shape
        return len(out) == 1 and out[0] >= 2

    def check(self, x: Any, info: TensorInfo | None = None) -> np.ndarray:
        """``x`` as the model takes it: [N, *sample shape] of the input's dtype, or an error."""
        info = info or self.inputs[0]
        x = np.asarray(x)
        want = info.sample_shape
        if x.ndim != len(want) + 1 or any(w not in (-1, g) for w, g in zip(want, x.shape[1:])):
            raise PredictError(
                f"input `{info.name}` of the model takes [N, {', '.join(map(str, want))}] "
                f"(N samples of {_shape(want)}); the data is {_shape(x.shape)}",
                _shape_help(x.shape, want))
        kind = x.dtype.kind
        if info.dtype == "float32" and kind != "f":
            raise PredictError(
                f"input `{info.name}` takes float32 values; the data is {x.dtype}",
                "convert the data to floats, scaled as in training (images: pixels / 255)")
        if info.dtype == "int64" and kind not in "iu":
            raise PredictError(f"input `{info.name}` takes int64 ids; the data is {x.dtype}",
                               "convert the data to integers (token ids)")
        return np.ascontiguousarray(x, dtype=np.float32 if info.dtype == "float32" else np.int64)

    def run(self, x: Any, batch: int = 256, normalize: bool = True) -> np.ndarray:
        """The first output for raw inputs ``x`` (one array, or {input name: array}), run in
        batches of ``batch``; the training run's normaliser is applied when ``normalize``."""
        feeds = x if isinstance(x, Mapping) else {self.inputs[0].name: x}
        names = {i.name for i in self.inputs}
        if set(feeds) != names:
            raise PredictError(f"the model takes inputs {', '.join(sorted(names))}; got "
                               f"{', '.join(sorted(feeds)) or 'none'}")
        arrays = {i.name: self.check(feeds[i.name], i) for i in self.inputs}
        if normalize and self.normalizer is not None and len(arrays) == 1:
            (name, array), = arrays.items()
            if array.dtype == np.float32:
                arrays[name] = self.normalizer.transform(array)
        n = len(next(iter(arrays.values())))
        if any(len(a) != n for a in arrays.values()):
            raise PredictError("the inputs hold different numbers of samples")
        if batch < 1:
            raise PredictError(f"batch must be positive, got {batch}")
        parts = []
        output = self.outputs[0].name
        for start in range(0, n, batch):
            chunk = {k: v[start:start + batch] for k, v in arrays.items()}
            try:
                parts.append(self._session.run([output], chunk)[0])
            except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
                raise PredictError(f"onnxruntime failed: {_first_line(exc)}") from None
        if not parts:
            shape = tuple(d if d >= 0 else 0 for d in self.outputs[0].sample_shape)
            return np.zeros((0, *shape), np.float32)
        return np.concatenate(parts)

    def probabilities(self, y: np.ndarray) -> np.ndarray:
        """Class probabilities [N, C] from the output, by its kind; one column p(class 1)
        becomes the two columns [1 - p, p]."""
        y = np.asarray(y, dtype=np.float64)
        if y.ndim != 2:
            raise PredictError(f"the output {_shape(y.shape[1:])} is not one score per class")
        if y.shape[1] == 1:
            p = y[:, 0]
            if self.output_kind == "log_probabilities":
                p = np.exp(p)
            elif self.output_kind not in ("probabilities",):
                p = 1.0 / (1.0 + np.exp(-p))
            return np.stack([1.0 - p, p], axis=1)
        if self.output_kind == "probabilities":
            return y
        if self.output_kind == "log_probabilities":
            return np.exp(y)
        shifted = np.exp(y - y.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    def predict(self, x: Any, top_k: int = 3, batch: int = 256) -> Prediction:
        """Class probabilities, the ``top_k`` classes of each row and the class names."""
        probabilities = self.probabilities(self.run(x, batch=batch))
        count = probabilities.shape[1]
        classes = self.classes if self.classes and len(self.classes) == count else \
            tuple(str(i) for i in range(count))
        k = max(1, min(top_k, count))
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
        return Prediction(probabilities, order, classes)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _info(value: Any) -> TensorInfo:
    dims = tuple(d if isinstance(d, int) else str(d) for d in value.shape)
    return TensorInfo(value.name, _ORT_TYPES.get(value.type, value.type), dims)


def _open(path: Path) -> Any:
    if not path.exists():
        raise PredictError(f"model file `{path}` does not exist",
                           "export one with `nnspec export SPEC --weights RUN_DIR -o model.onnx`")
    if path.is_dir():
        raise PredictError(f"`{path}` is a folder, not an ONNX model file")
    size = path.stat().st_size
    if size == 0:
        raise PredictError(f"model file `{path}` is empty", "export the model again")
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: no warnings on the user's terminal
    try:
        return ort.InferenceSession(str(path), sess_options=options,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        with open(path, "rb") as handle:
            head = handle.read(2)
        detail = _first_line(exc)
        if "protobuf" in detail.lower() and head[:1] != b"\x08":
            raise PredictError(f"`{path}` is not an ONNX model (it does not parse as one)",
                               "give a .onnx file written by `nnspec export`") from None
        raise PredictError(f"`{path}` is truncated or corrupt: onnxruntime cannot load it "
                           f"({detail})", "export the model again") from None


def _shape_help(got: tuple[int, ...], want: tuple[int, ...]) -> str | None:
    if tuple(got) == tuple(want):
        return "that is one sample without the batch axis: add it (x[None])"
    if len(got) >= 1 and -1 not in want and math.prod(got[1:]) == math.prod(want):
        return f"each sample holds {math.prod(want)} values: reshape the data to " \
               f"[N, {', '.join(map(str, want))}]"
    return None


# ------------------------------------------------------------------------------ input files

def read_input(path: str | os.PathLike[str], session: Session) -> tuple[np.ndarray, list[str]]:
    """The samples in ``path`` and a name per row: .npz (array `x` or its only array), .npy,
    .csv (numeric columns, an optional header; rows are reshaped to the input's shape), an
    image file or a folder of images (resized to the input, grayscale or RGB by its
    channels, scaled to [0, 1])."""
    p = Path(path)
    if not p.exists():
        raise PredictError(f"input `{p}` does not exist")
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES
                       and not f.name.startswith("."))
        if not files:
            raise PredictError(f"folder `{p}` holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return _images(files, session), [str(f.relative_to(p)) for f in files]
    suffix = p.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return _images([p], session), [p.name]
    if suffix == ".npz":
        x = _npz(p)
    elif suffix == ".npy":
        x = _npy(p)
    elif suffix == ".csv":
        x = _csv(p, session.inputs[0].sample_shape)
        if session.inputs[0].dtype == "int64" and np.all(x == np.round(x)):
            x = x.astype(np.int64)  # ids written as numbers
    else:
        raise PredictError(f"cannot read `{p}`: unknown file type `{suffix or p.name}`",
                           "give a .npz, .npy or .csv file, an image or a folder of images")
    return x, [str(i) for i in range(len(x))]


def _npz(p: Path) -> np.ndarray:
    try:
        with np.load(p, allow_pickle=False) as archive:
            keys = list(archive.files)
            if "x" in keys:
                return archive["x"]
            if len(keys) == 1:
                return archive[keys[0]]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise PredictError(f"`{p}` is not a readable .npz file: {_first_line(exc)}") from None
    raise PredictError(f"`{p}` holds arrays {', '.join(keys) or 'none'}: which one is the input?",
                       "name the input array `x` (numpy.savez(path, x=...))")


def _npy(p: Path) -> np.ndarray:
    try:
        return np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise PredictError(f"`{p}` is not a readable .npy file: {_first_line(exc)}") from None


def _csv(p: Path, want: tuple[int, ...]) -> np.ndarray:
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise PredictError(f"cannot read `{p}` as text: {_first_line(exc)}") from None
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    if rows and not all(_number(c) for c in rows[0]):
        rows = rows[1:]  # a header
    if not rows:
        raise PredictError(f"`{p}` holds no data rows")
    values = np.empty((len(rows), len(rows[0])), np.float32)
    for r, row in enumerate(rows):
        if len(row) != values.shape[1]:
            raise PredictError(f"`{p}` row {r + 1} has {len(row)} cells, the first has "
                               f"{values.shape[1]}")
        for c, cell in enumerate(row):
            if not _number(cell):
                raise PredictError(f"`{p}` row {r + 1}, column {c + 1}: {cell!r} is not a number")
            values[r, c] = float(cell)
    size = math.prod(want)
    if -1 not in want and values.shape[1] == size and len(want) != 1:
        values = values.reshape(len(values), *want)  # CSV rows are flat samples
    return values


def _number(cell: str) -> bool:
    try:
        return math.isfinite(float(cell))
    except ValueError:
        return False


def _images(files: Sequence[Path], session: Session) -> np.ndarray:
    from PIL import Image

    want = session.inputs[0].sample_shape
    if len(want) != 3 or want[0] not in (1, 3) or min(want) < 1:
        raise PredictError(f"the model input {_shape(want)} is not an image [C, H, W] with 1 or "
                           "3 channels", "give the input as .npz, .npy or .csv")
    channels, height, width = want
    images = []
    for file in files:
        try:
            with Image.open(file) as opened:
                image = opened.convert("L" if channels == 1 else "RGB")
            if image.size != (width, height):
                image = image.resize((width, height), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.float32) / np.float32(255)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise PredictError(f"cannot read the image `{file}`: {_first_line(exc)}") from None
        images.append(pixels[None] if channels == 1 else pixels.transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(images))


# ----------------------------------------------------------------------------- output files

def write_predictions(path: str | os.PathLike[str], rows: Sequence[str],
                      prediction: Prediction | None = None, outputs: np.ndarray | None = None,
                      ) -> None:
    """A classifier's probabilities and top-k (or raw outputs) as .csv, .npz or .json."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".csv", ".npz", ".json"):
        raise PredictError(f"cannot write `{p}`: give a .csv, .npz or .json file")
    if prediction is not None:
        _write_classes(p, suffix, rows, prediction)
    else:
        assert outputs is not None
        _write_values(p, suffix, rows, outputs)


def _write_classes(p: Path, suffix: str, rows: Sequence[str], pred: Prediction) -> None:
    names = pred.top_names()
    k = pred.top_k.shape[1]
    if suffix == ".npz":
        with open(p, "wb") as handle:
            np.savez(handle, probabilities=pred.probabilities.astype(np.float32),
                     top_k=pred.top_k, prediction=pred.labels, classes=np.array(pred.classes),
                     rows=np.array(list(rows)))
    elif suffix == ".json":
        data = {"classes": list(pred.classes), "rows": [
            {"row": row, "prediction": names[i][0],
             "top": [{"class": names[i][j], "probability": float(pred.probabilities[i, c])}
                     for j, c in enumerate(pred.top_k[i])],
             "probabilities": [float(v) for v in pred.probabilities[i]]}
            for i, row in enumerate(rows)]}
        p.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    else:
        with open(p, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            header = ["row"]
            for j in range(k):
                header += [f"top{j + 1}", f"p{j + 1}"]
            writer.writerow(header + [f"p_{c}" for c in pred.classes])
            for i, row in enumerate(rows):
                cells: list[Any] = [row]
                for j, c in enumerate(pred.top_k[i]):
                    cells += [names[i][j], f"{pred.probabilities[i, c]:.6g}"]
                writer.writerow(cells + [f"{v:.6g}" for v in pred.probabilities[i]])


def _write_values(p: Path, suffix: str, rows: Sequence[str], y: np.ndarray) -> None:
    if suffix == ".npz":
        with open(p, "wb") as handle:
            np.savez(handle, y=y, rows=np.array(list(rows)))
    elif suffix == ".json":
        p.write_text(json.dumps({"rows": list(rows), "outputs": y.tolist()}) + "\n",
                     encoding="utf-8")
    else:
        flat = y.reshape(len(y), -1)
        with open(p, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["row"] + [f"y{j}" for j in range(flat.shape[1])])
            for row, values in zip(rows, flat, strict=True):
                writer.writerow([row] + [f"{v:.6g}" for v in values])


__all__ = ["Prediction", "PredictError", "Session", "TensorInfo", "read_input",
           "write_predictions"]
