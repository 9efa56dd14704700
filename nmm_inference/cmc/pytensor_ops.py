"""PyTensor Op for the one-source CMC spectrum, with its exact gradient.

``pytensor.grad`` cannot pass through complex numbers (``../shared/docs/stack-notes.md``),
and a plain PyTensor graph of the delayed, eigenvalue-conditioned spectrum would be both
complex and slow.  This Op wraps the numba kernel of :mod:`nmm_inference.cmc.kernel`, which
returns the spectrum and its Jacobian in one pass; the gradient is ``g @ jac``.  It is
registered for PyTensor's NUMBA backend (used by nutpie and by ``compile_kwargs={"mode":
"NUMBA"}``), so no Python object mode is involved there.

Importing this module imports pytensor; ``import nmm_inference`` does not.
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.numba.dispatch.basic import numba_njit, register_funcify_default_op_cache_key

from .kernel import N_FREE, _grid, _kernel_grid
from .spectra import check_freqs

__all__ = ["CMCSpectrumOp", "cmc_spectrum"]

_MAX_ITER = 50
_TOL = 1e-13


class CMCSpectrumOp(Op):
    """Spectrum of the one-source LFP CMC as a PyTensor Op.

    Input: ``theta`` (25,) free parameters on SPM's scale (order
    :data:`nmm_inference.cmc.kernel.FREE_NAMES`).  Outputs: ``spectrum`` (n_freqs,),
    ``jacobian`` (n_freqs, 25) and ``max_growth_rate`` (scalar, 1/s).

    Parameters
    ----------
    hz : array-like, shape (n_freqs,)
        Frequencies in Hz (fixed for the Op, so the grid's log-frequencies and SPM's DCT
        basis are computed once).
    reject_growing : bool
        If True, parameter values whose delayed Jacobian has a growing mode give a spectrum
        of ``+inf`` (so the likelihood is ``-inf`` and samplers reject them).  If False
        (SPM's behaviour), SPM's eigenvalue conditioning is applied.  Either way a delay
        operator that fails to converge gives ``+inf``.
    """

    __props__ = ("hz", "reject_growing")

    def __init__(self, hz, reject_growing: bool = False):
        self.hz = tuple(float(h) for h in check_freqs(hz))
        self.reject_growing = bool(reject_growing)
        super().__init__()

    def _arrays(self):
        hz = np.asarray(self.hz)
        lnf, Xd = _grid(hz)
        return hz, lnf, Xd

    def make_node(self, theta):
        theta = pt.as_tensor_variable(theta).astype("float64")
        if theta.type.ndim != 1:
            raise TypeError("theta must be a vector")
        return Apply(self, [theta], [pt.dvector(), pt.dmatrix(), pt.dscalar()])

    def perform(self, node, inputs, output_storage):
        (theta,) = inputs
        if not hasattr(self, "_grid_cache"):
            self._grid_cache = self._arrays()
        hz, lnf, Xd = self._grid_cache
        theta = np.ascontiguousarray(theta, dtype=np.float64)
        if theta.shape != (N_FREE,) or not np.all(np.isfinite(theta)):
            if theta.shape != (N_FREE,):
                raise ValueError(f"theta must have shape ({N_FREE},), got {theta.shape}")
            y = np.full(hz.shape[0], np.inf)
            jac = np.zeros((hz.shape[0], N_FREE))
            maxre = np.inf
        else:
            try:
                y, jac, status, maxre = _kernel_grid(theta, hz, lnf, Xd, True, _MAX_ITER, _TOL)
            except np.linalg.LinAlgError:  # singular Jacobian: reject the point
                y, jac, status, maxre = np.full(hz.shape[0], np.inf), np.zeros((hz.shape[0], N_FREE)), 2, np.inf
            if self.reject_growing and status == 1:
                y = np.full_like(y, np.inf)
        output_storage[0][0] = y
        output_storage[1][0] = jac
        output_storage[2][0] = np.asarray(maxre, dtype=np.float64)

    def infer_shape(self, node, shapes):
        nf = len(self.hz)
        return [(nf,), (nf, N_FREE), ()]

    def connection_pattern(self, node):
        return [[True, True, True]]

    def pullback(self, inputs, outputs, output_grads):
        gy = output_grads[0]
        if isinstance(gy.type, DisconnectedType):
            return [pt.zeros_like(inputs[0])]
        for g in output_grads[1:]:
            if not isinstance(g.type, DisconnectedType):
                raise NotImplementedError(
                    "gradients through the Jacobian or the growth-rate output are not implemented")
        return [pt.dot(gy, outputs[1])]


@register_funcify_default_op_cache_key(CMCSpectrumOp)
def _numba_funcify_cmc(op, node=None, **kwargs):
    reject = op.reject_growing
    hz, lnf, Xd = op._arrays()
    nf = hz.shape[0]

    @numba_njit
    def cmc_spectrum_numba(theta):
        ok = True
        for i in range(theta.shape[0]):
            if not np.isfinite(theta[i]):
                ok = False
        if not ok:
            return np.full(nf, np.inf), np.zeros((nf, N_FREE)), np.asarray(np.inf)
        try:
            y, jac, status, maxre = _kernel_grid(np.ascontiguousarray(theta), hz, lnf, Xd, True,
                                                 _MAX_ITER, _TOL)
        except Exception:  # singular Jacobian (LinAlgError): reject the point
            return np.full(nf, np.inf), np.zeros((nf, N_FREE)), np.asarray(np.inf)
        if reject and status == 1:
            y = np.full(nf, np.inf)
        return y, jac, np.asarray(maxre)

    return cmc_spectrum_numba


def cmc_spectrum(theta, hz, *, reject_growing: bool = False):
    """Symbolic spectrum of the one-source CMC (see :class:`CMCSpectrumOp`).

    Returns the spectrum (n_freqs,) and the maximal growth rate of the delayed Jacobian.

    Parameters
    ----------
    theta : tensor-like, shape (25,)
        Free parameters on SPM's scale, in the order of
        :data:`nmm_inference.cmc.kernel.FREE_NAMES`; cast to float64.  Non-finite values
        give a spectrum of ``+inf``.
    hz : array-like, shape (n_freqs,)
        Frequencies in Hz (a constant of the graph, checked by
        :func:`~nmm_inference.cmc.spectra.check_freqs`).
    reject_growing : bool, optional
        Give a spectrum of ``+inf`` where the delayed Jacobian has a growing mode, instead
        of SPM's eigenvalue conditioning (see :class:`CMCSpectrumOp`).

    Returns
    -------
    y : TensorVariable, shape (n_freqs,)
        Predicted LFP auto-spectrum (``spm_csd_mtf``); differentiable with respect to
        ``theta``.
    max_growth_rate : TensorVariable, scalar
        Largest real part of the delayed Jacobian's eigenvalues (1/s); no gradient flows
        through it.

    Raises
    ------
    TypeError
        If ``theta`` is not a vector.
    ParameterError
        If ``hz`` is not a valid frequency grid.
    """
    y, _, maxre = CMCSpectrumOp(hz, reject_growing)(theta)
    return y, maxre
