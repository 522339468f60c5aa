"""stop_gradient and layers applied several times with shared parameters (issue 14), against PyTorch.

`stop_gradient(x)` is x going forward and a constant for the gradient (torch's `x.detach()`); finite
differences hold its value fixed, so `nnc grad --check` agrees with the symbolic gradient. A layer or
block called again with the `name=` of parameters already made applies them again (one `nn.Linear`
called twice): one parameter set, gradients summed over the uses, and one located error when the second
use would make different parameters. Both backends: native float32 within 1e-5, the reference
interpreter in float64 within 1e-9.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import run_main

import nnc
from nnc.errors import NncError
from nnc.ir import interp, ops
from nnc.runtime.execute import run_graph
from nnc.runtime.gradcheck import finite_difference_check
from nnc.viz import diagram

BACKENDS = {"native": (None, np.float32, 1e-5), "reference": ("reference", np.float64, 1e-9)}
TORCH = {np.float32: torch.float32, np.float64: torch.float64}
RNG = np.random.default_rng(14)


def close(got, want, rtol, what=""):
    want = want.detach().numpy() if isinstance(want, torch.Tensor) else want
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64), rtol=rtol, atol=rtol,
                               err_msg=what)


def leaves(values: dict, dtype) -> dict:
    return {k: torch.tensor(np.asarray(v), dtype=TORCH[dtype], requires_grad=True) for k, v in values.items()}


def build_error(text: str) -> NncError:
    with pytest.raises(NncError) as info:
        nnc.loads(text)
    return info.value


# ---- stop_gradient ---------------------------------------------------------------------------------------

SELF_PRODUCT = "model sg { input x: [B, 3]\n loss sum(stop_gradient(x) * x) }"


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_of_stop_gradient_times_x_is_x_as_detach(backend):
    be, dtype, rtol = BACKENDS[backend]
    m = nnc.loads(SELF_PRODUCT)
    x = RNG.normal(size=(2, 3)).astype(dtype)
    t = leaves({"x": x}, dtype)["x"]
    want = (t.detach() * t).sum()
    want.backward()
    got = m.grad({"x": x}, backend=be, float_dtype=dtype)
    close(got.value, want, rtol, "the value: x · x")
    close(got.grads["x"], t.grad, rtol, "the gradient: x, not 2x")
    np.testing.assert_allclose(got.grads["x"], x, rtol=rtol)
    close(m.eval({"x": x}, backend=be, float_dtype=dtype)["loss"], want, rtol, "eval: the identity")


@pytest.mark.parametrize("backend", BACKENDS)
def test_stop_gradient_in_a_network_matches_detach(backend):
    """A layer's output against its own held copy, and a shared layer's target held fixed (semi-gradient
    TD): gradients reach the parameters through the uses not stopped only."""
    be, dtype, rtol = BACKENDS[backend]
    m = nnc.loads("""model td {
      input x: [B, 4]
      input x_next: [B, 4]
      input reward: [B, 1]
      v = dense(x, 1, name="value")
      v_next = dense(x_next, 1, name="value")
      h = tanh(dense(x, 3))
      loss mse(v, reward + 0.9 * stop_gradient(v_next)) + mean(h * stop_gradient(h))
    }""")
    values = {"x": RNG.normal(size=(5, 4)), "x_next": RNG.normal(size=(5, 4)), "reward": RNG.normal(size=(5, 1))}
    params = {k: RNG.normal(size=t.shape) for k, t in m.param_types.items()}
    t = leaves({**values, **params}, dtype)
    v, v_next = t["x"] @ t["value.weight"] + t["value.bias"], t["x_next"] @ t["value.weight"] + t["value.bias"]
    h = torch.tanh(t["x"] @ t["h.weight"] + t["h.bias"])
    want = ((v - (t["reward"] + 0.9 * v_next.detach())) ** 2).mean() + (h * h.detach()).mean()
    want.backward()
    got = m.grad({k: v.astype(dtype) for k, v in values.items()}, {k: p.astype(dtype) for k, p in params.items()},
                 backend=be, float_dtype=dtype)
    close(got.value, want, rtol)
    for name in (*params, *values):  # none reaches x_next (torch leaves its grad None)
        close(got.grads[name], t[name].grad if t[name].grad is not None else torch.zeros_like(t[name]), rtol, name)
    assert not got.grads["x_next"].any()


def test_finite_differences_hold_stop_gradient_fixed():
    """The check agrees with the symbolic gradient; differences through the identity would report 2x."""
    m = nnc.loads(SELF_PRODUCT)
    x = RNG.normal(size=(2, 3))
    exact = m.grad({"x": x}, float_dtype=np.float64)
    [check] = finite_difference_check(m.training_graph, m.training_graph.loss, {"x": x}, {}, exact.grads)
    assert check.ok and check.checked == 6, check

    def loss(at):
        return float(interp.run(m.training_graph, {"x": at}, {}, float_dtype=np.float64)[m.training_graph.loss])

    h = 1e-6
    bump = np.zeros_like(x)
    bump[0, 0] = h
    through_identity = (loss(x + bump) - loss(x - bump)) / (2 * h)
    assert through_identity == pytest.approx(2 * x[0, 0], rel=1e-6)  # what an unheld check would compare


def test_nnc_grad_check_passes_with_stop_gradient(tmp_path):
    path = tmp_path / "sg.nn"
    path.write_text(SELF_PRODUCT)
    r = run_main("grad", str(path), "--at", "x=[[1, 2, 3]]", "--check")
    assert r.returncode == 0, r.stderr
    assert "dloss/dx = [[1., 2., 3.]]" in r.stdout and " ok" in r.stdout


def test_stop_gradient_compiles_to_a_copy_that_fuses():
    """Forward, it is the value itself: fused into the kernel around it, it adds no kernel."""
    from nnc.backend.fusion import fuse

    plain = nnc.loads("model a { input x: [B, 3]\n y = relu(x) * 2\n output y }").graph
    held = nnc.loads("model a { input x: [B, 3]\n y = stop_gradient(relu(x)) * 2\n output y }").graph
    assert any(held.op(n) is ops.stop_gradient for n in held)
    kernels = [len(fuse(g, list(g.outputs.values())).kernels) for g in (plain, held)]
    assert kernels[0] == kernels[1] == 1


# ---- shared layers -----------------------------------------------------------------------------------------

SIAMESE = """model siamese {
  input a: [B, 4]
  input b: [B, 4]
  fa = dense(a, 3, name="f")
  fb = dense(b, 3, name="f")
  output fa, fb
  loss mean(fa * fb) + mean(square(fa))
}"""


def test_a_layer_named_again_has_one_parameter_set():
    m = nnc.loads(SIAMESE)
    assert {k: t.shape for k, t in m.param_types.items()} == {"f.weight": (4, 3), "f.bias": (3,)}
    g = m.graph
    users = {g.params["f.weight"]: 0}
    for n in g:
        users.update({o: users[o] + 1 for o in g.operands(n) if o in users})
    assert users[g.params["f.weight"]] == 2  # both products read the one node
    rows = {info.label: info.params for info in g.statements if info.kind != "output"}
    assert rows["fa"] == ["f.weight", "f.bias"] and rows["fb"] == []  # counted once, where first made
    assert "parameters: 15 trainable" in m.summary()


@pytest.mark.parametrize("backend", BACKENDS)
def test_siamese_dense_matches_one_torch_linear_applied_twice(backend):
    be, dtype, rtol = BACKENDS[backend]
    m = nnc.loads(SIAMESE)
    a, b = RNG.normal(size=(5, 4)).astype(dtype), RNG.normal(size=(5, 4)).astype(dtype)
    params = {"f.weight": RNG.normal(size=(4, 3)).astype(dtype), "f.bias": RNG.normal(size=3).astype(dtype)}
    linear = torch.nn.Linear(4, 3).to(TORCH[dtype])
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(params["f.weight"].T))
        linear.bias.copy_(torch.tensor(params["f.bias"]))
    ta, tb = torch.tensor(a), torch.tensor(b)
    fa, fb = linear(ta), linear(tb)
    want = (fa * fb).mean() + (fa ** 2).mean()
    want.backward()
    out = m.eval({"a": a, "b": b}, params, backend=be, float_dtype=dtype)
    close(out["fa"], fa, rtol, "fa")
    close(out["fb"], fb, rtol, "fb")
    got = m.grad({"a": a, "b": b}, params, backend=be, float_dtype=dtype)
    close(got.value, want, rtol)
    close(got.grads["f.weight"], linear.weight.grad.T, rtol, "the gradients of both uses, summed")
    close(got.grads["f.bias"], linear.bias.grad, rtol)


SHARED_BLOCK = """def disc(x) {
  param s: [1] = ones
  h = relu(dense(x, 6))
  return dense(h, 1) * s
}

model gan_like {
  input real: [B, 4]
  input noise: [B, 2]
  fake = tanh(dense(noise, 4, name="gen"))
  d_real = disc(real, name="disc")
  d_fake = disc(fake, name="disc")
  output d_real, d_fake
  loss mean(d_real) - mean(square(d_fake))
}"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_shared_block_matches_one_torch_module_applied_twice(backend):
    be, dtype, rtol = BACKENDS[backend]
    m = nnc.loads(SHARED_BLOCK)
    assert sorted(m.param_types) == ["disc.bias", "disc.h.bias", "disc.h.weight", "disc.s", "disc.weight",
                                     "gen.bias", "gen.weight"]
    values = {"real": RNG.normal(size=(3, 4)), "noise": RNG.normal(size=(3, 2))}
    params = {k: RNG.normal(size=t.shape) for k, t in m.param_types.items()}
    t = leaves({**values, **params}, dtype)

    def disc(x):
        h = torch.relu(x @ t["disc.h.weight"] + t["disc.h.bias"])
        return (h @ t["disc.weight"] + t["disc.bias"]) * t["disc.s"]

    fake = torch.tanh(t["noise"] @ t["gen.weight"] + t["gen.bias"])
    d_real, d_fake = disc(t["real"]), disc(fake)
    want = d_real.mean() - (d_fake ** 2).mean()
    want.backward()
    cast = {k: v.astype(dtype) for k, v in values.items()}, {k: p.astype(dtype) for k, p in params.items()}
    out = m.eval(*cast, backend=be, float_dtype=dtype)
    close(out["d_real"], d_real, rtol, "d_real")
    close(out["d_fake"], d_fake, rtol, "d_fake")
    got = m.grad(*cast, backend=be, float_dtype=dtype)
    close(got.value, want, rtol)
    for name in params:
        close(got.grads[name], t[name].grad, rtol, name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_shared_batchnorm_updates_its_statistics_once_per_use_as_torch(backend):
    be, dtype, rtol = BACKENDS[backend]
    m = nnc.loads("model bn { input a: [B, 3]\n input b: [B, 3]\n"
                  " x = batchnorm(a, name=\"norm\")\n y = batchnorm(b, name=\"norm\")\n output x, y }")
    a, b = RNG.normal(size=(4, 3)) + 1, RNG.normal(size=(4, 3)) * 3
    g = m.training_graph
    values = run_graph(g, {"a": a.astype(dtype), "b": b.astype(dtype)}, m.init_params(float_dtype=dtype),
                       [*g.outputs.values(), *g.updates.values()], float_dtype=dtype, backend=be)
    norm = torch.nn.BatchNorm1d(3).to(TORCH[dtype]).train()
    x, y = norm(torch.tensor(a, dtype=TORCH[dtype])), norm(torch.tensor(b, dtype=TORCH[dtype]))
    close(values[g.outputs["x"]], x, rtol, "x")
    close(values[g.outputs["y"]], y, rtol, "y")
    close(values[g.updates["norm.running_mean"]], norm.running_mean, rtol, "running_mean after both uses")
    close(values[g.updates["norm.running_var"]], norm.running_var, rtol, "running_var after both uses")


def test_a_name_from_the_variable_shares_when_named_again_and_an_lstm_too():
    m = nnc.loads("""model m {
      input a: [B, 5, 2]
      input b: [B, 5, 2]
      h = lstm(a, 4)
      k = lstm(b, 4, name="h")
      output h, k
    }""")
    assert sorted(m.param_types) == ["h.bias_hh", "h.bias_ih", "h.weight_hh", "h.weight_ih"]
    x = RNG.normal(size=(2, 5, 2)).astype(np.float32)
    out = m.eval({"a": x, "b": x}, random_params=True)
    np.testing.assert_array_equal(out["h"], out["k"])


def test_a_name_inside_a_block_is_one_layer_for_every_call():
    m = nnc.loads('def tower(x) { return relu(dense(x, 8, name="stem")) }\n'
                  "model m { input a: [B, 3]\n input b: [B, 3]\n t1 = tower(a)\n t2 = tower(b)\n output t1, t2 }")
    assert sorted(m.param_types) == ["stem.bias", "stem.weight"]


def test_a_block_argument_called_name_is_still_the_blocks():
    m = nnc.loads('def f(x, name) { return x * name }\nmodel m { input x: [B, 2]\n y = f(x, name=3)\n output y }')
    assert m.eval({"x": np.ones((1, 2), np.float32)})["y"].tolist() == [[3.0, 3.0]]


# ---- mistakes ---------------------------------------------------------------------------------------------

MISMATCH = """def disc(x) {
  h = relu(dense(x, 16))
  return dense(h, 1)
}

model gan {
  input real: [B, 4]
  input fake: [B, 8]
  d_real = disc(real, name="disc")
  d_fake = disc(fake, name="disc")
  output d_real, d_fake
}"""


def test_a_shared_block_on_inputs_of_another_size_is_one_error_at_the_second_use():
    err = build_error(MISMATCH)
    assert err.message == ("disc: the shared parameter 'disc.h.weight' differs: got shape [8, 16], expected "
                           "[4, 16] as where disc was first applied at line 9")
    assert (err.loc.span.line, err.loc.span.column) == (10, 12)
    assert err.notes == []  # it points at the call already
    assert "another name=" in err.hint


@pytest.mark.parametrize("second, message", [
    ('dense(b, 3, name="f", init=he)',
     "dense: the shared parameter 'f.weight' differs: got the initializer he, expected xavier as where f was first "
     "applied at line 3"),
    ('dense(b, 3, name="f", bias=false)',
     "dense: the shared parameter 'f.bias' is left out: got 1 of the 2 parameters made where f was first applied at "
     "line 3, expected all"),
    ('layernorm(b, name="f")',
     'layernorm: name="f" names the dense applied at line 3: got layernorm, expected dense to share its parameters'),
    ('dense(b, 3, name="g")', None),  # another name: parameters of its own
])
def test_a_second_use_must_make_the_same_parameters(second, message):
    text = f'model m {{\n input b: [B, 3]\n a = dense(b, 3, name="f")\n c = {second}\n output a, c\n}}'
    if message is None:
        assert sorted(nnc.loads(text).param_types) == ["f.bias", "f.weight", "g.bias", "g.weight"]
        return
    err = build_error(text)
    assert err.message == message and err.loc.span.line == 4


def test_a_layer_with_more_parameters_than_its_first_use_is_an_error():
    err = build_error('model m {\n input b: [B, 3]\n a = dense(b, 3, name="f", bias=false)\n'
                      ' c = dense(b, 3, name="f")\n output a, c\n}')
    assert err.message == ("dense: the parameter 'f.bias' is not among those it shares: got a new parameter, "
                           "expected only the 1 made where f was first applied at line 3")


def test_a_name_from_the_variable_never_shares():
    """Only an explicit name= applies a layer again: `p = dense(...)` after name="p" stays a duplicate."""
    err = build_error('model m {\n input x: [B, 2]\n a = dense(x, 2, name="p")\n p = dense(x, 2)\n output a, p\n}')
    assert err.message == "duplicate parameter name 'p.weight' (first made at 3:6)"
    assert 'name="p" on this call would share' in err.hint


def test_param_declared_twice_stays_an_error():
    err = build_error("model m {\n input x: [B, 1]\n param w: [1, 1]\n param w: [1, 1]\n y = x @ w\n output y\n}")
    assert err.message.startswith("duplicate name 'w': already declared as param")


def test_a_block_name_must_be_a_name():
    blocks = "def f(x) { return dense(x, 2) }\n"
    for value, shown in (('"9x"', "'9x'"), ("3", "the number 3")):
        err = build_error(blocks + f"model m {{ input x: [B, 2]\n y = f(x, name={value})\n output y }}")
        assert err.message == f'f: name must be a name such as "encoder": got {shown}'
    err = build_error(blocks + 'model m { input x: [B, 2]\n y = f(x, name="a", name="b")\n output y }')
    assert err.message == "f: argument 'name' given twice"


# ---- diagrams --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("view", ["layers", "ops", "backward", "fused"])
def test_every_view_of_a_model_with_a_shared_block_draws(view):
    m = nnc.loads(SHARED_BLOCK)
    dot = diagram(m, view)
    assert dot.startswith("digraph") and "d_fake" in dot


def test_nnc_viz_with_values_of_a_shared_block(tmp_path):
    path = tmp_path / "gan_like.nn"
    path.write_text(SHARED_BLOCK)
    r = run_main("viz", str(path), "--random-params", "--random-inputs", "2", "--partials",
                 "-o", str(tmp_path / "g.dot"))
    assert r.returncode == 0, r.stderr
    assert "∂loss/∂disc.h.weight" in (tmp_path / "g.dot").read_text()
    r = run_main("viz", str(path), "--random-params", "--random-inputs", "2", "--html", str(tmp_path / "g.html"))
    assert r.returncode == 0 and (tmp_path / "g.html").exists(), r.stderr
