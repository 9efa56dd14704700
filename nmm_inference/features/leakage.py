"""Spectral leakage of tapered estimates: the expectation operator of a Welch spectrum.

A Welch (or single-taper) estimate at bin ``f_k`` does not measure the spectrum *at*
``f_k``: its expectation is the spectrum smoothed by the taper's spectral window
(Percival & Walden 1993, sec. 6.3)::

    E[P_hat(f_k)] = (1/fs) int_0^{fs/2} S(nu) (|V_k(nu)|**2 + |V_k(-nu)|**2) dnu,
    V_k(nu) = sum_t v_k(t) exp(2 pi i nu t / fs),   v_k = D(h(t) exp(-2 pi i f_k t / fs)),

for a one-sided spectrum ``S`` in units**2/Hz, a taper ``h`` with ``sum h**2 = 1`` and the
segment detrending ``D`` (mean removal or none).  With 1-s Hann windows the window's main
lobe is +-2 Hz wide, so a narrow peak (alpha, beta) appears broader and lower in the
estimate than in ``S``; a model spectrum compared with a Welch estimate bin by bin should be
passed through this operator first (:func:`welch_expectation_matrix`).

References
----------
Percival DB, Walden AT (1993) Spectral Analysis for Physical Applications. Cambridge UP.
doi:10.1017/CBO9780511622762
"""

from __future__ import annotations

import numpy as np

__all__ = ["welch_expectation_matrix"]


def welch_expectation_matrix(freqs, *, sfreq, n_per_seg, window="hann", detrend="constant",
                             oversample=10, half_width=None, f_floor=None):
    """Matrix that maps a one-sided model spectrum on a fine grid to expected Welch values.

    Parameters
    ----------
    freqs : array-like, shape (n_bins,)
        Frequencies (Hz) of the Welch bins (e.g. ``psd["freq"]`` of
        :func:`nmm_inference.features.compute_psd`).
    sfreq : float
        Sampling frequency (Hz).
    n_per_seg : int
        Samples per segment (the taper length).
    window : str
        Taper name for :func:`scipy.signal.get_window` (``compute_psd``'s ``window``).
    detrend : {"constant", None}
        Segment detrending of the estimate (``compute_psd``'s ``detrend``; linear detrending
        is not supported here).
    oversample : int
        Points of the fine grid per frequency resolution ``sfreq / n_per_seg``.
    half_width : float | None
        How far (Hz) beyond the outermost bins the fine grid reaches (default: 3 resolutions,
        which holds the Hann main lobe and its first side lobes).
    f_floor : float | None
        Lowest frequency (Hz) of the fine grid (default: half a resolution); the spectrum
        below it is taken as zero.

    Returns
    -------
    nu : ndarray, shape (n_fine,)
        The fine frequency grid (Hz, uniform).
    W : ndarray, shape (n_bins, n_fine)
        Weights with ``E[P_hat(freqs)] = W @ S(nu)`` (rectangle rule on ``nu``).  A row sums
        to the fraction of the window's power that falls inside the fine grid (close to 1
        for interior bins).

    Raises
    ------
    ValueError
        Unknown ``detrend``, non-positive ``oversample`` or empty frequencies.

    Examples
    --------
    >>> import numpy as np
    >>> nu, W = welch_expectation_matrix(np.arange(2.0, 41.0), sfreq=500.0, n_per_seg=500)
    >>> W.shape == (39, nu.size), bool(np.allclose(W.sum(axis=1)[5:-5], 1.0, atol=1e-3))
    (True, True)
    """
    from scipy.signal import get_window

    freqs = np.atleast_1d(np.asarray(freqs, dtype=np.float64))
    if freqs.size == 0:
        raise ValueError("freqs is empty")
    if detrend not in ("constant", None):
        raise ValueError(f"detrend must be 'constant' or None, got {detrend!r}")
    oversample = int(oversample)
    if oversample < 1:
        raise ValueError(f"oversample must be a positive integer, got {oversample}")
    n = int(n_per_seg)
    df = sfreq / n
    hw = 3.0 * df if half_width is None else float(half_width)
    lo = max(freqs.min() - hw, 0.5 * df if f_floor is None else float(f_floor))
    hi = min(freqs.max() + hw, sfreq / 2.0)
    dnu = df / oversample
    nu = np.arange(lo, hi + 0.5 * dnu, dnu)
    h = np.asarray(get_window(window, n), dtype=np.float64)
    h = h / np.sqrt(np.sum(h ** 2))
    t = np.arange(n)
    v = h[None, :] * np.exp(-2j * np.pi * freqs[:, None] * t[None, :] / sfreq)   # (k, t)
    if detrend == "constant":
        v = v - v.mean(axis=1, keepdims=True)
    # V_k(+-nu) for all bins at once: (k, t) @ (t, fine)
    E = np.exp(2j * np.pi * t[:, None] * nu[None, :] / sfreq)
    Vp = v @ E
    Vm = v @ np.conj(E)
    W = (np.abs(Vp) ** 2 + np.abs(Vm) ** 2) * (dnu / sfreq)
    return nu, W
