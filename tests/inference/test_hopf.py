"""Spectra across a Hopf point (adiabatic line of the leading mode) and the grid posterior."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.optimize import brentq

from nmm_inference.cmc.equations import input_jacobian, jacobian, neural_from_spm
from nmm_inference.errors import ParameterError, ReductionError
from nmm_inference.inference.hopf import HopfModel, LeadingLine, hopf_spectrum, leading_line
from nmm_inference.params import canonical_spm

BASE = {"S": np.array([[0.5]])}   # the ss<->ii loop (~38 Hz) crosses its Hopf point near G(3) = 1.94


def _P(g3):
    return {"S": np.array([[0.5]]), "G": np.array([[0.0, 0.0, g3, 0.0]])}


def _g3(sigma):
    return brentq(lambda g: leading_line(_P(g), 0.02).sigma - sigma, 1.75, 2.4, xtol=1e-12)


def test_linear_spectrum_matches_direct_transfer_function():
    hz = np.linspace(2.0, 80.0, 40)
    P = {"G": np.array([[0.3, -0.2, 0.1, 0.2]]), "T": np.array([[0.1, -0.1, 0.2, 0.0]])}
    S = hopf_spectrum(P, hz, noise_std=0.01, spectrum="spm")
    nm = neural_from_spm(canonical_spm(P, 1))
    J, B = jacobian(nm), input_jacobian(nm)[:, 0]
    C = canonical_spm(P, 1)["J"].reshape(8) * canonical_spm(P, 1)["L"].ravel()[0]
    H = np.array([C @ np.linalg.solve(2j * np.pi * f * np.eye(8) - J, B) for f in hz])
    # reason: modal sum vs direct resolvent of the same stable Jacobian; rounding only
    np.testing.assert_allclose(S, 2 * 0.01 ** 2 * np.abs(H) ** 2, rtol=1e-9)


def test_adiabatic_equals_linear_far_below_threshold():
    hz = np.linspace(2.0, 60.0, 59)
    Sa, line = hopf_spectrum({}, hz, noise_std=1e-4, spectrum="adiabatic", return_line=True)
    Sl = hopf_spectrum({}, hz, noise_std=1e-4, spectrum="spm")
    assert line.sigma < -30.0
    # reason: with a E[I] / sigma ~ 1e-6 the line is the linear Lorentzian to O(D a / sigma^2)
    np.testing.assert_allclose(Sa, Sl, rtol=1e-4)
    # reason: Rayleigh limit E[I] = D / |sigma|, w = |sigma| up to the same O(1e-6) terms
    assert line.mean_I == pytest.approx(line.D / abs(line.sigma), rel=1e-4)
    assert line.width == pytest.approx(abs(line.sigma), rel=1e-4)


def _line(sigma, a, b, D):
    from nmm_inference.inference.hopf import _intensity_moments

    EI, V = _intensity_moments(sigma, a, D)
    return LeadingLine(sigma=sigma, omega=200.0, a=a, b=b, D=D, mean_I=EI, var_I=V,
                       width=D * (V + EI * EI) / (2 * EI ** 3), centre=200.0 + b * EI)


def test_line_limit_cycle_limit():
    line = leading_line(_P(_g3(5.0)), 1e-3)
    Istar = -line.sigma / line.a
    # reason: sigma^2 / (D |a|) ~ 1e4: I ~ N(I*, D/|a|), so E[I] = I* and w = D / (2 I*) to 1e-3
    assert line.mean_I == pytest.approx(Istar, rel=1e-3)
    assert line.width == pytest.approx(line.D / (2 * Istar), rel=2e-3)


def test_intensity_moments_against_quadrature():
    from nmm_inference.inference.hopf import _intensity_moments

    for sigma, a, D in [(-33.8, -0.26, 1.6e-4), (-5.0, -2.0, 0.5), (-2.5, -2.0, 0.02),
                        (0.0, -2.0, 0.5), (5.0, -7.0, 0.7)]:
        sc = D / abs(sigma) if sigma < 0 else np.sqrt(D / -a)

        def f(u, k):
            return (u * sc) ** k * np.exp((sigma * u * sc + 0.5 * a * (u * sc) ** 2) / D)

        m = [quad(f, 0, np.inf, args=(k,), limit=400)[0] for k in range(3)]
        EI, V = _intensity_moments(sigma, a, D)
        # reason: closed form (truncated normal; Mills-ratio series when deeply truncated) vs quadrature
        assert EI == pytest.approx(m[1] / m[0], rel=1e-7)
        assert V == pytest.approx(m[2] / m[0] - (m[1] / m[0]) ** 2, rel=1e-5)


def test_line_density_linear_limit_and_power():
    lin = _line(-5.0, -1e-9, 0.0, 0.5)
    d = np.array([0.0, 1.0, 5.0, 20.0, 100.0])
    # reason: a = b = 0 is the complex OU process (Lorentzian); O(h^2) error of 120 radial nodes
    np.testing.assert_allclose(lin.density(d), 2 * 0.5 / (d ** 2 + 25.0), rtol=5e-4)
    for sigma in (-5.0, 0.0, 5.0):
        line = _line(sigma, -7.0, -24.0, 0.7)
        # quadrature of the line plus the analytic 1/D^2 tails beyond +-2000 rad/s
        tot = quad(lambda x: float(line.density(np.array([x]))[0]), -2000, 2000, limit=800,
                   points=[line.centre - 200.0])[0]
        tail = 2 * float(line.density(np.array([2000.0]))[0]) * 2000.0
        # reason: the line carries the mode's power E[I] (2 pi E[I] over angular detuning)
        assert tot + tail == pytest.approx(2 * np.pi * line.mean_I, rel=2e-3)
    # above threshold the line sits near omega + b E[I] and is broadened by b (linewidth enhancement)
    line = _line(5.0, -7.0, -24.0, 0.7)
    x = np.linspace(-60.0, 20.0, 1601)
    dens = line.density(x)
    # reason: the peak lies between the mean frequency b E[I] and the power-weighted mean
    # b E[I^2] / E[I] (the line is skewed towards larger amplitudes); 0.05 rad/s grid
    lo, hi = sorted([line.b * line.mean_I, line.b * (line.var_I + line.mean_I ** 2) / line.mean_I])
    assert lo - 0.05 <= x[np.argmax(dens)] <= hi + 0.05
    half = x[dens >= 0.5 * dens.max()]
    hw = 0.5 * (half[-1] - half[0])
    Istar = 5.0 / 7.0
    # reason: the Henry-factor half-width (1 + (b/a)^2) D / (2 I*) is the far-above-threshold
    # limit; at sigma^2 / (D |a|) = 5 it holds within a factor 1.5
    assert 0.67 < hw / ((1 + (24 / 7) ** 2) * 0.7 / (2 * Istar)) < 1.5


def test_above_threshold_peak_follows_simulation_not_spm():
    from scipy import signal

    from nmm_inference.cmc.simulate import simulate_cmc_states

    P = _P(_g3(4.0))
    _, X = simulate_cmc_states(P, duration=60.0, sfreq=250.0, noise_std=0.02, dt=5e-5,
                               burn_in=2.0, random_seed=3)
    Pc = canonical_spm(P, 1)
    f, pxx = signal.welch(X @ Pc["J"].reshape(8), fs=250.0, nperseg=1000)
    sel = (f > 20) & (f < 60)
    f, pxx = f[sel], pxx[sel]
    Sa = hopf_spectrum(P, f, noise_std=0.02, taper_seconds=4.0)
    Sl = hopf_spectrum(P, f, noise_std=0.02, spectrum="spm", taper_seconds=4.0)
    # reason: the limit-cycle line is at 38.0 Hz in simulation; 0.25 Hz bins, reduction error ~1 bin
    assert abs(f[np.argmax(Sa)] - f[np.argmax(pxx)]) <= 0.5
    # reason: peak-to-background contrast within a factor 2 (simulated: ~1e3)
    ca = Sa.max() / np.median(Sa)
    cs = pxx.max() / np.median(pxx)
    assert 0.5 < ca / cs < 2.0
    # reason: SPM's conditioning removes the unstable mode: no line left (contrast < 1/100 of the data's)
    assert Sl.max() / np.median(Sl) < 0.01 * cs


def test_hopf_model_reduced_inversion_recovers_truth():
    rng = np.random.default_rng(7)
    hz = np.arange(25.0, 55.0, 0.25)
    g3 = _g3(3.0)
    S = hopf_spectrum(_P(g3), hz, noise_std=0.02, taper_seconds=4.0)
    dof = 100.0
    y = 3.7 * S * rng.chisquare(dof, size=hz.size) / dof     # unknown overall scale
    m = HopfModel(y, freqs=hz, dof=dof, free=["g_ii_ss"], priors={"g_ii_ss": (1.95, 0.25)},
                  base={**BASE, "G": np.array([[0.0, 0.0, 0.0, 0.0]])}, noise_std=0.02,
                  taper_seconds=4.0)
    dt = m.fit(n_grid=31, draws=2000, random_seed=1)
    x = dt.posterior["g_ii_ss"].values.ravel()
    lo, hi = np.quantile(x, [0.03, 0.97])
    # reason: data generated by this model (well-specified): the truth must be inside the 94 % interval
    assert lo <= g3 <= hi
    # reason: the grid must cover the posterior (mass on its edge below 1e-4 by construction)
    assert dt.attrs["grid_edge_mass"] < 1e-4
    assert m.joint_hpd_contains([g3])
    # the SPM (linear) spectrum on the same data fits far worse (it has no line at all)
    ms = HopfModel(y, freqs=hz, dof=dof, free=["g_ii_ss"], priors={"g_ii_ss": (1.95, 0.25)},
                   base=BASE, noise_std=0.02, spectrum="spm", taper_seconds=4.0)
    # reason: a missing 38 Hz line costs thousands of log units with dof 100 on 120 bins
    assert m.log_likelihood([g3]) - max(ms.log_likelihood([g]) for g in (1.8, 1.95, 2.1)) > 100


def test_hopf_model_dof_scale_marginal_matches_quadrature():
    from scipy.integrate import quad as q1

    from nmm_inference.inference.likelihoods import whittle_gamma_marginal_loglik

    rng = np.random.default_rng(3)
    hz = np.arange(30.0, 46.0, 0.5)
    g3 = _g3(-2.0)
    S = hopf_spectrum(_P(g3), hz, noise_std=0.02)
    y = S * rng.chisquare(40, size=hz.size) / 40 * np.exp(0.5 * rng.standard_normal(hz.size))   # model error
    m = HopfModel(y, freqs=hz, dof=40.0, free=["g_ii_ss"], priors={"g_ii_ss": (1.95, 0.25)},
                  base=BASE, noise_std=0.02, dof_scale="fit")
    ref_ll = [whittle_gamma_marginal_loglik(y, S, np.exp(t) * 40.0) for t in (-1.0, 0.0)]
    peak = max(ref_ll)

    def integrand(t):
        return np.exp(whittle_gamma_marginal_loglik(y, S, np.exp(t) * 40.0) - peak) \
            * np.exp(-0.5 * (t / 1.5) ** 2) / (1.5 * np.sqrt(2 * np.pi))

    ref = peak + np.log(q1(integrand, -7.5, 4.5, limit=400, points=[-1.0, 0.0])[0])
    # reason: grid (0.03 spacing, truncated prior +-5/3 sd renormalised) vs adaptive quadrature
    assert m.log_likelihood([g3]) == pytest.approx(ref, abs=2e-3)
    mk, sk = m.dof_scale_posterior([g3])
    # reason: log-variance 0.25 of model error against 2/40 of sampling: kappa ~ 0.2, well below 1
    assert np.exp(mk) < 0.5 and 0 < sk < 0.5


def test_hopf_model_bad_input():
    hz = np.arange(10.0, 20.0)
    y = np.ones_like(hz)
    with pytest.raises(ParameterError, match="unknown free parameter"):
        HopfModel(y, freqs=hz, dof=10, free=["nope"], priors={"nope": (0, 1)})
    with pytest.raises(ParameterError, match="give a prior"):
        HopfModel(y, freqs=hz, dof=10, free=["g_ii_ss"], priors={})
    with pytest.raises(ParameterError, match="1 to 3"):
        HopfModel(y, freqs=hz, dof=10, free=["g_ii_ss", "tau_ss", "tau_sp", "tau_ii"],
                  priors={n: (0, 1) for n in ["g_ii_ss", "tau_ss", "tau_sp", "tau_ii"]})
    with pytest.raises(ParameterError, match="spectrum must be"):
        hopf_spectrum({}, hz, noise_std=0.01, spectrum="linear")
    with pytest.raises(ParameterError, match="noise_std"):
        leading_line({}, 0.0)
    with pytest.raises(ParameterError, match="dof_scale"):
        HopfModel(y, freqs=hz, dof=10, free=["g_ii_ss"], priors={"g_ii_ss": (0, 1)},
                  dof_scale="free")


def test_subcritical_leading_mode_raises():
    # at G(3) = 1 with S = 0.5 the least-damped mode has Re g_kk > 0
    with pytest.raises(ReductionError, match="subcritical"):
        leading_line(_P(1.0), 0.02)
