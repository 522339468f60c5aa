"""The functions of nnc/ir/ops/special.py and the comparisons and `min` of the language against PyTorch.

Each function is called from a `.nn` model, its values and gradients computed natively in float32 and by the
reference interpreter in float64, and compared with torch's (a dev dependency) on values inside its domain.
The native lowering is also compared with the interpreter in tests/backend/test_backend_elementwise.py (every
unary op), the gradients with finite differences in tests/test_vjp.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nnc

# name -> (values it is defined on, the torch function)
DOMAIN = {
    "floor": ([-2.5, -1.0, -0.4, 0.0, 0.4, 1.0, 2.5, 7.9], torch.floor),
    "ceil": ([-2.5, -1.0, -0.4, 0.0, 0.4, 1.0, 2.5, 7.9], torch.ceil),
    "round": ([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49, -3.7], torch.round),   # halves to even
    "sin": ([-7.0, -2.0, -0.5, 0.0, 0.3, 1.0, 3.0, 20.0], torch.sin),
    "cos": ([-7.0, -2.0, -0.5, 0.0, 0.3, 1.0, 3.0, 20.0], torch.cos),
    "tan": ([-1.4, -1.0, -0.5, 0.0, 0.3, 0.7, 1.2, 1.5], torch.tan),
    "asin": ([-0.99, -0.7, -0.2, 0.0, 0.1, 0.5, 0.8, 0.95], torch.asin),
    "acos": ([-0.99, -0.7, -0.2, 0.0, 0.1, 0.5, 0.8, 0.95], torch.acos),
    "atan": ([-50.0, -2.0, -0.5, 0.0, 0.3, 1.0, 3.0, 1e3], torch.atan),
    "sinh": ([-8.0, -2.0, -0.5, 0.0, 0.3, 1.0, 3.0, 10.0], torch.sinh),
    "cosh": ([-8.0, -2.0, -0.5, 0.0, 0.3, 1.0, 3.0, 10.0], torch.cosh),
    "asinh": ([-50.0, -2.0, -0.5, 0.0, 0.3, 1.0, 3.0, 1e3], torch.asinh),
    "acosh": ([1.01, 1.2, 1.5, 2.0, 3.0, 10.0, 100.0, 1e3], torch.acosh),
    "atanh": ([-0.99, -0.7, -0.2, 0.0, 0.1, 0.5, 0.8, 0.95], torch.atanh),
    "erf": ([-4.0, -2.0, -0.5, 0.0, 0.3, 1.0, 2.0, 5.0], torch.erf),
}
BACKENDS = {"native": (None, np.float32, 2e-6), "reference": ("reference", np.float64, 1e-12)}


def _grads(model, x, backend):
    be, dtype, _ = BACKENDS[backend]
    inputs = {"x": np.asarray(x, dtype)}
    out = model.eval(inputs, backend=be, float_dtype=dtype)
    return out, model.grad(inputs, backend=be, float_dtype=dtype).grads["x"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", DOMAIN)
def test_function_and_gradient_match_pytorch(name, backend):
    x, fn = DOMAIN[name]
    dtype, rtol = BACKENDS[backend][1:]
    model = nnc.load(f"model m {{ input x: [8] y = {name}(x) output y loss sum(y * y) }}")
    out, dx = _grads(model, x, backend)
    leaf = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = fn(leaf)
    (y * y).sum().backward()
    # atol: float32 rounding of the operand itself (sin(20) in float32 is sin of 20 ± 1e-6)
    atol = 0 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(out["y"], y.detach().numpy(), rtol=rtol, atol=atol)
    np.testing.assert_allclose(dx, leaf.grad.numpy(), rtol=max(rtol, 1e-5 if dtype == np.float32 else 0), atol=atol)


@pytest.mark.parametrize("backend", BACKENDS)
def test_comparisons_are_masks_and_less_swaps_the_operands(backend):
    be, dtype, _ = BACKENDS[backend]
    names = ("greater", "greater_equal", "less", "less_equal", "equal")
    model = nnc.load("model c { input a: [5] input b: [5]\n" + "".join(f"  {n}_ = {n}(a, b)\n" for n in names)
                     + "  output " + ", ".join(f"{n}_" for n in names) + " }")
    a = np.array([1.0, 2.0, 3.0, -1.0, 0.0], dtype)
    b = np.array([2.0, 2.0, 1.0, -1.0, -0.0], dtype)
    out = model.eval({"a": a, "b": b}, backend=be, float_dtype=dtype)
    ta, tb = torch.tensor(a), torch.tensor(b)
    for (name, got), want in zip(out.items(), (ta > tb, ta >= tb, ta < tb, ta <= tb, ta == tb), strict=True):
        np.testing.assert_array_equal(got, want.numpy().astype(dtype), err_msg=name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_min_is_the_smallest_value_and_routes_the_gradient_like_max(backend):
    be, dtype, _ = BACKENDS[backend]
    x = np.array([[3.0, -1.0, 2.0], [0.5, 0.5, 4.0]], dtype)
    model = nnc.load("model r { input x: [2, 3] y = min(x, axis=1, keepdims=true) output y loss sum(y) }")
    out = model.eval({"x": x}, backend=be, float_dtype=dtype)
    np.testing.assert_array_equal(out["y"], [[-1.0], [0.5]])
    dx = model.grad({"x": x}, backend=be, float_dtype=dtype).grads["x"]
    np.testing.assert_array_equal(dx, [[0.0, 1.0, 0.0], [0.5, 0.5, 0.0]])   # ties share, as max does


@pytest.mark.parametrize("backend", BACKENDS)
def test_where_chooses_like_torch_keeping_infinities_out_and_routes_the_gradient(backend):
    be, dtype, _ = BACKENDS[backend]
    model = nnc.load("model w { input c: [2, 3] input a: [2, 3] input b: [3]\n"
                     "  y = where(greater(c, 0.0), exp(a), b) output y loss sum(y * y) }")
    c = np.array([[1.0, -1.0, 2.0], [-3.0, 0.0, 0.5]], dtype)
    a = np.array([[0.5, 750.0, -1.0], [1000.0, 800.0, 2.0]], dtype)   # e^a is infinite where it is not chosen
    b = np.array([1.5, -2.0, 0.25], dtype)
    inputs = {"c": c, "a": a, "b": b}
    out = model.eval(inputs, backend=be, float_dtype=dtype)["y"]
    grads = model.grad(inputs, backend=be, float_dtype=dtype).grads
    ta, tb = (torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (a, b))
    ty = torch.where(torch.tensor(c) > 0, torch.exp(ta), tb)
    (ty * ty).sum().backward()
    rtol = BACKENDS[backend][2]
    np.testing.assert_allclose(out, ty.detach().numpy(), rtol=rtol)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(grads["a"], ta.grad.numpy(), rtol=rtol)
    np.testing.assert_allclose(grads["b"], tb.grad.numpy(), rtol=rtol)


@pytest.mark.parametrize("backend", BACKENDS)
def test_prod_and_its_gradient_match_pytorch_with_zeros(backend):
    """Rows with no zero, one zero and two: PyTorch's gradient is the product of the other entries in each case."""
    be, dtype, rtol = BACKENDS[backend]
    x = np.array([[0.5, -2.0, 1.5, 3.0, 1.25], [0.7, 0.0, -1.2, 2.0, 0.9], [0.0, 1.1, 0.0, -0.4, 2.0]], dtype)
    model = nnc.load("model p { input x: [3, 5] y = prod(x, axis=1) output y loss sum(y * [1.0, 2.0, 3.0]) }")
    out = model.eval({"x": x}, backend=be, float_dtype=dtype)["y"]
    dx = model.grad({"x": x}, backend=be, float_dtype=dtype).grads["x"]
    leaf = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = torch.prod(leaf, dim=1)
    (y * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)).sum().backward()
    np.testing.assert_allclose(out, y.detach().numpy(), rtol=rtol)
    np.testing.assert_allclose(dx, leaf.grad.numpy(), rtol=max(rtol, 1e-6 if dtype == np.float32 else 0))


def test_prod_natively_over_long_lines_and_kept_axes():
    """The vectorized line product (tails past the vector width) and products into kept rows, against NumPy."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0.9, 1.1, size=(3, 37, 5)).astype(np.float32)
    model = nnc.load("model p { input x: [3, 37, 5] a = prod(x, axis=2) b = prod(x, axis=1) c = prod(x)\n"
                     "  output a, b, c }")
    out = model.eval({"x": x})
    for name, axis in (("a", 2), ("b", 1), ("c", None)):
        np.testing.assert_allclose(out[name], np.prod(x.astype(np.float64), axis=axis), rtol=2e-5, err_msg=name)
