"""Log posterior of the one-source CMC spectral model and its warped form (numba).

Everything a sampler evaluates per step is here, in nopython code, so that nutpie's Rust
threads can call it through a C function pointer without Python or the GIL.

Parameter vector
----------------
``phi`` (length ``d``) holds the free parameters on SPM's scale; ``free_idx`` maps them into
the extended vector ``theta`` (length 26: the 25 entries of
:data:`nmm_inference.cmc.kernel.FREE_NAMES` followed by SPM's log-precision ``h``, used by
the Gaussian likelihood only).  Fixed entries take their values from ``theta_base``.

Likelihood codes
----------------
``LIK_GAMMA_MARGINAL`` (0)
    Whittle/Gamma likelihood of an averaged auto-spectrum with ``alpha = dof / 2`` per bin,
    ``y_f ~ Gamma(alpha_f, rate = alpha_f / S_f)``, with the overall log-scale (SPM's
    ``f(1)``, ``theta[23]``) given a flat prior and integrated out in closed form::

        int prod_f Gamma(y_f | alpha_f, alpha_f e^{-f1} / S0_f) df1
            = C(y) * prod_f S0_f^{-alpha_f} * Gamma(A) * B^{-A},
        A = sum_f alpha_f,   B = sum_f alpha_f y_f / S0_f.

    Given the other parameters, ``exp(-f1) ~ Gamma(A, rate=B)`` exactly.
``LIK_GAMMA`` (1)
    The same likelihood with ``f(1)`` an ordinary parameter.
``LIK_GAUSS_SPM`` (2)
    SPM's Gaussian likelihood on the (scaled) spectrum, precision ``exp(h) * Q_f`` with
    ``Q_f = 1 / (y_f**2 + max(y**2) / 32)`` (``spm_dcm_csd_Q`` for one channel).

Spectral leakage (opt-in)
-------------------------
With a leakage operator ``(nu, W)`` in the buffer (header entries 17-19: flag, fine-grid
size, offset) the kernel is evaluated on the fine grid ``nu`` and the expected bin values
are ``S = W @ S(nu)``, ``J = W @ J(nu)`` (linear), e.g. the expectation of a Welch estimate
(:func:`nmm_inference.features.leakage.welch_expectation_matrix`).  SPM's bin-indexed terms
(the DCT basis of the innovation spectrum, the ``f(2)`` ramp) are taken at the fractional
bin index of ``nu`` (:func:`leakage_grid`).  Everything downstream (gain coordinate,
likelihoods, gradients) is unchanged; without the operator the arithmetic is the same as
before, bit for bit.

Warped target
-------------
For modes ``m_k`` with Laplace covariances ``Sigma_k = L_k L_k^T`` and weights ``c_k`` the
Warp-U transformation (Wang, Jones & Meng 2022) maps the posterior ``p`` to::

    pi(z) = sum_k p(m_k + L_k z) * beta_k(m_k + L_k z) * |L_k|,
    beta_k(theta) = c_k N(theta; m_k, Sigma_k) / sum_j c_j N(theta; m_j, Sigma_j).

The ``beta_k`` are a partition of unity, so ``pi`` integrates to the same constant as ``p``,
and drawing ``z ~ pi``, then ``k`` with probability proportional to the k-th term and
``theta = m_k + L_k z``, gives an exact draw of ``p`` -- whatever the quality of the Laplace
approximations.  Each mode's bulk maps to the neighbourhood of ``z = 0``, so ``pi`` is close
to a standard normal and unimodal when the modes are well described; a sampler moving in
``z`` changes mode whenever the term probabilities say so.

References
----------
Wang L, Jones DE, Meng X-L (2022) Warp bridge sampling: the next generation. J Am Stat Assoc
117:835-851. doi:10.1080/01621459.2020.1825447
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ..cmc.kernel import _grid, _kernel_grid

LIK_GAMMA_MARGINAL = 0
LIK_GAMMA = 1
LIK_GAUSS_SPM = 2

N_THETA = 26          # 25 SPM free parameters + SPM's log-precision h
IDX_F1 = 23           # filter_offset (SPM f(1))
IDX_H = 25
HEADER = 20
_GH_X, _GH_W = np.polynomial.hermite.hermgauss(40)
_MAX_ITER = 50
_TOL = 1e-13
_LOG2PI = math.log(2.0 * math.pi)
_SKIP = 20.0          # skip warp terms whose weight is certainly below e^-20


# ----------------------------------------------------------------------------- packing


def pack(*, hz, y, alpha, q, free_idx, theta_base, mu, prec, lik, const, fold, reject, modes,
         chols, log_weights, scale_prior=(0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0), lp_max=np.inf,
         dof_scale_free=False, leakage=None):
    """Pack everything the target needs into one float64 buffer (see :func:`_unpack`).

    ``leakage`` is ``None`` or ``(nu, lnf, Xd, ramp, W)`` (see :func:`leakage_grid`): the
    kernel is then evaluated on the fine grid ``nu`` and mapped to the bins with ``W``.
    """
    hz = np.ascontiguousarray(hz, float)
    nf = hz.size
    d = len(free_idx)
    modes = np.atleast_2d(np.asarray(modes, float))
    chols = np.asarray(chols, float).reshape(-1, d, d)
    K = modes.shape[0]
    linv = np.stack([np.linalg.inv(c) for c in chols])
    logdet = np.array([np.sum(np.log(np.abs(np.diag(c)))) for c in chols])
    header = np.zeros(HEADER)
    header[:8] = [d, nf, K, lik, N_THETA, const, fold, float(bool(reject))]
    header[8:15] = np.asarray(scale_prior, float)
    header[15] = lp_max
    header[16] = float(bool(dof_scale_free))
    parts = [header, hz, np.asarray(y, float), np.asarray(alpha, float), np.asarray(q, float),
             np.asarray(free_idx, float), np.asarray(theta_base, float),
             np.asarray(mu, float), np.asarray(prec, float), modes.ravel(), chols.ravel(),
             linv.ravel(), np.asarray(log_weights, float), logdet]
    if leakage is not None:
        nu, lnf, Xd, ramp, W = (np.asarray(a, float) for a in leakage)
        if W.shape != (nf, nu.size) or Xd.shape != (nu.size, 4) or lnf.shape != nu.shape \
                or ramp.shape != nu.shape:
            raise ValueError(f"leakage arrays do not fit: W {W.shape}, nu {nu.shape}, Xd "
                             f"{Xd.shape} for {nf} bins")
        header[17] = 1.0
        header[18] = nu.size
        header[19] = sum(np.size(p) for p in parts)
        parts += [nu, lnf, Xd, ramp, W]
    buf = np.ascontiguousarray(np.concatenate([np.ravel(p) for p in parts]))
    return buf


def leakage_grid(hz, nu, W):
    """Fine-grid quantities of the leakage operator, checked.

    The DCT basis of SPM's neuronal-innovation spectrum and the filter ramp ``f(2)`` are
    functions of the bin *index*; on the fine grid they are evaluated at the fractional index
    of ``nu`` (linear in frequency between bins, extrapolated with the end spacings), so the
    fine-grid spectrum equals the bin spectrum wherever ``nu`` coincides with ``hz``.

    Parameters
    ----------
    hz : array-like, shape (n_bins,)
        Bin frequencies (Hz, increasing).
    nu : array-like, shape (n_fine,)
        Fine frequency grid (Hz, positive, finite).
    W : array-like, shape (n_bins, n_fine)
        Expectation operator: expected bin value ``= W @ S(nu)``.

    Returns
    -------
    tuple of ndarray
        ``(nu, lnf, Xd, ramp, W)``, C-contiguous float64: ``lnf = log(nu)``, ``Xd`` (n_fine,
        4) the DCT basis at the fractional bin index, ``ramp`` the factor of ``f(2)``.

    Raises
    ------
    ValueError
        Shapes that do not fit, non-finite or non-positive ``nu``, non-finite ``W``.
    """
    hz = np.ascontiguousarray(hz, float)
    nu = np.ascontiguousarray(nu, float)
    W = np.ascontiguousarray(W, float)
    nf = hz.size
    if nu.ndim != 1 or nu.size == 0:
        raise ValueError(f"leakage grid nu must be a non-empty 1-D array, got shape {nu.shape}")
    if W.shape != (nf, nu.size):
        raise ValueError(f"leakage matrix W must have shape (n_bins, n_fine) = ({nf}, {nu.size}), "
                         f"got {W.shape}")
    if not (np.all(np.isfinite(nu)) and np.all(nu > 0)):
        raise ValueError("leakage grid nu must be finite and positive")
    if not np.all(np.isfinite(W)):
        raise ValueError("leakage matrix W has non-finite entries")
    idx = np.arange(nf, dtype=float)
    if nf > 1:
        fi = np.interp(nu, hz, idx)
        lo, hi = nu < hz[0], nu > hz[-1]
        fi[lo] = (nu[lo] - hz[0]) / (hz[1] - hz[0])
        fi[hi] = nf - 1 + (nu[hi] - hz[-1]) / (hz[-1] - hz[-2])
    else:
        fi = np.zeros(nu.size)
    Xd = np.empty((nu.size, 4))
    for m in range(4):
        Xd[:, m] = np.sqrt(2.0 / nf) * np.cos(np.pi * (2 * fi + 1) * (m + 1) / (2 * nf))
    ramp = (fi + 1) / nf
    return nu, np.log(nu), np.ascontiguousarray(Xd), ramp, W


# Explicit signatures of the functions that contain the spectral kernel (see the note in
# cmc/kernel.py): one compiled copy each, whether callers pass literal or variable flags.
_F1 = numba.types.float64[::1]
_B = numba.types.boolean
_I = numba.types.int64
_F = numba.types.float64
_F2 = numba.types.float64[:, ::1]
#: the leakage arrays (fine grid, its log, DCT basis, f(2) ramp, W) and the flag
_LEAK = (_F1, _F1, _F2, _F1, _F2, _B)
_SIG_LOGLIK = [(_F1, _F1, _F1, _F1, _F1, _I, _F, _B, _F1, _F, _B, _B, _B) + _LEAK]
_SIG_LOGPOST = [(_F1, _F1, _F1, _F1, _F1, _F1, _F1, _F1, _F1, _I, _F, _I, _B, _F1, _B, _B)
                + _LEAK]
_SIG_LEAKMAP = [(_F1, _F2, _F1, _F, _F1, _F1, _F2, _B)]
_SIG_WARP = [(_F1, _F1, _B)]


@numba.njit(cache=True)
def _unpack(buf):
    d = int(buf[0])
    nf = int(buf[1])
    K = int(buf[2])
    o = HEADER
    hz = buf[o:o + nf]
    o += nf
    y = buf[o:o + nf]
    o += nf
    alpha = buf[o:o + nf]
    o += nf
    q = buf[o:o + nf]
    o += nf
    free_idx = buf[o:o + d]
    o += d
    theta_base = buf[o:o + N_THETA]
    o += N_THETA
    mu = buf[o:o + d]
    o += d
    prec = buf[o:o + d]
    o += d
    M = buf[o:o + K * d].reshape((K, d))
    o += K * d
    L = buf[o:o + K * d * d].reshape((K, d, d))
    o += K * d * d
    Li = buf[o:o + K * d * d].reshape((K, d, d))
    o += K * d * d
    logc = buf[o:o + K]
    o += K
    logdet = buf[o:o + K]
    return d, nf, K, hz, y, alpha, q, free_idx, theta_base, mu, prec, M, L, Li, logc, logdet


@numba.njit(cache=True)
def _eval_grid(hz, lk_nu, lk_lnf, lk_Xd, leak):
    """Where the kernel is evaluated: ``(frequencies, log-frequencies, DCT basis)`` of the
    leakage operator's fine grid (``leak``) or of the bins ``hz``."""
    if leak:
        return lk_nu, lk_lnf, lk_Xd
    lnf, Xd = _grid(hz)
    return hz, lnf, Xd


@numba.njit(cache=True)
def _unpack_leak(buf):
    """``(nu, lnf, Xd, ramp, W, on)`` of the buffer (empty arrays when leakage is off)."""
    nf = int(buf[1])
    on = buf[17] > 0.5
    nn = int(buf[18]) if on else 0
    o = int(buf[19]) if on else 0
    nu = buf[o:o + nn]
    o += nn
    lnf = buf[o:o + nn]
    o += nn
    Xd = buf[o:o + 4 * nn].reshape((nn, 4))
    o += 4 * nn
    ramp = buf[o:o + nn]
    o += nn
    W = buf[o:o + (nf if on else 0) * nn].reshape((nf if on else 0, nn))
    return nu, lnf, Xd, ramp, W, on


@numba.njit(_SIG_LEAKMAP, cache=True, error_model="numpy")
def _leak_map(Sf, Jf, th, f2, lnf, ramp, W, want_grad):
    """Map a fine-grid kernel output (computed with ``f(2) = 0``) to the bins.

    Applies the ``f(2)`` ramp on the fine grid, then ``W``: returns the bin spectrum, the bin
    Jacobian (column 13 always holds the neural part of the spectrum, gradient or not) and
    the derivative of the neural part in ``f(2)``.
    """
    nn = Sf.shape[0]
    M = np.zeros((nn, 25))
    Sff = np.empty(nn)
    for i in range(nn):
        fl = np.exp(f2 * ramp[i])
        Sff[i] = Sf[i] * fl
        if want_grad:
            for p in range(25):
                M[i, p] = Jf[i, p] * fl
        else:
            noise = (np.exp(th[15] - 2.0 - np.exp(th[16]) * lnf[i])
                     + np.exp(th[17] - 2.0 - np.exp(th[18]) * lnf[i])) * np.exp(th[23]) * fl
            M[i, 13] = Sff[i] - noise
        M[i, 24] = Sff[i] * ramp[i]
    dn = np.empty(nn)
    for i in range(nn):
        dn[i] = M[i, 13] * ramp[i]
    return W @ Sff, W @ M, W @ dn


# ----------------------------------------------------------------------------- log posterior


@numba.njit(cache=True, error_model="numpy")
def _gauss_scale_integral(A, B, m, sd):
    """log int exp(-A f - B e^-f) N(f; m, sd^2) df and its derivative in B (Gauss-Hermite)."""
    iv = 1.0 / (sd * sd)
    # mode of the concave integrand, Newton from the flat-prior mode log(B / A)
    f = np.log(B / A)
    if f > m + 40.0 * sd:
        f = m + 40.0 * sd
    if f < m - 40.0 * sd:
        f = m - 40.0 * sd
    for _ in range(100):
        e = B * np.exp(-f)
        g1 = -A + e - (f - m) * iv
        g2 = -e - iv
        step = g1 / g2
        f -= step
        if abs(step) < 1e-12 * (1.0 + abs(f)):
            break
    e = B * np.exp(-f)
    sig = 1.0 / np.sqrt(e + iv)
    g0 = -A * f - e - 0.5 * (f - m) ** 2 * iv
    n = _GH_X.shape[0]
    h = np.empty(n)
    ex = np.empty(n)
    hmax = -np.inf
    for i in range(n):
        fi = f + np.sqrt(2.0) * sig * _GH_X[i]
        ei = np.exp(-fi)
        h[i] = (-A * fi - B * ei - 0.5 * (fi - m) ** 2 * iv - g0 + _GH_X[i] ** 2
                + np.log(_GH_W[i]))
        ex[i] = ei
        hmax = max(hmax, h[i])
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    for i in range(n):
        w = np.exp(h[i] - hmax)
        s0 += w
        s1 += w * ex[i]
        s2 += w * (f + np.sqrt(2.0) * sig * _GH_X[i])
    lI = (g0 + hmax + np.log(s0) + np.log(np.sqrt(2.0) * sig) - np.log(sd)
          - 0.5 * _LOG2PI)
    return lI, -s1 / s0, -s2 / s0


@numba.njit(cache=True, error_model="numpy")
def _scale_integral(A, B, sp):
    """log int exp(-A f - B e^-f) pi(f) df and d/dB, for the prior ``sp`` of f = f(1).

    ``sp = [ncomp, w1, m1, s1, w2, m2, s2]``: ``ncomp = 0`` is the flat prior (closed form
    ``Gamma(A) B^-A``); otherwise a mixture of ``ncomp`` normals.
    """
    nc = int(sp[0])
    if nc == 0:
        return math.lgamma(A) - A * np.log(B), -A / B, _digamma(A) - np.log(B)
    l1, d1, e1 = _gauss_scale_integral(A, B, sp[2], sp[3])
    if nc == 1:
        return l1, d1, e1
    a1 = np.log(sp[1]) + l1
    l2, d2, e2 = _gauss_scale_integral(A, B, sp[5], sp[6])
    a2 = np.log(sp[4]) + l2
    mx = max(a1, a2)
    w1 = np.exp(a1 - mx)
    w2 = np.exp(a2 - mx)
    return (mx + np.log(w1 + w2), (w1 * d1 + w2 * d2) / (w1 + w2),
            (w1 * e1 + w2 * e2) / (w1 + w2))


@numba.njit(cache=True)
def _digamma(x):
    """Digamma function for x > 0 (recurrence to x >= 6, then the asymptotic series)."""
    r = 0.0
    while x < 6.0:
        r -= 1.0 / x
        x += 1.0
    f = 1.0 / (x * x)
    return r + np.log(x) - 0.5 / x - f * (1.0 / 12 - f * (1.0 / 120 - f * (1.0 / 252 - f * (
        1.0 / 240 - f / 132))))


@numba.njit(_SIG_LOGLIK, cache=True, error_model="numpy")
def _loglik(theta, hz, y, alpha, q, lik, const, reject, sp, gain_u, use_gain, want_grad,
            dof_free, lk_nu, lk_lnf, lk_Xd, lk_ramp, lk_W, leak):
    """Log-likelihood and its gradient with respect to the 26-vector theta.

    With ``use_gain`` the LFP gain is not read from ``theta[10]`` but set from the gain
    coordinate ``gain_u = log|L| + log(N) / 2``, ``N = sum_f alpha_f nu_f / y_f / A`` the
    data-weighted neural power at unit gain (``nu_f``, the neural part of the spectrum, is the
    kernel's derivative in ``a(1)``).  Returns ``(ll, grad, ell, dlogell)``: ``grad`` is the
    partial gradient at fixed gain (its entry 10 is d ll / d L), ``ell = |L|`` and
    ``dlogell`` (26) the gradient of ``log|L|`` in the other parameters at fixed ``gain_u``.

    With ``leak`` the kernel is evaluated on the fine grid ``lk_nu`` and spectrum and
    Jacobian are mapped to the bins with ``lk_W`` (see :func:`_leak_map`).
    """
    nf = hz.shape[0]
    grad = np.zeros(N_THETA)
    dlogell = np.zeros(N_THETA)
    th = theta[:25].copy()
    if use_gain:
        th[10] = 1.0
    f2 = th[24]
    gz, lnf, Xd = _eval_grid(hz, lk_nu, lk_lnf, lk_Xd, leak)
    if leak:
        th[24] = 0.0
    S, J, status, maxre = _kernel_grid(th, gz, lnf, Xd, want_grad, _MAX_ITER, _TOL)
    dnu24 = np.empty(0)
    if leak:
        S, J, dnu24 = _leak_map(S, J, th, f2, lk_lnf, lk_ramp, lk_W, want_grad)
    ell = abs(theta[10])
    if reject and status == 1:
        return -np.inf, grad, ell, dlogell
    for f in range(nf):
        if not (np.isfinite(S[f]) and S[f] > 0.0):
            return -np.inf, grad, ell, dlogell
    if use_gain:
        if not want_grad and not leak:   # the neural part without the Jacobian
            for f in range(nf):
                lf = np.log(hz[f])
                noise = (np.exp(th[15] - 2.0 - np.exp(th[16]) * lf)
                         + np.exp(th[17] - 2.0 - np.exp(th[18]) * lf)) \
                    * np.exp(th[23] + th[24] * (f + 1) / nf)
                J[f, 13] = S[f] - noise
        A = 0.0
        Nn = 0.0
        for f in range(nf):
            A += alpha[f]
            Nn += alpha[f] * J[f, 13] / y[f]
        Nn /= A
        if not (Nn > 0.0 and np.isfinite(Nn)):
            return -np.inf, grad, ell, dlogell
        ell = np.exp(gain_u) / np.sqrt(Nn)
        l2 = ell * ell
        for f in range(nf):
            nu = J[f, 13]
            S[f] = S[f] + (l2 - 1.0) * nu
        if want_grad:
            # d log N / d theta_p from the neural columns (all at unit gain)
            for p in range(25):
                if p == 10 or (p >= 15 and p <= 18):
                    continue
                acc = 0.0
                for f in range(nf):
                    if p == 24:
                        dnu = dnu24[f] if leak else J[f, 13] * (f + 1) / nf
                    elif p == 23:
                        dnu = J[f, 13]
                    else:
                        dnu = J[f, p]
                    acc += alpha[f] * dnu / y[f]
                dlogell[p] = -0.5 * acc / (A * Nn)
            # Jacobian at gain ell: neural columns scale with ell^2
            for f in range(nf):
                nu = J[f, 13]
                for p in range(25):
                    if p == 10:
                        J[f, p] = 2.0 * ell * nu
                    elif p == 23:
                        J[f, p] = S[f]
                    elif p == 24:
                        if leak:
                            J[f, p] = J[f, p] + (l2 - 1.0) * dnu24[f]
                        else:
                            J[f, p] = S[f] * (f + 1) / nf
                    elif p < 15 or p > 18:
                        J[f, p] = J[f, p] * l2
        for f in range(nf):
            if not (np.isfinite(S[f]) and S[f] > 0.0):
                return -np.inf, grad, ell, dlogell
    dS = np.empty(nf)
    ll = const
    if lik == LIK_GAMMA_MARGINAL:
        kap = 1.0
        dk = 0.0
        if dof_free:    # alpha_f -> kappa alpha_f, kappa = exp(theta[25]); constant recomputed
            kap = np.exp(theta[IDX_H])
            ll = 0.0
            for f in range(nf):
                a = kap * alpha[f]
                ll += a * np.log(a) - math.lgamma(a) + (a - 1.0) * np.log(y[f])
                dk += alpha[f] * (np.log(a) + 1.0 - _digamma(a) + np.log(y[f]) - np.log(S[f]))
        A0 = 0.0
        B0 = 0.0
        for f in range(nf):
            A0 += alpha[f]
            B0 += alpha[f] * y[f] / S[f]
            ll -= kap * alpha[f] * np.log(S[f])
        lI, dlI, dlIA = _scale_integral(kap * A0, kap * B0, sp)
        ll += lI
        for f in range(nf):
            dS[f] = kap * (-alpha[f] / S[f] - dlI * alpha[f] * y[f] / (S[f] * S[f]))
        if dof_free:
            grad[IDX_H] = kap * (dk + dlIA * A0 + dlI * B0)
    elif lik == LIK_GAMMA:
        for f in range(nf):
            ll += -alpha[f] * np.log(S[f]) - alpha[f] * y[f] / S[f]
            dS[f] = -alpha[f] / S[f] + alpha[f] * y[f] / (S[f] * S[f])
    else:
        eh = np.exp(theta[IDX_H])
        dh = 0.0
        for f in range(nf):
            r = y[f] - S[f]
            ll += 0.5 * theta[IDX_H] - 0.5 * eh * q[f] * r * r
            dS[f] = eh * q[f] * r
            dh += 0.5 - 0.5 * eh * q[f] * r * r
        grad[IDX_H] = dh
    if not np.isfinite(ll):
        return -np.inf, grad, ell, dlogell
    if want_grad:
        for p in range(25):
            acc = 0.0
            for f in range(nf):
                acc += J[f, p] * dS[f]
            grad[p] = acc
    return ll, grad, ell, dlogell


@numba.njit(_SIG_LOGPOST, cache=True, error_model="numpy")
def _logpost(phi, hz, y, alpha, q, free_idx, theta_base, mu, prec, lik, const, fold, reject, sp,
             want_grad, dof_free, lk_nu, lk_lnf, lk_Xd, lk_ramp, lk_W, leak):
    """Unnormalised log posterior (prior normalising constants included) and gradient.

    ``-inf`` where the kernel raises (e.g. a singular matrix).

    ``fold`` is the position in ``phi`` of the LFP gain (or -1).  There ``phi`` holds the
    gain coordinate ``u = log|L| + log(N)/2`` (see :func:`_loglik`): the data fix the
    neural power ``L**2 N`` well, so ``u`` is nearly independent of the parameters that
    trade off against the gain (the LFP contributions, time constants), whereas ``log|L|``
    lies on a curved ridge with them.  The map ``(u, rest) -> (log|L|, rest)`` is a shear
    (unit Jacobian).  The prior of ``|L|`` is the folded normal ``N(|L|) + N(-|L|)`` times
    ``|L|`` (the likelihood depends on ``L**2`` only; the sign is drawn afterwards).
    """
    d = phi.shape[0]
    theta = theta_base.copy()
    lp = 0.0
    g = np.zeros(d)
    for i in range(d):
        theta[int(free_idx[i])] = phi[i]
        if i == fold:
            continue
        if prec[i] > 0.0:
            r = phi[i] - mu[i]
            lp += -0.5 * prec[i] * r * r + 0.5 * np.log(prec[i]) - 0.5 * _LOG2PI
            g[i] = -prec[i] * r
    gain_u = phi[fold] if fold >= 0 else 0.0
    try:
        ll, gt, ell, dlogell = _loglik(theta, hz, y, alpha, q, lik, const, reject, sp, gain_u,
                                       fold >= 0, want_grad, dof_free, lk_nu, lk_lnf, lk_Xd,
                                       lk_ramp, lk_W, leak)
    except Exception:  # noqa: BLE001
        return -np.inf, np.zeros(d)
    if not np.isfinite(ll):
        return -np.inf, g
    if fold < 0:
        for i in range(d):
            g[i] += gt[int(free_idx[i])]
        return lp + ll, g
    # prior of |L| (folded normal) in log|L|, with its Jacobian
    i = fold
    dlog = 1.0     # d/dlog|L| of the prior + Jacobian terms
    if prec[i] > 0.0:
        ap = -0.5 * prec[i] * (ell - mu[i]) ** 2
        am = -0.5 * prec[i] * (ell + mu[i]) ** 2
        mx = max(ap, am)
        wp = np.exp(ap - mx)
        wm = np.exp(am - mx)
        lp += mx + np.log(wp + wm) + 0.5 * np.log(prec[i]) - 0.5 * _LOG2PI
        dlog += (-(ell - mu[i]) * wp - (ell + mu[i]) * wm) * prec[i] / (wp + wm) * ell
    lp += np.log(ell)
    dlog += gt[10] * ell          # likelihood at fixed other parameters
    for j in range(d):
        if j == fold:
            g[j] = dlog
        else:
            p = int(free_idx[j])
            g[j] += gt[p] + dlog * dlogell[p]
    return lp + ll, g


@numba.njit(cache=True, error_model="numpy")
def abs_gain_many(Phi, buf):
    """|L| for each row of ``Phi`` (its gain coordinate converted), NaN where undefined."""
    (d, nf, K, hz, y, alpha, q, free_idx, theta_base, mu, prec, M, L, Li, logc,
     logdet) = _unpack(buf)
    fold = int(buf[6])
    lk_nu, lk_lnf, lk_Xd, lk_ramp, lk_W, leak = _unpack_leak(buf)
    n = Phi.shape[0]
    out = np.full(n, np.nan)
    for t in range(n):
        theta = theta_base.copy()
        for i in range(d):
            theta[int(free_idx[i])] = Phi[t, i]
        try:
            ll, gt, ell, dl = _loglik(theta, hz, y, alpha, q, int(buf[3]), buf[5], False,
                                      buf[8:15], Phi[t, fold], True, False, buf[16] > 0.5,
                                      lk_nu, lk_lnf, lk_Xd, lk_ramp, lk_W, leak)
            out[t] = ell
        except Exception:  # noqa: BLE001
            out[t] = np.nan
    return out


@numba.njit(cache=True, error_model="numpy")
def neural_power_many(Phi, buf):
    """``N`` (data-weighted neural power at unit gain) for each row of ``Phi``."""
    (d, nf, K, hz, y, alpha, q, free_idx, theta_base, mu, prec, M, L, Li, logc,
     logdet) = _unpack(buf)
    lk_nu, lk_lnf, lk_Xd, lk_ramp, lk_W, leak = _unpack_leak(buf)
    n = Phi.shape[0]
    out = np.full(n, np.nan)
    gz, lnf, Xd = _eval_grid(hz, lk_nu, lk_lnf, lk_Xd, leak)
    for t in range(n):
        theta = theta_base.copy()
        for i in range(d):
            theta[int(free_idx[i])] = Phi[t, i]
        theta[10] = 1.0
        th = theta[:25].copy()
        f2 = th[24]
        if leak:
            th[24] = 0.0
        try:
            S, J, status, maxre = _kernel_grid(th, gz, lnf, Xd, True, _MAX_ITER, _TOL)
        except Exception:  # noqa: BLE001
            continue
        if leak:
            S, J, dn = _leak_map(S, J, th, f2, lk_lnf, lk_ramp, lk_W, True)
        A = 0.0
        acc = 0.0
        for f in range(nf):
            A += alpha[f]
            acc += alpha[f] * J[f, 13] / y[f]
        out[t] = acc / A
    return out


@numba.njit(cache=True, error_model="numpy")
def logpost_buf(phi, buf, want_grad):
    """Log posterior at ``phi`` (length d) for a packed buffer."""
    (d, nf, K, hz, y, alpha, q, free_idx, theta_base, mu, prec, M, L, Li, logc,
     logdet) = _unpack(buf)
    lk_nu, lk_lnf, lk_Xd, lk_ramp, lk_W, leak = _unpack_leak(buf)
    return _logpost(phi, hz, y, alpha, q, free_idx, theta_base, mu, prec, int(buf[3]), buf[5],
                    int(buf[6]), buf[7] > 0.5, buf[8:15], want_grad, buf[16] > 0.5, lk_nu,
                    lk_lnf, lk_Xd, lk_ramp, lk_W, leak)


@numba.njit(_SIG_WARP, cache=True, error_model="numpy")
def _warp_terms(z, buf, want_grad):
    """Per-mode terms of the warped log density, their z-gradients and the thetas.

    The cheap part of each term (``log c_k - |z|^2/2 - log q(theta_k)``) is computed first;
    a term whose upper bound (with the log posterior replaced by ``buf[15]``, the largest
    mode density plus a margin) is more than ``_SKIP`` below the best term found is set to
    ``-inf`` without evaluating the spectrum (its weight would be below e^-20).
    """
    (d, nf, K, hz, y, alpha, q, free_idx, theta_base, mu, prec, M, L, Li, logc,
     logdet) = _unpack(buf)
    lik = int(buf[3])
    const = buf[5]
    fold = int(buf[6])
    reject = buf[7] > 0.5
    sp = buf[8:15]
    lpmax = buf[15]
    dof_free = buf[16] > 0.5
    lk_nu, lk_lnf, lk_Xd, lk_ramp, lk_W, leak = _unpack_leak(buf)
    terms = np.full(K, -np.inf)
    grads = np.zeros((K, d))
    phis = np.empty((K, d))
    zz = 0.0
    for i in range(d):
        zz += z[i] * z[i]
    for k in range(K):
        phi = M[k].copy()
        for i in range(d):
            acc = 0.0
            for j in range(i + 1):
                acc += L[k, i, j] * z[j]
            phi[i] += acc
        phis[k] = phi
    if K == 1:
        lp, g = _logpost(phis[0], hz, y, alpha, q, free_idx, theta_base, mu, prec, lik, const,
                         fold, reject, sp, want_grad, dof_free, lk_nu, lk_lnf, lk_Xd,
                         lk_ramp, lk_W, leak)
        terms[0] = lp + logdet[0]
        if want_grad:
            for j in range(d):
                acc = 0.0
                for i in range(j, d):
                    acc += L[0, i, j] * g[i]
                grads[0, j] = acc
        return terms, grads, phis
    # cheap parts: log mixture density of the Laplace components at each theta_k
    lqs = np.empty((K, K))
    ws = np.empty((K, K, d))
    cheap = np.empty(K)
    for k in range(K):
        for j in range(K):
            ss = 0.0
            for a in range(d):
                acc = 0.0
                for b in range(a + 1):
                    acc += Li[j, a, b] * (phis[k, b] - M[j, b])
                ws[k, j, a] = acc
                ss += acc * acc
            lqs[k, j] = logc[j] - 0.5 * ss - logdet[j]
        mx = lqs[k].max()
        s = 0.0
        for j in range(K):
            s += np.exp(lqs[k, j] - mx)
        cheap[k] = logc[k] - 0.5 * zz - (mx + np.log(s))
    order = np.argsort(-cheap)
    best = -np.inf
    for kk in range(K):
        k = order[kk]
        if lpmax + cheap[k] < best - _SKIP:
            continue
        lp, g = _logpost(phis[k], hz, y, alpha, q, free_idx, theta_base, mu, prec, lik, const,
                         fold, reject, sp, want_grad, dof_free, lk_nu, lk_lnf, lk_Xd,
                         lk_ramp, lk_W, leak)
        if not np.isfinite(lp):
            continue
        terms[k] = lp + cheap[k]
        best = max(best, terms[k])
        if want_grad:
            # d/dphi [lp - lmix] = g + sum_j r_j Sigma_j^{-1}(phi - m_j)
            lmix = logc[k] - 0.5 * zz - cheap[k]
            gp = g.copy()
            for j in range(K):
                rj = np.exp(lqs[k, j] - lmix)
                for b in range(d):
                    acc = 0.0
                    for a in range(b, d):
                        acc += Li[j, a, b] * ws[k, j, a]
                    gp[b] += rj * acc
            for j in range(d):
                acc = 0.0
                for i in range(j, d):
                    acc += L[k, i, j] * gp[i]
                grads[k, j] = acc - z[j]
    return terms, grads, phis


@numba.njit(cache=True, error_model="numpy")
def warp_logp_grad(z, buf):
    """Warped log density ``log pi(z)`` and its gradient."""
    terms, grads, phis = _warp_terms(z, buf, True)
    K = terms.shape[0]
    d = z.shape[0]
    mx = terms.max()
    g = np.zeros(d)
    if not np.isfinite(mx):
        return -np.inf, g
    s = 0.0
    for k in range(K):
        s += np.exp(terms[k] - mx)
    lp = mx + np.log(s)
    for k in range(K):
        wk = np.exp(terms[k] - lp)
        if wk > 0.0:
            for j in range(d):
                g[j] += wk * grads[k, j]
    return lp, g


@numba.njit(cache=True, error_model="numpy")
def warp_map_draws(Z, buf, U):
    """Map warped draws ``Z`` (n, d) to parameter draws, choosing the mode with uniforms U.

    Returns ``phi`` (n, d), the chosen mode (n,) and the mode probabilities (n, K).
    """
    n, d = Z.shape
    K = int(buf[2])
    out = np.empty((n, d))
    mode = np.empty(n, dtype=np.int64)
    probs = np.zeros((n, K))
    for t in range(n):
        terms, grads, phis = _warp_terms(Z[t], buf, False)
        mx = terms.max()
        if not np.isfinite(mx):
            out[t] = phis[0]
            mode[t] = 0
            probs[t, 0] = 1.0
            continue
        s = 0.0
        for k in range(K):
            probs[t, k] = np.exp(terms[k] - mx)
            s += probs[t, k]
        c = 0.0
        chosen = K - 1
        for k in range(K):
            probs[t, k] /= s
        for k in range(K):
            c += probs[t, k]
            if U[t] < c:
                chosen = k
                break
        out[t] = phis[chosen]
        mode[t] = chosen
    return out, mode, probs


@numba.njit(cache=True, error_model="numpy")
def warp_logp_many(Z, buf):
    """log pi(z) for many points (no gradient)."""
    n = Z.shape[0]
    out = np.empty(n)
    for t in range(n):
        terms, grads, phis = _warp_terms(Z[t], buf, False)
        mx = terms.max()
        if not np.isfinite(mx):
            out[t] = -np.inf
            continue
        s = 0.0
        for k in range(terms.shape[0]):
            s += np.exp(terms[k] - mx)
        out[t] = mx + np.log(s)
    return out


def spectra_many(Theta, hz, buf=None):
    """Predicted spectra (n, nf) for many 25-vectors (rows of Theta).

    Parameters
    ----------
    Theta : ndarray, shape (n, >= 25)
        Parameter vectors (the first 25 entries are used).
    hz : ndarray, shape (nf,)
        Bin frequencies (Hz).
    buf : ndarray | None
        A packed buffer (:func:`pack`) whose leakage operator, if any, is applied.

    Returns
    -------
    ndarray, shape (n, nf)
        Spectra (``inf`` where the kernel fails).
    """
    Theta = np.ascontiguousarray(Theta, dtype=np.float64)
    hz = np.ascontiguousarray(hz, dtype=np.float64)
    if buf is None:
        buf = np.zeros(HEADER)
        buf[1] = hz.size
    return _spectra_many(Theta, hz, *_unpack_leak(np.ascontiguousarray(buf, dtype=np.float64)))


@numba.njit(cache=True, error_model="numpy")
def _spectra_many(Theta, hz, lk_nu, lk_lnf, lk_Xd, lk_ramp, lk_W, leak):
    n = Theta.shape[0]
    out = np.empty((n, hz.shape[0]))
    gz, lnf, Xd = _eval_grid(hz, lk_nu, lk_lnf, lk_Xd, leak)
    for t in range(n):
        try:
            th = Theta[t, :25].copy()
            f2 = th[24]
            if leak:
                th[24] = 0.0
            S, J, status, maxre = _kernel_grid(th, gz, lnf, Xd, False, _MAX_ITER, _TOL)
            if leak:
                S, J, dn = _leak_map(S, J, th, f2, lk_lnf, lk_ramp, lk_W, False)
            out[t] = S
        except Exception:  # noqa: BLE001
            out[t] = np.inf
    return out


# ----------------------------------------------------------------------------- C entry points

_c_sig = numba.types.int64(numba.types.uint64, numba.types.CPointer(numba.types.double),
                           numba.types.CPointer(numba.types.double),
                           numba.types.CPointer(numba.types.double), numba.types.voidptr)
_c_sig_expand = numba.types.int64(numba.types.uint64, numba.types.uint64,
                                  numba.types.CPointer(numba.types.double),
                                  numba.types.CPointer(numba.types.double), numba.types.voidptr)

_CFUNCS = {}


def c_functions():
    """Numba C callbacks ``(logp, expand)`` in nutpie's calling convention (compiled once).

    ``user_data`` is a pointer to a float64 buffer whose first element is its length,
    followed by the packed buffer of :func:`pack`.
    """
    if "logp" in _CFUNCS:
        return _CFUNCS["logp"], _CFUNCS["expand"]

    @numba.cfunc(_c_sig, cache=True, error_model="numpy")
    def logp_c(dim, x_, out_, logp_, user_data_):
        head = numba.carray(user_data_, (1,), dtype=np.float64)
        n = int(head[0])
        full = numba.carray(user_data_, (n + 1,), dtype=np.float64)
        buf = full[1:]
        if dim != int(buf[0]):
            return -1
        x = numba.carray(x_, (dim,))
        out = numba.carray(out_, (dim,))
        lp = numba.carray(logp_, (1,))
        try:
            val, g = warp_logp_grad(x.copy(), buf)
        except Exception:  # noqa: BLE001 - e.g. a singular matrix in the kernel: reject
            lp[0] = -np.inf
            return 4
        lp[0] = val
        for i in range(dim):
            out[i] = g[i]
        if not np.isfinite(val):
            return 4
        for i in range(dim):
            if not np.isfinite(g[i]):
                return 3
        return 0

    @numba.cfunc(_c_sig_expand, cache=True)
    def expand_c(dim, expanded, x_, out_, user_data_):
        x = numba.carray(x_, (dim,))
        out = numba.carray(out_, (expanded,))
        for i in range(dim):
            out[i] = x[i]
        return 0

    _CFUNCS["logp"] = logp_c
    _CFUNCS["expand"] = expand_c
    return logp_c, expand_c
