"""Collectives: values summed over the ranks of a data-parallel run (nnc/train/distributed.py).

`cross_rank_sum(x)` is the sum of x over the ranks: every rank gets Σ_r x_r. Synchronized batch norm sums
each rank's per-channel sums and counts with it, so every rank normalizes with the statistics of the global
batch. In one process it is the identity (its NumPy reference); the native kernel calls the collective the
run connects (nnc/backend/kernels/collective.py) and is the identity when none is.

Its gradient follows the data-parallel loss, Σ_r w_r·L_r with w_r rank r's share of the batch (rows_r / b):
rank r differentiates its own L_r, and the engine scales the result by w_r before summing. For y = Σ_r x_r
the gradient of the whole loss with respect to x_r is Σ_r' w_r'·dy_r', which in rank r's units (divided by
w_r) is `cross_rank_sum(dy, adjoint=True)`: (Σ_r' w_r'·dy_r') / w_r. The adjoint's own gradient is the plain
sum again, so each is the other's VJP, and both are the identity with one rank.
"""

from __future__ import annotations

import numpy as np

from ...errors import ShapeError
from .registry import VJP, defop, defvjp


def _same_float(ts, *, adjoint=False):
    if not ts[0].is_float:
        raise ShapeError(f"cross_rank_sum: got {ts[0].dtype}, expected a float tensor")
    return ts[0]


def _identity(x, *, adjoint=False):
    return np.array(x, copy=True)


cross_rank_sum = defop("cross_rank_sum", arity=1, groups=set(), shape=_same_float, ref=_identity,
                       doc="the sum over the ranks of a data-parallel run (adjoint: the share-weighted sum over "
                           "the ranks divided by this rank's share); the identity in one process",
                       attrs=("adjoint",))
defvjp(cross_rank_sum, VJP("cross_rank_sum: dx = cross_rank_sum(dy) with the other weighting (the adjoint)",
                           lambda c, dy: c.op(cross_rank_sum, dy, adjoint=not c.attrs.get("adjoint", False)),
                           partial="1"))
