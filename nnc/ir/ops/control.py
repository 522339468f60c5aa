"""Control: `scan`, a loop over time whose body is a graph of its own, and `item`, one result of it.

    scan(carries..., sequences..., constants...; body, carry_in, carry_out, seq_in, const_in, ys, accs,
         length, reverse) -> (histories..., stacked ys..., sums...)

runs `body` (a Graph, compiled once whatever the length) at t = 0 .. length-1
(or backwards when `reverse`). Its inputs are named by the attributes: the
carries `carry_in` (the initial value from the operand, then the body's
`carry_out` of the step before), one time step `seq[t]` of each time-major
sequence operand `seq_in` ([length, ...]), and the constants `const_in`
(weights). Its outputs: the new carries, per-step outputs `ys` (stacked over
time) and `accs` (summed over time: the weight gradients of the reverse loop).
The results, read by `item(scan; index)`: every carry's history [length, ...]
(so the final state is history[length-1], and backpropagation through time has
each step's input state), the stacked ys, the sums.

The gradient is the reverse loop (backpropagation through time): a scan whose
body is the vector-Jacobian product of this body, recomputing each step's
forward values from the history, accumulating the constants' gradients.
"""

from __future__ import annotations

import numpy as np

from ...errors import ShapeError
from ..types import TensorType, TupleType, format_shape
from .registry import CONTROL, PROJECTION, VJP, VJPAll, defop, defvjp, defvjp_all

SCAN_ATTRS = ("body", "carry_in", "carry_out", "seq_in", "const_in", "ys", "accs", "length", "reverse")


def _body_type(body, name: str, where: str) -> TensorType:
    table = body.inputs if where == "input" else body.outputs
    if name not in table:
        raise ShapeError(f"scan: the body has no {where} '{name}'")
    return body.type_of(table[name])


def _scan(ts, *, body, carry_in, carry_out, seq_in, const_in, ys=(), accs=(), length, reverse=False):
    if len(carry_in) != len(carry_out):
        raise ShapeError(f"scan: {len(carry_in)} carries in, {len(carry_out)} out")
    if len(ts) != len(carry_in) + len(seq_in) + len(const_in):
        raise ShapeError(f"scan: got {len(ts)} operands, expected {len(carry_in) + len(seq_in) + len(const_in)}")
    if not isinstance(length, int) or length < 1:
        raise ShapeError(f"scan: the number of steps must be a positive number, got {length}")
    n_c, n_s = len(carry_in), len(seq_in)
    histories = []
    for i, (name_in, name_out) in enumerate(zip(carry_in, carry_out)):
        t_in, t_out = _body_type(body, name_in, "input"), _body_type(body, name_out, "output")
        if ts[i] != t_in or t_out != t_in:
            raise ShapeError(f"scan: carry {i + 1} is {ts[i]}, the body takes {t_in} and returns {t_out}", operand=i)
        histories.append(TensorType((length, *t_in.shape), t_in.dtype))
    for j, name in enumerate(seq_in):
        t, step = ts[n_c + j], _body_type(body, name, "input")
        if t.shape != (length, *step.shape) or t.dtype != step.dtype:
            raise ShapeError(f"scan: sequence {j + 1} has shape {format_shape(t.shape)}, expected "
                             f"{format_shape((length, *step.shape))} (time first)", operand=n_c + j)
    for k, name in enumerate(const_in):
        t, want = ts[n_c + n_s + k], _body_type(body, name, "input")
        if t != want:
            raise ShapeError(f"scan: constant {k + 1} is {t}, the body takes {want}", operand=n_c + n_s + k)
    stacked = [TensorType((length, *t.shape), t.dtype) for t in (_body_type(body, y, "output") for y in ys)]
    sums = [_body_type(body, a, "output") for a in accs]
    return TupleType(tuple(histories + stacked + sums))


def _scan_ref(*arrays, body, carry_in, carry_out, seq_in, const_in, ys=(), accs=(), length, reverse=False,
              run_graph):
    """The loop, each step's body run by `run_graph(graph, {input name: array}) -> {output name: array}`
    (the interpreter hands it in)."""
    n_c, n_s = len(carry_in), len(seq_in)
    carries = list(arrays[:n_c])
    seqs, consts = arrays[n_c:n_c + n_s], arrays[n_c + n_s:]
    histories = [np.empty((length, *np.shape(c)), np.asarray(c).dtype) for c in carries]
    stacked: list = [None] * len(ys)
    sums: list = [None] * len(accs)
    fixed = dict(zip(const_in, consts))
    for t in (reversed(range(length)) if reverse else range(length)):
        feed = {**fixed, **dict(zip(carry_in, carries)), **{name: s[t] for name, s in zip(seq_in, seqs)}}
        out = run_graph(body, feed)
        carries = [out[name] for name in carry_out]
        for h, c in zip(histories, carries):
            h[t] = c
        for j, name in enumerate(ys):
            if stacked[j] is None:
                stacked[j] = np.empty((length, *np.shape(out[name])), np.asarray(out[name]).dtype)
            stacked[j][t] = out[name]
        for k, name in enumerate(accs):
            sums[k] = np.array(out[name]) if sums[k] is None else sums[k] + out[name]
    return tuple(histories + stacked + sums)


scan = defop("scan", arity=None, groups={CONTROL}, shape=_scan, ref=_scan_ref,
             doc="a loop over time: the body graph once per step, carries passed on, results stacked",
             attrs=SCAN_ATTRS)


def _item(ts, *, index):
    t = ts[0]
    if not isinstance(t, TupleType) or not 0 <= index < len(t.types):
        raise ShapeError(f"item: {index} is not a result of {t}")
    return t.types[index]


item = defop("item", arity=1, groups={PROJECTION}, shape=_item, ref=lambda results, *, index: results[index],
             doc="result `index` of an op with several results", attrs=("index",))
# The cotangent of one result goes to that slot of the tuple's cotangent (nnc.passes.autodiff keeps a
# tuple's cotangent per result and hands them to the op's VJPAll rule).
defvjp(item, VJP("item: d result[index] = dy", lambda c, dy: dy))


# ---- backpropagation through time -----------------------------------------------------------------


def _time_slice(c, x, start: int, stop: int):
    return c.slice(x, axis=0, start=start, stop=stop)


def _states_before(c, history: int, init: int, length: int, reverse: bool) -> int:
    """The carry each step starts from, time-major: init, then history[t - 1] (history[t + 1] backwards)."""
    t = c.type(init)
    first = c.reshape(init, shape=(1, *t.shape))
    if length == 1:
        return first
    if reverse:
        return c.concat(_time_slice(c, history, 1, length), first, axis=0)
    return c.concat(first, _time_slice(c, history, 0, length - 1), axis=0)


def _step_of(c, history: int, t: int) -> int:
    """history[t] without its time axis."""
    t_type = c.type(history)
    return c.reshape(_time_slice(c, history, t, t + 1), shape=t_type.shape[1:])


def _scan_vjp(c, dys: dict):
    """The reverse loop: each step recomputes the body from its input state and applies the body's VJP to
    the cotangents of its carries (from the step after and from the history) and outputs."""
    a = c.attrs
    body, length, reverse = a["body"], a["length"], a["reverse"]
    carry_in, carry_out, seq_in, const_in = a["carry_in"], a["carry_out"], a["seq_in"], a["const_in"]
    ys, accs = a["ys"], a["accs"]
    n_c, n_s = len(carry_in), len(seq_in)
    inits = [c.x(i) for i in range(n_c)]
    seqs = [c.x(n_c + j) for j in range(n_s)]
    consts = [c.x(n_c + n_s + k) for k in range(len(const_in))]
    histories = [c.item(c.y, index=i) for i in range(n_c)]
    wrt = [name for name in (*carry_in, *seq_in, *const_in) if body.type_of(body.inputs[name]).is_float]

    # the backward body: the forward body, the cotangents as inputs, and the VJP as a gradient of
    # L = Σ carry_out·(g + dhistory) + Σ y·dy + Σ acc·dacc
    bb = body.clone()
    e = c.emitter(bb)
    terms, grad_carry, dhist, dy_names, dacc_names = [], [], [], [], []
    for i, (name_in, name_out) in enumerate(zip(carry_in, carry_out)):
        t = bb.type_of(bb.inputs[name_in])
        g_name = f"grad/{name_in}"
        grad_carry.append(g_name)
        cot = e.input(g_name, t)
        if i in dys:
            dhist.append(f"dhistory/{name_in}")
            cot = e.add(cot, e.input(dhist[-1], t))
        terms.append(e.sum(e.mul(bb.outputs[name_out], cot), axis=None))
    for j, name in enumerate(ys):
        if n_c + j in dys:
            dy_names.append(f"dy/{name}")
            terms.append(e.sum(e.mul(bb.outputs[name], e.input(dy_names[-1], bb.type_of(bb.outputs[name]))),
                               axis=None))
    for k, name in enumerate(accs):
        if n_c + len(ys) + k in dys:
            dacc_names.append(f"dacc/{name}")
            terms.append(e.sum(e.mul(bb.outputs[name], e.input(dacc_names[-1], bb.type_of(bb.outputs[name]))),
                               axis=None))
    total = terms[0]
    for term in terms[1:]:
        total = e.add(total, term)
    gb = c.gradient_graph(bb, total, wrt)
    outputs = {}
    for name in wrt:
        outputs[f"d/{name}"] = gb.grads[name]
    gb.outputs = outputs
    gb.grads, gb.adjoints, gb.contributions = {}, {}, {}
    gb.loss = gb.grad_of = None   # L only seeded the gradient: nothing computes it
    gb = c.simplified(gb)

    carry_grads = [name for name in carry_in if name in wrt]
    zero_carries = [c.zeros_like(inits[carry_in.index(name)]) for name in carry_grads]
    seq_operands = [dys[i] for i in range(n_c) if i in dys] + [dys[n_c + j] for j in range(len(ys)) if n_c + j in dys]
    seq_operands += [_states_before(c, histories[i], inits[i], length, reverse) for i in range(n_c)] + seqs
    const_operands = consts + [dys[n_c + len(ys) + k] for k in range(len(accs)) if n_c + len(ys) + k in dys]
    seq_grads = [name for name in seq_in if name in wrt]
    const_grads = [name for name in const_in if name in wrt]
    back = c.scan(*zero_carries, *seq_operands, *const_operands, body=gb,
                  carry_in=tuple(f"grad/{name}" for name in carry_grads),
                  carry_out=tuple(f"d/{name}" for name in carry_grads),
                  seq_in=(*dhist, *dy_names, *carry_in, *seq_in), const_in=(*const_in, *dacc_names),
                  ys=tuple(f"d/{name}" for name in seq_grads), accs=tuple(f"d/{name}" for name in const_grads),
                  length=length, reverse=not reverse)
    first = length - 1 if reverse else 0   # the step the reverse loop ends with: the gradient of the initial state
    grads = []
    for name in carry_in:
        grads.append(_step_of(c, c.item(back, index=carry_grads.index(name)), first) if name in wrt else None)
    for name in seq_in:
        grads.append(c.item(back, index=len(carry_grads) + seq_grads.index(name)) if name in wrt else None)
    for name in const_in:
        grads.append(c.item(back, index=len(carry_grads) + len(seq_grads) + const_grads.index(name))
                     if name in wrt else None)
    return tuple(grads)


defvjp_all(scan, VJPAll("scan: backpropagation through time (the reverse loop of the body's VJP)", _scan_vjp))
