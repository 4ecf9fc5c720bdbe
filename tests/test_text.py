"""Character-level text: the `text(...)` data source, the `perplexity` metric and
`nnspec generate` (greedy and seeded sampling, torch and onnxruntime alike, errors)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runner import cli

import nnspec
from nnspec.api import load_recipe
from nnspec.runtime.data.prepare import prepare, split_of
from nnspec.runtime.data.sources import DataError, load_data, load_text
from nnspec.runtime.inference.generate import GenerateError, open_text_run, pick, window
from nnspec.runtime.loop.objectives import MetricSums, cross_entropy
from nnspec.spec import codes
from nnspec.spec.diagnostics import DiagnosticError

QUIET = {"progress": False, "log": lambda line: None}
CORPUS = "hello world, hello nnspec.\n" * 20  # 540 characters
VOCAB = sorted(set(CORPUS))  # 15 characters

SPEC = """\
model Char(vocab: int = {vocab}, context: int = 8) {{
    input tokens: int[context]
    tokens -> embedding(vocab, 8) -> lstm(16, select=sequence) -> linear(vocab) -> output
}}
train Char {{
    data      text("corpus.txt", context=8{stride})
    split     0.8 / 0.1 / 0.1
    batch     16
    epochs    {epochs}
    loss      cross_entropy
    optimizer adam(lr=3e-2)
    metrics   accuracy, perplexity
    seed      0
    device    cpu
}}
"""


def write_spec(folder: Path, *, vocab: int = len(VOCAB), stride: str = "", epochs: int = 12,
               corpus: str | bytes = CORPUS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "corpus.txt"
    if isinstance(corpus, bytes):
        target.write_bytes(corpus)
    else:
        target.write_text(corpus, encoding="utf-8")
    spec = folder / "char.nn"
    spec.write_text(SPEC.format(vocab=vocab, stride=stride, epochs=epochs))
    return spec


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny model trained on the corpus (a few seconds), and its ONNX export."""
    folder = tmp_path_factory.mktemp("text")
    spec = write_spec(folder / "spec")
    run = nnspec.train(spec, out=folder / "run", **QUIET)
    onnx_file = folder / "char.onnx"
    nnspec.export(spec, run.directory, onnx_file, log=lambda line: None)
    return spec, run, onnx_file


# -- the source ---------------------------------------------------------------------------
def test_windows_targets_and_vocabulary(tmp_path):
    (tmp_path / "t.txt").write_text("abcabcabcab", encoding="utf-8")  # 11 characters
    data = load_text(tmp_path / "t.txt", context=4)
    assert data.classes == ("a", "b", "c") and data.num_classes == 3
    # windows i = 0, 4 (i + 5 <= 11; i = 8 does not fit): ⌊(11 - 4 - 1) / 4⌋ + 1 = 2
    assert data.x.dtype == np.int64 and data.y.dtype == np.int64
    assert data.x.tolist() == [[0, 1, 2, 0], [1, 2, 0, 1]]
    assert data.y.tolist() == [[1, 2, 0, 1], [2, 0, 1, 2]]
    overlapping = load_text(tmp_path / "t.txt", context=4, stride=1)
    assert len(overlapping) == 7  # i = 0..6
    assert overlapping.x[3].tolist() == [0, 1, 2, 0] and overlapping.y[6].tolist() == [1, 2, 0, 1]


def test_the_path_resolves_against_the_spec_folder_and_the_split_is_seeded(tmp_path):
    spec = write_spec(tmp_path / "spec")
    model, recipe = load_recipe(spec)
    data = load_data("text", "corpus.txt", context=8, base_dir=spec.parent)
    assert len(data) == (len(CORPUS) - 8 - 1) // 8 + 1 == 67
    assert recipe.data.classes == len(VOCAB) and recipe.data.samples == 67
    first = [s.tolist() for s in split_of(recipe, data)]
    again = [s.tolist() for s in split_of(recipe, data)]
    other = [s.tolist() for s in split_of(recipe.model_copy(update={"seed": 1}), data)]
    assert first == again and first != other
    assert [len(s) for s in first] == [53, 7, 7]  # largest remainder of 67 · (0.8, 0.1, 0.1)
    prepared = prepare(recipe, model.graph, data)
    assert prepared.train[0].dtype == torch.int64 and prepared.train[1].shape == (53, 8)
    assert prepared.vocab == tuple(VOCAB) and prepared.normalizer is None


def test_a_file_that_is_not_utf8_or_too_short_is_a_located_error(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"hello \xff world")
    with pytest.raises(DataError) as caught:
        load_text(bad, context=4)
    assert "not UTF-8" in caught.value.message and caught.value.location.endswith(": byte 6")
    short = tmp_path / "short.txt"
    short.write_text("abc", encoding="utf-8")
    with pytest.raises(DataError, match="holds 3 characters, fewer than context \\+ 1 = 5"):
        load_text(short, context=4)
    # at `nnspec check` time too, at the path in the recipe
    spec = write_spec(tmp_path / "s", corpus=b"abc\xfe" * 10)
    with pytest.raises(DiagnosticError) as caught:
        load_recipe(spec)
    found = caught.value.diagnostics[0]
    assert found.code == codes.RECIPE_DATA and "not UTF-8" in found.message
    assert found.span.line == 6


def test_the_model_must_read_int_context_and_output_context_by_vocab(tmp_path):
    spec = write_spec(tmp_path, vocab=12)
    with pytest.raises(DiagnosticError) as caught:
        load_recipe(spec)
    (found,) = caught.value.diagnostics
    assert found.code == codes.RECIPE_LOSS and found.span.line == 10
    assert found.message == ("text scores the next character at each of 8 positions, [8, 15] "
                             "(a vocabulary of 15 characters), but `Char` outputs [8, 12]")
    assert found.help == "train Char(vocab=15)"
    float_input = SPEC.format(vocab=15, stride="", epochs=1).replace("int[context]", "[context, 4]")
    spec.write_text(float_input.replace("embedding(vocab, 8) -> lstm(16, select=sequence) -> ", ""))
    with pytest.raises(DiagnosticError) as caught:
        load_recipe(spec)
    (found,) = caught.value.diagnostics
    assert found.code == codes.RECIPE_DATA and found.span.line == 6
    assert found.message == "text gives windows of 8 token ids, int[8], but `Char`'s input " \
        "tokens is [8, 4]"
    assert found.help == "declare `input tokens: int[8]` and start the model with " \
        "`embedding(vocab, dim)`"
    result = cli("check", spec)
    assert result.exit_code == 1 and "error[E5007]" in result.stderr + result.stdout


def test_perplexity_needs_a_cross_entropy_of_labels(tmp_path):
    spec = write_spec(tmp_path)
    spec.write_text(spec.read_text().replace("cross_entropy", "mse"))
    with pytest.raises(DiagnosticError) as caught:
        load_recipe(spec)
    messages = [d.message for d in caught.value.diagnostics]
    assert any("perplexity is exp(mean cross-entropy)" in m for m in messages)
    assert any("text trains next-token prediction" in m for m in messages)


# -- perplexity ---------------------------------------------------------------------------
def test_perplexity_is_exp_of_the_mean_token_cross_entropy_by_hand():
    z = torch.tensor([[[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]],
                      [[0.0, 1.0, 3.0], [1.0, -2.0, 0.0]]])  # [B=2, T=2, V=3]
    y = torch.tensor([[0, 1], [2, 1]])
    by_hand = []
    for b in range(2):
        for t in range(2):
            row = z[b, t].tolist()
            log_sum = math.log(sum(math.exp(v) for v in row))
            by_hand.append(log_sum - row[y[b, t]])
    mean = sum(by_hand) / 4
    assert float(cross_entropy(z, y)) == pytest.approx(mean, abs=1e-6)
    sums = MetricSums("cross_entropy", ("accuracy", "perplexity"))
    sums.add(z[:1], y[:1], cross_entropy(z[:1], y[:1]))  # two batches: exact over the split
    sums.add(z[1:], y[1:], cross_entropy(z[1:], y[1:]))
    result = sums.result("val_")
    assert result["val_perplexity"] == pytest.approx(math.exp(mean), rel=1e-12)
    assert result["val_accuracy"] == 0.5  # argmax per token: 0, 0 | 2, 0 against 0, 1 | 2, 1


def test_a_trained_run_reports_perplexity_as_its_test_split_gives_it(trained):
    spec, run, _ = trained
    rows = [json.loads(line) for line in (run.directory / "metrics.jsonl").read_text().splitlines()]
    assert all("train_perplexity" in r and "val_perplexity" in r for r in rows)
    assert rows[-1]["train_perplexity"] < rows[0]["train_perplexity"]
    assert rows[-1]["train_perplexity"] == pytest.approx(math.exp(rows[-1]["train_loss"]),
                                                         rel=1e-5)
    assert rows[-1]["train_perplexity"] < 3.0  # the corpus repeats: far below |V| = 15
    test = json.loads((run.directory / "test.json").read_text())
    # recomputed by hand: the test windows through the trained module, log-softmax in float64
    model, recipe = load_recipe(spec)
    data = load_data("text", "corpus.txt", context=8, base_dir=spec.parent)
    test_idx = split_of(recipe, data)[2]
    with torch.no_grad():
        z = run.module.cpu().eval()(torch.from_numpy(data.x[test_idx])).double().numpy()
    z = z - z.max(axis=-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    picked = np.take_along_axis(log_p, data.y[test_idx][..., None], axis=-1)
    assert test["test_perplexity"] == pytest.approx(math.exp(-picked.mean()), rel=1e-5)
    assert json.loads((run.directory / "vocab.json").read_text(encoding="utf-8")) == VOCAB


# -- generate -----------------------------------------------------------------------------
def test_the_window_is_left_padded_and_cropped():
    assert window([3, 4], 4).tolist() == [[0, 0, 3, 4]]
    assert window([1, 2, 3, 4, 5, 6], 4).tolist() == [[3, 4, 5, 6]]


def test_pick_is_greedy_at_temperature_zero_and_respects_top_k():
    rng = np.random.default_rng(0)
    assert pick(np.array([0.1, 2.0, 2.0, -1.0]), 0.0, None, rng) == 1
    draws = {pick(np.array([5.0, 4.0, 0.0, 0.0]), 1.0, 2, rng) for _ in range(200)}
    assert draws == {0, 1}


def test_greedy_generation_continues_the_corpus_and_is_deterministic(trained):
    _, run, _ = trained
    first = nnspec_generate(run.directory, "hello ", 20, temperature=0)
    assert first == nnspec_generate(run.directory, "hello ", 20, temperature=0)
    assert str(first).startswith("hello ") and len(first.text) == 20
    assert set(first.text) <= set(VOCAB)
    # the corpus is one line repeated: a trained model continues it
    assert first.text[:5] in ("world", "nnspe")


def test_seeded_sampling_is_reproducible_and_torch_equals_onnxruntime(trained):
    _, run, onnx_file = trained
    kwargs = {"temperature": 1.0, "top_k": 5}
    a = nnspec_generate(run.directory, "hel", 40, seed=3, **kwargs)
    assert a == nnspec_generate(run.directory, "hel", 40, seed=3, **kwargs)
    assert a != nnspec_generate(run.directory, "hel", 40, seed=4, **kwargs)
    assert a == nnspec_generate(run.directory, "hel", 40, seed=3, onnx=onnx_file, **kwargs)
    greedy = nnspec_generate(run.directory, "", 30, temperature=0)
    assert greedy == nnspec_generate(run.directory, "", 30, temperature=0, onnx=onnx_file)


def nnspec_generate(*args, **kwargs):
    from nnspec.generating import generate

    return generate(*args, **kwargs)


def test_generate_errors(trained, tmp_path):
    _, run, _ = trained
    with pytest.raises(GenerateError, match="character 'Z' \\(at position 2\\) is not in the "
                       "vocabulary"):
        nnspec_generate(run.directory, "heZ", 5)
    digits = nnspec.train(Path(__file__).parent.parent / "examples" / "logreg.nn", epochs=1,
                          out=tmp_path / "logreg", **QUIET)
    with pytest.raises(GenerateError, match="is not a text run: it was trained on "
                       "'breast_cancer' data"):
        open_text_run(digits.directory)
    with pytest.raises(GenerateError, match="--top-k must lie in \\[1, 15\\]"):
        nnspec_generate(run.directory, "he", 5, top_k=99)


def test_cli_generate_prints_prompt_and_text_and_exits_1_on_errors(trained, tmp_path):
    _, run, onnx_file = trained
    result = cli("generate", run.directory, "--prompt", "hello ", "--tokens", "12",
                 "--temperature", "0")
    assert result.exit_code == 0
    expected = nnspec_generate(run.directory, "hello ", 12, temperature=0)
    assert result.stdout == str(expected) + "\n"
    onnx_run = cli("generate", run.directory, "--prompt", "hello ", "--tokens", "12",
                   "--temperature", "0", "--onnx", onnx_file)
    assert onnx_run.exit_code == 0 and onnx_run.stdout == result.stdout
    bad = cli("generate", run.directory, "--prompt", "hé")
    assert bad.exit_code == 1
    assert "error: the prompt's character 'é' (at position 1) is not in the vocabulary" in bad.stderr
    missing = cli("generate", tmp_path / "none")
    assert missing.exit_code == 1 and "is not a run directory" in missing.stderr
    usage = cli("generate", run.directory, "--tokens", "-1")
    assert usage.exit_code == 2


def test_generate_through_onnxruntime_imports_no_torch(trained, tmp_path):
    from test_command_imports import imported_by

    _, run, onnx_file = trained
    imported = imported_by("generate", str(run.directory), "--prompt", "he", "--tokens", "3",
                           "--onnx", str(onnx_file), cwd=tmp_path)
    assert "onnxruntime" in imported and not imported & {"torch", "matplotlib", "onnx"}


GPT = """\
model Gpt(vocab: int = {vocab}, context: int = 8) {{
    input tokens: int[context]
    tokens -> wte: embedding(vocab, 16) -> position_embedding(context)
      -> (ln: layernorm(1) -> attention(2, causal=true))
      -> ln_f: layernorm(1) -> head: linear(vocab, tie=wte, bias=false) -> output
}}
train Gpt {{
    data      text("corpus.txt", context=8)
    split     0.8 / 0.1 / 0.1
    batch     16
    epochs    8
    loss      cross_entropy
    optimizer adam(lr=1e-2)
    init      normal(std=0.02)
    metrics   perplexity
    seed      0
    device    cpu
}}
"""


def test_a_causal_transformer_generates_the_same_text_through_onnxruntime(tmp_path):
    """Causal attention and a tied head: the exported graph (its causal mask, one shared
    initializer) samples the same characters as the torch module, and the prediction at a
    position does not depend on later characters."""
    folder = write_spec(tmp_path / "spec")
    spec = folder.parent / "gpt.nn"
    spec.write_text(GPT.format(vocab=len(VOCAB)))
    run = nnspec.train(spec, out=tmp_path / "run", **QUIET)
    assert run.test["test_perplexity"] < 3.0  # the corpus repeats: far below |V| = 15
    onnx_file = tmp_path / "gpt.onnx"
    nnspec.export(spec, run.directory, onnx_file, log=lambda line: None)
    kwargs = {"temperature": 0.9, "top_k": 4, "seed": 1}
    assert nnspec_generate(run.directory, "hel", 30, **kwargs) == nnspec_generate(
        run.directory, "hel", 30, onnx=onnx_file, **kwargs)

    import onnx
    initializers = [t.name for t in onnx.load(onnx_file).graph.initializer]
    assert "wte.weight" in initializers and "head.weight" not in initializers
    import onnxruntime as ort
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    ids = np.arange(16, dtype=np.int64).reshape(2, 8) % len(VOCAB)
    changed = ids.copy()
    changed[:, 5:] = (changed[:, 5:] + 3) % len(VOCAB)  # only positions 5..7 differ
    (a,), (b,) = session.run(None, {"tokens": ids[:1]}), session.run(None, {"tokens": changed[:1]})
    np.testing.assert_allclose(a[:, :5], b[:, :5], rtol=0, atol=1e-6)
    assert np.abs(a[:, 5:] - b[:, 5:]).max() > 1e-3
