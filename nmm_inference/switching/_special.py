"""Special functions for the envelope likelihood, compiled with numba (nopython).

* :func:`log_i0_ratio` -- ``log I0(u)`` and ``I1(u) / I0(u)`` (modified Bessel functions of the
  first kind), needed by the Rice transition density of the envelope and its gradient.  A power
  series (division-free) is used for ``u <= 4``, three Chebyshev pieces of ``log i0e`` and
  ``I1/I0`` on (4, 20] (made once at import against :func:`scipy.special.i0e` and
  :func:`scipy.special.i1e`), and above 20 the Hankel sums ``S0(u) = I0(u) e^{-u} sqrt(2 pi u)``
  and ``S1`` (the same for I1): a Chebyshev piece in ``z = 1/u`` on (20, 50] (fitted at import
  to scipy's values) and, above 50, the Hankel expansion in ``1/u`` as one degree-10 polynomial
  (truncation error < 4e-16 there); all accurate to ~2e-15 (checked in the tests).  No piece
  has a data-dependent number of operations, which keeps the envelope kernel's cost flat
  across regimes.
* :func:`log_ndtr_mills` -- ``log Phi(w)`` and the inverse Mills ratio ``phi(w) / Phi(w)`` of
  the standard normal law, needed by the normaliser of the stationary envelope density.  For
  ``w < -30`` the asymptotic series is used (``erfc`` would underflow).
* :func:`expm1_ratio` -- ``h(y) = (exp(y) - 1) / y`` and ``h'(y)``, smooth at ``y = 0``.

All functions use ``error_model="numpy"`` so that bad arguments give nan/inf, never an
exception inside a sampler (``shared/docs/stack-notes.md`` §0.10).
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["log_i0_ratio", "log_i0e_scaled", "hankel_i0_i1", "log_ndtr_mills", "expm1_ratio"]

_NJIT = dict(cache=True, error_model="numpy")
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_HALF = math.sqrt(0.5)


#: Pieces of the argument range of I0: power series, three Chebyshev pieces, Hankel expansion.
_U_SERIES = 4.0
_U_PIECES = ((4.0, 8.0, 16), (8.0, 13.0, 14), (13.0, 20.0, 14))
_U_HANKEL = 20.0
_INV_KK = np.array([1.0 / (k * k) for k in range(1, 61)])
_INV_KK1 = np.array([1.0 / (k * (k + 1.0)) for k in range(1, 61)])


def _piece_fits(n_nodes=400):
    """Chebyshev coefficients of ``log(i0e(u))`` and ``I1/I0`` on each piece of ``_U_PIECES``
    (fitted once, at import, to scipy's Cephes values; max error ~2e-15), stacked in one array
    of shape (3 pieces, 2 functions, 17 coefficients; unused high coefficients are 0)."""
    from numpy.polynomial import chebyshev
    from scipy import special

    out = np.zeros((len(_U_PIECES), 2, 17))
    y = np.cos(np.pi * (np.arange(n_nodes) + 0.5) / n_nodes)
    for i, (lo, hi, deg) in enumerate(_U_PIECES):
        u = 0.5 * (lo + hi) + 0.5 * (hi - lo) * y
        out[i, 0, :deg + 1] = chebyshev.chebfit(y, np.log(special.i0e(u)), deg)
        out[i, 1, :deg + 1] = chebyshev.chebfit(y, special.i1e(u) / special.i0e(u), deg)
    return out


_CHEB = _piece_fits()

#: Hankel region: Chebyshev piece in z = 1/u on [1/50, 1/20), polynomial in 1/u above 50.
_U_HORNER = 50.0
_Z_LO, _Z_HI = 1.0 / _U_HORNER, 1.0 / _U_HANKEL


def _hankel_coefficients(degree=10):
    """Coefficients of the Hankel expansions of ``S0`` and ``S1`` in ``1/u``, highest first:
    ``S_nu(u) = sum_k (-1)^k prod_{j<=k} (4 nu^2 - (2j - 1)^2) / (k! (8u)^k)``."""
    c0 = [1.0]
    c1 = [1.0]
    for k in range(1, degree + 1):
        m = (2.0 * k - 1.0) ** 2
        c0.append(c0[-1] * m / (8.0 * k))
        c1.append(c1[-1] * (m - 4.0) / (8.0 * k))
    return np.array([c0[::-1], c1[::-1]])


def _hankel_piece_fit(n_nodes=400, degree=10):
    """Chebyshev coefficients (in ``z = 1/u`` on [1/50, 1/20]) of ``S0`` and ``I1/I0``."""
    from numpy.polynomial import chebyshev
    from scipy import special

    y = np.cos(np.pi * (np.arange(n_nodes) + 0.5) / n_nodes)
    u = 1.0 / (0.5 * (_Z_LO + _Z_HI) + 0.5 * (_Z_HI - _Z_LO) * y)
    out = np.zeros((2, degree + 1))
    out[0] = chebyshev.chebfit(y, special.i0e(u) * np.sqrt(2.0 * np.pi * u), degree)
    out[1] = chebyshev.chebfit(y, special.i1e(u) / special.i0e(u), degree)
    return out


_HANKEL_POLY = _hankel_coefficients()
_HANKEL_CHEB = _hankel_piece_fit()


@numba.njit(cache=True, error_model="numpy")
def _clenshaw2(c0, c1, t):
    """Two Chebyshev sums at once (interleaved recurrences)."""
    a1 = 0.0
    a2 = 0.0
    b1 = 0.0
    b2 = 0.0
    t2 = 2.0 * t
    for k in range(c0.shape[0] - 1, 0, -1):
        a0 = c0[k] + t2 * a1 - a2
        b0 = c1[k] + t2 * b1 - b2
        a2 = a1
        a1 = a0
        b2 = b1
        b1 = b0
    return c0[0] + t * a1 - a2, c1[0] + t * b1 - b2


@numba.njit(cache=True, error_model="numpy")
def log_i0e_scaled(u):
    """``(log(I0(u) e^{-u}), I1(u) / I0(u))`` for ``0 <= u <= 20``."""
    if u <= _U_SERIES:
        t = 0.25 * u * u
        term0 = 1.0   # t^k / (k!)^2
        term1 = 1.0   # t^k / (k! (k+1)!)
        s0 = 1.0
        s1 = 1.0
        for k in range(1, 60):
            term0 *= t * _INV_KK[k - 1]
            term1 *= t * _INV_KK1[k - 1]
            s0 += term0
            s1 += term1
            if term0 < 1e-17 * s0 and term1 < 1e-17 * s1:
                break
        return math.log(s0) - u, 0.5 * u * s1 / s0
    if u <= 8.0:
        return _clenshaw2(_CHEB[0, 0], _CHEB[0, 1], 0.5 * u - 3.0)           # (4, 8]
    if u <= 13.0:
        return _clenshaw2(_CHEB[1, 0], _CHEB[1, 1], 0.4 * u - 4.2)           # (8, 13]
    return _clenshaw2(_CHEB[2, 0], _CHEB[2, 1], (2.0 * u - 33.0) / 7.0)      # (13, 20]


@numba.njit(cache=True, error_model="numpy")
def hankel_i0_i1(u):
    """``(S0, I1(u) / I0(u))`` for ``u > 20`` with ``I0(u) = e^u S0 / sqrt(2 pi u)``: a Chebyshev
    piece in ``1/u`` up to ``u = 50``, the degree-10 Hankel polynomial in ``1/u`` above."""
    z = 1.0 / u
    if u <= _U_HORNER:
        return _clenshaw2(_HANKEL_CHEB[0], _HANKEL_CHEB[1],
                          (2.0 * z - (_Z_LO + _Z_HI)) / (_Z_HI - _Z_LO))
    p0 = _HANKEL_POLY[0]
    p1 = _HANKEL_POLY[1]
    s0 = p0[0]
    s1 = p1[0]
    for k in range(1, p0.shape[0]):
        s0 = s0 * z + p0[k]
        s1 = s1 * z + p1[k]
    return s0, s1 / s0


@numba.njit(**_NJIT)
def log_i0_ratio(u):
    """``(log I0(u), I1(u) / I0(u))`` for ``u >= 0``."""
    if u <= _U_HANKEL:
        L, ratio = log_i0e_scaled(u)
        return L + u, ratio
    S0, ratio = hankel_i0_i1(u)
    return u - 0.5 * math.log(2.0 * math.pi * u) + math.log(S0), ratio


@numba.njit(**_NJIT)
def log_ndtr_mills(w):
    """``(log Phi(w), phi(w) / Phi(w))`` of the standard normal law."""
    if w > 0.0:
        # Phi close to 1: log1p keeps the relative accuracy of log Phi
        tail = 0.5 * math.erfc(w * _SQRT_HALF)
        small_phi = _INV_SQRT_2PI * math.exp(-0.5 * w * w)
        return math.log1p(-tail), small_phi / (1.0 - tail)
    if w > -30.0:
        big_phi = 0.5 * math.erfc(-w * _SQRT_HALF)
        small_phi = _INV_SQRT_2PI * math.exp(-0.5 * w * w)
        return math.log(big_phi), small_phi / big_phi
    # Phi(w) = phi(w) / (-w) * (1 - 1/w^2 + 3/w^4 - 15/w^6 + 105/w^8 ...)
    iw2 = 1.0 / (w * w)
    ser = 1.0 - iw2 * (1.0 - 3.0 * iw2 * (1.0 - 5.0 * iw2 * (1.0 - 7.0 * iw2)))
    log_phi = -0.5 * w * w - _HALF_LOG_2PI
    return log_phi - math.log(-w) + math.log(ser), -w / ser


#: Taylor coefficients of h(y) = (e^y - 1) / y and of h'(y), highest order first.
_H_TAYLOR = np.array([1.0 / math.factorial(k + 1) for k in range(12, -1, -1)])
_DH_TAYLOR = np.array([(k + 1) / math.factorial(k + 2) for k in range(11, -1, -1)])


@numba.njit(**_NJIT)
def expm1_ratio(y):
    """``(h(y), h'(y))`` with ``h(y) = (exp(y) - 1) / y`` (``h(0) = 1``, ``h'(0) = 1/2``).

    Taylor polynomials for ``|y| < 0.25`` (truncation error < 1e-16; no division), ``expm1``
    above.
    """
    if abs(y) < 0.25:
        h = 0.0
        for c in _H_TAYLOR:
            h = h * y + c
        dh = 0.0
        for c in _DH_TAYLOR:
            dh = dh * y + c
        return h, dh
    em1 = math.expm1(y)
    h = em1 / y
    return h, (em1 + 1.0 - h) / y
