"""Welch taper leakage in the numba target: expected bin values W @ S(nu) (opt-in)."""
from __future__ import annotations

import numpy as np
import pytest

from nmm_inference.cmc.kernel import _kernel_grid, spectrum_and_jacobian
from nmm_inference.errors import ParameterError
from nmm_inference.features.leakage import welch_expectation_matrix
from nmm_inference.inference import CMCModel
from nmm_inference.inference import _target as T
from nmm_inference.inference._problem import Problem

from tests.helpers import fd_grad

SFREQ, NPS = 128.0, 128   # 1 Hz bins


@pytest.fixture(scope="module")
def data(noisy_spectrum):
    hz, y, dof = noisy_spectrum
    return hz, y, np.full(hz.size, dof)


def _theta(p):
    """A 25-vector away from zero in the DCT coefficients and the filter slope."""
    th = p.base[:25].copy()
    th[10] = 2.0
    th[19:23] = [0.3, -0.2, 0.1, 0.05]
    th[23] = 0.1
    th[24] = 0.4
    return th


@pytest.mark.parametrize("dof_scale", ["recorded", "fit"])
def test_identity_leakage_equals_no_leakage(data, dof_scale):
    hz, y, dof = data
    p0 = Problem(hz=hz, y=y, dof=dof, dof_scale=dof_scale)
    p1 = Problem(hz=hz, y=y, dof=dof, dof_scale=dof_scale, leakage=(hz.copy(), np.eye(hz.size)))
    rng = np.random.default_rng(1)
    for phi in p0.prior_draws(6, rng):
        lp0, g0 = p0.logp(phi)
        lp1, g1 = p1.logp(phi)
        if not np.isfinite(lp0):
            assert not np.isfinite(lp1)
            continue
        # reason: same kernel on the same grid; only exp(f1 + f2 r) vs exp(f1) exp(f2 r) rounding
        assert abs(lp1 - lp0) <= 1e-12 * (1 + abs(lp0))
        np.testing.assert_allclose(g1, g0, rtol=1e-12, atol=1e-12 * (1 + np.abs(g0).max()))


def test_fine_grid_spectrum_matches_bins_where_grids_coincide(data):
    """DCT basis and f(2) ramp at the fractional bin index: the fine spectrum at a bin equals
    the ordinary bin spectrum (W = selection of the bin points of a 4x finer grid)."""
    hz, y, dof = data
    nu = np.arange(hz[0] - 1.0, hz[-1] + 1.0 + 1e-9, 0.25)
    W = np.zeros((hz.size, nu.size))
    W[np.arange(hz.size), np.searchsorted(nu, hz - 1e-9)] = 1.0
    p = Problem(hz=hz, y=y, dof=dof, leakage=(nu, W))
    th = _theta(p)
    S = T.spectra_many(th[None], hz, p._buf)[0]
    S_ref = spectrum_and_jacobian(th, hz)[0]
    # reason: same formula at identical (integer) bin indices; rounding only
    np.testing.assert_allclose(S, S_ref, rtol=1e-12)


def test_spectrum_is_W_times_fine_kernel_spectrum(data):
    hz, y, dof = data
    nu, W = welch_expectation_matrix(hz, sfreq=SFREQ, n_per_seg=NPS)
    p = Problem(hz=hz, y=y, dof=dof, leakage=(nu, W))
    th = _theta(p)
    S = T.spectra_many(th[None], hz, p._buf)[0]
    # numpy reference: kernel on nu with SPM's bin-indexed terms at the fractional bin index
    nf = hz.size
    fi = (nu - hz[0]) / (hz[1] - hz[0])
    Xd = np.stack([np.sqrt(2.0 / nf) * np.cos(np.pi * (2 * fi + 1) * (m + 1) / (2 * nf))
                   for m in range(4)], axis=1)
    th0 = th.copy()
    th0[24] = 0.0
    Sf = _kernel_grid(th0, nu, np.log(nu), np.ascontiguousarray(Xd), False, 50, 1e-13)[0]
    Sf = Sf * np.exp(th[24] * (fi + 1) / nf)
    ref = W @ Sf
    # reason: the same sums in a different order (numba loop vs BLAS)
    np.testing.assert_allclose(S, ref, rtol=1e-11)
    # and leakage matters here: the smoothed spectrum differs from the bin spectrum
    S_bins = spectrum_and_jacobian(th, hz)[0]
    assert np.max(np.abs(S / S_bins - 1)) > 1e-3


@pytest.mark.parametrize("dof_scale", ["recorded", "fit"])
def test_leakage_gradient_matches_finite_differences(data, dof_scale):
    hz, y, dof = data
    nu, W = welch_expectation_matrix(hz, sfreq=SFREQ, n_per_seg=NPS, oversample=4)
    p = Problem(hz=hz, y=y, dof=dof, dof_scale=dof_scale, leakage=(nu, W))
    rng = np.random.default_rng(3)
    phi = p.center + 0.3 * p.scale * rng.standard_normal(p.d)
    lp, g = p.logp(phi)
    assert np.isfinite(lp)
    fd = fd_grad(lambda x: p.logp(x, False)[0], phi)
    # reason: exact gradient (W is linear) vs central differences (step 1e-6, truncation ~1e-7)
    np.testing.assert_allclose(g, fd, rtol=2e-5, atol=2e-5 * (1 + np.abs(g).max()))


def test_leakage_changes_posterior_and_neural_power(data):
    hz, y, dof = data
    nu, W = welch_expectation_matrix(hz, sfreq=SFREQ, n_per_seg=NPS)
    p0 = Problem(hz=hz, y=y, dof=dof)
    p1 = Problem(hz=hz, y=y, dof=dof, leakage=(nu, W))
    phi = p0.center
    # reason: a 2-Hz-wide smoothing of the spectrum changes the likelihood by far more than 1e-6
    assert abs(p1.logp(phi, False)[0] - p0.logp(phi, False)[0]) > 1e-6
    # the neural power without the Jacobian (used by the gain map) equals the W-mapped one
    N = T.neural_power_many(np.ascontiguousarray(phi[None]), p1._buf)[0]
    ell = T.abs_gain_many(np.ascontiguousarray(phi[None]), p1._buf)[0]
    # reason: |L| = exp(u) / sqrt(N) by definition of the gain coordinate u; rounding only
    np.testing.assert_allclose(ell, np.exp(phi[p1.fold]) / np.sqrt(N), rtol=1e-10)


@pytest.mark.parametrize("bad", [
    lambda hz, nu, W: (nu, W[:-1]),                   # too few rows
    lambda hz, nu, W: (nu[:-1], W),                   # nu shorter than W's columns
    lambda hz, nu, W: (nu, W.T),                      # transposed
    lambda hz, nu, W: (-nu, W),                       # non-positive frequencies
    lambda hz, nu, W: (nu, np.where(W > 0.5, np.nan, W)),   # non-finite
    lambda hz, nu, W: nu,                             # not a pair
])
def test_bad_leakage_raises(data, bad):
    hz, y, dof = data
    nu, W = welch_expectation_matrix(hz, sfreq=SFREQ, n_per_seg=NPS, oversample=2)
    W[0, 0] = 0.6   # so that the non-finite case has an entry to replace
    with pytest.raises(ParameterError, match="leakage"):
        Problem(hz=hz, y=y, dof=dof, leakage=bad(hz, nu, W))


def test_model_leakage_auto_needs_welch_settings(data):
    hz, y, dof = data
    with pytest.raises(ParameterError, match="compute_psd"):
        CMCModel(y, freqs=hz, dof=dof, leakage="auto")._problem()
    with pytest.raises(ParameterError, match="leakage must be"):
        CMCModel(y, freqs=hz, dof=dof, leakage="welch")._problem()


def test_model_leakage_auto_from_compute_psd():
    from nmm_inference.features import compute_psd, read_recording

    fs = 200.0
    x = np.random.default_rng(0).standard_normal(int(30 * fs))
    psd = compute_psd(read_recording(x[None], sfreq=fs, units="au"), method="welch",
                      n_per_seg=200, fmin=4, fmax=40)
    prob = CMCModel(psd, leakage="auto")._problem()
    hz = np.asarray(psd["freq"].values, float)
    nu, W = welch_expectation_matrix(hz, sfreq=fs, n_per_seg=200, window="hann",
                                     detrend="constant")
    # reason: "auto" must rebuild exactly the operator of the PSD's own Welch settings
    np.testing.assert_array_equal(prob.leakage[0], nu)
    np.testing.assert_array_equal(prob.leakage[1], W)
    assert prob._buf[17] == 1.0 and int(prob._buf[18]) == nu.size
    mt = compute_psd(read_recording(x[None], sfreq=fs, units="au"), method="multitaper",
                     n_per_seg=200, fmin=4, fmax=40)
    with pytest.raises(ParameterError, match="Welch"):
        CMCModel(mt, leakage="auto")._problem()
