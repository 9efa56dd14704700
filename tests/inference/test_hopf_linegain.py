"""Line readout gain of the Hopf model: spectrum decomposition and the gain-marginal likelihood."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.optimize import brentq

from nmm_inference.errors import ParameterError
from nmm_inference.inference.hopf import HopfModel, hopf_spectrum, leading_line
from nmm_inference.inference.likelihoods import whittle_gamma_marginal_loglik

BASE = {"S": np.array([[0.5]])}
CORR = ("quintic", "noise")


def _P(g3):
    return {"S": np.array([[0.5]]), "G": np.array([[0.0, 0.0, g3, 0.0]])}


def _g3(sigma):
    return brentq(lambda g: leading_line(_P(g), 0.02).sigma - sigma, 1.75, 2.4, xtol=1e-12)


@pytest.mark.parametrize("interference", ["linear", "pulled", "incoherent"])
def test_parts_reproduce_spectrum_at_unit_gain(interference):
    hz = np.arange(20.0, 60.0, 0.25)
    P = _P(_g3(4.0))
    kw = dict(noise_std=0.02, taper_seconds=4.0, corrections=CORR, interference=interference)
    S, line = hopf_spectrum(P, hz, return_line=True, **kw)
    (So, Sl, Sx), line2 = hopf_spectrum(P, hz, return_line=True, return_parts=True, **kw)
    # reason: the same complex terms summed in another order; rounding only
    np.testing.assert_allclose(So + Sl + Sx, S, rtol=1e-12)
    assert line2.mean_I == line.mean_I
    # reason: S(g) = |B + sqrt(g) A|^2 convolved with a positive window is >= 0 for every g;
    # at g = 0.5 the line's power is halved and the spectrum stays positive
    Sg = So + 0.5 * Sl + np.sqrt(0.5) * Sx
    assert np.all(Sg > 0)
    # reason: near the line (38 Hz) the line term dominates the spectrum (> 90 % of it)
    k = np.argmax(S)
    assert Sl[k] > 0.9 * S[k]
    if interference == "incoherent":
        assert np.all(Sx == 0)
    # reason: the linear spectrum has no separate line: parts (S, 0, 0)
    Ssp = hopf_spectrum(P, hz, noise_std=0.02, spectrum="spm", taper_seconds=4.0)
    p = hopf_spectrum(P, hz, noise_std=0.02, spectrum="spm", taper_seconds=4.0, return_parts=True)
    assert np.array_equal(p[0], Ssp) and not p[1].any() and not p[2].any()


def _data(sigma, gain, seed, dof, hz):
    rng = np.random.default_rng(seed)
    g3 = _g3(sigma)
    So, Sl, Sx = hopf_spectrum(_P(g3), hz, noise_std=0.02, taper_seconds=4.0, corrections=CORR,
                               interference="pulled", return_parts=True)
    S = So + gain * Sl + np.sqrt(gain) * Sx
    return g3, (So, Sl, Sx), 2.3 * S * rng.chisquare(dof, size=hz.size) / dof


def test_gain_marginal_matches_quadrature_recorded_dof():
    hz = np.arange(20.0, 60.0, 0.5)        # the background fixes the overall scale
    g3, (So, Sl, Sx), y = _data(3.0, 1.15, 5, 40.0, hz)
    sg = 0.25
    m = HopfModel(y, freqs=hz, dof=40.0, free=["g_ii_ss"], priors={"g_ii_ss": (1.95, 0.25)},
                  base=BASE, noise_std=0.02, taper_seconds=4.0, corrections=CORR,
                  interference="pulled", line_gain_sd=sg)

    def ll(t):
        g = np.exp(t)
        return whittle_gamma_marginal_loglik(y, So + g * Sl + np.sqrt(g) * Sx, 40.0)

    peak = max(ll(t) for t in np.linspace(-0.5, 0.5, 101))
    ref = peak + np.log(quad(lambda t: np.exp(ll(t) - peak) * np.exp(-0.5 * (t / sg) ** 2)
                             / (sg * np.sqrt(2 * np.pi)), -5 * sg, 5 * sg, limit=400,
                             points=[0.0, np.log(1.15)])[0])
    # reason: uniform grid (spacing 0.01, prior truncated at +-5 sd and renormalised) vs
    # adaptive quadrature; conditional sd of log g here ~0.05, so the grid error is tiny
    assert m.log_likelihood([g3]) == pytest.approx(ref, abs=2e-3)
    mg, sdg = m.line_gain_posterior([g3])
    # reason: the data were made with gain 1.15 (log 0.14) by this model; truth within 3 sd
    assert abs(mg - np.log(1.15)) < 3 * sdg and 0 < sdg < 0.1


def test_gain_marginal_with_fitted_dof_matches_loop_and_reduces_to_no_gain():
    hz = np.arange(30.0, 46.0, 0.5)
    g3, (So, Sl, Sx), y = _data(-2.0, 0.9, 6, 60.0, hz)
    kw = dict(freqs=hz, dof=60.0, free=["g_ii_ss"], priors={"g_ii_ss": (1.95, 0.25)}, base=BASE,
              noise_std=0.02, taper_seconds=4.0, corrections=CORR, interference="pulled",
              dof_scale="fit", bin_correlation=True)
    m0 = HopfModel(y, **kw)
    m1 = HopfModel(y, line_gain_sd=0.2, **kw)
    # brute force: the existing kappa quadrature at every gain of the grid, then the gain sum
    cols = []
    for t in m1._logg:
        g = np.exp(t)
        cols.append(m0._logw + m0.loglik_scale * m0._ll_kappa(So + g * Sl + np.sqrt(g) * Sx))
    L = np.array(cols) + m1._loggw[:, None]
    ref = L.max() + np.log(np.sum(np.exp(L - L.max())))
    # reason: same sums, the separable form of the kappa terms; rounding only
    assert m1.log_likelihood([g3]) == pytest.approx(ref, abs=1e-6)
    # reason: a gain fixed to within 1e-3 of 1 gives the model without gain (log-lik change
    # ~ d ll / d log g * 1e-3 << 0.01)
    m2 = HopfModel(y, line_gain_sd=1e-3, line_gain_step=1e-4, **kw)
    assert m2.log_likelihood([g3]) == pytest.approx(m0.log_likelihood([g3]), abs=1e-2)
    mk0, _ = m0.dof_scale_posterior([g3])
    mk2, _ = m2.dof_scale_posterior([g3])
    assert mk2 == pytest.approx(mk0, abs=1e-3)


def test_line_gain_bad_input():
    hz = np.arange(30.0, 46.0, 0.5)
    y = np.ones_like(hz)
    kw = dict(freqs=hz, dof=40.0, free=["g_ii_ss"], priors={"g_ii_ss": (1.95, 0.25)}, base=BASE)
    with pytest.raises(ParameterError, match="spectrum='adiabatic'"):
        HopfModel(y, spectrum="spm", line_gain_sd=0.2, **kw)
    with pytest.raises(ParameterError, match="positive"):
        HopfModel(y, line_gain_sd=-0.2, **kw)
    with pytest.raises(ParameterError, match="no line gain"):
        HopfModel(y, **kw).line_gain_posterior([1.9])


def test_residual_scale_independent_and_correlated_bins():
    hz = np.arange(20.0, 60.0, 0.25)
    g3 = _g3(2.0)
    S = hopf_spectrum(_P(g3), hz, noise_std=0.02, taper_seconds=4.0, corrections=CORR,
                      interference="pulled")
    kw = dict(freqs=hz, dof=200.0, free=["g_ii_ss"], priors={"g_ii_ss": (1.95, 0.25)}, base=BASE,
              noise_std=0.02, taper_seconds=4.0, corrections=CORR, interference="pulled",
              bin_correlation=True, residual_lags=8)
    rng = np.random.default_rng(11)
    y0 = S * rng.chisquare(200.0, size=hz.size) / 200.0           # independent bins
    m0 = HopfModel(y0, **kw)
    # reason: no correlation beyond chance (sum of 8 lags has sd ~0.2): the estimate is above
    # the Hann scale 0.514 and is capped there
    assert m0.residual_scale([g3]) == pytest.approx(m0.loglik_scale, rel=1e-12)
    # AR(1) log-normal model error across bins (rho 0.5, sd 0.3, 90 % of the residual variance
    # against the Gamma noise, sd 0.1): sum_{k<=8} r_k = 0.9 * 0.996 -> scale 0.358
    sc = []
    for _ in range(10):
        e = np.empty(hz.size)
        e[0] = rng.standard_normal()
        for i in range(1, hz.size):
            e[i] = 0.5 * e[i - 1] + np.sqrt(0.75) * rng.standard_normal()
        sc.append(HopfModel(y0 * np.exp(0.3 * e), **kw).residual_scale([g3]))
    expect = 1.0 / (1.0 + 2.0 * 0.9 * (0.5 ** np.arange(1, 9)).sum())
    # reason: one estimate on 160 bins scatters with sd ~0.1 (checked over 40 draws: mean 0.37,
    # sd 0.10); the mean of 10 has sd ~0.03, tolerance 0.1 is > 3 sd
    assert np.mean(sc) == pytest.approx(expect, abs=0.1)
    with pytest.raises(ParameterError, match="bin_correlation"):
        HopfModel(y0, **{**kw, "bin_correlation": False})


@pytest.mark.slow
def test_fit_with_line_gain_and_residual_scale():
    hz = np.arange(20.0, 60.0, 0.5)
    g3, _, y = _data(3.0, 1.1, 8, 100.0, hz)
    m = HopfModel(y, freqs=hz, dof=100.0, free=["g_ii_ss"], priors={"g_ii_ss": (1.95, 0.25)},
                  base=BASE, noise_std=0.02, taper_seconds=4.0, corrections=CORR,
                  interference="pulled", dof_scale="fit", bin_correlation=True,
                  line_gain_sd=0.25, residual_lags=4)
    dt = m.fit(n_grid=11, draws=500, n_starts=1, random_seed=2)
    # reason: the data-estimated scale replaces the Hann one and never exceeds it
    assert 0 < m.loglik_scale <= m._hann_scale
    assert dt.attrs["loglik_scale"] == m.loglik_scale and dt.attrs["line_gain_sd"] == 0.25
    # reason: well-specified data (this model, gain 1.1 inside its prior): truth in the 94 % HPD
    assert m.joint_hpd_contains([g3])
    assert dt.attrs["grid_edge_mass"] < 1e-4
