"""Every op's VJP rule against central finite differences in float64.

Each case builds a one-op graph, contracts its output with a random cotangent
(loss = Σ y · c), differentiates symbolically and compares every gradient with
(f(x + h) − f(x − h)) / 2h. Cases cover broadcasting, repeated use of the same
input, and every transposition flag of matmul.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnc.ir import ops
from nnc.ir.graph import Graph, verify
from nnc.ir.interp import run
from nnc.ir.ops import PROJECTION, REGISTRY, NoGradient
from nnc.ir.types import TensorType
from nnc.passes.autodiff import grad

RNG = np.random.default_rng(1234)
H = 1e-6
TOL = 1e-6


def build(op, shapes, attrs=None, *, repeat=None, positive=()):
    """A graph computing loss = Σ op(inputs) · cotangent; `repeat` feeds one input to every operand."""
    g = Graph()
    names = []
    nodes = []
    for i, shape in enumerate(shapes if repeat is None else shapes[:1]):
        name = f"x{i}"
        t = TensorType(tuple(shape), "float64")
        nodes.append(g.add_op(ops.input, (), {"name": name, "type": t}, type=t))
        g.inputs[name] = nodes[-1]
        names.append(name)
    operands = nodes if repeat is None else nodes * repeat
    y = g.add_op(ops.get(op), operands, attrs or {})
    yt = g.type_of(y)
    ct = TensorType(yt.shape, "float64")
    cot = g.add_op(ops.input, (), {"name": "cot", "type": ct}, type=ct)
    g.inputs["cot"] = cot
    loss = g.add_op(ops.sum, (g.add_op(ops.mul, (y, cot)),), {"axis": None, "keepdims": False})
    g.loss = loss
    values = {}
    for i, name in enumerate(names):
        v = RNG.normal(size=g.type_of(nodes[i]).shape)
        if i in positive:
            v = np.abs(v) + 0.5
        values[name] = v
    values["cot"] = RNG.normal(size=yt.shape)
    return g, names, values


def numeric_grad(g, values, name):
    x = values[name]
    out = np.zeros_like(x)
    flat = x.reshape(-1)
    for k in range(flat.size):
        saved = flat[k]
        flat[k] = saved + H
        up = run(g, values, {}, float_dtype=np.float64)[g.loss]
        flat[k] = saved - H
        down = run(g, values, {}, float_dtype=np.float64)[g.loss]
        flat[k] = saved
        out.reshape(-1)[k] = (up - down) / (2 * H)
    return out


def check(g, names, values, tol=TOL):
    gg = grad(g, wrt=names)
    verify(gg)
    got = run(gg, values, {}, float_dtype=np.float64)
    for name in names:
        symbolic = got[gg.grads[name]]
        numeric = numeric_grad(g, values, name)
        assert symbolic.shape == numeric.shape, name
        scale = np.maximum(np.abs(numeric), np.abs(symbolic)).max() + 1e-8
        err = np.abs(symbolic - numeric).max() / scale
        assert err < tol, f"{name}: relative error {err:.2e}\nsymbolic {symbolic}\nnumeric {numeric}"


UNARY = ["relu", "sigmoid", "tanh", "exp", "abs", "square", "neg", "identity"]
CASES = [(name, [(3, 4)], {}, ()) for name in UNARY] + [
    ("log", [(3, 4)], {}, (0,)),
    ("sqrt", [(3, 4)], {}, (0,)),
    ("leaky_relu", [(3, 4)], {"alpha": 0.1}, ()),
    ("elu", [(3, 4)], {"alpha": 1.5}, ()),
    ("add", [(3, 4), (4,)], {}, ()),
    ("add", [(3, 1), (1, 4)], {}, ()),
    ("sub", [(3, 4), (3, 1)], {}, ()),
    ("sub", [(), (2, 3)], {}, ()),
    ("mul", [(2, 3, 4), (3, 1)], {}, ()),
    ("div", [(3, 4), (4,)], {}, (1,)),
    ("pow", [(3, 4), ()], {}, (0,)),
    ("pow", [(3, 4), (4,)], {}, (0,)),
    ("bce_logits", [(3, 4), (3, 4)], {}, ()),
    ("bce_logits", [(3, 4), ()], {}, ()),
    ("maximum", [(3, 4), (3, 4)], {}, ()),
    ("minimum", [(3, 4), (4,)], {}, ()),
    ("sum", [(3, 4, 5)], {"axis": (0, 2), "keepdims": False}, ()),
    ("sum", [(3, 4)], {"axis": None, "keepdims": False}, ()),
    ("mean", [(3, 4, 5)], {"axis": (1,), "keepdims": True}, ()),
    ("mean", [(3, 4)], {"axis": None, "keepdims": False}, ()),
    ("max", [(3, 4, 5)], {"axis": (2,), "keepdims": False}, ()),
    ("reshape", [(3, 4)], {"shape": (2, 6)}, ()),
    ("transpose", [(2, 3, 4)], {"perm": (2, 0, 1)}, ()),
    ("broadcast_to", [(3, 1)], {"shape": (2, 3, 4)}, ()),
    ("concat", [(2, 3), (2, 1), (2, 2)], {"axis": 1}, ()),
    ("slice", [(3, 6)], {"axis": 1, "start": 2, "stop": 5}, ()),
    ("slice", [(4, 2)], {"axis": 0, "start": 0, "stop": 3}, ()),
    ("strided_slice", [(3, 7, 4)], {"start": (1, 1, 3), "step": (1, 2, -2), "shape": (2, 3, 2)}, ()),
    ("strided_slice", [(5, 4)], {"start": (4, 0), "step": (-1, 1), "shape": (5, 1)}, ()),
    ("strided_slice_grad", [(2, 3, 2)], {"start": (1, 1, 3), "step": (1, 2, -2), "in_shape": (3, 7, 4)}, ()),
    ("matmul", [(3, 4), (4, 5)], {"ta": False, "tb": False}, ()),
    ("matmul", [(4, 3), (4, 5)], {"ta": True, "tb": False}, ()),
    ("matmul", [(3, 4), (5, 4)], {"ta": False, "tb": True}, ()),
    ("matmul", [(4, 3), (5, 4)], {"ta": True, "tb": True}, ()),
    # batched products: a factor the whole batch shares gets its gradient from matmul_sum, in every flag form
    ("matmul", [(2, 3, 4), (4, 5)], {}, ()),
    ("matmul", [(2, 4, 3), (4, 5)], {"ta": True}, ()),
    ("matmul", [(2, 3, 4), (5, 4)], {"tb": True}, ()),
    ("matmul", [(2, 4, 3), (5, 4)], {"ta": True, "tb": True}, ()),
    ("matmul", [(3, 4), (2, 4, 5)], {}, ()),
    ("matmul", [(1, 1, 3, 4), (2, 3, 4, 5)], {}, ()),
    ("matmul", [(2, 1, 3, 4), (3, 5, 4)], {"tb": True}, ()),       # partly broadcast: unbroadcast sums
    ("matmul", [(2, 3, 3, 4), (2, 3, 4, 2)], {}, ()),
    ("matmul_sum", [(2, 3, 4), (2, 3, 5)], {"ta": True}, ()),
    ("matmul_sum", [(2, 3, 4), (2, 5, 4)], {"tb": True}, ()),
    ("matmul_sum", [(2, 2, 4, 3), (2, 2, 5, 4)], {"ta": True, "tb": True}, ()),
    ("conv2d", [(2, 3, 6, 5), (4, 3, 3, 2)], {"stride": 1, "pad": 1}, ()),
    ("conv2d", [(2, 2, 7, 7), (3, 2, 3, 3)], {"stride": 2, "pad": 0}, ()),
    ("conv2d_grad_input", [(2, 4, 3, 3), (4, 3, 3, 3)], {"stride": 2, "pad": 1, "in_shape": (2, 3, 6, 6)}, ()),
    ("conv2d_grad_weight", [(2, 3, 6, 6), (2, 4, 3, 3)], {"stride": 2, "pad": 1, "kshape": (4, 3, 3, 3)}, ()),
    # grouped (depthwise in the second) and dilated convolutions, and their backward forms
    ("conv2d", [(2, 4, 6, 5), (6, 2, 3, 2)], {"stride": 1, "pad": 1, "groups": 2, "dilation": 2}, ()),
    ("conv2d", [(1, 3, 7, 7), (6, 1, 3, 3)], {"stride": 2, "pad": 2, "groups": 3, "dilation": 3}, ()),
    ("conv2d_grad_input", [(2, 4, 3, 3), (4, 2, 3, 3)], {"stride": 2, "pad": 1, "in_shape": (2, 4, 7, 8),
                                                        "groups": 2, "dilation": 2}, ()),
    ("conv2d_grad_weight", [(2, 4, 7, 7), (2, 6, 3, 3)], {"stride": 2, "pad": 1, "kshape": (6, 2, 3, 3),
                                                         "groups": 2, "dilation": 2}, ()),
    ("upsample", [(2, 2, 3, 4)], {"factor": 2, "mode": "nearest"}, ()),
    ("upsample", [(2, 2, 3, 4)], {"factor": 3, "mode": "bilinear"}, ()),
    ("upsample_grad", [(2, 2, 6, 4)], {"factor": 2, "mode": "nearest"}, ()),
    ("upsample_grad", [(1, 2, 9, 6)], {"factor": 3, "mode": "bilinear"}, ()),
    ("maxpool", [(2, 3, 6, 6)], {"size": 2, "stride": 2}, ()),
    ("maxpool", [(1, 2, 7, 7)], {"size": 3, "stride": 2}, ()),
    ("avgpool", [(2, 3, 6, 6)], {"size": 2, "stride": 2}, ()),
    ("avgpool_grad", [(2, 3, 3, 3)], {"size": 2, "stride": 2, "in_shape": (2, 3, 6, 6)}, ()),
    # padded windows (−inf for the max, zeros for the mean) and ceil_mode's last window reaching past the padding
    ("maxpool", [(1, 2, 5, 5)], {"size": 3, "stride": 1, "pad": 1}, ()),
    ("maxpool", [(1, 2, 6, 5)], {"size": 3, "stride": 2, "pad": 1, "ceil_mode": True}, ()),
    ("avgpool", [(1, 2, 6, 6)], {"size": 2, "stride": 2, "pad": 1}, ()),
    ("avgpool", [(2, 2, 5, 6)], {"size": 3, "stride": 2, "pad": 1, "ceil_mode": True, "count_include_pad": False}, ()),
    ("avgpool_grad", [(2, 2, 3, 3)], {"size": 3, "stride": 2, "pad": 1, "ceil_mode": True, "count_include_pad": False,
                                      "in_shape": (2, 2, 5, 5)}, ()),
    ("softplus", [(3, 4)], {}, ()),
    ("softplus", [(3, 4)], {"beta": 2.0, "threshold": 1.0}, ()),   # some entries above the threshold: the identity
    ("xlogy", [(3, 4), (4,)], {}, (1,)),
    # special.py (tan, asin, acos, acosh and atanh, whose domains the normal draws leave: test_vjp_inside_domain)
    *[(name, [(3, 4)], {}, ()) for name in ("sin", "cos", "atan", "sinh", "cosh", "asinh", "erf")],
    ("where", [(3, 4), (3, 4), (4,)], {}, ()),   # normal draws are never 0: test_vjp_of_where_with_a_mask too
    ("prod", [(3, 4, 2)], {"axis": (1,), "keepdims": False}, ()),   # with zeros: test_vjp_of_prod_with_zeros
    ("softmax", [(3, 5)], {"axis": -1}, ()),
    ("softmax", [(3, 5)], {"axis": 0}, ()),
    ("log_softmax", [(3, 5)], {"axis": 1}, ()),
    ("xent", [(4, 5), (4, 5)], {}, ()),
    ("xent", [(2, 3, 5), (2, 3, 5)], {}, ()),         # sequences: classes on the last axis
    # one process: the identity both ways (on 2 ranks, uneven shards included: tests/test_distributed.py)
    ("cross_rank_sum", [(3, 4)], {}, ()),
    ("cross_rank_sum", [(3, 4)], {"adjoint": True}, ()),
]

# ops that read int ids (operand 1): (op, float operand shape, ids, attrs)
ID_CASES = [
    ("take", (5, 3), np.array([[0, 4, 2, 4], [1, 1, 0, 3]]), {}),   # repeated ids: their gradients add up
    ("take", (6,), np.array([5, 0, 5]), {}),
    ("scatter_add", (2, 4, 3), np.array([[0, 4, 2, 4], [1, 1, 0, 3]]), {"rows": 5}),
]


@pytest.mark.parametrize("op,shapes,attrs,positive", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_vjp_matches_finite_differences(op, shapes, attrs, positive):
    g, names, values = build(op, shapes, attrs, positive=positive)
    check(g, names, values)


# ops defined on an interval only: drawn uniformly inside it, away from its ends (and from tan's poles)
DOMAIN_CASES = [("tan", -1.3, 1.3), ("asin", -0.9, 0.9), ("acos", -0.9, 0.9), ("atanh", -0.9, 0.9), ("acosh", 1.2, 4.0)]


@pytest.mark.parametrize("op,lo,hi", DOMAIN_CASES, ids=[c[0] for c in DOMAIN_CASES])
def test_vjp_inside_domain(op, lo, hi):
    g, names, values = build(op, [(3, 4)])
    values["x0"] = RNG.uniform(lo, hi, size=(3, 4))
    check(g, names, values)


def test_vjp_of_where_with_a_mask():
    """where(c, a, b) with a 0/1 mask broadcast over rows: each operand gets dy where it is chosen, summed back."""
    g, names, values = build("where", [(1, 4), (3, 4), (3, 1)])
    values["x0"] = np.array([[1.0, 0.0, 0.0, 1.0]])
    check(g, names[1:], values)


def test_vjp_of_prod_with_zeros():
    """Rows with no zero, one zero and two zeros: the product of the others, which central differences see too."""
    g, names, values = build("prod", [(3, 4)], {"axis": (1,), "keepdims": False})
    values["x0"] = np.array([[0.5, -2.0, 1.5, 3.0], [0.7, 0.0, -1.2, 2.0], [0.0, 1.1, 0.0, -0.4]])
    check(g, names, values)


@pytest.mark.parametrize("op", ["mul", "add", "sub", "maximum", "matmul"])
def test_repeated_input_accumulates(op):
    shape = [(4, 4)]
    g, names, values = build(op, shape, {}, repeat=2)
    check(g, names, values)


def test_xent_int_labels():
    g = Graph()
    t = TensorType((4, 5), "float64")
    x = g.add_op(ops.input, (), {"name": "x", "type": t}, type=t)
    lt = TensorType((4,), "int32")
    lab = g.add_op(ops.input, (), {"name": "labels", "type": lt}, type=lt)
    g.inputs.update(x=x, labels=lab)
    g.loss = g.add_op(ops.mean, (g.add_op(ops.xent, (x, lab)),), {"axis": None, "keepdims": False})
    values = {"x": RNG.normal(size=(4, 5)) * 30, "labels": np.array([0, 4, 2, 2])}
    check(g, ["x"], values)


@pytest.mark.parametrize("op,shape,ids,attrs", ID_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(ID_CASES)])
def test_vjp_of_ops_reading_ids(op, shape, ids, attrs):
    g = Graph()
    t, it = TensorType(shape, "float64"), TensorType(ids.shape, "int32")
    x = g.add_op(ops.input, (), {"name": "x", "type": t}, type=t)
    i = g.add_op(ops.input, (), {"name": "ids", "type": it}, type=it)
    g.inputs.update(x=x, ids=i)
    y = g.add_op(ops.get(op), (x, i), attrs)
    cot = g.add_op(ops.input, (), {"name": "cot", "type": TensorType(g.type_of(y).shape, "float64")},
                   type=TensorType(g.type_of(y).shape, "float64"))
    g.inputs["cot"] = cot
    g.loss = g.add_op(ops.sum, (g.add_op(ops.mul, (y, cot)),), {"axis": None, "keepdims": False})
    check(g, ["x"], {"x": RNG.normal(size=shape), "ids": ids, "cot": RNG.normal(size=g.type_of(y).shape)})


def test_xent_int_labels_on_sequences():
    g = Graph()
    t, lt = TensorType((2, 3, 5), "float64"), TensorType((2, 3), "int32")
    x = g.add_op(ops.input, (), {"name": "x", "type": t}, type=t)
    lab = g.add_op(ops.input, (), {"name": "labels", "type": lt}, type=lt)
    g.inputs.update(x=x, labels=lab)
    g.loss = g.add_op(ops.mean, (g.add_op(ops.xent, (x, lab)),), {"axis": None, "keepdims": False})
    check(g, ["x"], {"x": RNG.normal(size=(2, 3, 5)) * 10, "labels": np.array([[0, 4, 2], [2, 1, 4]])})


def test_stop_gradient_passes_no_gradient_and_held_differences_agree():
    """Σ stop_gradient(x) · x · c: the gradient comes through the second factor only (x · c, not 2x · c), and
    central differences agree once the stopped value is held fixed (nnc/runtime/gradcheck.py)."""
    from nnc.runtime.gradcheck import hold_stopped

    g = Graph()
    t = TensorType((3, 4), "float64")
    x, cot = (g.add_op(ops.input, (), {"name": name, "type": t}, type=t) for name in ("x", "cot"))
    g.inputs.update(x=x, cot=cot)
    y = g.add_op(ops.mul, (g.add_op(ops.stop_gradient, (x,)), x))
    g.loss = g.add_op(ops.sum, (g.add_op(ops.mul, (y, cot)),), {"axis": None, "keepdims": False})
    values = {"x": RNG.normal(size=(3, 4)), "cot": RNG.normal(size=(3, 4))}
    gg = grad(g, wrt=["x"])
    verify(gg)
    symbolic = run(gg, values, {}, float_dtype=np.float64)[gg.grads["x"]]
    np.testing.assert_allclose(symbolic, values["x"] * values["cot"], rtol=1e-12)
    np.testing.assert_allclose(numeric_grad(hold_stopped(g, values, {}), values, "x"), symbolic, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(numeric_grad(g, values, "x"), 2 * symbolic, rtol=TOL, atol=TOL)  # not held: 2x · c


def test_every_op_has_a_vjp_rule():
    missing = [name for name, op in REGISTRY.items() if op.vjp is None]
    assert not missing, f"ops without a VJP rule: {missing}"
    for name, op in REGISTRY.items():
        if isinstance(op.vjp, NoGradient):
            assert op.vjp.why
        elif op.arity is not None:
            assert len(op.vjp) == op.arity, name
        for rule in op.vjp if isinstance(op.vjp, tuple) else ():
            if rule is not None:
                assert ":" in rule.text and rule.text.split(":")[0].strip(), f"{name}: rule text {rule.text!r}"


def test_differentiated_ops_are_all_tested():
    tested = {c[0] for c in CASES} | {c[0] for c in ID_CASES} | {c[0] for c in DOMAIN_CASES}
    differentiable = {name for name, op in REGISTRY.items()  # scan and item: tests/test_scan.py
                      if isinstance(op.vjp, tuple) and op.arity != 0 and not op.is_a(PROJECTION)}
    assert differentiable <= tested, f"no finite-difference case for {sorted(differentiable - tested)}"
