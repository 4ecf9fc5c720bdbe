"""Numbers are bounded where they enter (E0008), and the checker's cost is bounded: each class
the fuzzer (fuzz/) found, as a regression test with its code, message and span."""

from __future__ import annotations

import time

import pytest

from nnspec.spec.bounds import digits, fits_pow, show
from nnspec.spec.diagnostics import DiagnosticError
from nnspec.spec.elaborate import Elaborator
from nnspec.spec.loader import load_text
from nnspec.spec.models import model_names
from nnspec.spec.ops.pool import _widest_window, adaptive_windows
from nnspec.spec.recipe.elaborate import check_recipes
from nnspec.spec.suggest import closest


def first_error(text: str):
    """The first error of `nnspec check` on ``text``, as (code, line, col, width, message, label)."""
    try:
        loaded = load_text(text, "t.nn")
    except DiagnosticError as exc:
        diags = list(exc.diagnostics)
    else:
        diags, graphs = [], {}
        for name in model_names(loaded):
            try:
                graphs[name] = Elaborator(loaded).model(name, {})
            except DiagnosticError as exc:
                diags += exc.diagnostics
                graphs[name] = None
        diags += check_recipes(loaded, graphs)[1]
    d = next(d for d in diags if d.severity == "error")
    return d.code, d.span.line, d.span.col, d.span.end - d.span.start, d.message, d.labels[0].message


def model(chain: str, shape: str = "4") -> str:
    return f"model M {{ input x: [{shape}]\n x -> {chain} -> output }}"


RECIPE = "model M { input x: [64]\n x -> linear(10) -> output }\ntrain M { data digits\n loss cross_entropy\n "
RANGE = "integer result out of range"


@pytest.mark.parametrize("text, expected", [
    (model("linear(" + "9" * 4353 + ")"),
     ("E0008", 2, 14, 4353, "integer literal out of range: a 4,353-digit integer", "too large")),
    (model("linear(10000000000000000000)"),
     ("E0008", 2, 14, 20, "integer literal out of range: a 20-digit integer", "too large")),
    (model("linear(99999999999G)"),
     ("E0008", 2, 14, 12, "integer literal out of range: 99,999,999,999,000,000,000", "too large")),
    (model("conv(4, (10**56)**256)", "1, 8, 8"), ("E0008", 2, 16, 6, RANGE, "about 57 digits")),
    (model("linear(2**2**2**2**2)"), ("E0008", 2, 14, 13, RANGE, "about 19,729 digits")),
    (model("linear(2**62 * 4)"), ("E0008", 2, 14, 9, RANGE, "this is 18446744073709551616")),
    (model("linear(int(1e300))"), ("E0008", 2, 14, 10, RANGE, "this is a 301-digit integer")),
    (model("linear(2**60)"),
     ("E0008", 2, 14, 5, "`features` of `linear` is out of range: 1152921504606846976", "too large")),
    (f"model M {{ input x: [{'9' * 5000}]\n x -> linear(3) -> output }}",
     ("E0008", 1, 21, 5000, "integer literal out of range: a 5,000-digit integer", "too large")),
    (RECIPE + "optimizer adam(lr=(10**56)**256) }", ("E0008", 5, 21, 6, RANGE, "too large")),
    (RECIPE + "optimizer adam(lr=10**18 * 10) }", ("E0008", 5, 20, 11, RANGE, "this is 10000000000000000000")),
    (RECIPE + "optimizer adam\n seed 2**60 }",
     ("E0008", 6, 7, 5, "`seed` is out of range: 1152921504606846976", "too large")),
    (RECIPE + "optimizer adam\n epochs 10**17 }",
     ("E0008", 6, 9, 6, "`epochs` is out of range: 100000000000000000", "too large")),
])
def test_numbers_out_of_range_are_located_errors(text, expected):
    assert first_error(text) == expected


@pytest.mark.parametrize("text, expected", [
    # the shape rule ran, then the MACs walked 10^9 windows: the limit now comes first
    (model("adaptive_avgpool(10**9) -> flatten", "1, 8, 8"),
     ("E4002", 2, 7, 23, "`adaptive_avgpool` outputs 1000000000000000000 elements per sample",
      "output [1, 1000000000, 1000000000]")),
    # the padding suggestion sorted range(kernel + stride): a MemoryError
    (model("conv(4, 3, stride=2**50)", "1, 8, 8"),
     ("E2101", 2, 7, 24, "conv output size is not an integer along height", "input [1, 8, 8]")),
    ("model M { input x: [2**20]\n a, b = x -> chunk(2**20)\n a -> output }",
     ("E4002", 2, 20, 5, "`chunk` would make 1,048,576 parts", "")),
])
def test_huge_sizes_stop_before_costly_work(text, expected):
    start = time.perf_counter()
    assert first_error(text) == expected
    assert time.perf_counter() - start < 1.0


def test_a_lone_surrogate_in_text_is_located():
    text = model("linear(3)") + "\n\udcff"
    assert first_error(text) == ("E0003", 3, 1, 1, "text contains a lone surrogate (U+DCFF), which is not UTF-8",
                                 "not a character")


def test_a_weights_path_too_long_for_the_system_is_not_a_crash():
    # Path.is_file raised OSError (file name too long); the file is checked when training starts
    text = RECIPE + 'optimizer adam\n init from("' + "n" * 5000 + '.safetensors") }'
    recipes, diags = check_recipes(load_text(text, "t.nn"), {})
    assert len(recipes) == 1 and [d for d in diags if d.severity == "error"] == []


def test_did_you_mean_is_bounded_for_long_names():
    start = time.perf_counter()
    assert first_error(model("a" * 20000))[:5] == ("E1001", 2, 7, 20000, f"unknown layer `{'a' * 20000}`")
    text = "model M { input x: [4]\n " + "b" * 20000 + " = x -> linear(3)\n " + "b" * 19999 + "c -> output }"
    assert first_error(text)[:4] == ("E1002", 3, 2, 20000)
    assert time.perf_counter() - start < 1.0
    assert closest("lenear", ["linear", "lstm"]) == "linear"  # short names still get suggestions
    assert closest("x" * 65, ["x" * 64]) is None


def test_number_helpers():
    assert [digits(v) for v in (0, 9, 10, 99, 100, 10**4352, 10**4353 - 1, -(10**30))] == [1, 1, 2, 2, 3, 4353, 4353, 31]
    assert show(10**4352) == "a 4,353-digit integer" and show(-(10**30)) == "a negative 31-digit integer"
    assert show(2**63) == "9223372036854775808"
    assert fits_pow(2, 64) and not fits_pow(2, 65) and not fits_pow(10**56, 256) and fits_pow(1, 10**18)
    assert fits_pow(2, -(10**18)) and fits_pow(2.0, 10**18)


def test_adaptive_window_closed_forms_match_the_windows():
    for n in range(1, 40):
        for out in range(1, 40):
            windows = adaptive_windows(n, out)
            assert _widest_window(n, out) == max(b - a for a, b in windows)
