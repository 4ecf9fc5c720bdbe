"""What a recipe can say: every setting, every choice with its signature, and the facts of the
built-in data sets. Adding a loss, an optimizer or a schedule starts here; the runtime then
implements it under the same name, with the same argument names.
"""

from __future__ import annotations

from typing import Any

from nnspec.spec.recipe.args import NODE, REQUIRED, Param, Signature

_INF = "(0, inf)"


def P(name: str, type: str, default: Any = REQUIRED, range: str | None = None, *,
      kw: bool = False, choices: tuple[str, ...] = (), shown: bool = True) -> Param:
    """A parameter; ``kw``: keyword-only."""
    return Param(name, type, default, range, choices, positional=not kw, shown=shown)


def _sigs(*signatures: Signature) -> dict[str, Signature]:
    return {s.kind: s for s in signatures}


def _lr(default: float) -> Param:
    return P("lr", "float", default, _INF, kw=True)


_BETA_9, _BETA_99 = (P("beta", "float", b, "[0, 1)", kw=True) for b in (0.9, 0.99))
_EPS = P("eps", "float", 1e-8, _INF, kw=True)
_ADAM = (P("betas", "pair", (0.9, 0.999), "[0, 1)", kw=True),
         P("beta1", "float", None, "[0, 1)", kw=True, shown=False),  # the course's spelling
         P("beta2", "float", None, "[0, 1)", kw=True, shown=False), _EPS)
_TASK = P("task", "name", None, kw=True, choices=("classification", "regression"))
_RESIZE = P("resize", "int", None, "[1, 4096]", kw=True)

DATA = _sigs(
    Signature("digits", (P("as_image", "bool", False, kw=True), _RESIZE,
                         P("sequence", "bool", False, kw=True))),
    Signature("iris"), Signature("breast_cancer"), Signature("diabetes"), Signature("wine"),
    Signature("fashion_mnist", (P("part", "name", "train", kw=True, choices=("train", "test")),
                                _RESIZE)),
    Signature("csv", (P("path", "str"), P("target", "label", -1, kw=True),
                      P("header", "bool", True, kw=True), _TASK)),
    Signature("npz", (P("path", "str"), P("x", "str", "x", kw=True), P("y", "str", "y", kw=True),
                      _TASK)),
    Signature("idx", (P("images", "str"), P("labels", "str"))),
    Signature("images", (P("folder", "str"), P("size", "size", None, "[1, inf)", kw=True),
                         P("grayscale", "bool", False, kw=True))),
    # generated segmentation images (runtime/data/sources.py make_shapes; the same limits there)
    Signature("shapes", (P("n", "int", 512, "[1, 100000]", kw=True),
                         P("size", "int", 32, "[16, 512]", kw=True),
                         P("max_shapes", "int", 3, "[1, 8]", kw=True),
                         P("noise", "float", 0.1, "[0, 1]", kw=True),
                         P("seed", "int", 0, "[0, inf)", kw=True))),
    # characters of a UTF-8 file: windows of `context` ids and their next-token targets
    # (spec/recipe/textdata.py; runtime/data/sources.py load_text)
    Signature("text", (P("path", "str"), P("context", "int", REQUIRED, "[1, 1000000]", kw=True),
                       P("stride", "int", None, "[1, inf)", kw=True))),
)
# the arguments of a data source that are file paths (resolved against the spec's folder)
DATA_PATHS = {"csv": ("path",), "npz": ("path",), "idx": ("images", "labels"),
              "images": ("folder",), "text": ("path",)}
LOSSES = ("l1", "mse", "bce", "bce_logits", "cross_entropy", "hinge", "nll")
OPTIMIZERS = _sigs(
    Signature("gd", (_lr(0.01),)), Signature("sgd", (_lr(0.01),)),
    Signature("momentum", (_lr(0.01), _BETA_9)), Signature("nesterov", (_lr(0.01), _BETA_9)),
    Signature("rmsprop", (_lr(0.01), _BETA_99, _EPS)),
    Signature("adam", (_lr(0.001), *_ADAM)),
    Signature("adamw", (_lr(0.001), *_ADAM, P("weight_decay", "float", 0.01, "[0, inf)", kw=True))),
)
SCHEDULES = _sigs(
    Signature("inverse_time", (P("t", "float", REQUIRED, _INF),)),
    Signature("step", (P("every", "int", REQUIRED, "[1, inf)"),
                       P("factor", "float", 0.1, "(0, 1]"))),
    Signature("exponential", (P("t", "float", REQUIRED, "(0, 1]"),)),
    Signature("inverse_sqrt"),
    Signature("cosine", (P("min_lr", "float", 0.0, "[0, inf)"),)),
    Signature("warmup", (P("epochs", "int", REQUIRED, "[1, inf)"), P("then", NODE, None, kw=True))),
)
REGULARIZERS = _sigs(
    *(Signature(k, (P("value", "float", REQUIRED, "[0, inf)"),))
      for k in ("l1", "l2", "weight_decay")),
    Signature("max_norm", (P("value", "float", REQUIRED, _INF),)),
)
_GAIN = (P("gain", "float", 1.0, _INF, kw=True),)
_NONLINEARITY = (P("nonlinearity", "name", "relu", kw=True,
                   choices=("relu", "leaky_relu", "tanh", "sigmoid", "linear")),)
INITS = _sigs(
    Signature("default"), Signature("zeros"), Signature("constant", (P("value", "float"),)),
    Signature("normal", (P("std", "float", 0.01, _INF),)),
    Signature("uniform", (P("a", "float", 0.05, _INF),)),
    *(Signature(k, _GAIN) for k in ("xavier", "xavier_uniform", "xavier_normal")),
    *(Signature(k, _NONLINEARITY) for k in ("kaiming", "kaiming_uniform", "kaiming_normal")),
)
# `init from("run/", match="features.*")`: weights of a safetensors file (or a run's best)
WEIGHTS_FROM = Signature("from", (P("path", "str"), P("match", "patterns", "*", kw=True)))
# `lr_groups group("features.*", lr=1e-4)`: the parameters a pattern matches, at their own lr
LR_GROUP = Signature("group", (P("match", "patterns"), P("lr", "float", REQUIRED, _INF, kw=True)))
FREEZE = P("pattern", "patterns")
SOLVERS = ("gradient", "normal_equation", "knn")
# `cv kfold(5)`: k-fold cross-validation on the training split, per-fold and mean ± std
# metrics (runtime/experiments/cv.py); with `solver knn`, `cv kfold(5, k=(1, 3, 5, 7))` also chooses the
# model argument `k` (runtime/experiments/knn.py)
CV = Signature("kfold", (P("folds", "int", REQUIRED, "[2, inf)"),
                         P("k", "numbers", None, "[1, inf)", kw=True)))
CLIPS = _sigs(*(Signature(k, (P("value", "float", REQUIRED, _INF),)) for k in ("norm", "value")))
AUGMENTS = _sigs(
    Signature("flip", (P("direction", "name", "horizontal", choices=("horizontal", "vertical")),
                       P("p", "float", 0.5, "[0, 1]", kw=True))),
    Signature("random_crop", (P("size", "size", REQUIRED, "[1, inf)"),
                              P("padding", "int", 0, "[0, inf)", kw=True))),
    Signature("brightness", (P("delta", "float", REQUIRED, "[0, inf)"),)),
    Signature("contrast", (P("delta", "float", REQUIRED, "[0, 1]"),)),
    Signature("normalize", (P("mean", "numbers", None, kw=True),
                            P("std", "numbers", None, _INF, kw=True))),
)
METRICS = ("accuracy", "mae", "mse", "iou", "perplexity")
MONITORS = ("val_loss", "val_accuracy", "val_mae", "val_mse", "val_perplexity")
EARLY_STOP = Signature("early_stop", (
    P("patience", "int", REQUIRED, "[1, inf)"),
    P("monitor", "name", "val_loss", kw=True, choices=MONITORS),
    P("min_delta", "float", 0.0, "[0, inf)", kw=True),
))
# `ensemble 5` / `ensemble 5, bagging`: the members differ by seed only, or also by the
# bootstrap sample of the training split each one sees; at most 64 (one ONNX graph holds all)
ENSEMBLE = Signature("ensemble", (P("members", "int", REQUIRED, "[2, 64]"),
                                  P("mode", "name", "seeds", choices=("seeds", "bagging"))))
FRACTION = P("fraction", "float", range="[0, 1]")
SCALARS = {
    "batch": P("batch", "int", 32, "[1, inf)"),
    "epochs": P("epochs", "int", 10, "[1, inf)"),
    "seed": P("seed", "int", 0, "[0, inf)"),
    "target": P("target", "name", "labels", choices=("labels", "input")),
    "device": P("device", "name", "auto", choices=("auto", "cpu", "cuda")),
    "solver": P("solver", "name", "gradient", choices=SOLVERS),
}
# every setting, in the order the docs list them, with an example line
EXAMPLES = {
    "data": "data digits(as_image=true, resize=32)", "split": "split 0.7 / 0.15 / 0.15",
    "batch": "batch 64", "epochs": "epochs 30", "loss": "loss cross_entropy",
    "target": "target input", "optimizer": "optimizer adam(lr=1e-3)",
    "schedule": "schedule step(every=10, factor=0.5)",
    "regularize": "regularize l2(1e-4), max_norm(3.0)", "init": "init kaiming",
    "clip": "clip norm(1.0)", "augment": "augment flip(horizontal), random_crop(32, padding=4)",
    "early_stop": "early_stop patience=5", "metrics": "metrics accuracy", "seed": "seed 0",
    "device": "device auto", "solver": "solver normal_equation",
    "freeze": 'freeze "features.*"', "lr_groups": 'lr_groups group("features.*", lr=1e-4)',
    "ensemble": "ensemble 5, bagging", "cv": "cv kfold(5)",
}
SETTINGS = tuple(EXAMPLES)
# where a name belongs when it is used in the wrong setting (`loss adam`)
ELSEWHERE = {
    **{k: "a data source: `data ...`" for k in DATA}, **{k: "a loss: `loss ...`" for k in LOSSES},
    **{k: "an optimizer: `optimizer ...`" for k in OPTIMIZERS},
    **{k: "a schedule: `schedule ...`" for k in SCHEDULES},
    **{k: "a regularizer: `regularize ...`" for k in REGULARIZERS},
    **{k: "an init scheme: `init ...`" for k in INITS},
    **{k: "an augmentation: `augment ...`" for k in AUGMENTS},
    **{k: "a metric: `metrics ...`" for k in METRICS},
    **{k: "a solver: `solver ...`" for k in SOLVERS},
    "from": 'weights to start from: `init from("run/", match="...")`',
    "group": "a learning-rate group: `lr_groups group(...)`",
    "kfold": "cross-validation: `cv kfold(5)`",
}

# -- the built-in data sets ---------------------------------------------------------------------
# name: (samples, sample shape, classes; None for regression)
BUILTIN_DATA: dict[str, tuple[int, tuple[int, ...], int | None]] = {
    "digits": (1797, (64,), 10),
    "iris": (150, (4,), 3),
    "breast_cancer": (569, (30,), 2),
    "diabetes": (442, (10,), None),
    "wine": (178, (13,), 3),
    "fashion_mnist": (60000, (1, 28, 28), 10),
}


# the classes of `shapes`, per pixel (runtime/data/sources.py generates them); the sets labelled per pixel
SHAPE_CLASSES = ("background", "disc", "square", "triangle")
PER_PIXEL_DATA = ("shapes",)


def data_facts(kind: str, args: dict[str, Any]) -> dict[str, Any]:
    """What is known of a data source before reading it: shape, classes, samples, task."""
    if kind in BUILTIN_DATA:
        samples, shape, classes = BUILTIN_DATA[kind]
        if args.get("resize") is not None:
            shape = (1, args["resize"], args["resize"])
        elif args.get("sequence"):
            shape = (8, 8)
        elif args.get("as_image"):
            shape = (1, 8, 8)
        if args.get("part") == "test":
            samples = 10000
        task = "classification" if classes is not None else "regression"
        return {"shape": shape, "classes": classes, "samples": samples, "task": task}
    if kind == "images":
        size = args.get("size")
        channels = 1 if args.get("grayscale") else 3
        return {"shape": None if size is None else (channels, *size), "task": "classification"}
    if kind == "shapes":  # a label per pixel: background and the three kinds of shape
        return {"shape": (1, args["size"], args["size"]), "classes": len(SHAPE_CLASSES),
                "samples": args["n"], "task": "classification"}
    if kind == "idx":
        return {"task": "classification"}
    if kind == "text":  # the vocabulary and windows come from the file (builder: _s_data)
        return {"shape": (args["context"],), "task": "classification"}
    return {"task": args.get("task")}  # csv, npz: as declared, else known once read
