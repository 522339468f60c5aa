"""Indexing and slicing (`x[:, t]`, `x[:, 2:5]`, `x[..., ::-1]`), stack, split and chunk: NumPy's basic
indexing rules, PyTorch's torch.split / torch.chunk / torch.stack, forward and gradient.

Each case is compared with NumPy (forward) and with PyTorch (forward and gradient of Σ y·c for a random c) on
both backends: native code in float32 within 1e-5, the reference interpreter in float64 within 1e-9. The ops
behind them (strided_slice, strided_slice_grad, slice, concat, reshape) are checked against finite differences
in tests/test_vjp.py; the located errors are golden cases in tests/errors (92-99).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nnc
from nnc import NncError
from nnc.ir import ops
from nnc.ir.types import concrete

BACKENDS = {"native": (None, np.float32, 1e-5), "reference": ("reference", np.float64, 1e-9)}
TORCH = {np.float32: torch.float32, np.float64: torch.float64}
RNG = np.random.default_rng(7)
BATCH = 2


def shape_of(model, name: str) -> tuple:
    return concrete(model.graph.type_of(model.graph.values[name]).shape, {"B": BATCH})


def with_cotangents(declarations: str, body: str, outputs: list[str]) -> nnc.Model:
    """A model computing `outputs` from `declarations` with `loss Σ_i sum(output_i · c_i)`, c_i inputs of the
    outputs' shapes (read off a first build)."""
    probe = nnc.loads(f"model m {{ {declarations}\n{body}\noutput {', '.join(outputs)} }}")
    cots = []
    for i, name in enumerate(outputs):
        t = probe.graph.type_of(probe.graph.values[name])
        cots.append(f"input c{i}: [{', '.join(map(str, t.shape))}]")
    loss = " + ".join(f"sum({name} * c{i})" for i, name in enumerate(outputs))
    return nnc.loads(f"model m {{ {declarations}\n{body}\n{' '.join(cots)}\noutput {', '.join(outputs)}\n"
                     f"loss {loss} }}")


def random_inputs(model) -> dict:
    out = {}
    for name, t in model.inputs.items():
        out[name] = RNG.normal(size=concrete(t.shape, {"B": BATCH}))
    return out


def compare_with_torch(model, inputs: dict, torch_fn, outputs: list[str], backend: str):
    """nnc's outputs and gradients (of the loss, w.r.t. every input) against torch_fn's on the same values."""
    be, dtype, rtol = BACKENDS[backend]
    fed = {k: np.asarray(v, dtype=dtype) for k, v in inputs.items()}
    leaves = {k: torch.tensor(v, dtype=TORCH[dtype], requires_grad=True) for k, v in fed.items()}
    got = model.eval(fed, backend=be, float_dtype=dtype)
    want = torch_fn(leaves)
    loss = sum((want[name] * leaves[f"c{i}"]).sum() for i, name in enumerate(outputs))
    loss.backward()
    for name in outputs:
        np.testing.assert_allclose(got[name], want[name].detach().numpy(), rtol=rtol, atol=0, err_msg=name)
    grads = model.grad(fed, backend=be, float_dtype=dtype).grads
    for name in inputs:
        np.testing.assert_allclose(grads[name], leaves[name].grad.numpy(), rtol=rtol, atol=1e-12,
                                   err_msg=f"d loss / d {name}")


# ---- indexing ----------------------------------------------------------------------------------

# (declared shape, index) with B taken whole; NumPy's basic indexing on the same array is the reference
INDEXES = [
    ("[B, 5, 6]", "[:, 1]"),
    ("[B, 5, 6]", "[:, -1]"),
    ("[B, 5, 6]", "[:, 1:4]"),
    ("[B, 5, 6]", "[:, ::2]"),
    ("[B, 5, 6]", "[:, 1:5:3, 4]"),
    ("[B, 5, 6]", "[..., 0]"),
    ("[B, 5, 6]", "[..., -2:]"),
    ("[B, 5, 6]", "[:, 2:50]"),          # bounds past the end are clipped, as in NumPy and PyTorch
    ("[B, 5, 6]", "[:, -50:2]"),
    ("[B, 5, 6]", "[:, 3, 5]"),
    ("[B, 5, 6]", "[:, :, 1:]"),
    ("[B, 5, 6]", "[:, 4][:, 1:3]"),     # indexing a result again
    ("[5, 4]", "[0]"),
    ("[5, 4]", "[-1, 1:3]"),
    ("[5, 4]", "[2, 3]"),                # a scalar
    ("[B, 3, 4, 5]", "[:, 1, ..., 2]"),
    ("[B, 3, 4, 5]", "[..., 1:3, :]"),
]
# negative steps: PyTorch's slicing refuses them, so its side gathers the same positions
BACKWARDS = [
    ("[B, 5, 6]", "[:, ::-1]"),
    ("[B, 5, 6]", "[:, 4:0:-2, 1::3]"),
    ("[B, 5, 6]", "[..., ::-2]"),
    ("[5, 4]", "[::-1, -1]"),
]


def index_model(shape: str, index: str) -> nnc.Model:
    return with_cotangents(f"input x: {shape}", f"y = x{index}", ["y"])


def torch_take(x: torch.Tensor, index: str) -> torch.Tensor:
    """x{index} as a gather of x's elements at the flat positions NumPy's indexing picks from an array of
    positions (PyTorch differentiates the gather)."""
    positions = np.arange(x.numel()).reshape(tuple(x.shape))
    taken = np.array(eval(f"positions{index}", {"positions": positions}))
    return x.reshape(-1)[torch.as_tensor(taken.reshape(-1))].reshape(taken.shape)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape, index", INDEXES, ids=[f"{s}{i}" for s, i in INDEXES])
def test_indexing_matches_numpy_and_pytorch(shape, index, backend):
    model = index_model(shape, index)
    inputs = random_inputs(model)
    want = eval(f"x{index}", {"x": inputs["x"]})  # the test's own index expressions, on NumPy's arrays
    assert shape_of(model, "y") == np.shape(want)
    got = model.eval(inputs, backend="reference", float_dtype=np.float64)["y"]
    np.testing.assert_array_equal(got, want)
    compare_with_torch(model, inputs, lambda t: {"y": eval(f"x{index}", {"x": t["x"]})}, ["y"], backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape, index", BACKWARDS, ids=[f"{s}{i}" for s, i in BACKWARDS])
def test_negative_steps_match_numpy_and_pytorch(shape, index, backend):
    model = index_model(shape, index)
    inputs = random_inputs(model)
    got = model.eval(inputs, backend="reference", float_dtype=np.float64)["y"]
    np.testing.assert_array_equal(got, eval(f"x{index}", {"x": inputs["x"]}))
    compare_with_torch(model, inputs, lambda t: {"y": torch_take(t["x"], index)}, ["y"], backend)


def test_index_nodes():
    """An integer index is a strided_slice and a reshape that drops the axis; `x[:]` and `x[...]` are x itself;
    the gradient puts dy back with strided_slice_grad."""
    m = nnc.loads("model m { input x: [B, 5, 6] a = x[:, 2] b = x[:] c = x[...] d = x[:, 1:4:2, ::-1]\n"
                  "output a, b, c, d loss sum(d) }")
    g = m.graph
    a, x = g.values["a"], g.inputs["x"]
    assert g.op(a) is ops.reshape and g.op(g.operands(a)[0]) is ops.strided_slice
    assert g.nodes[g.operands(a)[0]]["attrs"] == {"start": (0, 2, 0), "step": (1, 1, 1), "shape": ("B", 1, 6)}
    assert g.values["b"] == x and g.values["c"] == x
    assert g.nodes[g.values["d"]]["attrs"] == {"start": (0, 1, 5), "step": (1, 2, -1), "shape": ("B", 2, 6)}
    gg = m._gradient_graph(g.loss, ("x",), ())
    assert any(gg.op(n) is ops.strided_slice_grad for n in gg.nodes)
    assert m.summary().splitlines()[5].split()[:3] == ["a", "index", "[B,"]


def test_index_with_names_bound_to_numbers_and_in_blocks():
    """`t` in x[:, t] may be any expression of numbers, a name bound to one, or a block's argument."""
    m = nnc.loads("""
def at_step(x, t) {
  return x[:, t] * 2
}
model m {
  input x: [B, 4, 3]
  t = 3 - 1
  a = x[:, t]
  b = at_step(x, 1)
  c = x[:, t - 1:t + 1]
  output a, b, c
}""")
    x = RNG.normal(size=(2, 4, 3)).astype(np.float32)
    out = m.eval({"x": x})
    np.testing.assert_array_equal(out["a"], x[:, 2])
    np.testing.assert_array_equal(out["b"], x[:, 1] * 2)
    np.testing.assert_array_equal(out["c"], x[:, 1:3])


def test_index_int_tensors():
    """Labels index as floats do, and keep their dtype."""
    m = nnc.loads("model m { input k: int[B, 3] input x: [B, 4] y = k[:, -1] output x loss cross_entropy(x, y) }")
    assert str(m.graph.type_of(m.graph.values["y"])) == "int[B]"
    k = np.array([[0, 1, 3], [2, 2, 1]], dtype=np.int32)
    x = RNG.normal(size=(2, 4)).astype(np.float32)
    want = torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor(k[:, -1], dtype=torch.long))
    for backend in (None, "reference"):
        assert m.eval({"k": k, "x": x}, backend=backend)["loss"] == pytest.approx(float(want), rel=1e-6)


def test_index_of_a_literal():
    m = nnc.loads("model m { input x: [B, 2] y = x * [[1, 2, 3], [4, 5, 6]][1, ::2] output y }")
    x = RNG.normal(size=(2, 2)).astype(np.float32)
    np.testing.assert_array_equal(m.eval({"x": x})["y"], x * np.array([4, 6], dtype=np.float32))


INDEX_ERRORS = [
    ("input x: [B, 4]\ny = x[:, 4]", "index out of range for axis 1 of [B, 4]: got 4, expected -4 to 3", "4"),
    ("input x: [B, 4]\ny = x[:, -5]", "got -5, expected -4 to 3", "-5"),
    ("input x: [4]\ny = x[1, 2]", "too many indices for a tensor of shape [4]: got 2, expected at most 1", "2"),
    ("input x: [B, 4]\ny = x[..., 1, ...]", "an index has at most one '...': got 2", "..."),
    ("input x: [B, 4]\ny = x[1:, 0]", "axis 0 of [B, 4] is the symbolic dim B, which can only be taken whole: "
                                      "got 1:, expected ':'", "1:"),
    ("input x: [B, 4]\ny = x[::-1]", "got ::-1, expected ':'", "::-1"),
    ("input x: [B, 4]\ny = x[:, ::0]", "slice step cannot be 0", "0"),
    ("input x: [B, 4]\ny = x[:, 3:1]", "the slice 3:1 selects nothing from axis 1 of [B, 4]", "3:1"),
    ("input x: [B, 4]\ny = x[:, 1.5]", "an index must be an integer: got the number 1.5", "1.5"),
    ("input x: [B, 4]\ny = x[:, B]", "an index must be an integer: got the dim B", "B"),
    ("input x: [B, 4]\ninput t: [B]\ny = x[:, t]", "an index must be an integer: got a tensor", "t"),
    ("input x: [B, 4]\ny = 3[0]", "cannot index the number 3, expected a tensor", "3"),
]


@pytest.mark.parametrize("body, message, at", INDEX_ERRORS, ids=[e[1][:40] for e in INDEX_ERRORS])
def test_index_errors_point_at_the_subscript(body, message, at):
    text = f"model m {{\n{body}\noutput x\n}}"
    with pytest.raises(NncError) as info:
        nnc.loads(text)
    err = info.value
    assert message in err.message
    line = text.splitlines()[err.loc.span.line - 1]
    assert line[err.loc.span.column - 1:err.loc.span.end_column - 1] == at


# ---- stack, split, chunk -------------------------------------------------------------------------

STACKS = [(1, 1), (0, 0), (2, 2), (-1, -1), (-3, 0)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("axis, dim", STACKS, ids=[f"axis={a}" for a, _ in STACKS])
def test_stack_matches_pytorch(axis, dim, backend):
    model = with_cotangents("input a: [B, 4] input b: [B, 4] input c: [B, 4]", f"y = stack([a, b, c], axis={axis})",
                            ["y"])
    compare_with_torch(model, random_inputs(model),
                       lambda t: {"y": torch.stack([t["a"], t["b"], t["c"]], dim=dim)}, ["y"], backend)


SPLITS = [
    ("split(x, 2, axis=1)", lambda x: torch.split(x, 2, dim=1)),                 # 2, 2, 2, 1
    ("split(x, [3, 4])", lambda x: torch.split(x, [3, 4], dim=1)),              # axis 1 by default
    ("split(x, [1, 2], axis=-1)", lambda x: torch.split(x, [1, 2], dim=-1)),
    ("split(x, 7)", lambda x: torch.split(x, 7, dim=1)),                        # one piece: x itself
    ("chunk(x, 3)", lambda x: torch.chunk(x, 3, dim=1)),                        # 3, 3, 1
    ("chunk(x, 5, axis=1)", lambda x: torch.chunk(x, 5, dim=1)),                # 2, 2, 2, 1: fewer than 5
    ("chunk(x, 2, axis=2)", lambda x: torch.chunk(x, 2, dim=2)),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("call, torch_fn", SPLITS, ids=[s[0] for s in SPLITS])
def test_split_and_chunk_match_pytorch(call, torch_fn, backend):
    pieces = len(torch_fn(torch.zeros(BATCH, 7, 3)))
    names = [f"p{i}" for i in range(pieces)]
    model = with_cotangents("input x: [B, 7, 3]", f"{', '.join(names)} = {call}", names)
    compare_with_torch(model, random_inputs(model), lambda t: dict(zip(names, torch_fn(t["x"]))), names, backend)


@pytest.mark.parametrize("dim", range(1, 10))
def test_chunk_and_split_give_pytorchs_pieces(dim):
    """The number and sizes of the pieces, for every count and size up to past the axis."""
    x = torch.zeros(1, dim)
    for n in range(1, dim + 2):
        for call, want in ((f"chunk(x, {n})", torch.chunk(x, n, dim=1)), (f"split(x, {n})", torch.split(x, n, dim=1))):
            names = ", ".join(f"v{i}" for i in range(len(want)))
            m = nnc.loads(f"model m {{ input x: [B, {dim}] {names} = {call} output {names} }}")
            assert [shape_of(m, f"v{i}")[1] for i in range(len(want))] == [p.shape[1] for p in want], call


SPLIT_ERRORS = [
    ("a, b = split(x, [2, 3], axis=1)", "split: sizes [2, 3] add up to 5, expected 6, the size of axis 1 of [B, 6]"),
    ("a, b = split(x, [0, 6])", "split: sizes must be at least 1, got [0, 6]"),
    ("a, b = split(x, 0)", "split: the piece size must be at least 1, got 0"),
    ("a, b = split(x, 3, axis=0)", "split: cannot cut [B, 6] along axis 0, the symbolic dim B"),
    ("a, b = chunk(x, 2, axis=2)", "chunk: axis 2 is out of range, expected -2 <= axis < 2"),
    ("a, b = chunk(x, 0)", "chunk: the number of pieces must be at least 1, got 0"),
    ("a, b = split(x, 2.5)", "split: sizes must be an integer or a list of integers, got the number 2.5"),
    ("y = stack([x, x[:, 1:]])", "stack: tensor 2 has shape [B, 5], expected [B, 6] like tensor 1"),
    ("y = stack([x, x], axis=3)", "stack: axis 3 is out of range, expected -3 <= axis < 3"),
    ("y = stack([])", "stack: needs at least one tensor"),
]


@pytest.mark.parametrize("body, message", SPLIT_ERRORS, ids=[e[1][:40] for e in SPLIT_ERRORS])
def test_split_chunk_stack_errors(body, message):
    with pytest.raises(NncError) as info:
        nnc.loads(f"model m {{ input x: [B, 6] {body} output x }}")
    assert info.value.message == message


def test_stack_of_split_and_concat_of_chunks():
    """Several values go wherever a list of tensors does."""
    m = nnc.loads("model m { input x: [B, 6] y = stack(split(x, 2), axis=1) z = concat(chunk(x, 3), axis=1) "
                  "output y, z }")
    x = RNG.normal(size=(3, 6)).astype(np.float32)
    out = m.eval({"x": x})
    np.testing.assert_array_equal(out["y"], x.reshape(3, 3, 2))
    np.testing.assert_array_equal(out["z"], x)


def test_native_strided_copies_with_fused_epilogues():
    """The native kernels of strided_slice and strided_slice_grad, with pointwise work fused after them, at
    several sizes, against the interpreter."""
    m = nnc.loads("model m { input x: [B, 9, 8] input c: [B, 3, 4] y = relu(x[:, 8:1:-3, ::2]) * 2 + 1 "
                  "output y loss sum(y * c) + sum(x[:, 0] * x[:, -1]) }")
    for batch in (1, 5):
        inputs = {"x": RNG.normal(size=(batch, 9, 8)).astype(np.float32),
                  "c": RNG.normal(size=(batch, 3, 4)).astype(np.float32)}
        native, reference = m.grad(inputs), m.grad(inputs, backend="reference")
        np.testing.assert_allclose(native.value, reference.value, rtol=1e-5)
        np.testing.assert_allclose(native.grads["x"], reference.grads["x"], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(m.eval(inputs)["y"], m.eval(inputs, backend="reference")["y"])
