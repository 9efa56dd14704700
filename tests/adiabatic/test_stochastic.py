"""Stochastic amplitude dynamics: densities, passage times, SDE, sensor features."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad

from nmm_inference.adiabatic import (AmplitudeSDE, band_features, mean_first_passage_time,
                                     noise_diffusion, reduce_cmc, stationary_density)
from nmm_inference.adiabatic.stochastic import (envelope_correlation_time, kramers_langer_rate,
                                                stationary_moments)
from nmm_inference.errors import ParameterError, ReductionError

from .fullsim import T_DEFAULT, example1_gains


@pytest.mark.parametrize("sigma, a, D", [(-2.0, -2.67, 0.15), (1.0, -2.67, 0.15),
                                         (8.0, -0.5, 0.01)])
def test_density_normalised_and_moments(sigma, a, D):
    Z = quad(lambda r: stationary_density(r, sigma, a, D), 0, np.inf, limit=200)[0]
    np.testing.assert_allclose(Z, 1.0, rtol=1e-7)  # closed-form normalisation vs quadrature
    m = stationary_moments(sigma, a, D)
    Er = quad(lambda r: r * stationary_density(r, sigma, a, D), 0, np.inf, limit=200)[0]
    Er2 = quad(lambda r: r * r * stationary_density(r, sigma, a, D), 0, np.inf, limit=200)[0]
    np.testing.assert_allclose([m["mean_r"], m["mean_r2"]], [Er, Er2], rtol=1e-7)  # quadrature


def test_rayleigh_limit_and_subcritical_refusal():
    m = stationary_moments(-3.0, -1e-9, 0.06)
    np.testing.assert_allclose(m["mean_r2"], 0.06 / 3.0, rtol=1e-6)       # E r^2 = D/|sigma|
    np.testing.assert_allclose(m["mean_r"], np.sqrt(np.pi * 0.06 / 3.0) / 2, rtol=1e-6)
    # intensity correlation time of a linear quasi-cycle: exactly 1 / (2 |sigma|)
    tau = envelope_correlation_time(-3.0, -1e-9, 0.06, observable="intensity")
    np.testing.assert_allclose(tau, 1 / 6.0, rtol=2e-3)  # grid quadrature
    with pytest.raises(ReductionError, match="subcritical"):
        stationary_density(0.5, -1.0, 0.5, 0.1)
    with pytest.raises(ParameterError):
        stationary_moments(1.0, -1.0, -0.1)


def test_first_passage_and_correlation_against_sde_simulation():
    sigma, a, D = 1.0, -2.67, 0.15
    rng = np.random.default_rng(4)
    n, dt = 4000, 2e-4
    r = np.full(n, 0.1)
    t_hit = np.full(n, np.nan)
    r_target = np.sqrt(sigma / -a)
    t = 0.0
    while np.isnan(t_hit).any() and t < 20:
        alive = np.isnan(t_hit)
        r[alive] += (r[alive] * (sigma + a * r[alive] ** 2) + D / (2 * r[alive])) * dt \
            + np.sqrt(D * dt) * rng.standard_normal(alive.sum())
        r = np.abs(r)
        t += dt
        t_hit[alive & (r >= r_target)] = t
    T = mean_first_passage_time(0.1, r_target, sigma, a, D)
    # 4000 paths: standard error ~1.5 %; Euler time discretisation adds ~1 %
    np.testing.assert_allclose(np.nanmean(t_hit), T, rtol=0.05)
    # downward passage from the cycle to r = 0.2 is much slower than the upward one
    assert mean_first_passage_time(r_target, 0.2, sigma, a, D) > 5 * T


def test_noise_projection():
    red = reduce_cmc(example1_gains(3.15), T_DEFAULT)
    s = np.array([1.0, 2.0, 0.5, 3.0])
    D = noise_diffusion(red, s)
    mu = red._core["mu"]
    np.testing.assert_allclose(D, 0.5 * np.sum(np.abs(np.conj(mu) * s / T_DEFAULT) ** 2, axis=1),
                               rtol=1e-14)  # definition, spec §5.1
    np.testing.assert_allclose(noise_diffusion(red, 2.0), 4 * noise_diffusion(red, 1.0), rtol=1e-14)
    with pytest.raises(ParameterError):
        noise_diffusion(red, [1.0, 2.0])


def test_reduced_sde_matches_stationary_density():
    red = reduce_cmc(example1_gains(3.0), T_DEFAULT)
    s = np.sqrt(0.15 / noise_diffusion(red, 1.0)[0])
    sde = AmplitudeSDE(red, s, modes=[0])
    t, z = sde.simulate(60.0, dt=1e-3, n_trials=40, r0=[0.3], random_seed=2, record_every=10)
    r = np.abs(z[:, t > 3.0, 0])
    m = stationary_moments(red.sigma[0], red.a[0, 0], sde.D[0])
    # 40 x 57 s with correlation time ~0.5 s: standard error ~1 %; Euler bias ~ dt |sigma|
    np.testing.assert_allclose((r ** 2).mean(), m["mean_r2"], rtol=0.04)
    np.testing.assert_allclose(r.mean(), m["mean_r"], rtol=0.03)


def test_kramers_langer_textbook_double_well():
    eps = 0.1

    def E(x):
        return ((x[0] ** 2 - 1) ** 2 + 2 * x[1] ** 2) / eps

    def H(x):
        return np.diag([12 * x[0] ** 2 - 4, 4.0]) / eps

    k = kramers_langer_rate(E, H, np.array([1.0, 0.0]), np.array([0.0, 0.0]), np.full(2, eps))
    # textbook: k = |U''(0)| / 2 pi * sqrt(U''(1) / |U''(0)|) exp(-1/eps) (y-curvatures cancel)
    np.testing.assert_allclose(k, 4 / (2 * np.pi) * np.sqrt(8 / 4) * np.exp(-1 / eps), rtol=1e-12)


def test_band_features_single_state():
    red = reduce_cmc(example1_gains(3.15), T_DEFAULT)
    (bf,) = band_features(red, 2.0)
    D = noise_diffusion(red, 2.0)[0]
    m = stationary_moments(red.sigma[0], red.a[0, 0], D)
    np.testing.assert_allclose(bf.mean_envelope, 2 * abs(red.nu[0, 1]) * m["mean_r"], rtol=1e-12)
    np.testing.assert_allclose(bf.frequency_shift_hz, red.b[0, 0] * m["mean_r2"] / (2 * np.pi),
                               rtol=1e-12)
    # Lorentzian half width D / (2 I) (1 + (b/a)^2) (phase diffusion + amplitude-phase coupling)
    hw = D / (2 * m["mean_r2"]) * (1 + (red.b[0, 0] / red.a[0, 0]) ** 2) / (2 * np.pi)
    np.testing.assert_allclose(bf.linewidth_hz, hw, rtol=1e-12)
    assert bf.above_threshold and bf.switching_rate == 0.0 and bf.occupancy == {(0,): 1.0}
    # correlation time of the envelope about a limit cycle ~ 1 / (2 sigma) (within 30 %)
    np.testing.assert_allclose(bf.envelope_correlation_time, 1 / (2 * red.sigma[0]), rtol=0.3)


def test_band_features_bistable_switching(example2):
    G, T, U = example2
    red = reduce_cmc(G, T, 2 / 3, U)
    feats = band_features(red, 1.5, duration=150.0, random_seed=3)
    assert len(feats) == 2
    occ = feats[0].occupancy
    np.testing.assert_allclose(sum(occ.values()), 1.0, rtol=1e-12)
    # spec §6.4 (reduced model, noise 1.5): switching rate 0.46 1/s, 65 % of the time in state A
    # (mode 1 here); 150 s x 8 trials gives ~10 % sampling error on the rate
    np.testing.assert_allclose(feats[0].switching_rate, 0.46, rtol=0.2)
    np.testing.assert_allclose(occ[(1,)], 0.65, atol=0.08)
