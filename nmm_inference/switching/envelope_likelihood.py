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
from ._special import expm1_ratio, log_ndtr_mills

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
#: Small helpers of the hot loops: inlined at numba-IR level (a cached callee is otherwise
#: called through a pointer, with its tuple returned through memory).
_NJIT_INLINE = dict(_NJIT_FAST, inline="always")


# ----------------------------------------------------------------------------------------
# fixed-cost special functions of the Rice density
# ----------------------------------------------------------------------------------------
#
# The Rice density needs, at u = x nu / v, ``i0e(u) = I0(u) e^{-u}``, the ratio
# ``R(u) = I1(u) / I0(u)`` and ``W(u) = u (1 - R(u))`` (the latter keeps the gradient free of
# the cancellation in ``(x^2 + nu^2) / 2v - R u`` at large u).  They are evaluated as one
# polynomial pair of fixed degree, whose piece is looked up from u without branches, so that
# every sample costs the same whatever its regime:
#
# * u < 16: twelve pieces in u (narrower near 0, where the functions curve most) of
#   ``i0e(u)`` and ``R(u) / u`` (which keeps R's relative accuracy as u -> 0);
# * u >= 16: one piece in ``z = 16 / u`` in (0, 1] of ``S0(u) = i0e(u) sqrt(2 pi u)`` and W.
#
# The polynomials are Chebyshev interpolants (degree 13, ~100 nodes) built at import (~0.1 s)
# in numpy's extended precision (80-bit on x86-64 Linux) from the closed forms: the power series
# of I0 and I1 below u = 20, their Hankel expansions truncated at the smallest term (error
# < 1e-17 relative there) above.  The tests check them against scipy.special.i0e / i1e (a few
# ulp, ~1e-15).

_BESSEL_DEGREE = 13
_U_EDGES = (0.0, 0.75, 1.5, 2.25, 3.0, 4.0, 5.0, 6.5, 8.0, 10.0, 12.0, 14.0, 16.0)
_U_TAIL = _U_EDGES[-1]
#: The piece of u < 16 is ``_BESSEL_PIECE[int(4 u)]`` (edges are multiples of 1/4); index 64 is
#: the tail piece.
_LUT_RES = 4.0
_PI_LD = 4 * np.arctan(np.longdouble(1))      # pi in extended precision (np.pi is a float64)


def _bessel_series(u):
    """``(i0e(u), R(u) / u)`` from the power series, in extended precision (u <= ~30)."""
    u = np.asarray(u, dtype=np.longdouble)
    t = 0.25 * u * u
    term0 = np.ones_like(u)
    term1 = np.ones_like(u)
    s0 = np.ones_like(u)
    s1 = np.ones_like(u)
    for k in range(1, 100):            # at u = 30 the terms fall below 1e-30 of the sum by k = 90
        term0 = term0 * t / (k * k)
        term1 = term1 * t / (k * (k + 1))
        s0 = s0 + term0
        s1 = s1 + term1
    return np.exp(-u) * s0, s1 / (2 * s0)


def _bessel_hankel(u):
    """``(S0(u), W(u))`` from the Hankel expansions of I0 and I1, truncated at the smallest term
    (extended precision, u >= 20: the truncation error is then below ~e^{-2u})."""
    u = np.asarray(u, dtype=np.longdouble)
    w = 1 / (8 * u)
    a0 = np.ones_like(u)               # (-1)^k a_k(0) / u^k
    a1 = np.ones_like(u)               # (-1)^k a_k(1) / u^k
    s0 = np.ones_like(u)
    diff = np.zeros_like(u)            # S0 - S1, term by term (the k = 0 terms cancel exactly)
    done = np.zeros(u.shape, dtype=bool)
    for k in range(1, 200):
        m = np.longdouble((2 * k - 1) ** 2)
        n0 = a0 * m * w / k
        n1 = a1 * (m - 4) * w / k
        done |= (k > 1) & (np.abs(n0) >= np.abs(a0))
        a0 = np.where(done, 0, n0)
        a1 = np.where(done, 0, n1)
        s0 = s0 + a0
        diff = diff + (a0 - a1)
    return s0, u * diff / s0


def _bessel_tail(z):
    """``(S0, W)`` at ``u = 16 / z`` (series below u = 20, Hankel above)."""
    u = _U_TAIL / np.asarray(z, dtype=np.longdouble)
    small = u < 20
    i0e, r_u = _bessel_series(np.where(small, u, 20))
    s0_h, w_h = _bessel_hankel(np.where(small, 20, u))
    s0 = np.where(small, i0e * np.sqrt(2 * _PI_LD * u), s0_h)
    return s0, np.where(small, u * (1 - u * r_u), w_h)


def _chebyshev_monomials(f, lo, hi, degree, n_nodes=None):
    """Chebyshev interpolant of ``f`` (returning a tuple of arrays) on [lo, hi], as monomial
    coefficients in ``t = (s - centre) / half_width`` (highest degree first), in float64."""
    n = n_nodes or 4 * degree + 40
    theta = _PI_LD * (np.arange(n, dtype=np.longdouble) + 0.5) / n
    lo, hi = np.longdouble(lo), np.longdouble(hi)
    values = f(0.5 * (lo + hi) + 0.5 * (hi - lo) * np.cos(theta))
    # T_k as monomials in t (exact integers)
    basis = np.zeros((degree + 1, degree + 1), dtype=np.longdouble)
    basis[0, 0] = 1
    basis[1, 1] = 1
    for k in range(2, degree + 1):
        basis[k, 1:] = 2 * basis[k - 1, :-1]
        basis[k] -= basis[k - 2]
    out = []
    for v in values:
        c = np.array([2 * np.sum(v * np.cos(k * theta)) / n for k in range(degree + 1)])
        c[0] /= 2
        out.append((c @ basis)[::-1].astype(np.float64))
    return np.stack(out, axis=1)


def _bessel_tables():
    """Coefficients (pieces, degree + 1, 2), piece centres and inverse half-widths, and the
    piece look-up table of :func:`_rice_bessel`."""
    n = len(_U_EDGES)
    coef = np.empty((n, _BESSEL_DEGREE + 1, 2))
    centre = np.empty(n)
    iscale = np.empty(n)
    for k, (lo, hi) in enumerate(zip(_U_EDGES[:-1], _U_EDGES[1:])):
        coef[k] = _chebyshev_monomials(_bessel_series, lo, hi, _BESSEL_DEGREE)
        centre[k], iscale[k] = 0.5 * (lo + hi), 2.0 / (hi - lo)
    coef[n - 1] = _chebyshev_monomials(_bessel_tail, 0.0, 1.0, _BESSEL_DEGREE)
    centre[n - 1], iscale[n - 1] = 0.5, 2.0
    cells = (np.arange(int(_U_TAIL * _LUT_RES) + 1) + 0.5) / _LUT_RES
    lut = np.searchsorted(np.asarray(_U_EDGES), cells, side="right") - 1
    lut[-1] = n - 1
    return coef, centre, iscale, lut.astype(np.int64)


_BESSEL_COEF, _BESSEL_CENTRE, _BESSEL_ISCALE, _BESSEL_PIECE = _bessel_tables()
_INV_32PI = 1.0 / (2.0 * math.pi * _U_TAIL)
_INV_TAIL = 1.0 / _U_TAIL


@numba.njit(**_NJIT_INLINE)
def _rice_bessel(u):
    """``(i0e(u), R(u), W(u))`` for ``u >= 0``: ``I0(u) e^{-u}``, ``I1(u) / I0(u)`` and
    ``u (1 - R(u))``, with a fixed number of operations (module comments).  NaN gives NaN."""
    uc = u if u < _U_TAIL else _U_TAIL        # NaN -> tail piece: the index stays in range
    uc = uc if uc > 0.0 else 0.0
    k = _BESSEL_PIECE[int(uc * _LUT_RES)]
    z = _U_TAIL / u
    near = u < _U_TAIL
    s = u if near else z
    t = (s - _BESSEL_CENTRE[k]) * _BESSEL_ISCALE[k]
    p0 = _BESSEL_COEF[k, 0, 0]
    p1 = _BESSEL_COEF[k, 0, 1]
    for j in range(1, _BESSEL_DEGREE + 1):
        p0 = p0 * t + _BESSEL_COEF[k, j, 0]
        p1 = p1 * t + _BESSEL_COEF[k, j, 1]
    r_near = u * p1
    i0e = p0 if near else p0 * math.sqrt(z * _INV_32PI)
    ratio = r_near if near else 1.0 - p1 * z * _INV_TAIL
    w = u * (1.0 - r_near) if near else p1
    return i0e, ratio, w


def _expm1_ratio_tables(degree=15):
    """Monomial coefficients (highest first) of ``h(y) = (e^y - 1) / y`` and ``h'(y)`` on
    [-1, 1]: Chebyshev interpolants of their Taylor series (extended precision)."""
    def f(y):
        h = np.zeros_like(y)
        dh = np.zeros_like(y)
        term = np.ones_like(y)           # y^k / (k + 1)!
        for k in range(40):
            h = h + term
            if k > 0:
                dh = dh + k * term / y
            term = term * y / (k + 2)
        return h, dh
    return _chebyshev_monomials(f, -1.0, 1.0, degree)


_H_COEF = _expm1_ratio_tables()


@numba.njit(**_NJIT_INLINE)
def _expm1_ratio_poly(y):
    """``(h(y), h'(y))``, ``h(y) = (e^y - 1) / y``, as a fixed polynomial pair (``|y| <= 1``)."""
    h = _H_COEF[0, 0]
    dh = _H_COEF[0, 1]
    for j in range(1, _H_COEF.shape[0]):
        h = h * y + _H_COEF[j, 0]
        dh = dh * y + _H_COEF[j, 1]
    return h, dh


@numba.njit(**_NJIT_FAST)
def _expm1_ratio_fast(y):
    """:func:`_expm1_ratio_poly` for ``|y| <= 1``,
    :func:`~nmm_inference.switching._special.expm1_ratio` beyond."""
    if not (abs(y) <= 1.0):
        return expm1_ratio(y)
    return _expm1_ratio_poly(y)


# ----------------------------------------------------------------------------------------
# per-sample densities and their derivatives (nopython)
# ----------------------------------------------------------------------------------------

@numba.njit(**_NJIT)
def _transition_consts(sigma, a, D, dt):
    """Per-state constants of the transition density, a tuple (passed to the inlined helpers as
    such: an array would be reference-counted at every call):
    ``(E, H, H', 2 a dt, 2 dt, D dt, 2 D dt^2, 1.5 a, log(D dt))`` with ``E = e^{2 sigma dt}``
    and ``H = h(2 sigma dt)`` of the noise-free intensity flow."""
    H, dH = expm1_ratio(2.0 * sigma * dt)
    return (1.0 + 2.0 * sigma * dt * H, H, dH, 2.0 * a * dt, 2.0 * dt, D * dt, 2.0 * D * dt * dt,
            1.5 * a, math.log(D * dt))


# The transition density in four steps, each a function of the previous steps' values, so that
# the scalar form (_transition_terms) and the blocked kernel (_transition_block, which runs
# each step over a block of samples to let the CPU overlap them) share one implementation.
#
# The density is returned factored as ``log b = log(f) - q`` with ``f = i0e(u) D dt / v`` (of
# order 1: ``v / (D dt) = h(y)``) and ``q = (x - nu)^2 / 2v + log(D dt)``, so that the fused
# likelihood needs no logarithm per sample: its forward pass scales each sample's densities by
# a reference state's, ``b_s / b_r = (f_s / f_r) exp(q_r - q_s)``, and takes the logarithm of
# the reference factors' running product only (``nmm_inference.switching.hmm._forward_core``).

@numba.njit(**_NJIT_INLINE)
def _rice_flow(x0, sigma, c):
    """Noise-free intensity flow over the step: ``(I0, I1, 1/den, y)`` with ``I0 = x0^2``,
    ``I1 = I0 E / den``, ``den = 1 - 2 a dt H I0`` and ``y = 2 dt lambda``, ``lambda`` the
    radial growth rate at the mid-step intensity."""
    I0 = x0 * x0
    rden = 1.0 / (1.0 - c[3] * c[1] * I0)
    I1 = I0 * c[0] * rden
    return I0, I1, rden, c[4] * (sigma + c[7] * (I0 + I1))


@numba.njit(**_NJIT_INLINE)
def _rice_scale(x, I1, Hv, c):
    """Rice variance and argument: ``(1/v, nu, u)`` with ``v = D dt h(y)``, ``nu = sqrt(I1)``
    and ``u = x nu / v``."""
    rv = 1.0 / (c[5] * Hv)
    nu = math.sqrt(I1)
    return rv, nu, x * nu * rv


@numba.njit(**_NJIT_INLINE)
def _rice_terms(x0, x, sigma, c, I0, I1, rden, Hv, dHv, rv, nu, u, i0e, ratio, w):
    """Rice density (without ``log x``) as ``(f, q)``, ``log density = log(f) - q``, and its
    derivatives d/d(sigma, a, D), from the steps' values; ``f = 0`` (log density -inf) where
    the noise-free flow blows up within the step (``den <= 0``) or the data are not positive."""
    if not (0.0 < rden < np.inf and x > 0.0 and x0 > 0.0):
        return 0.0, 0.0, 0.0, 0.0, 0.0
    dt2, a15 = c[4], c[7]
    dx = x - nu
    q = 0.5 * dx * dx * rv
    # log I0(u) - log v - (x^2 + nu^2) / 2v = log(i0e(u) / v) - (x - nu)^2 / 2v
    #                                        = log(i0e(u) D dt / v) - (q + log(D dt))
    # partials in v and in I1 = nu^2, each written without cancellation on its side of u = 16
    dlp_dv = rv * (w - 1.0 + q)
    rnu = 1.0 / nu
    d_near = 0.5 * rv * (ratio * x * rnu - 1.0)
    d_far = 0.5 * rnu * (dx * rv - w * rnu)
    dlp_dI1 = d_near if u < _U_TAIL else d_far
    cI = c[3] * I0
    dI1_ds = dt2 * I1 * (1.0 + cI * c[2] * rden)
    dI1_da = dt2 * I1 * I0 * c[1] * rden
    gv = dlp_dv * c[6] * dHv                       # d lp / d lambda
    g_s = gv * (1.0 + a15 * dI1_ds) + dlp_dI1 * dI1_ds
    g_a = gv * (1.5 * (I0 + I1) + a15 * dI1_da) + dlp_dI1 * dI1_da
    g_D = dlp_dv * Hv * (0.5 * dt2)
    return i0e * c[5] * rv, q + c[8], g_s, g_a, g_D


@numba.njit(**_NJIT_FAST)
def _transition_terms(x0, x, sigma, c):
    """Rice transition density x0 -> x (without the ``log x`` term, which does not depend on
    the parameters) as ``(f, q)`` (:func:`_rice_terms`) and its derivatives with respect to
    (sigma, a, D), given the state's constants ``c`` (:func:`_transition_consts`; ``D > 0`` is
    the caller's check)."""
    I0, I1, rden, y = _rice_flow(x0, sigma, c)
    Hv, dHv = _expm1_ratio_fast(y)
    rv, nu, u = _rice_scale(x, I1, Hv, c)
    i0e, ratio, w = _rice_bessel(u)
    return _rice_terms(x0, x, sigma, c, I0, I1, rden, Hv, dHv, rv, nu, u, i0e, ratio, w)


#: Samples per block of :func:`_transition_block` (its scratch, 12 x 128 doubles, stays in L1).
_BLOCK = 128


@numba.njit(**_NJIT_FAST)
def _transition_block(x, m, t0, n, sigma, c, starts, want_grad, s, f, q, dlogb, tmp):
    """Transition densities of samples ``t0 .. t0 + n - 1`` (``t0 >= 1``) of band m under
    state s (constants ``c``), multiplied into ``f[:, s]`` and added to ``q[:, s]``
    (:func:`_rice_terms`), with their derivatives written to ``dlogb[:, s, m]``; each step of
    :func:`_transition_terms` runs over the whole block (``tmp``: scratch (12, _BLOCK))."""
    I0 = tmp[0]
    I1 = tmp[1]
    rden = tmp[2]
    y = tmp[3]
    Hv = tmp[4]
    dHv = tmp[5]
    rv = tmp[6]
    nu = tmp[7]
    u = tmp[8]
    i0e = tmp[9]
    ratio = tmp[10]
    w = tmp[11]
    for i in range(n):
        I0[i], I1[i], rden[i], y[i] = _rice_flow(x[t0 + i - 1, m], sigma, c)
    for i in range(n):
        Hv[i], dHv[i] = _expm1_ratio_poly(y[i])
    for i in range(n):
        if not (abs(y[i]) <= 1.0):
            Hv[i], dHv[i] = expm1_ratio(y[i])
    for i in range(n):
        rv[i], nu[i], u[i] = _rice_scale(x[t0 + i, m], I1[i], Hv[i], c)
    for i in range(n):
        i0e[i], ratio[i], w[i] = _rice_bessel(u[i])
    for i in range(n):
        t = t0 + i
        if starts[t]:
            fi, qi, gs, ga, gd = 1.0, 0.0, 0.0, 0.0, 0.0
        else:
            fi, qi, gs, ga, gd = _rice_terms(x[t - 1, m], x[t, m], sigma, c, I0[i], I1[i],
                                             rden[i], Hv[i], dHv[i], rv[i], nu[i], u[i], i0e[i],
                                             ratio[i], w[i])
        f[t, s] *= fi
        q[t, s] += qi
        if want_grad:
            dlogb[t, s, m, 0] = gs
            dlogb[t, s, m, 1] = ga
            dlogb[t, s, m, 2] = gd


@numba.njit(**_NJIT)
def _transition_lp(x0, x, sigma, a, D, dt):
    """log Rice transition density x0 -> x over dt and d/d(sigma, a, D)."""
    if not (D > 0.0):
        return -np.inf, 0.0, 0.0, 0.0
    c = _transition_consts(sigma, a, D, dt)
    f, q, gs, ga, gd = _transition_terms(x0, x, sigma, c)
    return math.log(f) - q + math.log(x), gs, ga, gd


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


@numba.njit(**_NJIT_INLINE)
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


@numba.njit(**_NJIT_FAST)
def _emission_pass(x, sigma, a, D, dt, kind, starts, want_grad, f, q, dlogb):
    """Every sample's emission density under every state, factored as
    ``log b[t, s] = log f[t, s] - q[t, s]`` (without the ``log x`` terms): multiplied into
    ``f`` (T, S; ones on entry) and added to ``q`` (T, S; zeros on entry), with its derivatives
    written to ``dlogb`` (T, S, M, 3) if ``want_grad``.  ``f = 0`` marks a zero density.

    The single implementation of the emissions, used by :func:`_emissions` (which takes the
    logarithms) and by the fused likelihood (:func:`nmm_inference.switching.hmm._envelope_hmm`,
    which needs none).  Loops run state by state and band by band with time innermost, so that
    the per-state constants stay in registers; under the transition density the first sample
    of each segment (``starts``) is conditioned on (density 1, derivatives 0).
    """
    T, M = x.shape
    S = sigma.shape[0]
    tmp = np.empty((12, _BLOCK))
    for s in range(S):
        for m in range(M):
            sg, aa, dd = sigma[s, m], a[s, m], D[s, m]
            if kind == 0 and dd > 0.0:
                # sample 0 is always conditioned on (a segment start)
                if want_grad:
                    dlogb[0, s, m, :] = 0.0
                c = _transition_consts(sg, aa, dd, dt)
                for t0 in range(1, T, _BLOCK):
                    _transition_block(x, m, t0, min(_BLOCK, T - t0), sg, c, starts, want_grad,
                                      s, f, q, dlogb, tmp)
                continue
            if kind == 0:
                good = False
                c0, c_s, c_a, c_D = 0.0, 0.0, 0.0, 0.0
            else:
                c0, c_s, c_a, c_D, good = _stationary_consts(sg, aa, dd)
            for t in range(T):
                if kind == 0 and starts[t]:
                    lp, gs, ga, gd = 0.0, 0.0, 0.0, 0.0
                elif not good:
                    lp, gs, ga, gd = -np.inf, 0.0, 0.0, 0.0
                else:
                    lp, gs, ga, gd = _stationary_core(x[t, m], aa, dd, sg, c0, c_s, c_a, c_D)
                if lp == -np.inf:
                    f[t, s] = 0.0
                else:
                    q[t, s] -= lp
                if want_grad:
                    dlogb[t, s, m, 0] = gs
                    dlogb[t, s, m, 1] = ga
                    dlogb[t, s, m, 2] = gd


@numba.njit(**_NJIT)
def _emissions(x, sigma, a, D, dt, kind, starts, want_grad):
    """Log emission matrix (T, S) and, optionally, its derivatives (T, S, M, 3).

    ``starts`` (T,) bool marks the first sample of each segment (conditioned on under the
    transition density).
    """
    T, M = x.shape
    S = sigma.shape[0]
    f = np.ones((T, S))
    logb = np.zeros((T, S))
    if want_grad:
        dlogb = np.empty((T, S, M, 3))
    else:
        dlogb = np.empty((1, 1, 1, 3))
    _emission_pass(x, sigma, a, D, dt, kind, starts, want_grad, f, logb, dlogb)
    for t in range(T):
        lx = 0.0
        if kind == 1 or not starts[t]:
            for m in range(M):
                lx += math.log(x[t, m])      # the densities' x factor, state-independent
        for s in range(S):
            logb[t, s] = math.log(f[t, s]) - logb[t, s] + lx
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
