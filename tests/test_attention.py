"""Attention: from primitives (batched `@`, transpose, softmax, `causal_mask`) and the multi-head
`attention` layer, against torch.nn.MultiheadAttention loaded as docs/language.md shows, causal and
not, forward and the gradients of the input and every weight: native float32 within 1e-5, the
reference interpreter in float64 within 1e-9. Masked scores (−inf) give no NaN on either backend."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from conftest import REPO
from test_pytorch_parity import BACKENDS, close

import nnc
from nnc.errors import NncError

B, T, D, HEADS = 3, 6, 8, 2


def attention_model(causal: bool, dim: int = D) -> nnc.Model:
    return nnc.loads(f"""model att {{
  input  x: [B, {T}, {D}]
  input  c: [B, {T}, {D}]
  y      = attention(x, {HEADS}, {dim}, causal={str(causal).lower()})
  output y
  loss   sum(y * c)
}}
""")


def torch_mha(seed: int = 0) -> torch.nn.MultiheadAttention:
    torch.manual_seed(seed)
    mha = torch.nn.MultiheadAttention(D, HEADS, batch_first=True, dtype=torch.float64)
    with torch.no_grad():   # PyTorch starts the biases at 0: make them count
        mha.in_proj_bias.normal_()
        mha.out_proj.bias.normal_()
    return mha


def loaded_params(mha, prefix: str) -> dict:
    """PyTorch's in_proj_weight [3·D, D] cut into q, k, v and transposed: docs/language.md's recipe."""
    w, b = mha.in_proj_weight.detach().numpy(), mha.in_proj_bias.detach().numpy()
    params = {}
    params[f"{prefix}.q.weight"], params[f"{prefix}.k.weight"], params[f"{prefix}.v.weight"] = (
        w[:D].T, w[D:2 * D].T, w[2 * D:].T)
    params[f"{prefix}.q.bias"], params[f"{prefix}.k.bias"], params[f"{prefix}.v.bias"] = b[:D], b[D:2 * D], b[2 * D:]
    params[f"{prefix}.out.weight"] = mha.out_proj.weight.detach().numpy().T
    params[f"{prefix}.out.bias"] = mha.out_proj.bias.detach().numpy()
    return params


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_attention_layer_matches_multihead_attention(backend, causal):
    be, dtype, rtol = BACKENDS[backend]
    rng = np.random.default_rng(1)
    x, c = rng.normal(size=(B, T, D)), rng.normal(size=(B, T, D))
    mha = torch_mha()
    tx = torch.tensor(x, requires_grad=True)
    mask = torch.nn.Transformer.generate_square_subsequent_mask(T, dtype=torch.float64) if causal else None
    want, _ = mha(tx, tx, tx, attn_mask=mask)
    (want * torch.tensor(c)).sum().backward()
    model = attention_model(causal)
    params = {k: v.astype(dtype) for k, v in loaded_params(mha, "y").items()}
    inputs = {"x": x.astype(dtype), "c": c.astype(dtype)}
    got = model.eval(inputs, params, backend=be, float_dtype=dtype)["y"]
    grads = model.grad(inputs, params, backend=be, float_dtype=dtype).grads
    atol = 0 if dtype == np.float64 else 1e-6   # float32 sums of a few terms near 0
    close(got, want, rtol, atol, "y")
    close(grads["x"], tx.grad, rtol, atol, "dx")
    wgrad, bgrad = mha.in_proj_weight.grad.numpy(), mha.in_proj_bias.grad.numpy()
    for i, part in enumerate("qkv"):
        close(grads[f"y.{part}.weight"], wgrad[i * D:(i + 1) * D].T, rtol, atol, f"d {part}.weight")
        if part != "k":
            close(grads[f"y.{part}.bias"], bgrad[i * D:(i + 1) * D], rtol, atol, f"d {part}.bias")
    # k's bias adds q·b to a whole row of scores, which softmax ignores: its gradient is 0 up to rounding
    zero = 1e3 * np.finfo(dtype).eps
    assert np.abs(grads["y.k.bias"]).max() < zero and np.abs(bgrad[D:2 * D]).max() < zero
    close(grads["y.out.weight"], mha.out_proj.weight.grad.numpy().T, rtol, atol, "d out.weight")
    close(grads["y.out.bias"], mha.out_proj.bias.grad, rtol, atol, "d out.bias")


def test_parameters_are_documented_names_and_shapes():
    model = attention_model(False, dim=6)
    assert {k: v.shape for k, v in model.param_types.items()} == {
        "y.q.weight": (D, 6), "y.q.bias": (6,), "y.k.weight": (D, 6), "y.k.bias": (6,),
        "y.v.weight": (D, 6), "y.v.bias": (6,), "y.out.weight": (6, D), "y.out.bias": (D,)}


def test_the_documented_recipe_loads_pytorch_weights(tmp_path, monkeypatch):
    """docs/language.md's python block, run on its transformer_block.nn, then the model against PyTorch."""
    text = (REPO / "docs" / "language.md").read_text(encoding="utf-8")
    model_text = re.search(r"```nn transformer_block.nn\n(.*?)```", text, re.S).group(1)
    recipe = next(block for block in re.findall(r"```python\n(.*?)```", text, re.S) if "att.q.weight" in block)
    (tmp_path / "transformer_block.nn").write_text(model_text)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(recipe, scope)
    model, mha, params = scope["m"], scope["mha"], scope["params"]
    tokens = np.random.default_rng(2).integers(0, 40, size=(2, 12)).astype(np.int32)
    got = model.eval({"tokens": tokens}, params, backend="reference", float_dtype=np.float64)["logits"]
    x = torch.tensor(params["x.weight"][tokens] + params["pos"], dtype=torch.float32)
    normed = torch.nn.functional.layer_norm(x, (32,), eps=1e-5)
    mask = torch.nn.Transformer.generate_square_subsequent_mask(12)
    h = x + mha(normed, normed, normed, attn_mask=mask)[0]
    want = torch.nn.functional.layer_norm(h, (32,), eps=1e-5) @ torch.tensor(params["head"])
    close(got, want, 1e-5, 1e-5, "logits")


PRIMITIVES = """model primitives {{
  input  q: [B, {t}, 4]
  input  k: [B, {t}, 4]
  input  v: [B, {t}, 4]
  y      = softmax(q @ transpose(k, [0, 2, 1]) / sqrt(4){mask}) @ v
  output y
  loss   sum(y * y)
}}
"""


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_attention_from_primitives_matches_torch(backend, causal):
    be, dtype, rtol = BACKENDS[backend]
    model = nnc.loads(PRIMITIVES.format(t=T, mask=f" + causal_mask({T})" if causal else ""))
    rng = np.random.default_rng(4)
    values = {name: rng.normal(size=(B, T, 4)) for name in "qkv"}
    leaves = {name: torch.tensor(v, requires_grad=True) for name, v in values.items()}
    mask = torch.triu(torch.full((T, T), -torch.inf, dtype=torch.float64), 1) if causal else 0
    scores = leaves["q"] @ leaves["k"].transpose(1, 2) / 2 + mask
    want = torch.softmax(scores, dim=-1) @ leaves["v"]
    (want * want).sum().backward()
    inputs = {k: v.astype(dtype) for k, v in values.items()}
    got = model.eval(inputs, backend=be, float_dtype=dtype)["y"]
    grads = model.grad(inputs, backend=be, float_dtype=dtype).grads
    atol = 0 if dtype == np.float64 else 1e-6
    close(got, want, rtol, atol, "y")
    for name in "qkv":
        assert np.all(np.isfinite(grads[name])), name
        close(grads[name], leaves[name].grad, rtol, atol, f"d{name}")


@pytest.mark.parametrize("backend", ["llvm", "reference"])
def test_causal_mask_values_and_masked_softmax(backend):
    model = nnc.loads("model m {\n  input x: [B, 4, 4]\n  m = causal_mask(4)\n  p = softmax(x + m)\n  output m, p\n}\n")
    got = model.eval({"x": np.zeros((1, 4, 4), np.float32)}, backend=backend)
    assert got["m"].tolist() == np.triu(np.full((4, 4), -np.inf), 1).tolist()
    assert got["p"][0].tolist() == (np.tril(np.ones((4, 4))) / np.arange(1, 5)[:, None]).astype(np.float32).tolist()


@pytest.mark.parametrize("call,message,column", [
    ("attention(x, 3, 8)", "attention: dim 8 does not split into 3 heads: got 8, expected a positive multiple of 3",
     23),
    ("attention(x, 0, 8)", "attention: heads must be at least 1, got 0", 20),
    ("attention(reshape(x, [B, 48]), 2, 8)",
     "attention: input has shape [B, 48], expected a 3-D [B, T, features] tensor", 17),
    ("causal_mask(0)", "causal_mask: size must be at least 1, got 0", 19),
])
def test_bad_arguments_are_one_located_error(call, message, column):
    with pytest.raises(NncError) as info:
        nnc.loads(f"model m {{\n  input x: [B, 6, 8]\n  y = {call}\n  output y\n}}\n", "m.nn")
    assert info.value.message == message
    assert (info.value.loc.span.line, info.value.loc.span.column) == (3, column)
