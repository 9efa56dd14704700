"""PyTensor Op for the adiabatic reduction, with analytic (forward-mode) gradients.

Import this module explicitly (``from nmm_inference.adiabatic.pytensor_ops import
adiabatic_features``); ``nmm_inference.adiabatic`` never imports PyTensor.

The Op maps the physical parameters ``(G[10], T[4], R, U[4])`` to a flat vector of features
(growth rates, frequencies, cubic coefficients and, for a chosen set of active modes, the
state's amplitudes, frequencies and envelopes) and also returns their Jacobian, computed by the
forward-mode sensitivities of :mod:`nmm_inference.adiabatic._core` (derivatives through the
nonlinear eigenproblem, the slaved quadratic terms and the cubic profiles).  ``L_op`` contracts
the output gradient with that Jacobian, so ``pytensor.grad`` works on every feature; all values
are real (``pytensor.grad`` does not pass complex numbers, see ``stack-notes.md`` §0.2).

Mode order: modes are sorted by decreasing growth rate at the evaluated parameters; when two
growth rates cross, the features swap columns (as any sorted-eigenvalue feature does).
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from ..errors import ParameterError, ReductionError
from ._core import N_PARAMS, check_inputs
from .amplitude import _state_jacobian
from .reduction import reduce_cmc

__all__ = ["AdiabaticFeaturesOp", "adiabatic_features", "feature_layout"]


def feature_layout(n_modes, active=None):
    """Names and shapes of the features, in the order of the flat output.

    Parameters
    ----------
    n_modes : int
        Number of (least damped) modes whose sigma, omega, a and b are returned.
    active : tuple of int, optional
        Active modes of the state whose amplitudes, frequencies and envelopes are returned.

    Returns
    -------
    list of (name, shape)
    """
    lay = [("sigma", (n_modes,)), ("omega", (n_modes,)), ("a", (n_modes, n_modes)),
           ("b", (n_modes, n_modes))]
    if active:
        na = len(active)
        lay += [("amplitudes", (na,)), ("frequencies_hz", (na,)), ("envelopes", (na, 4))]
    return lay


def _features(G, T, R, U, n_modes, active):
    """Flat feature vector and its Jacobian (n_out, 19); NaN where undefined."""
    lay = feature_layout(n_modes, active)
    n_out = sum(int(np.prod(s)) for _, s in lay)
    val = np.full(n_out, np.nan)
    jac = np.full((n_out, N_PARAMS), np.nan)
    try:
        red = reduce_cmc(G, T, R, U, gradients=True)
    except (ReductionError, ParameterError):
        return val, jac
    m = min(n_modes, red.n_modes)
    t = red._tangents()
    pos = 0
    blocks = [(red.sigma, t["d_sigma"]), (red.omega, t["d_omega"])]
    for x, dx in blocks:
        val[pos:pos + m] = x[:m]
        jac[pos:pos + m] = dx[:, :m].T
        pos += n_modes
    for x, dx in ((red.a, t["d_a"]), (red.b, t["d_b"])):
        blk_v = np.full((n_modes, n_modes), np.nan)
        blk_j = np.full((n_modes, n_modes, N_PARAMS), np.nan)
        blk_v[:m, :m] = x[:m, :m]
        blk_j[:m, :m] = np.moveaxis(dx[:, :m, :m], 0, -1)
        val[pos:pos + n_modes ** 2] = blk_v.ravel()
        jac[pos:pos + n_modes ** 2] = blk_j.reshape(-1, N_PARAMS)
        pos += n_modes ** 2
    if active:
        S = list(active)
        na = len(S)
        if max(S) < red.n_modes:
            a, b, sig = red.a, red.b, red.sigma
            aSS = a[np.ix_(S, S)]
            I = np.linalg.solve(aSS, -sig[S])
            if np.all(I > 0):
                r = np.sqrt(I)
                eta3 = red._core["eta3"]
                nu = red._core["nu"]
                prof = nu[S] + np.einsum("kji,j->ki", eta3[np.ix_(S, S)], I)
                freq = (red.omega[S] + b[np.ix_(S, S)] @ I) / (2 * np.pi)
                env = 2.0 * r[:, None] * np.abs(prof)
                dj = _state_jacobian(S, I, r, b, aSS, prof, nu, eta3, t)
                val[pos:pos + na] = r
                jac[pos:pos + na] = dj["amplitudes"]
                val[pos + na:pos + 2 * na] = freq
                jac[pos + na:pos + 2 * na] = dj["frequencies_hz"]
                val[pos + 2 * na:pos + 6 * na] = env.ravel()
                jac[pos + 2 * na:pos + 6 * na] = dj["envelopes"].reshape(-1, N_PARAMS)
    return val, jac


class AdiabaticFeaturesOp(Op):
    """``(G, T, R, U) -> (features, jacobian)`` for the adiabatic reduction.

    Parameters
    ----------
    n_modes : int
        Number of least-damped modes reported.
    active : tuple of int
        Active modes of the state whose amplitudes, frequencies and envelopes are reported
        (empty for none).  The state's intensities solve ``a_SS I = -sigma_S``; where they are not
        all positive the state does not exist and its features are NaN.
    """

    __props__ = ("n_modes", "active")

    def __init__(self, n_modes=2, active=()):
        self.n_modes = int(n_modes)
        self.active = tuple(int(k) for k in active)
        if self.n_modes < 1:
            raise ParameterError(f"n_modes must be >= 1, got {n_modes}")
        if any(k < 0 for k in self.active) or len(set(self.active)) != len(self.active):
            raise ParameterError(f"active must hold distinct mode indices, got {active!r}")

    def make_node(self, G, T, R, U):
        ins = [pt.as_tensor_variable(np.float64(x) if isinstance(x, float) else x).astype("float64")
               for x in (G, T, R, U)]
        for x, nd, name in zip(ins, (1, 1, 0, 1), ("G", "T", "R", "U")):
            if x.ndim != nd:
                raise ParameterError(f"{name} must be a tensor of rank {nd}, got rank {x.ndim}")
        return Apply(self, ins, [pt.dvector(), pt.dmatrix()])

    def perform(self, node, inputs, outputs):
        G, T, R, U = inputs
        G, T, R, U = check_inputs(G, T, R, U)
        val, jac = _features(G, T, R, U, self.n_modes, self.active)
        outputs[0][0] = val
        outputs[1][0] = jac

    def infer_shape(self, *args):
        """Output shapes (signature-agnostic across PyTensor versions: ``(.., node, shapes)``)."""
        n = sum(int(np.prod(s)) for _, s in feature_layout(self.n_modes, self.active))
        return [(n,), (n, N_PARAMS)]

    def connection_pattern(self, node):
        return [[True, False]] * 4

    def pullback(self, inputs, outputs, output_grads):
        """Vector-Jacobian product: ``dL/dtheta = dL/dfeatures . J``."""
        g_val = output_grads[0]
        if isinstance(g_val.type, DisconnectedType):
            return [pt.zeros_like(x) for x in inputs]
        jac = outputs[1]
        # NaN features (undefined state) must not poison the gradient of the others
        gj = pt.dot(g_val, pt.switch(pt.isnan(jac), 0.0, jac))
        return [gj[:10], gj[10:14], gj[14], gj[15:19]]

    def L_op(self, inputs, outputs, output_grads):
        """Same as :meth:`pullback` (for PyTensor versions that call ``L_op``)."""
        return self.pullback(inputs, outputs, output_grads)


def adiabatic_features(G, T, R, U, *, n_modes=2, active=()):
    """Symbolic adiabatic-reduction features with analytic gradients.

    Parameters
    ----------
    G : TensorVariable or array, shape (10,)
        Gains G1..G10 (1/s).
    T : TensorVariable or array, shape (4,)
        Time constants (s).
    R : TensorVariable or float
        Sigmoid slope.
    U : TensorVariable or array, shape (4,)
        Constant input.
    n_modes : int, optional
        Least-damped modes to report.
    active : tuple of int, optional
        State whose amplitudes, frequencies (Hz) and envelopes (mV) to report.

    Returns
    -------
    dict of TensorVariable
        ``sigma`` (n_modes,) 1/s, ``omega`` (n_modes,) rad/s, ``a``, ``b`` (n_modes, n_modes)
        and, with ``active``, ``amplitudes``, ``frequencies_hz`` (n_active,) and ``envelopes``
        (n_active, 4).
    """
    flat, _ = AdiabaticFeaturesOp(n_modes, active)(G, T, R, U)
    out = {}
    pos = 0
    for name, shape in feature_layout(n_modes, tuple(active)):
        n = int(np.prod(shape))
        out[name] = flat[pos:pos + n].reshape(shape)
        pos += n
    return out
