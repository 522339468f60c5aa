"""Neural-network primitives: softmax, log-softmax, softmax cross-entropy, one-hot, dropout masks.

Cross-entropy takes logits of any rank with the classes on the last axis ([B, V], [B, T, V]) and gives
one loss per position. The range check of class indices (and of ids, nnc/ir/ops/gather.py) lives here,
one function for every place indices come from, and names the position of a bad one.
"""

from __future__ import annotations

import numpy as np

from ...errors import NncError, ShapeError
from ..rng import normal_numpy
from ..types import TensorType, format_shape, normalize_axis, require_float
from .registry import NORMALIZE, RANDOM, VJP, LabelUse, defop, defvjp, nograd


def _axis_rule(name):
    def rule(ts, *, axis=-1):
        require_float(name, ts[0])
        if ts[0].rank == 0:
            raise ShapeError(f"{name}: input is a scalar, expected a tensor with an axis to normalize over")
        normalize_axis(axis, ts[0].rank, name)
        return ts[0]
    return rule


def log_softmax_ref(x, *, axis=-1):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax_ref(x, *, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


softmax = defop("softmax", arity=1, groups={NORMALIZE}, shape=_axis_rule("softmax"), ref=softmax_ref,
      doc="e^x / Σ e^x along an axis (max-shifted)", attrs=("axis",))
log_softmax = defop("log_softmax", arity=1, groups={NORMALIZE}, shape=_axis_rule("log_softmax"), ref=log_softmax_ref,
      doc="x − log Σ e^x along an axis (log-sum-exp)", attrs=("axis",))


def _xent(ts):
    logits, labels = ts
    require_float("cross_entropy", logits, 0, "logits")
    if logits.rank == 0:
        raise ShapeError("cross_entropy: logits are a single number, expected a tensor whose last axis holds the "
                         "classes, such as [batch, classes]", operand=0)
    positions = logits.shape[:-1]
    if labels.is_float:
        if labels.shape != logits.shape:
            raise ShapeError(f"cross_entropy: one-hot targets have shape {format_shape(labels.shape)}, "
                             f"expected {format_shape(logits.shape)} like the logits", operand=1)
    elif labels.shape != positions:
        what = "row" if logits.rank == 2 else "position"
        where = "" if logits.rank == 2 else " (their last axis holds the classes)"
        raise ShapeError(f"cross_entropy: labels have shape int{format_shape(labels.shape)}, "
                         f"expected int{format_shape(positions)}: one class index per {what} of the logits{where}",
                         operand=1)
    elif not isinstance(logits.shape[-1], int):  # class indices need a known number of classes
        raise ShapeError(f"cross_entropy: logits have shape {format_shape(logits.shape)}: got the symbolic dim "
                         f"{logits.shape[-1]} as the classes, expected a number", operand=0)
    return TensorType(positions, logits.dtype)


def first_bad_label(labels, classes: int) -> int | None:
    """The first class index outside [0, classes) (in memory order), or None: the one range check of labels,
    wherever they come from (fed inputs, computed indices, data files, native code's report)."""
    found = first_bad_label_at(labels, classes)
    return None if found is None else found[0]


def first_bad_label_at(labels, classes: int) -> tuple[int, tuple] | None:
    """(value, position) of the first class index outside [0, classes) in memory order, or None."""
    labels = np.asarray(labels)
    if not labels.size or (labels.min() >= 0 and labels.max() < classes):
        return None
    flat = int(np.flatnonzero((labels < 0) | (labels >= classes))[0])
    position = np.unravel_index(flat, labels.shape)
    return int(labels.reshape(-1)[flat]), tuple(int(i) for i in position)


def label_problem(labels, classes: int, noun: str = "class") -> str | None:
    """What is wrong with the first index outside [0, classes), for messages: "got class 12, expected 0 to 9",
    with its position ("got id 12 at [1, 3], ...") when the indices have several axes; None when all fit.
    An empty `noun` leaves the word out ("got 12, ...")."""
    found = first_bad_label_at(labels, classes)
    if found is None:
        return None
    value, position = found
    at = f" at {format_shape(position)}" if len(position) > 1 else ""
    return f"got {noun + ' ' if noun else ''}{value}{at}, expected 0 to {classes - 1}"


def check_labels(labels, classes: int, what: str = "labels", noun: str = "class") -> None:
    problem = label_problem(labels, classes, noun)
    if problem is not None:
        raise NncError(f"{what} out of range: {problem}")


def _xent_ref(logits, labels):
    ls = log_softmax_ref(logits, axis=-1)
    if labels.dtype.kind == "f":
        return -(labels * ls).sum(axis=-1)
    check_labels(labels, logits.shape[-1])
    return -np.take_along_axis(ls, labels[..., None].astype(np.int64), axis=-1)[..., 0]


xent = defop("xent", arity=2, groups={NORMALIZE}, shape=_xent, ref=_xent_ref,
      doc="softmax cross-entropy per position (classes on the last axis) from logits and int labels or one-hot "
          "targets",
      labels=LabelUse(1, lambda ts, attrs: ts[0].shape[-1]))


def _one_hot(ts, *, depth, dtype="float32"):
    if ts[0].is_float:
        raise ShapeError(f"one_hot: labels are a float tensor {ts[0]}, expected int class indices")
    if not isinstance(depth, int) or depth < 1:
        raise ShapeError(f"one_hot: got {depth} classes, expected a number of at least 1")
    return TensorType(ts[0].shape + (depth,), dtype)


def _one_hot_ref(labels, *, depth, dtype="float32"):
    check_labels(labels, depth)
    return np.eye(depth, dtype=dtype)[labels]


one_hot = defop("one_hot", arity=1, groups=set(), shape=_one_hot, ref=_one_hot_ref,
      doc="int class indices -> rows of the identity", attrs=("depth", "dtype"),
      labels=LabelUse(0, lambda ts, attrs: attrs["depth"]))


def _mask_rule(ts, *, p, salt=0):
    require_float("dropout", ts[0])
    if not 0 <= p < 1:
        raise ShapeError(f"dropout: rate p={p}, expected 0 <= p < 1")
    return ts[0]


def _mask_ref(x, *, p, salt=0, rng=None):
    rng = rng if rng is not None else np.random.default_rng(salt)
    keep = rng.random(x.shape) >= p
    return (keep / (1 - p)).astype(x.dtype)


dropout_mask = defop("dropout_mask", arity=1, groups={RANDOM}, shape=_mask_rule, ref=_mask_ref,
      doc="inverted-dropout mask shaped like x: 0 with probability p, else 1/(1−p)", attrs=("p", "salt"))



def _axis(c):
    return c.attrs.get("axis", -1)


defvjp(softmax, VJP("softmax: dx = y · (dy − Σ dy·y)", lambda c, dy: c.mul(c.y, c.sub(
    dy, c.sum(c.mul(dy, c.y), axis=_axis(c), keepdims=True)))))
defvjp(log_softmax, VJP("log_softmax: dx = dy − softmax(x) · Σ dy", lambda c, dy: c.sub(
    dy, c.mul(c.exp(c.y), c.sum(dy, axis=_axis(c), keepdims=True)))))


def _per_position(c, dy):
    """dy, one value per position of the logits, with a unit axis where the classes are."""
    return c.reshape(dy, shape=c.shape(c.x(0))[:-1] + (1,))


def _xent_dlogits(c, dy):
    """(softmax(logits) − onehot(labels)) scaled by each position's dy: the stable form."""
    logits, labels = c.x(0), c.x(1)
    t = c.type(logits)
    per_position = _per_position(c, dy)
    if not c.type(labels).is_float:
        onehot = c.one_hot(labels, depth=t.shape[-1], dtype=t.dtype)
        return c.mul(per_position, c.sub(c.softmax(logits, axis=-1), onehot))
    # soft targets need not sum to 1: d/dx of −Σ t·log_softmax(x) is softmax(x)·Σt − t
    mass = c.sum(labels, axis=-1, keepdims=True)
    return c.mul(per_position, c.sub(c.mul(c.softmax(logits, axis=-1), mass), labels))


def _xent_dtarget(c, dy):
    return c.neg(c.mul(_per_position(c, dy), c.log_softmax(c.x(0), axis=-1)))


defvjp(xent, VJP("cross_entropy: dlogits = dy · (softmax(logits) − onehot(labels))", _xent_dlogits),
       VJP("cross_entropy: dtarget = −dy · log_softmax(logits)", _xent_dtarget))
def _normal_rule(ts, *, shape, mean=0.0, std=1.0, salt=0):
    if std < 0:
        raise ShapeError(f"normal: std={std}, expected std >= 0")
    return TensorType(tuple(shape), "float32")


def _normal_ref(*, shape, mean=0.0, std=1.0, salt=0, rng=None, seed=0):
    """The native code's draws exactly: the counter-based stream of nnc.ir.rng under the step seed."""
    return normal_numpy(tuple(shape), seed, salt, mean, std)


random_normal = defop("random_normal", arity=0, groups={RANDOM}, shape=_normal_rule, ref=_normal_ref,
      doc="a fresh draw of N(mean, std²) noise each step (a GAN's latent vectors)",
      attrs=("shape", "mean", "std", "salt"))

nograd(one_hot, "class indices are integers")
nograd(random_normal, "noise is not a function of anything")
nograd(dropout_mask, "the mask is random, not a function of x's values")
