"""Building: the AST of one model -> a Graph of primitive ops, shapes inferred as it goes.

Owns name resolution (scopes, blocks, rebinding), parameter naming, the
binding of call arguments to layer signatures and the located errors for all
of these. What each function does is in nnc/layers.py.
"""

from __future__ import annotations

import difflib
import inspect
import math
import re
import sys
from dataclasses import dataclass, field

import numpy as np

from .. import limits
from ..errors import Loc, NncError, ShapeError
from ..ir import ops
from ..ir.graph import Graph
from ..ir.initializer import Init
from ..ir.types import DTYPE_NAMES, TensorType, format_shape
from . import ast

# Bounds on the builder's recursion (nnc/syntax.py bounds one expression to 100 levels): an expression
# level costs up to 4 Python frames and a block call 6 more, so these stay within Python's default
# recursion limit of 1000 with room for the caller's own frames (tests/test_fuzz.py measures it).
MAX_CALL_DEPTH = 16
MAX_EXPR_DEPTH = 150
RESERVED = {"true", "false", "True", "False"}
PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")  # the grammar's NAME: name="enc"


class Tensor:
    """A value of the model: a graph node."""

    __slots__ = ("node",)

    def __init__(self, node: int):
        self.node = node


class Symbol(str):
    """A symbolic dim (`B`) used as a value, e.g. in reshape(x, [B, 784])."""


# Argument kinds of layer signatures; bind_arguments reads them from the annotations.
TensorLike = Tensor | float  # a number becomes a scalar constant
Tensors = tuple              # a list of tensors: concat([a, b])
Dims = tuple                 # numbers and symbols: reshape(x, [B, 784])
Ints = tuple
Axis = int | tuple | None
Size = int | tuple           # 3 or [3, 5]


INIT_NAMES = {"zeros", "ones", "xavier", "he", "glorot", "kaiming"}
INIT_ALIASES = {"glorot": "xavier", "kaiming": "he"}
INIT_FUNCTIONS = {"normal", "uniform", "constant"}  # the initializers called with arguments (nnc/layers.py)


@dataclass
class StatementInfo:
    """One row of `nnc check`'s summary."""

    label: str
    kind: str  # input, param, assign, output, loss
    ops: list = field(default_factory=list)
    type: TensorType | None = None
    params: list = field(default_factory=list)  # parameter names created
    loc: Loc | None = None


@dataclass
class _Scope:
    prefix: str  # "" in the model, "r1." inside a block called as r1 = ...
    env: dict = field(default_factory=dict)
    declared: dict = field(default_factory=dict)  # name -> ("input" | "param", Loc)
    bindings: dict = field(default_factory=dict)  # name -> times bound
    block: str | None = None


@dataclass
class _Stmt:
    base: str  # parameter-name base for calls in this statement
    label: str
    info: StatementInfo | None
    param_calls: int = 0
    used: set = field(default_factory=set)


def value_kind(v) -> str:
    if isinstance(v, Tensor):
        return "a tensor"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, Symbol):
        return f"the dim {v}"
    if isinstance(v, (int, float)):
        return f"the number {v}"
    if isinstance(v, Init):
        return f"the initializer {v}"
    if isinstance(v, tuple):
        return "a list"
    if isinstance(v, str):
        return f'the string "{v}"'
    return type(v).__name__


class Builder:
    def __init__(self, program: ast.Program, model: ast.Model, *, training: bool = False):
        from . import layers  # the function table; imported late to avoid a cycle

        self.program = program
        self.model = model
        self.functions = layers.FUNCTIONS
        self.blocks = {}
        for b in program.blocks:
            if b.name in self.blocks:
                raise NncError(f"block '{b.name}' is defined twice (first at {self.blocks[b.name].name_loc.span})",
                               b.name_loc)
            if b.name in self.functions:
                raise NncError(f"block '{b.name}' has the name of a built-in function", b.name_loc,
                               hint="choose another name for the block")
            self.blocks[b.name] = b
        self.g = Graph(model=model.name, source=program.source, training=training)
        self.symbols: set[str] = set()
        self.call_stack: list[str] = []
        self.stmt: _Stmt | None = None
        self.depth = 0
        self.current_loc: Loc | None = None
        self.arg_locs: tuple = ()

    # ---- top level ------------------------------------------------------------

    def build(self) -> Graph:
        scope = _Scope(prefix="")
        for s in self.model.body:
            self.statement(s, scope)
        if not self.g.outputs and self.g.loss is None:
            raise NncError(f"model '{self.model.name}' has no output and no loss", self.model.name_loc,
                           hint="add `output NAME` for what the model computes")
        return self.g

    def statement(self, s, scope: _Scope):
        if isinstance(s, ast.InputDecl):
            return self.input_decl(s, scope)
        if isinstance(s, ast.ParamDecl):
            return self.param_decl(s, scope)
        if isinstance(s, ast.Assign):
            return self.assign(s, scope)
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
        self.stmt = _Stmt(base=s.name, label=s.name, info=info)
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
        self.stmt = _Stmt(base=full, label=full, info=info)
        init = self.initializer(s.init, default=Init("xavier" if typ.rank >= 2 else "zeros"))
        node = self.new_param(full, typ, init, s.name_loc)
        scope.env[s.name] = Tensor(node)
        self.g.values[full] = node
        scope.declared[s.name] = ("param", s.name_loc)
        if info:
            info.type = typ
            info.ops = ["param"]

    def initializer(self, expr, default: Init) -> Init:
        if expr is None:
            return default
        named = expr.name if isinstance(expr, ast.Var) else expr.func if isinstance(expr, ast.Call) else None
        if named is not None and named not in INIT_NAMES and named not in INIT_FUNCTIONS:
            loc = expr.loc if isinstance(expr, ast.Var) else expr.func_loc
            raise NncError(f"unknown initializer '{named}'", loc,
                           hint=_did_you_mean(named, sorted(INIT_NAMES | INIT_FUNCTIONS), "initializers")
                           or "initializers: zeros, ones, normal(mean, std), uniform(lo, hi), xavier, he, constant(v)")
        value = self.expr(expr, _Scope(prefix=""))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return Init("constant", (float(value),))
        if not isinstance(value, Init):
            raise NncError(f"initializer must be zeros, ones, normal(mean, std), uniform(lo, hi), xavier or he: "
                           f"got {value_kind(value)}", expr.loc)
        return value

    def new_param(self, name: str, typ: TensorType, init: Init, loc: Loc, trainable: bool = True) -> int:
        if name in self.g.params:
            first = self.g.nodes[self.g.params[name]]["loc"]
            raise NncError(f"duplicate parameter name '{name}'" + (f" (first made at {first.span})" if first else ""),
                           loc, hint="give the layer another name= or assign it to another variable")
        what = f"{self._call_name}: the {name.rsplit('.', 1)[-1]}" if self._call_name else f"param '{name}'"
        symbolic = [d for d in typ.shape if not isinstance(d, int)]
        if symbolic:  # e.g. batchnorm over a transposed [784, B]: its "channels" are the batch
            raise NncError(f"{what} would have shape {format_shape(typ.shape)}: got the symbolic dim {symbolic[0]}, "
                           f"expected numbers", loc, hint=f"parameter sizes are fixed when the model is built, "
                                                          f"{symbolic[0]} only when it runs")
        top = float(np.finfo(typ.dtype).max)
        if _init_reach(init) > top:  # the values would be inf or nan
            raise NncError(f"{what}: the initializer {init} gives values beyond ±{top:.4g}: got up to "
                           f"{_init_reach(init):.4g}, expected a {DTYPE_NAMES.get(typ.dtype, typ.dtype)} number", loc)
        self.param_bytes += self._check_size(what, typ, loc, hint="make the layer smaller" if self._call_name else None)
        if self.param_bytes > limits.memory_limit():
            raise NncError(f"the parameters would take {limits.format_bytes(self.param_bytes)} with '{name}', "
                           f"expected at most {limits.limit_text()} in all", loc, hint="make the model smaller")
        node = self.g.add_op(ops.param, (), {"name": name, "type": typ, "init": init, "trainable": trainable},
                             type=typ, loc=loc, stmt=self.stmt.label if self.stmt else name, layer="param")
        self.g.params[name] = node
        if self.stmt and self.stmt.info is not None:
            self.stmt.info.params.append(name)
        return node

    def assign(self, s: ast.Assign, scope: _Scope):
        self._check_binding_name(s.target, s.target_loc, scope)
        count = scope.bindings.get(s.target, 0) + 1
        scope.bindings[s.target] = count
        binding = s.target if count == 1 else f"{s.target}_{count}"
        label = scope.prefix + binding
        info = self._info(scope, label, "assign", s.loc)
        outer, self.stmt = self.stmt, _Stmt(base=label, label=label, info=info)
        try:
            value = self.expr(s.value, scope)
        finally:
            self.stmt = outer
        scope.env[s.target] = value
        if isinstance(value, Tensor):
            self.g.values[label] = value.node
        if info is not None:
            info.type = self.g.type_of(value.node) if isinstance(value, Tensor) else None

    def output(self, s: ast.Output, scope: _Scope):
        if scope.block is not None:
            raise NncError("output inside a block", s.loc, hint="a block hands back its result with `return`")
        for var in s.names:
            value = self.lookup(var, scope)
            if not isinstance(value, Tensor):
                raise NncError(f"output '{var.name}' is {value_kind(value)}, expected a tensor", var.loc)
            if var.name in self.g.outputs:
                raise NncError(f"duplicate output '{var.name}'", var.loc)
            self.g.outputs[var.name] = value.node
            info = self._info(scope, var.name, "output", var.loc)
            info.type = self.g.type_of(value.node)
            info.ops = ["output"]

    def loss(self, s: ast.LossStmt, scope: _Scope):
        if scope.block is not None:
            raise NncError("loss inside a block", s.loc, hint="declare the loss in the model")
        if self.g.loss is not None:
            raise NncError("a model has one loss; this is the second", s.loc,
                           hint="add the terms into one expression: loss a + 0.01 * b")
        info = self._info(scope, "loss", "loss", s.loc)
        self.stmt = _Stmt(base="loss", label="loss", info=info)
        value = self.expr(s.value, scope)
        if not isinstance(value, Tensor):
            raise NncError(f"loss is {value_kind(value)}, expected a scalar tensor", s.value.loc)
        typ = self.g.type_of(value.node)
        if typ.shape != ():
            raise NncError(f"loss must be a scalar: got shape {format_shape(typ.shape)}, expected []",
                           s.value.loc, hint="reduce it, e.g. mean(...)")
        if not typ.is_float:
            raise NncError(f"loss must be a float scalar: got {typ}", s.value.loc)
        self.g.loss = value.node
        self.g.values.setdefault("loss", value.node)
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
            return tuple(self.expr(i, scope) for i in e.items)
        if isinstance(e, ast.Neg):
            v = self.expr(e.operand, scope)
            if isinstance(v, Tensor):
                return self.apply(ops.neg, (v,), e.loc, (e.operand.loc,), layer="neg")
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return -v
            raise NncError(f"cannot negate {value_kind(v)}", e.operand.loc)
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
            raise NncError(f"undefined parameter '{name}'", var.loc, hint=_did_you_mean(name, known, "parameters"))
        if name in self.symbols:
            return Symbol(name)
        if name in INIT_NAMES:
            return Init(INIT_ALIASES.get(name, name))
        candidates = list(scope.env) + list(self.symbols)
        hint = _did_you_mean(name, candidates, "names")
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
            if not isinstance(v, (Tensor, int, float)) or isinstance(v, bool):
                raise NncError(f"'{e.op}' needs tensors or numbers: got {value_kind(v)}", loc)
        if e.op == "@":
            for v, loc in ((a, e.left.loc), (b, e.right.loc)):
                if not isinstance(v, Tensor):
                    raise NncError(f"'@' multiplies matrices: got {value_kind(v)}", loc)
        a, b = self.as_tensor(a, like=b, loc=e.left.loc), self.as_tensor(b, like=a, loc=e.right.loc)
        return self.apply(self.BINOPS[e.op], (a, b), e.loc, locs, layer=e.op)

    def as_tensor(self, v, like=None, loc: Loc | None = None) -> Tensor:
        """Numbers become scalar constants in the dtype of the tensor they meet."""
        if isinstance(v, Tensor):
            return v
        loc = loc or self.current_loc  # a number handed to a layer function: point at the call
        dtype = self.g.type_of(like.node).dtype if isinstance(like, Tensor) else "float32"
        if dtype == "int32" and not float(v).is_integer():
            raise NncError(f"the number {v} meets an int tensor; expected a float tensor", loc,
                           hint="int tensors hold class labels")
        value = int(v) if dtype == "int32" else float(v)
        info = np.iinfo(np.int32) if dtype == "int32" else np.finfo(dtype)
        if not float(info.min) <= value <= float(info.max):  # np.asarray would overflow or make it inf
            raise NncError(f"the number {v:g} does not fit {DTYPE_NAMES.get(dtype, dtype)} tensors: got {v:g}, "
                           f"expected {info.min:g} to {info.max:g}", loc,
                           hint="declare the tensors f64 to compute with numbers this large" if dtype == "float32"
                           else None)
        typ = TensorType((), dtype)
        node = self.g.add_op(ops.const, (), {"value": value, "type": typ}, type=typ, loc=loc,
                             stmt=self.stmt.label if self.stmt else None, layer="const")
        return Tensor(node)

    param_bytes = 0  # of the parameters made so far

    def _check_size(self, what: str, typ: TensorType, loc: Loc | None, hint: str | None = None) -> int:
        """The bytes a tensor of `typ` takes; a located error if that is over the memory limit (nnc/limits.py)."""
        size = limits.tensor_bytes(typ)
        if size > limits.memory_limit():
            per = " per example" if any(isinstance(d, str) for d in typ.shape) else ""
            raise NncError(f"{what} {format_shape(typ.shape)} would take {limits.format_bytes(size)}{per}, "
                           f"expected at most {limits.limit_text()}", loc, hint=hint)
        return size

    def apply(self, op: ops.Op, operands, loc: Loc, operand_locs=(), layer: str | None = None, **attrs) -> Tensor:
        """Add a primitive node; a shape error points at the operand at fault."""
        try:
            node = self.g.add_op(op, [t.node for t in operands], attrs, loc=loc,
                                 stmt=self.stmt.label if self.stmt else None, layer=layer or op.name)
        except ShapeError as err:
            where = loc
            if err.operand is not None and err.operand < len(operand_locs) and operand_locs[err.operand]:
                where = operand_locs[err.operand]
            raise NncError(err.message, where, err.hint) from None
        name = layer or op.name
        self._check_size(f"{name if name.isidentifier() else repr(name)}: the result", self.g.type_of(node), loc)
        if self.stmt and self.stmt.info is not None and layer and (not self.stmt.info.ops or self.stmt.info.ops[-1] != layer):
            if op is not ops.const:
                self.stmt.info.ops.append(layer)
        return Tensor(node)

    # ---- calls ------------------------------------------------------------------------

    def call(self, e: ast.Call, scope: _Scope):
        if e.func in scope.env:
            raise NncError(f"'{e.func}' is {value_kind(scope.env[e.func])}, not a function", e.func_loc)
        if e.func in self.blocks:
            return self.block_call(e, scope)
        fn = self.functions.get(e.func)
        if fn is None:
            known = list(self.functions) + list(self.blocks)
            raise NncError(f"unknown function '{e.func}'", e.func_loc, hint=_did_you_mean(e.func, known, "functions"))
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

    _call_name: str | None = None

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
        for kw in e.kwargs:
            if kw.name not in names:
                raise NncError(f"{e.func}: unknown keyword argument '{kw.name}'", kw.loc,
                               hint=_did_you_mean(kw.name, names, "parameters"))
            if kw.name in inner.env:
                raise NncError(f"{e.func}: argument '{kw.name}' given twice", kw.loc)
            inner.env[kw.name] = self.expr(kw.value, scope)
        missing = [n for n in names if n not in inner.env]
        if missing:
            raise NncError(f"{e.func}: missing argument '{missing[0]}'", e.loc,
                           hint=f"{e.func} takes ({', '.join(names)})")
        inner.prefix = self.claim_prefix(e.func, None) + "."
        before = len(self.g.params)
        self.call_stack.append(e.func)
        outer = self.stmt
        try:
            result = None
            for i, s in enumerate(block.body):
                if isinstance(s, ast.Return):
                    if i != len(block.body) - 1:
                        raise NncError("statements after return are never run", block.body[i + 1].loc)
                    self.stmt = _Stmt(base=inner.prefix.rstrip("."), label=inner.prefix + "return", info=None)
                    result = self.expr(s.value, inner)
                else:
                    self.statement(s, inner)
            if result is None:
                raise NncError(f"block '{e.func}' has no return", block.name_loc,
                               hint="end the block with `return EXPR`")
        except NncError as err:  # say which call of the block went wrong
            err.notes.append(f"in block '{e.func}' called at {e.loc.span}")
            raise
        finally:
            self.call_stack.pop()
            self.stmt = outer
        if len(self.g.params) == before and outer is not None:
            outer.param_calls -= 1  # a block without parameters claims no name
        if outer is not None and outer.info is not None:
            if not outer.info.ops or outer.info.ops[-1] != e.func:
                outer.info.ops.append(e.func)
            outer.info.params.extend(list(self.g.params)[before:])
        return result

    def claim_prefix(self, op: str, explicit: str | None) -> str:
        """The parameter-name prefix of a parametric call in the current statement."""
        st = self.stmt
        if explicit is not None:
            return explicit
        if st is None or not st.base:
            base = op
        elif st.param_calls == 0:
            base = st.base
        else:
            base = f"{st.base}.{op}"
            k = 2
            while base in st.used:
                base = f"{st.base}.{op}_{k}"
                k += 1
        if st is not None:
            st.param_calls += 1
            st.used.add(base)
        return base

    # ---- the facade layer functions use ------------------------------------------

    @property
    def training(self) -> bool:
        return self.g.training

    def type(self, t: Tensor) -> TensorType:
        return self.g.type_of(t.node)

    def op(self, op: ops.Op, *operands, layer: str | None = None, **attrs) -> Tensor:
        """A primitive inside the current call; shape errors point at the call."""
        return self.apply(op, operands, self.current_loc, (), layer=layer or self._call_name, **attrs)

    def prim(self, op: ops.Op, *operands, **attrs) -> Tensor:
        """A primitive called directly by the user: operand i is argument i."""
        return self.apply(op, operands, self.current_loc, self.arg_locs, layer=self._call_name, **attrs)

    def const(self, value, like: Tensor | None = None) -> Tensor:
        return self.as_tensor(value, like=like, loc=self.current_loc)

    def error(self, message: str, arg: int | None = None, hint: str | None = None) -> NncError:
        """A located error about the current call, pointing at argument `arg` when given."""
        loc = self.current_loc
        if arg is not None and arg < len(self.arg_locs) and self.arg_locs[arg]:
            loc = self.arg_locs[arg]
        return NncError(f"{self._call_name}: {message}", loc, hint)

    def params_for(self, name: str | None, specs) -> dict:
        """Create the parameters of the current layer call: specs = [(pname, TensorType, Init, trainable)]."""
        if name is not None and not PARAM_NAME.fullmatch(name):
            raise self.error(f'name must be a name such as "encoder": got "{name}"',
                             hint="letters, digits and _, dots between parts; checkpoints and h1.weight use it")
        prefix = self.claim_prefix(self._call_name, name)
        out = {}
        for pname, typ, init, trainable in specs:
            out[pname] = Tensor(self.new_param(f"{prefix}.{pname}", typ, init, self.current_loc, trainable))
        return out


INT64 = (-2**63, 2**63 - 1)


def _init_reach(init: Init) -> float:
    """The largest magnitude an initializer gives (ten standard deviations for normal)."""
    a = [abs(float(x)) for x in init.args]
    if init.kind == "normal":
        return a[0] + 10 * a[1]
    if init.kind == "uniform":
        return max(a[0], a[1], float(init.args[1]) - float(init.args[0]))
    return max(a, default=0.0)


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


def _did_you_mean(name: str, candidates, what: str) -> str | None:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


# ---- argument binding -----------------------------------------------------------------


def _accepts(kind: str, v) -> bool:
    number = isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind == "Tensor":
        return isinstance(v, Tensor)
    if kind == "TensorLike":
        return isinstance(v, Tensor) or number
    if kind == "int":  # 3.0 is an int; 1e308 is not, nor anything past int64
        return isinstance(v, int) and not isinstance(v, bool) or isinstance(v, float) and v.is_integer() \
            and abs(v) <= INT64[1]
    if kind == "float":
        return number
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "Init":
        return isinstance(v, Init) or number
    if kind == "str":
        return isinstance(v, str) and not isinstance(v, Symbol)
    if kind == "Tensors":
        return isinstance(v, tuple) and all(isinstance(i, Tensor) for i in v)
    if kind == "Dims":
        return isinstance(v, tuple) and all(isinstance(i, (int, Symbol)) and not isinstance(i, bool) for i in v)
    if kind == "Ints":
        return (isinstance(v, tuple) and all(isinstance(i, int) and not isinstance(i, bool) for i in v))
    if kind == "Axis":
        return v is None or _accepts("int", v) or _accepts("Ints", v)
    if kind == "Size":
        return _accepts("int", v) or (_accepts("Ints", v) and len(v) == 2)
    raise AssertionError(kind)


_KIND_TEXT = {
    "Tensor": "a tensor", "TensorLike": "a tensor or a number", "int": "an integer", "float": "a number",
    "bool": "true or false", "Init": "an initializer", "str": "a string", "Tensors": "a list of tensors",
    "Dims": "a list of dims", "Ints": "a list of integers", "Axis": "an axis or a list of axes",
    "Size": "an integer or [height, width]",
}


def _coerce(kind: str, v):
    if kind == "int" and isinstance(v, float):
        return int(v)
    if kind == "float" and isinstance(v, int):
        return float(v)
    if kind == "Init" and not isinstance(v, Init):
        return Init("constant", (float(v),))
    if kind in ("Axis", "Size") and isinstance(v, float):  # both accept a whole float as an int: kernel 3.0
        return int(v)
    return v


def bind_arguments(call: ast.Call, fn, args: list, kwargs: dict):
    """Bind a call's values to a layer function's signature, checking kinds.

    The signature (after the builder argument) is read from the function:
    annotations name the accepted kinds, defaults make arguments optional and
    `*rest` takes any number of tensors.
    """
    params = list(inspect.signature(fn).parameters.values())[1:]
    positional = [p for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    variadic = next((p for p in params if p.kind is p.VAR_POSITIONAL), None)
    bound = {}
    name = call.func
    if variadic is None and len(args) > len(positional):
        raise NncError(f"{name}: too many arguments: got {len(args)}, expected at most {len(positional)} "
                       f"({', '.join(p.name for p in positional)})", call.args[len(positional)].loc)
    for i, (p, v) in enumerate(zip(positional, args)):
        bound[p.name] = (v, call.args[i].loc)
    rest = args[len(positional):]
    by_name = {p.name: p for p in params if p.kind is not p.VAR_POSITIONAL}
    kwarg_locs = {kw.name: kw.loc for kw in call.kwargs}  # `pad=1` as a whole, for errors about the keyword
    for key, (v, loc) in kwargs.items():
        if key not in by_name:
            raise NncError(f"{name}: unknown keyword argument '{key}'", kwarg_locs.get(key, loc),
                           hint=_did_you_mean(key, list(by_name), "arguments")
                           or f"{name} takes ({', '.join(by_name)})")
        if key in bound:
            raise NncError(f"{name}: argument '{key}' given twice", kwarg_locs.get(key, loc),
                           hint=f"it is also argument {[p.name for p in positional].index(key) + 1} by position")
        bound[key] = (v, loc)
    result = {}
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            continue
        if p.name not in bound:
            if p.default is inspect.Parameter.empty:
                raise NncError(f"{name}: missing argument '{p.name}'", call.loc,
                               hint=f"{name} takes ({', '.join(q.name for q in positional)})")
            result[p.name] = p.default
            continue
        v, loc = bound[p.name]
        kind = p.annotation
        if not _accepts(kind, v) and not (v is None and p.default is None):
            raise NncError(f"{name}: {p.name} must be {_KIND_TEXT[kind]}, got {value_kind(v)}", loc)
        result[p.name] = _coerce(kind, v)
    if variadic is not None:
        for i, v in enumerate(rest):
            if not _accepts(variadic.annotation, v):
                raise NncError(f"{name}: argument {len(positional) + i + 1} must be "
                               f"{_KIND_TEXT[variadic.annotation]}, got {value_kind(v)}",
                               call.args[len(positional) + i].loc)
        result["*"] = tuple(rest)
    # argument locations by positional index, keyword arguments included
    locs = [a.loc for a in call.args]
    kw_order = {p.name: i for i, p in enumerate(positional)}
    for key, (v, loc) in kwargs.items():
        if key in kw_order:
            while len(locs) <= kw_order[key]:
                locs.append(None)
            locs[kw_order[key]] = loc
    return result, tuple(locs)


def build(program: ast.Program, model: ast.Model, *, training: bool = False) -> Graph:
    return Builder(program, model, training=training).build()
