"""The `nnspec` command line: a thin layer over the API.

Exit codes: 0 valid, 1 the input has errors, 2 the command line is wrong.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from typer.main import get_command_name

from nnspec.api import Model, model_names, open_spec
from nnspec.spec import codes
from nnspec.spec.codes import CODES
from nnspec.spec.diagnostics import Diagnostic, DiagnosticError, render_all, summary_line
from nnspec.spec.elaborate import DEFAULT_MAX_PARAMS, Elaborator
from nnspec.spec.ir import Graph
from nnspec.spec.passes.lint import lint
from nnspec.spec.passes.summary import Summary, human_bytes, human_count, summarize
from nnspec.spec.recipe.elaborate import check_recipes
from nnspec.spec.suggest import did_you_mean

_SETTINGS: dict[str, Any] = {
    "name": "nnspec",
    "help": "Compile neural-network spec files (.nn) into checked IR, PyTorch and ONNX.",
    "no_args_is_help": True,
    "add_completion": False,
    "pretty_exceptions_enable": False,
}
app = typer.Typer(**_SETTINGS)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
_UNBOUNDED = 1_000_000  # columns: a table written to a file or a pipe takes its natural width


def _print_table(table: Any) -> None:
    """Print a table to stdout: in a terminal at most as wide as the terminal, as rich does;
    into a file or a pipe whole. rich would cut it there to 80 columns (or to the width of
    the terminal the command was started from), shortening cells to `…` and wrapping headers,
    which a file read later or another program has no use for."""
    if out.is_terminal:
        out.print(table)
        return
    from rich.segment import Segments

    options = out.options.update(width=_UNBOUNDED, no_wrap=True, overflow="ignore")  # as print(soft_wrap)
    out.print(Segments(out.render(table, options)))


class UsageError(Exception):
    pass


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """`--set classes=10` -> {"classes": 10}; values are ints, floats, true/false or text."""
    values: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"--set expects name=value, got {item!r}")
        if raw in ("true", "false"):
            values[key] = raw == "true"
            continue
        for convert in (int, float):
            try:
                values[key] = convert(raw.replace("_", ""))
                break
            except ValueError:
                continue
        else:
            values[key] = raw
    return values


def _assignments(items: list[str]) -> dict[str, Any]:
    """`--set` values, or exit 2 with the reason."""
    try:
        return parse_assignments(items)
    except UsageError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from None


def _print_diagnostics(diags: list[Diagnostic] | tuple[Diagnostic, ...], sources) -> None:
    if diags:
        err.print(render_all(diags, sources), markup=False)
        err.print(f"\n{summary_line(list(diags))}", markup=False)


@app.command()
def check(
    file: Annotated[Path, typer.Argument(help="the spec file (.nn)", metavar="FILE")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="check only this model")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary instead of tables")] = False,
    set_: Annotated[list[str], typer.Option("--set", help="model argument, name=value (repeatable)")] = [],  # noqa: B006
    max_params: Annotated[int, typer.Option("--max-params", min=1, help="parameter limit per model")] = DEFAULT_MAX_PARAMS,
) -> None:
    """Parse, elaborate and summarise: shapes, parameters, MACs, receptive field, memory;
    then check every `train` recipe of the file against its model."""
    with _gc_paused():
        _check(file, model, as_json, set_, max_params)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection during a check: compiling allocates many objects that stay
    alive and form no cycles, so collections only rescan them, more often the larger the spec
    (about a third of the time of a 10,000-layer check). Reference counting still frees
    memory; the collector comes back afterwards (commands also run in-process, in tests)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _check(file: Path, model: str | None, as_json: bool, set_: list[str], max_params: int) -> None:
    args = _assignments(set_)
    try:
        loaded = open_spec(file)
    except DiagnosticError as exc:
        _fail(exc, as_json)
    names = model_names(loaded)
    if model is not None:
        names = [model]
    elif not names:
        root = loaded.sources.get(loaded.root.file)
        empty = root is not None and not root.text.strip()
        _fail(DiagnosticError([_no_model(file, empty)], loaded.sources), as_json)
    elif len(names) > 1:
        _check_set(loaded, names, args)
    summaries: list[Summary] = []
    diags: list[Diagnostic] = []
    graphs: dict[str, Graph | None] = {}  # as elaborated (None: failed); recipes reuse them
    failed = False
    for name in names:
        elaborator = Elaborator(loaded, max_params=max_params)
        try:
            graph = elaborator.model(name, args if model is not None or len(names) == 1 else _for(loaded, name, args))
        except DiagnosticError as exc:
            diags.extend(exc.diagnostics)
            failed = True
            graphs[name] = None
            continue
        graphs[name] = graph
        diags.extend(elaborator.warnings + lint(graph))
        summaries.append(summarize(graph))
    recipes, recipe_diags = check_recipes(loaded, {} if args else graphs, model=model,
                                          max_params=max_params)
    diags.extend(recipe_diags)
    failed = failed or any(d.severity == "error" for d in recipe_diags)
    searches: list[Any] = []
    if loaded.root.searches and model is None and not args:
        from nnspec.spec.search.elaborate import check_searches

        searches, search_diags = check_searches(loaded)
        diags.extend(search_diags)
        failed = failed or any(d.severity == "error" for d in search_diags)
    if as_json:
        payload: Any = [_json(s) for s in summaries]
        if len(names) == 1:
            payload = payload[0] if payload else {"model": names[0]}
        if diags or loaded.root.trains:
            payload = payload if isinstance(payload, dict) else {"models": payload}
        if loaded.root.trains:
            payload["recipes"] = [r.model_dump(mode="json") for r in recipes]
        if searches:
            payload["searches"] = [s.model_dump(mode="json") for s in searches]
        if diags:
            payload["diagnostics"] = [_diag_json(d) for d in diags]
        _print_json(payload)
    else:
        for summary in summaries:
            _table(summary)
        for recipe in recipes:
            out.print(recipe.describe(), markup=False)
        for found in searches:
            out.print(found.describe(), markup=False)
    _print_diagnostics(diags, loaded.sources)
    raise typer.Exit(1 if failed else 0)


def _for(loaded, name: str, args: dict[str, Any]) -> dict[str, Any]:
    """With several models and no --model, pass each only the --set values it declares."""
    params = {p.name for p in loaded.definitions[name].params}
    return {k: v for k, v in args.items() if k in params}


def _check_set(loaded, names: list[str], args: dict[str, Any]) -> None:
    """With several models and no --model, a --set that no model declares is a usage error."""
    params = {name: [p.name for p in loaded.definitions[name].params] for name in names}
    declared = {p for ps in params.values() for p in ps}
    unknown = [k for k in args if k not in declared]
    if unknown:
        listed = "; ".join(f"{name}({', '.join(ps)})" for name, ps in params.items())
        err.print(f"error: --set {unknown[0]}=...: no model of the file has a parameter `{unknown[0]}`",
                  markup=False)
        err.print(f"parameters: {listed}", markup=False)
        hint = did_you_mean(unknown[0], sorted(declared))
        if hint:
            err.print(f"help: {hint}", markup=False)
        raise typer.Exit(2)


def _no_model(file: Path, empty: bool) -> Diagnostic:
    from nnspec.spec.diagnostics import error

    what = "is empty" if empty else "defines no model"
    return error(codes.NO_MODEL, f"`{file}` {what}", None,
                 help="define one with `model Name { input x: [...] ... }`")


def _fail(exc: DiagnosticError, as_json: bool) -> None:
    if as_json:
        _print_json({"model": None, "diagnostics": [_diag_json(d) for d in exc.diagnostics]})
    _print_diagnostics(list(exc.diagnostics), exc.sources)
    raise typer.Exit(1)


def _print_json(payload: Any) -> None:
    """JSON straight to stdout: rich would spend time on it, and could change it (`:emoji:`)."""
    sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    sys.stdout.flush()


def _diag_json(d: Diagnostic) -> dict[str, Any]:
    span = d.span
    return {
        "severity": d.severity, "code": d.code, "message": d.message,
        "file": span.file if span else None, "line": span.line if span else None,
        "col": span.col if span else None, "notes": list(d.notes), "help": d.help,
    }


def _json(s: Summary) -> dict[str, Any]:
    data = s.to_json_dict()
    data["mac_convention"] = "one MAC = one multiply-add, per sample"
    data["shape_convention"] = "shapes exclude the batch dimension"
    return data


def _table(s: Summary) -> None:
    table = Table(title=f"model {s.model}", title_justify="left", show_edge=False, pad_edge=False)
    for header, justify in (("layer", "left"), ("op", "left"), ("output shape", "left"), ("params", "right"),
                            ("MACs", "right"), ("receptive field", "right"), ("memory", "right")):
        table.add_column(header, justify=justify)
    for i in s.inputs:
        table.add_row(i["name"], "input", _shape(i["shape"], i["dtype"]), "", "", "1" if len(i["shape"]) >= 2 else "-",
                      "")
    for r in s.layers:
        table.add_row(r.name, r.op, _shape(r.output_shape), f"{r.params:,}", f"{r.macs:,}",
                      str(r.receptive_field) if r.receptive_field is not None else "-", human_bytes(r.memory))
    _print_table(table)
    outputs = ", ".join(f"{o['name']} {_shape(o['shape'], o['dtype'])}" for o in s.outputs)
    out.print(f"outputs: {outputs}", markup=False)
    out.print(
        f"params: {s.total_params:,} ({human_count(s.total_params)}), trainable: {s.trainable_params:,}, "
        f"buffers: {s.buffers:,}", markup=False)
    rf = f"{s.receptive_field} px" if s.receptive_field is not None else "-"
    out.print(f"MACs: {s.total_macs:,} ({human_count(s.total_macs)}) per sample; receptive field: {rf}",
              markup=False)
    out.print(f"memory: activations {human_bytes(s.activation_memory)} per sample, "
              f"weights {human_bytes(s.parameter_memory)}", markup=False)
    out.print("(shapes exclude the batch dimension; one MAC = one multiply-add)\n", markup=False)


def _shape(shape, dtype: str = "float32") -> str:
    dims = "[" + ", ".join(str(d) for d in shape) + "]"
    return dims if dtype == "float32" else f"int{dims}"


@app.command()
def explain(code: Annotated[str, typer.Argument(help="a diagnostic code, e.g. E2101")]) -> None:
    """Print the long explanation of a diagnostic code."""
    entry = CODES.get(code.upper())
    if entry is None:
        from nnspec.spec.suggest import did_you_mean

        hint = did_you_mean(code.upper(), CODES)
        err.print(f"error: unknown code `{code}`" + (f"; {hint}" if hint else ""), markup=False)
        err.print(f"known codes: {', '.join(sorted(CODES))}", markup=False)
        raise typer.Exit(2)
    out.print(f"{entry.code}: {entry.title}\n\n{entry.explanation}", markup=False)


@app.command()
def compile(  # noqa: A001 - the command's name
    file: Annotated[Path, typer.Argument(help="the spec file (.nn)", metavar="FILE")],
    emit: Annotated[str, typer.Option(
        "--emit", help="what to write: torch (a .py file), ir (JSON) or onnx (needs -o)")] = "torch",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="file to write (default: stdout)")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="the model to compile")] = None,
    set_: Annotated[list[str], typer.Option("--set", help="model argument, name=value (repeatable)")] = [],  # noqa: B006
) -> None:
    """Compile a model: a standalone PyTorch file (imports only torch), the IR as JSON, or an
    ONNX model with initial weights (torch's default initialisation, seed 0)."""
    if emit not in ("torch", "ir", "onnx"):
        err.print(f"error: --emit must be torch, ir or onnx, got {emit!r}", markup=False)
        raise typer.Exit(2)
    if emit == "onnx" and output is None:
        err.print("error: --emit onnx writes a binary file: give it with -o model.onnx", markup=False)
        raise typer.Exit(2)
    args = _assignments(set_)
    from nnspec import __version__
    from nnspec.api import load

    try:
        compiled = load(file, model, args or None)
    except DiagnosticError as exc:
        _print_diagnostics(list(exc.diagnostics), exc.sources)
        raise typer.Exit(1) from None
    _print_diagnostics(compiled.warnings, compiled.loaded.sources)
    if emit == "onnx":
        assert output is not None
        from nnspec.api import onnx_parts
        from nnspec.runtime.loop.checkpoint import atomic_write

        built = onnx_parts(compiled)
        built.check()
        try:
            atomic_write(output, lambda tmp: built.write(tmp, check=False))
        except OSError as exc:
            err.print(f"error: cannot write `{output}`: {exc.strerror or exc}", markup=False)
            raise typer.Exit(1) from None
        err.print(f"wrote {output} (ONNX opset 21, initial weights, seed 0)", markup=False)
        return
    if emit == "ir":
        text = compiled.ir_json() + "\n"
    else:
        from nnspec.compiler.torch_source import torch_source

        text = torch_source(compiled.graph, source=str(file), version=__version__)
    if output is None:
        sys.stdout.write(text)
        return
    from nnspec.runtime.loop.checkpoint import write_text

    try:
        write_text(output, text)
    except OSError as exc:
        err.print(f"error: cannot write `{output}`: {exc.strerror or exc}", markup=False)
        raise typer.Exit(1) from None
    err.print(f"wrote {output}", markup=False)


@app.command()
def export(
    file: Annotated[Path, typer.Argument(help="the spec file (.nn)")],
    weights: Annotated[str, typer.Option(
        "--weights", "-w", help="a run directory (the weights its test report describes) or a .safetensors file")],
    output: Annotated[Path, typer.Option("--output", "-o", help="the .onnx file to write")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="the model to export")] = None,
    fold_bn: Annotated[bool, typer.Option(
        "--fold-bn", help="fold each batchnorm into the conv before it")] = False,
    set_: Annotated[list[str], typer.Option("--set", help="model argument, name=value (repeatable)")] = [],  # noqa: B006
) -> None:
    """Export a model with trained weights to ONNX (opset 21, eval mode, dynamic batch);
    from a run directory the metadata carries the class names, task and input normaliser."""
    from nnspec.exporting import export as run

    args = _assignments(set_)
    try:
        with _user_errors():
            result = run(file, weights, output, model=model, args=args or None, fold_bn=fold_bn,
                         log=lambda line: err.print(line, markup=False))
    except OSError as exc:
        _error(f"cannot write `{output}`: {exc.strerror or exc}")
    skeleton = result.built.skeleton
    props = {p.key: p.value for p in skeleton.metadata_props}
    size = result.built.weight_bytes
    shown = [f"model {props.get('model')}", f"weights {result.weights}",
             f"{len(skeleton.graph.node)} nodes", f"{size / 2**20:.1f} MiB of weights"]
    if "classes" in props:
        shown.append(f"{len(json.loads(props['classes']))} classes")
    err.print(f"wrote {result.path} ({', '.join(shown)})", markup=False)


def _error(message: str, help: str | None = None) -> NoReturn:
    err.print(f"error: {message}", markup=False)
    if help:
        err.print(f"  = help: {help}", markup=False)
    raise typer.Exit(1)


@contextmanager
def _user_errors() -> Iterator[None]:
    """A bad spec, data file, checkpoint or training run: its located message, exit 1."""
    from nnspec.runtime.data.sources import DataError
    from nnspec.runtime.loop.checkpoint import CheckpointError
    from nnspec.runtime.loop.errors import TrainingError

    try:
        yield
    except DiagnosticError as exc:
        _print_diagnostics(list(exc.diagnostics), exc.sources)
        raise typer.Exit(1) from None
    except DataError as exc:
        err.print(exc.render(), markup=False)
        raise typer.Exit(1) from None
    except (TrainingError, CheckpointError) as exc:
        _error(exc.message, exc.help)


@app.command()
def predict(
    model_file: Annotated[Path, typer.Argument(metavar="MODEL", help="the .onnx model")],
    input_: Annotated[Path, typer.Option(
        "--input", "-i", help="samples: .npz (array x), .npy, .csv, an image or a folder of images")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="write the predictions: .csv, .npz or .json")] = None,
    batch: Annotated[int, typer.Option("--batch", min=1, help="samples per onnxruntime call")] = 256,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="classes shown per sample")] = 3,
) -> None:
    """Run an ONNX model on samples through onnxruntime: class probabilities and the top-k
    classes for a classifier, the raw outputs otherwise."""
    from nnspec.runtime.inference.session import (
        PredictError,
        Session,
        read_input,
        write_predictions,
    )

    try:
        session = Session(model_file)
        if len(session.inputs) != 1:
            raise PredictError(f"the model takes {len(session.inputs)} inputs; predict feeds one")
        x, rows = read_input(input_, session)
        if session.is_classifier:
            prediction = session.predict(x, top_k=top_k, batch=batch)
            _prediction_table(prediction, rows)
            if output is not None:
                write_predictions(output, rows, prediction=prediction)
        else:
            y = session.run(x, batch=batch)
            _values_table(y, rows)
            if output is not None:
                write_predictions(output, rows, outputs=y)
    except PredictError as exc:
        _error(exc.message, exc.help)
    except OSError as exc:
        _error(f"cannot write `{output}`: {exc.strerror or exc}")
    if output is not None:
        err.print(f"wrote {output}", markup=False)


@app.command()
def generate(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="a run directory of a text recipe")],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="the text to continue")] = "",
    tokens: Annotated[int, typer.Option("--tokens", "-n", min=0, help="characters to generate")] = 200,
    temperature: Annotated[float, typer.Option(
        "--temperature", "-t", min=0.0, help="0: greedy; 1: the model's own distribution")] = 1.0,
    top_k: Annotated[int | None, typer.Option(
        "--top-k", "-k", min=1, help="sample among the k most likely characters only")] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="the sampler's seed")] = 0,
    onnx: Annotated[Path | None, typer.Option(
        "--onnx", help="run this exported model through onnxruntime instead of torch")] = None,
) -> None:
    """Sample characters from a trained causal text model and print prompt + generated text.

    The window is the last `context` ids, left-padded with id 0 when shorter; the next
    character is read at its last position (runtime/inference/generate.py)."""
    from nnspec.generating import GenerateError
    from nnspec.generating import generate as run

    try:
        with _user_errors():
            result = run(run_dir, prompt, tokens, temperature=temperature, top_k=top_k,
                         seed=seed, onnx=onnx)
    except GenerateError as exc:
        _error(exc.message, exc.help)
    out.print(str(result), markup=False)


_SHOWN_ROWS = 20


def _prediction_table(prediction, rows: list[str]) -> None:
    k = prediction.top_k.shape[1]
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("row")
    for j in range(k):
        table.add_column(f"top {j + 1}")
    names = prediction.top_names()
    for i, row in enumerate(rows[:_SHOWN_ROWS]):
        cells = [f"{names[i][j]} ({prediction.probabilities[i, c]:.3f})"
                 for j, c in enumerate(prediction.top_k[i])]
        table.add_row(row, *cells)
    _print_table(table)
    more = f" (first {_SHOWN_ROWS} shown)" if len(rows) > _SHOWN_ROWS else ""
    out.print(f"{len(rows)} samples{more}; classes: {', '.join(prediction.classes)}",
              markup=False)


def _values_table(y, rows: list[str]) -> None:
    flat = y.reshape(len(y), -1)
    width = min(flat.shape[1], 6)
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("row")
    for j in range(width):
        table.add_column(f"y{j}", justify="right")
    if flat.shape[1] > width:
        table.add_column("...")
    for i, row in enumerate(rows[:_SHOWN_ROWS]):
        extra = ["..."] if flat.shape[1] > width else []
        table.add_row(row, *(f"{v:.4g}" for v in flat[i, :width]), *extra)
    _print_table(table)
    more = f" (first {_SHOWN_ROWS} shown)" if len(rows) > _SHOWN_ROWS else ""
    out.print(f"{len(rows)} samples{more}; output per sample: {list(y.shape[1:])}", markup=False)


@app.command()
def train(
    file: Annotated[Path, typer.Argument(help="the spec file (.nn) with a `train` recipe", metavar="FILE")],
    recipe: Annotated[str | None, typer.Option("--recipe", "-r", help="the recipe to run")] = None,
    data: Annotated[str | None, typer.Option(
        "--data", help="other data: a built-in set (iris) or a .csv / .npz file / image folder")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="override the epochs")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="run directory (default runs/NAME-TIME)")] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu or cuda")] = None,
    amp: Annotated[bool, typer.Option("--amp", help="mixed precision (bf16, or fp16 with a grad scaler)")] = False,
    compile_: Annotated[bool, typer.Option("--compile", help="wrap the module with torch.compile")] = False,
    resume: Annotated[Path | None, typer.Option("--resume", help="continue the run in this directory")] = None,
    nproc: Annotated[int | None, typer.Option(
        "--nproc", help="train N processes with DistributedDataParallel (gloo on CPU, NCCL: a GPU "
        "each); the recipe's batch is the global batch")] = None,
) -> None:
    """Train a spec's model by its recipe; write a run directory with weights and reports."""
    from nnspec.training import train as run

    if device not in (None, "auto", "cpu", "cuda"):
        err.print(f"error: --device must be auto, cpu or cuda, got {device!r}", markup=False)
        raise typer.Exit(2)
    if nproc is not None and nproc < 1:
        err.print(f"error: --nproc must be at least 1, got {nproc}", markup=False)
        raise typer.Exit(2)
    with _user_errors():
        result = run(file, recipe, data=data, epochs=epochs, out=out, device=device, amp=amp,
                     compile=compile_, resume=resume, progress=out_is_terminal(),
                     log=_log, nproc=nproc)
    if result.extra.get("rank", 0) != 0:
        return  # under torchrun rank 0 reports
    if result.test:
        shown = ", ".join(f"{k.removeprefix('test_')} {v:.4f}" for k, v in result.test.items())
        _log(f"test: {shown}")
    _log(f"run directory: {result.directory}")


@app.command()
def search(
    file: Annotated[Path, typer.Argument(help="the spec file (.nn) with a `search` block", metavar="FILE")],
    name: Annotated[str | None, typer.Option("--search", "-s", help="the search to run")] = None,
    data: Annotated[str | None, typer.Option(
        "--data", help="other data: a built-in set (iris) or a .csv / .npz file / image folder")] = None,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", "-o", help="search directory (default runs/search-NAME-TIME)")] = None,
    resume: Annotated[Path | None, typer.Option(
        "--resume", help="continue the search in this directory; finished trials are kept")] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu or cuda")] = None,
    max_trials: Annotated[int | None, typer.Option(
        "--max-trials", min=1, help="stop after this many new trials (resume later)")] = None,
) -> None:
    """Train one trial per point of a spec's `search` block; write results.csv, search.png and
    the best configuration as a complete spec file, best.nn."""
    from nnspec.runtime.experiments.search_report import table
    from nnspec.searching import search as run

    if device not in (None, "auto", "cpu", "cuda"):
        err.print(f"error: --device must be auto, cpu or cuda, got {device!r}", markup=False)
        raise typer.Exit(2)
    directory: list[Path] = []

    def log(line: str) -> None:
        if line.startswith("search directory: "):
            directory.append(Path(line.removeprefix("search directory: ")))
        _log(line)

    try:
        with _user_errors():
            result = run(file, name, data=data, out=out_dir, resume=resume, device=device,
                         max_trials=max_trials, log=log)
    except KeyboardInterrupt:
        where = directory[0] if directory else out_dir
        err.print("interrupted: the finished trials are kept" +
                  (f"; continue with --resume {where}" if where else ""), markup=False)
        raise typer.Exit(130) from None
    _print_table(table(result.search, result.trials))
    where = result.directory
    _log(f"results: {where / 'results.csv'}, {where / 'search.png'}")
    if not result.finished:
        _log(f"stopped after {max_trials} new trial{'' if max_trials == 1 else 's'}; continue "
             f"with --resume {where}")
    if result.best is None:
        _error("no trial scored (every one diverged, failed or was invalid)",
               help="narrow the ranges, e.g. smaller learning rates")
    _log(f"best: trial {result.best.id}, {result.search.objective} {result.best.objective:.6g}; "
         f"train it with `nnspec train {where / 'best.nn'}`")


_CHECK_NAMES = ("structure", "gradient", "equivalence", "overfit", "init")


@app.command()
def verify(
    file: Annotated[Path | None, typer.Argument(help="the spec file (.nn)", metavar="[FILE]")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="the model to verify")] = None,
    recipe: Annotated[str | None, typer.Option(
        "--recipe", "-r", help="the recipe giving data, loss and optimizer")] = None,
    weights: Annotated[str | None, typer.Option(
        "--weights", "-w", help="a run directory or .safetensors file (default: initialisation)")] = None,
    checks: Annotated[str | None, typer.Option(
        "--checks", help=f"comma-separated, from {', '.join(_CHECK_NAMES)} (default: all)")] = None,
    gradient_mode: Annotated[str, typer.Option(
        "--gradient-mode", help="auto, full (Jacobian) or directional")] = "auto",
    directions: Annotated[int, typer.Option("--directions", min=1, help="random directions per tensor")] = 2,
    overfit_steps: Annotated[int, typer.Option("--overfit-steps", min=1, help="step budget")] = 500,
    seed: Annotated[int, typer.Option("--seed", help="seed of inputs and directions")] = 0,
    ops: Annotated[bool, typer.Option("--ops", help="sweep every op of the registry")] = False,
    kind: Annotated[list[str], typer.Option("--kind", help="with --ops: only this op (repeatable)")] = [],  # noqa: B006
    analytic: Annotated[bool, typer.Option(
        "--analytic", help="the course's gradient formulas against autograd")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="the report as JSON")] = False,
) -> None:
    """Prove a compiled model right: gradients, shapes, three backends, overfitting, init.

    With FILE: the checks of one model. With --ops: every op x its samples against its numpy
    reference, finite differences and onnxruntime. With --analytic: the course's formulas.
    Exit 1 when a check fails (warnings do not fail)."""
    from nnspec.verify.render import render_report
    from nnspec.verify.results import Report

    if file is None and not ops and not analytic:
        err.print("error: give a spec FILE, --ops or --analytic", markup=False)
        raise typer.Exit(2)
    chosen = [c.strip() for c in checks.split(",") if c.strip()] if checks else None
    for name in chosen or []:
        if name not in _CHECK_NAMES:
            hint = did_you_mean(name, list(_CHECK_NAMES))
            err.print(f"error: unknown check `{name}`; the checks are {', '.join(_CHECK_NAMES)}"
                      + (f"\n  = help: {hint}" if hint else ""), markup=False)
            raise typer.Exit(2)
    if gradient_mode not in ("auto", "full", "directional"):
        err.print(f"error: --gradient-mode must be auto, full or directional, got "
                  f"{gradient_mode!r}", markup=False)
        raise typer.Exit(2)
    if kind and not ops:
        err.print("error: --kind selects ops of the --ops sweep; add --ops", markup=False)
        raise typer.Exit(2)
    reports: list[tuple[str, Report]] = []
    if ops:
        from nnspec.spec.ops import REGISTRY
        from nnspec.verify.sweep import sweep

        unknown = [k for k in kind if k not in REGISTRY]
        if unknown:
            hint = did_you_mean(unknown[0], sorted(REGISTRY))
            err.print(f"error: no op `{unknown[0]}`" + (f"\n  = help: {hint}" if hint else ""),
                      markup=False)
            raise typer.Exit(2)
        kinds = {REGISTRY[k].kind for k in kind} or None
        reports.append(("op registry sweep", Report("ops", sweep(kinds, seed=seed))))
    if analytic:
        from nnspec.verify.analytic import check_analytic

        reports.append(("the course's gradient formulas", Report("analytic", check_analytic(seed=seed))))
    if file is not None:
        from nnspec.verify.run import verify_file

        with _user_errors():
            report = verify_file(file, model=model, recipe=recipe, weights=weights, checks=chosen,
                                 gradient_mode=gradient_mode, directions=directions,
                                 overfit_steps=overfit_steps, seed=seed,
                                 log=(lambda line: err.print(line, markup=False)) if not as_json
                                 else (lambda _line: None))
        reports.append((f"verify {file} ({report.subject})", report))
    if as_json:
        payload = [json.loads(r.to_json()) for _, r in reports]
        _print_json(payload[0] if len(payload) == 1 else payload)
    else:
        for title, report in reports:
            render_report(report, out, title=title)
    if not all(r.ok for _, r in reports):
        raise typer.Exit(1)


def _log(line: str) -> None:
    out.print(line, markup=False)


def out_is_terminal() -> bool:
    return out.is_terminal


def command_app(argv: list[str]) -> typer.Typer:
    """The app that runs ``argv``: one holding only the command it names, when it names one.

    typer turns every registered command into a click command each time an app runs, reading
    each signature (about 20 ms for all of them), and a call uses one. Help, no command or a
    mistyped one get the whole app, which lists them all.
    """
    wanted = argv[0] if argv else None
    for info in app.registered_commands:
        if (info.name or get_command_name(info.callback.__name__)) == wanted:
            one = typer.Typer(**_SETTINGS)
            one.registered_commands.append(info)
            one.callback()(_commands)  # a group, as the whole app is: `nnspec CMD ...`
            return one
    return app


def _commands() -> None:
    """The group's own step before the command (none)."""


def main() -> None:
    try:
        command_app(sys.argv[1:])()
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        sys.exit(130)
    except SystemExit as exc:
        if _joined_a_process_group():
            # gloo's C++ threads can outlive the group and abort the interpreter's shutdown
            # ("terminate called without an active exception", SIGABRT) after a run that
            # finished and wrote everything: leave without running the static destructors
            sys.stdout.flush()
            sys.stderr.flush()
            code = exc.code
            os._exit(code if isinstance(code, int) else (0 if code is None else 1))
        raise


def _joined_a_process_group() -> bool:
    """Whether this process joined a torch.distributed group (torchrun's environment)."""
    if "torch.distributed" not in sys.modules or not os.environ.get("WORLD_SIZE"):
        return False
    from nnspec.runtime.experiments import distributed

    return distributed.joined


__all__ = ["app", "main", "Model"]
