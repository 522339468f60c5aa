"""Names the course writes stay in the explanation: an alias (`a2 = z2`) is a node of its own, and the local
derivative through a statement is printed as an expression of names, numbers multiplied out."""

from __future__ import annotations

import numpy as np

import nnc
from nnc.ir import ops
from nnc.runtime.explain import explain_text

NET = """model net {
  input x
  input y
  param w: float = 0.5
  z2 = x * w
  a2 = z2
  loss (y - a2) ** 2
}
"""
AT = {"x": np.array(2.0, np.float32), "y": np.array(3.0, np.float32)}


def test_an_alias_is_a_node_of_its_own_that_compiled_code_drops():
    model = nnc.loads(NET, "net.nn")
    g = model.graph
    assert g.values["a2"] != g.values["z2"] and g.op(g.values["a2"]) is ops.identity
    step = model.training_step(nnc.specs.optimizer_spec("sgd"))
    assert not any(step.op(n) is ops.identity for n in step.nodes)


def test_the_local_derivative_of_the_squared_error_is_written_out():
    model = nnc.loads(NET, "net.nn")
    text = explain_text(model, AT, model.complete_params({}))
    # y − a2 = 3 − 1 = 2, so ∂loss/∂a2 = −2·(y − a2) = −4 and ∂loss/∂y = 2·(y − a2) = 4
    assert "dloss/da2 = dloss/dloss · ∂loss/∂a2 = 1 · -2·(y − a2) = 1 · -4 = -4" in text
    assert "dloss/dz2 = dloss/da2 · ∂a2/∂z2 = -4 · 1 = -4" in text
    assert "dloss/dy = dloss/dloss · ∂loss/∂y = 1 · 2·(y − a2) = 1 · 4 = 4" in text
    assert "dloss/dw = ∂loss/∂a2 · ∂a2/∂z2 · ∂z2/∂w = (-4) · (1) · (2) = -8" in text


def test_a_dense_layer_is_explained_by_the_matrix_chain_rule_with_shapes_and_parameter_names():
    model = nnc.load("examples/mnist_mlp.nn")
    inputs = model.random_inputs(2)
    text = explain_text(model, inputs, model.complete_params({}, random_params=True))
    assert ":param#" not in text
    assert "dloss/dlogits.weight = h2ᵀ · dloss/dlogits   [128, 10] = [128, B]·[B, 10]  → [128, 10]" in text
    assert "dloss/dh1.weight = imageᵀ · (dloss/dh1·[((image @ h1.weight) + h1.bias) > 0])   " \
           "[784, 256] = [784, B]·[B, 256]" in text
    assert "dloss/dh2 = dloss/dlogits · logits.weightᵀ   [B, 128] = [B, 10]·[10, 128]" in text
    assert "dloss/dh1.bias = sum((dloss/dh1·[((image @ h1.weight) + h1.bias) > 0]), axis=0)   [256] ← [B, 256]" in text
    assert "where" not in text   # no tensor of 16 entries or fewer in any tensor step


def test_a_convolution_is_explained_as_a_correlation_with_shapes():
    model = nnc.load("examples/lenet5.nn")
    text = explain_text(model, model.random_inputs(2), model.complete_params({}, random_params=True))
    line = next(x for x in text.splitlines() if x.strip().startswith("dloss/dc1.weight = "))
    assert line.strip().startswith("dloss/dc1.weight = image ⋆ (dloss/dc1·")
    assert "[6, 1, 5, 5] = [B, 1, 28, 28] ⋆ [B, 6, 28, 28]" in line
    back = next(x for x in text.splitlines() if x.strip().startswith("dloss/dimage = "))
    assert "⋆ᵀ c1.weight   [B, 1, 28, 28] = [B, 6, 28, 28] ⋆ᵀ [6, 1, 5, 5]" in back


REDUCE = """model red {
  input x: [2, 2]
  input y: [2, 2]
  a = dense(x, 2)
  s = sum(a, axis=1)
  m = max(y * a, axis=0)
  loss mean((s - 1) ** 2) + mean(m)
}
"""


def where(line: str) -> dict:
    """The numbers of a small step's `where a = [...], b = [...]  → dL/dc = [...]` line, by symbol."""
    import ast

    given, result = line.strip().removeprefix("where ").split("  → ")
    parts, depth, current = [], 0, ""
    for ch in given + ",":
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    pairs = [p.rsplit(" = ", 1) for p in [*parts, result]]
    return {symbol: np.array(ast.literal_eval(value), dtype=np.float64) for symbol, value in pairs}


def test_reductions_and_a_2x2_dense_layer_are_explained_with_shapes_and_numbers():
    """sum broadcasts the gradient back, mean divides it by the count, max routes it to the arg-max entries, a bias
    sums it over the rows; every tensor of these steps has at most 16 entries, so the line after each gives their
    numbers (NumPy agrees)."""
    x = np.array([[1, 2], [3, 4]], np.float32)
    y = np.array([[1, -1], [2, 0.5]], np.float32)
    w = np.array([[0.5, -1], [0.25, 2]], np.float32)
    b = np.array([0.1, -0.2], np.float32)
    model = nnc.loads(REDUCE, "red.nn")
    lines = explain_text(model, {"x": x, "y": y}, model.complete_params({"a.weight": w, "a.bias": b})).splitlines()

    def step(d):
        i = next(i for i, line in enumerate(lines) if line.strip().startswith(f"dloss/d{d} = "))
        return lines[i].strip(), where(lines[i + 1])

    x64, y64, w64 = (v.astype(np.float64) for v in (x, y, w))
    a = x64 @ w64 + b
    s, ya = a.sum(axis=1), y64 * a
    m = ya.max(axis=0)
    ds, dm = s - 1, np.full(2, 0.5)          # 2·(s − 1) / 2 and 1 / 2
    da = ds[:, None] + y64 * (ya == m) * dm   # sum broadcasts; max routes to the arg-max (no ties here)

    line, numbers = step("m")
    assert line.startswith("dloss/dm = broadcast(dloss/dloss) / 2   [2] ← []")
    np.testing.assert_allclose(numbers["dloss/dm"], dm)
    line, numbers = step("s")
    assert line.startswith("dloss/ds = 2·(s − 1)·broadcast(dloss/dloss) / 2   [2] ← []")
    np.testing.assert_allclose(numbers["(s − 1)"], s - 1, rtol=1e-5)
    np.testing.assert_allclose(numbers["dloss/ds"], ds, rtol=1e-5)
    line, numbers = step("a")
    assert line.startswith("dloss/da = broadcast(dloss/ds) + y·broadcast(dloss/dm)·[(y · a) = m]   "
                           "[2, 2] ← [2]; [2, 2] ← [2], routed to the arg-max entries  → [2, 2]")
    np.testing.assert_allclose(numbers["y"], y64)
    np.testing.assert_allclose(numbers["m"], m, rtol=1e-5)
    np.testing.assert_allclose(numbers["dloss/da"], da, rtol=1e-5)
    line, numbers = step("a.weight")
    assert line.startswith("dloss/da.weight = xᵀ · dloss/da   [2, 2] = [2, 2]·[2, 2]  → [2, 2]")
    np.testing.assert_allclose(numbers["x"], x64)
    np.testing.assert_allclose(numbers["dloss/da.weight"], x64.T @ da, rtol=1e-5)
    np.testing.assert_allclose(numbers["dloss/da.weight"], numbers["x"].T @ numbers["dloss/da"], rtol=1e-5)
    line, numbers = step("a.bias")   # the bias is added to both rows: its gradient sums over them
    assert line.startswith("dloss/da.bias = sum(dloss/da, axis=0)   [2] ← [2, 2]  → [2]")
    np.testing.assert_allclose(numbers["dloss/da.bias"], da.sum(axis=0), rtol=1e-5)
    line, numbers = step("x")
    assert line.startswith("dloss/dx = dloss/da · a.weightᵀ   [2, 2] = [2, 2]·[2, 2]")
    np.testing.assert_allclose(numbers["a.weight"], w64)
    np.testing.assert_allclose(numbers["dloss/dx"], da @ w64.T, rtol=1e-5)


def test_a_mean_over_a_symbolic_batch_names_its_count_and_large_tensors_print_no_numbers():
    model = nnc.loads("model reg {\n input x: [B, 10]\n input y: [B, 1]\n s = sum(x, axis=1)\n a = dense(x, 1)\n"
                      " loss mean((y - a) ** 2) + mean(s)\n}\n", "reg.nn")
    lines = explain_text(model, model.random_inputs(4), model.complete_params({}, random_params=True)).splitlines()
    da = next(i for i, line in enumerate(lines) if line.strip().startswith("dloss/da = "))
    assert lines[da].strip().startswith("dloss/da = -2·(y − a)·broadcast(dloss/dloss) / B   [B, 1] ← []")
    assert lines[da + 1].strip().startswith("where (y − a) = [[")
    dx = next(i for i, line in enumerate(lines) if line.strip().startswith("dloss/dx = "))
    assert lines[dx].strip().startswith("dloss/dx = broadcast(dloss/ds) + dloss/da · a.weightᵀ   "
                                        "[B, 10] ← [B]; [B, 10] = [B, 1]·[1, 10]  → [4, 10]")
    assert not any(line.strip().startswith("where") for line in lines[dx + 1:])   # 40 entries > 16: shapes only


def test_a_block_called_twice_with_the_same_name_is_explained():
    """Both calls share their statements' names (`disc.h`), so a node of the second call is not grouped under the
    first call's value (that node is not on the second call's path: this was a KeyError)."""
    model = nnc.loads("""def disc(x) {
  h = relu(dense(x, 2))
  return dense(h, 1)
}
model m {
  input a: [B, 2]
  input b: [B, 2]
  d_a = disc(a, name="disc")
  d_b = disc(b, name="disc")
  loss mean(d_a) - mean(d_b)
}
""", "twice.nn")
    inputs = model.random_inputs(2)
    text = explain_text(model, inputs, model.complete_params({}, random_params=True), backend="reference")
    grads = model.grad(inputs, random_params=True, backend="reference").grads
    line = next(x for x in text.splitlines() if x.strip().startswith("dloss/ddisc.weight = "))
    assert " + " in line   # one term per call
    np.testing.assert_allclose(where(text.splitlines()[text.splitlines().index(line) + 1])["dloss/ddisc.weight"],
                               grads["disc.weight"].astype(np.float64).reshape(2, 1), rtol=1e-5)
