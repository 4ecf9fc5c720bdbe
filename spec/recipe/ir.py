"""The recipe IR: how to fit one model on data, checked and complete (every default filled in).

Plain frozen pydantic data that round-trips through JSON exactly, like the model IR. The
training loop reads nothing else: a value missing here is a bug of the recipe stage.
Epochs are zero-based wherever a formula uses them.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from nnspec.spec.source import Span

Scalar = bool | int | float | str
Value = Scalar | tuple[Scalar, ...] | None
Scheme = tuple[str, dict[str, Value]]  # an init scheme: (name, arguments)

Loss = Literal["l1", "mse", "bce", "bce_logits", "cross_entropy", "hinge", "nll"]
OptimizerKind = Literal["gd", "sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw"]
ScheduleKind = Literal["inverse_time", "step", "exponential", "inverse_sqrt", "cosine", "warmup"]
Task = Literal["classification", "regression"]

CLASSIFICATION_LOSSES = ("cross_entropy", "nll", "hinge", "bce", "bce_logits")
REGRESSION_LOSSES = ("mse", "l1")

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class DataSpec(BaseModel):
    """A data source and its options, named as the runtime's loaders take them.

    ``shape``, ``classes``, ``samples`` and ``task`` are what is known at compile time (the
    built-in sets); None where only the data itself can tell.
    """

    model_config = _FROZEN

    kind: str  # digits, iris, breast_cancer, diabetes, wine, fashion_mnist, csv, npz, idx, images, text
    args: dict[str, Value] = {}
    shape: tuple[int, ...] | None = None  # one sample, batch excluded
    classes: int | None = None
    samples: int | None = None
    task: Task | None = None


class OptimizerSpec(BaseModel):
    """The update rule; only the hyperparameters of ``kind`` are set, the others are None.

    beta: momentum / nesterov (velocity decay) and rmsprop (squared-gradient decay);
    betas and eps: adam / adamw (eps also rmsprop); weight_decay: adamw's decoupled decay.
    """

    model_config = _FROZEN

    kind: OptimizerKind
    lr: float
    beta: float | None = None
    betas: tuple[float, float] | None = None
    eps: float | None = None
    weight_decay: float | None = None

    def hyperparameters(self) -> dict[str, Any]:
        """The kind's own hyperparameters, e.g. {"betas": (0.9, 0.999), "eps": 1e-08}."""
        return self.model_dump(exclude={"kind", "lr"}, exclude_none=True)


class ScheduleSpec(BaseModel):
    """A learning-rate schedule, a pure function of the epoch (see :meth:`lr`)."""

    model_config = _FROZEN

    kind: ScheduleKind
    args: dict[str, Value] = {}  # t; every, factor; t; -; min_lr; epochs
    then: ScheduleSpec | None = None  # warmup only: the schedule after the warm-up

    def lr(self, lr0: float, epoch: int, epochs: int) -> float:
        """The learning rate of zero-based ``epoch`` in a run of ``epochs`` epochs."""
        a: dict[str, Any] = self.args
        e = epoch
        if self.kind == "inverse_time":
            return lr0 / (1 + float(a["t"]) * e)
        if self.kind == "step":
            return lr0 * float(a["factor"]) ** (e // int(a["every"]))
        if self.kind == "exponential":
            return lr0 * float(a["t"]) ** e
        if self.kind == "inverse_sqrt":
            return lr0 / math.sqrt(e + 1)
        if self.kind == "cosine":
            low = float(a["min_lr"])
            return low + (lr0 - low) * (1 + math.cos(math.pi * e / max(epochs - 1, 1))) / 2
        warm = int(a["epochs"])  # warmup
        if e < warm:
            return lr0 * (e + 1) / (warm + 1)
        return self.then.lr(lr0, e - warm, epochs - warm) if self.then is not None else lr0


class Regularizer(BaseModel):
    """l1 / l2: λ Σ|w| / λ Σw² added to the loss; weight_decay: the optimizer's L2 decay λ;
    max_norm: every unit's incoming weight vector rescaled to ‖w‖ ≤ c after each step."""

    model_config = _FROZEN

    kind: Literal["l1", "l2", "weight_decay", "max_norm"]
    value: float


class WeightsSource(BaseModel):
    """`init from("base/", match="features.*")`: after the init scheme, the model's tensors
    (parameters and buffers) whose state names match one of the glob patterns ``match`` are
    copied from a safetensors file."""

    model_config = _FROZEN

    path: str  # the file, or a run directory (its best.safetensors); resolved, absolute
    written: str  # the path as the spec wrote it, for messages
    match: tuple[str, ...] = ("*",)


class InitSpec(BaseModel):
    """Initial weights: ``default`` for every op with weights (None: torch's own), and
    ``per_kind`` by op kind as the graph names it (``conv``, ``linear``...); then
    ``source``'s tensors where it gives some."""

    model_config = _FROZEN

    default: Scheme | None = None
    per_kind: dict[str, Scheme] = {}
    source: WeightsSource | None = None

    def scheme(self, op: str) -> Scheme | None:
        return self.per_kind.get(op, self.default)


class LrGroup(BaseModel):
    """The trainable parameters that one of the glob patterns ``match`` names, trained at
    ``lr`` instead of the optimizer's; a schedule scales it by the same factor:
    α_g(e) = lr · α(e) / α0."""

    model_config = _FROZEN

    match: tuple[str, ...]
    lr: float


class ClipSpec(BaseModel):
    """Gradient clipping before each step: norm (total L2 norm ≤ value), or value (each
    gradient element clamped to [-value, value])."""

    model_config = _FROZEN

    kind: Literal["norm", "value"]
    value: float


class AugmentSpec(BaseModel):
    """One transform of the training pipeline (flip, random_crop, brightness, contrast,
    normalize), its options named as the runtime's transforms take them."""

    model_config = _FROZEN

    kind: str
    args: dict[str, Value] = {}


class EarlyStopSpec(BaseModel):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience``
    epochs; ``mode`` says whether smaller (loss, mae, mse) or larger (accuracy) is better."""

    model_config = _FROZEN

    patience: int
    monitor: str  # val_loss, val_accuracy, val_mae, val_mse
    mode: Literal["min", "max"]
    min_delta: float = 0.0


class EnsembleSpec(BaseModel):
    """`ensemble 5` / `ensemble 5, bagging`: ``members`` copies of the model, member k
    (zero-based) trained with seed = the recipe's seed + k on the same split; ``bagging``:
    each on its own bootstrap sample of the training split. Their predictions are averaged
    (probabilities for classifiers, outputs for regression: runtime/experiments/ensemble.py)."""

    model_config = _FROZEN

    members: int
    mode: Literal["seeds", "bagging"] = "seeds"


class CvSpec(BaseModel):
    """`cv kfold(folds)`: ``folds``-fold cross-validation on the training split (stratified
    for class labels, seeded by the recipe's seed). Each fold's model trains on the other
    folds and is scored on its own; the run reports every fold and the mean ± std
    (runtime/experiments/cv.py), then trains the final model on the whole split as usual.

    With `solver knn`, ``k=(...)`` chooses the model argument ``k`` instead: the value of
    best mean validation accuracy, the smallest on a tie (runtime/experiments/knn.py)."""

    model_config = _FROZEN

    folds: int
    k: tuple[int, ...] | None = None


class Recipe(BaseModel):
    """One ``train`` block, checked against its model and complete."""

    model_config = _FROZEN

    name: str  # `as name`, else the model's name
    model: str
    model_args: dict[str, Value] = {}  # as written in `train Model(...)`; the rest are defaults
    data: DataSpec
    split: tuple[float, float, float]  # train, val, test
    batch: int | None  # None: full batch
    epochs: int
    loss: Loss
    target: Literal["labels", "input"] = "labels"  # input: reconstruct the input (autoencoder)
    optimizer: OptimizerSpec
    schedule: ScheduleSpec | None = None
    regularize: tuple[Regularizer, ...] = ()
    init: InitSpec = InitSpec()
    clip: ClipSpec | None = None
    augment: tuple[AugmentSpec, ...] = ()
    early_stop: EarlyStopSpec | None = None
    metrics: tuple[str, ...]
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # normal_equation: θ by least squares on the training split, one "epoch" (runtime/experiments/solver.py)
    # knn: store the training split in the `knn` layer, k chosen by `cv` (runtime/experiments/knn.py)
    solver: Literal["gradient", "normal_equation", "knn"] = "gradient"
    freeze: tuple[str, ...] = ()  # glob patterns of state names kept as initialised (or loaded)
    lr_groups: tuple[LrGroup, ...] = ()
    ensemble: EnsembleSpec | None = None
    cv: CvSpec | None = None
    span: Span

    @model_validator(mode="before")
    @classmethod
    def _one_solve(cls, data: Any) -> Any:
        """A closed-form run is one exact solve: one epoch, the whole split, whatever an
        override (`nnspec train --epochs`) asks; solving again would give the same θ. So is
        storing the training split for `solver knn`."""
        if isinstance(data, dict) and data.get("solver") in ("normal_equation", "knn"):
            data = {**data, "epochs": 1, "batch": None}
        return data

    def lr_at(self, epoch: int) -> float:
        """The learning rate of zero-based ``epoch``."""
        if self.schedule is None:
            return self.optimizer.lr
        return self.schedule.lr(self.optimizer.lr, epoch, self.epochs)

    def regularizer(self, kind: str) -> float | None:
        """The strength of one regularizer, or None when the recipe has none of that kind."""
        return next((r.value for r in self.regularize if r.kind == kind), None)

    def describe(self) -> str:
        """One line for people: `recipe small: LeNet5 on digits, cross_entropy, adam(...)`."""
        hp = ", ".join(
            f"{k}={_show(v)}"
            for k, v in {"lr": self.optimizer.lr, **self.optimizer.hyperparameters()}.items()
        )
        batch = "full batch" if self.batch is None else f"batch {self.batch}"
        if self.solver == "normal_equation":
            return (f"recipe {self.name}: {self.model} on {self.data.kind}, {self.loss}, "
                    "normal equation (least squares, closed form)")
        if self.solver == "knn":
            chosen = f", k by {self.cv.folds}-fold cross-validation among {list(self.cv.k)}" \
                if self.cv is not None and self.cv.k is not None else ""
            return f"recipe {self.name}: {self.model} on {self.data.kind}, k nearest neighbours{chosen}"
        members = "" if self.ensemble is None else \
            f", an ensemble of {self.ensemble.members} ({self.ensemble.mode})"
        if self.cv is not None:
            members += f", {self.cv.folds}-fold cross-validation"
        return (
            f"recipe {self.name}: {self.model} on {self.data.kind}, {self.loss}, "
            f"{self.optimizer.kind}({hp}), {self.epochs} epochs, {batch}{members}"
        )


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(_show(v) for v in value) + ")"
    return f"{value:g}" if isinstance(value, float) else str(value)
