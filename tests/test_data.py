"""Data layer: built-in sets, user files (CSV, NPZ, IDX, image folders), splits, normaliser,
and every DataError with its location."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from nnspec.runtime.data.sources import (
    FASHION_MNIST_DIR,
    DataError,
    Dataset,
    Normalizer,
    check_labels,
    check_sample_shape,
    load_builtin,
    load_csv,
    load_data,
    load_idx,
    load_images,
    load_npz,
    read_idx,
    resize_bilinear,
)
from nnspec.spec.recipe.splits import kfold_indices, split_indices


def data_error(fn, *args, **kwargs) -> DataError:
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    return info.value


# ------------------------------------------------------------------------------ built-ins

def test_digits_features_and_images():
    flat = load_builtin("digits")
    assert flat.x.shape == (1797, 64) and flat.x.dtype == np.float32
    assert flat.x.max() == 16.0 and flat.task == "classification"
    assert flat.y.dtype == np.int64 and flat.num_classes == 10
    assert flat.classes == tuple("0123456789")
    assert np.bincount(flat.y).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]

    image = load_builtin("digits", as_image=True)
    assert image.x.shape == (1797, 1, 8, 8) and image.sample_shape == (1, 8, 8)
    assert image.x.max() == 1.0 and image.x.min() == 0.0
    np.testing.assert_array_equal(image.x.reshape(1797, 64) * 16, flat.x)
    # the recipe may spell the shape out
    assert load_builtin("digits", as_image=[1, 8, 8]).sample_shape == (1, 8, 8)

    big = load_builtin("digits", as_image=True, resize=32)
    assert big.x.shape == (1797, 1, 32, 32) and big.x.dtype == np.float32
    assert 0.0 <= big.x.min() and big.x.max() <= 1.0

    seq = load_builtin("digits", sequence=True)
    assert seq.x.shape == (1797, 8, 8)
    np.testing.assert_array_equal(seq.x[5, 2], image.x[5, 0, 2])  # step 2 = row 2


def test_resize_matches_torch_bilinear():
    torch = pytest.importorskip("torch")
    images = load_builtin("digits", as_image=True).x[:4]
    for size in [(32, 32), (5, 3)]:
        want = torch.nn.functional.interpolate(torch.from_numpy(images), size=size,
                                               mode="bilinear", align_corners=False)
        np.testing.assert_allclose(resize_bilinear(images, *size), want.numpy(), atol=1e-6)


@pytest.mark.parametrize(
    ("name", "shape", "counts", "classes"),
    [
        ("iris", (150, 4), [50, 50, 50], ("setosa", "versicolor", "virginica")),
        ("breast_cancer", (569, 30), [212, 357], ("malignant", "benign")),
        ("wine", (178, 13), [59, 71, 48], ("class_0", "class_1", "class_2")),
    ],
)
def test_tabular_classification_sets(name, shape, counts, classes):
    data = load_builtin(name)
    assert data.x.shape == shape and data.x.dtype == np.float32
    assert np.bincount(data.y).tolist() == counts
    assert data.classes == classes and data.num_classes == len(counts)


def test_diabetes_is_regression():
    data = load_builtin("diabetes")
    assert data.x.shape == (442, 10) and data.task == "regression"
    assert data.y.dtype == np.float32 and data.y.shape == (442,)
    assert data.y[:3].tolist() == [151.0, 75.0, 141.0]
    assert data.num_classes is None and data.classes is None


def test_builtin_errors_suggest():
    err = data_error(load_builtin, "digts")
    assert "unknown data set `digts`" in err.message and "did you mean `digits`?" == err.help
    err = data_error(load_builtin, "digits", as_imag=True)
    assert "as_imag" in err.message and err.help == "did you mean `as_image`?"
    err = data_error(load_builtin, "iris", as_image=True)
    assert "takes no options" in err.message
    err = data_error(load_builtin, "digits", resize=32)
    assert err.help == "use digits(as_image=true, resize=32)"
    data_error(load_builtin, "digits", as_image=True, sequence=True)
    data_error(load_builtin, "digits", as_image=True, resize=0)
    data_error(load_builtin, "digits", as_image="yes")


def test_load_data_dispatch(tmp_path):
    assert load_data("iris").x.shape == (150, 4)
    (tmp_path / "d.csv").write_text("a,b\n1,0\n2,1\n")
    assert load_data("csv", "d.csv", target="b", base_dir=tmp_path).y.tolist() == [0, 1]
    assert data_error(load_data, "cvs").help == "did you mean `csv`?"
    assert data_error(load_data, "csv", "d.csv", targt="b").help == "did you mean `target`?"
    data_error(load_data, "iris", "x")


@pytest.mark.skipif(not (FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists(),
                    reason="dataset-fashion-mnist is not installed")
def test_fashion_mnist_idx_files():
    test = load_idx(FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz",
                    FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz")
    assert test.x.shape == (10000, 1, 28, 28) and test.x.max() == 1.0
    assert np.bincount(test.y).tolist() == [1000] * 10
    train = load_builtin("fashion_mnist")
    assert train.x.shape == (60000, 1, 28, 28) and train.classes[9] == "Ankle boot"
    assert np.bincount(train.y).tolist() == [6000] * 10


# ------------------------------------------------------------------------------------ CSV

def test_csv_string_labels_by_name(tmp_path):
    path = tmp_path / "flowers.csv"
    path.write_text("length,species,width\n1.5,setosa,0.2\n4.7,versicolor,1.4\n"
                    "\n6.0,virginica,2.5\n1.4,setosa,0.3\n")
    data = load_csv(path, target="species")
    assert data.task == "classification" and data.classes == ("setosa", "versicolor", "virginica")
    assert data.y.tolist() == [0, 1, 2, 0] and data.y.dtype == np.int64
    np.testing.assert_array_equal(data.x, np.array([[1.5, 0.2], [4.7, 1.4], [6.0, 2.5],
                                                    [1.4, 0.3]], np.float32))


def test_csv_task_guess_and_override(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("1,2,3\n4,5,0\n")
    ints = load_csv(path, header=False)  # last column, integers → classes
    assert ints.task == "classification" and ints.y.tolist() == [3, 0] and ints.num_classes == 4
    assert load_csv(path, header=False, task="regression").y.dtype == np.float32
    assert load_csv(path, target=0, header=False).x.tolist() == [[2, 3], [5, 0]]
    path.write_text("x,y\n1,2.5\n2,3.0\n")
    assert load_csv(path).task == "regression"


def test_csv_errors_are_located(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b,c,label\n1,2,3,cat\n4,5,6,dog\n7,8,x,dog\n")
    err = data_error(load_csv, path, target="label")
    assert err.location == f"{path}:4:3" and "'x'" in err.message and "`c`" in err.message
    path.write_text("a,b\n1,2\n3\n")
    assert data_error(load_csv, path).location == f"{path}:3"
    path.write_text("a,b\n1,2\n")
    assert data_error(load_csv, path, target="lable").help == "columns: a, b"
    assert "no column named" in data_error(load_csv, path, target="c").message
    path.write_text("a,label\n1,2\n")
    assert data_error(load_csv, path, target="lable").help == "did you mean `label`?"
    path.write_text("a,b\n")
    assert "no data rows" in data_error(load_csv, path).message
    path.write_text("a,b\n1,2.5\n")
    assert data_error(load_csv, path, task="classification").location == f"{path}:2:2"
    path.write_bytes(b"a,b\n\xff\xfe,1\n")
    assert "UTF-8" in data_error(load_csv, path).message
    assert "not found" in data_error(load_csv, tmp_path / "missing.csv").message


# ------------------------------------------------------------------------------------ NPZ

def test_npz_round_trip(tmp_path):
    path = tmp_path / "d.npz"
    x = np.random.default_rng(0).random((6, 2, 3))
    np.savez(path, x=x, y=np.array([0, 1, 2, 0, 1, 2], np.uint8), classes=np.array(["a", "b",
                                                                                      "c"]))
    data = load_npz(path)
    assert data.x.dtype == np.float32 and data.sample_shape == (2, 3)
    assert data.y.dtype == np.int64 and data.classes == ("a", "b", "c")
    np.savez(path, inputs=x, targets=np.linspace(0, 1, 6))
    reg = load_npz(path, x="inputs", y="targets")
    assert reg.task == "regression" and reg.y.dtype == np.float32


def test_npz_refuses_pickles_and_bad_files(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, x=np.zeros((2, 2)), y=np.array([{"a": 1}, None], dtype=object))
    err = data_error(load_npz, path)
    assert "pickled" in err.message
    np.savez(path, x=np.zeros((2, 2)), y=np.zeros(3, np.int64))
    assert "2 samples but `y` has 3" in data_error(load_npz, path).message
    np.savez(path, inputs=np.zeros((2, 2)), y=np.zeros(2, np.int64))
    assert data_error(load_npz, path, x="input").help == "did you mean `inputs`?"
    np.save(tmp_path / "plain.npy", np.zeros(3))
    assert "not an .npz" in data_error(load_npz, tmp_path / "plain.npy").message
    good = tmp_path / "good.npz"
    np.savez(good, x=np.zeros((50, 20)), y=np.zeros(50, np.int64))
    (tmp_path / "cut.npz").write_bytes(good.read_bytes()[:300])
    assert "corrupt" in data_error(load_npz, tmp_path / "cut.npz").message
    assert "not found" in data_error(load_npz, tmp_path / "nope.npz").message


# ------------------------------------------------------------------------------------ IDX

def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    head = struct.pack(">BBBB", 0, 0, type_code, array.ndim)
    head += struct.pack(f">{array.ndim}I", *array.shape)
    return head + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(tmp_path: Path, images: np.ndarray, labels: np.ndarray, gz: bool = False):
    suffix = ".gz" if gz else ""
    paths = tmp_path / f"images-idx3-ubyte{suffix}", tmp_path / f"labels-idx1-ubyte{suffix}"
    for path, array in zip(paths, (images, labels)):
        raw = idx_bytes(array)
        path.write_bytes(gzip.compress(raw) if gz else raw)
    return paths


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (7, 5, 4), dtype=np.uint8)
    images[0, 0, 0] = 255
    labels = np.array([0, 1, 2, 3, 4, 5, 9], np.uint8)
    data = load_idx(*write_idx(tmp_path, images, labels, gz))
    assert data.x.shape == (7, 1, 5, 4) and data.x.dtype == np.float32
    np.testing.assert_allclose(data.x[:, 0] * 255, images, atol=1e-4)
    assert data.x.max() == 1.0 and data.y.tolist() == labels.tolist()
    assert read_idx(tmp_path / f"labels-idx1-ubyte{'.gz' if gz else ''}").dtype == np.uint8
    ints = np.arange(6, dtype=">i4").reshape(2, 3)
    (tmp_path / "ints.idx").write_bytes(idx_bytes(ints, 0x0C))
    np.testing.assert_array_equal(read_idx(tmp_path / "ints.idx"), ints)


def test_idx_errors(tmp_path):
    images = np.zeros((4, 3, 3), np.uint8)
    img, lab = write_idx(tmp_path, images, np.zeros(4, np.uint8))
    raw = img.read_bytes()

    (tmp_path / "cut").write_bytes(raw[:-5])
    err = data_error(read_idx, tmp_path / "cut")
    assert "truncated" in err.message and err.location.endswith(f": byte {len(raw) - 5}")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(raw[:-5]))
    assert data_error(read_idx, tmp_path / "cut.gz").location.endswith(": byte 47")
    (tmp_path / "badgz.gz").write_bytes(gzip.compress(raw)[:20])
    assert "gzip" in data_error(read_idx, tmp_path / "badgz.gz").message
    (tmp_path / "magic").write_bytes(b"\x12\x34" + raw[2:])
    err = data_error(read_idx, tmp_path / "magic")
    assert "magic number 0x12340803" in err.message and err.location.endswith(": byte 0")
    (tmp_path / "head").write_bytes(raw[:10])
    assert "header" in data_error(read_idx, tmp_path / "head").message
    (tmp_path / "long").write_bytes(raw + b"\0")
    assert "unexpected bytes" in data_error(read_idx, tmp_path / "long").message
    assert "not found" in data_error(read_idx, tmp_path / "missing").message

    lab.write_bytes(idx_bytes(np.zeros(5, np.uint8)))
    err = data_error(load_idx, img, lab)
    assert "4 images but 5 labels" in err.message
    err = data_error(load_idx, lab, lab)
    assert "expected images [N, H, W]" in err.message


# ---------------------------------------------------------------------------- image folder

def write_png(path: Path, size: tuple[int, int], value: int, mode: str = "RGB") -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    color = (value, 0, 255 - value) if mode == "RGB" else value
    Image.new(mode, size, color).save(path)


def test_image_folder(tmp_path):
    write_png(tmp_path / "cat" / "a.png", (6, 4), 200)
    write_png(tmp_path / "cat" / "b.png", (6, 4), 100, mode="L")
    write_png(tmp_path / "dog" / "c.png", (6, 4), 0)
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    data = load_images(tmp_path)
    assert data.x.shape == (3, 3, 4, 6) and data.classes == ("cat", "dog")
    assert data.y.tolist() == [0, 0, 1]
    np.testing.assert_allclose(data.x[0, :, 0, 0], [200 / 255, 0, 55 / 255], atol=1e-6)
    gray = load_images(tmp_path, size=8, grayscale=True)
    assert gray.x.shape == (3, 1, 8, 8) and 0 <= gray.x.min() and gray.x.max() <= 1
    assert load_images(tmp_path, size=(2, 3)).sample_shape == (3, 2, 3)


def test_image_folder_errors(tmp_path):
    write_png(tmp_path / "a" / "1.png", (4, 4), 10)
    write_png(tmp_path / "a" / "2.png", (5, 4), 10)
    err = data_error(load_images, tmp_path)
    assert err.location == str(tmp_path / "a" / "2.png") and "size=" in err.help
    assert load_images(tmp_path, size=4).x.shape == (2, 3, 4, 4)
    (tmp_path / "a" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    err = data_error(load_images, tmp_path, size=4)
    assert err.location == str(tmp_path / "a" / "3.png") and "cannot read" in err.message
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "3.png").unlink()
    assert "holds no images" in data_error(load_images, tmp_path, size=4).message
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no class subfolders" in data_error(load_images, empty).message
    assert "not found" in data_error(load_images, tmp_path / "missing").message


# --------------------------------------------------------------------------------- splits

def test_split_sizes_and_stratification():
    y = np.repeat(np.arange(3), [100, 60, 40])  # 200 samples
    train, val, test = split_indices(y, (0.7, 0.15, 0.15), seed=0)
    assert (len(train), len(val), len(test)) == (140, 30, 30)
    assert np.array_equal(np.sort(np.concatenate([train, val, test])), np.arange(200))
    for part, fraction in ((train, 0.7), (val, 0.15), (test, 0.15)):
        assert np.bincount(y[part], minlength=3).tolist() == [
            round(100 * fraction), round(60 * fraction), round(40 * fraction)]

    digits = load_builtin("digits").y
    parts = split_indices(digits, seed=3)
    # 1797 · (0.7, 0.15, 0.15) = (1257.9, 269.55, 269.55): the .55 tie goes either way
    assert len(parts[0]) == 1258 and sorted(len(p) for p in parts[1:]) == [269, 270]
    counts = np.bincount(digits)
    for part, fraction in zip(parts, (0.7, 0.15, 0.15)):
        assert np.all(np.abs(np.bincount(digits[part]) - counts * fraction) <= 1.0)


def test_split_determinism_and_options():
    y = np.repeat(np.arange(4), 25)
    a, b = split_indices(y, seed=7), split_indices(y, seed=7)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    c = split_indices(y, seed=8)
    assert not np.array_equal(a[0], c[0])
    train, val, test = split_indices(100, (0.8, 0.2, 0.0), seed=1)
    assert (len(train), len(val), len(test)) == (80, 20, 0)
    assert [len(p) for p in split_indices(10, (0.5, 0.5))] == [5, 5, 0]
    names = np.array(["a", "b"] * 10)
    train, _, _ = split_indices(names, (0.5, 0.5, 0.0))
    assert sorted(names[train].tolist()) == ["a"] * 5 + ["b"] * 5
    with pytest.raises(ValueError, match="sum to 1"):
        split_indices(10, (0.7, 0.2, 0.2))
    with pytest.raises(ValueError):
        split_indices(10, (1.2, -0.2, 0.0))


def test_kfold():
    y = np.repeat(np.arange(2), [30, 20])
    folds = kfold_indices(y, 5, seed=0)
    assert len(folds) == 5
    assert np.array_equal(np.sort(np.concatenate([v for _, v in folds])), np.arange(50))
    for train, val in folds:
        assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == 50
        assert np.bincount(y[val]).tolist() == [6, 4]
    again = kfold_indices(y, 5, seed=0)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))
    assert len(kfold_indices(12, 3, seed=1)) == 3
    with pytest.raises(ValueError):
        kfold_indices(5, 6)


# ----------------------------------------------------------------------------- normaliser

def test_normalizer_images_per_channel_from_train_only():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3, 4, 4)).astype(np.float32) * [[[2.0]], [[0.5]], [[1.0]]] + 3
    x = x.astype(np.float32)
    train, _, test = split_indices(40, (0.5, 0.0, 0.5), seed=0)
    norm = Normalizer().fit(x[train])
    np.testing.assert_allclose(norm.mean, x[train].mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(norm.std, x[train].std(axis=(0, 2, 3)), rtol=1e-4)
    assert not np.allclose(norm.mean, x.mean(axis=(0, 2, 3)), rtol=1e-6)  # not the full data
    z = norm.transform(x[train])
    assert z.dtype == np.float32
    np.testing.assert_allclose(z.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=(0, 2, 3)), 1, atol=1e-4)
    state = json.loads(json.dumps(norm.state()))
    again = Normalizer.from_state(state)
    np.testing.assert_array_equal(again.transform(x[test]), norm.transform(x[test]))


def test_normalizer_features_constant_and_sequences():
    data = load_builtin("digits")
    norm = Normalizer().fit(data.x)
    assert len(norm.mean) == 64 and norm.std[0] == 1.0  # pixel 0 is always 0
    assert np.all(np.isfinite(norm.transform(data.x)))
    seq = load_builtin("digits", sequence=True).x
    per_feature = Normalizer(axis=-1).fit(seq)
    np.testing.assert_allclose(per_feature.mean, seq.mean(axis=(0, 1)), rtol=1e-5)
    with pytest.raises(ValueError, match="not fitted"):
        Normalizer().transform(seq)
    with pytest.raises(DataError):
        per_feature.transform(np.zeros((2, 8, 5), np.float32))


# --------------------------------------------------------------------------------- checks

def test_check_labels():
    check_labels(np.array([0, 1, 2]), 3)
    err = data_error(check_labels, np.array([0, 3, 1, -1]), 3, location="data.csv")
    assert err.message == "label 3 of sample 1 is outside [0, 3) (2 bad labels in all)"
    assert err.location == "data.csv"
    assert "integers" in data_error(check_labels, np.array([0.5, 1.0]), 2).message


def test_check_sample_shape():
    digits = load_builtin("digits")
    check_sample_shape(digits, (64,))
    err = data_error(check_sample_shape, digits, (1, 8, 8))
    assert err.message == "data samples are [64] but the model input is [1, 8, 8]"
    assert err.help == "use digits(as_image=true)"
    assert data_error(check_sample_shape, digits, [1, 32, 32]).help == \
        "use digits(as_image=true, resize=32)"
    assert data_error(check_sample_shape, digits, (8, 8)).help == \
        "use digits(sequence=true) for 8 rows of 8 pixels"
    rgb = Dataset(np.zeros((2, 3, 8, 8), np.float32), np.zeros(2, np.int64), "classification")
    assert "grayscale=true" in data_error(check_sample_shape, rgb, (1, 8, 8)).help
    assert "flatten" in data_error(check_sample_shape, rgb, (192,)).help


def test_dataset_rejects_empty_and_mismatch():
    assert "empty" in data_error(Dataset, np.zeros((0, 2), np.float32), np.zeros(0),
                                 "regression").message
    data_error(Dataset, np.zeros((2, 2), np.float32), np.zeros(3), "regression")
    sub = load_builtin("iris").subset(np.array([0, 50, 100]))
    assert sub.y.tolist() == [0, 1, 2] and sub.num_classes == 3


def test_render():
    err = DataError("the dataset is empty", "data.csv:3:1", "add rows")
    assert err.render() == "error: the dataset is empty\n  --> data.csv:3:1\n  = help: add rows"
    assert str(err) == "data.csv:3:1: the dataset is empty (help: add rows)"
