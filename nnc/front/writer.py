"""What layer functions see while a model is built: `GraphWriter`, which adds nodes and parameters.

Every node it adds is located at the call being built (a shape error points
at the argument at fault), belongs to the current statement, and is counted
against the memory limit; parameters are named `<statement>.<param>` (or by the
call's `name=`), checked and initialized by their `Init`. Each application of a
layer or block is a `Use` of its parameter prefix; a later call that names that
prefix with `name=` applies the same layer again and shares its parameters, which
must come out the same. The AST walk that drives it is nnc/front/builder.py.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from .. import limits
from ..errors import Loc, NncError, ShapeError
from ..ir import ops
from ..ir.graph import Graph, StatementInfo
from ..ir.initializer import Init
from ..ir.types import DTYPE_NAMES, TensorType, format_shape
from .values import Literal, Tensor, literal_mismatch

PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")  # the grammar's NAME: name="enc"


@dataclass
class Statement:
    """The statement being built: how its calls name their parameters."""

    base: str  # parameter-name base for calls in this statement
    label: str
    info: StatementInfo | None
    param_calls: int = 0
    used: set = field(default_factory=set)


@dataclass
class Use:
    """One application of a layer or block whose parameters share a prefix (`h1` of h1.weight)."""

    what: str          # the function or block applied: dense, disc
    prefix: str
    loc: Loc | None    # the call
    first: Use | None  # the earlier application this one repeats (name= of a prefix already made), or None
    params: dict = field(default_factory=dict)  # every parameter it asked for: name -> (TensorType, Init, trainable)


class GraphWriter:
    """Adds the primitive nodes and parameters of the calls being built to the graph `g`."""

    def __init__(self, g: Graph):
        self.g = g
        self.stmt: Statement | None = None       # the statement being built
        self.call_stmt: str | None = None         # inside a block call: the model's statement that called it
        self.current_loc: Loc | None = None  # the call being built
        self.arg_locs: tuple = ()            # its arguments', by position
        self._call_name: str | None = None   # the function it calls
        self.param_bytes = 0                 # of the parameters made so far
        self.uses: dict[str, Use] = {}       # parameter prefix -> the application that made it
        self.applying: list[Use] = []        # the applications being built, outermost first

    def as_tensor(self, v, like=None, loc: Loc | None = None) -> Tensor:
        """Numbers become scalar constants, and lists of numbers (`Literal`s) constant tensors, in the dtype
        of the tensor they meet (float32 when they meet none)."""
        if isinstance(v, Tensor):
            return v
        loc = loc or self.current_loc  # a number handed to a layer function: point at the call
        dtype = self.g.type_of(like.node).dtype if isinstance(like, Tensor) else "float32"
        written = np.asarray(v, dtype=np.float64)
        if isinstance(v, Literal):
            loc = v.loc
        listed = f"the list {format_shape(written.shape)}"
        if dtype == "int32":
            fractional = written[written != np.round(written)]
            if fractional.size:
                raise NncError((f"the number {v}" if written.ndim == 0 else f"{listed} (holding {fractional[0]:g})") +
                               " meets an int tensor; expected a float tensor", loc,
                               hint="int tensors hold class labels")
        info = np.iinfo(np.int32) if dtype == "int32" else np.finfo(dtype)
        beyond = written[(written < float(info.min)) | (written > float(info.max))]
        if beyond.size:  # np.asarray would overflow or make it inf
            raise NncError(f"{f'the number {v:g}' if written.ndim == 0 else listed} does not fit "
                           f"{DTYPE_NAMES.get(dtype, dtype)} tensors: got {beyond[0]:g}, expected {info.min:g} to "
                           f"{info.max:g}", loc,
                           hint="declare the tensors f64 to compute with numbers this large" if dtype == "float32"
                           else None)
        if written.ndim == 0:
            value = int(v) if dtype == "int32" else float(v)
        else:
            value = written.astype(np.int32 if dtype == "int32" else dtype)
        typ = TensorType(written.shape, dtype)
        self._check_size("the list", typ, loc)
        node = self.g.add_op(ops.const, (), {"value": value, "type": typ}, type=typ, loc=loc,
                             stmt=self.stmt.label if self.stmt else None, call=self.call_stmt, layer="const")
        return Tensor(node)

    def _check_size(self, what: str, typ: TensorType, loc: Loc | None, hint: str | None = None) -> int:
        """The bytes a tensor of `typ` takes; a located error if that is over the memory limit (nnc/limits.py)."""
        size = limits.tensor_bytes(typ)
        if size > limits.memory_limit():
            per = " per example" if any(isinstance(d, str) for d in typ.shape) else ""
            raise NncError(f"{what} {format_shape(typ.shape)} would take {limits.format_bytes(size)}{per}, "
                           f"expected at most {limits.limit_text()}", loc, hint=hint)
        return size

    def note_layer(self, name: str) -> None:
        """Record in the statement's summary a layer that adds no node in this form of the model (dropout
        in evaluation: it still shows in `nnc check` and the diagrams, marked)."""
        info = self.stmt.info if self.stmt else None
        if info is not None and (not info.ops or info.ops[-1] != name):
            info.ops.append(name)

    def apply(self, op: ops.Op, operands, loc: Loc, operand_locs=(), layer: str | None = None, **attrs) -> Tensor:
        """Add a primitive node; a shape error points at the operand at fault."""
        try:
            node = self.g.add_op(op, [t.node for t in operands], attrs, loc=loc,
                                 stmt=self.stmt.label if self.stmt else None, call=self.call_stmt,
                                 layer=layer or op.name)
        except ShapeError as err:
            where = loc
            if err.operand is not None and err.operand < len(operand_locs) and operand_locs[err.operand]:
                where = operand_locs[err.operand]
            raise NncError(err.message, where, err.hint) from None
        name = layer or op.name
        self._check_size(f"{name if name.isidentifier() else repr(name)}: the result", self.g.type_of(node), loc)
        info = self.stmt.info if self.stmt else None
        if info is not None and layer and op is not ops.const and (not info.ops or info.ops[-1] != layer):
            info.ops.append(layer)
        return Tensor(node)

    # ---- parameters --------------------------------------------------------------------

    def new_param(self, name: str, typ: TensorType, init: Init, loc: Loc, trainable: bool = True) -> int:
        """The parameter `name`: made here, or, inside a repeated application, the one its first made."""
        for use in self.applying:
            use.params[name] = (typ, init, trainable)
        repeats = [use for use in self.applying if use.first is not None]
        if repeats:
            return self._shared_param(name, typ, init, trainable, repeats[-1])
        if name in self.g.params:
            first = self.g.nodes[self.g.params[name]]["loc"]
            hint = "give the layer another name= or assign it to another variable"
            if self.applying:
                hint += f'; name="{self.applying[-1].prefix}" on this call would share the parameters made first'
            raise NncError(f"duplicate parameter name '{name}'" + (f" (first made at {first.span})" if first else ""),
                           loc, hint=hint)
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
                             type=typ, loc=loc, stmt=self.stmt.label if self.stmt else name, call=self.call_stmt,
                             layer="param")
        self.g.params[name] = node
        if self.stmt and self.stmt.info is not None:
            self.stmt.info.params.append(name)
        return node

    def _shared_param(self, name: str, typ: TensorType, init: Init, trainable: bool, use: Use) -> int:
        """A parameter of a repeated application: the one its first application made, which must have come out
        the same; else a located error at the repeated call naming what differs."""
        first = use.first
        if name not in first.params:
            raise NncError(f"{use.what}: the parameter '{name}' is not among those it shares: got a new parameter, "
                           f"expected only the {len(first.params)} made {_where_first(first)}", use.loc,
                           hint=_SHARE_HINT)
        want_type, want_init, want_trainable = first.params[name]
        got = want = None
        if typ.shape != want_type.shape:
            got, want = f"shape {format_shape(typ.shape)}", format_shape(want_type.shape)
        elif typ.dtype != want_type.dtype:
            got, want = DTYPE_NAMES.get(typ.dtype, typ.dtype), DTYPE_NAMES.get(want_type.dtype, want_type.dtype)
        elif init != want_init or trainable != want_trainable:
            got, want = f"the initializer {_init_text(init)}", _init_text(want_init)
        if got is not None:
            raise NncError(f"{use.what}: the shared parameter '{name}' differs: got {got}, expected {want} as "
                           f"{_where_first(first)}", use.loc, hint=_SHARE_HINT)
        return self.g.params[name]

    @contextmanager
    def application(self, what: str, prefix: str, explicit: bool, loc: Loc | None):
        """Build one application of a layer or block whose parameters are named `prefix.*`. Given an explicit
        `name=` of a prefix already made, it applies that layer or block again: every parameter it asks for is
        one the first application made, the same, and it asks for all of them."""
        first = self.uses.get(prefix) if explicit else None
        if first is not None and first.what != what:
            raise NncError(f'{what}: name="{prefix}" names the {first.what} applied{_at_line(first)}: got {what}, '
                           f"expected {first.what} to share its parameters", loc,
                           hint=f'a name= of parameters already made applies that layer again; give this {what} '
                                f'another name for parameters of its own')
        use = Use(what, prefix, loc, first)
        made_before = prefix in self.uses
        self.applying.append(use)
        try:
            yield use
        finally:
            self.applying.pop()
        if first is not None:
            missing = [name for name in first.params if name not in use.params]
            if missing:
                raise NncError(f"{what}: the shared parameter '{missing[0]}' is left out: got {len(use.params)} of "
                               f"the {len(first.params)} parameters made {_where_first(first)}, expected all",
                               loc, hint=_SHARE_HINT)
        elif use.params and not made_before:  # a block without parameters leaves its name free
            self.uses[prefix] = use  # the block, not the layer inside it that took the block's prefix

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
        with self.application(self._call_name, prefix, name is not None, self.current_loc):
            for pname, typ, init, trainable in specs:
                if isinstance(init, Literal):  # init=[[...]]: every value written out
                    init = literal_init(init, f"{self._call_name}: the {pname}", typ)
                out[pname] = Tensor(self.new_param(f"{prefix}.{pname}", typ, init, self.current_loc, trainable))
        return out


def literal_init(lit: Literal, what: str, typ: TensorType) -> Init:
    """The Init of a parameter whose every value is written out (`param w: [2, 1] = [[20], [20]]`,
    `init=[[...]]`): the values in exactly the parameter's shape, else a located error at the first list
    whose length is wrong."""
    wrong = literal_mismatch(lit, typ.shape)
    if wrong is not None:
        dim, got, loc = wrong
        detail = (f"dim {dim} has {got} item{'s' * (got != 1)}, expected {typ.shape[dim]}" if got is not None else
                  f"{len(lit.shape)} levels of brackets, expected {len(typ.shape)}")
        raise NncError(f"{what}: the values have shape {format_shape(lit.shape)}, expected "
                       f"{format_shape(typ.shape)}: {detail}", loc,
                       hint="one level of brackets per dim, as in [[1, 0], [0, 1]] for [2, 2]")
    return Init("constant", (_nested_tuple(np.asarray(lit, dtype=np.float64).tolist()),))


def _nested_tuple(values):
    """Nested lists as nested tuples of floats: an Init's arguments stay hashable."""
    return tuple(_nested_tuple(v) for v in values) if isinstance(values, list) else float(values)


_SHARE_HINT = ("a layer or block applied again takes inputs of the same size and the same arguments; give this "
               "one another name= for parameters of its own")


def _at_line(use: Use) -> str:
    return f" at line {use.loc.span.line}" if use.loc else ""


def _where_first(first: Use) -> str:
    return f"where {first.prefix} was first applied{_at_line(first)}"


def _init_text(init: Init) -> str:
    return "of values written out" if init.kind == "constant" and isinstance(init.args[0], tuple) else str(init)


def _init_reach(init: Init) -> float:
    """The largest magnitude an initializer gives (ten standard deviations for normal)."""
    a = [float(np.max(np.abs(np.asarray(x, dtype=np.float64)))) for x in init.args]  # constant(v): v may be a list
    if init.kind == "normal":
        return a[0] + 10 * a[1]
    if init.kind == "uniform":
        return max(a[0], a[1], float(init.args[1]) - float(init.args[0]))
    return max(a, default=0.0)
