"""Expectation operator of a Welch spectrum (nmm_inference.features.leakage)."""

from __future__ import annotations

import numpy as np
import pytest

from nmm_inference.features import compute_psd, read_recording
from nmm_inference.features.leakage import welch_expectation_matrix


def test_hann_window_values_and_flat_spectrum():
    hz = np.arange(2.0, 41.0)
    nu, W = welch_expectation_matrix(hz, sfreq=500.0, n_per_seg=500)
    dnu = nu[1] - nu[0]
    k = 10   # the 12 Hz bin
    dens = W[k] / dnu
    at = lambda f: dens[np.argmin(np.abs(nu - f))]  # noqa: E731
    # Hann spectral window with sum h^2 = 1: (sum h)^2 / n = 2/3 at the bin, 1/6 one bin away,
    # 0 two bins away (closed form; only rounding error)
    assert at(12.0) == pytest.approx(2.0 / 3.0, rel=1e-9)
    assert at(13.0) == pytest.approx(1.0 / 6.0, rel=1e-9)
    assert at(11.0) == pytest.approx(1.0 / 6.0, rel=1e-9)
    assert at(14.0) == pytest.approx(0.0, abs=1e-12)
    # a flat spectrum is returned unchanged in the interior (Parseval; the +-3 Hz grid misses
    # only the far side lobes and the mirror image near 0 Hz, < 1e-5 of the window's power)
    np.testing.assert_allclose(W.sum(axis=1)[3:-3], 1.0, atol=1e-5)


def test_expected_welch_of_a_narrowband_ar2():
    """The mean Welch estimate of an AR(2) process is W @ S, not S at the bin centres."""
    from scipy.signal import lfilter

    fs, r, f0 = 100.0, 0.985, 10.3          # a 0.5-Hz wide peak between two 1-Hz bins
    a1, a2 = 2 * r * np.cos(2 * np.pi * f0 / fs), -r * r
    x = lfilter([1.0], [1.0, -a1, -a2], np.random.default_rng(7).standard_normal(200_000))
    psd = compute_psd(read_recording(x[None], sfreq=fs, units="au"), n_per_seg=100,
                      fmin=2, fmax=40)
    hz, P = psd["freq"].values, psd.values[0]

    def S(f):
        w = 2 * np.pi * f / fs
        return 2.0 / fs / np.abs(1 - a1 * np.exp(-1j * w) - a2 * np.exp(-2j * w)) ** 2

    nu, W = welch_expectation_matrix(hz, sfreq=fs, n_per_seg=100)
    E = W @ S(nu)
    # ~7600 dof per bin: 1.6 % sampling SD; 8 % is 5 SD for the worst of 39 bins
    np.testing.assert_allclose(P / E, 1.0, atol=0.08)
    # without the operator the peak's bins are off by more than a factor 2 (the check has teeth)
    assert np.max(np.abs(P / S(hz) - 1.0)) > 1.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="detrend"):
        welch_expectation_matrix([10.0], sfreq=100.0, n_per_seg=100, detrend="linear")
    with pytest.raises(ValueError, match="oversample"):
        welch_expectation_matrix([10.0], sfreq=100.0, n_per_seg=100, oversample=0)
    with pytest.raises(ValueError, match="empty"):
        welch_expectation_matrix([], sfreq=100.0, n_per_seg=100)
