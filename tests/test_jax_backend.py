"""The JAX backend against the numba kernel (an independent implementation of the same spectrum)."""
from __future__ import annotations

import numpy as np
import pytest

from nmm_inference.cmc.kernel import spectrum_and_jacobian
from tests.helpers import importorskip

jax = importorskip("jax")


def test_spectrum_and_gradient_match_kernel(rng):
    from nmm_inference.jax_backend import cmc_spectrum_jax, prior_moments

    mu, sd = prior_moments()
    hz = np.arange(1.0, 65.0)
    f = jax.jit(lambda t: cmc_spectrum_jax(t, hz))
    jf = jax.jit(jax.jacfwd(lambda t: cmc_spectrum_jax(t, hz)))
    for th in mu + 1.5 * sd * rng.standard_normal((3, mu.size)):
        y, jac, status, maxre = spectrum_and_jacobian(th, hz)
        assert status == 0 and maxre < -15  # SPM conditioning shifts poles by < exp(-15) here
        # two exact implementations (Newton on the eigenproblem vs dense matrix Newton)
        np.testing.assert_allclose(np.asarray(f(th)), y, rtol=1e-6)
        np.testing.assert_allclose(np.asarray(jf(th)), jac, rtol=0, atol=1e-7 * np.abs(jac).max())


@pytest.mark.slow
def test_batched_windows_run(rng):
    from nmm_inference.jax_backend import cmc_spectrum_jax, fit_windows_jax, prior_moments

    mu, _ = prior_moments()
    hz = np.arange(4.0, 49.0)
    S = np.asarray(jax.vmap(lambda t: cmc_spectrum_jax(t, hz))(np.tile(mu, (2, 1))))
    res = fit_windows_jax(hz, S, 64.0, num_warmup=5, num_samples=5, max_tree_depth=2, random_seed=0)
    assert res["theta"].shape == (2, 5, 25) and np.all(np.isfinite(res["theta"]))
