"""ONNX translators for math: elementwise functions, comparisons and logic, reductions, ArgMax/ArgMin, Clip,
Where, CumSum, Mod, Lp and RMS normalization, the class losses (NegativeLogLikelihoodLoss,
SoftmaxCrossEntropyLoss), and the activations written as formulas of nnc's functions (HardSigmoid, Selu, Celu,
Gelu, ...).

Each translator returns `.nn` text (see translators.py). ONNX's booleans are nnc's 0.0 / 1.0 masks: comparisons
give them, And is a product, Or a maximum, Not 1 − x, Where is nnc's `where`. An ArgMax's indices come out as
whole numbers in a float tensor (nnc has no op that turns a float into an int)."""

from __future__ import annotations

import math

import numpy as np

from .translators import Node, Value, fmt, translates


def _num(n: Node, name: str, default: float) -> str:
    return fmt(float(n.attr(name, default)))


# ---- elementwise functions -----------------------------------------------------------------------------------

UNARY = {"Sqrt": "sqrt", "Exp": "exp", "Log": "log", "Abs": "abs", "Sign": "sign", "Floor": "floor", "Ceil": "ceil",
         "Round": "round", "Sin": "sin", "Cos": "cos", "Tan": "tan", "Asin": "asin", "Acos": "acos", "Atan": "atan",
         "Sinh": "sinh", "Cosh": "cosh", "Asinh": "asinh", "Acosh": "acosh", "Atanh": "atanh", "Erf": "erf"}


def unary(n: Node) -> str:
    return f"{UNARY[n.op_type]}({n.x(0)})"


def neg(n: Node) -> str:
    return f"-{n.x(0)}"


def reciprocal(n: Node) -> str:
    return f"1.0 / {n.x(0)}"


def power(n: Node) -> str:
    return f"{n.x(0)} ** {n.x(1)}"


def _operands(n: Node) -> list:
    return [n.x(i) for i in range(len(n.inputs)) if n.has(i)]


def variadic(n: Node) -> str:
    """Max, Min, Sum, Mean of any number of broadcasting operands."""
    xs = _operands(n)
    if n.op_type in ("Max", "Min"):
        fn = "maximum" if n.op_type == "Max" else "minimum"
        expr = xs[0]
        for x in xs[1:]:
            expr = f"{fn}({expr}, {x})"
        return expr
    total = " + ".join(xs)
    if n.op_type == "Sum" or len(xs) == 1:
        return total
    return f"({total}) / {fmt(float(len(xs)))}"


def clip(n: Node) -> str:
    """minimum(maximum(x, lo), hi): bounds from inputs 1 and 2 (opset 11 on) or the attributes (before)."""
    expr = n.x(0)
    lo = n.x(1) if n.has(1) else (_num(n, "min", 0) if "min" in n.attrs else None)
    hi = n.x(2) if n.has(2) else (_num(n, "max", 0) if "max" in n.attrs else None)
    if lo is not None:
        expr = f"maximum({expr}, {lo})"
    if hi is not None:
        expr = f"minimum({expr}, {hi})"
    return expr


def mod(n: Node) -> str:
    """fmod=1: a − b·trunc(a / b), C's fmod (the sign of a); fmod=0: a − b·⌊a / b⌋, Python's % (the sign of b),
    which is a itself for an infinite b of a's sign (or a = 0), else b (NaN for an infinite a: a − a adds it)."""
    a, b = n.x(0), n.x(1)
    if n.inputs[0].dtype not in ("float", "f64"):
        n.fail("Mod of int tensors: nnc computes on floats (int tensors are indices and labels)")
    q = n.emit("q", f"{a} / {b}")
    if n.attr("fmod", 0):
        return f"{a} - {b} * sign({q}) * floor(abs({q}))"
    rest = n.emit("rest", f"{a} - {b} * floor({q})")
    infinite = n.emit("inf", f"equal({b}, {b}) * (1.0 - equal({b} - {b}, 0.0))")
    beyond = f"where(greater_equal({a} * sign({b}), 0.0), {a}, {b}) + ({a} - {a})"
    return f"where({infinite}, {beyond}, {rest})"


def _positions(size: int, rank: int, axis: int) -> np.ndarray:
    """0, 1, ..., size − 1 along `axis` of a rank-`rank` tensor (ones along the axes after it, for broadcasting)."""
    return np.arange(size, dtype=np.float64).reshape((size,) + (1,) * (rank - 1 - axis))


def _static_size(n: Node, axis: int) -> int:
    size = n.shape(0)[axis]
    if isinstance(size, str):
        n.fail(f"the axis {axis} has the symbolic size {size}; {n.op_type} needs it known")
    return size


def cumsum(n: Node) -> str:
    """A product with a triangular 0/1 matrix along the axis (moved last and back by transposes):
    y_j = Σ_i x_i · [i ≤ j], [i < j] when exclusive, [i ≥ j] or [i > j] in reverse."""
    x, rank = n.x(0), n.rank(0)
    if n.inputs[0].dtype not in ("float", "f64"):
        n.fail("CumSum of int tensors: nnc computes on floats (int tensors are indices and labels)")
    axis = n.const(1)
    if axis is None:
        n.fail("the axis (input 1) must be known at import time")
    axis = n.axis(int(np.asarray(axis).reshape(-1)[0]), rank)
    size = _static_size(n, axis)
    i, j = np.ogrid[:size, :size]
    exclusive, reverse = bool(n.attr("exclusive", 0)), bool(n.attr("reverse", 0))
    keep = (i > j if exclusive else i >= j) if reverse else (i < j if exclusive else i <= j)
    tri = fmt(keep.astype(np.float64))
    if rank == 1:
        return f"reshape(reshape({x}, [1, {size}]) @ {tri}, [{size}])"
    if axis == rank - 1:
        return f"{x} @ {tri}"
    perm = [d for d in range(rank) if d != axis] + [axis]
    back = list(np.argsort(perm))
    return f"transpose(transpose({x}, {fmt(perm)}) @ {tri}, {fmt(back)})"


# ---- comparisons and logic (0.0 / 1.0 masks) ---------------------------------------------------------------

COMPARE = {"Greater": "greater", "GreaterOrEqual": "greater_equal", "Less": "less", "LessOrEqual": "less_equal",
           "Equal": "equal"}


def compare(n: Node) -> str:
    return f"{COMPARE[n.op_type]}({n.x(0)}, {n.x(1)})"


def logic(n: Node) -> str:
    if n.op_type == "Not":
        return f"1.0 - {n.x(0)}"
    a, b = n.x(0), n.x(1)
    return {"And": f"{a} * {b}", "Or": f"maximum({a}, {b})", "Xor": f"abs({a} - {b})"}[n.op_type]


def where(n: Node) -> str:
    return f"where({n.x(0)}, {n.x(1)}, {n.x(2)})"


def is_nan(n: Node) -> str:
    return f"1.0 - equal({n.x(0)}, {n.x(0)})"   # NaN is the one value unequal to itself


def is_inf(n: Node) -> str:
    """x − x is NaN exactly where x is infinite or NaN, and x = x everywhere but NaN; the sign picks +inf or −inf."""
    x, pos, neg_ = n.x(0), n.attr("detect_positive", 1), n.attr("detect_negative", 1)
    inf = n.emit("inf", f"equal({x}, {x}) * (1.0 - equal({x} - {x}, 0.0))")
    if pos and neg_:
        return inf
    if pos:
        return f"{inf} * greater({x}, 0.0)"
    if neg_:
        return f"{inf} * less({x}, 0.0)"
    return f"0.0 * {inf}"


# ONNX element types (onnx.TensorProto) by what nnc holds them as: FLOAT and DOUBLE its floats, BOOL a 0/1 mask
CAST_FLOAT, CAST_BOOL = {1: "float", 11: "f64"}, 9


def cast(n: Node) -> str:
    """Cast and CastLike among float32, float64 and bool (a 0/1 mask): the value itself, or x ≠ 0 to bool.
    A cast to or from an int, or to a narrower float (float16, ...), changes values in a way nnc has no op for."""
    if n.op_type == "Cast":
        to = int(n.attr("to"))
    else:
        to = {"float": 1, "f64": 11, "bool": CAST_BOOL}.get(n.inputs[1].dtype if n.has(1) else None, 0)
    source = n.inputs[0].dtype
    if source not in ("float", "f64", "bool"):
        n.fail(f"casting {source} tensors: nnc computes on floats (int tensors are indices and labels)")
    if to in CAST_FLOAT:
        return n.x(0)
    if to == CAST_BOOL:
        return n.x(0) if source == "bool" else f"1.0 - equal({n.x(0)}, 0.0)"
    return n.fail("a cast to a type other than float32, float64 or bool (nnc computes in float32)")


# ---- reductions ------------------------------------------------------------------------------------------------


def _axes(n: Node):
    """The reduced axes as a sorted list, [] for none (noop_with_empty_axes), None for all of them."""
    if n.has(1):
        axes = n.const(1)
        if axes is None:
            n.fail("the axes (input 1) must be known at import time")
        axes = [int(a) for a in np.asarray(axes).reshape(-1)]
    else:
        axes = n.attr("axes")
        axes = None if axes is None else [int(a) for a in axes]
    rank = n.rank(0)
    if not axes:
        return [] if n.attr("noop_with_empty_axes", 0) else None
    return sorted(n.axis(a, rank) for a in axes)


def _reduce_args(axes, keepdims: bool) -> str:
    text = "" if axes is None else f", axis={fmt(axes)}"
    return f"{text}, keepdims={fmt(bool(keepdims))}"


def reduce(n: Node) -> str:
    """Reduce{Sum,Mean,Max,Min,Prod,L1,L2,SumSquare,LogSum,LogSumExp} over attribute or input axes, keepdims."""
    x, op = n.x(0), n.op_type
    axes, keepdims = _axes(n), bool(n.attr("keepdims", 1))
    inner = {"ReduceL1": f"abs({x})", "ReduceL2": f"square({x})", "ReduceSumSquare": f"square({x})"}.get(op, x)
    if axes == []:   # noop_with_empty_axes: the elementwise part alone
        return {"ReduceL2": f"abs({x})", "ReduceLogSum": f"log({x})"}.get(op, inner)
    if n.shape(0) and 0 in n.shape(0):
        n.fail("nnc has no empty tensors")
    args = _reduce_args(axes, keepdims)
    if op == "ReduceLogSumExp":   # log Σ e^(x − m) + m, with m the maximum: no overflow, as torch.logsumexp
        m = n.emit("max", f"max({x}{_reduce_args(axes, True)})")
        shift = m if keepdims else f"max({x}{args})"
        return f"log(sum(exp({x} - {m}){args})) + {shift}"
    fn = {"ReduceMean": "mean", "ReduceMax": "max", "ReduceMin": "min", "ReduceProd": "prod"}.get(op, "sum")
    expr = f"{fn}({inner}{args})"
    return {"ReduceL2": f"sqrt({expr})", "ReduceLogSum": f"log({expr})"}.get(op, expr)


def _first_extreme(n: Node, x: str, axis: int, size: int, extreme: str, last: bool, keepdims: bool) -> str:
    """The position of the first (last) maximum or minimum of x along axis, as a whole number: with hits the 0/1
    mask of the extreme values and i the positions, n − max(hits · (n − i)), or max(hits · (i + 1)) − 1."""
    hits = n.emit("hits", f"equal({x}, {extreme}({x}, axis={axis}, keepdims=true))")
    positions = _positions(size, n.rank(0), axis)
    weights = fmt(positions + 1 if last else size - positions)
    best = f"max({hits} * {weights}, axis={axis}, keepdims={fmt(keepdims)})"
    return f"{best} - 1.0" if last else f"{fmt(float(size))} - {best}"


def arg_extreme(n: Node) -> str:
    """ArgMax / ArgMin: the indices come out as whole numbers in a float tensor."""
    axis = n.axis(n.attr("axis", 0), n.rank(0))
    return _first_extreme(n, n.x(0), axis, _static_size(n, axis), "max" if n.op_type == "ArgMax" else "min",
                          bool(n.attr("select_last_index", 0)), bool(n.attr("keepdims", 1)))


def hardmax(n: Node) -> str:
    """1 at the first maximum along the axis, 0 elsewhere: the positions equal to the first maximum's."""
    rank = n.rank(0)
    axis = n.axis(n.attr("axis", -1), rank)
    size = _static_size(n, axis)
    first = n.emit("first", _first_extreme(n, n.x(0), axis, size, "max", False, True))
    return f"equal({fmt(_positions(size, rank, axis))}, {first})"


def lp_normalization(n: Node) -> str:
    """x / ‖x‖ₚ along the axis, and 0 where the norm is 0 (x is 0 there: dividing by norm + [norm = 0] gives it)."""
    x, axis, p = n.x(0), n.axis(n.attr("axis", -1), n.rank(0)), int(n.attr("p", 2))
    if p not in (1, 2):
        n.fail(f"p={p}: ONNX defines p = 1 or 2")
    total = f"sum(abs({x}), axis={axis}, keepdims=true)" if p == 1 else \
        f"sqrt(sum(square({x}), axis={axis}, keepdims=true))"
    norm = n.emit("norm", total)
    return f"{x} / ({norm} + equal({norm}, 0.0))"


def _class_mask(n: Node, target: np.ndarray, classes: int, ignore) -> tuple[str, int]:
    """The [N, C, d1, ...] 0/1 mask of each target's class (0 for an ignored target) as an operand, and the number
    of targets counted. The targets must be known at import time (nnc's int tensors are labels its own losses
    read; an ONNX target computed in the model is not)."""
    at = np.arange(classes).reshape((1, classes) + (1,) * (target.ndim - 1))
    mask = np.expand_dims(target, 1) == at
    if ignore is not None:
        mask &= np.expand_dims(target != ignore, 1)
    value = Value(f"{n.label}_classes", shape=mask.shape, const=mask.astype(np.float32))
    return n.operand(value), int(mask.sum())


def class_loss(n: Node):
    """NegativeLogLikelihoodLoss (of log-probabilities) and SoftmaxCrossEntropyLoss (of scores): −Σ_c mask·w·x over
    the class axis 1, then the reduction: none, sum, or mean (the sum over the weights of the targets counted)."""
    target = n.const(1)
    if target is None:
        n.fail("the target (input 1) must be known at import time")
    shape = n.shape(0)
    if len(shape) < 2 or isinstance(shape[1], str):
        n.fail(f"the scores must be [N, C, ...] with a known C, got {shape}")
    classes = shape[1]
    mask, counted = _class_mask(n, np.asarray(target).astype(np.int64), classes, n.attr("ignore_index"))
    total = fmt(float(counted))
    if n.has(2):
        weights = f"reshape({n.x(2)}, {fmt([classes] + [1] * (len(shape) - 2))})"
        mask = n.emit("weights", f"{mask} * {weights}")
        total = f"sum({mask})"
    x = n.x(0)
    log_prob = None
    if n.op_type == "SoftmaxCrossEntropyLoss":
        log_prob = x = n.emit("log_prob", f"log_softmax({x}, axis=1)")
    losses = f"-sum({x} * {mask}, axis=1)"
    reduction = n.attr("reduction", "mean")
    if isinstance(reduction, bytes):
        reduction = reduction.decode()
    if reduction == "none":
        loss = losses
    elif reduction == "sum":
        loss = f"sum({losses})"
    elif reduction == "mean":
        loss = f"sum({losses}) / {total}"
    else:
        n.fail(f"reduction {reduction!r}: ONNX defines none, sum and mean")
    return [loss, log_prob] if log_prob is not None and len(n.outputs) > 1 else loss


def rms_normalization(n: Node) -> str:
    """x / √(mean(x²) + ε) · scale, the mean over the axes from `axis` on (the scale a tensor of any origin)."""
    x, rank = n.x(0), n.rank(0)
    axis = n.axis(n.attr("axis", -1), rank)
    axes = fmt(list(range(axis, rank)))
    rms = n.emit("rms", f"sqrt(mean(square({x}), axis={axes}, keepdims=true) + {_num(n, 'epsilon', 1e-5)})")
    return f"{x} / {rms} * {n.x(1)}"


def one_hot(n: Node) -> str:
    """off + (on − off) · [index = position] along the new axis (a negative index counts from the end, one out of
    range gives no 1). The depth must be known at import time, and int indices too (float ones may be computed)."""
    depth = n.const(1)
    if depth is None:
        n.fail("the depth (input 1) must be known at import time")
    depth, shape = int(np.asarray(depth).reshape(-1)[0]), n.shape(0)
    axis = n.axis(n.attr("axis", -1), len(shape) + 1)
    at = _positions(depth, len(shape) + 1, axis)
    indices = n.const(0)
    if indices is not None:
        indices = np.asarray(indices).astype(np.int64)
        mask = (np.expand_dims(np.where(indices < 0, indices + depth, indices), axis) == at).astype(np.float32)
        mask = n.operand(Value(f"{n.label}_mask", shape=mask.shape, const=mask))
    elif n.inputs[0].dtype in ("float", "f64"):
        x = n.x(0)
        wrapped = n.emit("index", f"{x} + {fmt(float(depth))} * less({x}, 0.0)")
        mask = f"equal(reshape({wrapped}, {fmt(list(shape[:axis]) + [1] + list(shape[axis:]))}), {fmt(at)})"
    else:
        n.fail("int indices must be known at import time (nnc's int tensors are labels its losses read)")
    values = n.const(2)
    if values is not None:
        off, on = (float(v) for v in np.asarray(values).reshape(-1))
        return f"{fmt(off)} + {fmt(on - off)} * {mask}"
    v = n.x(2)
    return f"{v}[0] + ({v}[1] - {v}[0]) * {mask}"


# ---- activations as formulas -----------------------------------------------------------------------------------


def activation(n: Node) -> str:
    x, op = n.x(0), n.op_type
    if op == "HardSigmoid":
        return f"maximum(minimum({_num(n, 'alpha', 0.2)} * {x} + {_num(n, 'beta', 0.5)}, 1.0), 0.0)"
    if op == "HardSwish":
        return f"{x} * maximum(minimum({fmt(1 / 6)} * {x} + 0.5, 1.0), 0.0)"
    if op == "Selu":
        return f"{_num(n, 'gamma', 1.0507009873554805)} * elu({x}, alpha={_num(n, 'alpha', 1.6732632423543772)})"
    if op == "Celu":   # α·elu(x / α): x where x > 0, α·(e^(x/α) − 1) elsewhere
        alpha = _num(n, "alpha", 1.0)
        return f"{alpha} * elu({x} / {alpha})"
    if op == "Softsign":
        return f"{x} / (1.0 + abs({x}))"
    if op == "Mish":
        return f"{x} * tanh(softplus({x}))"
    if op == "Swish":
        return f"{x} * sigmoid({_num(n, 'alpha', 1.0)} * {x})"
    if op == "ThresholdedRelu":
        return f"{x} * greater({x}, {_num(n, 'alpha', 1.0)})"
    if op == "Shrink":
        lambd, bias = _num(n, "lambd", 0.5), _num(n, "bias", 0.0)
        return f"greater({x}, {lambd}) * ({x} - {bias}) + less({x}, -{lambd}) * ({x} + {bias})"
    if op == "Gelu":
        if n.attr("approximate", "none") == "tanh":
            c = fmt(math.sqrt(2 / math.pi))
            return f"0.5 * {x} * (1.0 + tanh({c} * ({x} + 0.044715 * {x} * {x} * {x})))"
        return f"0.5 * {x} * (1.0 + erf({x} * {fmt(1 / math.sqrt(2))}))"
    if op == "PRelu":   # relu(x) + slope · min(x, 0): x where x > 0, slope · x elsewhere
        return f"relu({x}) + {n.x(1)} * minimum({x}, 0.0)"
    return n.fail("no formula")


ACTIVATIONS = ("HardSigmoid", "HardSwish", "Selu", "Celu", "Softsign", "Mish", "Swish",
               "ThresholdedRelu", "Shrink", "Gelu", "PRelu")

# one translator per op type: `translates` refuses a type ops_nn.py registers too
for _fn, _types in ((unary, tuple(UNARY)), (neg, ("Neg",)), (reciprocal, ("Reciprocal",)), (power, ("Pow",)),
                    (variadic, ("Max", "Min", "Sum", "Mean")), (clip, ("Clip",)),
                    (compare, tuple(COMPARE)), (logic, ("Not", "And", "Or", "Xor")), (where, ("Where",)),
                    (is_nan, ("IsNaN",)), (is_inf, ("IsInf",)), (cast, ("Cast", "CastLike")),
                    (reduce, ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
                              "ReduceL2", "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp")),
                    (arg_extreme, ("ArgMax", "ArgMin")), (hardmax, ("Hardmax",)),
                    (lp_normalization, ("LpNormalization",)), (rms_normalization, ("RMSNormalization",)),
                    (mod, ("Mod",)), (cumsum, ("CumSum",)), (one_hot, ("OneHot",)),
                    (class_loss, ("NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss")),
                    (activation, ACTIVATIONS)):
    translates(*_types)(_fn)
