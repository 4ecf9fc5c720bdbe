"""Recipe checks: settings against each other, against the data sets known at compile time,
and against the model's graph.

The built-in data sets have fixed sample shapes and class counts, so `nnspec check` can say,
before any data is read, that digits samples are [64] but the model wants [1, 32, 32].
Each check reads settings that were read without error only (a failed one is POISON).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from nnspec.spec import ast, codes
from nnspec.spec.diagnostics import Diagnostic, error, warning
from nnspec.spec.ir import Graph, GraphInput, GraphOutput, Node
from nnspec.spec.recipe.args import POISON
from nnspec.spec.recipe.ir import CLASSIFICATION_LOSSES, DataSpec, InitSpec, WeightsSource
from nnspec.spec.recipe.tables import BUILTIN_DATA, PER_PIXEL_DATA
from nnspec.spec.source import Span
from nnspec.spec.suggest import closest

CLASS_SCORES = ("cross_entropy", "nll", "hinge")  # losses that read [C] class scores
IMAGE_AUGMENTS = ("flip", "random_crop", "brightness", "contrast")
RELU_LIKE = ("relu", "leaky_relu", "prelu", "elu", "gelu")
SATURATING = ("tanh", "sigmoid")
# what `solver normal_equation` makes pointless: the settings of gradient descent
DESCENT_SETTINGS = ("optimizer", "schedule", "batch", "epochs", "clip", "early_stop", "init",
                    "lr_groups")
_HEADER_LIMIT = 100 << 20  # a safetensors header is JSON of names and shapes: never this big


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
    if data.kind == "shapes" and square and want[0] == 1:
        return f"use shapes(size={want[1]})"
    if data.kind == "images" and len(want) == 3 and want[0] in (1, 3):
        size = want[1] if square else f"({want[1]}, {want[2]})"
        gray = ", grayscale=true" if want[0] == 1 else ""
        return f'use images("{data.args.get("folder")}", size={size}{gray})'
    if data.shape is not None and math.prod(data.shape) == math.prod(want):
        return (f"both hold {math.prod(want)} values: declare the input as "
                f"{shape_text(data.shape)} and `reshape` inside the model")
    return None


def data_note(data: DataSpec) -> list[str]:
    if data.kind not in BUILTIN_DATA and data.kind not in PER_PIXEL_DATA or data.shape is None:
        return []
    what = f"{data.classes} classes" if data.classes else "a regression target"
    what += " per pixel" if data.kind in PER_PIXEL_DATA else ""
    return [f"{data.kind}: {data.samples:,} samples of {shape_text(data.shape)}, {what}"]


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The tensors' names and shapes from a safetensors header, read without torch or the
    tensors themselves: an 8-byte little-endian length n, then n bytes of JSON
    {name: {"dtype", "shape", "data_offsets"}, "__metadata__": {...}}. ValueError (saying
    why) when the file is not one."""
    with open(path, "rb") as handle:
        size = handle.read(8)
        if len(size) < 8:
            raise ValueError("shorter than a safetensors header")
        n = int.from_bytes(size, "little")
        if n > _HEADER_LIMIT or n > os.fstat(handle.fileno()).st_size - 8:
            raise ValueError("no safetensors header at its start")
        try:
            header = json.loads(handle.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ValueError("its header is not JSON") from None
    if not isinstance(header, dict):
        raise ValueError("its header is not a table of tensors")
    shapes = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not isinstance(shape, list) or not all(isinstance(d, int) for d in shape):
            raise ValueError(f"tensor `{name}` has no shape")
        shapes[name] = tuple(shape)
    return shapes


def weights_file(path: str) -> Path:
    """`init from`'s file: the path itself, or the model of a run directory (its
    best.safetensors with early stopping, else last.safetensors: spec/recipe/rundir.py)."""
    from nnspec.spec.recipe.rundir import model_weights

    return model_weights(path) if os.path.isdir(path) else Path(path)


def matching(names: Iterable[str], patterns: Iterable[str]) -> list[str]:
    """The names any glob pattern matches (fnmatch, case-sensitive: `*` spans dots too)."""
    patterns = tuple(patterns)
    return [n for n in names if any(fnmatchcase(n, p) for p in patterns)]


def state_shapes(graph: Graph, buffers: bool = True) -> dict[str, tuple[int, ...]]:
    """The model's state names and shapes, in state_dict order (by layer: parameters, then
    buffers such as running statistics)."""
    return {f"{n.name}.{k}": s for n in graph.nodes
            for k, s in (n.params | n.buffers if buffers else n.params).items()}


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
    patterns: dict[str, list[tuple[str, Span]]]  # freeze and init from: each pattern
    groups: list[tuple[Span, list[tuple[str, Span]]]]  # each lr group and its patterns
    source_spans: dict[str, Span]  # init from: the call and its path

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
        if self._ok("loss", "target") and v["solver"] != "knn":  # knn: _check_knn_settings
            if target == "input" and loss in CLASS_SCORES:
                self._err(codes.RECIPE_TASK, f"`target input` reconstructs the input, but {loss} "
                          "needs class labels", self.spans.get("loss"), "needs class labels",
                          help="use mse or l1 (bce for inputs in [0, 1])")
                v["loss"] = POISON  # the loss is wrong: the model checks would only echo it
            elif target == "labels" and data is not POISON and data.task is not None:
                self._check_task(loss, data)
        if self._ok("ensemble", "solver", "split") and v["ensemble"] is not None:
            self._check_ensemble()
        if self._ok("cv") and v["cv"] is not None:
            self._check_cv_settings()
        if self.values["solver"] == "normal_equation":
            self._check_solver()  # instead of the checks of gradient descent: it has none
        elif self.values["solver"] == "knn":
            self._check_knn_settings()  # nor has storing the training split
        else:
            self._check_early_stop()
            self._check_schedule()
            self._check_batch()

    def _check_ensemble(self) -> None:
        ensemble, span = self.values["ensemble"], self.spans["ensemble"]
        if self.values["solver"] == "normal_equation" and ensemble.mode == "seeds":
            # one exact solve ignores the seed: every member would be the same θ
            self._warn(codes.RECIPE_NO_EFFECT, f"the {ensemble.members} members of a normal-"
                       "equation ensemble are identical: the closed form does not depend on the "
                       "seed", span, "identical members",
                       help=f"write `ensemble {ensemble.members}, bagging` to solve each on its "
                       "own bootstrap sample")
        if self.values["split"][2] == 0:
            self._warn(codes.RECIPE_NO_EFFECT, "the split has no test part: the ensemble is "
                       "trained but never compared with its members", span, "not evaluated",
                       help="give the test part a fraction, e.g. `split 0.7 / 0.15 / 0.15`")

    def _check_solver(self) -> None:
        """Settings the closed form cannot honour are errors; those it ignores, warnings."""
        span, loss = self.spans["solver"], self.values["loss"]
        if loss not in (POISON, "mse"):
            self._err(codes.RECIPE_SOLVER, f"the normal equation minimises the squared error, but "
                      f"the loss is {loss}", span, "needs loss mse",
                      secondary=[(self.spans["loss"], f"loss {loss}")],
                      help=f"use `loss mse`, or `solver gradient` to minimise {loss}")
        if self._ok("regularize"):
            for reg, reg_span in zip(self.values["regularize"], self.items.get("regularize", [])):
                if reg.kind != "l2":
                    self._err(codes.RECIPE_SOLVER, f"{reg.kind} has no closed form: the normal "
                              "equation cannot include it", reg_span, "no closed form",
                              help="l2(λ) has one (ridge regression); for "
                              f"{reg.kind} use `solver gradient`")
        if "freeze" in self.given:
            self._err(codes.RECIPE_SOLVER, "the normal equation solves every weight at once: none "
                      "can stay frozen", self.spans.get("freeze"), "frozen weights",
                      help="remove `freeze`, or use `solver gradient`")
        for name in DESCENT_SETTINGS:
            if name in self.given and name in self.spans:
                self._warn(codes.RECIPE_NO_EFFECT, f"`{name}` has no effect with `solver "
                           "normal_equation`: the weights are solved in closed form, in one step",
                           self.spans[name], "ignored",
                           help="remove it, or use `solver gradient` to train by descent")

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
            if metric in ("accuracy", "iou") and target == "input":
                self._err(codes.RECIPE_TASK, f"{metric} needs class labels, but `target input` "
                          "reconstructs the input", span, metric, help="use metrics mae or mse")
            elif metric in ("accuracy", "iou") and loss not in CLASSIFICATION_LOSSES:
                self._err(codes.RECIPE_TASK, f"{metric} needs class predictions, but {loss} trains "
                          "a regression", span, metric, help="use metrics mae or mse")
            elif metric == "perplexity" and (target == "input" or loss not in ("cross_entropy",
                                                                              "nll")):
                why = "`target input` reconstructs the input" if target == "input" else \
                    f"the loss is {loss}"
                self._err(codes.RECIPE_TASK, f"perplexity is exp(mean cross-entropy) of class "
                          f"scores against labels, but {why}", span, metric,
                          help="use `loss cross_entropy` (or nll) with class labels")
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
        knn = [n for n in graph.nodes if n.op == "knn"]
        if knn or self.values["solver"] == "knn":
            self._check_knn(graph, knn, last)  # a vote: no loss to check against the output
        else:
            self._check_loss(graph, inp, out, last)
        self._check_augment(graph, inp)
        self._check_init(graph)
        if self.values["solver"] == "normal_equation":
            self._check_linear(graph, inp, last)
        self._check_params(graph)

    def _check_data(self, graph: Graph, inp: GraphInput) -> None:
        data: DataSpec = self.values["data"]
        if not self._ok("data", "augment") or data.shape is None:
            return
        span, at_input = self.spans["data"], [(inp.span, f"input {inp.name}: {inp.type}")]
        if data.kind == "text":
            self._check_text_input(graph, inp, data, span, at_input)
            return
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

    def _check_text_input(self, graph: Graph, inp: GraphInput, data: DataSpec, span: Span,
                          at_input: list[tuple[Span, str]]) -> None:
        """text gives int64 windows [context]: the input must be `int[context]`."""
        context = data.args["context"]
        if inp.type.dtype == "int64" and inp.type.shape == (context,):
            return
        ids = inp.type.dtype == "int64" and inp.type.rank == 1
        help = (f"use text(..., context={inp.type.shape[0]}), or declare `input {inp.name}: "
                f"int[{context}]`" if ids else f"declare `input {inp.name}: int[{context}]` and "
                "start the model with `embedding(vocab, dim)`")
        self._err(codes.RECIPE_DATA, f"text gives windows of {context} token ids, int[{context}], "
                  f"but `{graph.name}`'s input {inp.name} is {inp.type}", span, f"int[{context}]",
                  secondary=at_input, help=help)

    def _check_text_output(self, graph: Graph, out: GraphOutput, data: DataSpec,
                           fail: Callable[..., None]) -> None:
        """Next-token prediction: scores [context, vocab] (one row per position) under
        cross_entropy or nll; vocab is the file's, when the file was there to read."""
        loss, context, vocab = self.values["loss"], data.args["context"], data.classes
        want = f"[{context}, {vocab if vocab is not None else 'vocab'}]"
        if loss not in ("cross_entropy", "nll"):
            fail(f"text trains next-token prediction, which needs cross_entropy (or nll), but "
                 f"the loss is {loss}", "needs cross_entropy", "use `loss cross_entropy`")
            return
        shape = out.type.shape
        if out.type.rank != 2 or shape[0] != context or vocab is not None and shape[1] != vocab:
            help = (f"train {graph.name}(vocab={vocab})" if vocab is not None and "vocab" in
                    graph.args and out.type.rank == 2 and shape[0] == context else
                    f"end the model with `linear({vocab if vocab is not None else 'vocab'})` "
                    "on every position (e.g. `lstm(hidden, select=sequence)` before it)")
            vocab_note = f"a vocabulary of {vocab} characters" if vocab is not None else \
                "its vocabulary"
            fail(f"text scores the next character at each of {context} positions, {want} "
                 f"({vocab_note}), but `{graph.name}` outputs {out.type}", f"needs {want}", help)
            return
        self._last_op(loss, None if out is None else next(
            (n for n in graph.nodes if n.name == out.value), None), self.spans["loss"])

    def _check_loss(self, graph: Graph, inp: GraphInput, out: GraphOutput,
                    last: Node | None) -> None:
        loss, target, data = (self.values[k] for k in ("loss", "target", "data"))
        if not self._ok("loss", "target"):
            return
        span = self.spans["loss"]
        at_output = [(last.span, f"output {out.type}")] if last is not None else []

        def fail(message: str, label: str, help: str | None = None) -> None:
            self._err(codes.RECIPE_LOSS, message, span, label, secondary=at_output, help=help)

        if data is not POISON and data.kind == "text" and target == "labels":
            self._check_text_output(graph, out, data, fail)
            return
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
        if data.kind in PER_PIXEL_DATA and data.shape is not None:
            # a label per pixel: the output is a map of the input's height and width, with
            # one score per class (cross_entropy, nll) or one value (bce, mse, l1) per pixel
            hw = data.shape[1:]
            want = (data.classes if loss in CLASS_SCORES else 1, *hw)
            if data.shape != graph.inputs[0].type.shape:
                return False  # the images do not fit the input: E5007 says so, once
            if out.type.rank != 3 or shape[1:] != hw:
                help = (f"end the model with a 1×1 conv to {want[0]} channel"
                        f"{'s' if want[0] != 1 else ''} on a map of {hw[0]}×{hw[1]} (as in "
                        "examples/unet.nn)")
                fail(f"{data.kind} has a label per pixel, {shape_text(hw)} per sample, but "
                     f"`{name}` outputs {out.type}", f"needs {shape_text(want)}", help)
                return False
        if builtin and out.type.rank == 3 and loss in CLASSIFICATION_LOSSES:
            fail(f"{data.kind} has one label per sample, but `{name}` outputs per-pixel scores "
                 f"{out.type}", f"needs [{data.classes or 1}]")
            return False
        if loss in CLASS_SCORES and data.classes and shape[0] != data.classes:
            help = (f"train {name}(classes={data.classes})" if "classes" in graph.args
                    else f"end the model with `linear({data.classes})`")
            fail(f"{data.kind} has {data.classes} classes but `{name}` outputs {shape[0]} class "
                 "scores", f"needs {shape_text((data.classes, *shape[1:]))}", help)
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
        data = self.values.get("data")
        per_pixel = data not in (None, POISON) and data.kind in PER_PIXEL_DATA and \
            self.values.get("target") == "labels"
        for aug, span in zip(self.values["augment"], self.items.get("augment", [])):
            if data not in (None, POISON) and data.kind == "text":
                self._err(codes.RECIPE_AUGMENT, f"{aug.kind} transforms numbers, but text gives "
                          "token ids", span, "token ids", secondary=at_input,
                          help="remove `augment`: a text recipe feeds the ids as they are")
                continue
            if per_pixel and aug.kind in ("flip", "random_crop"):
                # the pipeline moves the image's pixels, never the labels of those pixels
                self._err(codes.RECIPE_AUGMENT, f"{aug.kind} moves the pixels of the image but "
                          f"not their labels: {data.kind} has a label per pixel", span,
                          "labels would not match", help="use brightness or contrast, which "
                          "keep every pixel in place")
            elif aug.kind in IMAGE_AUGMENTS and inp.type.rank != 3:
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

    # == the normal equation against the model ==========================================
    def _check_linear(self, graph: Graph, inp: GraphInput, last: Node | None) -> None:
        """The closed form needs ŷ = Wx + b on one feature vector per sample: `linear`,
        after `flatten`s only, as the output; random augmentations would change x."""
        span, name = self.spans["solver"], graph.name
        chain = " -> ".join(n.op for n in graph.nodes) or "no layer"
        why = "use `solver gradient` (the default): only a single linear layer under mse has " \
              "a closed-form minimiser"

        def fail(message: str, node: Node | None, label: str, help: str = why) -> None:
            at = [(node.span, label)] if node is not None else []
            self._err(codes.RECIPE_SOLVER, message, span, "closed form", secondary=at,
                      notes=[f"`{name}`: {chain}"], help=help)

        other = next((n for n in graph.nodes if n.op not in ("flatten", "linear")), None)
        linears = [n for n in graph.nodes if n.op == "linear"]
        if other is not None:
            fail(f"the normal equation fits one `linear` layer, but `{name}` also has "
                 f"`{other.op}`", other, f"`{other.op}` here")
        elif len(linears) != 1:
            fail(f"the normal equation fits one `linear` layer, but `{name}` has "
                 f"{len(linears) or 'no'} `linear` layer{'s' if len(linears) != 1 else ''}",
                 linears[1] if len(linears) > 1 else None, "a second layer")
        elif last is not linears[0]:
            fail(f"the normal equation fits one `linear` layer as the output, but `{name}` "
                 f"ends in `{last.op if last is not None else 'its input'}`", last, "after linear")
        else:
            layer = linears[0]
            source = next((n.output for n in graph.nodes if n.name == layer.inputs[0]), inp.type)
            if source.rank != 1:
                fail(f"`linear` acts on the last axis of {source}, one row at a time, but the "
                     "normal equation fits one feature vector per sample", layer,
                     f"input {source}", help="put `flatten` before `linear`")
        if self._ok("augment"):
            for aug, aug_span in zip(self.values["augment"], self.items.get("augment", [])):
                if aug.kind in IMAGE_AUGMENTS and inp.type.rank == 3:
                    self._err(codes.RECIPE_SOLVER, f"{aug.kind} draws a new random transform each "
                              "epoch, but the normal equation solves once, on the data as it is",
                              aug_span, "random", help="remove it, or use `solver gradient`")

    def _check_cv_settings(self) -> None:
        """`cv kfold(n)` estimates the recipe's model on n folds of the training split; `k=`
        chooses kNN's k and needs `solver knn`; an ensemble is not cross-validated."""
        v, (folds_span, k_span) = self.values, self.items["cv"]
        if v["cv"].k is None and v["solver"] == "knn":
            self._err(codes.RECIPE_SOLVER, "with `solver knn`, `cv` chooses k among candidates, "
                      "but none are given", folds_span, "no k to choose",
                      help=f"list them: `cv kfold({v['cv'].folds}, k=(1, 3, 5, 7))`")
        if v["cv"].k is not None and v["solver"] not in ("knn", POISON):
            self._err(codes.RECIPE_SOLVER, f"`k=` chooses the neighbours of `solver knn`, but the "
                      f"solver is {v['solver']}", k_span, "kNN only",
                      help="add `solver knn`, or write `cv kfold(n)` to cross-validate this model")
        if self._ok("ensemble") and v.get("ensemble") is not None and v["solver"] != "knn":
            self._err(codes.RECIPE_SOLVER, "`cv` with `ensemble` is not supported: every fold "
                      "would train the whole ensemble", self.spans["cv"], "cross-validation",
                      secondary=[(self.spans["ensemble"], "an ensemble")],
                      help="cross-validate one member (remove `ensemble`), or remove `cv`")
        # kNN's folds are checked with its stored samples (_check_cv)
        if self._ok("split", "data", "seed") and v["solver"] != "knn" and v["data"].samples:
            stored = training_size(v["data"].samples, v["split"], v["seed"])
            if v["cv"].folds > stored:
                self._err(codes.RECIPE_SPLIT, f"{v['cv'].folds} folds need at least "
                          f"{v['cv'].folds} training samples, but the split holds {stored}",
                          folds_span, "too many folds")

    # == k nearest neighbours: `solver knn` ==============================================
    def _check_knn_settings(self) -> None:
        """kNN stores the training split and votes: it reads class labels, has no loss, and
        the settings of descent do nothing (warnings); `cv` chooses k (checked per model)."""
        span, v = self.spans["solver"], self.values
        if v["target"] == "input":
            self._err(codes.RECIPE_SOLVER, "kNN votes for the class labels of its neighbours, but "
                      "`target input` reconstructs the input", self.spans.get("target"),
                      "no labels", secondary=[(span, "solver knn")],
                      help="remove `target input`, or use `solver gradient`")
        data = v["data"]
        if data is not POISON and data.task == "regression":
            self._err(codes.RECIPE_SOLVER, f"kNN here classifies by a vote, but {data.kind} is a "
                      "regression set (a number per sample)", self.spans.get("data"),
                      "regression data", secondary=[(span, "solver knn")],
                      help="use a classification data set, or `solver normal_equation` for a "
                      "linear regression")
        if self._ok("ensemble") and v.get("ensemble") is not None:
            self._err(codes.RECIPE_SOLVER, "an ensemble of kNN classifiers is not supported: "
                      "every member would store the same training split", self.spans["ensemble"],
                      "identical members", secondary=[(span, "solver knn")],
                      help="remove `ensemble`; choose k by `cv kfold(5, k=(1, 3, 5, 7))`")
        if self._ok("augment"):
            for aug, aug_span in zip(v["augment"], self.items.get("augment", [])):
                if aug.kind in IMAGE_AUGMENTS:
                    self._err(codes.RECIPE_SOLVER, f"{aug.kind} draws a random transform, but kNN "
                              "stores the training split once, as it is", aug_span, "random",
                              secondary=[(span, "solver knn")],
                              help="remove it, or use `solver gradient`")
        for name in ("loss", *DESCENT_SETTINGS, "regularize", "freeze"):
            if name in self.given and name in self.spans:
                self._warn(codes.RECIPE_NO_EFFECT, f"`{name}` has no effect with `solver knn`: "
                           "the training split is stored, not fitted", self.spans[name],
                           "ignored", help="remove it; kNN's one choice is k (`cv kfold(...)`)")

    def _check_knn(self, graph: Graph, knn: list[Node], last: Node | None) -> None:
        """`knn` layers need `solver knn`, and `solver knn` needs one `knn` layer as the output
        after layers without weights (what it stores are the features that layer sees), with
        `memory` = the size of the training split, and classes = the data's."""
        solver, name = self.values["solver"], graph.name
        chain = " -> ".join(n.op for n in graph.nodes) or "no layer"
        at = [(knn[0].span, "stores the training split")] if knn else []
        if solver != "knn":
            if solver is not POISON:
                self._err(codes.RECIPE_SOLVER, f"`{name}` has a `knn` layer, which stores the "
                          f"training split: it is not trained by {solver}",
                          self.spans.get("solver") or self.spans.get("optimizer"), "not kNN",
                          secondary=at, help="write `solver knn` (no loss or optimizer needed)")
            return
        span = self.spans["solver"]
        weighted = next((n for n in graph.nodes if n.op != "knn" and (n.params or n.buffers)),
                        None)
        problem = None
        if len(knn) != 1:
            problem = (f"`solver knn` fills one `knn` layer, but `{name}` has {len(knn) or 'no'} "
                       f"`knn` layer{'s' if len(knn) != 1 else ''}", knn[1] if knn else None,
                       "a second knn")
        elif last is not knn[0]:
            problem = (f"`solver knn` needs the `knn` layer as the output, but `{name}` ends in "
                       f"`{last.op if last is not None else 'its input'}`", last, "after knn")
        elif weighted is not None:
            problem = (f"`solver knn` trains no weights, but `{name}` has `{weighted.op}`, which "
                       "has some", weighted, "untrained weights")
        if problem is not None:
            message, node, label = problem
            self._err(codes.RECIPE_SOLVER, message, span, "solver knn",
                      secondary=[(node.span, label)] if node is not None else [],
                      notes=[f"`{name}`: {chain}"], help="a kNN model is `x -> flatten -> "
                      "knn(k, classes=C, memory=M) -> output` (or `x -> knn(...)` on [F] features)")
            return
        layer = knn[0]
        data, split = self.values["data"], self.values["split"]
        classes, memory = layer.attrs["classes"], layer.attrs["memory"]
        if data is not POISON and data.classes is not None and data.classes != classes:
            self._err(codes.RECIPE_LOSS, f"{data.kind} has {data.classes} classes but `{name}`'s "
                      f"knn votes among {classes}", self.spans["data"], f"{data.classes} classes",
                      secondary=[(layer.span, f"classes={classes}")],
                      help=f"write knn(..., classes={data.classes})")
        if data is POISON or split is POISON or data.samples is None:
            return  # data known only when read: runtime/experiments/knn.py checks `memory` then
        if data.task == "regression":
            return  # already an error (_check_knn_settings): sizes would only add noise
        if not self._ok("seed"):
            return
        stored = training_size(data.samples, split, self.values["seed"])
        where = f"{split[0]:g} of the {data.samples:,} samples of {data.kind}"
        if memory != stored:
            self._err(codes.RECIPE_SOLVER, f"`{name}`'s knn stores {memory} samples, but the "
                      f"training split holds {stored} ({where})", layer.span,
                      f"memory={memory}", secondary=[(self.spans.get("split") or
                                                      self.spans["data"], "the training split")],
                      help=f"write memory={stored}")
        cv = self.values.get("cv")
        if cv in (None, POISON):
            return
        self._check_cv(graph, cv, stored, where)

    def _check_cv(self, graph: Graph, cv: Any, stored: int, where: str) -> None:
        """Each fold trains on ⌊stored·(folds − 1)/folds⌋ samples or one more: every k listed
        must fit the smallest, and the model must take the argument `k` the search sets."""
        folds_span, k_span = self.items["cv"]
        if cv.k is None:  # no choice of k: the model's own k is cross-validated
            return
        params = list(graph.args)  # every parameter of the model, defaults filled in
        if "k" not in params:
            self._err(codes.RECIPE_SOLVER, f"`cv` chooses the model argument `k`, but "
                      f"`{graph.name}` has no parameter `k`", k_span, "no such argument",
                      notes=[f"parameters: {', '.join(params) or 'none'}"],
                      help=f"declare `model {graph.name}(k: int = 5, ...)` and write `knn(k, ...)`")
        if cv.folds > stored:
            self._err(codes.RECIPE_SOLVER, f"{cv.folds} folds need at least {cv.folds} training "
                      f"samples, but the split holds {stored} ({where})", folds_span, "too many")
            return
        smallest = stored - -(-stored // cv.folds)  # a fold leaves out at most ⌈stored/folds⌉
        big = [k for k in cv.k if k > smallest]
        if big:
            self._err(codes.RECIPE_SOLVER, f"k = {big[0]} neighbours, but a fold of {cv.folds}-"
                      f"fold cross-validation stores only {smallest} samples", k_span,
                      f"k={big[0]}", notes=[f"the training split holds {stored} ({where}); each "
                                            f"fold leaves out up to {stored - smallest}"],
                      help=f"list k <= {smallest}")

    # == parameter patterns: freeze, lr_groups, init from ================================
    def _check_params(self, graph: Graph) -> None:
        state, params = state_shapes(graph), state_shapes(graph, buffers=False)
        frozen: set[str] = set()
        if self._ok("freeze"):
            for pattern, span in self.patterns.get("freeze", []):
                found = self._matches(pattern, span, state, graph, "freeze")
                frozen.update(n for n in found if n in params)
            if params and frozen == set(params) and self.values["solver"] != "normal_equation":
                self._err(codes.RECIPE_PARAMS, f"`freeze` covers every parameter of "
                          f"`{graph.name}`: nothing is left to train", self.spans["freeze"],
                          "everything frozen", help="freeze only the layers you reuse, e.g. "
                          f"`{_example_freeze(params)}`")
        if self._ok("lr_groups"):
            self._check_groups(graph, params, frozen)
        init: InitSpec = self.values["init"]
        if self._ok("init") and init.source is not None:
            matched: dict[str, Span] = {}
            for pattern, span in self.patterns.get("from", []):
                for name in self._matches(pattern, span, state, graph, "init from"):
                    matched.setdefault(name, span)
            if matched:
                self._check_source(graph, init.source, state, matched)

    def _matches(self, pattern: str, span: Span, names: dict[str, tuple[int, ...]],
                 graph: Graph, what: str) -> list[str]:
        found = matching(names, [pattern])
        if not found:
            self._err(codes.RECIPE_PARAMS, f'`{what}` pattern "{pattern}" matches no '
                      f"{'parameter' if what == 'lr_groups' else 'tensor'} of `{graph.name}`",
                      span, "matches nothing", notes=[_names_note(names)],
                      help=_pattern_help(pattern, names))
        return found

    def _check_groups(self, graph: Graph, params: dict[str, tuple[int, ...]],
                      frozen: set[str]) -> None:
        owner: dict[str, Span] = {}
        for group_span, patterns in self.groups:
            members: set[str] = set()
            for pattern, span in patterns:
                found = self._matches(pattern, span, params, graph, "lr_groups")
                taken = [n for n in found if owner.get(n, group_span) != group_span]
                if taken:
                    more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
                    self._err(codes.RECIPE_PARAMS, f"`{taken[0]}` is in two learning-rate "
                              f"groups{more}", span, "second group",
                              secondary=[(owner[taken[0]], "first group")],
                              help="make the patterns disjoint: each parameter has one lr")
                for name in found:
                    owner.setdefault(name, group_span)
                    members.add(name)
            if members and members <= frozen:
                self._warn(codes.RECIPE_NO_EFFECT, "every parameter of this group is frozen: "
                           "its learning rate has no effect", group_span, "frozen",
                           secondary=[(self.spans["freeze"], "frozen here")],
                           help="remove the group, or unfreeze its layers")

    def _check_source(self, graph: Graph, source: WeightsSource,
                      state: dict[str, tuple[int, ...]], matched: dict[str, Span]) -> None:
        """Against the file when it exists now; one that does not (a run still to come) is
        checked when training starts."""
        file = weights_file(source.path)
        if not os.path.isfile(file):  # not Path.is_file: it raises on a name too long for the system
            return
        shown = source.written if file == Path(source.path) else \
            os.path.join(source.written, file.name)
        path_span = self.source_spans["path"]
        try:
            shapes = safetensors_shapes(file)
        except (OSError, ValueError) as exc:
            self._err(codes.RECIPE_WEIGHTS, f"`{shown}` is not a safetensors file: {exc}",
                      path_span, "not safetensors", help="`init from` reads safetensors (a run "
                      "directory's weights); other formats are never unpickled")
            return
        missing = [n for n in matched if n not in shapes]
        wrong = [n for n in matched if n in shapes and shapes[n] != state[n]]
        fits = _fitting_layers(matched, shapes, state)
        narrow = f"match={_show_patterns(fits)}" if fits else None
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            self._err(codes.RECIPE_WEIGHTS, f"`{shown}` has no tensor `{missing[0]}`{more}",
                      path_span, "weights from here", secondary=[
                          (matched[missing[0]], f"matches {missing[0]}")],
                      notes=[_names_note(shapes, f"`{shown}` holds")],
                      help=f"load only what the file holds: {narrow}" if narrow else
                      "the file comes from another model")
        if wrong:
            name = wrong[0]
            layer = name.rsplit(".", 1)[0]
            more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
            self._err(codes.RECIPE_WEIGHTS, f"`{name}` is {shape_text(shapes[name])} in "
                      f"`{shown}` but {shape_text(state[name])} in `{graph.name}`{more}",
                      matched[name], "shapes differ", secondary=[(path_span, "weights from here")],
                      help=f"leave `{layer}` out of `match` to keep its initialisation (a new "
                      f"head): {narrow}" if narrow else f"leave `{layer}` out of `match`")


def training_size(samples: int, split: tuple[float, ...], seed: int) -> int:
    """The size of the training split exactly as training draws it (runtime/data/sources.py
    split_indices: the largest remainder of n·fraction, ties broken by the seeded draw; the
    totals do not depend on the labels). runtime/data/sources.py imports numpy only, not torch."""
    from nnspec.spec.recipe.splits import split_indices

    return len(split_indices(samples, split, seed=seed, stratify=False)[0])


def _names_note(names: Iterable[str], what: str = "names") -> str:
    names = list(names)
    shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
    return f"{what}: {shown or 'none'}"


def _pattern_help(pattern: str, names: Iterable[str]) -> str | None:
    """`features` -> "features.*" (a layer's name without `.*`), else the closest layer."""
    names = list(names)
    if any(n.startswith(pattern + ".") for n in names):
        return f'"{pattern}" matches one name exactly; "{pattern}.*" matches everything under it'
    close = closest(pattern, names)  # a misspelt name: "head.wieght"
    if close is None:  # a misspelt layer or block: "fetures.*"
        layers = {n.rsplit(".", 1)[0] for n in names} | {n.split(".", 1)[0] for n in names}
        close = closest(pattern.removesuffix(".*"), layers)
        close = close and f"{close}.*"
    return f'did you mean "{close}"?' if close else None


def _fitting_layers(matched: Iterable[str], shapes: dict[str, tuple[int, ...]],
                    state: dict[str, tuple[int, ...]]) -> list[str]:
    """The top-level layers (first name part) of ``matched`` whose every tensor is in the
    file with the model's shape: what a narrower `match` can load."""
    tops: dict[str, bool] = {}
    for name in matched:
        top = name.split(".", 1)[0]
        tops[top] = tops.get(top, True) and shapes.get(name) == state[name]
    return [f"{top}.*" for top, ok in tops.items() if ok]


def _show_patterns(patterns: list[str]) -> str:
    quoted = [f'"{p}"' for p in patterns]
    return quoted[0] if len(quoted) == 1 else f"({', '.join(quoted)})"


def _example_freeze(params: Iterable[str]) -> str:
    tops = list(dict.fromkeys(n.split(".", 1)[0] for n in params))
    return f'freeze "{tops[0]}.*"' if len(tops) > 1 else 'freeze "layer.*"'
