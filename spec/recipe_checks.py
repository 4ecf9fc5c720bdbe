"""Recipe checks: settings against each other, against the data sets known at compile time,
and against the model's graph.

The built-in data sets have fixed sample shapes and class counts, so `nnspec check` can say,
before any data is read, that digits samples are [64] but the model wants [1, 32, 32].
Each check reads settings that were read without error only (a failed one is POISON).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from . import ast, codes
from .diagnostics import Diagnostic, error, warning
from .ir import Graph, GraphInput, GraphOutput, Node
from .recipe_args import POISON
from .recipe_ir import CLASSIFICATION_LOSSES, DataSpec, InitSpec
from .recipe_tables import BUILTIN_DATA
from .source import Span

CLASS_SCORES = ("cross_entropy", "nll", "hinge")  # losses that read [C] class scores
IMAGE_AUGMENTS = ("flip", "random_crop", "brightness", "contrast")
RELU_LIKE = ("relu", "leaky_relu", "prelu", "elu", "gelu")
SATURATING = ("tanh", "sigmoid")


def shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def data_help(data: DataSpec, want: tuple[int, ...]) -> str | None:
    """The options of the data source that give samples of the model's input shape."""
    square = len(want) == 3 and want[1] == want[2]
    if data.kind == "digits":
        if want == (64,):
            return "use digits() for 64 features"
        if want == (8, 8):
            return "use digits(sequence=true) for 8 rows of 8 pixels"
        if square and want[0] == 1:
            return f"use digits(as_image=true{'' if want[1] == 8 else f', resize={want[1]}'})"
    if data.kind == "fashion_mnist" and square and want[0] == 1:
        return "use fashion_mnist()" if want[1] == 28 else f"use fashion_mnist(resize={want[1]})"
    if data.kind == "images" and len(want) == 3 and want[0] in (1, 3):
        size = want[1] if square else f"({want[1]}, {want[2]})"
        gray = ", grayscale=true" if want[0] == 1 else ""
        return f'use images("{data.args.get("folder")}", size={size}{gray})'
    if data.shape is not None and math.prod(data.shape) == math.prod(want):
        return (f"both hold {math.prod(want)} values: declare the input as "
                f"{shape_text(data.shape)} and `reshape` inside the model")
    return None


def data_note(data: DataSpec) -> list[str]:
    if data.kind not in BUILTIN_DATA or data.shape is None:
        return []
    what = f"{data.classes} classes" if data.classes else "a regression target"
    return [f"{data.kind}: {data.samples:,} samples of {shape_text(data.shape)}, {what}"]


class Checks:
    """Mixed into the recipe builder, whose settings (``values``, POISON where one failed),
    spans and ``diags`` the checks read."""

    train: ast.TrainDef
    diags: list[Diagnostic]
    values: dict[str, Any]
    spans: dict[str, Span]  # each given setting's value
    items: dict[str, list[Span]]  # each item of a list setting (augment, metrics, early_stop)
    given: dict[str, ast.Setting]
    init_spans: dict[str, Span]  # each `kind=scheme` of `init`

    def _err(self, code: str, message: str, span: Span | None, label: str = "", **kw: Any) -> None:
        self.diags.append(error(code, message, span or self.train.model_span, label, **kw))

    def _warn(self, code: str, message: str, span: Span, label: str = "", **kw: Any) -> None:
        self.diags.append(warning(code, message, span, label, **kw))

    def _ok(self, *names: str) -> bool:
        return all(self.values.get(n) is not POISON for n in names)

    # == settings against settings ======================================================
    def cross_check(self) -> None:
        v = self.values
        loss, data, target = v["loss"], v["data"], v["target"]
        if self._ok("loss", "target", "metrics") and "metrics" in self.given:
            self._check_metrics(loss, target)
        if self._ok("loss", "target"):
            if target == "input" and loss in CLASS_SCORES:
                self._err(codes.RECIPE_TASK, f"`target input` reconstructs the input, but {loss} "
                          "needs class labels", self.spans.get("loss"), "needs class labels",
                          help="use mse or l1 (bce for inputs in [0, 1])")
                v["loss"] = POISON  # the loss is wrong: the model checks would only echo it
            elif target == "labels" and data is not POISON and data.task is not None:
                self._check_task(loss, data)
        self._check_early_stop()
        self._check_schedule()
        self._check_batch()

    def _check_task(self, loss: str, data: DataSpec) -> None:
        span = self.spans.get("loss")
        if data.task == "regression" and loss in CLASSIFICATION_LOSSES:
            self._err(codes.RECIPE_TASK, f"{data.kind} is a regression set (a number per sample), "
                      f"but {loss} is a classification loss", span, "a classification loss",
                      help="use `loss mse` (or l1) with an output [1]")
            self.values["loss"] = POISON
        elif loss in ("bce", "bce_logits") and data.classes is not None and data.classes != 2:
            self._err(codes.RECIPE_TASK, f"{loss} is binary, but {data.kind} has {data.classes} "
                      "classes", span, "two classes only",
                      help=f"use cross_entropy with an output [{data.classes}]")
            self.values["loss"] = POISON

    def _check_metrics(self, loss: str, target: str) -> None:
        for metric, span in zip(self.values["metrics"], self.items["metrics"]):
            if metric == "accuracy" and target == "input":
                self._err(codes.RECIPE_TASK, "accuracy needs class labels, but `target input` "
                          "reconstructs the input", span, metric, help="use metrics mae or mse")
            elif metric == "accuracy" and loss not in CLASSIFICATION_LOSSES:
                self._err(codes.RECIPE_TASK, f"accuracy needs class predictions, but {loss} trains "
                          "a regression", span, metric, help="use metrics mae or mse")
            elif metric in ("mae", "mse") and loss in CLASS_SCORES:
                self._err(codes.RECIPE_TASK, f"{metric} compares outputs with numeric targets, but "
                          f"{loss} reads class scores", span, metric, help="use metrics accuracy")

    def _check_early_stop(self) -> None:
        stop, split, metrics, epochs = (self.values[k] for k in ("early_stop", "split", "metrics",
                                                                 "epochs"))
        if stop in (None, POISON):
            return
        patience_span, monitor_span = self.items["early_stop"]
        if split is not POISON and split[1] == 0:
            split_span = self.spans.get("split")
            secondary = [(split_span, "no validation part")] if split_span else []
            self._err(codes.RECIPE_EARLY_STOP, f"early stopping watches {stop.monitor}, but the "
                      "split has no validation part", patience_span, f"patience={stop.patience}",
                      secondary=secondary, notes=[f"split {' / '.join(f'{f:g}' for f in split)}"],
                      help="give the validation part a fraction, e.g. `split 0.7 / 0.15 / 0.15`")
        metric = stop.monitor.removeprefix("val_")
        if metric != "loss" and metrics is not POISON and metric not in metrics:
            self._err(codes.RECIPE_EARLY_STOP, f"early stopping watches {stop.monitor}, but "
                      f"`{metric}` is not measured", monitor_span, "not in metrics",
                      notes=[f"metrics: {', '.join(metrics)}"], help=f"add `{metric}` to `metrics`")
        if epochs is not POISON and stop.patience >= epochs:
            self._warn(codes.RECIPE_NO_EFFECT, f"a patience of {stop.patience} epochs never stops "
                       f"a {epochs}-epoch run early", patience_span, f"patience={stop.patience}",
                       help=f"use a patience below {epochs}, or train longer")

    def _check_schedule(self) -> None:
        schedule, epochs, optimizer = (self.values[k] for k in ("schedule", "epochs", "optimizer"))
        if schedule in (None, POISON) or POISON in (epochs, optimizer):
            return
        span = self.spans["schedule"]
        if schedule.kind == "warmup" and schedule.args["epochs"] >= epochs:
            self._err(codes.RECIPE_VALUE, f"a warm-up of {schedule.args['epochs']} epochs leaves "
                      f"nothing of a {epochs}-epoch run", span, "warm-up too long",
                      help=f"warm up for fewer than {epochs} epochs")
        tail = schedule.then if schedule.kind == "warmup" else schedule
        if tail is not None and tail.kind == "cosine" and tail.args["min_lr"] >= optimizer.lr:
            self._err(codes.RECIPE_VALUE, f"cosine's min_lr {tail.args['min_lr']:g} is not below "
                      f"the learning rate {optimizer.lr:g}", span, "min_lr too high",
                      help=f"use a min_lr below {optimizer.lr:g}")
        if tail is not None and tail.kind == "step" and tail.args["every"] >= epochs:
            self._warn(codes.RECIPE_NO_EFFECT, f"step(every={tail.args['every']}) never steps in "
                       f"a {epochs}-epoch run", span, help=f"step every fewer than {epochs} epochs")

    def _check_batch(self) -> None:
        batch, optimizer, data, split = (self.values[k] for k in ("batch", "optimizer", "data",
                                                                  "split"))
        if "batch" not in self.spans or batch in (None, POISON):
            return
        span = self.spans["batch"]
        if optimizer is not POISON and optimizer.kind == "gd":
            self._warn(codes.RECIPE_NO_EFFECT, f"gd is full-batch gradient descent, but the batch "
                       f"is {batch}", span, help="write `batch full`, or use `optimizer sgd(...)` "
                       "for mini-batches")
        elif POISON not in (data, split) and data.samples is not None:
            train = round(data.samples * split[0])
            if batch > train:
                self._warn(codes.RECIPE_NO_EFFECT, f"batch {batch} is larger than the training "
                           f"set: {train} samples ({split[0]:g} of {data.samples:,} in "
                           f"{data.kind})", span, help="write `batch full` for full-batch training")

    # == settings against the model =======================================================
    def check_model(self, graph: Graph) -> None:
        if len(graph.inputs) != 1:
            names = ", ".join(i.name for i in graph.inputs)
            self._err(codes.RECIPE_DATA, f"a recipe feeds one input, but `{graph.name}` has "
                      f"{len(graph.inputs)} ({names})", self.train.model_span, "trained here")
            return
        inp, out = graph.inputs[0], graph.outputs[0]
        last = next((n for n in graph.nodes if n.name == out.value), None)
        self._check_data(graph, inp)
        self._check_loss(graph, inp, out, last)
        self._check_augment(graph, inp)
        self._check_init(graph)

    def _check_data(self, graph: Graph, inp: GraphInput) -> None:
        data: DataSpec = self.values["data"]
        if not self._ok("data", "augment") or data.shape is None:
            return
        span, at_input = self.spans["data"], [(inp.span, f"input {inp.name}: {inp.type}")]
        if inp.type.dtype != "float32":
            self._err(codes.RECIPE_DATA, f"{data.kind} gives float samples, but `{graph.name}`'s "
                      f"input {inp.name} is {inp.type} (token ids)", span, "float samples",
                      secondary=at_input)
            return
        shape, notes = data.shape, []
        for aug, aug_span in zip(self.values["augment"], self.items.get("augment", [])):
            if aug.kind != "random_crop" or len(shape) != 3:
                continue
            (h, w), pad = aug.args["size"], aug.args["padding"]
            ph, pw = shape[1] + 2 * pad, shape[2] + 2 * pad
            if (h, w) != inp.type.shape[1:]:
                return  # the crop does not fit the model: `_check_augment` says so
            if h > ph or w > pw:
                self._err(codes.RECIPE_AUGMENT, f"cannot crop {h}×{w} from {data.kind} images "
                          f"{shape_text(shape)} padded by {pad} ({ph}×{pw})", aug_span,
                          "crop too large", help=data_help(data, (shape[0], h, w)))
                return
            if (h, w) != shape[1:]:
                notes.append(f"random_crop turns {shape_text(shape)} into "
                             f"{shape_text((shape[0], h, w))}")
            shape = (shape[0], h, w)
        if shape != inp.type.shape:
            self._err(codes.RECIPE_DATA, f"data samples are {shape_text(shape)} but "
                      f"`{graph.name}`'s input {inp.name} is {inp.type}", span,
                      f"samples {shape_text(shape)}", secondary=at_input,
                      notes=notes + data_note(data), help=data_help(data, inp.type.shape))

    def _check_loss(self, graph: Graph, inp: GraphInput, out: GraphOutput,
                    last: Node | None) -> None:
        loss, target, data = (self.values[k] for k in ("loss", "target", "data"))
        if not self._ok("loss", "target"):
            return
        span = self.spans["loss"]
        at_output = [(last.span, f"output {out.type}")] if last is not None else []

        def fail(message: str, label: str, help: str | None = None) -> None:
            self._err(codes.RECIPE_LOSS, message, span, label, secondary=at_output, help=help)

        if target == "input":
            if out.type.shape != inp.type.shape:
                fail(f"`target input` compares the output with the input, but `{graph.name}` "
                     f"outputs {out.type} for an input {inp.type}", f"needs {inp.type}")
                return
        elif not self._loss_shape(loss, out, graph.name, fail):
            return
        elif data is not POISON and data.task is not None and not self._loss_data(loss, out, data,
                                                                                  graph, fail):
            return
        self._last_op(loss, last, span)

    def _loss_shape(self, loss: str, out: GraphOutput, name: str,
                    fail: Callable[..., None]) -> bool:
        shape, rank = out.type.shape, out.type.rank
        if loss in CLASS_SCORES:
            per_pixel = loss != "hinge"
            if (rank == 1 or per_pixel and rank == 3) and shape[0] >= 2:
                return True
            wanted = "[C] with C >= 2" + (" (or [C, H, W] per pixel)" if per_pixel else "")
            help = ("for one output per sample use bce_logits (or bce after a sigmoid)"
                    if shape == (1,) else "end the model with `flatten -> linear(classes)`")
            fail(f"{loss} needs class scores {wanted}, but `{name}` outputs {out.type}",
                 "needs class scores", help)
            return False
        if loss in ("bce", "bce_logits") and not (rank in (1, 3) and shape[0] == 1):
            fail(f"{loss} needs one value per sample [1] (or [1, H, W] per pixel), but `{name}` "
                 f"outputs {out.type}", "needs [1]",
                 f"use cross_entropy for {shape[0]} class scores" if rank == 1 else None)
            return False
        return True

    def _loss_data(self, loss: str, out: GraphOutput, data: DataSpec, graph: Graph,
                   fail: Callable[..., None]) -> bool:
        shape, name, builtin = out.type.shape, graph.name, data.kind in BUILTIN_DATA
        if builtin and out.type.rank == 3 and loss in CLASSIFICATION_LOSSES:
            fail(f"{data.kind} has one label per sample, but `{name}` outputs per-pixel scores "
                 f"{out.type}", f"needs [{data.classes or 1}]")
            return False
        if loss in CLASS_SCORES and data.classes and shape[0] != data.classes:
            help = (f"train {name}(classes={data.classes})" if "classes" in graph.args
                    else f"end the model with `linear({data.classes})`")
            fail(f"{data.kind} has {data.classes} classes but `{name}` outputs {shape[0]} class "
                 "scores", f"needs [{data.classes}]", help)
            return False
        if loss in ("mse", "l1") and builtin and shape != (1,):
            labels = data.task == "classification"
            what = "label" if labels else "target value"
            fail(f"{loss} compares the output with the {what}, one number per sample, but "
                 f"`{name}` outputs {out.type}", "needs [1]",
                 "use cross_entropy for class scores" if labels
                 else "end the model with `linear(1)`")
            return False
        return True

    def _last_op(self, loss: str, last: Node | None, span: Span) -> None:
        op = last.op if last is not None else None
        ends = f"ends in `{op}`" if op is not None else "has no layer"
        if loss == "cross_entropy" and op == "softmax":
            found = ("cross_entropy applies log-softmax itself, but the model already ends in "
                     "`softmax`", "applies log-softmax",
                     "remove the final `softmax` (the model then outputs logits)")
        elif loss == "nll" and op != "log_softmax":
            found = (f"nll expects log-probabilities, but the model {ends}",
                     "expects log-probabilities",
                     "end the model with `log_softmax`, or use cross_entropy on the logits")
        elif loss == "bce" and op != "sigmoid":
            found = (f"bce expects probabilities in (0, 1), but the model {ends}",
                     "expects probabilities",
                     "end the model with `sigmoid`, or use bce_logits on the logits")
        elif loss == "bce_logits" and op == "sigmoid":
            found = ("bce_logits applies the sigmoid itself, but the model already ends in "
                     "`sigmoid`", "applies the sigmoid", "remove the final `sigmoid`, or use bce")
        else:
            return
        message, label, help = found
        at_op = [(last.span, f"`{op}` here")] if last is not None else []
        self._warn(codes.LOSS_LAST_OP, message, span, label, secondary=at_op, help=help)

    def _check_augment(self, graph: Graph, inp: GraphInput) -> None:
        if not self._ok("augment"):
            return
        shape, at_input = inp.type.shape, [(inp.span, f"input {inp.name}: {inp.type}")]
        for aug, span in zip(self.values["augment"], self.items.get("augment", [])):
            if aug.kind in IMAGE_AUGMENTS and inp.type.rank != 3:
                self._err(codes.RECIPE_AUGMENT, f"{aug.kind} transforms images [C, H, W], but "
                          f"`{graph.name}`'s input {inp.name} is {inp.type}", span, "needs images",
                          secondary=at_input)
            elif aug.kind == "random_crop" and tuple(aug.args["size"]) != shape[1:]:
                (h, w), (ch, cw) = shape[1:], aug.args["size"]
                size = h if h == w else f"({h}, {w})"
                pad = f", padding={aug.args['padding']}" if aug.args["padding"] else ""
                self._err(codes.RECIPE_AUGMENT, f"random_crop gives {ch}×{cw} crops, but "
                          f"`{graph.name}`'s input {inp.name} is {inp.type}", span,
                          "wrong crop size", secondary=at_input,
                          help=f"use random_crop({size}{pad})")
            elif aug.kind == "normalize":
                channels = shape[0] if shape else 1
                for key in ("mean", "std"):
                    value = aug.args[key]
                    if isinstance(value, tuple) and len(value) not in (1, channels):
                        plural = "s" if channels != 1 else ""
                        self._err(codes.RECIPE_AUGMENT, f"normalize has {len(value)} values of "
                                  f"`{key}`, but `{graph.name}`'s input {inp.name} {inp.type} has "
                                  f"{channels} channel{plural}", span, f"{len(value)} values",
                                  secondary=at_input, help=f"give one value, or {channels}")

    def _check_init(self, graph: Graph) -> None:
        init: InitSpec = self.values["init"]
        if not self._ok("init"):
            return
        weighted = sorted({n.op for n in graph.nodes if n.params})
        for kind in init.per_kind:
            if kind not in weighted:
                self._warn(codes.RECIPE_NO_EFFECT, f"`{graph.name}` has no `{kind}` layer with "
                           "weights: this init does nothing", self.init_spans[kind],
                           "no such layer",
                           notes=[f"op kinds with weights: {', '.join(weighted) or 'none'}"])
        ops = {n.op for n in graph.nodes}
        relu, saturating = sorted(ops & set(RELU_LIKE)), sorted(ops & set(SATURATING))
        schemes = [(k, s) for k, s in init.per_kind.items() if k in weighted]
        if init.default is not None:
            schemes.insert(0, ("", init.default))
        warned: set[str] = set()
        name = graph.name
        for kind, (scheme, args) in schemes:
            family = scheme.split("_")[0]
            message = help = None
            if family in ("zeros", "constant"):
                message = (f"`{scheme}` starts every unit of a layer equal: their symmetry is "
                           "never broken")
                help = "use a random scheme: normal(std=0.01), xavier or kaiming"
            elif family == "kaiming" and saturating and not relu and args["nonlinearity"] == "relu":
                message = f"Kaiming's variance 2/n suits ReLU, but `{name}` uses {saturating[0]}"
                help = f"use xavier for {saturating[0]} networks"
            elif family == "xavier" and relu and not saturating:
                message = f"Xavier's variance suits tanh and sigmoid, but `{name}` uses {relu[0]}"
                help = f"use kaiming for {relu[0]} networks"
            if message is not None and family not in warned:
                warned.add(family)
                span = self.init_spans.get(kind, self.spans["init"])
                self._warn(codes.INIT_MISMATCH, message, span, scheme, help=help)
