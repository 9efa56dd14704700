"""PyTensor Ops of the switching model, with exact gradients and numba registrations.

* :class:`HMMLogpOp` -- ``log p(y)`` of a hidden Markov chain from a matrix of log emission
  densities (any emission model written as a PyTensor graph); gradient from forward-backward.
* :class:`EnvelopeHMMOp` -- the fused envelope likelihood: amplitude-SDE emissions of every
  state (:mod:`~nmm_inference.switching.envelope_likelihood`) and the forward algorithm in one
  numba kernel, with the gradient with respect to the per-state SDE parameters and the
  transition matrix (Fisher's identity, :mod:`~nmm_inference.switching.hmm`).  This is the Op
  to use for long envelopes: its cost is linear in the number of samples and it never builds a
  (n_times, n_states) graph.

Both are registered for PyTensor's NUMBA backend (used by nutpie and by
``compile_kwargs={"mode": "NUMBA"}``), so no Python object mode is involved there
(``shared/docs/stack-notes.md`` §2).

Importing this module imports pytensor; ``import nmm_inference.switching`` does not.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.numba.dispatch.basic import numba_njit, register_funcify_default_op_cache_key

from ..errors import ParameterError
from .envelope_likelihood import EMISSION_KINDS, _check_dt
from .hmm import _envelope_hmm, _hmm_grad

__all__ = ["HMMLogpOp", "EnvelopeHMMOp", "SwitchingMechanismOp", "hmm_logp", "envelope_hmm_logp",
           "switching_mechanism"]


def _kernel_version():
    """Hash of the kernels' source files, as an int.

    PyTensor caches the numba functions of an Op on disk under a key made of the Op's type and
    props only, so an edited kernel would otherwise keep running its stale compiled form; the
    hash is passed as the key's version (the ``int`` returned by the funcify functions below).
    """
    h = hashlib.sha256()
    for name in ("envelope_likelihood.py", "hmm.py", "_special.py", "pytensor_ops.py"):
        path = Path(__file__).parent / name
        h.update(path.read_bytes() if path.is_file() else name.encode())
    return int(h.hexdigest()[:15], 16)


_KERNEL_VERSION = _kernel_version()


def _as_float(x, ndim, name):
    v = pt.as_tensor_variable(x)
    if v.dtype != "float64":
        v = pt.cast(v, "float64")
    if v.type.ndim != ndim:
        raise ParameterError(f"{name} must be a tensor of rank {ndim}, got rank {v.type.ndim}")
    return v


def _as_starts(starts):
    v = pt.as_tensor_variable(np.asarray(starts, dtype=bool) if not hasattr(starts, "type")
                              else starts)
    if v.type.ndim != 1:
        raise ParameterError("segment starts must be a vector (n_times,)")
    return pt.cast(v, "bool")


def _check_second_order(output_grads):
    for g in output_grads[1:]:
        if not isinstance(g.type, DisconnectedType):
            raise NotImplementedError("second derivatives of the HMM log-likelihood are not "
                                      "implemented (its gradient outputs are not differentiable)")


class HMMLogpOp(Op):
    """``(log_b, log_P, log_pi, starts) -> (log p, gamma, xi, gamma_start)``.

    ``log_b`` (n_times, n_states) are log emission densities, ``log_P`` (S, S) the log
    transition matrix, ``log_pi`` (S,) the log initial distribution and ``starts`` (n_times,)
    a boolean mask of segment starts (``starts[0]`` must be True).  The gradient of ``log p``
    with respect to the three float inputs is ``(gamma, xi, gamma_start)``: posterior state
    probabilities, expected transition counts and posterior probabilities at segment starts.
    """

    __props__ = ()

    def make_node(self, log_b, log_P, log_pi, starts):
        ins = [_as_float(log_b, 2, "log_b"), _as_float(log_P, 2, "log_P"),
               _as_float(log_pi, 1, "log_pi"), _as_starts(starts)]
        return Apply(self, ins, [pt.dscalar(), pt.dmatrix(), pt.dmatrix(), pt.dvector()])

    def perform(self, node, inputs, outputs):
        lb, lP, lpi, st = inputs
        logL, gamma, xi, g0 = _hmm_grad(np.ascontiguousarray(lb, dtype=np.float64),
                                        np.ascontiguousarray(lP, dtype=np.float64),
                                        np.ascontiguousarray(lpi, dtype=np.float64),
                                        np.ascontiguousarray(st, dtype=np.bool_))
        outputs[0][0] = np.asarray(logL, dtype=np.float64)
        outputs[1][0] = gamma
        outputs[2][0] = xi
        outputs[3][0] = g0

    def infer_shape(self, node, shapes):
        return [(), shapes[0], shapes[1], shapes[2]]

    def connection_pattern(self, node):
        return [[True, True, True, True]] * 3 + [[False, False, False, False]]

    def L_op(self, inputs, outputs, output_grads):
        g = output_grads[0]
        _check_second_order(output_grads)
        if isinstance(g.type, DisconnectedType):
            return [pt.zeros_like(inputs[0]), pt.zeros_like(inputs[1]), pt.zeros_like(inputs[2]),
                    DisconnectedType()()]
        return [g * outputs[1], g * outputs[2], g * outputs[3], DisconnectedType()()]

    def pullback(self, inputs, outputs, output_grads):
        """Same as :meth:`L_op` (for PyTensor versions that call ``pullback``)."""
        return self.L_op(inputs, outputs, output_grads)


@register_funcify_default_op_cache_key(HMMLogpOp)
def _numba_funcify_hmm(op, node=None, **kwargs):
    @numba_njit
    def hmm_logp_numba(lb, lP, lpi, st):
        logL, gamma, xi, g0 = _hmm_grad(np.ascontiguousarray(lb), np.ascontiguousarray(lP),
                                        np.ascontiguousarray(lpi), np.ascontiguousarray(st))
        return np.asarray(logL), gamma, xi, g0

    return hmm_logp_numba, _KERNEL_VERSION


class EnvelopeHMMOp(Op):
    """Fused envelope-HMM log-likelihood with its gradient.

    Inputs: ``envelope`` (n_times, n_bands) data (sensor units, > 0, not differentiated),
    ``sigma``, ``a``, ``D`` (n_states, n_bands) per-state amplitude-SDE parameters in sensor
    units, ``log_P`` (S, S), ``log_pi`` (S,), and ``starts`` (n_times,) boolean.

    Outputs: ``log p`` and its gradients with respect to sigma, a, D, log_P and log_pi.  A
    single-state model (S = 1, ``log_P = [[0]]``) is the plain transition-density likelihood.

    Parameters
    ----------
    dt : float
        Envelope sampling interval (s).
    kind : {"transition", "stationary"}
        Emission density.
    """

    __props__ = ("dt", "kind")

    def __init__(self, dt, kind="transition"):
        self.dt = _check_dt(dt)
        if kind not in EMISSION_KINDS:
            raise ParameterError(f"kind must be one of {sorted(EMISSION_KINDS)}, got {kind!r}")
        self.kind = kind
        super().__init__()

    def make_node(self, envelope, sigma, a, D, log_P, log_pi, starts):
        ins = [_as_float(envelope, 2, "envelope"), _as_float(sigma, 2, "sigma"),
               _as_float(a, 2, "a"), _as_float(D, 2, "D"), _as_float(log_P, 2, "log_P"),
               _as_float(log_pi, 1, "log_pi"), _as_starts(starts)]
        return Apply(self, ins, [pt.dscalar(), pt.dmatrix(), pt.dmatrix(), pt.dmatrix(),
                                 pt.dmatrix(), pt.dvector()])

    def perform(self, node, inputs, outputs):
        x, s, a, D, lP, lpi = (np.ascontiguousarray(v, dtype=np.float64) for v in inputs[:6])
        out = _envelope_hmm(x, s, a, D, lP, lpi, self.dt, EMISSION_KINDS[self.kind],
                            np.ascontiguousarray(inputs[6], dtype=np.bool_))
        outputs[0][0] = np.asarray(out[0], dtype=np.float64)
        for k in range(1, 6):
            outputs[k][0] = out[k]

    def infer_shape(self, node, shapes):
        return [(), shapes[1], shapes[2], shapes[3], shapes[4], shapes[5]]

    def connection_pattern(self, node):
        data = [False] * 6
        par = [True] * 6
        return [data, par, par, par, par, par, data]

    def L_op(self, inputs, outputs, output_grads):
        g = output_grads[0]
        _check_second_order(output_grads)
        if isinstance(g.type, DisconnectedType):
            return ([DisconnectedType()()] + [pt.zeros_like(v) for v in inputs[1:6]]
                    + [DisconnectedType()()])
        return ([DisconnectedType()()] + [g * outputs[k] for k in range(1, 6)]
                + [DisconnectedType()()])

    def pullback(self, inputs, outputs, output_grads):
        """Same as :meth:`L_op` (for PyTensor versions that call ``pullback``)."""
        return self.L_op(inputs, outputs, output_grads)


@register_funcify_default_op_cache_key(EnvelopeHMMOp)
def _numba_funcify_envelope_hmm(op, node=None, **kwargs):
    dt = op.dt
    code = EMISSION_KINDS[op.kind]

    @numba_njit
    def envelope_hmm_numba(x, s, a, D, lP, lpi, st):
        logL, gs, ga, gD, gP, gpi = _envelope_hmm(
            np.ascontiguousarray(x), np.ascontiguousarray(s), np.ascontiguousarray(a),
            np.ascontiguousarray(D), np.ascontiguousarray(lP), np.ascontiguousarray(lpi), dt,
            code, np.ascontiguousarray(st))
        return np.asarray(logL), gs, ga, gD, gP, gpi

    return envelope_hmm_numba, _KERNEL_VERSION


def hmm_logp(log_b, log_P, log_pi, starts):
    """Symbolic HMM log-likelihood from log emission densities (see :class:`HMMLogpOp`).

    Parameters
    ----------
    log_b : TensorVariable, shape (n_times, n_states)
        Log emission densities.
    log_P : TensorVariable, shape (n_states, n_states)
        Log transition matrix.
    log_pi : TensorVariable, shape (n_states,)
        Log initial distribution.
    starts : array-like of bool, shape (n_times,)
        Segment starts (``starts[0]`` True).

    Returns
    -------
    TensorVariable
        Scalar log-likelihood.
    """
    return HMMLogpOp()(log_b, log_P, log_pi, starts)[0]


def envelope_hmm_logp(envelope, sigma, a, D, log_P, log_pi, starts, *, dt, kind="transition"):
    """Symbolic envelope-HMM log-likelihood (see :class:`EnvelopeHMMOp`).

    Parameters
    ----------
    envelope : array-like, shape (n_times, n_bands)
        Data (sensor units, validated with
        :func:`~nmm_inference.switching.envelope_likelihood.check_envelope`).
    sigma, a, D : TensorVariable, shape (n_states, n_bands)
        Sensor-unit SDE parameters per state and band.
    log_P : TensorVariable, shape (n_states, n_states)
        Log one-step transition matrix.
    log_pi : TensorVariable, shape (n_states,)
        Log initial distribution.
    starts : array-like of bool, shape (n_times,)
        Segment starts (``starts[0]`` True).
    dt : float
        Sampling interval (s).
    kind : {"transition", "stationary"}, optional
        Emission density.

    Returns
    -------
    TensorVariable
        Scalar log-likelihood.
    """
    return EnvelopeHMMOp(dt, kind)(envelope, sigma, a, D, log_P, log_pi, starts)[0]


class SwitchingMechanismOp(Op):
    """CMC parameters -> switching-model quantities (flat) and their Jacobian.

    Inputs ``G`` (10,), ``T`` (4,), ``R`` (scalar), ``U`` (4,), ``noise_std`` (4,),
    ``readout`` (4,); outputs the flat vector laid out by
    :func:`~nmm_inference.switching.mechanism.mechanism_layout` and its Jacobian (n, 27).
    Where the reduction fails or a declared state does not exist the values are NaN (the
    envelope likelihood is then -inf, which samplers reject).

    The reduction runs in Python (numpy + the reduction's compiled parts), so under the NUMBA
    backend this Op is called in object mode; its cost (a reduction with tangents, plus two
    sparse solves when rates come from the mechanism) dominates the model's.

    Parameters
    ----------
    spec : MechanismSpec
        Bands and states (with the rate grid fixed, see ``assess_mechanism``).
    rates : bool
        Compute mean dwell times (winner-take-all specs only).
    """

    __props__ = ("spec", "rates")

    def __init__(self, spec, rates=True):
        from .mechanism import MechanismSpec

        if not isinstance(spec, MechanismSpec):
            raise ParameterError(f"spec must be a MechanismSpec, got {type(spec).__name__}")
        self.spec = spec
        self.rates = bool(rates and spec.winner_take_all)
        super().__init__()

    def _n_out(self):
        from .mechanism import mechanism_layout

        return sum(int(np.prod(sh)) for _, sh in mechanism_layout(self.spec))

    def make_node(self, G, T, R, U, noise_std, readout):
        ins = [_as_float(G, 1, "G"), _as_float(T, 1, "T"), _as_float(R, 0, "R"),
               _as_float(U, 1, "U"), _as_float(noise_std, 1, "noise_std"),
               _as_float(readout, 1, "readout")]
        return Apply(self, ins, [pt.dvector(), pt.dmatrix()])

    def perform(self, node, inputs, outputs):
        from ..errors import ReductionError
        from .mechanism import N_INPUTS, mechanism_layout, switching_quantities

        n = self._n_out()
        val = np.full(n, np.nan)
        jac = np.zeros((n, N_INPUTS))
        G, T, R, U, s, L = inputs
        try:
            vals, J = switching_quantities(G, T, float(R), U, s, L, self.spec, rates=self.rates,
                                           gradient=True)
        except (ReductionError, ParameterError, np.linalg.LinAlgError, RuntimeError):
            vals = None
        if vals is not None:
            pos = 0
            for name, shape in mechanism_layout(self.spec):
                k = int(np.prod(shape))
                val[pos:pos + k] = np.ravel(vals[name])
                jac[pos:pos + k] = np.reshape(J[name], (k, N_INPUTS))
                pos += k
            jac[~np.isfinite(jac)] = 0.0
        outputs[0][0] = val
        outputs[1][0] = jac

    def infer_shape(self, node, shapes):
        from .mechanism import N_INPUTS

        n = self._n_out()
        return [(n,), (n, N_INPUTS)]

    def connection_pattern(self, node):
        return [[True, False]] * 6

    def L_op(self, inputs, outputs, output_grads):
        g = output_grads[0]
        if isinstance(g.type, DisconnectedType):
            return [pt.zeros_like(x) for x in inputs]
        gj = pt.dot(pt.switch(pt.isnan(g), 0.0, g), outputs[1])
        return [gj[:10], gj[10:14], gj[14], gj[15:19], gj[19:23], gj[23:27]]

    def pullback(self, inputs, outputs, output_grads):
        """Same as :meth:`L_op`."""
        return self.L_op(inputs, outputs, output_grads)


def switching_mechanism(G, T, R, U, noise_std, readout, *, spec, rates=True):
    """Symbolic switching-model quantities of a CMC source (see :class:`SwitchingMechanismOp`).

    The symbolic counterpart of :func:`~nmm_inference.switching.mechanism.switching_quantities`
    (``gradient=True``), differentiable with respect to all six inputs.  Inputs may be
    PyTensor variables or numbers/arrays; they are cast to float64.

    Parameters
    ----------
    G : tensor-like, shape (10,)
        Intrinsic gains G1..G10 (1/s, SPM order).
    T : tensor-like, shape (4,)
        Time constants of ss, sp, ii, dp (s).
    R : tensor-like, scalar
        Sigmoid slope (1/mV).
    U : tensor-like, shape (4,)
        Constant input to ss, sp, ii, dp (SPM units).
    noise_std : tensor-like, shape (4,)
        Input noise std per population (ss, sp, ii, dp); a vector (rank 1), not a scalar.
    readout : tensor-like, shape (4,)
        Sensor weights of the population voltages (SPM's LFP: ``(0, 1, 0, 0)``).
    spec : MechanismSpec
        Bands and states (with the rate grid fixed, see
        :func:`~nmm_inference.switching.mechanism.assess_mechanism`).
    rates : bool, optional
        Compute the mean dwell times; ignored (``log_dwell`` NaN) unless ``spec`` is
        winner-take-all.

    Returns
    -------
    dict of TensorVariable
        Keys and shapes of :func:`~nmm_inference.switching.mechanism.mechanism_layout`
        (``sigma_eff``, ``a``, ``D``, ``gain``, ``intensity``, ``log_dwell``, ``freq_hz``;
        units as in ``switching_quantities``).  Every entry is NaN at parameter values where
        the reduction fails, an input has the wrong length, or a declared state does not exist.

    Raises
    ------
    ParameterError
        If ``spec`` is not a :class:`~nmm_inference.switching.mechanism.MechanismSpec` or an
        input has the wrong rank.
    """
    from .mechanism import mechanism_layout

    flat, _ = SwitchingMechanismOp(spec, rates)(G, T, R, U, noise_std, readout)
    out = {}
    pos = 0
    for name, shape in mechanism_layout(spec):
        k = int(np.prod(shape))
        out[name] = flat[pos:pos + k].reshape(shape)
        pos += k
    return out
