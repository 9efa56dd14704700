"""PyTensor Op for the warped log density (used by PyMC's NUTS).

Importing this module imports pytensor.
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from . import _target as T


class _WarpGradOp(Op):
    def __init__(self, buf):
        self.buf = np.ascontiguousarray(buf, dtype=float)
        super().__init__()

    def make_node(self, z):
        z = pt.as_tensor_variable(z).astype("float64")
        return Apply(self, [z], [pt.dvector()])

    def perform(self, node, inputs, output_storage):
        _, g = T.warp_logp_grad(np.ascontiguousarray(inputs[0]), self.buf)
        output_storage[0][0] = np.asarray(g, dtype=float)


class WarpLogpOp(Op):
    """``log pi(z)`` of :func:`nmm_inference.inference._target.warp_logp_grad` for a buffer."""

    def __init__(self, buf):
        self.buf = np.ascontiguousarray(buf, dtype=float)
        self._grad_op = _WarpGradOp(self.buf)
        super().__init__()

    def make_node(self, z):
        z = pt.as_tensor_variable(z).astype("float64")
        if z.type.ndim != 1:
            raise TypeError("z must be a vector")
        return Apply(self, [z], [pt.dscalar()])

    def perform(self, node, inputs, output_storage):
        lp, _ = T.warp_logp_grad(np.ascontiguousarray(inputs[0]), self.buf)
        output_storage[0][0] = np.asarray(lp, dtype=float)

    def pullback(self, inputs, outputs, output_grads):
        return [output_grads[0] * self._grad_op(inputs[0])]

    def L_op(self, inputs, outputs, output_grads):   # older PyTensor name
        return self.pullback(inputs, outputs, output_grads)
