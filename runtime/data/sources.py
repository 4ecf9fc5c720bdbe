"""Data sources, splits and normalisation for the training runtime (numpy in, numpy out).

Every source returns a :class:`Dataset`: ``x`` float32 ``[N, *sample_shape]`` and ``y``
(int64 class labels [N], or [N, H, W] with a label per pixel for segmentation, or float32
regression targets). Anything wrong with the data (a missing
or corrupt file, a bad cell, a wrong magic number, labels out of range, samples of the wrong
shape) is a :class:`DataError` with a location and, where one is known, a fix.
"""

from __future__ import annotations

import csv
import gzip
import inspect
import io
import math
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from nnspec.spec.recipe.tables import DATA_PATHS, SHAPE_CLASSES
from nnspec.spec.suggest import did_you_mean

Task = Literal["classification", "regression"]
PathLike = str | Path


class DataError(Exception):
    """Bad input data: a message, where it was found (``data.csv:14:3``) and a fix."""

    def __init__(self, message: str, location: str | None = None, help: str | None = None):
        super().__init__(message)
        self.message, self.location, self.help = message, location, help

    def render(self) -> str:
        lines = [f"error: {self.message}"]
        if self.location:
            lines.append(f"  --> {self.location}")
        if self.help:
            lines.append(f"  = help: {self.help}")
        return "\n".join(lines)

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        tail = f" (help: {self.help})" if self.help else ""
        return f"{where}{self.message}{tail}"


@dataclass(frozen=True, eq=False)
class Dataset:
    x: np.ndarray
    y: np.ndarray
    task: Task
    classes: tuple[str, ...] | None = None
    name: str = "data"

    def __post_init__(self) -> None:
        if len(self.x) == 0:
            raise DataError("the dataset is empty", self.name)
        if len(self.x) != len(self.y):
            raise DataError(f"{len(self.x)} samples but {len(self.y)} targets", self.name)
        if self.task not in ("classification", "regression"):
            raise ValueError(f"task must be classification or regression, got {self.task!r}")

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x.shape[1:])

    @property
    def num_classes(self) -> int | None:
        """Class count (from ``classes`` or max label + 1); None for regression."""
        if self.task == "regression":
            return None
        return len(self.classes) if self.classes is not None else int(self.y.max()) + 1

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, indices: np.ndarray) -> Dataset:
        return Dataset(self.x[indices], self.y[indices], self.task, self.classes, self.name)


def _shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


# ---------------------------------------------------------------------------- built-in sets

BUILTINS = ("digits", "iris", "breast_cancer", "diabetes", "wine", "fashion_mnist", "shapes")
_OPTIONS: dict[str, tuple[str, ...]] = {
    "digits": ("as_image", "resize", "sequence"),
    "fashion_mnist": ("part", "resize"),
    "shapes": ("n", "size", "max_shapes", "noise", "seed"),
}
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")


@cache
def _sklearn(name: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...] | None]:
    from sklearn import datasets  # the data ships inside the wheel; load_* never downloads

    bunch = getattr(datasets, f"load_{name}")()
    names = getattr(bunch, "target_names", None)
    classes = tuple(str(c) for c in names) if names is not None and name != "diabetes" else None
    return bunch.data, bunch.target, classes


def resize_bilinear(images: np.ndarray, height: int, width: int | None = None) -> np.ndarray:
    """Bilinear resize of ``[..., H, W]`` (half-pixel centres, as torch align_corners=False)."""
    width = height if width is None else width

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(src).astype(np.int64)
        return lo, np.minimum(lo + 1, n_in - 1), (src - lo).astype(np.float32)

    r0, r1, wr = axis(images.shape[-2], height)
    c0, c1, wc = axis(images.shape[-1], width)
    rows = images[..., r0, :] * (1 - wr)[:, None] + images[..., r1, :] * wr[:, None]
    return (rows[..., c0] * (1 - wc) + rows[..., c1] * wc).astype(np.float32)


def _check_options(name: str, options: dict[str, Any]) -> None:
    allowed = _OPTIONS.get(name, ())
    for key in options:
        if key not in allowed:
            takes = f"takes {', '.join(allowed)}" if allowed else "takes no options"
            raise DataError(f"unknown option `{key}` for {name} ({takes})", name,
                            did_you_mean(key, allowed))


def _positive_int(name: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"{key} must be a positive integer, got {value!r}", name)
    return value


def load_builtin(name: str, **options: Any) -> Dataset:
    """A set shipped with scikit-learn (digits, iris, breast_cancer, diabetes, wine),
    Fashion-MNIST from Debian's ``dataset-fashion-mnist`` (``part="train"`` or ``"test"``),
    or the generated segmentation set ``shapes`` (see :func:`make_shapes`).

    digits: 64 features 0..16 by default; ``as_image=True`` gives ``[1, 8, 8]`` in [0, 1]
    (pixel / 16), ``resize=n`` resizes those images to ``[1, n, n]`` (bilinear),
    ``sequence=True`` gives ``[8, 8]`` (8 rows of 8 pixels, in [0, 1]) for recurrent models.
    """
    if name not in BUILTINS:
        raise DataError(f"unknown data set `{name}`", None,
                        did_you_mean(name, BUILTINS) or f"built-in sets: {', '.join(BUILTINS)}")
    _check_options(name, options)
    if name == "fashion_mnist":
        return _fashion_mnist(**options)
    if name == "shapes":
        return make_shapes(**options)
    data, target, classes = _sklearn(name)
    x = np.array(data, dtype=np.float32)  # copies: the cached arrays stay untouched
    if name == "diabetes":
        return Dataset(x, np.array(target, dtype=np.float32), "regression", None, name)
    if name == "digits":
        as_image, sequence = options.get("as_image", False), options.get("sequence", False)
        if isinstance(as_image, (list, tuple)) and tuple(as_image) == (1, 8, 8):
            as_image = True  # `digits(as_image=[1, 8, 8])` spells the shape out
        for key, value in (("as_image", as_image), ("sequence", sequence)):
            if not isinstance(value, bool):
                raise DataError(f"{key} must be true or false, got {value!r}", name)
        if as_image and sequence:
            raise DataError("as_image and sequence exclude each other", name,
                            "as_image=true gives [1, 8, 8]; sequence=true gives [8, 8]")
        if "resize" in options:
            size = _positive_int(name, "resize", options["resize"])
            if not as_image:
                raise DataError("resize applies to images", name,
                                f"use digits(as_image=true, resize={size})")
        if as_image or sequence:
            x = x.reshape(-1, 1, 8, 8) / np.float32(16)
            if "resize" in options:
                x = resize_bilinear(x, options["resize"])
            if sequence:
                x = x[:, 0]
        classes = tuple(str(c) for c in classes)
    return Dataset(x, np.array(target, dtype=np.int64), "classification", classes, name)


def _fashion_mnist(part: str = "train", resize: int | None = None) -> Dataset:
    prefix = {"train": "train", "test": "t10k"}.get(part)
    if prefix is None:
        raise DataError(f"part must be `train` or `test`, got {part!r}", "fashion_mnist")
    images = FASHION_MNIST_DIR / f"{prefix}-images-idx3-ubyte.gz"
    if not images.exists():
        raise DataError(f"Fashion-MNIST is not installed ({images} is missing)", "fashion_mnist",
                        "apt-get install dataset-fashion-mnist")
    data = load_idx(images, FASHION_MNIST_DIR / f"{prefix}-labels-idx1-ubyte.gz",
                    classes=FASHION_MNIST_CLASSES)
    x = data.x
    if resize is not None:
        x = resize_bilinear(x, _positive_int("fashion_mnist", "resize", resize))
    return Dataset(x, data.y, "classification", FASHION_MNIST_CLASSES, "fashion_mnist")


# limits of `shapes(...)`, as the recipe's Signature in spec/recipe/tables.py gives them
SHAPES_LIMITS = {"n": (1, 100_000), "size": (16, 512), "max_shapes": (1, 8)}
SHAPES_MAX_PIXELS = 2**27  # x float32 + y int64 = 12 bytes a pixel: 1.5 GiB at most


def make_shapes(n: int = 512, size: int = 32, max_shapes: int = 3, noise: float = 0.1,
                seed: int = 0) -> Dataset:
    """A generated segmentation set: ``n`` grey images ``[1, size, size]`` holding 1 to
    ``max_shapes`` filled shapes on Gaussian noise, and per-pixel labels ``[size, size]``
    (int64: 0 background, 1 disc, 2 square, 3 triangle). The same arguments always give
    the same data (numpy's PCG64 seeded with ``seed``).

    Each shape has a class drawn uniformly from the three, a radius r ~ U[size/8, size/4], a
    centre (cx, cy) ~ U[r, size - r]² (so it lies inside the image) and a brightness
    b ~ U[0.5, 1]. With pixel centres (x, y) = (j + 1/2, i + 1/2), a pixel belongs to

        disc:     (x - cx)² + (y - cy)² <= r²
        square:   |x - cx| <= r and |y - cy| <= r          (axis-aligned, side 2r)
        triangle: inside the upright equilateral triangle inscribed in the disc, vertices
                  at angles 90°, 210° and 330° (apex up)

    Shapes are painted in order, a later one covering an earlier one (image and labels
    alike, so the labels say what is visible). Then x = image + ε, ε ~ N(0, noise²) per
    pixel: background pixels are pure noise around 0, shapes noisy around their b.
    """
    name = "shapes"
    for key, value in (("n", n), ("size", size), ("max_shapes", max_shapes)):
        low, high = SHAPES_LIMITS[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise DataError(f"{key} must be an integer in [{low}, {high}], got {value!r}", name)
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 <= noise <= 1:
        raise DataError(f"noise must be a number in [0, 1], got {noise!r}", name)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DataError(f"seed must be an integer >= 0, got {seed!r}", name)
    if n * size * size > SHAPES_MAX_PIXELS:
        raise DataError(f"shapes(n={n}, size={size}) would hold {n * size * size:,} pixels, more "
                        f"than {SHAPES_MAX_PIXELS:,}", name,
                        f"use n <= {SHAPES_MAX_PIXELS // (size * size):,} at size {size}")
    rng = np.random.default_rng(seed)
    # the shapes' numbers are drawn up front, in one order, then the noise: the data does
    # not depend on the order or the chunking of the painting below
    k = max_shapes
    count = rng.integers(1, k + 1, n)
    kind = rng.integers(1, len(SHAPE_CLASSES), (n, k))
    radius = rng.uniform(size / 8, size / 4, (n, k))
    cx = radius + rng.random((n, k)) * (size - 2 * radius)
    cy = radius + rng.random((n, k)) * (size - 2 * radius)
    brightness = rng.uniform(0.5, 1.0, (n, k))
    image = np.zeros((n, size, size), np.float32)
    y = np.zeros((n, size, size), np.int64)
    centres = np.arange(size) + 0.5
    for slot in range(k):
        for label, inside in ((1, _disc), (2, _square), (3, _upright_triangle)):
            painted = np.flatnonzero((kind[:, slot] == label) & (slot < count))
            for start in range(0, len(painted), 256):  # masks of a few MB at a time
                i = painted[start:start + 256]
                # [b, 1, 1] parameters against [size] pixel centres: masks [b, size, size]
                r = radius[i, slot, None, None]
                mask = inside(centres[None, None, :] - cx[i, slot, None, None],
                              centres[None, :, None] - cy[i, slot, None, None], r)
                shade = brightness[i, slot, None, None].astype(np.float32)
                image[i] = np.where(mask, shade, image[i])
                y[i] = np.where(mask, label, y[i])
    x = image[:, None] + rng.standard_normal((n, 1, size, size), dtype=np.float32) \
        * np.float32(noise)
    return Dataset(x, y, "classification", SHAPE_CLASSES, name)


def _disc(dx: np.ndarray, dy: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Inside the disc of radius r: dx² + dy² <= r²."""
    return dx**2 + dy**2 <= r**2


def _square(dx: np.ndarray, dy: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Inside the axis-aligned square of side 2r: max(|dx|, |dy|) <= r."""
    return (np.abs(dx) <= r) & (np.abs(dy) <= r)


def _upright_triangle(dx: np.ndarray, dy: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Inside the equilateral triangle inscribed in the circle of radius r, apex up.

    Image rows grow downwards, so "up" is dy < 0: the apex is (0, -r), the base corners
    (±r·√3/2, r/2). Inside means on the centre's side of each edge: dy <= r/2 (the base)
    and √3·|dx| - dy <= r (the two slanted edges through the apex).
    """
    return (dy <= r / 2) & (math.sqrt(3) * np.abs(dx) - dy <= r)


# ------------------------------------------------------------------------------ user files

def _open_bytes(path: PathLike) -> bytes:
    p = Path(path)
    if not p.exists():
        raise DataError("data file not found", str(path), "check the path (relative paths "
                        "are resolved against the spec file's folder)")
    if p.is_dir():
        raise DataError("expected a file, found a folder", str(path))
    try:
        return p.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read the file: {exc.strerror or exc}", str(path)) from None


def _labels(values: Sequence[str], where: Callable[[int], str], task: Task | None,
            ) -> tuple[np.ndarray, Task, tuple[str, ...] | None]:
    """Targets from text cells: integers → class labels; decimals → regression; words →
    class names (sorted); ``task`` overrides the guess."""
    def number(i: int, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise DataError(f"target {text!r} is not a number (task is regression)",
                            where(i)) from None
        if not math.isfinite(value):
            raise DataError(f"target {text!r} is not a finite number", where(i))
        return value

    numeric = all(_is_number(v) for v in values)
    integral = all(_is_int(v) for v in values)
    if task is None:
        task = "regression" if numeric and not integral else "classification"
    if task == "regression":
        return np.array([number(i, v) for i, v in enumerate(values)], np.float32), task, None
    if not numeric:
        classes = tuple(sorted(set(values)))
        index = {c: k for k, c in enumerate(classes)}
        return np.array([index[v] for v in values], np.int64), task, classes
    labels = np.array([number(i, v) for i, v in enumerate(values)])
    bad = np.flatnonzero(labels != np.round(labels))
    if len(bad):
        raise DataError(f"class label {values[bad[0]]!r} is not an integer", where(int(bad[0])),
                        "pass task=regression for real-valued targets")
    return labels.astype(np.int64), task, None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def load_csv(path: PathLike, target: str | int = -1, header: bool = True,
             task: Task | None = None) -> Dataset:
    """Numeric features plus one target column, chosen by header name or index (negative
    counts from the end). Targets written as integers are class labels, decimals are
    regression targets, words are class names (mapped to 0.. in sorted order)."""
    name = str(path)
    try:
        text = _open_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError("the file is not UTF-8 text", f"{name}: byte {exc.start}") from None
    reader = csv.reader(text.splitlines())
    rows: list[tuple[int, list[str]]] = []
    names: list[str] | None = None
    for cells in reader:
        if not cells or all(not c.strip() for c in cells):
            continue
        if header and names is None:
            names = [c.strip() for c in cells]
            continue
        rows.append((reader.line_num, [c.strip() for c in cells]))
    if not rows:
        raise DataError("the file holds no data rows", name)
    width = len(names) if names is not None else len(rows[0][1])
    for line, cells in rows:
        if len(cells) != width:
            raise DataError(f"row has {len(cells)} cells, expected {width}", f"{name}:{line}")
    if isinstance(target, str):
        if names is None or target not in names:
            raise DataError(f"no column named `{target}`", name,
                            did_you_mean(target, names or ()) or
                            ("columns: " + ", ".join(names) if names else
                             "the file has no header: give the target column's index"))
        column = names.index(target)
    else:
        if not -width <= target < width:
            raise DataError(f"target column {target} is out of range: the file has {width} "
                            "columns", name)
        column = target % width
    if width < 2:
        raise DataError("the file needs at least one feature column besides the target", name)
    features = [c for c in range(width) if c != column]
    x = np.empty((len(rows), len(features)), np.float32)
    for r, (line, cells) in enumerate(rows):
        for f, c in enumerate(features):
            try:
                value = float(cells[c])
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                label = f" (`{names[c]}`)" if names else ""
                raise DataError(f"feature {cells[c]!r} in column {c + 1}{label} is not a finite "
                                "number", f"{name}:{line}:{c + 1}",
                                "features must be numeric; encode categories as numbers")
            x[r, f] = value
    y, task, classes = _labels([cells[column] for _, cells in rows],
                               lambda r: f"{name}:{rows[r][0]}:{column + 1}", task)
    return Dataset(x, y, task, classes, Path(path).name)


def load_npz(path: PathLike, x: str = "x", y: str = "y", task: Task | None = None) -> Dataset:
    """Arrays ``x`` [N, ...] and ``y`` [N] from an ``.npz`` file (never unpickles objects).
    Integer ``y`` are class labels, floating ``y`` regression targets, unless ``task`` says.
    An optional string array ``classes`` names the classes."""
    name = str(path)
    raw = _open_bytes(path)
    if raw[:2] != b"PK":
        raise DataError("not an .npz archive (no zip signature)", f"{name}: byte 0",
                        "save the arrays with numpy.savez(path, x=..., y=...)")
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
            keys = list(archive.files)
            for key in (x, y):
                if key not in keys:
                    raise DataError(f"no array named `{key}` (the file holds "
                                    f"{', '.join(keys) or 'nothing'})", name,
                                    did_you_mean(key, keys))
            xs, ys = archive[x], archive[y]
            names = archive["classes"] if "classes" in keys else None
    except DataError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise DataError("refused: the file contains pickled Python objects", name,
                            "store plain numeric arrays (numpy.savez with numeric dtypes)",
                            ) from None
        raise DataError(f"corrupt .npz file: {exc}", name) from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise DataError(f"corrupt .npz file: {exc}", name) from None
    if xs.dtype.kind not in "biuf" or ys.dtype.kind not in "biuf":
        raise DataError(f"arrays must be numeric, found x {xs.dtype} and y {ys.dtype}", name)
    if xs.ndim == 1:
        xs = xs[:, None]
    if len(xs) != len(ys):
        raise DataError(f"`{x}` has {len(xs)} samples but `{y}` has {len(ys)}", name)
    task = task or ("classification" if ys.dtype.kind in "biu" else "regression")
    if task == "classification":
        if ys.ndim != 1 or np.any(ys != np.round(ys)):
            raise DataError(f"class labels must be integers of shape [N], got {ys.dtype} "
                            f"{_shape(ys.shape)}", name)
        ys = ys.astype(np.int64)
    else:
        ys = ys.astype(np.float32)
    classes = tuple(str(c) for c in names) if names is not None else None
    return Dataset(xs.astype(np.float32), ys, task, classes, Path(path).name)


# IDX: magic 0x00 0x00 <type> <ndims>, then ndims big-endian uint32 sizes, then the data.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: PathLike) -> np.ndarray:
    """One IDX array (plain or gzip-compressed), checked byte by byte."""
    name = str(path)
    raw = _open_bytes(path)
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise DataError(f"corrupt gzip data: {exc}", name) from None
    if len(raw) < 4:
        raise DataError(f"truncated: {len(raw)} bytes, too short for an IDX header",
                        f"{name}: byte {len(raw)}")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(f"not an IDX file: magic number 0x{raw[:4].hex()} (expected "
                        "0x000008NN, e.g. 0x00000803 for images)", f"{name}: byte 0")
    ndims = raw[3]
    if ndims == 0:
        raise DataError("IDX header declares 0 dimensions", f"{name}: byte 3")
    head = 4 + 4 * ndims
    if len(raw) < head:
        raise DataError(f"truncated header: {ndims} dimensions need {head} bytes",
                        f"{name}: byte {len(raw)}")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndims, 4))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    size = math.prod(dims) * dtype.itemsize
    if len(raw) - head < size:
        raise DataError(f"truncated: dimensions {_shape(dims)} need {size} bytes of data after "
                        f"the {head}-byte header, found {len(raw) - head}",
                        f"{name}: byte {len(raw)}")
    if len(raw) - head > size:
        raise DataError(f"{len(raw) - head - size} unexpected bytes after the data "
                        f"{_shape(dims)}", f"{name}: byte {head + size}")
    return np.frombuffer(raw, dtype, math.prod(dims), head).reshape(dims)


def load_idx(images: PathLike, labels: PathLike,
             classes: Sequence[str] | None = None) -> Dataset:
    """MNIST-format image and label files (``.gz`` or plain): images ``[N, 1, H, W]``
    (unsigned bytes scaled to [0, 1]), labels int64 ``[N]``."""
    x, y = read_idx(images), read_idx(labels)
    if x.ndim != 3:
        raise DataError(f"expected images [N, H, W], found {x.ndim} dimensions "
                        f"{_shape(x.shape)}", f"{images}: byte 3")
    if y.ndim != 1 or y.dtype.kind == "f":
        raise DataError(f"expected integer labels [N], found {y.dtype} {_shape(y.shape)}",
                        f"{labels}: byte 2")
    if len(x) != len(y):
        raise DataError(f"{len(x)} images but {len(y)} labels", f"{labels}: byte 4",
                        f"the files do not belong together: {Path(images).name}, "
                        f"{Path(labels).name}")
    scale = np.float32(255) if x.dtype == np.uint8 else np.float32(1)
    xs = (x.astype(np.float32) / scale)[:, None]
    names = tuple(classes) if classes is not None else None
    return Dataset(xs, y.astype(np.int64), "classification", names, Path(images).name)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                  ".pgm")


def load_images(folder: PathLike, size: int | tuple[int, int] | None = None,
                grayscale: bool = False) -> Dataset:
    """A folder with one subfolder of images per class (classes sorted by name):
    ``[N, 3, H, W]`` (or ``[N, 1, H, W]`` with ``grayscale``) in [0, 1]. Every image is
    resized to ``size`` (an int or (H, W)) if given; otherwise all must share one size."""
    from PIL import Image

    root = Path(folder)
    if not root.is_dir():
        raise DataError("image folder not found" if not root.exists() else
                        "expected a folder of class subfolders, found a file", str(folder))
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError("no class subfolders", str(folder),
                        "put each class's images in a subfolder named after the class")
    hw = None if size is None else (size, size) if isinstance(size, int) else tuple(size)
    images: list[np.ndarray] = []
    labels: list[int] = []
    first: tuple[Path, tuple[int, int]] | None = None
    for label, class_dir in enumerate(class_dirs):
        files = sorted(p for p in class_dir.iterdir()
                       if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
        if not files:
            raise DataError(f"class folder `{class_dir.name}` holds no images", str(class_dir))
        for file in files:
            try:
                with Image.open(file) as opened:
                    im = opened.convert("L" if grayscale else "RGB")
                if hw is not None and im.size != (hw[1], hw[0]):
                    im = im.resize((hw[1], hw[0]), Image.Resampling.BILINEAR)
                pixels = np.asarray(im, dtype=np.uint8)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                raise DataError(f"cannot read the image: {exc}", str(file)) from None
            shape = pixels.shape[:2]
            if first is None:
                first = (file, shape)
            elif shape != first[1]:
                raise DataError(f"image is {shape[0]}×{shape[1]} (H×W) but {first[0].name} is "
                                f"{first[1][0]}×{first[1][1]}", str(file),
                                "pass size=... to resize every image")
            images.append(pixels)
            labels.append(label)
    x = np.stack(images).astype(np.float32) / np.float32(255)
    x = x[:, None] if grayscale else x.transpose(0, 3, 1, 2)
    return Dataset(np.ascontiguousarray(x), np.array(labels, np.int64), "classification",
                   tuple(p.name for p in class_dirs), root.name)


def load_text(path: PathLike, context: int, stride: int | None = None) -> Dataset:
    """Characters of a UTF-8 file as next-token samples (spec/recipe/textdata.py): the
    vocabulary is the sorted set of its characters (``classes``, id k the k-th), sample j is
    x = ids[i : i + context] with targets y = ids[i + 1 : i + context + 1], both int64
    [context], for i = j·stride (stride defaults to context: windows that do not overlap)."""
    from nnspec.spec.recipe.textdata import TextDataError, check_length, decode, vocabulary

    name = str(path)
    for key, value in (("context", context), ("stride", context if stride is None else stride)):
        _positive_int("text", key, value)
    stride = context if stride is None else stride
    try:
        text = decode(_open_bytes(path), name)
        check_length(len(text), context, name)
    except TextDataError as exc:
        raise DataError(exc.message, exc.location, exc.help) from None
    vocab = vocabulary(text)
    lookup = {c: k for k, c in enumerate(vocab)}
    ids = np.fromiter((lookup[c] for c in text), np.int64, len(text))
    starts = np.arange(0, len(text) - context, stride)  # i + context + 1 <= n
    window = starts[:, None] + np.arange(context)[None, :]
    return Dataset(ids[window], ids[window + 1], "classification", vocab, Path(path).name)


LOADERS: dict[str, Callable[..., Dataset]] = {
    "csv": load_csv, "npz": load_npz, "idx": load_idx, "images": load_images, "text": load_text,
}
_PATH_ARGS = DATA_PATHS


def load_data(source: str, *args: Any, base_dir: PathLike | None = None,
              **kwargs: Any) -> Dataset:
    """One entry point for a recipe's ``data`` line: a built-in name or csv/npz/idx/images;
    relative paths are resolved against ``base_dir`` (the spec file's folder)."""
    if source in BUILTINS:
        if args:
            raise DataError(f"{source} takes keyword options only", source)
        return load_builtin(source, **kwargs)
    if source not in LOADERS:
        raise DataError(f"unknown data source `{source}`", None,
                        did_you_mean(source, (*BUILTINS, *LOADERS)) or
                        f"sources: {', '.join((*BUILTINS, *LOADERS))}")
    signature = inspect.signature(LOADERS[source])
    for key in kwargs:
        if key not in signature.parameters:
            raise DataError(f"unknown option `{key}` for {source}", source,
                            did_you_mean(key, signature.parameters))
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise DataError(f"{source}(...): {exc}", source) from None
    for key in _PATH_ARGS[source]:
        if key in bound.arguments and base_dir is not None:
            bound.arguments[key] = Path(base_dir) / Path(bound.arguments[key])
    return LOADERS[source](*bound.args, **bound.kwargs)


# ------------------------------------------------------------------------- normalisation

class Normalizer:
    """``(x - mean) / std`` with statistics per index of one axis, fitted on the training
    split only. ``axis=1`` (default) is per channel for images [N, C, H, W] and per feature
    for tables [N, F]; use ``axis=-1`` for sequences [N, T, F]. A constant entry gets std 1."""

    def __init__(self, axis: int = 1, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None):
        self.axis = axis
        self.mean = None if mean is None else np.asarray(mean, np.float64)
        self.std = None if std is None else np.asarray(std, np.float64)

    def _axis(self, x: np.ndarray) -> int:
        if x.ndim < 2:
            raise ValueError(f"normalising needs data [N, ...], got {_shape(x.shape)}")
        axis = self.axis % x.ndim
        if axis == 0:
            raise ValueError("the normalisation axis cannot be the sample axis 0")
        return axis

    def fit(self, x: np.ndarray, chunk: int = 4096) -> Normalizer:
        axis = self._axis(x)
        others = tuple(a for a in range(x.ndim) if a != axis)
        count = x.size // x.shape[axis]
        if count == 0:
            raise ValueError("cannot fit a normaliser on no data")
        # two passes over chunks of samples, accumulated in float64 (no float64 copy of x)
        total = sum(np.sum(x[i: i + chunk], axis=others, dtype=np.float64)
                    for i in range(0, len(x), chunk))
        mean = total / count
        shape = [1] * x.ndim
        shape[axis] = -1
        m = mean.reshape(shape)
        sq = sum(np.sum((x[i: i + chunk] - m) ** 2, axis=others)
                 for i in range(0, len(x), chunk))
        std = np.sqrt(sq / count)
        std[std <= 1e-6 * np.abs(mean)] = 1.0  # constant (also exactly 0 when mean is 0)
        self.mean, self.std = mean, std
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        if self.mean is None or self.std is None:
            raise ValueError("the normaliser is not fitted: call fit(x_train) first")
        axis = self._axis(x)
        if x.shape[axis] != len(self.mean):
            raise DataError(f"data has {x.shape[axis]} entries on axis {axis} but the "
                            f"normaliser was fitted on {len(self.mean)}")
        shape = [1] * x.ndim
        shape[axis] = -1
        mean = self.mean.astype(np.float32).reshape(shape)
        std = self.std.astype(np.float32).reshape(shape)
        return ((x - mean) / std).astype(np.float32)

    def state(self) -> dict[str, Any]:
        if self.mean is None or self.std is None:
            raise ValueError("the normaliser is not fitted")
        return {"axis": self.axis, "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Normalizer:
        try:
            mean, std = list(state["mean"]), list(state["std"])
            axis = int(state.get("axis", 1))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a normaliser state: {exc}") from None
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError("normaliser state needs mean and std of one length, std > 0")
        return cls(axis, mean, std)


# -------------------------------------------------------------------------------- checks

def check_labels(y: np.ndarray, num_classes: int, location: str | None = None) -> None:
    """Class labels must be integers in [0, num_classes), one per sample [N] or one per
    pixel [N, H, W] (segmentation); names the first bad sample (and pixel)."""
    y = np.asarray(y)
    if y.ndim not in (1, 3) or y.dtype.kind not in "iu":
        raise DataError(f"class labels must be integers of shape [N] (or [N, H, W] per pixel), "
                        f"got {y.dtype} {_shape(y.shape)}", location)
    bad = np.flatnonzero((y < 0) | (y >= num_classes))
    if len(bad):
        where = np.unravel_index(int(bad[0]), y.shape)
        first = int(where[0])
        pixel = f" at pixel ({int(where[1])}, {int(where[2])})" if y.ndim == 3 else ""
        more = f" ({len(bad)} bad labels in all)" if len(bad) > 1 else ""
        raise DataError(f"label {int(y[where])}{pixel} of sample {first} is outside "
                        f"[0, {num_classes}){more}", location,
                        f"the model has {num_classes} outputs; labels seen span "
                        f"{int(y.min())}..{int(y.max())}")


def check_label_shape(y: np.ndarray, output_shape: Sequence[int],
                      location: str | None = None) -> None:
    """Labels per sample [N] go with class scores [C] (or one value [1]); labels per pixel
    [N, H, W] with score maps [C, H, W] (or [1, H, W]) of the same height and width."""
    per_sample, out = tuple(int(d) for d in np.shape(y)[1:]), tuple(int(d) for d in output_shape)
    if per_sample == out[1:]:
        return
    if per_sample:
        raise DataError(f"the data has a label per pixel, {_shape(per_sample)} per sample, but "
                        f"the model outputs {_shape(out)}", location,
                        f"end the model with a per-pixel map [classes, {per_sample[0]}, "
                        f"{per_sample[1]}] (e.g. a 1×1 conv), as examples/unet.nn does")
    raise DataError(f"the data has one label per sample, but the model outputs {_shape(out)}",
                    location, "end the model with class scores [classes] "
                    "(e.g. `global_avgpool -> flatten -> linear(classes)`)")


def check_sample_shape(dataset: Dataset, expected: Sequence[int],
                       location: str | None = None) -> None:
    """The data's sample shape must equal the model input's (batch dimension excluded)."""
    got, want = dataset.sample_shape, tuple(int(d) for d in expected)
    if got == want:
        return
    raise DataError(f"data samples are {_shape(got)} but the model input is {_shape(want)}",
                    location or dataset.name, _shape_help(dataset.name, got, want))


def _shape_help(name: str, got: tuple[int, ...], want: tuple[int, ...]) -> str | None:
    if name == "digits":
        if want == (64,):
            return "use digits() for 64 features"
        if want == (8, 8):
            return "use digits(sequence=true) for 8 rows of 8 pixels"
        if len(want) == 3 and want[0] == 1 and want[1] == want[2]:
            resize = "" if want[1] == 8 else f", resize={want[1]}"
            return f"use digits(as_image=true{resize})"
    if math.prod(got) == math.prod(want):
        return (f"both hold {math.prod(got)} values: reshape in the model "
                f"(e.g. start with `flatten` or `reshape`) or load the data in that shape")
    if len(got) == 3 and len(want) == 3:
        if got[0] != want[0] and got[1:] == want[1:]:
            return ("load the images with grayscale=true" if want[0] == 1 else
                    f"the model expects {want[0]} channels, the data has {got[0]}")
        if got[0] == want[0]:
            return f"resize the images to {want[1]}×{want[2]} (e.g. images(..., size=...))"
    return None
