"""`@` on batches of matrices (NumPy's matmul broadcasting) against torch.matmul, and how it compiles.

Forward and gradients of both operands match PyTorch: native float32 code within 1e-5, the
reference interpreter in float64 within 1e-9. A factor the whole batch shares (`[B, T, D] @ [D, H]`)
runs as one GEMM over the stacked rows, forward and for its weight's gradient (`matmul_sum`), with no
loop over the batch; products with a batch on both sides loop over it. Bad operands are one located
error each.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_pytorch_parity import BACKENDS, close

import nnc
from nnc.backend.compiler import lower_to_ir
from nnc.errors import NncError
from nnc.ir import ops

# (left shape, right shape): the product's batch axes broadcast as NumPy's and PyTorch's do
PRODUCTS = [
    ((3, 5, 4), (4, 6)),             # [B, T, D] @ [D, H]: the right factor shared by the batch
    ((2, 3, 5, 4), (2, 3, 4, 6)),    # [B, H, T, D] @ [B, H, D, S]: attention's products
    ((5, 4), (3, 4, 6)),             # the left factor shared
    ((2, 1, 5, 4), (3, 4, 6)),       # both broadcast along some batch axes
    ((1, 5, 4), (3, 4, 6)),
    ((5, 4), (4, 6)),                # plain matrices, as before
]


def model_of(ashape, bshape) -> nnc.Model:
    ct = np.broadcast_shapes(ashape[:-2], bshape[:-2]) + (ashape[-2], bshape[-1])
    dims = ", ".join
    return nnc.loads(f"model prod {{\n  input a: [{dims(map(str, ashape))}]\n  input b: [{dims(map(str, bshape))}]\n"
                     f"  input c: [{dims(map(str, ct))}]\n  y = a @ b\n  output y\n  loss sum(y * c)\n}}\n")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ashape,bshape", PRODUCTS, ids=[f"{a}@{b}" for a, b in PRODUCTS])
def test_matmul_broadcasting_matches_torch(backend, ashape, bshape):
    be, dtype, rtol = BACKENDS[backend]
    rng = np.random.default_rng(len(ashape) * 10 + len(bshape))
    model = model_of(ashape, bshape)
    a, b = rng.normal(size=ashape), rng.normal(size=bshape)
    c = rng.normal(size=np.broadcast_shapes(ashape[:-2], bshape[:-2]) + (ashape[-2], bshape[-1]))
    ta, tb = (torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (a, b))
    want = torch.matmul(ta, tb)
    (want * torch.tensor(c)).sum().backward()
    inputs = {k: v.astype(dtype) for k, v in {"a": a, "b": b, "c": c}.items()}
    got = model.eval(inputs, backend=be, float_dtype=dtype)["y"]
    grads = model.grad(inputs, backend=be, float_dtype=dtype).grads
    scale = dict(atol=rtol * 10)   # float32 dot products of K = 4 normal values: absolute error ~1e-6
    close(got, want, rtol, **scale, what="a @ b")
    close(grads["a"], ta.grad, rtol, **scale, what="da")
    close(grads["b"], tb.grad, rtol, **scale, what="db")


def kernel_ir(source: str, training: bool = True) -> tuple[object, str]:
    """The kernel plan and LLVM IR of a model's training step (or its forward pass), batch 4."""
    model = nnc.loads(source)
    g = model.training_step() if training else model.graph
    plan, module, _ = lower_to_ir(g, {"B": 4}, [g.loss] if training else None)
    return plan, str(module)


SEQUENCE_DENSE = """model seq {
  input  x: [B, 7, 16]
  input  y: [B, 7, 8]
  param  w: [16, 8] = xavier
  out    = x @ w
  output out
  loss   mse(out, y)
}
"""


def test_a_shared_right_factor_is_one_gemm_forward_and_backward():
    """[B, T, D] @ [D, H]: the forward product, x's gradient (dC·Wᵀ) and the weight's (xᵀ·dC summed over
    the batch, matmul_sum) each run as one GEMM over the B·T stacked rows: no kernel loops over the batch."""
    plan, text = kernel_ir(SEQUENCE_DENSE)
    kinds = [k.kind for k in plan.kernels]
    assert kinds.count("matmul") == 1 and kinds.count("matmul_sum") == 1, kinds
    assert "batch.head" not in text
    _, attention_like = kernel_ir(SEQUENCE_DENSE.replace("param  w: [16, 8] = xavier", "input  w: [B, 16, 8]"),
                                  training=False)
    assert "batch.head" in attention_like   # a batch on both sides: a loop of GEMMs


def test_the_weight_gradient_of_a_shared_factor_is_a_matmul_sum():
    g = nnc.loads(SEQUENCE_DENSE).training_step()
    sums = [n for n in g.nodes if g.op(n) is ops.matmul_sum]
    assert len(sums) == 1 and g.type_of(sums[0]).shape == (16, 8)
    assert g.nodes[sums[0]]["rule"] == "matmul: dB = Aᵀ · dC"


@pytest.mark.parametrize("threads", [1, 2])
def test_shared_factor_training_step_runs_natively_like_the_reference(threads):
    model = nnc.loads(SEQUENCE_DENSE)
    rng = np.random.default_rng(3)
    inputs = {"x": rng.normal(size=(64, 7, 16)).astype(np.float32), "y": rng.normal(size=(64, 7, 8)).astype(np.float32)}
    params = model.init_params()
    ref = model.grad(inputs, params=params, backend="reference")
    from nnc.backend import compile_graph

    gg = ref.graph
    exe = compile_graph(gg, {"B": 64}, [gg.grad_of, *gg.grads.values()], use_cache=False, threads=threads)
    names = {n: k for k, n in gg.params.items()}
    got = exe.run(inputs, {names[n]: params[names[n]] for n in gg.params.values()})
    close(got[gg.grads["w"]], ref.grads["w"], 1e-5, 1e-6, "dw")
    close(got[gg.grads["x"]], ref.grads["x"], 1e-5, 1e-7, "dx")


@pytest.mark.parametrize("body,message", [
    ("input x: [B]\n  param w: [4, 2] = zeros\n  y = x @ w",
     "matmul: left operand has shape [B], expected a matrix [rows, columns] or a batch of them [..., rows, columns]"),
    ("input x: [B, 3, 4]\n  input w: [2, 4, 5]\n  y = x @ w",
     "matmul: the batch dims of [B, 3, 4] and [2, 4, 5] do not broadcast: [B] against [2]"),
    ("input x: [B, 3, 4]\n  param w: [3, 5] = zeros\n  y = x @ w",
     "matmul: inner dims differ: [B, 3, 4] @ [3, 5] contracts 4 against 3"),
])
def test_bad_operands_are_one_located_error(body, message):
    source = f"model m {{\n  {body}\n  output y\n}}\n"
    with pytest.raises(NncError) as info:
        nnc.loads(source, "m.nn")
    err = info.value
    assert err.message == message
    assert err.loc is not None and err.loc.span.line == 4
