"""Reductions over infinities and NaNs: native code gives NaN, +inf and −inf exactly where the reference
interpreter does (no fast-math fold: Σ (x − x) over a row holding inf is NaN, not 0), and the finite
values within float32 rounding. Lines of 10 and 100 elements, with vectors of 4, 8 and the host's
lanes, take every path of the vectorized line reduction (the wide loop, the halving with one more
vector, the masked tail)."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

import nnc
from nnc.backend import compile_graph, jit
from nnc.backend.compiler import compile_report
from nnc.ir import interp

INF, NAN, BIG = np.inf, np.nan, 3e38

MODEL = """
model nonfinite {
  input x: [8, N]
  input label: int[8]
  input onehot: [8, N]
  self_sub = sum(x - x, axis=1)
  self_add = sum(x + (-x), axis=1)
  self_mul = sum(x * 0, axis=1)
  exp_sub = sum(exp(x) - exp(x), axis=1)
  all_sub = sum(x - x)
  column_sub = sum(x - x, axis=0)
  max_sub = max(x - x, axis=1)
  total = sum(x, axis=1)
  average = mean(x, axis=1)
  probs = softmax(x)
  log_probs = log_softmax(x)
  column_probs = softmax(x, axis=0)
  xent_label = cross_entropy(x, label)
  xent_onehot = cross_entropy(x, onehot)
  output self_sub, self_add, self_mul, exp_sub, all_sub, column_sub, max_sub
  output total, average, probs, log_probs, column_probs, xent_label, xent_onehot
}
"""

# the rows of x: where non-finite values sit (the positions spread over a line's vector parts)
ROWS = [
    {},                                  # finite
    {"a": INF},                          # inf: x − x is NaN
    {"b": -INF},
    {"c": NAN},
    {"a": INF, "c": -INF},               # inf − inf within the sum
    {"a": BIG, "b": BIG},                # finite values whose sum overflows to inf
    {"a": -BIG, "c": -BIG},
    {"all": -INF},                       # softmax of −inf everywhere: NaN
]


def inputs(n: int) -> dict:
    rng = np.random.default_rng(n)
    x = rng.standard_normal((len(ROWS), n)).astype(np.float32)
    where = {"a": 0, "b": n * 3 // 4, "c": n - 1}
    for row, values in zip(x, ROWS):
        for key, value in values.items():
            if key == "all":
                row[:] = value
            else:
                row[where[key]] = value
    label = rng.integers(0, n, len(ROWS)).astype(np.int32)
    return {"x": x, "label": label, "onehot": np.eye(n, dtype=np.float32)[label]}


@pytest.mark.parametrize("width", [4, 8, None])
@pytest.mark.parametrize("n", [10, 100])
def test_non_finite_values_come_out_where_the_interpreter_puts_them(n, width, monkeypatch):
    if width is not None:   # code generated for narrower vectors (they run on this host too)
        host = dataclasses.replace(jit.host(), vector_width=width)
        monkeypatch.setattr(jit, "host", lambda: host)
    g = nnc.load(MODEL.replace("N", str(n))).graph
    values = inputs(n)
    exe = compile_graph(g, {}, use_cache=False)
    got = exe.run(values)
    want = interp.run(g, dict(values, label=values["label"].astype(np.int64)), {}, targets=list(exe.targets))
    assert np.isnan(want[g.outputs["self_sub"]][1:5]).all()   # the case the fold got wrong
    for name, node in g.outputs.items():
        a, b = got[node], want[node]
        for what, test in (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)):
            np.testing.assert_array_equal(test(a), test(b), err_msg=f"{name} [{n}, {width}]: where {what} is")
        finite = np.isfinite(b)
        np.testing.assert_allclose(a[finite], b[finite], rtol=1e-5, atol=1e-5, err_msg=f"{name} [{n}, {width}]")


def test_reductions_are_vectorized_without_fast_math_flags():
    g = nnc.load("""
        model m {
          input x: [64, 1000]
          input label: int[64]
          total = sum(x, axis=1)
          average = mean(x, axis=1)
          probs = softmax(x)
          xent = cross_entropy(x, label)
          output total, average, probs, xent
        }
    """).graph
    text = compile_report(g, {}, "llvm")
    assert not re.search(r"\b(reassoc|nsz|nnan|ninf|arcp|contract|afn|fast)\b", text)
    lanes = [int(n) for n in re.findall(r"fadd <(\d+) x float>", text)]
    assert lanes and max(lanes) >= jit.host().vector_width   # the sums run on whole vectors
