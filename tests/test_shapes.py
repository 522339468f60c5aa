"""Shape inference: every primitive's shape rule on good and bad input, broadcasting, symbolic dims, reshape.

Rules are called through the registry (`Op.infer`), exactly as the graph does;
layer-level rules (dense, conv2d, flatten, losses...) are checked through
small models. A new primitive must get a row in GOOD and one in BAD.
"""

from __future__ import annotations

import numpy as np
import pytest

import nnc
from nnc import NncError
from nnc.errors import ShapeError
from nnc.ir.ops import CONTROL, LEAF, PROJECTION, RANDOM, REGISTRY
from nnc.ir.types import TensorType, TupleType, broadcast_shapes, reshape_target, size_text


def T(*dims, dtype="float32") -> TensorType:
    return TensorType(tuple(dims), dtype)


def I(*dims) -> TensorType:  # noqa: E743 - reads like the language's int[...]
    return TensorType(tuple(dims), "int32")


F64 = "float64"


def _cell():
    """A loop body h' = h + x for the scan cases: carry h [B, 3], one step x [B, 3]."""
    from nnc.ir.graph import Emitter, Graph

    body = Graph(model="cell")
    e = Emitter(body)
    body.outputs["h_new"] = e.add(e.input("h", T("B", 3)), e.input("x", T("B", 3)))
    return body


CELL = {"body": _cell(), "carry_in": ("h",), "carry_out": ("h_new",), "seq_in": ("x",), "const_in": (), "ys": (),
        "accs": (), "length": 4, "reverse": False}

# op, operand types, attrs, result type
GOOD = [
    # a loop over 4 steps: the carry's history; one result of it
    ("scan", [T("B", 3), T(4, "B", 3)], CELL, TupleType((T(4, "B", 3),))),
    ("item", [TupleType((T(4, "B", 3), T(2)))], {"index": 1}, T(2)),
    # leaves take their declared type
    ("input", [], {"name": "x", "type": T("B", 3)}, T("B", 3)),
    ("param", [], {"name": "w", "type": T(3, 4), "init": None, "trainable": True}, T(3, 4)),
    ("const", [], {"value": 2.0, "type": T()}, T()),
    ("count", [], {"dims": ("B", 3), "type": T()}, T()),
    # elementwise, unary: same type
    ("relu", [T("B", 3)], {}, T("B", 3)),
    ("leaky_relu", [T("B", 3)], {"alpha": 0.1}, T("B", 3)),
    ("elu", [T(2, dtype=F64)], {"alpha": 1.0}, T(2, dtype=F64)),
    ("softplus", [T("B", 3)], {"beta": 2.0, "threshold": 20.0}, T("B", 3)),
    # special.py: float functions of one tensor
    ("floor", [T("B", 3)], {}, T("B", 3)),
    ("ceil", [T("B", 3)], {}, T("B", 3)),
    ("round", [T("B", 3)], {}, T("B", 3)),
    ("sin", [T("B", 3)], {}, T("B", 3)),
    ("cos", [T("B", 3)], {}, T("B", 3)),
    ("tan", [T("B", 3)], {}, T("B", 3)),
    ("asin", [T("B", 3)], {}, T("B", 3)),
    ("acos", [T("B", 3)], {}, T("B", 3)),
    ("atan", [T("B", 3)], {}, T("B", 3)),
    ("sinh", [T("B", 3)], {}, T("B", 3)),
    ("cosh", [T("B", 3)], {}, T("B", 3)),
    ("asinh", [T("B", 3)], {}, T("B", 3)),
    ("acosh", [T("B", 3)], {}, T("B", 3)),
    ("atanh", [T("B", 3)], {}, T("B", 3)),
    ("erf", [T(2, dtype=F64)], {}, T(2, dtype=F64)),
    ("cross_rank_sum", [T("B", 3)], {}, T("B", 3)),
    ("cross_rank_sum", [T(2, dtype=F64)], {"adjoint": True}, T(2, dtype=F64)),
    ("where", [T("B", 1), T(3), T("B", 3)], {}, T("B", 3)),   # the three broadcast
    ("where", [T(2), T(2, dtype=F64), T()], {}, T(2, dtype=F64)),
    ("prod", [T("B", 3, 4)], {"axis": (1, 2), "keepdims": True}, T("B", 1, 1)),
    ("sigmoid", [T()], {}, T()),
    ("tanh", [T("B")], {}, T("B")),
    ("exp", [T(1)], {}, T(1)),
    ("log", [T(1)], {}, T(1)),
    ("sqrt", [T(1)], {}, T(1)),
    ("abs", [T(1)], {}, T(1)),
    ("square", [T(1)], {}, T(1)),
    ("sign", [T(1)], {}, T(1)),
    ("step", [T("B", 1)], {}, T("B", 1)),
    ("neg", [I("B")], {}, I("B")),                        # negation works on ints too
    # elementwise, binary: broadcasting and dtype promotion
    ("add", [T("B", 3), T(3)], {}, T("B", 3)),
    ("add", [I("B"), I("B")], {}, I("B")),
    ("sub", [T("B", 1), T(1, 4)], {}, T("B", 4)),
    ("mul", [T(), T("B", 2, 2)], {}, T("B", 2, 2)),
    ("mul", [T(3), T(3, dtype=F64)], {}, T(3, dtype=F64)),
    ("div", [T("B", 3), T("B", 1)], {}, T("B", 3)),
    ("pow", [T("B", 3), T()], {}, T("B", 3)),
    ("maximum", [T("B", 3), T()], {}, T("B", 3)),
    ("bce_logits", [T("B", 1), T()], {}, T("B", 1)),
    ("xlogy", [T("B", 3), T(3)], {}, T("B", 3)),
    ("minimum", [T(1, 3), T(2, 1)], {}, T(2, 3)),
    ("greater", [T("B", 3), T()], {}, T("B", 3)),
    ("greater_equal", [T(3), T(3)], {}, T(3)),
    ("equal", [T(3), T(1)], {}, T(3)),
    # contraction
    ("matmul", [T("B", 3), T(3, 4)], {}, T("B", 4)),
    ("matmul", [T(3, "B"), T(3, 4)], {"ta": True}, T("B", 4)),
    ("matmul", [T("B", 3), T(4, 3)], {"tb": True}, T("B", 4)),
    ("matmul", [T("B", "T", 8), T(8, 4)], {}, T("B", "T", 4)),                 # batched: NumPy's broadcasting
    ("matmul", [T("B", 2, 5, 8), T("B", 2, 8, 3)], {}, T("B", 2, 5, 3)),
    ("matmul", [T(2, 1, 5, 8), T(4, 3, 8)], {"tb": True}, T(2, 4, 5, 3)),
    ("matmul", [T("B", 8, 5), T(8, 3)], {"ta": True}, T("B", 5, 3)),
    ("matmul_sum", [T("B", 5, 8), T("B", 5, 3)], {"ta": True}, T(8, 3)),
    ("matmul_sum", [T("B", 2, 5, 8), T("B", 2, 3, 8)], {"tb": True}, T(5, 3)),
    ("take", [T(10, 4), I("B", "T")], {}, T("B", "T", 4)),
    ("take", [T(10), I("B")], {}, T("B")),
    ("scatter_add", [T("B", "T", 4), I("B", "T")], {"rows": 10}, T(10, 4)),
    ("conv2d", [T("B", 3, 8, 8), T(4, 3, 3, 3)], {"stride": 1, "pad": 1}, T("B", 4, 8, 8)),
    ("conv2d", [T("B", 3, 8, 8), T(4, 3, 3, 3)], {"stride": 2, "pad": 0}, T("B", 4, 3, 3)),
    ("conv2d", [T("B", 1, 28, 28), T(6, 1, 5, 5)], {"stride": 1, "pad": 2}, T("B", 6, 28, 28)),
    ("conv2d_grad_input", [T("B", 4, 8, 8), T(4, 3, 3, 3)], {"stride": 1, "pad": 1, "in_shape": ("B", 3, 8, 8)},
     T("B", 3, 8, 8)),
    ("conv2d_grad_weight", [T("B", 3, 8, 8), T("B", 4, 8, 8)], {"stride": 1, "pad": 1, "kshape": (4, 3, 3, 3)},
     T(4, 3, 3, 3)),
    # groups: weight [F, C / groups, kh, kw]; dilation 2 makes a 3x3 kernel reach over 5x5
    ("conv2d", [T("B", 4, 8, 8), T(6, 2, 3, 3)], {"stride": 1, "pad": 0, "groups": 2, "dilation": 2},
     T("B", 6, 4, 4)),
    ("conv2d", [T("B", 4, 8, 8), T(4, 1, 3, 3)], {"stride": 2, "pad": 1, "groups": 4}, T("B", 4, 4, 4)),
    ("conv2d_grad_input", [T("B", 6, 4, 4), T(6, 2, 3, 3)],
     {"stride": 1, "pad": 0, "in_shape": ("B", 4, 8, 8), "groups": 2, "dilation": 2}, T("B", 4, 8, 8)),
    # upsampling
    ("upsample", [T("B", 3, 4, 5)], {"factor": 2, "mode": "nearest"}, T("B", 3, 8, 10)),
    ("upsample", [T(2, 1, 3, 3, dtype=F64)], {"factor": 3, "mode": "bilinear"}, T(2, 1, 9, 9, dtype=F64)),
    ("upsample_grad", [T("B", 3, 8, 10)], {"factor": 2, "mode": "bilinear"}, T("B", 3, 4, 5)),
    # pooling
    ("maxpool", [T("B", 3, 8, 8)], {"size": 2, "stride": 2}, T("B", 3, 4, 4)),
    ("maxpool", [T("B", 3, 7, 7)], {"size": 2, "stride": 2}, T("B", 3, 3, 3)),   # floor, as in PyTorch
    ("avgpool", [T("B", 3, 8, 8)], {"size": 3, "stride": 1}, T("B", 3, 6, 6)),
    ("maxpool", [T("B", 3, 7, 7)], {"size": 3, "stride": 1, "pad": 1}, T("B", 3, 7, 7)),   # Inception's
    ("maxpool", [T("B", 3, 112, 112)], {"size": 3, "stride": 2, "ceil_mode": True}, T("B", 3, 56, 56)),
    ("avgpool", [T("B", 3, 7, 7)], {"size": 2, "stride": 2, "pad": 1, "ceil_mode": True, "count_include_pad": False},
     T("B", 3, 4, 4)),    # rounding up would start a window in the padding: dropped
    ("maxpool_grad", [T("B", 3, 8, 8), T("B", 3, 4, 4)], {"size": 2, "stride": 2}, T("B", 3, 8, 8)),
    ("avgpool_grad", [T("B", 3, 4, 4)], {"size": 2, "stride": 2, "in_shape": ("B", 3, 8, 8)}, T("B", 3, 8, 8)),
    # movement
    ("reshape", [T("B", 784)], {"shape": ("B", 1, 28, 28)}, T("B", 1, 28, 28)),
    ("reshape", [T("B", 16, 5, 5)], {"shape": ("B", -1)}, T("B", 400)),
    ("reshape", [T(4, 6)], {"shape": (-1,)}, T(24)),
    ("reshape", [T("B", 6)], {"shape": ("B", 2, -1)}, T("B", 2, 3)),
    ("reshape", [T(6)], {"shape": (2, 3)}, T(2, 3)),
    ("transpose", [T("B", 3, 4)], {"perm": (0, 2, 1)}, T("B", 4, 3)),
    ("transpose", [T("B", 3)], {"perm": (1, 0)}, T(3, "B")),
    ("broadcast_to", [T(3)], {"shape": ("B", 3)}, T("B", 3)),
    ("broadcast_to", [T()], {"shape": (2, 2)}, T(2, 2)),
    ("concat", [T("B", 3), T("B", 4)], {"axis": 1}, T("B", 7)),
    ("concat", [T("B", 2, 3), T("B", 2, 1), T("B", 2, 2)], {"axis": -1}, T("B", 2, 6)),
    ("slice", [T("B", 10)], {"axis": 1, "start": 2, "stop": 5}, T("B", 3)),
    ("strided_slice", [T("B", 10)], {"start": (0, 1), "step": (1, 3), "shape": ("B", 3)}, T("B", 3)),
    ("strided_slice", [I("B", 5, 4)], {"start": (0, 4, 3), "step": (1, -2, 1), "shape": ("B", 3, 1)}, I("B", 3, 1)),
    ("strided_slice_grad", [T("B", 3)], {"start": (0, 9), "step": (1, -4), "in_shape": ("B", 10)}, T("B", 10)),
    # normalization, losses, one-hot, random
    ("softmax", [T("B", 10)], {"axis": -1}, T("B", 10)),
    ("log_softmax", [T("B", 10)], {"axis": 0}, T("B", 10)),
    ("xent", [T("B", 10), I("B")], {}, T("B")),
    ("xent", [T("B", 10), T("B", 10)], {}, T("B")),         # one-hot targets
    ("xent", [T("B", "T", 10), I("B", "T")], {}, T("B", "T")),   # sequences: the classes on the last axis
    ("xent", [T("B", 3, 10), T("B", 3, 10)], {}, T("B", 3)),
    ("xent", [T(10), I()], {}, T()),
    ("one_hot", [I("B")], {"depth": 10}, T("B", 10)),
    ("one_hot", [I("B")], {"depth": 3, "dtype": F64}, T("B", 3, dtype=F64)),
    ("dropout_mask", [T("B", 3)], {"p": 0.5}, T("B", 3)),
    ("random_normal", [], {"shape": ("B", 8)}, T("B", 8)),
    ("random_normal", [], {"shape": (2, 3), "mean": 4.0, "std": 1.25}, T(2, 3)),
    ("stop_gradient", [T("B", 3)], {}, T("B", 3)),
    ("identity", [I("B", 3)], {}, I("B", 3)),
    # reductions
    ("sum", [T("B", 3)], {}, T()),
    ("sum", [I("B")], {}, I()),
    ("sum", [T("B", 3)], {"axis": 1}, T("B")),
    ("mean", [T("B", 3, 4)], {"axis": (0, 2), "keepdims": True}, T(1, 3, 1)),
    ("mean", [T("B", 3, 4)], {"axis": -1}, T("B", 3)),
    ("max", [T("B", 3)], {"axis": 0, "keepdims": False}, T(3)),
]

# op, operand types, attrs, a piece of the message
BAD = [
    ("scan", [T("B", 3), T(5, "B", 3)], CELL, "scan: sequence 1 has shape [5, B, 3], expected [4, B, 3]"),
    ("scan", [T("B", 4), T(4, "B", 3)], CELL, "scan: carry 1 is [B, 4], the body takes [B, 3]"),
    ("item", [TupleType((T(4),))], {"index": 1}, "item: 1 is not a result of ([4])"),
    ("relu", [I("B")], {}, "relu: input is an int tensor int[B], expected a float tensor"),
    ("leaky_relu", [I(2)], {"alpha": 0.1}, "expected a float tensor"),
    ("elu", [I(2)], {"alpha": 0.1}, "expected a float tensor"),
    ("softplus", [I(2)], {}, "expected a float tensor"),
    ("floor", [I(2)], {}, "expected a float tensor"),
    ("ceil", [I(2)], {}, "expected a float tensor"),
    ("round", [I(2)], {}, "expected a float tensor"),
    ("sin", [I(2)], {}, "expected a float tensor"),
    ("cos", [I(2)], {}, "expected a float tensor"),
    ("tan", [I(2)], {}, "expected a float tensor"),
    ("asin", [I(2)], {}, "expected a float tensor"),
    ("acos", [I(2)], {}, "expected a float tensor"),
    ("atan", [I(2)], {}, "expected a float tensor"),
    ("sinh", [I(2)], {}, "expected a float tensor"),
    ("cosh", [I(2)], {}, "expected a float tensor"),
    ("asinh", [I(2)], {}, "expected a float tensor"),
    ("acosh", [I(2)], {}, "expected a float tensor"),
    ("atanh", [I(2)], {}, "expected a float tensor"),
    ("erf", [I(2)], {}, "expected a float tensor"),
    ("cross_rank_sum", [I(2)], {}, "cross_rank_sum: got int32, expected a float tensor"),
    ("where", [I(2), T(2), T(2)], {}, "where: condition is an int tensor"),
    ("where", [T(2), T(3), T(2)], {}, "where"),
    ("prod", [I("B")], {}, "prod: input is an int tensor"),
    ("sigmoid", [I(2)], {}, "expected a float tensor"),
    ("tanh", [I(2)], {}, "expected a float tensor"),
    ("exp", [I(2)], {}, "expected a float tensor"),
    ("log", [I(2)], {}, "expected a float tensor"),
    ("sqrt", [I(2)], {}, "expected a float tensor"),
    ("abs", [I(2)], {}, "expected a float tensor"),
    ("square", [I(2)], {}, "expected a float tensor"),
    ("sign", [I(2)], {}, "expected a float tensor"),
    ("step", [I(2)], {}, "expected a float tensor"),
    ("neg", [T(2), T(2)], {}, "neg: takes 1 operand(s), got 2"),
    ("stop_gradient", [T(2), T(2)], {}, "stop_gradient: takes 1 operand(s), got 2"),
    ("identity", [], {}, "identity: takes 1 operand(s), got 0"),
    ("add", [T("B", 3), T("B", 4)], {}, "add: shapes [B, 3] and [B, 4] do not broadcast: dim 3 against 4"),
    ("add", [T("B", 3), T("N", 3)], {}, "do not broadcast: dim B against N"),   # symbols never unify
    ("add", [T("B"), I("B")], {}, "add: cannot mix int and float tensors: got [B] and int[B]"),
    ("sub", [T(2, 3), T(3, 2)], {}, "do not broadcast"),
    ("mul", [T(2), T(3)], {}, "do not broadcast"),
    ("div", [I(2), I(2)], {}, "div: operand 1 is an int tensor"),
    ("pow", [T(2), I(2)], {}, "cannot mix int and float"),
    ("maximum", [I(2), I(2)], {}, "expected a float tensor"),
    ("bce_logits", [T("B", 1), I("B", 1)], {}, "cannot mix int and float"),
    ("bce_logits", [T("B", 2), T("B", 3)], {}, "do not broadcast"),
    ("xlogy", [T("B", 2), I("B", 2)], {}, "cannot mix int and float"),
    ("minimum", [T(2), T(4)], {}, "do not broadcast"),
    ("greater", [T(2), T(4)], {}, "do not broadcast"),
    ("greater_equal", [I(2), I(2)], {}, "expected a float tensor"),
    ("equal", [T(2), T(4)], {}, "do not broadcast"),
    ("input", [T(1)], {"name": "x", "type": T(1)}, "input: takes 0 operand(s), got 1"),
    ("param", [T(1)], {"name": "w", "type": T(1), "init": None, "trainable": True}, "takes 0 operand(s)"),
    ("const", [T(1)], {"value": 1.0, "type": T()}, "takes 0 operand(s)"),
    ("count", [T(1)], {"dims": (2,), "type": T()}, "takes 0 operand(s)"),
    ("matmul", [T("B", 3), T(4, 2)], {}, "matmul: inner dims differ: [B, 3] @ [4, 2] contracts 3 against 4"),
    ("matmul", [T("B"), T(4, 2)], {}, "matmul: left operand has shape [B], expected a matrix [rows, columns] or "
                                      "a batch of them"),
    ("matmul", [T("B", 4), T(4)], {}, "right operand has shape [4], expected a matrix"),
    ("matmul", [T(3, 5, 4), T(2, 4, 6)], {}, "matmul: the batch dims of [3, 5, 4] and [2, 4, 6] do not broadcast"),
    ("matmul_sum", [T("B", 5, 8), T(5, 3)], {"ta": True}, "matmul_sum: the batch dims differ"),
    ("take", [T(10, 4), T("B", "T")], {}, "take: ids are a float tensor [B, T], expected int ids"),
    ("take", [T("V", 4), I("B")], {}, "expected [rows, ...] with a number of rows"),
    ("scatter_add", [T("B", 4), I("B", "T")], {"rows": 10},
     "scatter_add: values have shape [B, 4], expected [B, T] + [...]"),
    ("matmul", [I("B", 4), T(4, 2)], {}, "matmul: left operand is an int tensor"),
    ("matmul", [T("B", 3), T(3, 4)], {"ta": True}, "contracts B against 3"),
    ("conv2d", [T("B", 3, 8, 8), T(4, 2, 3, 3)], {"stride": 1, "pad": 0},
     "conv2d: input has 3 channels [B, 3, 8, 8], expected 2 to match the weight [4, 2, 3, 3]"),
    ("conv2d", [T("B", 64), T(4, 1, 3, 3)], {"stride": 1, "pad": 0}, "expected a 4-D [N, C, H, W] tensor"),
    ("conv2d", [T("B", 1, 4, 4), T(4, 1, 5, 5)], {"stride": 1, "pad": 0},
     "conv2d: a 5x5 window (stride 1, pad 0) does not fit the 4x4 input [B, 1, 4, 4]"),
    ("conv2d", [T("B", 1, 8, 8), T(4, 1, 3, 3)], {"stride": 0, "pad": 0}, "expected stride >= 1"),
    ("conv2d", [T("B", 1, "H", 8), T(4, 1, 3, 3)], {"stride": 1, "pad": 0}, "must be numbers, not symbols"),
    ("conv2d", [I("B", 1, 8, 8), T(4, 1, 3, 3)], {"stride": 1, "pad": 0}, "is an int tensor"),
    ("conv2d_grad_input", [T("B", 4, 8, 8)], {"stride": 1, "pad": 1, "in_shape": ("B", 3, 8, 8)},
     "takes 2 operand(s), got 1"),
    ("conv2d_grad_weight", [T("B", 3, 8, 8)], {"stride": 1, "pad": 1, "kshape": (4, 3, 3, 3)},
     "takes 2 operand(s), got 1"),
    ("conv2d", [T("B", 4, 8, 8), T(6, 4, 3, 3)], {"stride": 1, "pad": 0, "groups": 2},
     "conv2d: input has 4 channels [B, 4, 8, 8], expected 8 (groups=2 of 4) to match the weight [6, 4, 3, 3]"),
    ("conv2d", [T("B", 4, 8, 8), T(5, 2, 3, 3)], {"stride": 1, "pad": 0, "groups": 2},
     "conv2d: the weight [5, 2, 3, 3] has 5 filters, expected a multiple of groups=2"),
    ("conv2d", [T("B", 4, 8, 8), T(4, 4, 3, 3)], {"stride": 1, "pad": 0, "dilation": 0},
     "conv2d: got groups=1, dilation=0, expected both at least 1"),
    ("conv2d", [T("B", 4, 8, 8), T(4, 4, 3, 3)], {"stride": 1, "pad": 0, "dilation": 4},
     "conv2d: a 9x9 window (stride 1, pad 0) does not fit the 8x8 input"),
    ("conv2d_grad_input", [T("B", 4, 5, 5), T(4, 3, 3, 3)], {"stride": 1, "pad": 1, "in_shape": ("B", 3, 8, 8)},
     "conv2d_grad_input: a convolution of [B, 3, 8, 8] gives 8x8, expected dy's 5x5"),
    ("conv2d_grad_input", [T("B", 4, 8, 8), T(4, 3, 3, 3)], {"stride": 1, "pad": 1, "in_shape": ("B", 2, 8, 8)},
     "expected 3 channels"),
    ("upsample", [T("B", 12)], {"factor": 2, "mode": "nearest"}, "upsample: input has shape [B, 12], expected a 4-D"),
    ("upsample", [T("B", 1, 2, 2)], {"factor": 2, "mode": "bicubic"}, 'got mode="bicubic", expected "nearest" or'),
    ("upsample_grad", [T("B", 1, 5, 4)], {"factor": 2, "mode": "nearest"},
     "upsample_grad: dy [B, 1, 5, 4] is not 2 times an input's size"),
    ("maxpool", [T("B", 3, 2, 2)], {"size": 3, "stride": 3}, "maxpool: a 3x3 window"),
    ("avgpool", [T("B", 3, 8, 8)], {"size": 3, "stride": 1, "pad": 2},
     "avgpool: got pad=2 for a 3x3 window, expected at most 1"),
    ("maxpool", [T("B", 12)], {"size": 2, "stride": 2}, "maxpool: input has shape [B, 12], expected a 4-D"),
    ("avgpool", [I("B", 1, 4, 4)], {"size": 2, "stride": 2}, "avgpool: input is an int tensor"),
    ("maxpool_grad", [T("B", 3, 8, 8)], {"size": 2, "stride": 2}, "takes 2 operand(s), got 1"),
    ("avgpool_grad", [], {"size": 2, "stride": 2, "in_shape": ("B", 3, 8, 8)}, "takes 1 operand(s), got 0"),
    ("reshape", [T("B", 784)], {"shape": ("B", 1, 28, 27)}, "cannot reshape [B, 784] (784·B elements) "
                                                            "into [B, 1, 28, 27] (756·B elements)"),
    ("reshape", [T("B", 784)], {"shape": (-1, 28, 28)}, "cannot reshape [B, 784] into [-1, 28, 28]"),
    ("reshape", [T("B", 6)], {"shape": ("N", 6)}, "cannot reshape"),
    ("reshape", [T("B", 6)], {"shape": ("B", -1, -1)}, "at most one -1"),
    ("reshape", [T("B", 6)], {"shape": ("B", 0)}, "dims must be positive or -1"),
    ("reshape", [T("B", 7)], {"shape": ("B", 2, -1)}, "cannot reshape [B, 7] into [B, 2, -1]"),
    ("transpose", [T("B", 3, 4)], {"perm": (0, 2)}, "transpose: perm [0, 2] is not a permutation of the 3 axes"),
    ("transpose", [T("B", 3)], {"perm": (0, 0)}, "is not a permutation"),
    ("broadcast_to", [T(2)], {"shape": ("B", 3)}, "broadcast_to: shapes [2] and [B, 3] do not broadcast"),
    ("broadcast_to", [T(3, 1)], {"shape": (3,)}, "broadcast_to: cannot broadcast [3, 1] to [3]"),
    ("concat", [T("B", 3), T("B", 4, 2)], {"axis": 1}, "concat: tensor 2 has shape [B, 4, 2], expected [B, 3]"),
    ("concat", [T("B", 3), T("B", 3)], {"axis": 0}, "cannot concatenate along the symbolic dim B"),
    ("concat", [T("B", 3), T("B", 3)], {"axis": 2}, "concat: axis 2 is out of range"),
    ("concat", [T("B", 3), I("B", 3)], {"axis": 1}, "cannot mix int and float"),
    ("concat", [], {"axis": 1}, "concat: needs at least one tensor"),
    ("slice", [T("B", 10)], {"axis": 1, "start": 5, "stop": 11}, "slice: [5:11] is out of range"),
    ("slice", [T("B", 10)], {"axis": 0, "start": 0, "stop": 2}, "out of range for axis 0"),
    ("strided_slice", [T("B", 10)], {"start": (0, 8), "step": (1, 1), "shape": ("B", 3)},
     "strided_slice: positions 8, 9, ... (3 of them) are out of range for axis 1 of [B, 10]"),
    ("strided_slice", [T("B", 10)], {"start": (0, 2), "step": (1, -3), "shape": ("B", 2)}, "out of range"),
    ("strided_slice", [T("B", 10)], {"start": (1, 0), "step": (1, 1), "shape": ("B", 10)},
     "axis 0 of [B, 10] is the symbolic dim B, which can only be taken whole"),
    ("strided_slice", [T("B", 10)], {"start": (0,), "step": (1,), "shape": ("B",)}, "need one entry per axis"),
    ("strided_slice_grad", [T("B", 5)], {"start": (0, 0), "step": (1, 3), "in_shape": ("B", 10)},
     "strided_slice_grad: positions 0, 3, ... (5 of them) are out of range for axis 1 of [B, 10]"),
    ("softmax", [T("B", 10)], {"axis": 2}, "softmax: axis 2 is out of range, expected -2 <= axis < 2"),
    ("softmax", [T()], {"axis": -1}, "softmax: input is a scalar"),
    ("log_softmax", [I("B", 10)], {"axis": -1}, "log_softmax: input is an int tensor"),
    ("xent", [T("B", 10), I("B", 10)], {}, "cross_entropy: labels have shape int[B, 10], expected int[B]"),
    ("xent", [T("B", 10), T("B", 5)], {}, "one-hot targets have shape [B, 5], expected [B, 10]"),
    ("xent", [T("B", 2, 5), I("B")], {}, "cross_entropy: labels have shape int[B], expected int[B, 2]: one class "
                                         "index per position of the logits (their last axis holds the classes)"),
    ("xent", [T(), I()], {}, "cross_entropy: logits are a single number"),
    ("xent", [I("B", 10), I("B")], {}, "logits is an int tensor"),
    ("one_hot", [T("B")], {"depth": 3}, "one_hot: labels are a float tensor [B], expected int class indices"),
    ("dropout_mask", [T("B", 3)], {"p": 1.0}, "dropout: rate p=1.0, expected 0 <= p < 1"),
    ("random_normal", [], {"shape": (2,), "std": -1.0}, "normal: std=-1.0, expected std >= 0"),
    ("dropout_mask", [I("B", 3)], {"p": 0.5}, "dropout: input is an int tensor"),
    ("sum", [T("B", 3)], {"axis": 2}, "sum: axis 2 is out of range"),
    ("sum", [T("B", 3)], {"axis": (1, -1)}, "sum: repeated axis in [1, -1]"),
    ("mean", [I("B")], {}, "mean: input is an int tensor"),
    ("max", [I("B")], {}, "max: input is an int tensor"),
    ("max", [T("B", 3)], {"axis": -3}, "max: axis -3 is out of range"),
]


def infer(op: str, types, attrs) -> TensorType:
    return REGISTRY[op].infer(types, attrs)


@pytest.mark.parametrize("op, types, attrs, want", GOOD, ids=[f"{r[0]}-{i}" for i, r in enumerate(GOOD)])
def test_shape_rule_accepts(op, types, attrs, want):
    assert infer(op, types, attrs) == want


@pytest.mark.parametrize("op, types, attrs, fragment", BAD, ids=[f"{r[0]}-{i}" for i, r in enumerate(BAD)])
def test_shape_rule_refuses(op, types, attrs, fragment):
    with pytest.raises(ShapeError) as info:
        infer(op, types, attrs)
    assert fragment in info.value.message


def test_every_op_has_good_and_bad_shape_cases():
    good, bad = {r[0] for r in GOOD}, {r[0] for r in BAD}
    assert not set(REGISTRY) - good, f"ops without an accepted-shape case: {sorted(set(REGISTRY) - good)}"
    assert not set(REGISTRY) - bad, f"ops without a refused-shape case: {sorted(set(REGISTRY) - bad)}"


def test_shape_errors_name_the_operand_at_fault():
    with pytest.raises(ShapeError) as info:
        infer("matmul", [T("B", 3), T(4, 2)], {})
    assert info.value.operand == 1
    with pytest.raises(ShapeError) as info:
        infer("xent", [T("B", 10), I("B", 2)], {})
    assert info.value.operand == 1
    with pytest.raises(ShapeError) as info:
        infer("div", [T(2), I(2)], {})
    assert "cannot mix" in info.value.message


# ---- broadcasting and symbolic sizes ----------------------------------------------------------------


@pytest.mark.parametrize("a, b, out", [
    ((), (), ()), (("B", 3), (), ("B", 3)), ((3,), ("B", 3), ("B", 3)), (("B", 1), (1, 4), ("B", 4)),
    (("B", 1, 5), (3, 1), ("B", 3, 5)), ((1,), ("B",), ("B",)), (("B",), ("B",), ("B",)),
])
def test_broadcasting_is_numpy_broadcasting_with_symbols(a, b, out):
    assert broadcast_shapes(a, b) == out
    assert broadcast_shapes(b, a) == out


def test_reshape_target_resolves_minus_one_with_symbols():
    assert reshape_target(("B", 2, 3), ("B", -1)) == ("B", 6)
    assert reshape_target(("B", "T", 4), ("T", "B", 2, -1)) == ("T", "B", 2, 2)
    assert reshape_target(("B", 6), (-1, "B")) == (6, "B")
    assert size_text(("B", 6)) == "6·B" and size_text(("B", "B")) == "B^2" and size_text(()) == "1"


# ---- through the language: layer rules and whole models ---------------------------------------------------


def out_type(body: str, name: str = "y") -> str:
    m = nnc.loads(f"model m {{\n{body}\noutput {name}\n}}")
    return str(m.graph.type_of(m.graph.outputs[name]))


def error_of(body: str) -> NncError:
    with pytest.raises(NncError) as info:
        nnc.loads(f"model m {{\n{body}\n}}")
    return info.value


@pytest.mark.parametrize("body, want", [
    ("input x: [B, 4]\ny = dense(x, 3)", "[B, 3]"),
    ("input x: f64[B, 4]\ny = dense(x, 3)", "f64[B, 3]"),
    ("input x: [B, 3, 32, 32]\ny = conv2d(x, 8, 3, stride=2, pad=1)", "[B, 8, 16, 16]"),
    ("input x: [B, 3, 32, 32]\ny = conv2d(x, 8, [3, 5])", "[B, 8, 30, 28]"),
    ("input x: [B, 3, 8, 8]\ny = maxpool(x, 2)", "[B, 3, 4, 4]"),
    ("input x: [B, 3, 8, 8]\ny = avgpool(x, 3, stride=1)", "[B, 3, 6, 6]"),
    ("input x: [B, 3, 8, 8]\ny = global_avgpool(x)", "[B, 3]"),
    ("input x: [B, 3, 8, 8]\ny = flatten(x)", "[B, 192]"),
    ("input x: [B, 3, 8, 8]\ny = batchnorm(x)", "[B, 3, 8, 8]"),
    ("input x: [B, 7]\ny = batchnorm(x)", "[B, 7]"),
    ("input x: [B, 5, 7]\ny = layernorm(x)", "[B, 5, 7]"),
    ("input x: [B, 7]\ny = dropout(x, 0.3)", "[B, 7]"),
    ("input x: [B, 784]\ny = reshape(x, [B, 1, 28, 28])", "[B, 1, 28, 28]"),
    ("input x: [B, 1, 28, 28]\ny = reshape(x, [B, -1])", "[B, 784]"),
    ("input x: [B, 3, 4]\ny = transpose(x)", "[4, 3, B]"),
    ("input x: [B, 3, 4]\ny = transpose(x, [0, 2, 1])", "[B, 4, 3]"),
    ("input a: [B, 3]\ninput b: [B, 5]\ny = concat([a, b])", "[B, 8]"),
    ("input a: [B, 3]\ny = concat([a, a, a], axis=-1)", "[B, 9]"),
    ("input x: [B, 3]\ny = sum(x)", "[]"),
    ("input x: [B, 3]\ny = mean(x, axis=0)", "[3]"),
    ("input x: [B, 3]\ny = max(x, axis=1, keepdims=true)", "[B, 1]"),
    ("input x: [B, 3]\ny = softmax(x)", "[B, 3]"),
    ("input x: [B, 3]\ny = log_softmax(x, axis=0)", "[B, 3]"),
    ("input x: [B, 3]\ny = x * 2 + 1", "[B, 3]"),
    ("input x: [B, 3]\ninput b: [3]\ny = x - b", "[B, 3]"),
    ("input x: [B, 1]\ninput w: [1, 4]\ny = maximum(x, w)", "[B, 4]"),
    ("input x: [B, 3]\ny = leaky_relu(x, alpha=0.2) + elu(x) + step(x) + sigmoid(x) + tanh(x)", "[B, 3]"),
    ("input x\ny = exp(x) + log(x) + sqrt(x) + abs(x) + square(x) + 3 ** x", "[]"),
    ("input x: [B, 3]\ninput t: [B, 3]\ny = mse(x, t) + mae(x, t) + binary_cross_entropy(x, t)", "[]"),
    ("input x: [B, 3]\ninput k: int[B]\ny = cross_entropy(x, k) + hinge(x, k)", "[]"),
    ("input x: [B, 3]\ninput t: [B, 3]\ny = cross_entropy(x, t)", "[]"),
    ("input x: [B, 3]\ny = mse(x, 0)", "[]"),
    ("input x: [B, 3]\nh = dense(x, 2)\ny = l1(h.weight) + l2(h.weight, h.bias)", "[]"),
    ("input x: [B, 4]\ny = -x ** 2", "[B, 4]"),
    ("input k: int[B]\ny = k * 2 - 1", "int[B]"),
])
def test_layer_and_expression_shapes(body, want):
    assert out_type(body) == want


def test_symbolic_batch_flows_through_a_whole_model():
    m = nnc.load("examples/lenet5.nn")
    rows = {info.label: str(info.type) for info in m.graph.statements if info.kind == "assign"}
    assert rows == {"c1": "[B, 6, 14, 14]", "c2": "[B, 16, 5, 5]", "h1": "[B, 120]", "h2": "[B, 84]",
                    "logits": "[B, 10]"}


@pytest.mark.parametrize("body, message", [
    ("input x: [B, 16, 5, 5]\ny = dense(x, 3)\noutput y",
     "dense: input has shape [B, 16, 5, 5], expected [B, features] or a sequence [B, T, features]"),
    ("input x: [B]\ny = dense(x, 3)\noutput y",
     "dense: input has shape [B], expected [B, features] or a sequence [B, T, features]"),
    ("input x: [B, F]\ny = dense(x, 3)\noutput y", "dense: input features are the symbol F, expected a number"),
    ("input x: [B, 4]\ny = dense(x, 0)\noutput y", "dense: units must be at least 1, got 0"),
    ("input k: int[B, 4]\ny = dense(k, 2)\noutput y",
     "dense: input is an int tensor int[B, 4], expected a float tensor"),
    ("input x: [B, 3, 8, 8]\ny = conv2d(x, 0, 3)\noutput y", "conv2d: filters must be at least 1, got 0"),
    ("input x: [B, 3, 8, 8]\ny = conv2d(x, 2, 3, stride=0)\noutput y", "conv2d: stride must be at least 1, got 0"),
    ("input x: [B, 3, 8, 8]\ny = conv2d(x, 2, 3, pad=-1)\noutput y", "conv2d: pad must be 0 or more, got -1"),
    ("input x: [B, 3, 8, 8]\ny = conv2d(x, 2, [3, 3, 3])\noutput y",
     "conv2d: kernel must be an integer or [height, width], got a list"),
    ("input x: [B, 3, 8, 8]\ny = maxpool(x, 0)\noutput y", "maxpool: size must be at least 1, got 0"),
    ("input x: [B, 3]\ny = global_avgpool(x)\noutput y", "global_avgpool: input has shape [B, 3], expected a 4-D"),
    ("input x: [B, 3, 4]\ny = batchnorm(x)\noutput y",
     "batchnorm: input has shape [B, 3, 4], expected [B, features] or [B, C, H, W]"),
    ("input x: [B, 3]\ny = batchnorm(x, momentum=2)\noutput y", "batchnorm: momentum must be between 0 and 1, got 2"),
    ("input x: [B, F]\ny = layernorm(x)\noutput y", "layernorm: input has shape [B, F], expected a numeric last dim"),
    ("input x: [B]\ny = flatten(x)\noutput y", "flatten: input has shape [B], expected at least 2 dims"),
    ("input x: [B, T, 3]\ny = flatten(x)\noutput y", "flatten: cannot flatten the symbolic dims of [B, T, 3]"),
    ("input x: [B, 3]\ny = concat([])\noutput y", "concat: needs at least one tensor"),
    ("input x: [B, 3]\ninput t: [B]\noutput x\nloss mse(x, t)",
     "mse: target has shape [B], expected [B, 3] like the prediction"),
    ("input x: [B, 3]\ninput k: int[B, 3]\noutput x\nloss mae(x, k)", "mae: target is an int tensor"),
    ("input x: [B, 3, 2]\ninput k: int[B]\noutput x\nloss hinge(x, k)",
     "hinge: scores have shape [B, 3, 2], expected [batch, classes]"),
    ("input x: [B, 3]\ninput k: int[B]\noutput x\nloss cross_entropy(k, x)", "cross_entropy: logits is an int tensor"),
    ("input x: [B, 3]\ny = l2()\noutput y", "l2: needs at least one parameter"),
    ("input x: [B, 3]\ny = normal(0, -1)\noutput x", "normal: std must be 0 or more, got -1"),
    ("input x: [B, 3]\ny = uniform(1, 0)\noutput x", "uniform: hi must be at least lo, got lo=1.0, hi=0.0"),
])
def test_layer_shape_errors(body, message):
    err = error_of(body)
    assert err.message.startswith(message)
    assert err.loc is not None and err.loc.span.line >= 2


# ---- the NumPy reference agrees with the shape rule ----------------------------------------------------

BATCH = 3  # the size every symbolic dim gets when running references


def sample(t: TensorType, rng) -> np.ndarray:
    shape = concrete(t.shape, BATCH)
    if t.is_float:
        return rng.normal(size=shape).astype(t.dtype)
    return rng.integers(0, 2, size=shape)  # valid class indices for every depth >= 2


def concrete(shape, size: int = BATCH) -> tuple:
    return tuple(size if isinstance(d, str) else d for d in shape)


def _computed(op: str) -> bool:  # the loop's and its results' references: tests/test_scan.py
    return not (REGISTRY[op].is_a(LEAF) or REGISTRY[op].is_a(CONTROL) or REGISTRY[op].is_a(PROJECTION))


@pytest.mark.parametrize("op, types, attrs, want", [r for r in GOOD if _computed(r[0])],
                         ids=[f"{r[0]}-{i}" for i, r in enumerate(GOOD) if _computed(r[0])])
def test_reference_produces_what_the_shape_rule_promises(op, types, attrs, want):
    rng = np.random.default_rng(0)
    args = [sample(t, rng) for t in types]
    run_attrs = {k: concrete(v) if isinstance(v, tuple) else v for k, v in attrs.items()}
    if REGISTRY[op].is_a(RANDOM):
        run_attrs["rng"] = rng
    with np.errstate(all="ignore"):  # random values: log and pow of negatives are NaN, which is fine here
        out = np.asarray(REGISTRY[op].ref(*args, **run_attrs))
    assert out.shape == concrete(want.shape)
    assert (out.dtype.kind == "f") == want.is_float
    if want.is_float:
        assert out.dtype == np.dtype(want.dtype)
