"""Building: the AST of one model -> a Graph of primitive ops, shapes inferred as it goes.

Owns name resolution (scopes, blocks, rebinding), statements and expressions,
and calls: a call of a built-in function binds its arguments (nnc/front/values.py)
and runs the function of nnc/front/layers.py, which adds nodes through the
GraphWriter this Builder is (nnc/front/writer.py); a block call expands the
block's statements in a scope of their own.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

from ..errors import Loc, NncError, Span, nearest
from ..ir import ops
from ..ir.graph import Graph, StatementInfo, under_prefix
from ..ir.initializer import Init
from ..ir.types import DTYPE_NAMES, TensorType, format_shape
from . import ast
from .layers import FUNCTIONS
from .values import (
    INT64,
    Literal,
    Symbol,
    Tensor,
    Values,
    bind_arguments,
    did_you_mean,
    literal,
    several_hint,
    value_kind,
    value_names,
)
from .writer import PARAM_NAME, GraphWriter, Statement, literal_init

# Bounds on the builder's recursion (nnc/front/syntax.py bounds one expression to 100 levels): an expression
# level costs up to 4 Python frames and a block call 6 more, so these stay within Python's default
# recursion limit of 1000 with room for the caller's own frames (tests/test_fuzz.py measures it).
MAX_CALL_DEPTH = 16
MAX_EXPR_DEPTH = 150
RESERVED = {"true", "false", "True", "False"}

INIT_NAMES = {"zeros", "ones", "xavier", "he", "glorot", "kaiming"}
INIT_ALIASES = {"glorot": "xavier", "kaiming": "he"}
INIT_FUNCTIONS = {"normal", "uniform", "constant"}  # the initializers called with arguments (nnc/layers.py)


@dataclass
class _Scope:
    prefix: str  # "" in the model, "r1." inside a block called as r1 = ...
    env: dict = field(default_factory=dict)
    declared: dict = field(default_factory=dict)  # name -> ("input" | "param", Loc)
    bindings: dict = field(default_factory=dict)  # name -> times bound
    block: str | None = None


class Builder(GraphWriter):
    """Walks a model's AST: scopes, statements, expressions, calls of layers and blocks."""

    def __init__(self, program: ast.Program, model: ast.Model, *, training: bool = False):
        self.program = program
        self.model = model
        self.functions = FUNCTIONS
        self.blocks = {}
        for b in program.blocks:
            if b.name in self.blocks:
                raise NncError(f"block '{b.name}' is defined twice (first at {self.blocks[b.name].name_loc.span})",
                               b.name_loc)
            if b.name in self.functions:
                raise NncError(f"block '{b.name}' has the name of a built-in function", b.name_loc,
                               hint="choose another name for the block")
            self.blocks[b.name] = b
        super().__init__(Graph(model=model.name, source=program.source, training=training))
        self.symbols: set[str] = set()
        self.call_stack: list[str] = []
        self.stmt: Statement | None = None
        self.depth = 0
        self.current_loc: Loc | None = None
        self.arg_locs: tuple = ()
        self.loss_clauses: list = []   # named losses, their `trains` checked once every parameter exists

    # ---- top level ------------------------------------------------------------

    def build(self) -> Graph:
        scope = _Scope(prefix="")
        for s in self.model.body:
            self.statement(s, scope)
        if not self.g.outputs and self.g.loss is None:
            raise NncError(f"model '{self.model.name}' has no output and no loss", self.model.name_loc,
                           hint="add `output NAME` for what the model computes")
        for s in self.loss_clauses:
            self.check_trains(s)
        return self.g

    def check_trains(self, s: ast.LossStmt) -> None:
        """Each prefix of `loss NAME = ... trains P, Q` names trainable parameters, and some of them reach
        the loss (a loss that trains nothing it depends on is a mistake)."""
        trainable = [n for n, node in self.g.params.items() if self.g.nodes[node]["attrs"]["trainable"]]
        for var in s.trains:
            if not any(under_prefix(n, var.name) for n in trainable):
                close = nearest(var.name, sorted({n.split(".")[0] for n in trainable}))
                raise NncError(f"loss {s.name} trains an unknown prefix: got {var.name}, expected the name of a "
                               f"layer or parameter ({var.name} or {var.name}.*)", var.loc,
                               hint=f"did you mean {close}?" if close else
                               f"the trainable parameters: {', '.join(trainable) or 'none'}")
        need = self.g.needed_for([self.g.losses[s.name]])
        if not any(self.g.params[n] in need for n in self.g.loss_params(s.name)):
            used = sorted({n.split(".")[0] for n in trainable if self.g.params[n] in need})
            raise NncError(f"loss {s.name} trains no parameter it is computed from: got "
                           f"{', '.join(v.name for v in s.trains)}, expected some of {', '.join(used) or 'none'}",
                           s.loc, hint="its parameter group is empty: name the layers this loss should train")

    def statement(self, s, scope: _Scope):
        if isinstance(s, ast.InputDecl):
            return self.input_decl(s, scope)
        if isinstance(s, ast.ParamDecl):
            return self.param_decl(s, scope)
        if isinstance(s, ast.Assign):
            return self.assign(s, scope)
        if isinstance(s, ast.Unpack):
            return self.unpack(s, scope)
        if isinstance(s, ast.Output):
            return self.output(s, scope)
        if isinstance(s, ast.LossStmt):
            return self.loss(s, scope)
        if isinstance(s, ast.Return):
            raise NncError("return outside a block", s.loc, hint="models name their results with `output`")
        raise AssertionError(f"unknown statement {s!r}")  # pragma: no cover

    def _check_binding_name(self, name: str, loc: Loc, scope: _Scope):
        if "." in name:
            raise NncError(f"name '{name}' cannot contain '.'", loc,
                           hint="dotted names refer to parameters, such as h1.weight")
        if name in RESERVED:
            raise NncError(f"'{name}' is a reserved word and cannot be bound", loc)
        if name in scope.declared:
            kind, first = scope.declared[name]
            raise NncError(f"duplicate name '{name}': already declared as {kind} at {first.span}", loc,
                           hint="inputs and parameters are declared once; pick another name")

    def _info(self, scope: _Scope, label: str, kind: str, loc: Loc) -> StatementInfo | None:
        if scope.block is not None:
            return None
        info = StatementInfo(label, kind, loc=loc)
        self.g.statements.append(info)
        return info

    def input_decl(self, s: ast.InputDecl, scope: _Scope):
        if scope.block is not None:
            raise NncError(f"input '{s.name}' declared inside block '{scope.block}'", s.loc,
                           hint="blocks take their inputs as arguments")
        self._check_binding_name(s.name, s.name_loc, scope)
        if s.name in scope.env:
            raise NncError(f"input '{s.name}' declared after '{s.name}' was assigned", s.name_loc)
        typ = self.tensor_type(s.type) if s.type else TensorType((), "float32")
        self.symbols.update(d for d in typ.shape if isinstance(d, str))
        info = self._info(scope, s.name, "input", s.loc)
        self.stmt = Statement(base=s.name, label=s.name, info=info)
        self._check_size(f"input '{s.name}'", typ, s.type.loc if s.type else s.name_loc)
        node = self.g.add_op(ops.input, (), {"name": s.name, "type": typ}, type=typ, loc=s.name_loc,
                             stmt=s.name, layer="input")
        self.g.inputs[s.name] = node
        scope.env[s.name] = Tensor(node)
        scope.declared[s.name] = ("input", s.name_loc)
        self.g.values[s.name] = node
        info.type = typ
        info.ops = ["input"]

    def tensor_type(self, spec: ast.TypeSpec) -> TensorType:
        dims = spec.dims if spec.dims is not None else ()
        for d in dims:
            if isinstance(d, int) and d < 1:
                raise NncError(f"dims must be positive: got {d} in {format_shape(dims)}", spec.loc)
        return TensorType(tuple(dims), spec.dtype)

    def param_decl(self, s: ast.ParamDecl, scope: _Scope):
        self._check_binding_name(s.name, s.name_loc, scope)
        typ = self.tensor_type(s.type)
        if not typ.is_float:
            raise NncError(f"param '{s.name}' has dtype {DTYPE_NAMES.get(typ.dtype, typ.dtype)}, "
                           f"expected float or f64", s.type.loc, hint="parameters are trained, so they hold floats")
        symbolic = [d for d in typ.shape if isinstance(d, str)]
        if symbolic:
            raise NncError(f"param '{s.name}' has symbolic dim {symbolic[0]}: got {format_shape(typ.shape)}, "
                           f"expected numbers", s.type.loc, hint="parameter sizes are fixed when the model is built")
        full = scope.prefix + s.name
        info = self._info(scope, full, "param", s.loc)
        self.stmt = Statement(base=full, label=full, info=info)
        init = self.initializer(s.init, default=Init("xavier" if typ.rank >= 2 else "zeros"), param=(s.name, typ))
        node = self.new_param(full, typ, init, s.name_loc)
        scope.env[s.name] = Tensor(node)
        self.g.values[full] = node
        scope.declared[s.name] = ("param", s.name_loc)
        if info:
            info.type = typ
            info.ops = ["param"]

    def initializer(self, expr, default: Init, param: tuple) -> Init:
        """The Init of `param NAME: TYPE = EXPR` (`param` is (NAME, TYPE)): a named initializer, a number, or
        every value written out: `param w: [2, 1] = [[20], [20]]`."""
        if expr is None:
            return default
        named = expr.name if isinstance(expr, ast.Var) else expr.func if isinstance(expr, ast.Call) else None
        if named is not None and named not in INIT_NAMES and named not in INIT_FUNCTIONS:
            loc = expr.loc if isinstance(expr, ast.Var) else expr.func_loc
            raise NncError(f"unknown initializer '{named}'", loc,
                           hint=did_you_mean(named, sorted(INIT_NAMES | INIT_FUNCTIONS), "initializers")
                           or "initializers: zeros, ones, normal(mean, std), uniform(lo, hi), xavier, he, constant(v)")
        value = self.expr(expr, _Scope(prefix=""))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return Init("constant", (float(value),))
        if isinstance(value, Literal):
            return literal_init(value, f"param '{param[0]}'", param[1])
        if not isinstance(value, Init):
            raise NncError(f"initializer must be zeros, ones, normal(mean, std), uniform(lo, hi), xavier or he: "
                           f"got {value_kind(value)}", expr.loc)
        return value


    def assign(self, s: ast.Assign, scope: _Scope):
        self._check_binding_name(s.target, s.target_loc, scope)
        count = scope.bindings.get(s.target, 0) + 1
        scope.bindings[s.target] = count
        binding = s.target if count == 1 else f"{s.target}_{count}"
        label = scope.prefix + binding
        info = self._info(scope, label, "assign", s.loc)
        outer, self.stmt = self.stmt, Statement(base=label, label=label, info=info)
        try:
            value = self.expr(s.value, scope)
        finally:
            self.stmt = outer
        if isinstance(value, Values):
            if len(value) != 1:
                raise NncError(f"got 1 name, expected {len(value)} values", s.target_loc, hint=several_hint(value))
            value = value[0]
        if isinstance(s.value, ast.Var) and isinstance(value, Tensor):   # `a2 = z2`: a node under the new name
            outer, self.stmt = self.stmt, Statement(base=label, label=label, info=info)
            try:
                value = self.apply(ops.identity, [value], s.loc)
            finally:
                self.stmt = outer
            if info is not None:
                info.ops.append("=")
        scope.env[s.target] = value
        if isinstance(value, Tensor):
            self.g.values[label] = value.node
        if info is not None:
            info.type = self.g.type_of(value.node) if isinstance(value, Tensor) else None

    def unpack(self, s: ast.Unpack, scope: _Scope):
        """`a, b = EXPR`: one name per value of a block's `return a, b`, split or chunk."""
        seen = set()
        for var in s.targets:
            self._check_binding_name(var.name, var.loc, scope)
            if var.name in seen:
                raise NncError(f"name '{var.name}' is bound twice in one statement", var.loc)
            seen.add(var.name)
        labels = []
        for var in s.targets:
            count = scope.bindings.get(var.name, 0) + 1
            scope.bindings[var.name] = count
            labels.append(scope.prefix + (var.name if count == 1 else f"{var.name}_{count}"))
        label = ", ".join(labels)
        info = self._info(scope, label, "assign", s.loc)
        # Parameters made by the call are named after the first name, as `h = ...` would name them: h.weight.
        outer, self.stmt = self.stmt, Statement(base=labels[0], label=label, info=info)
        try:
            value = self.expr(s.value, scope)
        finally:
            self.stmt = outer
        items = value if isinstance(value, tuple) else (value,)
        if len(items) != len(s.targets):
            first, last = s.targets[0].loc, s.targets[-1].loc
            names = Loc(first.source, Span(first.span.line, first.span.column, last.span.end_line,
                                           last.span.end_column))
            hint = f"one name per value: {value_names(len(items))} = ..."
            if isinstance(value, Tensor):
                hint = "split(x, sizes, axis) and chunk(x, n, axis) cut a tensor into several"
            raise NncError(f"got {len(s.targets)} names, expected {len(items)} value{'s' * (len(items) != 1)}",
                           names, hint=hint)
        for var, item, name in zip(s.targets, items, labels):
            scope.env[var.name] = item
            if isinstance(item, Tensor):
                self.g.values[name] = item.node
        if info is not None:
            info.type = tuple(self.g.type_of(v.node) if isinstance(v, Tensor) else None for v in items)

    def output(self, s: ast.Output, scope: _Scope):
        if scope.block is not None:
            raise NncError("output inside a block", s.loc, hint="a block hands back its result with `return`")
        for var in s.names:
            value = self.lookup(var, scope)
            if not isinstance(value, Tensor):
                raise NncError(f"output '{var.name}' is {value_kind(value)}, expected a tensor", var.loc,
                               hint=several_hint(value))
            if var.name in self.g.outputs:
                raise NncError(f"duplicate output '{var.name}'", var.loc)
            self.g.outputs[var.name] = value.node
            info = self._info(scope, var.name, "output", var.loc)
            info.type = self.g.type_of(value.node)
            info.ops = ["output"]

    def loss(self, s: ast.LossStmt, scope: _Scope):
        if scope.block is not None:
            raise NncError("loss inside a block", s.loc, hint="declare the loss in the model")
        label = s.name or "loss"
        if self.g.loss is not None and (s.name is None or "loss" in self.g.losses):
            raise NncError("a model with several losses names each and says what it trains: this is the second "
                           "loss", s.loc, hint="loss d = ... trains disc; or add the terms into one: "
                           "loss a + 0.01 * b")
        if label in self.g.losses:
            raise NncError(f"duplicate loss '{label}'", s.loc)
        info = self._info(scope, label, "loss", s.loc)
        self.stmt = Statement(base=label, label=label, info=info)
        value = self.expr(s.value, scope)
        if isinstance(s.value, ast.Var) and isinstance(value, Tensor):   # `loss L`: the loss is a node of its own
            value = self.apply(ops.identity, [value], s.loc)
        if not isinstance(value, Tensor):
            raise NncError(f"loss is {value_kind(value)}, expected a scalar tensor", s.value.loc,
                           hint=several_hint(value))
        typ = self.g.type_of(value.node)
        if typ.shape != ():
            raise NncError(f"loss must be a scalar: got shape {format_shape(typ.shape)}, expected []",
                           s.value.loc, hint="reduce it, e.g. mean(...)")
        if not typ.is_float:
            raise NncError(f"loss must be a float scalar: got {typ}", s.value.loc)
        if self.g.loss is None:
            self.g.loss = value.node
        self.g.losses[label] = value.node
        self.g.values.setdefault(label, value.node)
        if s.name is not None:
            self.g.loss_groups[label] = tuple(v.name for v in s.trains)
            self.loss_clauses.append(s)
        info.type = typ

    # ---- expressions ------------------------------------------------------------

    def expr(self, e, scope: _Scope):
        self.depth += 1
        try:
            if self.depth > MAX_EXPR_DEPTH:
                raise NncError(f"expression nested too deeply: got more than {MAX_EXPR_DEPTH} levels counting the "
                               f"blocks it calls, expected at most {MAX_EXPR_DEPTH}", e.loc,
                               hint="split it into several statements")
            return self._expr(e, scope)
        finally:
            self.depth -= 1

    def _expr(self, e, scope: _Scope):
        if isinstance(e, ast.Number):
            return e.value
        if isinstance(e, ast.String):
            return e.value
        if isinstance(e, ast.Var):
            return self.lookup(e, scope)
        if isinstance(e, ast.ListExpr):
            return literal(tuple(self.expr(i, scope) for i in e.items), e)
        if isinstance(e, ast.Index):
            return self.index(e, scope)
        if isinstance(e, ast.Neg):
            v = self.expr(e.operand, scope)
            if isinstance(v, Literal):
                v = self.as_tensor(v)
            if isinstance(v, Tensor):
                return self.apply(ops.neg, (v,), e.loc, (e.operand.loc,), layer="neg")
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return -v
            raise NncError(f"cannot negate {value_kind(v)}", e.operand.loc, hint=several_hint(v))
        if isinstance(e, ast.BinOp):
            return self.binop(e, scope)
        if isinstance(e, ast.Call):
            return self.call(e, scope)
        raise AssertionError(f"unknown expression {e!r}")  # pragma: no cover

    def lookup(self, var: ast.Var, scope: _Scope):
        name = var.name
        if name in scope.env:
            return scope.env[name]
        if name in ("true", "True"):
            return True
        if name in ("false", "False"):
            return False
        if "." in name:
            full = scope.prefix + name
            if full in self.g.params:
                return Tensor(self.g.params[full])
            known = sorted(self.g.params)
            raise NncError(f"undefined parameter '{name}'", var.loc, hint=did_you_mean(name, known, "parameters"))
        if name in self.symbols:
            return Symbol(name)
        if name in INIT_NAMES:
            return Init(INIT_ALIASES.get(name, name))
        candidates = list(scope.env) + list(self.symbols)
        hint = did_you_mean(name, candidates, "names")
        if name in self.functions or name in self.blocks:
            hint = f"'{name}' is a function; call it as {name}(...)"
        raise NncError(f"undefined name '{name}'", var.loc, hint=hint)

    BINOPS = {"+": ops.add, "-": ops.sub, "*": ops.mul, "/": ops.div, "**": ops.pow, "@": ops.matmul}

    def binop(self, e: ast.BinOp, scope: _Scope):
        a = self.expr(e.left, scope)
        b = self.expr(e.right, scope)
        locs = (e.left.loc, e.right.loc)
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
        if numbers and e.op != "@":
            return _fold(e.op, a, b, e.loc)
        for v, loc in ((a, e.left.loc), (b, e.right.loc)):
            if not isinstance(v, (Tensor, Literal, int, float)) or isinstance(v, bool):
                raise NncError(f"'{e.op}' needs tensors or numbers: got {value_kind(v)}", loc, hint=several_hint(v))
        if e.op == "@":
            for v, loc in ((a, e.left.loc), (b, e.right.loc)):
                if not isinstance(v, (Tensor, Literal)):
                    raise NncError(f"'@' multiplies matrices: got {value_kind(v)}", loc)
        a, b = self.as_tensor(a, like=b, loc=e.left.loc), self.as_tensor(b, like=a, loc=e.right.loc)
        return self.apply(self.BINOPS[e.op], (a, b), e.loc, locs, layer=e.op)

    # ---- indexing ---------------------------------------------------------------

    def index(self, e: ast.Index, scope: _Scope):
        """`x[...]` with NumPy's basic indexing: an integer takes one position and drops the axis, a slice
        `start:stop:step` keeps it, `...` stands for the whole axes the other subscripts leave, and missing
        trailing subscripts take their axes whole. One strided_slice node (when anything is cut) and a
        reshape (when an axis is dropped)."""
        x = self.expr(e.value, scope)
        if isinstance(x, Values):
            return self._pick(x, e, scope)
        if isinstance(x, Literal):
            x = self.as_tensor(x)
        if not isinstance(x, Tensor):
            raise NncError(f"cannot index {value_kind(x)}, expected a tensor", e.value.loc)
        t = self.g.type_of(x.node)
        subs = list(e.subscripts)
        dots = [i for i, sub in enumerate(subs) if isinstance(sub, ast.EllipsisIndex)]
        if len(dots) > 1:
            raise NncError(f"an index has at most one '...': got {len(dots)}", subs[dots[1]].loc)
        given = [sub for sub in subs if not isinstance(sub, ast.EllipsisIndex)]
        if len(given) > t.rank:
            raise NncError(f"too many indices for a tensor of shape {format_shape(t.shape)}: got {len(given)}, "
                           f"expected at most {t.rank}", given[t.rank].loc,
                           hint="an index has one subscript per axis: x[i, j] for a 2-D x")
        whole = [None] * (t.rank - len(given))
        subs = subs[:dots[0]] + whole + subs[dots[0] + 1:] if dots else subs + whole
        start, step, shape, kept = [], [], [], []
        for axis, (sub, dim) in enumerate(zip(subs, t.shape)):
            if sub is None:
                first, stride, size, keep = 0, 1, dim, True
            elif isinstance(sub, ast.Slice):
                first, stride, size = self._slice(sub, axis, dim, t, scope)
                keep = True
            else:
                i = self._index_number(sub, scope)
                if isinstance(dim, str):
                    raise _symbolic_axis(axis, t, str(i), sub.loc)
                if not -dim <= i < dim:
                    raise NncError(f"index out of range for axis {axis} of {format_shape(t.shape)}: got {i}, "
                                   f"expected {-dim} to {dim - 1}", sub.loc,
                                   hint="negative indices count from the end: -1 is the last")
                first, stride, size, keep = i % dim, 1, 1, False
            start.append(first)
            step.append(stride)
            shape.append(size)
            if keep:
                kept.append(size)
        y = x
        if tuple(shape) != t.shape or any(st != 1 for st in step):
            y = self.apply(ops.strided_slice, (x,), e.loc, (e.value.loc,), layer="index", start=tuple(start),
                           step=tuple(step), shape=tuple(shape))
        if len(kept) != t.rank:
            y = self.apply(ops.reshape, (y,), e.loc, (e.value.loc,), layer="index", shape=tuple(kept))
        return y

    def _index_number(self, e, scope: _Scope) -> int:
        v = self.expr(e, scope)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        hint = None
        if isinstance(v, Tensor):
            hint = "an index is a number or a name bound to one; indexing by a tensor (gather) is not supported"
        elif isinstance(v, Symbol):
            hint = f"{v} is known only when data arrives; an index is a number"
        raise NncError(f"an index must be an integer: got {value_kind(v)}", e.loc, hint=hint)

    def _slice(self, sub: ast.Slice, axis: int, dim, t, scope: _Scope) -> tuple:
        """(first position, step, count) of `start:stop:step` along an axis of size `dim`, as Python slices
        a range: negative bounds count from the end and bounds past the ends are clipped."""
        parts = [None if p is None else self._index_number(p, scope) for p in (sub.start, sub.stop, sub.step)]
        text = ":".join("" if p is None else str(p) for p in parts[:2]) + ("" if parts[2] is None else f":{parts[2]}")
        if parts[2] == 0:
            raise NncError("slice step cannot be 0: got 0, expected a positive or negative integer", sub.step.loc)
        if isinstance(dim, str):
            if parts[0] is None and parts[1] is None and parts[2] in (None, 1):
                return 0, 1, dim
            raise _symbolic_axis(axis, t, text, sub.loc)
        taken = range(dim)[slice(*parts)]
        if not taken:
            raise NncError(f"the slice {text} selects nothing from axis {axis} of {format_shape(t.shape)}: got 0 "
                           f"positions, expected at least 1", sub.loc,
                           hint="start:stop takes the positions from start up to, not including, stop; a negative "
                                "step walks backwards, as in 3:1:-1")
        return taken.start, taken.step, len(taken)

    def _pick(self, values: Values, e: ast.Index, scope: _Scope):
        """One of several values by its position: split(x, 2)[0]."""
        sub = e.subscripts[0]
        if len(e.subscripts) != 1 or isinstance(sub, (ast.Slice, ast.EllipsisIndex)):
            got = (f"{len(e.subscripts)} subscripts" if len(e.subscripts) != 1 else
                   "a slice" if isinstance(sub, ast.Slice) else "'...'")
            raise NncError(f"{len(values)} values take one integer index: got {got}",
                           sub.loc if len(e.subscripts) == 1 else e.loc, hint=several_hint(values))
        i = self._index_number(sub, scope)
        if not -len(values) <= i < len(values):
            raise NncError(f"index out of range for {len(values)} values: got {i}, expected {-len(values)} to "
                           f"{len(values) - 1}", sub.loc)
        return values[i]

    def call(self, e: ast.Call, scope: _Scope):
        if e.func in scope.env:
            raise NncError(f"'{e.func}' is {value_kind(scope.env[e.func])}, not a function", e.func_loc)
        if e.func in self.blocks:
            return self.block_call(e, scope)
        fn = self.functions.get(e.func)
        if fn is None:
            known = list(self.functions) + list(self.blocks)
            raise NncError(f"unknown function '{e.func}'", e.func_loc, hint=did_you_mean(e.func, known, "functions"))
        args = [self.expr(a, scope) for a in e.args]
        kwargs = {}
        for kw in e.kwargs:
            if kw.name in kwargs:
                raise NncError(f"{e.func}: keyword argument '{kw.name}' given twice", kw.loc)
            kwargs[kw.name] = (self.expr(kw.value, scope), kw.value.loc)
        bound, locs = bind_arguments(e, fn, args, kwargs)
        saved = self.current_loc, self.arg_locs, self._call_name
        self.current_loc, self.arg_locs, self._call_name = e.loc, locs, e.func
        try:
            return fn(self, *bound.pop("*", ()), **bound)
        finally:
            self.current_loc, self.arg_locs, self._call_name = saved


    def returned(self, e, scope: _Scope):
        """What `return EXPR` or `return a, b` hands back: one value, or `Values` (each one value)."""
        if not isinstance(e, ast.Values):
            return self.expr(e, scope)
        items = []
        for item in e.items:
            v = self.expr(item, scope)
            if isinstance(v, Values):
                raise NncError(f"return: each item is one value: got {value_kind(v)}", item.loc, hint=several_hint(v))
            items.append(v)
        return Values(items)

    def block_call(self, e: ast.Call, scope: _Scope):
        block = self.blocks[e.func]
        if e.func in self.call_stack:
            chain = " -> ".join(self.call_stack[self.call_stack.index(e.func):] + [e.func])
            raise NncError(f"block '{e.func}' calls itself ({chain})", e.func_loc,
                           hint="blocks are expanded when the model is built, so they cannot recurse")
        if len(self.call_stack) >= MAX_CALL_DEPTH:
            raise NncError(f"blocks nested too deeply: got more than {MAX_CALL_DEPTH} levels, expected at most "
                           f"{MAX_CALL_DEPTH}", e.func_loc, hint=" -> ".join(self.call_stack + [e.func]))
        names = [p.name for p in block.params]
        if len(e.args) > len(names):
            raise NncError(f"{e.func}: too many arguments: got {len(e.args)}, expected {len(names)} "
                           f"({', '.join(names)})", e.args[len(names)].loc)
        inner = _Scope(prefix="", block=e.func)
        for p, a in zip(block.params, e.args):
            inner.env[p.name] = self.expr(a, scope)
        named = None  # name="disc": the parameters' prefix, as for layers; a name already made shares them
        for kw in e.kwargs:
            if kw.name == "name" and "name" not in names:
                if named is not None:
                    raise NncError(f"{e.func}: argument 'name' given twice", kw.loc)
                named = self.expr(kw.value, scope)
                if not isinstance(named, str) or isinstance(named, Symbol) or not PARAM_NAME.fullmatch(named):
                    raise NncError(f'{e.func}: name must be a name such as "encoder": got '
                                   f'{value_kind(named) if not isinstance(named, str) else repr(named)}',
                                   kw.value.loc, hint="letters, digits and _, dots between parts, in quotes")
                continue
            if kw.name not in names:
                raise NncError(f"{e.func}: unknown keyword argument '{kw.name}'", kw.loc,
                               hint=did_you_mean(kw.name, names, "parameters"))
            if kw.name in inner.env:
                raise NncError(f"{e.func}: argument '{kw.name}' given twice", kw.loc)
            inner.env[kw.name] = self.expr(kw.value, scope)
        missing = [n for n in names if n not in inner.env]
        if missing:
            raise NncError(f"{e.func}: missing argument '{missing[0]}'", e.loc,
                           hint=f"{e.func} takes ({', '.join(names)})")
        inner.prefix = self.claim_prefix(e.func, named) + "."
        before = len(self.g.params)
        self.call_stack.append(e.func)
        outer = self.stmt
        outermost = self.call_stmt is None   # nodes of nested calls belong to the model statement too
        if outermost:
            self.call_stmt = outer.label if outer is not None else None
        try:
            with self.application(e.func, inner.prefix[:-1], named is not None, e.loc):
                result = None
                for i, s in enumerate(block.body):
                    if isinstance(s, ast.Return):
                        if i != len(block.body) - 1:
                            raise NncError("statements after return are never run", block.body[i + 1].loc)
                        self.stmt = Statement(base=inner.prefix.rstrip("."), label=inner.prefix + "return", info=None)
                        result = self.returned(s.value, inner)
                    else:
                        self.statement(s, inner)
                if result is None:
                    raise NncError(f"block '{e.func}' has no return", block.name_loc,
                                   hint="end the block with `return EXPR`")
        except NncError as err:  # say which call of the block went wrong (unless the error points at it)
            if err.loc is not e.loc:
                err.notes.append(f"in block '{e.func}' called at {e.loc.span}")
            raise
        finally:
            self.call_stack.pop()
            self.stmt = outer
            if outermost:
                self.call_stmt = None
        if len(self.g.params) == before and outer is not None and named is None:
            outer.param_calls -= 1  # a block without parameters claims no name
        if outer is not None and outer.info is not None:
            if not outer.info.ops or outer.info.ops[-1] != e.func:
                outer.info.ops.append(e.func)
            outer.info.params.extend(list(self.g.params)[before:])
        return result


def _symbolic_axis(axis: int, t, text: str, loc: Loc) -> NncError:
    dim = t.shape[axis]
    return NncError(f"axis {axis} of {format_shape(t.shape)} is the symbolic dim {dim}, which can only be taken "
                    f"whole: got {text}, expected ':'", loc,
                    hint=f"{dim} is known only when data arrives, so nnc cannot check a position along it")


def _fold(op: str, a, b, loc: Loc):
    """Arithmetic on two numbers, kept to int64 and finite floats as the parser keeps literals."""
    try:
        if op == "+":
            result = a + b
        elif op == "-":
            result = a - b
        elif op == "*":
            result = a * b
        elif op == "/":
            result = a / b
        elif op == "**":
            if isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1 and b * math.log2(abs(a)) > 64:
                raise OverflowError  # do not compute a number with billions of digits first
            result = a ** b
            if isinstance(result, complex):
                raise NncError(f"{a} ** {b} is not a real number", loc)
        else:  # pragma: no cover
            raise AssertionError(op)
    except ZeroDivisionError:
        raise NncError(f"division by zero in {a} {op} {b}", loc) from None
    except OverflowError:
        result = math.inf
    if isinstance(result, int) and not INT64[0] <= result <= INT64[1]:
        raise NncError(f"{a} {op} {b} overflows: got {result:.3g}, expected an integer of at most {INT64[1]}", loc,
                       hint="write a large real number as a float, such as 1e20")
    if isinstance(result, float) and not math.isfinite(result):
        raise NncError(f"{a} {op} {b} overflows: got a result beyond ±{sys.float_info.max:.4g}, expected a finite "
                       f"number", loc)
    return result


def build(program: ast.Program, model: ast.Model, *, training: bool = False) -> Graph:
    return Builder(program, model, training=training).build()
