"""The registry of ONNX operator translators: how one ONNX node becomes `.nn` text.

The importer (`importer.py`) reads the graph, folds what is known at import time, and calls one translator per
node, in topological order. A translator is a function registered for one or more ONNX op types; it gets a
`Node` and returns the `.nn` expression of the node's output(s). The importer writes each result as one named
statement (`name = EXPR   # [B, 256]`), so a translator's inputs are always names, numbers or bracketed
literals, safe to use as operands without parentheses:

    @translates("Relu", "Sigmoid", "Tanh")
    def activation(n: Node) -> str:
        return f"{n.op_type.lower()}({n.x(0)})"

    @translates("LeakyRelu")
    def leaky_relu(n: Node) -> str:
        return f"leaky_relu({n.x(0)}, alpha={fmt(n.attr('alpha', 0.01))})"

What a translator may return:

- a string: the expression of the node's only output (or of its first, when the others are unused);
- a list with one entry per output: strings, `Const` entries, or "" for an output nothing reads
  (`Value.used` says which are read);
- `Const(array)`: the output is known at import time (a shape computation); nothing is written, and the
  consumers see `Value.const`. The importer already folds every node whose inputs are all constants with
  NumPy (ONNX's reference evaluator) before calling any translator, so translators rarely need this;
- `Several(expr, count)`: one call that gives `count` values (`split`), written `a, b, c = expr`.

What `Node` gives (see the class): `op_type`, `name`, `opset`, the `inputs` and `outputs` as `Value`s (static
shape with symbolic dims as strings such as "B", `.nn` dtype, the constant value when known), `attr(name,
default)`, and helpers: `x(i)` the operand text of input i (a float initializer becomes a `param`, a small
constant a literal), `const(i)` its constant value (or None), `shape(i)` / `rank(i)` (where ONNX's shape
inference lost a dim, nnc's front end is asked), `axis(a, rank)` normalizes a negative axis,
`layer_name(*initializers)` a `name=` for a layer function whose parameters come from initializers,
`bind(layer, {"weight": array, ...})` records a layer's parameter values under `layer.weight`, ...,
`emit(suffix, expr)` writes a helper statement first and gives its name, `fail(message)` raises the import
error naming the node. `fmt(v)` writes a number or list as `.nn` text.

An op type no translator is registered for is reported by the importer, together with every other such op of
the file, in one error. A translator that cannot handle a node's attributes (a mode nnc has no counterpart
for) calls `n.fail(...)`: the error names the node and the op.

Two modules register translators: `ops_nn.py` (layers, shapes, activations, arithmetic) and `ops_math.py`
(elementwise math, comparisons, reductions, logic); the importer imports both (`importer.load_translators`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import NncError

TRANSLATORS: dict[str, Callable] = {}


def translates(*op_types: str):
    """Register the decorated function as the translator of these ONNX op types (default domain)."""
    def register(fn):
        for op in op_types:
            if op in TRANSLATORS:
                raise ValueError(f"ONNX op {op} has two translators: {TRANSLATORS[op].__name__} and {fn.__name__}")
            TRANSLATORS[op] = fn
        return fn
    return register


@dataclass(frozen=True)
class Const:
    """A value known at import time."""

    value: np.ndarray


@dataclass(frozen=True)
class Several:
    """One expression giving several values: `a, b = split(x, 2)`."""

    expr: str
    count: int


@dataclass
class Value:
    """One ONNX value as the translators see it.

    `name`: the ONNX name; `text`: the `.nn` operand it is (a statement's name, a parameter, a literal);
    `shape`: a tuple of ints and symbolic dims (strings such as "B"), or None when not even the rank is known;
    `dtype`: "float", "f64", "int" or "bool" (also "f16" and the like, which nnc refuses); `const`: the value when
    known at import time (an int array, or an object array holding symbolic dims for a shape of a shape);
    `initializer`: it is a graph initializer, so used as a tensor it becomes a trained parameter."""

    name: str
    text: str | None = None
    shape: tuple | None = None
    dtype: str = "float"
    const: np.ndarray | None = None
    initializer: bool = False
    fill: float | None = None          # a tensor of this shape filled with one number (ConstantOfShape of B)
    used: bool = True                  # some node or output of the graph reads it


@dataclass
class Node:
    """What a translator sees of one ONNX node. Built by the importer, which provides the callbacks."""

    op_type: str
    name: str
    inputs: list
    outputs: list
    attrs: dict
    operand: Callable = None          # Value -> .nn text (declares a param / writes a literal)
    binder: Callable = None           # (layer name, {suffix: array}) -> None
    resolver: Callable = None         # Value -> its shape, as nnc builds the statements so far
    namer: Callable = None            # (initializer Values) -> layer name
    label: str = ""                   # the statement name the (first) output gets
    opset: int = 17                   # the model's default-domain opset (Softmax's axis, Squeeze's axes differ)
    extra: list = field(default_factory=list)   # statements to write before this node's: (name, expr)

    def attr(self, name: str, default=None):
        return self.attrs.get(name, default)

    def has(self, i: int) -> bool:
        return i < len(self.inputs) and self.inputs[i] is not None

    def x(self, i: int) -> str:
        if not self.has(i):
            self.fail(f"input {i} is missing")
        return self.operand(self.inputs[i])

    def const(self, i: int):
        return self.inputs[i].const if self.has(i) else None

    def shape(self, i: int) -> tuple:
        """Input i's shape; where ONNX's shape inference lost a dim, nnc's (the statements so far, built)."""
        s = self.inputs[i].shape if self.has(i) else None
        if (s is None or "?" in s) and self.has(i) and self.inputs[i].text and self.resolver is not None:
            s = self.inputs[i].shape = self.resolver(self.inputs[i])
        if s is None:
            self.fail(f"the shape of input {i} ('{self.inputs[i].name}') is not known at import time")
        return s

    def rank(self, i: int) -> int:
        return len(self.shape(i))

    def out_shape(self, k: int = 0):
        return self.outputs[k].shape

    def axis(self, a: int, rank: int) -> int:
        a = int(a)
        if not -rank <= a < rank:
            self.fail(f"axis {a} is out of range for rank {rank}")
        return a + rank if a < 0 else a

    def layer_name(self, *inits) -> str:
        return self.namer(self, [v for v in inits if v is not None])

    def bind(self, layer: str, arrays: dict) -> None:
        self.binder(layer, arrays)

    def emit(self, suffix: str, expr: str) -> str:
        """A helper statement written before this node's (for a translator that needs several): its name."""
        name = f"{self.label}_{suffix}"
        self.extra.append((name, expr))
        return name

    def fail(self, message: str):
        raise NncError(f"ONNX node '{self.name}' ({self.op_type}): {message}")


def fmt(v) -> str:
    """A number, a list of numbers or an array as `.nn` text: 3, 0.5, -1e-05, [1, 2], [[1, 0], [0, 1]]."""
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(fmt(e) for e in v) + "]"
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, str):   # a symbolic dim
        return v
    f = float(v)
    if not math.isfinite(f):
        raise NncError(f"the constant {f} cannot be written in a .nn file (it has no infinities or NaNs)")
    if f == int(f) and abs(f) < 1e15:
        return str(int(f)) + ".0"
    single = np.float32(f)
    close = abs(float(single) - f) <= 1e-7 * abs(f)   # ONNX's float attributes: 0.1, not 0.10000000149
    return str(single) if close else repr(f)
