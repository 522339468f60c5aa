"""Recurrent layers: `rnn`, `lstm` and `gru` over [B, T, D] sequences, each a scan of its cell.

The cell is a graph of its own (one time step), run by a `scan` over the T
steps (nnc/ir/ops/control.py), so the model compiles once whatever T is and
its gradient is backpropagation through time. The equations are PyTorch's
(nn.RNN, nn.LSTM, nn.GRU), and so are the parameters, transposed, so that
PyTorch weights load by a transpose and nothing else:

    NAME.weight_ih [D, G·H]   NAME.weight_hh [H, G·H]   NAME.bias_ih [G·H]   NAME.bias_hh [G·H]

with G = 1 (rnn), 4 (lstm: gates i, f, g, o) or 3 (gru: r, z, n), initialized
uniformly in ±1/√H as PyTorch does; a bidirectional layer's reverse direction
has the same under NAME.reverse.*.
"""

from __future__ import annotations

import math

from ..ir import ops
from ..ir.graph import Emitter, Graph
from ..ir.initializer import Init
from ..ir.types import TensorType, format_shape
from .values import Tensor
from .writer import GraphWriter

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
ACTIVATIONS = {"tanh": ops.tanh, "relu": ops.relu}


def _step(e: Emitter, kind: str, units: int, activation: str, h, c, from_x, w_hh, b_hh):
    """The nodes of one time step (PyTorch's equations) given the step's input projection
    from_x = x·W_ih + b_ih: -> (h', c') (c' None but for the LSTM)."""
    from_h = e.add(e.matmul(h, w_hh), b_hh)

    def gate(z, k):
        return e.slice(z, axis=1, start=k * units, stop=(k + 1) * units)

    if kind == "rnn":
        return e.op(ACTIVATIONS[activation], e.add(from_x, from_h)), None
    if kind == "lstm":
        z = e.add(from_x, from_h)
        i, f, g, o = (gate(z, k) for k in range(4))
        c_new = e.add(e.mul(e.sigmoid(f), c), e.mul(e.sigmoid(i), e.tanh(g)))
        return e.mul(e.sigmoid(o), e.tanh(c_new)), c_new
    # gru: the reset gate applies to h·W_hn + b_hn, as in PyTorch
    r = e.sigmoid(e.add(gate(from_x, 0), gate(from_h, 0)))
    z = e.sigmoid(e.add(gate(from_x, 1), gate(from_h, 1)))
    n = e.tanh(e.add(gate(from_x, 2), e.mul(r, gate(from_h, 2))))
    one = e.const(1.0, e.g.type_of(h).dtype)
    return e.add(e.mul(e.sub(one, z), n), e.mul(z, h)), None


def _cell(kind: str, batch, units: int, dtype: str, activation: str) -> Graph:
    """The loop's body: one time step (h[, c], x·W_ih + b_ih, W_hh, b_hh) -> h'[, c']; the input
    projection of every step is one product before the loop."""
    body = Graph(model=kind)
    e = Emitter(body, stmt=kind)

    def t(*shape):
        return TensorType(shape, dtype)

    h = e.input("h", t(batch, units))
    c = e.input("c", t(batch, units)) if kind == "lstm" else None
    width = GATES[kind] * units
    from_x = e.input("x", t(batch, width))
    weights = [e.input("weight_hh", t(units, width)), e.input("bias_hh", t(width))]
    body.outputs["h_new"], c_new = _step(e, kind, units, activation, h, c, from_x, *weights)
    if c_new is not None:
        body.outputs["c_new"] = c_new
    return body


def _check_state(b: GraphWriter, state: Tensor | None, want: TensorType, arg: str) -> None:
    if state is not None and b.type(state) != want:
        raise b.error(f"{arg} has shape {b.type(state)}, expected {want}: [batch, units]")


def _unrolled(b: GraphWriter, kind: str, x: Tensor, carries: list, weights: list, units: int, activation: str,
              reverse: bool) -> list:
    """The cell written out once per time step (`unroll=true`: small T, for diagrams of backpropagation
    through time): -> the state after each step, in time order. Step t's nodes (and their backward
    nodes) carry `step` t + 1, so a weight's gradient shows one contribution per step."""
    batch, steps, features = b.type(x).shape
    label = b.stmt.label if b.stmt else "rnn"
    h, c = carries[0].node, (carries[1].node if len(carries) > 1 else None)
    w = [t.node for t in weights]
    states = [None] * steps
    for t in (reversed(range(steps)) if reverse else range(steps)):
        e = Emitter(b.g, stmt=label, loc=b.current_loc, layer=kind, step=t + 1)
        x_t = e.reshape(e.slice(x.node, axis=1, start=t, stop=t + 1), shape=(batch, features))
        h, c = _step(e, kind, units, activation, h, c, e.add(e.matmul(x_t, w[0]), w[2]), w[1], w[3])
        states[t] = Tensor(h)
    return states


def recurrent(kind: str, b: GraphWriter, x: Tensor, units: int, return_sequences: bool, h0, c0, bidirectional: bool,
              name: str | None, activation: str = "tanh", unroll: bool = False, forget_bias: float = 0.0) -> Tensor:
    t = b.type(x)
    if not t.is_float:
        raise b.error(f"input is an int tensor {t}, expected a float [B, T, features] tensor", 0,
                      hint="int ids go through embedding(ids, vocab, dim) first")
    if t.rank != 3:
        hint = None
        if t.rank == 2:
            side = math.isqrt(t.shape[1]) if isinstance(t.shape[1], int) else 0
            hint = (f"reshape it to steps of features, e.g. reshape(x, [{t.shape[0]}, {side}, {side}]): "
                    f"{side} steps of {side} values" if side > 1 and side * side == t.shape[1]
                    else "reshape it to [B, T, features]")
        raise b.error(f"input has shape {format_shape(t.shape)}, expected a 3-D [B, T, features] sequence", 0, hint)
    batch, steps, features = t.shape
    if not isinstance(steps, int) or not isinstance(features, int):
        raise b.error(f"input has shape {format_shape(t.shape)}: the time steps and features must be numbers", 0)
    if units < 1:
        raise b.error(f"units must be at least 1, got {units}", 1)
    if activation not in ACTIVATIONS:
        raise b.error(f'activation must be "tanh" or "relu", got "{activation}"')
    state = TensorType((batch, units), t.dtype)
    _check_state(b, h0, state, "h0")
    _check_state(b, c0, state, "c0")
    width = GATES[kind] * units
    k = 1 / math.sqrt(units)
    specs = []
    bias_init = Init("forget_gate", (-k, k, units, float(forget_bias))) if forget_bias else Init("uniform", (-k, k))
    for prefix in ("", "reverse.") if bidirectional else ("",):
        specs += [(f"{prefix}weight_ih", TensorType((features, width), t.dtype), Init("uniform", (-k, k)), True),
                  (f"{prefix}weight_hh", TensorType((units, width), t.dtype), Init("uniform", (-k, k)), True),
                  (f"{prefix}bias_ih", TensorType((width,), t.dtype), bias_init, True),
                  (f"{prefix}bias_hh", TensorType((width,), t.dtype), Init("uniform", (-k, k)), True)]
    p = b.params_for(name, specs)
    body = None if unroll else _cell(kind, batch, units, t.dtype, activation)
    time_major = None if unroll else b.op(ops.transpose, x, perm=(1, 0, 2))
    zeros = b.op(ops.broadcast_to, b.const(0.0, like=x), shape=state.shape)
    carries = [h0 if h0 is not None else zeros]
    if kind == "lstm":
        carries.append(c0 if c0 is not None else zeros)
    outputs = []
    for prefix, reverse in (("", False), ("reverse.", True)) if bidirectional else (("", False),):
        weights = [p[f"{prefix}{w}"] for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        if unroll:
            steps_out = _unrolled(b, kind, x, carries, weights, units, activation, reverse)
            if return_sequences:
                seq = b.op(ops.concat, *[b.op(ops.reshape, h, shape=(batch, 1, units)) for h in steps_out], axis=1)
                outputs.append(seq)
            else:
                outputs.append(steps_out[0 if reverse else -1])
            continue
        w_ih, w_hh, b_ih, b_hh = weights
        projected = b.op(ops.add, b.op(ops.matmul, time_major, w_ih), b_ih)   # [T, B, G·H]: one product
        loop = b.op(ops.scan, *carries, projected, w_hh, b_hh, body=body,
                    carry_in=("h", "c")[:len(carries)], carry_out=("h_new", "c_new")[:len(carries)], seq_in=("x",),
                    const_in=("weight_hh", "bias_hh"), ys=(), accs=(), length=steps, reverse=reverse)
        history = b.op(ops.item, loop, index=0)   # [T, B, H]
        if return_sequences:
            outputs.append(b.op(ops.transpose, history, perm=(1, 0, 2)))
        else:  # the state after the whole sequence: its last step, or its first for the reverse direction
            last = 0 if reverse else steps - 1
            step = b.op(ops.slice, history, axis=0, start=last, stop=last + 1)
            outputs.append(b.op(ops.reshape, step, shape=state.shape))
    return outputs[0] if len(outputs) == 1 else b.op(ops.concat, *outputs, axis=-1)


def rnn(b: GraphWriter, x: Tensor, units: int, activation: str = "tanh", return_sequences: bool = False,
        h0: Tensor = None, bidirectional: bool = False, unroll: bool = False, name: str = None):
    """Elman RNN: h' = activation(x·W_ih + b_ih + h·W_hh + b_hh) at each step of [B, T, D]."""
    return recurrent("rnn", b, x, units, return_sequences, h0, None, bidirectional, name, activation, unroll)


def lstm(b: GraphWriter, x: Tensor, units: int, return_sequences: bool = False, h0: Tensor = None,
         c0: Tensor = None, bidirectional: bool = False, unroll: bool = False, forget_bias: float = 0.0,
         name: str = None):
    """LSTM (PyTorch's equations, gates i, f, g, o) over [B, T, D]; `forget_bias` is added to the forget
    gate's initial bias (1.0 is Keras's unit_forget_bias: the cell starts by keeping most of its state)."""
    return recurrent("lstm", b, x, units, return_sequences, h0, c0, bidirectional, name, unroll=unroll,
                     forget_bias=forget_bias)


def gru(b: GraphWriter, x: Tensor, units: int, return_sequences: bool = False, h0: Tensor = None,
        bidirectional: bool = False, unroll: bool = False, name: str = None):
    """GRU (PyTorch's equations, gates r, z, n) over [B, T, D]."""
    return recurrent("gru", b, x, units, return_sequences, h0, None, bidirectional, name, unroll=unroll)


RECURRENT = {"rnn": rnn, "lstm": lstm, "gru": gru}
