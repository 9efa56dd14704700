"""Likelihoods of spectral features, and SPM's data scaling and precision.

All functions here are plain numpy/scipy references (the samplers evaluate the same
formulas in numba, :mod:`nmm_inference.inference._target`).

Auto-spectra (Whittle / Gamma)
    An averaged spectral estimate with ``nu`` equivalent degrees of freedom is
    ``P_hat = S * chi2_nu / nu``, i.e. ``P_hat ~ Gamma(shape = nu / 2, rate = nu / (2 S))``
    (Whittle 1953; Percival & Walden 1993, §6.6).  :func:`whittle_gamma_logpdf`.
Cross-spectral matrices (complex Wishart)
    An average of ``m`` independent complex Fourier vectors with covariance ``Sigma`` gives
    ``m * C_hat ~ CW(m, Sigma)`` (Goodman 1963).  For one channel this is the Gamma law
    above with ``m = nu / 2``.  :func:`complex_wishart_logpdf`.
SPM's Gaussian
    SPM fits the (scaled) CSD with a Gaussian of precision ``exp(h) * Q``,
    ``Q = (Cov + |Cov|_1 / 32 * I)^-1``, ``Cov_f = y_f**2`` for one channel
    (``spm_dcm_csd_Q``), hyperprior ``h ~ N(8, 1/128)``.  :func:`spm_gaussian_logpdf`.

References
----------
Whittle P (1953) Ark Mat 2:423-434. doi:10.1007/BF02590998
Goodman NR (1963) Ann Math Stat 34:152-177. doi:10.1214/aoms/1177704250
Camba-Mendez G, Kapetanios G (2005) Econometric Rev 24:1-22 (SPM's precision).
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln

from ..errors import DataError

__all__ = [
    "check_spectrum", "spm_csd2ccf", "spm_scale_factor", "spm_precision",
    "whittle_gamma_logpdf", "whittle_gamma_marginal_loglik", "complex_wishart_logpdf",
    "spm_gaussian_logpdf", "SPM_LOG_PRECISION_PRIOR",
]

#: SPM's hyperprior on the log-precision ``h`` (mean, variance), set in ``spm_dcm_csd``.
SPM_LOG_PRECISION_PRIOR = (8.0, 1.0 / 128.0)


def check_spectrum(hz, y, dof=None, *, name="y"):
    """Validate a one-channel spectrum; return float arrays ``(hz, y, dof)``.

    Parameters
    ----------
    hz : array-like, shape (n_freqs,)
        Frequencies in Hz: at least 2, finite, positive, strictly increasing.
    y : array-like, shape (n_freqs,)
        Power spectrum: finite and positive.
    dof : float or array-like, shape (n_freqs,), optional
        Equivalent degrees of freedom per bin (a scalar is broadcast): finite and positive.
    name : str, optional
        Name of ``y`` in the error messages.

    Returns
    -------
    hz, y : ndarray, shape (n_freqs,)
        The inputs as float arrays (not copied when they are already float arrays).
    dof : ndarray, shape (n_freqs,), or None
        ``None`` when not given.

    Raises
    ------
    DataError
        Non-finite, non-positive or mis-shaped frequencies, spectra or degrees of freedom,
        naming what was wrong.
    """
    hz = np.asarray(hz, dtype=float)
    y = np.asarray(y, dtype=float)
    if hz.ndim != 1 or hz.size < 2:
        raise DataError(f"frequencies must be a 1-D array with at least 2 bins, got shape {hz.shape}")
    if not np.all(np.isfinite(hz)):
        raise DataError(f"frequencies contain non-finite values at bins {np.flatnonzero(~np.isfinite(hz)).tolist()}")
    if np.any(hz <= 0):
        raise DataError(f"frequencies must be > 0 Hz, got {hz[hz <= 0].tolist()} "
                        "(drop the 0 Hz bin)")
    if np.any(np.diff(hz) <= 0):
        raise DataError("frequencies must be strictly increasing")
    if y.shape != hz.shape:
        raise DataError(f"{name} has shape {y.shape} but the frequencies have shape {hz.shape}")
    if not np.all(np.isfinite(y)):
        raise DataError(f"{name} contains NaN/inf at bins {np.flatnonzero(~np.isfinite(y)).tolist()} "
                        f"(frequencies {hz[~np.isfinite(y)].tolist()} Hz)")
    if np.any(y <= 0):
        raise DataError(f"{name} must be a positive power spectrum; non-positive values at "
                        f"{hz[y <= 0].tolist()} Hz")
    if dof is not None:
        dof = np.asarray(dof, dtype=float)
        if dof.ndim == 0:
            dof = np.full(hz.shape, float(dof))
        if dof.shape != hz.shape:
            raise DataError(f"dof has shape {dof.shape} but the frequencies have shape {hz.shape}")
        if not np.all(np.isfinite(dof)) or np.any(dof <= 0):
            raise DataError(f"dof must be finite and > 0 in every bin, got {dof[~(np.isfinite(dof) & (dof > 0))].tolist()}")
    return hz, y, dof


def spm_csd2ccf(y, hz):
    """SPM's ``spm_csd2ccf`` for one auto-spectrum (as in SPM12 r7771).

    The spectrum is placed on the integer grid ``round(hz / dw)``, zero below ``hz[0]``,
    mirrored with a zero at 0 Hz, inverse-FFT'd and scaled by ``hz[-1]``.  Returns the
    autocovariance at lags ``(-N..N) / (2 hz[-1])`` s, ``N = round(hz[-1] / dw)``.
    Matches SPM's stored outputs to 2e-13 relative (golden ``extra_scaling_and_precision``).

    Parameters
    ----------
    y : array-like, shape (n_freqs,)
        Auto-spectrum at ``hz``.
    hz : array-like, shape (n_freqs,)
        Frequencies in Hz, on a grid of multiples of the step ``dw = hz[1] - hz[0]``
        (``hz / dw`` rounds to distinct integers >= 1).

    Returns
    -------
    ndarray, shape (2N + 1,)
        Real autocovariance, lag 0 at index ``N``.
    """
    hz = np.asarray(hz, float)
    y = np.asarray(y, float)
    dw = hz[1] - hz[0]
    idx = np.round(hz / dw).astype(int)
    g = np.zeros(idx[-1])
    g[idx - 1] = y
    f = np.fft.ifft(np.concatenate([[0.0], g, g[::-1]]))
    return np.real(np.fft.fftshift(f)) * idx[-1] * dw


def spm_scale_factor(y, hz):
    """SPM's data scaling ``k = 8 / max(ccf)`` (``spm_dcm_csd``); SPM fits ``k * y``.

    Parameters
    ----------
    y : array-like, shape (n_freqs,)
        Auto-spectrum at ``hz``.
    hz : array-like, shape (n_freqs,)
        Frequencies in Hz (see :func:`spm_csd2ccf`).

    Returns
    -------
    float
        The scale factor ``k``, from the maximum of :func:`spm_csd2ccf`.

    Raises
    ------
    DataError
        If the autocovariance has no finite positive maximum.
    """
    ccf = spm_csd2ccf(y, hz)
    m = float(np.max(ccf))
    if not np.isfinite(m) or m <= 0:
        raise DataError("cannot compute SPM's scale factor: the autocovariance has no positive peak")
    return 8.0 / m


def spm_precision(y):
    """SPM's noise precision ``Q_f = 1 / (y_f**2 + max(y**2) / 32)`` for one channel.

    Parameters
    ----------
    y : array-like, shape (n_freqs,)
        Auto-spectrum (as fitted, i.e. after SPM's scaling).

    Returns
    -------
    ndarray, shape (n_freqs,)
        Precision weights ``Q_f`` (the diagonal of ``Q``), in units of ``1 / y**2``.
    """
    y = np.asarray(y, float)
    y2 = y * y
    return 1.0 / (y2 + y2.max() / 32.0)


def whittle_gamma_logpdf(y, S, dof):
    """Per-bin log density of ``y ~ Gamma(dof/2, rate = dof / (2 S))``.

    Parameters
    ----------
    y : array-like
        Observed spectrum (positive).
    S : array-like
        Model spectrum, the mean of ``y`` (positive); broadcast with ``y``.
    dof : float or array-like
        Equivalent degrees of freedom per bin; broadcast with ``y``.

    Returns
    -------
    ndarray
        Log density of each bin (broadcast shape of the inputs).
    """
    a = 0.5 * np.asarray(dof, float)
    y = np.asarray(y, float)
    S = np.asarray(S, float)
    return a * np.log(a / S) - gammaln(a) + (a - 1.0) * np.log(y) - a * y / S


def whittle_gamma_marginal_loglik(y, S0, dof):
    """Gamma log-likelihood with the overall log-scale integrated out under a flat prior.

    ``int prod_f Gamma(y_f | a_f, a_f e^{-s} / S0_f) ds`` in closed form
    (see :mod:`nmm_inference.inference._target`).

    Parameters
    ----------
    y : array-like, shape (n_freqs,)
        Observed spectrum (positive).
    S0 : array-like, shape (n_freqs,)
        Model spectrum up to the overall scale ``e^s`` (positive).
    dof : float or array-like, shape (n_freqs,)
        Equivalent degrees of freedom per bin (a scalar applies to every bin).

    Returns
    -------
    float
        Log marginal likelihood, summed over bins; it does not change when ``S0`` is
        multiplied by a constant.
    """
    a = 0.5 * np.asarray(dof, float) * np.ones_like(np.asarray(y, float))
    y = np.asarray(y, float)
    S0 = np.asarray(S0, float)
    A = a.sum()
    B = np.sum(a * y / S0)
    return (np.sum(a * np.log(a) - gammaln(a) + (a - 1) * np.log(y)) - np.sum(a * np.log(S0))
            + gammaln(A) - A * np.log(B))


def complex_wishart_logpdf(C, Sigma, m):
    """Log density of the sample cross-spectral matrix ``C`` (averaged over ``m`` vectors).

    ``m * C ~ CW_n(m, Sigma)`` (complex Wishart, Goodman 1963), per frequency::

        log p(C) = (m - n) log|C| - m log|Sigma| - m tr(Sigma^-1 C) + n m log m
                   - log Gamma~_n(m),   log Gamma~_n(m) = n(n-1)/2 log pi + sum_j lgamma(m - j)

    Parameters
    ----------
    C, Sigma : array, shape (n_freqs, n, n)
        Hermitian positive-definite sample and model cross-spectral matrices.
    m : float or array, shape (n_freqs,)
        Number of independent complex Fourier vectors averaged (``dof / 2``); ``m >= n``.

    Returns
    -------
    ndarray, shape (n_freqs,)
    """
    C = np.asarray(C, complex)
    Sigma = np.asarray(Sigma, complex)
    if C.ndim == 2:
        C = C[None]
        Sigma = Sigma[None]
    nf, n, _ = C.shape
    m = np.broadcast_to(np.asarray(m, float), (nf,))
    if np.any(m < n):
        raise DataError(f"complex Wishart needs m >= n = {n} averaged vectors per bin, got min {m.min()}")
    _, ldC = np.linalg.slogdet(C)
    _, ldS = np.linalg.slogdet(Sigma)
    tr = np.real(np.trace(np.linalg.solve(Sigma, C), axis1=-2, axis2=-1))
    lgam = n * (n - 1) / 2 * np.log(np.pi) + sum(gammaln(m - j) for j in range(n))
    return (m - n) * ldC.real - m * ldS.real - m * tr + n * m * np.log(m) - lgam


def spm_gaussian_logpdf(y, S, q, h):
    """Per-bin log density of SPM's Gaussian, precision ``exp(h) * q``.

    Parameters
    ----------
    y : array-like
        Observed (scaled) spectrum.
    S : array-like
        Model spectrum (the mean); broadcast with ``y``.
    q : array-like
        Precision weights (e.g. :func:`spm_precision`); broadcast with ``y``.
    h : float or array-like
        Log-precision hyperparameter (prior :data:`SPM_LOG_PRECISION_PRIOR`).

    Returns
    -------
    ndarray
        ``log N(y | S, 1 / (exp(h) q))`` of each bin (broadcast shape of the inputs).
    """
    prec = np.exp(h) * np.asarray(q, float)
    r = np.asarray(y, float) - np.asarray(S, float)
    return 0.5 * np.log(prec / (2 * np.pi)) - 0.5 * prec * r * r
