"""Loop passes: make the reverse loops of backpropagation through time cheap and parallel.

The grad pass writes the gradient of a `scan` as a reverse scan whose body
recomputes each step's forward values and sums the weights' gradients step by
step (nnc/ir/ops/control.py). Two passes, run after it in the gradient and
training pipelines, trade that for what a hand-written BPTT does:

- `keep_forward_values`: the forward loop also stacks the values the reverse
  loop needs (its residuals: gate activations, say), so the reverse body reads
  them instead of recomputing them.
- `sink_out_of_loops`: a per-step product with a weight (dx_t = dz_t·Wᵀ) or a
  sum over the steps of products (dW = Σ_t h_tᵀ·dz_t, db = Σ_t Σ_rows dz_t)
  becomes one product over the stacked steps after the loop (one large GEMM
  instead of T small ones), and the body is left with only row-wise work, so
  threads can split its batch (nnc/backend/kernels/scan.py).

Both keep the values every result of the loops had; results are remapped.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..ir import ops
from ..ir.graph import Emitter, Graph
from ..ir.ops import CONSTANT, ELEMENTWISE, EXPAND, LEAF, VIEW
from .simplify import simplify


@dataclass(frozen=True)
class Loop:
    """A scan node's parts, to rebuild it changed."""

    body: Graph
    carry_in: tuple
    carry_out: tuple
    seq_in: tuple
    const_in: tuple
    ys: tuple
    accs: tuple
    length: int
    reverse: bool
    inits: tuple
    seqs: tuple
    consts: tuple

    @staticmethod
    def of(g, n) -> Loop:
        a = g.nodes[n]["attrs"]
        operands = g.operands(n)
        n_c, n_s = len(a["carry_in"]), len(a["seq_in"])
        return Loop(a["body"], a["carry_in"], a["carry_out"], a["seq_in"], a["const_in"], a["ys"], a["accs"],
                    a["length"], a["reverse"], operands[:n_c], operands[n_c:n_c + n_s], operands[n_c + n_s:])

    def emit(self, e: Emitter) -> int:
        return e.scan(*self.inits, *self.seqs, *self.consts, body=self.body, carry_in=self.carry_in,
                      carry_out=self.carry_out, seq_in=self.seq_in, const_in=self.const_in, ys=self.ys,
                      accs=self.accs, length=self.length, reverse=self.reverse)

    def index(self, kind: str, name: str) -> int:
        """The result index of a carry's history, a stacked output or a sum."""
        if kind == "carry":
            return self.carry_in.index(name)
        if kind == "y":
            return len(self.carry_in) + self.ys.index(name)
        return len(self.carry_in) + len(self.ys) + self.accs.index(name)

    def kind_of(self, index: int) -> tuple[str, str]:
        n_c, n_y = len(self.carry_in), len(self.ys)
        if index < n_c:
            return "carry", self.carry_in[index]
        if index < n_c + n_y:
            return "y", self.ys[index - n_c]
        return "acc", self.accs[index - n_c - n_y]


def replace_loop(g, old: int, new: Loop, results: dict | None = None, **provenance) -> int:
    """Put the scan `new` in place of `old`: each result of `old` read by an item node is read from `new` under
    the same name, or is the outer node `results[(kind, name)]` gives."""
    new_node = new.emit(Emitter(g, **{**g.provenance(old), **provenance}))
    old_loop = Loop.of(g, old)
    for user in [u for u in g.successors(old) if g.op(u) is ops.item]:
        kind, name = old_loop.kind_of(g.nodes[user]["attrs"]["index"])
        target = (results or {}).get((kind, name))
        if target is None:
            target = Emitter(g, **g.provenance(user)).item(new_node, index=new.index(kind, name))
        g.replace_uses(user, target)
    return new_node


def copy_into(src: Graph, n: int, dst: Graph, inputs: dict, memo: dict) -> int:
    """The value of `src`'s node `n` computed in `dst`: `inputs` maps src input names to dst nodes."""
    if n in memo:
        return memo[n]
    data = src.nodes[n]
    if data["op"] is ops.input:
        result = inputs[data["attrs"]["name"]]
    else:
        operands = [copy_into(src, o, dst, inputs, memo) for o in data["operands"]]
        result = dst.add_op(data["op"], operands, data["attrs"], **src.provenance(n))
    memo[n] = result
    return result


def prune_inputs(loop: Loop) -> Loop:
    """Drop the sequences and constants the body no longer reads."""
    body = loop.body

    def used(name):
        n = body.inputs[name]
        return bool(list(body.successors(n))) or n in body.outputs.values()

    seq = [(name, s) for name, s in zip(loop.seq_in, loop.seqs) if used(name)]
    const = [(name, c) for name, c in zip(loop.const_in, loop.consts) if used(name)]
    for name in set(loop.seq_in) - {s for s, _ in seq} | set(loop.const_in) - {c for c, _ in const}:
        body.remove_node(body.inputs.pop(name))
    return replace(loop, seq_in=tuple(s for s, _ in seq), seqs=tuple(n for _, n in seq),
                   const_in=tuple(c for c, _ in const), consts=tuple(n for _, n in const))


# ---- the forward loop keeps what the reverse loop needs ----------------------------------------------


def keep_forward_values(g: Graph) -> Graph:
    """Each reverse loop reads its forward loop's residuals instead of recomputing them."""
    g = g.clone()
    for back in [n for n in g.topo() if g.op(n) is ops.scan]:
        fwd = g.nodes[back].get("grad_of")
        if back not in g or fwd is None or fwd not in g or g.op(fwd) is not ops.scan:
            continue
        _keep_residuals(g, fwd, back)
    return g


def _keep_residuals(g, fwd: int, back: int) -> None:
    f, b = Loop.of(g, fwd), Loop.of(g, back)
    gb = b.body
    from_forward = {gb.inputs[name] for name in (*f.carry_in, *f.seq_in, *f.const_in) if name in gb.inputs}
    recomputed: set = set()
    for n in gb.topo():
        op = gb.op(n)
        if not op.is_a(LEAF) and all(o in recomputed or o in from_forward or gb.op(o).is_a(CONSTANT)
                                     for o in gb.operands(n)):
            recomputed.add(n)
    used = [n for n in recomputed if any(u not in recomputed for u in gb.successors(n)) or n in gb.outputs.values()]
    varying = _varying(gb, {gb.inputs[name] for name in (*f.carry_in, *f.seq_in) if name in gb.inputs})
    residuals = sorted(_frontier(gb, used, recomputed, varying, from_forward))
    if not residuals:
        return
    fb = f.body.clone()
    names = [f"residual/{k}" for k in range(len(residuals))]
    memo: dict = {}
    for name, r in zip(names, residuals):
        fb.outputs[name] = copy_into(gb, r, fb, dict(fb.inputs), memo)
    f2 = replace(f, body=simplify(fb), ys=(*f.ys, *names))
    new_fwd = replace_loop(g, fwd, f2)

    gb2 = gb.clone()
    e = Emitter(gb2)
    for name, r in zip(names, residuals):
        gb2.replace_uses(r, e.input(name, gb2.type_of(r)))
    stacked = tuple(Emitter(g, **g.provenance(back)).item(new_fwd, index=f2.index("y", name)) for name in names)
    b2 = prune_inputs(replace(b, body=simplify(gb2), seq_in=(*b.seq_in, *names), seqs=(*b.seqs, *stacked)))
    replace_loop(g, back, b2, grad_of=new_fwd)


def _varying(gb, starts: set) -> set:
    """The nodes that depend on a step's carries or sequences (the rest is the same at every step)."""
    varying = set(starts)
    for n in gb.topo():
        if any(o in varying for o in gb.operands(n)):
            varying.add(n)
    return varying


def _frontier(gb, used, recomputed, varying, from_forward) -> set:
    """The recomputed values to keep: those the backward work reads (gate activations, say), each
    stored once by the forward loop and read back, so that neither loop repeats the other's work and
    the forward products fuse with their epilogues. A view or broadcast is kept as what it views; what
    is the same at every step (a function of the weights alone) is recomputed, and so is an elementwise
    function of kept values (σ(1 − σ) of a kept σ)."""
    keep, seen, stack = set(), set(), list(used)
    while stack:
        n = stack.pop()
        if n in seen or n not in recomputed or n not in varying:
            continue
        seen.add(n)
        if gb.op(n).is_a(EXPAND) or gb.op(n).is_a(VIEW):
            stack.extend(gb.operands(n))
        else:
            keep.add(n)
    available = set(from_forward) | keep
    for n in gb.topo():
        op = gb.op(n)
        cheap = op.is_a(ELEMENTWISE) or op.is_a(EXPAND) or op.is_a(VIEW)
        if n in recomputed and cheap and all(o in available or o not in varying for o in gb.operands(n)):
            available.add(n)
            keep.discard(n)
    return keep


# ---- products with weights and sums over the steps leave the loop ------------------------------------


def sink_out_of_loops(g: Graph) -> Graph:
    """Per-step products with a weight, and sums over the steps of products and of batch sums, become one
    operation on the stacked steps after the loop."""
    g = g.clone()
    for n in [n for n in g.topo() if g.op(n) is ops.scan]:
        _sink(g, n)
    return g


def _sink(g, node: int) -> None:
    loop = Loop.of(g, node)
    body = loop.body.clone()
    e = Emitter(body)
    batch = _batch_symbol(body, loop.carry_in)
    consts = {body.inputs[name]: outer for name, outer in zip(loop.const_in, loop.consts)}
    seqs = {body.inputs[name]: outer for name, outer in zip(loop.seq_in, loop.seqs)}
    new_ys: dict = {}      # body node -> its output name (the per-step values stacked for use after the loop)
    after: list = []       # (kind, name, builder(stacked lookup, emitter) -> outer node)

    def stacked(n):
        """How to get the stacked [T, ...] value of body node n after the loop."""
        if n in seqs:
            return lambda items, out: seqs[n]
        kept_y = [name for name in ys if body.outputs[name] == n]
        if kept_y:   # already stacked (the gradient of a sequence is often the one a sum needs)
            return lambda items, out, name=kept_y[0]: items[name]
        if n not in new_ys:
            new_ys[n] = f"sunk/{len(new_ys)}"
        name = new_ys[n]
        return lambda items, out: items[name]

    def per_step(n):
        t = body.type_of(n)
        return batch is not None and bool(t.shape) and t.shape[0] == batch

    ys = list(loop.ys)
    for name in loop.ys:
        out = body.outputs[name]
        alone = not list(body.successors(out))   # sunk, it would be computed twice when the body uses it too
        if alone and body.op(out) is ops.matmul and body.operands(out)[1] in consts \
                and per_step(body.operands(out)[0]) and not body.nodes[out]["attrs"].get("ta"):
            d, w = body.operands(out)
            get_d, flags = stacked(d), dict(body.nodes[out]["attrs"])
            after.append(("y", name, lambda items, out_e, get_d=get_d, w=consts[w], flags=flags:
                          out_e.matmul(get_d(items, out_e), w, **flags)))
            ys.remove(name)
    accs = list(loop.accs)
    for name in loop.accs:
        terms = _terms(body, body.outputs[name])
        sunk, kept = [], []
        for term in terms:
            builder = _sum_term(body, term, per_step, stacked)
            (sunk if builder else kept).append(builder or term)
        if not sunk:
            continue
        if kept:
            total = kept[0]
            for t in kept[1:]:
                total = e.add(total, t)
            body.outputs[name] = total
        else:
            accs.remove(name)
            del body.outputs[name]
        after.append(("acc", name, lambda items, out_e, sunk=sunk, keep=bool(kept), name=name:
                      _total(out_e, [s(items, out_e) for s in sunk] + ([items[("acc", name)]] if keep else []))))
    if not after:
        return
    for n, name in new_ys.items():
        body.outputs[name] = n
    for kind, name, _ in after:
        if kind == "y":
            del body.outputs[name]
    new = prune_inputs(replace(loop, body=simplify(body), ys=(*ys, *new_ys.values()), accs=tuple(accs)))
    out_e = Emitter(g, **g.provenance(node))
    new_node = new.emit(out_e)
    items = {name: out_e.item(new_node, index=new.index("y", name)) for name in new.ys}
    items.update({("acc", name): out_e.item(new_node, index=new.index("acc", name)) for name in new.accs})
    results = {(kind, name): build(items, out_e) for kind, name, build in after}
    old = Loop.of(g, node)
    for user in [u for u in g.successors(node) if g.op(u) is ops.item]:
        kind, name = old.kind_of(g.nodes[user]["attrs"]["index"])
        target = results.get((kind, name)) or (items.get(name) if kind == "y" else None)
        if target is None:
            target = out_e.item(new_node, index=new.index(kind, name))
        g.replace_uses(user, target)


def _terms(body, n) -> list:
    """The summands of n (through add nodes of the same shape)."""
    if body.op(n) is ops.add and all(body.type_of(o) == body.type_of(n) for o in body.operands(n)):
        return [t for o in body.operands(n) for t in _terms(body, o)]
    return [n]


def _sum_term(body, term, per_step, stacked):
    """How to compute Σ_t term after the loop, or None when it must stay in it."""
    shape = body.type_of(term).shape
    n, reshaped = term, None
    if body.op(n) is ops.reshape:
        n, reshaped = body.operands(n)[0], shape
    attrs = body.nodes[n]["attrs"]
    if body.op(n) is ops.matmul and attrs.get("ta") and all(per_step(o) for o in body.operands(n)):
        x, d = (stacked(o) for o in body.operands(n))
        flags = {"ta": True, "tb": attrs.get("tb", False)}

        def build(items, e):
            return _reshape(e, e.matmul_sum(x(items, e), d(items, e), **flags), reshaped)
        return build
    if body.op(n) is ops.sum and per_step(body.operands(n)[0]) and 0 in (attrs.get("axis") or ()) \
            and not attrs.get("keepdims"):
        d, axes = stacked(body.operands(n)[0]), (0, *(a + 1 for a in attrs["axis"]))
        return lambda items, e: _reshape(e, e.sum(d(items, e), axis=axes), reshaped)
    return None


def _reshape(e, n, shape):
    return e.reshape(n, shape=shape) if shape is not None else n


def _total(e, nodes):
    total = nodes[0]
    for n in nodes[1:]:
        total = e.add(total, n)
    return total


def _batch_symbol(body, carry_in):
    dims = {body.type_of(body.inputs[name]).shape[0] for name in carry_in if body.type_of(body.inputs[name]).shape}
    symbols = [d for d in dims if isinstance(d, str)]
    return symbols[0] if len(symbols) == 1 else None
