"""Likelihoods, SPM's data scaling and precision, and the closed-form scale integral."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.special import gammaln

from nmm_inference.errors import DataError
from nmm_inference.inference import _target as T
from nmm_inference.inference.likelihoods import (check_spectrum, complex_wishart_logpdf,
                                                 spm_csd2ccf, spm_precision, spm_scale_factor,
                                                 whittle_gamma_logpdf,
                                                 whittle_gamma_marginal_loglik)
from tests.conftest import shared_path


@pytest.fixture(scope="module")
def scaling_golden():
    return json.loads(shared_path("reference", "spm_golden", "extra_scaling_and_precision.json").read_text())


@pytest.mark.parametrize("case", ["c00_prior_mean_1_64", "c00_prior_mean_4_48",
                                  "c19_hisnr_prior_1_64", "c19_hisnr_prior_4_48"])
def test_spm_scaling_and_precision_match_spm(scaling_golden, case):
    g = scaling_golden[case]
    hz, y = np.array(g["Hz"], float), np.array(g["csd"], float)
    # reason: a re-implementation of spm_csd2ccf / spm_dcm_csd_Q; only rounding differs
    np.testing.assert_allclose(spm_csd2ccf(y, hz), np.ravel(g["ccf"]), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(spm_scale_factor(y, hz), g["scale_k"], rtol=1e-10)
    np.testing.assert_allclose(spm_precision(g["scale_k"] * y), np.ravel(g["Q_diag"]), rtol=1e-10)


def test_gamma_is_one_channel_complex_wishart():
    rng = np.random.default_rng(0)
    S = rng.uniform(0.5, 2.0, 10)
    C = S * rng.chisquare(16, 10) / 16
    a = whittle_gamma_logpdf(C, S, 16.0)
    b = complex_wishart_logpdf(C[:, None, None], S[:, None, None], 8.0)
    # reason: the same density written twice (m = dof / 2 complex vectors)
    np.testing.assert_allclose(a, b, rtol=1e-12)


def test_complex_wishart_is_maximised_at_the_sample_matrix():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((3, 12)) + 1j * rng.standard_normal((3, 12))
    C = (X @ X.conj().T / 12)[None]
    base = complex_wishart_logpdf(C, C, 12.0)[0]
    for _ in range(5):
        E = 0.05 * (rng.standard_normal((3, 3)) + 1j * rng.standard_normal((3, 3)))
        P = C + (E + E.conj().T)[None] / 2
        assert complex_wishart_logpdf(C, P, 12.0)[0] < base


def test_scale_marginal_equals_numerical_integral():
    rng = np.random.default_rng(2)
    S0 = rng.uniform(0.2, 1.0, 8)
    y = S0 * 1.7 * rng.chisquare(6, 8) / 6
    dof = 6.0
    closed = whittle_gamma_marginal_loglik(y, S0, dof)

    def integrand(s):
        return np.exp(np.sum(whittle_gamma_logpdf(y, S0 * np.exp(s), dof)) - closed)

    val = quad(integrand, -10, 10, limit=400)[0]
    # reason: closed form of a 1-D integral; quad is accurate to ~1e-10 here
    np.testing.assert_allclose(val, 1.0, rtol=1e-8)


@pytest.mark.parametrize("A,B,m,s", [(1440.0, 1500.0, 0.3, 0.125), (10.0, 3.0, 0.0, 30.0),
                                     (50.0, 200.0, 1.0, 0.125), (2.5, 0.1, -1.0, 1.0)])
def test_gauss_scale_integral_and_derivative(A, B, m, s):
    lI, dlI, dlIA = T._gauss_scale_integral(A, B, m, s)
    fh = np.log(B / A)

    def f(x):
        return np.exp(-A * x - B * np.exp(-x) - 0.5 * ((x - m) / s) ** 2 - lI) / (s * np.sqrt(2 * np.pi))

    lo, hi = min(fh, m) - 10 * s - 10, max(fh, m) + 10 * s + 10
    val = quad(f, lo, hi, points=[fh, m], limit=500)[0]
    # reason: 40-node Gauss-Hermite around the mode of a log-concave integrand
    np.testing.assert_allclose(val, 1.0, rtol=1e-9)
    eps = 1e-6 * B
    fd = (T._gauss_scale_integral(A, B + eps, m, s)[0] - T._gauss_scale_integral(A, B - eps, m, s)[0]) / (2 * eps)
    # reason: analytic derivative vs central difference (truncation ~1e-9)
    np.testing.assert_allclose(dlI, fd, rtol=1e-6)
    ea = 1e-6 * A
    fa = (T._gauss_scale_integral(A + ea, B, m, s)[0] - T._gauss_scale_integral(A - ea, B, m, s)[0]) / (2 * ea)
    np.testing.assert_allclose(dlIA, fa, rtol=1e-5, atol=1e-8)
    # flat prior: closed form Gamma(A) B^-A
    sp = np.array([0, 0, 0, 1, 0, 0, 1.0])
    np.testing.assert_allclose(T._scale_integral(A, B, sp)[0], gammaln(A) - A * np.log(B), rtol=1e-14)


@pytest.mark.parametrize("kwargs, match", [
    (dict(hz=[0.0, 1.0, 2.0], y=[1.0, 1.0, 1.0], dof=4), "> 0 Hz"),
    (dict(hz=[1.0, 2.0, 3.0], y=[1.0, np.nan, 1.0], dof=4), "NaN"),
    (dict(hz=[1.0, 2.0, 3.0], y=[1.0, 1.0], dof=4), "shape"),
    (dict(hz=[1.0, 2.0, 3.0], y=[1.0, 1.0, 1.0], dof=[4, 0, 4]), "dof"),
    (dict(hz=[1.0, 2.0, 3.0], y=[1.0, -1.0, 1.0], dof=4), "positive"),
    (dict(hz=[1.0, 3.0, 2.0], y=[1.0, 1.0, 1.0], dof=4), "increasing"),
])
def test_check_spectrum_names_the_problem(kwargs, match):
    with pytest.raises(DataError, match=match):
        check_spectrum(kwargs["hz"], kwargs["y"], kwargs["dof"])
