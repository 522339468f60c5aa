"""The primitive ops: importing this package fills the registry.

Every op is a constant of this package, named as in the graph (`ops.matmul`, `ops.sum`):

    from nnc.ir import ops
    if g.op(n) is ops.xent: ...

Names that shadow a builtin (sum, max, abs, pow, round, slice, input) do so only as attributes of this package.
"""

from .collective import cross_rank_sum
from .control import item, scan
from .conv import (
                          avgpool,
                          avgpool_grad,
                          conv2d,
                          conv2d_grad_input,
                          conv2d_grad_weight,
                          maxpool,
                          maxpool_grad,
                          upsample,
                          upsample_grad,
)
from .elementwise import (
                          abs_ as abs,
                          add,
                          bce_logits,
                          div,
                          elu,
                          equal,
                          exp,
                          greater,
                          greater_equal,
                          identity,
                          leaky_relu,
                          log,
                          maximum,
                          minimum,
                          mul,
                          neg,
                          pow_ as pow,
                          relu,
                          sigmoid,
                          sign,
                          softplus,
                          sqrt,
                          square,
                          step,
                          stop_gradient,
                          sub,
                          tanh,
                          where,
                          xlogy,
)
from .gather import IndexUse, scatter_add, take
from .leaf import const, count, input_ as input, param
from .linalg import matmul, matmul_sum
from .movement import (
                          broadcast_to,
                          concat,
                          reshape,
                          slice_ as slice,
                          strided_slice,
                          strided_slice_grad,
                          transpose,
)
from .nn import dropout_mask, log_softmax, one_hot, random_normal, softmax, xent
from .reduce import max_ as max, mean, prod, sum_ as sum
from .registry import (
                          BINARY,
                          COMPARE,
                          CONSTANT,
                          CONTRACTION,
                          CONTROL,
                          ELEMENTWISE,
                          EXPAND,
                          GROUPS,
                          LEAF,
                          MOVEMENT,
                          NORMALIZE,
                          POOL,
                          PROJECTION,
                          RANDOM,
                          REDUCE,
                          REGISTRY,
                          UNARY,
                          VIEW,
                          VJP,
                          Group,
                          LabelUse,
                          NoGradient,
                          Op,
                          VJPAll,
                          defvjp,
                          defvjp_all,
                          get,
                          nograd,
                          ops_in,
)
from .special import (
                          acos,
                          acosh,
                          asin,
                          asinh,
                          atan,
                          atanh,
                          ceil,
                          cos,
                          cosh,
                          erf,
                          floor,
                          round_ as round,
                          sin,
                          sinh,
                          tan,
)

# every op of the registry, by the name graphs and messages use (tests check the two agree)
__all__ = [
    "strided_slice", "strided_slice_grad",  # x[...] and its gradient (movement.py)
    "matmul_sum", "scatter_add", "take", "IndexUse",  # batched products, embeddings (gather.py)
    "random_normal",  # noise (nn.py)
    "identity",  # a value under another name (elementwise.py)
    "cross_rank_sum",  # the sum over a data-parallel run's ranks (collective.py)
    "upsample", "upsample_grad",  # nearest and bilinear upsampling (conv.py)
    "softplus", "xlogy",  # (elementwise.py)
    "floor", "ceil", "round", "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh",
    "atanh", "erf",  # rounding, trigonometric, hyperbolic, erf (special.py)
    "where",  # the elementwise choice (elementwise.py)
    "prod",  # the product over axes (reduce.py)
    "abs", "add", "avgpool", "avgpool_grad", "bce_logits", "broadcast_to", "concat", "const", "conv2d",
    "conv2d_grad_input", "conv2d_grad_weight", "count", "div", "dropout_mask", "elu", "equal", "exp", "greater",
    "greater_equal", "input", "item", "leaky_relu", "log", "log_softmax", "matmul", "max", "maximum", "maxpool",
    "maxpool_grad", "mean", "minimum", "mul", "neg", "one_hot", "param", "pow", "relu", "scan", "reshape", "sigmoid",
    "sign", "slice", "softmax", "sqrt", "square", "step", "stop_gradient", "sub", "sum", "tanh", "transpose", "xent",
    "BINARY", "COMPARE", "CONTROL", "PROJECTION", "VJPAll", "defvjp_all",
    "CONSTANT", "CONTRACTION", "ELEMENTWISE", "EXPAND", "GROUPS", "LEAF", "MOVEMENT", "NORMALIZE", "POOL", "RANDOM",
    "REDUCE", "REGISTRY", "UNARY", "VIEW", "VJP", "Group", "LabelUse", "NoGradient", "Op", "defvjp", "get", "nograd",
    "ops_in",
]
