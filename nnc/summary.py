"""`nnc check`'s table: one row per statement, like Keras's model.summary(), with each statement's parameters and
multiply-adds (counted by nnc/passes/costs.py); and the same as JSON for `nnc check --json`."""

from __future__ import annotations

import numpy as np

from .ir import ops
from .ir.types import TensorType, format_shape
from .passes.costs import Macs, batch_symbols, graph_macs, statement_macs
from .text import ops_text


def _type_text(t: TensorType | tuple | None) -> str:
    if isinstance(t, tuple):  # a statement naming several values: h, c = cell(...)
        return ", ".join(_type_text(v) for v in t)
    if t is None:
        return "(number)"
    return str(t) if t.shape or t.dtype != "float32" else "[] scalar"


def summary_rows(model, training: bool = False) -> list[dict]:
    """One dict per statement (outputs are a mark, not a row): name, op, output_shape, params, macs (Macs);
    `training`: of the training form (dropout masks, batch statistics)."""
    g = model.training_graph if training else model.graph
    counts = model.param_counts()
    macs = statement_macs(g)
    return [{"name": info.label, "op": ops_text(info.ops) or "(value)", "output_shape": _type_text(info.type),
             "params": sum(counts.get(p, 0) for p in info.params), "macs": macs.get(info.label, Macs())}
            for info in g.statements if info.kind != "output"]


def summary_totals(model) -> dict:
    """The whole model's parameters (trainable, non-trainable, bytes) and multiply-adds."""
    from .ir.graph import under_prefix

    g = model.graph
    counts = model.param_counts()
    prefixes = tuple(model.settings.get("freeze") or ())   # the train block's `freeze`: not trained either
    trainable = sum(c for name, c in counts.items() if g.nodes[g.params[name]]["attrs"]["trainable"]
                    and not any(under_prefix(name, p) for p in prefixes))
    nbytes = sum(c * np.dtype(model.param_types[name].dtype).itemsize for name, c in counts.items())
    return {"params": sum(counts.values()), "trainable": trainable, "non_trainable": sum(counts.values()) - trainable,
            "frozen": list(prefixes), "bytes": nbytes, "macs": graph_macs(g), "batch": sorted(batch_symbols(g))}


def macs_text(macs: Macs, batch) -> list[str]:
    """The footer's lines on the count of multiply-adds and what it counts."""
    per = " per example" if batch else ""
    short = f" ({macs.short()})" if macs.fixed is not None and macs.fixed >= 1000 else ""
    lines = [f" MACs: {macs}{per}{short}: {COUNTED}",
             f"       ({LEFT_OUT})"]
    if macs.symbols:
        dims = ", ".join(sorted(macs.symbols))
        them = "it" if len(macs.symbols) == 1 else "them"
        lines.append(f"       ({dims}: symbolic, so the count is a formula in {them})")
    return lines


COUNTED = "matrix products and convolutions, one per weight use"
LEFT_OUT = "pooling, elementwise ops and normalization left out, as in published counts"


def summary_text(model, training: bool = False) -> str:
    """The layer table and totals of `nnc check`; `training`: the training form's table (`nnc check --train`),
    where dropout is a layer of its own and batch norm uses the batch's statistics."""
    g = model.training_graph if training else model.graph
    rows = [(r["name"], r["op"], r["output_shape"], f"{r['params']:,}", str(r["macs"]))
            for r in summary_rows(model, training)]
    header = ("name", "op", "output shape", "params", "MACs")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(5)]
    widths[1] = min(widths[1], 40)
    rule = "─" * (sum(widths) + 3 * 4 + 2)

    def line(r):
        return (f" {r[0]:<{widths[0]}}   {r[1]:<{widths[1]}}   {r[2]:<{widths[2]}}   {r[3]:>{widths[3]}}"
                f"   {r[4]:>{widths[4]}}")

    totals = summary_totals(model)
    form = "  [training form]" if training else ""
    out = [f"model {model.name}  ({model.source.filename}){form}", rule, line(header), rule]
    out += [line(r) for r in rows]
    out.append(rule)
    prefixes = totals["frozen"]
    frozen_text = f" (frozen: {', '.join(prefixes)})" if prefixes else ""
    out.append(f" parameters: {totals['trainable']:,} trainable, {totals['non_trainable']:,} non-trainable"
               f"{frozen_text} ({_bytes(totals['bytes'])})")
    out += macs_text(totals["macs"], totals["batch"])
    outs = ", ".join(f"{k} {g.type_of(n)}" for k, n in g.outputs.items()) or "none"
    out.append(f" outputs: {outs}")
    if g.loss is not None:
        out.append(" loss: " + ops_text(_loss_ops(g)))
    out.append(f" graph: {len(g)} primitive ops")
    if not training:
        differ = _training_differences(model)
        if differ:
            out.append(f" while training: {'; '.join(differ)} (nnc check --train shows that form)")
    return "\n".join(out)


def _training_differences(model) -> list[str]:
    """The layers that compute otherwise while training, as `nnc check` says under its table."""
    g = model.training_graph
    notes = []
    if any(g.op(n) is ops.dropout_mask for n in g.nodes):
        notes.append("dropout zeroes values at random")
    if any(name.endswith("running_mean") for name in g.params):
        notes.append("batchnorm normalizes with the batch's statistics and updates its running ones")
    return notes


def summary_json(model) -> dict:
    """`nnc check --json`: the table and the totals for scripts. A count of multiply-adds is a number, or a
    formula such as "12288*T" when it grows with a symbolic dim other than the batch."""
    g = model.graph
    totals = summary_totals(model)
    return {"model": model.name, "file": str(model.source.filename),
            "layers": [{**r, "macs": _json_macs(r["macs"])} for r in summary_rows(model)],
            "totals": {k: _json_macs(v) if k == "macs" else v for k, v in totals.items() if k != "batch"},
            "batch": totals["batch"],     # the dims counted once: with one, the MACs are per example
            "macs_counted": f"{COUNTED} ({LEFT_OUT})",
            "outputs": {k: str(g.type_of(n)) for k, n in g.outputs.items()},
            "loss": ops_text(_loss_ops(g)) if g.loss is not None else None,
            "primitive_ops": len(g)}


def _json_macs(macs: Macs) -> int | str:
    return macs.fixed if macs.fixed is not None else macs.formula()


def _loss_ops(g):
    info = next((i for i in g.statements if i.kind == "loss"), None)
    return info.ops if info else []


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


__all__ = ["summary_json", "summary_rows", "summary_text", "summary_totals", "format_shape"]
