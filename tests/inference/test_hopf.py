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


# ------------------------------------------------------------------ beyond the cubic line

def test_quintic_coefficient_predicts_limit_cycle_frequency():
    from nmm_inference.cmc.simulate import simulate_cmc_states
    from nmm_inference.inference.hopf import _neural, _line_terms

    P = _P(_g3(5.0))
    line = leading_line(P, 1e-3)
    nm = _neural(P)[1]
    lam = complex(line.sigma, line.omega)
    t = _line_terms(nm, 1e-3, lam, ("quintic",), None, 1.0)
    from nmm_inference.adiabatic import reduce_cmc

    mode = reduce_cmc(nm.G[0], nm.T[0], nm.R).modes[0]
    Istar = -line.sigma / line.a
    x0 = 2 * np.real(np.sqrt(Istar) * mode.right_vector)
    times, X = simulate_cmc_states(P, duration=8.0, sfreq=250.0, noise_std=1e-7, dt=5e-5,
                                   burn_in=8.0, initial_state=x0, random_seed=0)
    z = mode.amplitude(X, np.zeros(8))
    shift = np.polyfit(times, np.unwrap(np.angle(z)), 1)[0] - line.omega
    I = float(np.mean(np.abs(z) ** 2))
    # reason: noise-free limit cycle at sigma = 5 (I = 0.66): measured shift -14.33 rad/s; the
    # quintic normal form gives -14.19 (7th-order terms ~0.15), the cubic -15.3
    assert shift == pytest.approx(line.b * I + t["b2"] * I * I, abs=0.4)
    assert abs(shift - line.b * I) > 0.9
    # reason: the amplitude follows sigma + a I + a2 I^2 = 0 to 1.5 % (measured 1.1 %)
    a2 = t["a2"]
    I5 = (-line.a - np.sqrt(line.a ** 2 - 4 * a2 * line.sigma)) / (2 * a2)
    assert I == pytest.approx(I5, rel=0.015)


def test_line_terms_values_and_small_amplitude_limits():
    from nmm_inference.inference.hopf import _line_terms, _neural

    for sig in (-5.0, 0.0, 5.0):
        P = _P(_g3(sig))
        line = leading_line(P, 0.02)
        nm = _neural(P)[1]
        t = _line_terms(nm, 0.02, complex(line.sigma, line.omega), ("quintic", "noise", "shift"),
                        None, 2.0)
        # reason: g_2 = -0.27 + 2.37i, -0.16 + 2.45i, -0.03 + 2.55i at sigma = -5, 0, 5 (b2 > 0
        # slows the frequency pull; the limit-cycle test checks its effect)
        assert 2.0 < t["b2"] < 3.0 and abs(t["a2"]) < 0.5
        # reason: no multiplicative noise and no describing-function change at I = 0
        assert t["diff_r"][0] == pytest.approx(1.0, abs=1e-12)
        assert t["diff_t"][0] == pytest.approx(1.0, abs=1e-12)
        # reason: the noise-induced shift at I = 0 is the eigenvalue of the Jacobian with the
        # slopes lowered by S'''(0) Var / 2 (first order), about -0.13 - 0.47i plus the Ito term
        assert -0.2 < t["shift"][0].real < -0.05 and -0.5 < t["shift"][0].imag < -0.25


def test_corrected_operator_reduces_to_cubic():
    base = _line(2.0, -7.0, -24.0, 0.7)
    import dataclasses

    tab = np.linspace(0.0, 5.0, 11)
    same = dataclasses.replace(base, table_I=tab, shift=np.zeros(11, complex),
                               diff_r=np.ones(11), diff_t=np.ones(11))
    d = np.linspace(-80.0, 40.0, 61)
    # reason: identity corrections take the general branch (trapezoid Q integral, exact for a
    # linear integrand, then linearly interpolated on 8 n_r nodes: ~1e-6) and must give the
    # closed-form cubic operator
    np.testing.assert_allclose(same.density(d), base.density(d), rtol=1e-5)
    m, v = same.moments()
    # reason: discrete moments vs the truncated-normal closed form, O(h^2) with 400 nodes
    assert m == pytest.approx(base.mean_I, rel=2e-3)
    # a pure rate shift equals a change of sigma (real) and omega (imaginary)
    sh = dataclasses.replace(base, table_I=tab, shift=np.full(11, -0.3 + 0.5j))
    moved = _line(1.7, -7.0, -24.0, 0.7)
    moved = dataclasses.replace(moved, i_max=base.mean_I + 14 * np.sqrt(base.var_I))
    # reason: the same operator up to a translation of the detuning by 0.5 rad/s (same
    # interpolation error as above)
    np.testing.assert_allclose(sh.density(d + 0.5), moved.density(d), rtol=1e-5)


def test_corrected_line_centre_follows_simulated_mode():
    from scipy import signal

    from nmm_inference.adiabatic import reduce_cmc
    from nmm_inference.cmc.simulate import simulate_cmc_states
    from nmm_inference.inference.hopf import _neural

    P = _P(_g3(4.0))
    nm = _neural(P)[1]
    mode = reduce_cmc(nm.G[0], nm.T[0], nm.R).modes[0]
    _, X = simulate_cmc_states(P, duration=60.0, sfreq=250.0, noise_std=0.02, dt=5e-5,
                               burn_in=2.0, random_seed=5)
    z = mode.amplitude(X, np.zeros(8))
    f, pz = signal.welch(z, fs=250.0, nperseg=1000, return_onesided=False, detrend=False)
    sel = (f > 30) & (f < 46)
    centre_sim = np.sum(f[sel] * pz[sel]) / np.sum(pz[sel])
    ff = np.arange(30.0, 46.0, 0.01)
    cen = {}
    for name, corr in (("cubic", ()), ("corrected", ("quintic", "noise", "shift"))):
        line = leading_line(P, 0.02, corrections=corr)
        d = line.density(2 * np.pi * ff - line.omega)
        cen[name] = np.sum(ff * d) / np.sum(d)
    # reason: power-weighted centre of the simulated mode's line (60 s: sd ~0.05 Hz); the
    # corrected line is within 0.15 Hz, the cubic one ~0.3 Hz too low (frequency over-pulled)
    assert abs(centre_sim - cen["corrected"]) < 0.15
    assert cen["corrected"] - cen["cubic"] > 0.2


def test_corrections_vanish_far_below_threshold():
    hz = np.linspace(20.0, 60.0, 41)
    S0 = hopf_spectrum({}, hz, noise_std=1e-4)
    for itf in ("linear", "pulled"):
        S1 = hopf_spectrum({}, hz, noise_std=1e-4, corrections="all", interference=itf)
        # reason: at E[I] ~ 1e-6 every correction is O(I) or O(noise variance): < 1e-4
        np.testing.assert_allclose(S1, S0, rtol=1e-4)
    with pytest.raises(ParameterError, match="unknown corrections"):
        hopf_spectrum({}, hz, noise_std=1e-4, corrections=["nope"])
    with pytest.raises(ParameterError, match="interference"):
        hopf_spectrum({}, hz, noise_std=1e-4, interference="nope")


def test_hann_bin_correlation_and_loglik_scale():
    from scipy import signal

    from nmm_inference.inference.hopf import hann_bin_correlation

    # reason: closed form |W2(k)|^2 / W2(0)^2 of the Hann taper squared: 4/9, 1/36, 0
    np.testing.assert_allclose(hann_bin_correlation([0, 1, 2, 3]), [1, 4 / 9, 1 / 36, 0], atol=1e-12)
    rng = np.random.default_rng(0)
    R = []
    for _ in range(40):
        f, p = signal.welch(rng.standard_normal(50_000), fs=250.0, nperseg=1000)
        R.append(p[(f >= 20) & (f <= 60)])
    R = np.array(R)
    R = R / R.mean(axis=0) - 1
    rho1 = np.mean([np.corrcoef(R[:, i], R[:, i + 1])[0, 1] for i in range(R.shape[1] - 1)])
    # reason: empirical adjacent-bin correlation of Welch (Hann, 50 % overlap) on white noise,
    # 40 x 160 pairs: sd ~0.013
    assert rho1 == pytest.approx(4 / 9, abs=0.05)
    hz = np.arange(30.0, 46.0, 0.25)
    S = hopf_spectrum(_P(_g3(-2.0)), hz, noise_std=0.02, taper_seconds=4.0)
    y = S * rng.chisquare(100, size=hz.size) / 100
    kw = dict(freqs=hz, dof=100.0, free=["g_ii_ss"], priors={"g_ii_ss": (1.95, 0.25)}, base=BASE,
              noise_std=0.02, taper_seconds=4.0)
    m0 = HopfModel(y, **kw)
    m1 = HopfModel(y, bin_correlation=True, **kw)
    # reason: composite-likelihood scale 1 / (1 + 2 (4/9 + 1/36)) = 0.5143 on the 1/T grid
    assert m1.loglik_scale == pytest.approx(1 / (1 + 2 * (4 / 9 + 1 / 36)), rel=1e-9)
    assert m1.log_likelihood([1.9]) == pytest.approx(m1.loglik_scale * m0.log_likelihood([1.9]),
                                                     rel=1e-12)
