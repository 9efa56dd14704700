"""Re-whitening the warp components from a pilot run (``whiten_components``, ``pilot=``)."""
from __future__ import annotations

import numpy as np
import pytest

from nmm_inference.inference import _target as T
from nmm_inference.inference._problem import Problem
from nmm_inference.inference.laplace import find_modes
from nmm_inference.inference.samplers import (pilot_outlier_chains, sample_nutpie, warp_setup,
                                               whiten_components)


@pytest.fixture(scope="module")
def small(noisy_spectrum):
    """A 4-parameter problem (the rest fixed) with its best mode."""
    from nmm_inference.cmc.kernel import FREE_NAMES

    hz, y, dof = noisy_spectrum
    keep = {"tau_ss", "tau_sp", "lfp_gain", "contrib_ss"}
    fixed = {n: 0.0 for n in FREE_NAMES if n not in keep and n != "filter_offset"}
    p = Problem(hz=hz, y=y, dof=np.full(hz.size, dof), data_scale="model", fixed=fixed)
    modes = find_modes(p, n_starts=4, random_seed=0)
    return p, modes


def _draws_with(mu, C, n, rng):
    """``n`` draws whose sample mean is ``mu`` and sample covariance (ddof 1) is ``C``."""
    X = rng.standard_normal((n, mu.size))
    X -= X.mean(0)
    X = X @ np.linalg.inv(np.linalg.cholesky(np.cov(X.T))).T
    return mu + X @ np.linalg.cholesky(C).T


def test_whiten_components_maps_the_pilot_moments(small):
    p, modes = small
    d = p.d
    rng = np.random.default_rng(0)
    mu = np.array([0.3, -0.5, 0.1, 0.8])[:d]
    B = rng.standard_normal((d, d))
    C = B @ B.T / d + 0.5 * np.eye(d)
    n = 400
    Z = _draws_with(mu, C, n, rng)
    m = modes[0]
    (w,) = whiten_components(p, [m], Z.reshape(2, n // 2, d))
    Creg = (n * C + 5.0 * np.eye(d)) / (n + 5.0)
    # reason: linear algebra only (centre m + L mu, factor L chol(C_reg)), rounding ~1e-15
    np.testing.assert_allclose(w.phi, m.phi + m.chol @ mu, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(w.cov, m.chol @ Creg @ m.chol.T, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(w.chol @ w.chol.T, w.cov, rtol=1e-10, atol=1e-14)
    assert np.allclose(w.chol, np.tril(w.chol), atol=0.0)   # the numba target needs it lower
    assert w.weight == m.weight and w.n_hits == m.n_hits
    # reason: Laplace log evidence from the log posterior at the new centre and log|L A|
    le = (p.logp(w.phi, False)[0] + 0.5 * d * np.log(2 * np.pi)
          + np.sum(np.log(np.diag(w.chol))))
    assert w.log_evidence == pytest.approx(le, rel=1e-12, abs=1e-12)
    # the warped target of the new component is p(m + L (mu + A z)) |L A| (one component)
    buf, kept, _ = warp_setup(p, [w], min_mode_weight=0.0)
    A = np.linalg.cholesky(Creg)
    z = np.array([0.4, -0.2, 0.7, 0.1])[:d]
    lpw, gw = T.warp_logp_grad(z, buf)
    x = m.phi + m.chol @ (mu + A @ z)
    lp, g = p.logp(x)
    # reason: exact identity for K = 1; both sides evaluate the same kernel (rounding)
    assert lpw == pytest.approx(lp + np.sum(np.log(np.diag(w.chol))), rel=1e-10, abs=1e-9)
    np.testing.assert_allclose(gw, (m.chol @ A).T @ g, rtol=1e-8, atol=1e-8)


def test_whiten_components_rejects_bad_draws(small):
    p, modes = small
    with pytest.raises(ValueError):
        whiten_components(p, modes[:1], np.zeros((10, p.d + 1)))
    Z = np.zeros((10, p.d))
    Z[3, 1] = np.nan
    with pytest.raises(ValueError):
        whiten_components(p, modes[:1], Z)


def test_pilot_outlier_chains():
    rng = np.random.default_rng(3)
    Z = rng.normal(size=(4, 400, 5))
    # chains from one distribution: largest variance ratio of 400 draws in 5-D ~1.3, far below 4
    assert pilot_outlier_chains(Z) == []
    Z[2, :, 1] *= 3.0      # one chain 9x as wide along one axis
    assert pilot_outlier_chains(Z) == [2]
    Z[2, :, 1] /= 3.0
    Z[0, :, 4] += 2.5      # one chain off-centre: mean square 1 + 2.5^2 along that axis
    assert pilot_outlier_chains(Z) == [0]
    Z[3, :, 4] += 2.5      # half of the chains away: no majority, nothing left out
    assert pilot_outlier_chains(Z) == []
    assert pilot_outlier_chains(Z[:2]) == []         # two chains: no majority to compare with
    with pytest.raises(ValueError):
        pilot_outlier_chains(Z.reshape(-1, 5))


@pytest.mark.slow   # two short nutpie runs plus a pilot: ~10 s of CPU, more under load
def test_pilot_rewhitening_samples_the_same_posterior(small):
    """A deliberately bad warp (Laplace SDs x 3, centre shifted), with and without a pilot."""
    from nmm_inference.inference.laplace import Mode

    p, modes = small
    m = modes[0]
    L = 3.0 * m.chol
    bad = Mode(phi=m.phi + m.chol @ np.full(p.d, 1.5), logp=m.logp, cov=L @ L.T, chol=L,
               log_evidence=0.0, weight=1.0, n_hits=1)
    kw = dict(draws=1000, tune=400, chains=2, random_seed=3, min_mode_weight=0.0, cores=2)
    a, *_ = sample_nutpie(p, [bad], **kw)
    b, _, kept_b, _ = sample_nutpie(p, [bad], pilot=300, pilot_tune=300, **kw)
    assert b.info["pilot"] == 300 and len(b.info["pilot_cov_eigvals"]) == p.d
    # reason: the bad warp's draws have SD ~1/3 in z; the pilot's covariance shows it
    # (largest eigenvalue of the pilot's warped-draw covariance well below 1)
    assert max(b.info["pilot_cov_eigvals"]) < 0.5
    zb = b.z.reshape(-1, p.d)
    # reason: after re-whitening the warped draws are near standard (mean ~0, SD ~1); a
    # 300-draw pilot estimates them to ~10-20 %, hence the loose bounds
    assert np.all(np.abs(zb.mean(0)) < 0.35)
    assert np.all((zb.std(0) > 0.7) & (zb.std(0) < 1.4))
    xa, xb = a.phi.reshape(-1, p.d), b.phi.reshape(-1, p.d)
    se = np.sqrt(xa.var(0) / 300 + xb.var(0) / 300)   # conservative: ESS >= 300 per run
    # reason: two exact samplers of one posterior agree within Monte Carlo error
    diff = np.abs(xa.mean(0) - xb.mean(0))
    assert np.all(diff <= 4 * se), f"posterior means differ: {diff} > 4 x {se}"
    np.testing.assert_allclose(xa.std(0), xb.std(0), rtol=0.2)
