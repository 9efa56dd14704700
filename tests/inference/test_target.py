"""The numba log posterior, its gain reparameterisation, and the Warp-U transformation."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad

from nmm_inference.inference import _target as T
from nmm_inference.inference._problem import Problem
from nmm_inference.inference.laplace import find_components, find_modes

from tests.helpers import fd_grad


@pytest.fixture(scope="module")
def problems(noisy_spectrum):
    hz, y, dof = noisy_spectrum
    return {ds: Problem(hz=hz, y=y, dof=np.full(hz.size, dof), data_scale=ds)
            for ds in ("auto", "model", "free", "spm")}


@pytest.mark.parametrize("ds", ["auto", "model", "free", "spm"])
def test_logp_gradient_matches_finite_differences(problems, ds):
    p = problems[ds]
    rng = np.random.default_rng(3)
    phi = p.center + 0.3 * p.scale * rng.standard_normal(p.d)
    lp, g = p.logp(phi)
    assert np.isfinite(lp)
    fd = fd_grad(lambda x: p.logp(x, False)[0], phi)
    # reason: exact adjoint gradient vs central differences (step 1e-6, truncation ~1e-7)
    np.testing.assert_allclose(g, fd, rtol=2e-5, atol=2e-5 * (1 + np.abs(g).max()))


@pytest.mark.parametrize("ds", ["auto", "free"])
def test_dof_scale_gradient_and_consistency(noisy_spectrum, ds):
    hz, y, dof = noisy_spectrum
    p = Problem(hz=hz, y=y, dof=np.full(hz.size, dof), data_scale=ds, dof_scale="fit")
    p0 = Problem(hz=hz, y=y, dof=np.full(hz.size, dof), data_scale=ds)
    assert p.names[-1] == "log_dof_scale"
    phi = p.center.copy()
    phi[-1] = -0.7
    lp, g = p.logp(phi)
    fd = fd_grad(lambda x: p.logp(x, False)[0], phi)
    # reason: as above, with digamma and the A-derivative of the scale integral
    np.testing.assert_allclose(g, fd, rtol=2e-5, atol=2e-5 * (1 + np.abs(g).max()))
    phi[-1] = 0.0   # kappa = 1: the recorded-dof posterior times the N(0, 1.5^2) density at 0
    np.testing.assert_allclose(p.logp(phi, False)[0] + 0.5 * np.log(2 * np.pi * 1.5 ** 2),
                               p0.logp(phi[:-1], False)[0], rtol=1e-12)


def test_spm_gaussian_gradient(noisy_spectrum):
    hz, y, dof = noisy_spectrum
    p = Problem(hz=hz, y=y, dof=np.full(hz.size, dof), likelihood="spm", data_scale="spm")
    assert p.names[-1] == "log_precision" and "filter_offset" in p.names
    phi = p.center
    lp, g = p.logp(phi)
    fd = fd_grad(lambda x: p.logp(x, False)[0], phi)
    # reason: as above; values of the Gaussian log-likelihood are ~1e4, so absolute error larger
    np.testing.assert_allclose(g, fd, rtol=1e-4, atol=1e-3 * (1 + np.abs(g).max()))


def test_gain_coordinate_round_trip(problems):
    p = problems["model"]
    rng = np.random.default_rng(4)
    phi = p.prior_draws(5, rng)
    ell = T.abs_gain_many(np.ascontiguousarray(phi), p._buf)
    N = T.neural_power_many(np.ascontiguousarray(phi), p._buf)
    # reason: u = log|L| + log(N)/2 inverted exactly
    np.testing.assert_allclose(np.log(ell) + 0.5 * np.log(N), phi[:, p.fold], rtol=1e-12, atol=1e-12)


def test_warp_with_one_component_is_the_whitened_posterior(problems):
    p = problems["auto"]
    rng = np.random.default_rng(5)
    A = rng.standard_normal((p.d, p.d)) * 0.01
    L = np.linalg.cholesky(np.diag(p.scale ** 2) * 0.1 + A @ A.T)
    m = p.center
    buf = p.buffer(m[None], L[None], [0.0])
    z = 0.5 * rng.standard_normal(p.d)
    lpw, gw = T.warp_logp_grad(z, buf)
    lp, g = p.logp(m + L @ z)
    # reason: pi(z) = p(m + L z) |L| exactly when K = 1
    np.testing.assert_allclose(lpw, lp + np.sum(np.log(np.diag(L))), rtol=1e-12)
    np.testing.assert_allclose(gw, L.T @ g, rtol=1e-10, atol=1e-10)


def test_warp_gradient_with_several_components(problems):
    p = problems["model"]
    modes, comps = find_components(p, n_starts=8, random_seed=0, ridge=("contrib_ss",))
    assert len(comps) >= 2
    buf = p.buffer(np.array([c.phi for c in comps]), np.array([c.chol for c in comps]),
                   np.log([c.weight for c in comps]), lp_max=np.inf)
    z = 0.7 * np.random.default_rng(6).standard_normal(p.d)
    lp, g = T.warp_logp_grad(z, buf)
    fd = fd_grad(lambda x: T.warp_logp_grad(x, buf)[0], z)
    # reason: analytic gradient of a log-sum-exp of whitened, partitioned log densities
    np.testing.assert_allclose(g, fd, rtol=2e-5, atol=2e-5 * (1 + np.abs(g).max()))


def test_lfp_gain_sign_is_drawn_from_the_folded_prior(problems):
    p = problems["free"]
    phi = np.tile(p.center, (20000, 1))
    th, _ = p.theta_matrix(phi, np.random.default_rng(7))
    ell = np.abs(th[0, 10])
    mu, sd = p.mu[p.fold], p.sd[p.fold]
    expect = np.exp(-0.5 * ((ell - mu) / sd) ** 2)
    expect = expect / (expect + np.exp(-0.5 * ((ell + mu) / sd) ** 2))
    # reason: Bernoulli frequency of 20000 draws, 4 binomial SDs
    np.testing.assert_allclose(np.mean(th[:, 10] > 0), expect, atol=4 * np.sqrt(0.25 / 20000))


@pytest.mark.parametrize("ds", ["auto", "model", "free"])
def test_filter_offset_draws_follow_their_conditional(problems, ds):
    p = problems[ds]
    A = p.alpha.sum()
    B = np.full(40000, A * 1.3)
    f = p.draw_filter_offset(B, np.random.default_rng(8))
    sp = p.scale_prior
    lI = T._scale_integral(A, B[0], sp)[0]

    def dens(x):
        lpri = -np.inf if sp[0] == 0 else np.logaddexp(
            np.log(sp[1]) - 0.5 * ((x - sp[2]) / sp[3]) ** 2 - np.log(sp[3] * np.sqrt(2 * np.pi)),
            np.log(max(sp[4], 1e-300)) - 0.5 * ((x - sp[5]) / sp[6]) ** 2 - np.log(sp[6] * np.sqrt(2 * np.pi)))
        if sp[0] == 0:
            lpri = 0.0
        return np.exp(-A * x - B[0] * np.exp(-x) + lpri - lI)

    lo, hi = f.min() - 1, f.max() + 1
    mean = quad(lambda x: x * dens(x), lo, hi, points=[np.median(f)], limit=400)[0]
    var = quad(lambda x: (x - mean) ** 2 * dens(x), lo, hi, points=[np.median(f)], limit=400)[0]
    # reason: Monte Carlo mean of 40000 exact draws, 5 standard errors
    np.testing.assert_allclose(f.mean(), mean, atol=5 * np.sqrt(var / f.size))
    np.testing.assert_allclose(f.var(), var, rtol=0.05)


def test_warp_components_do_not_bias_the_posterior(noisy_spectrum):
    """Same posterior with one Laplace component and with extra (ridge) components."""
    from nmm_inference.inference.samplers import sample_nutpie

    hz, y, dof = noisy_spectrum
    keep = {"tau_ss", "tau_sp", "lfp_gain", "contrib_ss"}
    from nmm_inference.cmc.kernel import FREE_NAMES

    fixed = {n: 0.0 for n in FREE_NAMES if n not in keep and n != "filter_offset"}
    p = Problem(hz=hz, y=y, dof=np.full(hz.size, dof), data_scale="model", fixed=fixed)
    assert p.d == 4
    modes = find_modes(p, n_starts=8, random_seed=0)
    _, comps = find_components(p, n_starts=8, random_seed=0, ridge=("contrib_ss", "lfp_gain"))
    assert len(comps) > len(modes[:1])
    out = []
    for cs in (modes[:1], comps):
        res, *_ = sample_nutpie(p, cs, draws=1500, tune=500, chains=2, random_seed=1,
                                min_mode_weight=0.0, cores=2)
        out.append(res.phi.reshape(-1, p.d))
    a, b = out
    se = np.sqrt(a.var(0) / 300 + b.var(0) / 300)   # conservative: ESS >= 300 per run
    # reason: two exact samplers of one posterior agree within Monte Carlo error
    diff = np.abs(a.mean(0) - b.mean(0))
    assert np.all(diff <= 4 * se), f"posterior means differ: {diff} > 4 x {se}"
    np.testing.assert_allclose(a.std(0), b.std(0), rtol=0.15)
