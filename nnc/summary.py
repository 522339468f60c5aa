"""`nnc check`'s table: one row per statement, like Keras's model.summary()."""

from __future__ import annotations

import numpy as np

from .ir.types import TensorType, format_shape
from .text import ops_text


def _type_text(t: TensorType | tuple | None) -> str:
    if isinstance(t, tuple):  # a statement naming several values: h, c = cell(...)
        return ", ".join(_type_text(v) for v in t)
    if t is None:
        return "(number)"
    return str(t) if t.shape or t.dtype != "float32" else "[] scalar"


def summary_text(model) -> str:
    g = model.graph
    counts = model.param_counts()
    rows = []
    for info in g.statements:
        if info.kind == "output":
            continue
        ops = ops_text(info.ops) or "(value)"
        n = sum(counts.get(p, 0) for p in info.params)
        rows.append((info.label, ops, _type_text(info.type), f"{n:,}"))
    header = ("name", "op", "output shape", "params")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(4)]
    widths[1] = min(widths[1], 40)
    rule = "─" * (sum(widths) + 3 * 3 + 2)

    def line(r):
        return f" {r[0]:<{widths[0]}}   {r[1]:<{widths[1]}}   {r[2]:<{widths[2]}}   {r[3]:>{widths[3]}}"

    from .ir.graph import under_prefix

    prefixes = tuple(model.settings.get("freeze") or ())   # the train block's `freeze`: not trained either
    trainable = sum(c for name, c in counts.items() if g.nodes[g.params[name]]["attrs"]["trainable"]
                    and not any(under_prefix(name, p) for p in prefixes))
    frozen = sum(counts.values()) - trainable
    nbytes = sum(c * np.dtype(model.param_types[name].dtype).itemsize for name, c in counts.items())
    out = [f"model {model.name}  ({model.source.filename})", rule, line(header), rule]
    out += [line(r) for r in rows]
    out.append(rule)
    frozen_text = f" (frozen: {', '.join(prefixes)})" if prefixes else ""
    out.append(f" parameters: {trainable:,} trainable, {frozen:,} non-trainable{frozen_text} ({_bytes(nbytes)})")
    outs = ", ".join(f"{k} {g.type_of(n)}" for k, n in g.outputs.items()) or "none"
    out.append(f" outputs: {outs}")
    if g.loss is not None:
        out.append(" loss: " + ops_text(_loss_ops(g)))
    out.append(f" graph: {len(g)} primitive ops")
    return "\n".join(out)


def _loss_ops(g):
    info = next((i for i in g.statements if i.kind == "loss"), None)
    return info.ops if info else []


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


__all__ = ["summary_text", "format_shape"]
