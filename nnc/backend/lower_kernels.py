"""Which generator emits the kernel anchored at each op: the kernel lowering table.

Every generator has one signature, `generate(kc) -> None`: it writes the loops of one kernel through
its `KernelContext` (nnc/backend/kernel_context.py), evaluating fused pointwise nodes with the
pointwise table (nnc/backend/lower_pointwise.py). Kernels without an anchor are pointwise loops
(nnc/backend/kernels/pointwise.py). Leaves are storage and are in neither table; nor are the ops
pointwise kernels read in place (`READ_IN_PLACE`: slices).
"""

from __future__ import annotations

from ..ir import ops
from .kernels import collective, conv, gather, matmul, movement, nn, pool, reduce, scan, upsample

KERNELS = {
    ops.conv2d: conv.emit_conv2d,
    ops.conv2d_grad_input: conv.emit_conv2d_grad_input,
    ops.conv2d_grad_weight: conv.emit_conv2d_grad_weight,
    ops.upsample: upsample.emit_upsample,
    ops.upsample_grad: upsample.emit_upsample_grad,
    ops.maxpool: pool.emit_maxpool,
    ops.avgpool: pool.emit_avgpool,
    ops.maxpool_grad: pool.emit_maxpool_grad,
    ops.avgpool_grad: pool.emit_avgpool_grad,
    ops.matmul: matmul.emit_matmul,
    ops.matmul_sum: matmul.emit_matmul_sum,
    ops.take: gather.emit_take,
    ops.scatter_add: gather.emit_scatter_add,
    ops.reshape: movement.emit_reshape,
    ops.transpose: movement.emit_transpose,
    ops.concat: movement.emit_concat,
    ops.strided_slice: movement.emit_strided_slice,
    ops.strided_slice_grad: movement.emit_strided_slice_grad,
    ops.softmax: nn.emit_softmax,
    ops.log_softmax: nn.emit_log_softmax,
    ops.xent: nn.emit_xent,
    ops.one_hot: nn.emit_one_hot,
    ops.dropout_mask: nn.emit_dropout_mask,
    ops.random_normal: nn.emit_random_normal,
    ops.scan: scan.emit_scan,
    ops.sum: reduce.emit_reduce,
    ops.mean: reduce.emit_reduce,
    ops.max: reduce.emit_reduce,
    ops.prod: reduce.emit_reduce,
    ops.cross_rank_sum: collective.emit_cross_rank_sum,
}
