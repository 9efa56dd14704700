"""Likelihood of band-envelope time series under the amplitude SDE of the adiabatic reduction.

Model
-----
The amplitude of an oscillatory mode obeys (``shared/docs/adiabatic.md`` §5.1)::

    dr = [r (sigma + a r^2) + D / (2 r)] dt + sqrt(D) dW,

and a sensor sees the band envelope ``x = g r`` with gain ``g = 2 |L J nu|`` (§7.2).  In sensor
units the same SDE holds with ``sigma`` unchanged, ``a -> a / g^2`` and ``D -> g^2 D``, so every
function here takes the *sensor-unit* triple ``(sigma, a, D)`` (1/s, 1/(s unit^2), unit^2/s) and
the gain is applied by the caller (:func:`to_sensor_units`).

Within a semi-stable state of a multi-mode circuit the other modes are frozen at the state's
intensities, so mode m sees the effective growth rate ``sigma_m + sum_j a_mj I_j`` (the
transverse exponent when m is inactive, ``sigma_m`` when m is the active mode of a single-mode
state).  The switching model gives every hidden state its own ``(sigma, a, D)`` per band.

Two emission densities
----------------------
``"transition"`` (default; for envelope *time series*)
    The transition density of the SDE over one sampling interval ``dt``.  The SDE of the
    complex amplitude ``z = r e^{i theta}`` has isotropic additive noise, so over a short step
    the modulus is Rice distributed (this keeps the Ito drift ``D / 2r`` and the reflecting
    boundary at ``r = 0`` exact)::

        x_t | x_{t-1} ~ Rice(nu, s),   nu^2 = I(dt),   s^2 = D dt h(2 lambda dt),

    where ``I(dt) = I0 e^{2 sigma dt} / (1 - 2 a I0 dt h(2 sigma dt))`` is the exact noise-free
    flow of the intensity ``I = x^2`` (``I0 = x_{t-1}^2``), ``h(y) = (e^y - 1) / y``, and
    ``lambda = sigma + 3 a (I0 + I(dt)) / 2`` is the radial growth rate at the mid-step
    intensity (so that the step variance is right both near the rest state, ``lambda =
    sigma``, and on a limit cycle, ``lambda = -2 sigma``).  It converges to the SDE as
    ``dt -> 0`` and is exact for the linear (Rayleigh) regime's radial variance to first order.
    The first sample of a segment is conditioned on (contributes 0).
``"stationary"``
    The stationary density ``p(x) = x exp((sigma x^2 + a x^4 / 2) / D) / Z`` (needs ``a < 0``),
    i.e. independent draws; use it for envelopes decimated to well beyond their correlation time.

Sampling-rate caveat: the Hilbert envelope of a band-passed signal is smoothed over about
``1 / bandwidth`` seconds, which the SDE does not know about.  Increments over steps shorter
than that look smoother than white noise: about ``sfreq / (pi^2 f_c)`` of their variance is
lost (``f_c`` the one-sided cut-off of the band's analytic filter), which biases ``D`` down
(by ~50 % at 25 Hz for a 20-32 Hz band) and makes the local slope persistent, so that a
switching model with transition emissions starts to follow every rise and fall of the envelope.
Use wide bands and sample at most about the band's bandwidth (``recommended_sfreq``), or, for
the switching model, the stationary emission (what the simulation acceptance run and the
beta-burst tutorial do).

Everything here is numpy + numba (nopython kernels); the PyTensor Ops are in
:mod:`nmm_inference.switching.pytensor_ops`.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ..errors import DataError, ParameterError
from ._special import expm1_ratio, hankel_i0_i1, log_i0e_scaled, log_ndtr_mills

__all__ = ["EMISSION_KINDS", "transition_logpdf", "stationary_logpdf", "envelope_emissions",
           "envelope_loglik", "to_sensor_units", "check_envelope", "positive_envelope",
           "recommended_sfreq"]

#: Emission densities understood by the kernels (name -> code).
EMISSION_KINDS = {"transition": 0, "stationary": 1}

_NJIT = dict(cache=True, error_model="numpy")
#: Hot kernels: fast-math without the no-NaN/no-inf assumptions (bad parameters must still give
#: -inf/NaN, which the samplers treat as rejections).
_NJIT_FAST = dict(cache=True, error_model="numpy",
                  fastmath={"nsz", "arcp", "contract", "afn", "reassoc"})
_TWO_PI = 2.0 * math.pi
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


# ----------------------------------------------------------------------------------------
# per-sample densities and their derivatives (nopython)
# ----------------------------------------------------------------------------------------

@numba.njit(**_NJIT)
def _flow_consts(sigma, dt):
    """``(E, H, H')`` of the noise-free intensity flow: ``E = e^{2 sigma dt}``, ``H = h(2 sigma dt)``."""
    H, dH = expm1_ratio(2.0 * sigma * dt)
    return 1.0 + 2.0 * sigma * dt * H, H, dH


@numba.njit(**_NJIT_FAST)
def _transition_core(x0, x, sigma, a, D, dt, E, H, dH):
    """log Rice transition density x0 -> x over dt (without the ``log x`` term, which does not
    depend on the parameters) and d/d(sigma, a, D), given _flow_consts."""
    I0 = x0 * x0
    c = 2.0 * a * I0 * dt
    den = 1.0 - c * H
    if not (den > 0.0) or not (D > 0.0) or not (x > 0.0) or not (x0 > 0.0):
        return -np.inf, 0.0, 0.0, 0.0
    rden = 1.0 / den
    I1 = I0 * E * rden
    rI1 = den / (I0 * E)
    dI1_ds = 2.0 * dt * I1 * (1.0 + c * dH * rden)
    dI1_da = I1 * 2.0 * I0 * dt * H * rden
    lam = sigma + 1.5 * a * (I0 + I1)
    Hv, dHv = expm1_ratio(2.0 * lam * dt)
    v = D * dt * Hv
    rv = 1.0 / v
    dv_dlam = 2.0 * D * dt * dt * dHv
    nu = math.sqrt(I1)
    u = x * nu * rv
    dx = x - nu
    if u <= 20.0:
        # log I0(u) = u + L and u - (x^2 + nu^2)/2v = -(x - nu)^2 / 2v
        L, ratio = log_i0e_scaled(u)
        lp = L - math.log(v) - dx * dx * 0.5 * rv
    else:
        # log I0(u) = u - log(2 pi u)/2 + log(S0), with S0 folded into the same logarithm
        S0, ratio = hankel_i0_i1(u)
        lp = 0.5 * math.log(S0 * S0 / (_TWO_PI * x * nu * v)) - dx * dx * 0.5 * rv
    # partials of lp in (v, I1); x / nu = x nu / I1
    dlp_dv = rv * (-1.0 + (x * x + I1) * 0.5 * rv - ratio * u)
    dlp_dI1 = 0.5 * rv * (-1.0 + ratio * x * nu * rI1)
    dlam_ds = 1.0 + 1.5 * a * dI1_ds
    dlam_da = 1.5 * (I0 + I1) + 1.5 * a * dI1_da
    g_s = dlp_dv * dv_dlam * dlam_ds + dlp_dI1 * dI1_ds
    g_a = dlp_dv * dv_dlam * dlam_da + dlp_dI1 * dI1_da
    g_D = dlp_dv * dt * Hv
    return lp, g_s, g_a, g_D


@numba.njit(**_NJIT)
def _transition_lp(x0, x, sigma, a, D, dt):
    """log Rice transition density x0 -> x over dt and d/d(sigma, a, D)."""
    E, H, dH = _flow_consts(sigma, dt)
    lp, gs, ga, gd = _transition_core(x0, x, sigma, a, D, dt, E, H, dH)
    return lp + math.log(x), gs, ga, gd


@numba.njit(**_NJIT)
def _stationary_consts(sigma, a, D):
    """Per-state constants of the stationary density: (c0, c_s, c_a, c_D, ok).

    ``log p(x) = log x + E - c0`` with ``E = (sigma x^2 + a x^4 / 2) / D``;
    ``d/dsigma = x^2 / D - c_s``, ``d/da = x^4 / (2 D) + c_a``, ``d/dD = -E / D + c_D``.
    """
    if not (a < 0.0) or not (D > 0.0):
        return 0.0, 0.0, 0.0, 0.0, False
    rt = math.sqrt(-a * D)
    w = sigma / rt
    lphi, mills = log_ndtr_mills(w)
    c0 = 0.5 * math.log(2.0 * math.pi * D / (-a)) - math.log(2.0) + 0.5 * w * w + lphi
    k = w + mills
    return c0, k / rt, 0.5 / a + k * w / (2.0 * a), -0.5 / D + k * w / (2.0 * D), True


@numba.njit(**_NJIT)
def _stationary_core(x, a, D, sigma, c0, c_s, c_a, c_D):
    """log stationary density at x without ``log x``, and d/d(sigma, a, D)."""
    if not (x > 0.0):
        return -np.inf, 0.0, 0.0, 0.0
    q = x * x
    rD = 1.0 / D
    E = (sigma * q + 0.5 * a * q * q) * rD
    return E - c0, q * rD - c_s, 0.5 * q * q * rD + c_a, -E * rD + c_D


@numba.njit(**_NJIT)
def _stationary_lp(x, sigma, a, D):
    """log stationary density at x and d/d(sigma, a, D) (a < 0)."""
    c0, c_s, c_a, c_D, ok = _stationary_consts(sigma, a, D)
    if not ok or not (x > 0.0):
        return -np.inf, 0.0, 0.0, 0.0
    lp, gs, ga, gd = _stationary_core(x, a, D, sigma, c0, c_s, c_a, c_D)
    return lp + math.log(x), gs, ga, gd


@numba.njit(**_NJIT)
def _state_consts(sigma, a, D, dt, kind):
    """Per (state, band) constants of the emission density and a validity mask."""
    S, M = sigma.shape
    consts = np.zeros((S, M, 4))
    ok = np.ones((S, M), dtype=np.bool_)
    for s in range(S):
        for m in range(M):
            if kind == 0:
                consts[s, m, 0], consts[s, m, 1], consts[s, m, 2] = _flow_consts(sigma[s, m], dt)
            else:
                c0, c1, c2, c3, good = _stationary_consts(sigma[s, m], a[s, m], D[s, m])
                consts[s, m, 0], consts[s, m, 1], consts[s, m, 2], consts[s, m, 3] = c0, c1, c2, c3
                ok[s, m] = good
    return consts, ok


@numba.njit(cache=True, error_model="numpy", inline="always")
def _emission_core(x, t, m, sigma, a, D, dt, kind, c):
    """Emission log-density (without log x) of sample t, band m, and its derivatives."""
    if kind == 0:
        return _transition_core(x[t - 1, m], x[t, m], sigma, a, D, dt, c[0], c[1], c[2])
    return _stationary_core(x[t, m], a, D, sigma, c[0], c[1], c[2], c[3])


@numba.njit(**_NJIT)
def _emissions(x, sigma, a, D, dt, kind, starts, want_grad):
    """Log emission matrix (T, S) and, optionally, its derivatives (T, S, M, 3).

    ``starts`` (T,) bool marks the first sample of each segment (conditioned on under the
    transition density).
    """
    T, M = x.shape
    S = sigma.shape[0]
    logb = np.zeros((T, S))
    if want_grad:
        dlogb = np.zeros((T, S, M, 3))
    else:
        dlogb = np.zeros((1, 1, 1, 3))
    consts, ok = _state_consts(sigma, a, D, dt, kind)
    for t in range(T):
        lx = 0.0
        if kind == 1 or not starts[t]:
            for m in range(M):
                lx += math.log(x[t, m])      # the densities' x factor, state-independent
        for s in range(S):
            acc = lx
            for m in range(M):
                if kind == 0 and starts[t]:
                    continue
                if not ok[s, m]:
                    lp, gs, ga, gd = -np.inf, 0.0, 0.0, 0.0
                else:
                    lp, gs, ga, gd = _emission_core(x, t, m, sigma[s, m], a[s, m], D[s, m], dt,
                                                    kind, consts[s, m])
                acc += lp
                if want_grad:
                    dlogb[t, s, m, 0] = gs
                    dlogb[t, s, m, 1] = ga
                    dlogb[t, s, m, 2] = gd
            logb[t, s] = acc
    return logb, dlogb


# ----------------------------------------------------------------------------------------
# numpy-level API
# ----------------------------------------------------------------------------------------

@numba.njit(**_NJIT)
def _transition_vec(x0, x, sigma, a, D, dt):
    n = x.shape[0]
    out = np.empty((n, 4))
    for i in range(n):
        out[i, 0], out[i, 1], out[i, 2], out[i, 3] = _transition_lp(x0[i], x[i], sigma[i], a[i],
                                                                     D[i], dt)
    return out


@numba.njit(**_NJIT)
def _stationary_vec(x, sigma, a, D):
    n = x.shape[0]
    out = np.empty((n, 4))
    for i in range(n):
        out[i, 0], out[i, 1], out[i, 2], out[i, 3] = _stationary_lp(x[i], sigma[i], a[i], D[i])
    return out


def _broadcast(*args):
    arrs = np.broadcast_arrays(*[np.asarray(v, dtype=float) for v in args])
    shape = arrs[0].shape
    return shape, [np.ascontiguousarray(v.ravel()) for v in arrs]


def transition_logpdf(x, x_prev, sigma, a, D, dt, *, gradient=False):
    """Log transition density of the envelope over one step (Rice form, see module notes).

    Parameters
    ----------
    x, x_prev : array-like
        Envelope now and one step earlier (sensor units, > 0).
    sigma : array-like
        Effective growth rate (1/s).
    a : array-like
        Cubic coefficient in sensor units (1/(s unit^2)); ``a < 0`` saturates.
    D : array-like
        Diffusion in sensor units (unit^2/s, > 0).
    dt : float
        Step (s).
    gradient : bool, optional
        Also return the derivatives with respect to ``sigma``, ``a`` and ``D``.

    Returns
    -------
    logp : ndarray
        Broadcast shape of the inputs; ``-inf`` where the noise-free flow blows up
        (``a > 0``) or the input is not positive.
    grads : tuple of ndarray
        Only with ``gradient=True``: ``(dlogp/dsigma, dlogp/da, dlogp/dD)``.
    """
    dt = _check_dt(dt)
    shape, (xx, x0, s, aa, dd) = _broadcast(x, x_prev, sigma, a, D)
    out = _transition_vec(x0, xx, s, aa, dd, dt)
    lp = out[:, 0].reshape(shape)
    if gradient:
        return lp, tuple(out[:, k].reshape(shape) for k in (1, 2, 3))
    return lp


def stationary_logpdf(x, sigma, a, D, *, gradient=False):
    """Log stationary density of the envelope, ``x exp((sigma x^2 + a x^4/2) / D) / Z``.

    Parameters
    ----------
    x : array-like
        Envelope (sensor units, > 0).
    sigma, a, D : array-like
        See :func:`transition_logpdf` (here ``a < 0`` is required; ``-inf`` otherwise).
    gradient : bool, optional
        Also return ``(dlogp/dsigma, dlogp/da, dlogp/dD)``.

    Returns
    -------
    logp : ndarray
    grads : tuple of ndarray
        Only with ``gradient=True``.
    """
    shape, (xx, s, aa, dd) = _broadcast(x, sigma, a, D)
    out = _stationary_vec(xx, s, aa, dd)
    lp = out[:, 0].reshape(shape)
    if gradient:
        return lp, tuple(out[:, k].reshape(shape) for k in (1, 2, 3))
    return lp


def _check_dt(dt):
    try:
        dt = float(dt)
    except (TypeError, ValueError):
        raise ParameterError(f"dt must be a number of seconds, got {dt!r}") from None
    if not (np.isfinite(dt) and dt > 0):
        raise ParameterError(f"dt must be finite and positive (s), got {dt!r}")
    return dt


def check_envelope(envelope, *, name="envelope"):
    """Validate an envelope array: 2-D (n_times, n_bands), finite and positive.

    Parameters
    ----------
    envelope : array-like, shape (n_times,) or (n_times, n_bands)
        Envelope samples (sensor units).
    name : str, optional
        Name used in error messages.

    Returns
    -------
    ndarray, shape (n_times, n_bands), float64, C-contiguous

    Raises
    ------
    DataError
        For non-finite or non-positive samples, fewer than 3 samples, or more than 2 dims.
    """
    x = np.asarray(envelope, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise DataError(f"{name} must have shape (n_times,) or (n_times, n_bands), got {x.shape}")
    if x.shape[0] < 3:
        raise DataError(f"{name} needs at least 3 samples, got {x.shape[0]}")
    bad = ~np.isfinite(x)
    if bad.any():
        raise DataError(f"{name} has {int(bad.sum())} non-finite samples (first at time index "
                        f"{int(np.argwhere(bad)[0, 0])}); cut them out and pass segment starts")
    if np.any(x <= 0):
        raise DataError(f"{name} must be positive (an amplitude envelope); "
                        f"{int(np.sum(x <= 0))} samples are <= 0")
    return np.ascontiguousarray(x)


def positive_envelope(envelope, *, floor_fraction=1e-3):
    """Clip an envelope to a small positive floor.

    Resampled Hilbert envelopes (``compute_band_envelopes`` with ``sfreq_out``) can dip
    slightly below zero where the anti-aliasing filter rings next to near-zero amplitudes; the
    likelihood needs ``x > 0``.

    Parameters
    ----------
    envelope : array-like
        Envelope samples.
    floor_fraction : float, optional
        Floor as a fraction of the median (per band, along the first axis).

    Returns
    -------
    ndarray
        ``max(envelope, floor_fraction * median)``.
    """
    x = np.asarray(envelope, dtype=float)
    med = np.median(x, axis=0)
    if not np.all(med > 0):
        raise DataError("the envelope's median is not positive; is it an amplitude envelope?")
    return np.maximum(x, floor_fraction * med)


def _segment_starts(n_times, segment_starts):
    starts = np.zeros(n_times, dtype=np.bool_)
    starts[0] = True
    if segment_starts is not None:
        idx = np.asarray(segment_starts, dtype=int).ravel()
        if idx.size and (idx.min() < 0 or idx.max() >= n_times):
            raise ParameterError(f"segment_starts must index samples 0..{n_times - 1}, got "
                                 f"range {idx.min()}..{idx.max()}")
        starts[idx] = True
    return starts


def _state_params(sigma, a, D, n_bands, n_states=None):
    """Broadcast per-state, per-band parameters to (S, M) float arrays."""
    arrs = [np.asarray(v, dtype=float) for v in (sigma, a, D)]
    if n_states is None:
        n_states = max((v.shape[0] if v.ndim == 2 else 1) for v in arrs)
    out = []
    for name, v in zip(("sigma", "a", "D"), arrs):
        if v.ndim == 0:
            v = np.full((n_states, n_bands), float(v))
        elif v.ndim == 1:
            if v.shape[0] != n_bands:
                raise ParameterError(f"{name} has shape {v.shape}; a 1-D {name} is per band "
                                     f"({n_bands},); use shape (n_states, n_bands)")
            v = np.tile(v, (n_states, 1))
        elif v.shape != (n_states, n_bands):
            raise ParameterError(f"{name} must have shape (n_states, n_bands) = "
                                 f"({n_states}, {n_bands}), got {v.shape}")
        if not np.all(np.isfinite(v)):
            raise ParameterError(f"{name} has non-finite values: {v.tolist()}")
        out.append(np.ascontiguousarray(v))
    return out


def envelope_emissions(envelope, *, sigma, a, D, sfreq, kind="transition", segment_starts=None):
    """Log emission densities of every sample under every hidden state.

    Parameters
    ----------
    envelope : array-like, shape (n_times,) or (n_times, n_bands)
        Envelope samples in sensor units (> 0).
    sigma, a, D : array-like, shape (n_states, n_bands)
        Amplitude-SDE parameters of each state and band, in sensor units (1/s,
        1/(s unit^2), unit^2/s).  Scalars and per-band vectors broadcast.
    sfreq : float
        Sampling frequency of the envelope (Hz).
    kind : {"transition", "stationary"}, optional
        Emission density (module notes).
    segment_starts : array-like of int, optional
        Indices where a new contiguous segment begins (sample 0 always does).

    Returns
    -------
    ndarray, shape (n_times, n_states)
        ``log p(x_t | x_{t-1}, state)`` (summed over bands).
    """
    x = check_envelope(envelope)
    code = _kind_code(kind)
    sfreq = _check_dt(sfreq)
    s, aa, dd = _state_params(sigma, a, D, x.shape[1])
    starts = _segment_starts(x.shape[0], segment_starts)
    logb, _ = _emissions(x, s, aa, dd, 1.0 / sfreq, code, starts, False)
    return logb


def _kind_code(kind):
    if kind not in EMISSION_KINDS:
        raise ParameterError(f"kind must be one of {sorted(EMISSION_KINDS)}, got {kind!r}")
    return EMISSION_KINDS[kind]


def envelope_loglik(envelope, *, sigma, a, D, sfreq, kind="transition", segment_starts=None,
                    gradient=False):
    """Log-likelihood of an envelope time series under one state's amplitude SDE (no switching).

    Parameters
    ----------
    envelope : array-like, shape (n_times,) or (n_times, n_bands)
        Envelope in sensor units.
    sigma, a, D : float or array-like, shape (n_bands,)
        SDE parameters per band in sensor units (see :func:`to_sensor_units`).
    sfreq : float
        Envelope sampling frequency (Hz).
    kind : {"transition", "stationary"}, optional
        Emission density.
    segment_starts : array-like of int, optional
        Starts of contiguous segments.
    gradient : bool, optional
        Also return the gradient with respect to ``sigma``, ``a`` and ``D`` (each (n_bands,)).

    Returns
    -------
    float or (float, dict)

    Examples
    --------
    >>> import numpy as np
    >>> x = np.abs(np.random.default_rng(0).normal(size=200)) + 0.5
    >>> lp = envelope_loglik(x, sigma=-2.0, a=-1.0, D=1.0, sfreq=50.0)
    >>> bool(np.isfinite(lp))
    True
    """
    x = check_envelope(envelope)
    code = _kind_code(kind)
    sfreq = _check_dt(sfreq)
    s, aa, dd = _state_params(sigma, a, D, x.shape[1], n_states=1)
    starts = _segment_starts(x.shape[0], segment_starts)
    logb, dlogb = _emissions(x, s, aa, dd, 1.0 / sfreq, code, starts, gradient)
    lp = float(logb.sum())
    if not gradient:
        return lp
    g = dlogb.sum(axis=0)[0]          # (M, 3)
    return lp, {"sigma": g[:, 0], "a": g[:, 1], "D": g[:, 2]}


def to_sensor_units(a, D, gain):
    """Map the amplitude SDE from mode units (``r``) to sensor units (``x = gain r``).

    Parameters
    ----------
    a : array-like
        Cubic coefficient ``Re g_kk`` (or effective) in mode units.
    D : array-like
        Diffusion in mode units (1/s).
    gain : array-like
        Sensor gain ``2 |L J nu|`` (sensor units per unit r).

    Returns
    -------
    a_sensor, D_sensor : ndarray
        ``a / gain^2`` and ``gain^2 D``; ``sigma`` is unchanged.
    """
    gain = np.asarray(gain, dtype=float)
    return np.asarray(a, dtype=float) / gain ** 2, np.asarray(D, dtype=float) * gain ** 2


def recommended_sfreq(fmin, fmax, *, transition=None):
    """Envelope sampling rate at which the SDE's white increments are a fair model (Hz).

    About twice the one-sided bandwidth of the analytic signal of the band (band width plus
    half of each raised-cosine edge of :func:`nmm_inference.features.compute_band_envelopes`),
    i.e. one sample per smoothing time of the envelope.

    Parameters
    ----------
    fmin, fmax : float
        Band edges (Hz).
    transition : float, optional
        Edge width (Hz); default as ``compute_band_envelopes`` (``max(0.25 f, 2 Hz)``).

    Returns
    -------
    float
        Recommended envelope rate (Hz).
    """
    fmin, fmax = float(fmin), float(fmax)
    if not 0 <= fmin < fmax:
        raise ParameterError(f"need 0 <= fmin < fmax, got ({fmin}, {fmax})")
    if transition is None:
        tl = min(max(0.25 * fmin, 2.0), fmin) if fmin > 0 else 0.0
        th = max(0.25 * fmax, 2.0)
    else:
        tl = th = float(transition)
    return float((fmax - fmin) + 0.5 * (tl + th))
