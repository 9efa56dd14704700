"""Special functions and the envelope densities of the amplitude SDE."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, special

from nmm_inference.adiabatic import stationary_density
from nmm_inference.errors import DataError, ParameterError
from nmm_inference.switching._special import expm1_ratio, log_i0_ratio, log_ndtr_mills
from nmm_inference.switching.envelope_likelihood import (_bessel_hankel, _bessel_series,
                                                         _expm1_ratio_fast, _rice_bessel,
                                                         check_envelope, envelope_emissions,
                                                         envelope_loglik, recommended_sfreq,
                                                         stationary_logpdf, to_sensor_units,
                                                         transition_logpdf)


def test_log_i0_ratio_matches_scipy():
    u = np.concatenate([np.linspace(0.0, 40.0, 2001), np.geomspace(40.0, 1e6, 100)])
    got = np.array([log_i0_ratio(x) for x in u])
    ref0 = np.log(special.i0e(u)) + u
    ref1 = special.i1e(u) / special.i0e(u)
    # series / Hankel expansion: accurate to a few ulp of log I0 and of the ratio
    np.testing.assert_allclose(got[:, 0], ref0, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(got[:, 1], ref1, rtol=1e-13, atol=1e-16)


def test_rice_bessel_matches_scipy():
    """The fixed-cost Bessel functions of the Rice density against scipy's Cephes values."""
    u = np.concatenate([np.linspace(0.0, 40.0, 40001), np.geomspace(40.0, 1e4, 4001),
                        np.array([1e-300, 1e-8, 15.999999, 16.0, 16.000001])])
    got = np.array([_rice_bessel(v) for v in u])
    i0e, i1e = special.i0e(u), special.i1e(u)
    # degree-13 interpolants built in extended precision: a few ulp (measured <= 2e-15); the
    # issue's bound is 1e-10
    np.testing.assert_allclose(got[:, 0], i0e, rtol=1e-14, atol=0)
    np.testing.assert_allclose(got[:, 1] * got[:, 0], i1e, rtol=1e-14, atol=1e-300)
    # W = u (1 - I1/I0) without scipy's cancellation: against the closed forms in extended
    # precision (power series below u = 20, Hankel expansions above)
    small = u < 20
    ref_w = np.empty_like(u)
    _, r_u = _bessel_series(u[small])
    ref_w[small] = (u[small] * (1 - u[small] * r_u)).astype(float)
    ref_w[~small] = _bessel_hankel(u[~small])[1].astype(float)
    np.testing.assert_allclose(got[:, 2], ref_w, rtol=1e-14, atol=1e-300)
    assert tuple(_rice_bessel(0.0)) == (1.0, 0.0, 0.0)
    assert np.all(np.isnan(_rice_bessel(np.nan)))          # NaN in, NaN out (no stray index)


def test_expm1_ratio_fast_matches_reference():
    y = np.r_[np.linspace(-3.0, 3.0, 6001), -1.0, 1.0, np.nextafter(1.0, 2.0), 1e-12]
    got = np.array([_expm1_ratio_fast(v) for v in y])
    ref = np.array([expm1_ratio(v) for v in y])
    # polynomial pair on [-1, 1], expm1 form beyond: both accurate to a few ulp
    np.testing.assert_allclose(got, ref, rtol=2e-15)


def test_log_ndtr_mills_matches_scipy():
    w = np.linspace(-60.0, 8.0, 3001)
    got = np.array([log_ndtr_mills(x) for x in w])
    ref = special.log_ndtr(w)
    mills = np.exp(-0.5 * w ** 2 - 0.5 * np.log(2 * np.pi) - ref)
    # erfc branch and asymptotic branch (w < -30) both to ~1e-12 relative
    np.testing.assert_allclose(got[:, 0], ref, rtol=1e-13)
    np.testing.assert_allclose(got[:, 1], mills, rtol=1e-11)


def test_expm1_ratio_smooth_at_zero():
    y = np.r_[np.linspace(-2.0, 2.0, 401), 1e-5, -1e-5, 9.9e-4, 1.01e-3]
    got = np.array([expm1_ratio(v) for v in y])
    ref = np.where(y == 0, 1.0, np.expm1(y) / np.where(y == 0, 1.0, y))
    np.testing.assert_allclose(got[:, 0], ref, rtol=1e-14)  # series below |y| = 1e-3
    h = 1e-6
    fd = (np.expm1(y + h) / (y + h) - np.expm1(y - h) / (y - h)) / (2 * h)
    np.testing.assert_allclose(got[:, 1], fd, rtol=1e-7)    # central differences ~1e-9


CASES = [(0.8, 0.75, 5.0, -10.0, 0.07, 0.01), (0.1, 0.3, -3.0, -2.0, 0.2, 0.05),
         (1e-3, 0.02, -1.0, -1.0, 0.01, 0.01), (1.0, 1.3, 2.0, -3.0, 0.1, 0.2),
         (0.5, 0.5, 0.0, -1.0, 0.1, 0.01)]


@pytest.mark.parametrize("x0,x,s,a,D,dt", CASES)
def test_transition_gradient_matches_finite_differences(x0, x, s, a, D, dt):
    lp, (gs, ga, gd) = transition_logpdf(x, x0, s, a, D, dt, gradient=True)
    h = 1e-6
    fs = (transition_logpdf(x, x0, s + h, a, D, dt) - transition_logpdf(x, x0, s - h, a, D, dt)) / (2 * h)
    fa = (transition_logpdf(x, x0, s, a + h, D, dt) - transition_logpdf(x, x0, s, a - h, D, dt)) / (2 * h)
    fd = (transition_logpdf(x, x0, s, a, D * (1 + h), dt)
          - transition_logpdf(x, x0, s, a, D * (1 - h), dt)) / (2 * h * D)
    scale = 1.0 + np.abs([gs, ga, gd]).max()
    # central differences with h = 1e-6: truncation + rounding ~1e-7 of the gradient scale
    np.testing.assert_allclose([gs, ga, gd], [fs, fa, fd], rtol=0, atol=2e-6 * scale)


def _rice_reference(x, x0, s, a, D, dt):
    """The transition density written out with numpy and scipy.special.i0e (module notes)."""
    h = lambda y: np.where(y == 0, 1.0, np.expm1(y) / np.where(y == 0, 1.0, y))  # noqa: E731
    I0 = x0 ** 2
    I1 = I0 * np.exp(2 * s * dt) / (1 - 2 * a * I0 * dt * h(2 * s * dt))
    v = D * dt * h(2 * dt * (s + 1.5 * a * (I0 + I1)))
    nu = np.sqrt(I1)
    return np.log(x / v) - (x - nu) ** 2 / (2 * v) + np.log(special.i0e(x * nu / v)), x * nu / v


def test_transition_density_matches_scipy_reference():
    rng = np.random.default_rng(7)
    x0 = np.exp(rng.uniform(np.log(1e-3), np.log(2.0), 4000))
    x = x0 * np.exp(rng.normal(0.0, 0.3, x0.size))
    s = rng.uniform(-20.0, 10.0, x0.size)
    a = -np.exp(rng.uniform(np.log(0.1), np.log(30.0), x0.size))
    D = np.exp(rng.uniform(np.log(1e-3), np.log(1.0), x0.size))
    dt = 0.02
    ref, u = _rice_reference(x, x0, s, a, D, dt)
    assert (u < 1).any() and ((u > 4) & (u < 16)).any() and (u > 100).any()   # all regimes
    got = transition_logpdf(x, x0, s, a, D, dt)
    # same formula; the reference's log(i0e(u)) + (terms of size u) cancel to O(1), so both
    # carry rounding errors ~u * 1e-16 (measured max |error| / (1 + u) = 2e-15)
    err = np.abs(got - ref) / (1.0 + u)
    assert err.max() < 2e-14, err.max()


@pytest.mark.parametrize("s,a,D", [(5.0, -10.0, 0.07), (-3.0, -2.0, 0.2), (0.0, -1.0, 0.1),
                                   (-50.0, -5.0, 0.01)])
def test_stationary_gradient_and_reference(s, a, D):
    x = np.array([0.05, 0.3, 0.7])
    lp, (gs, ga, gd) = stationary_logpdf(x, s, a, D, gradient=True)
    # same density as the adiabatic module's (closed-form normaliser, different code)
    np.testing.assert_allclose(np.exp(lp), stationary_density(x, s, a, D), rtol=1e-10)
    h = 1e-6
    fs = (stationary_logpdf(x, s + h, a, D) - stationary_logpdf(x, s - h, a, D)) / (2 * h)
    fa = (stationary_logpdf(x, s, a + h, D) - stationary_logpdf(x, s, a - h, D)) / (2 * h)
    fd = (stationary_logpdf(x, s, a, D * (1 + h)) - stationary_logpdf(x, s, a, D * (1 - h))) / (2 * h * D)
    scale = 1.0 + np.abs(np.r_[gs, ga, gd]).max()
    np.testing.assert_allclose(np.r_[gs, ga, gd], np.r_[fs, fa, fd], rtol=0, atol=2e-6 * scale)


@pytest.mark.parametrize("x0,s,a,D,dt", [(0.6, 2.0, -5.0, 0.1, 0.02), (0.05, -4.0, -1.0, 0.3, 0.05),
                                          (1.0, 3.0, -3.0, 0.05, 0.2)])
def test_densities_are_normalised(x0, s, a, D, dt):
    tot = integrate.quad(lambda x: np.exp(transition_logpdf(x, x0, s, a, D, dt)), 0, 10,
                         limit=200, points=[x0])[0]
    np.testing.assert_allclose(tot, 1.0, rtol=1e-8)        # Rice density, quadrature ~1e-10
    tot = integrate.quad(lambda x: np.exp(stationary_logpdf(x, s, a, D)), 0, 10, limit=200)[0]
    np.testing.assert_allclose(tot, 1.0, rtol=1e-8)


def test_transition_kernel_matches_sde_moments():
    """The Rice step reproduces the first two moments of the SDE after one sampling step."""
    rng = np.random.default_rng(5)
    s, a, D, dt, x0 = 2.0, -6.0, 0.05, 0.05, 0.3
    n, sub = 200_000, 200
    z = np.full(n, x0 + 0j)
    h = dt / sub
    for _ in range(sub):
        z = z + z * (s + a * np.abs(z) ** 2) * h + np.sqrt(D * h) * (
            rng.standard_normal(n) + 1j * rng.standard_normal(n))
    r = np.abs(z)
    grid = np.linspace(1e-6, 1.5, 20001)
    p = np.exp(transition_logpdf(grid, x0, s, a, D, dt))
    m1 = np.trapezoid(grid * p, grid)
    m2 = np.trapezoid(grid ** 2 * p, grid)
    # Monte Carlo sd of the mean ~2e-4; the kernel's O(dt^2) error ~1e-3 relative
    np.testing.assert_allclose(m1, r.mean(), rtol=4e-3)
    np.testing.assert_allclose(m2 - m1 ** 2, r.var(), rtol=3e-2)


def test_sensor_units_change_only_the_jacobian():
    rng = np.random.default_rng(0)
    x = 0.3 + np.abs(rng.normal(0.5, 0.2, size=300))
    g = 2.7
    s, a, D = 1.5, -4.0, 0.08
    a_s, D_s = to_sensor_units(a, D, g)
    lp_mode = envelope_loglik(x, sigma=s, a=a, D=D, sfreq=20.0)
    lp_sensor = envelope_loglik(g * x, sigma=s, a=a_s, D=D_s, sfreq=20.0)
    # change of variables x -> g x: each of the n - 1 conditioned samples gets -log g
    np.testing.assert_allclose(lp_sensor, lp_mode - (x.size - 1) * np.log(g), rtol=1e-12)


def test_emissions_sum_over_bands_and_condition_on_segment_starts():
    rng = np.random.default_rng(1)
    x = 0.2 + np.abs(rng.normal(size=(50, 2)))
    sig = np.array([[-2.0, 1.0], [1.0, -3.0]])
    lb = envelope_emissions(x, sigma=sig, a=-1.0, D=0.5, sfreq=10.0, segment_starts=[20])
    assert lb.shape == (50, 2)
    np.testing.assert_array_equal(lb[[0, 20]], 0.0)        # first sample of each segment conditioned on
    single = transition_logpdf(x[5, 1], x[4, 1], sig[0, 1], -1.0, 0.5, 0.1)
    both = transition_logpdf(x[5, 0], x[4, 0], sig[0, 0], -1.0, 0.5, 0.1) + single
    np.testing.assert_allclose(lb[5, 0], both, rtol=1e-13)  # bands add


def test_blocked_emissions_equal_the_scalar_density():
    """The blocked emission kernel (steps run over blocks of 128 samples, with a fallback for
    |2 lambda dt| > 1) gives each sample's scalar transition density, across block edges,
    segment starts, bands and states."""
    rng = np.random.default_rng(3)
    T = 700
    x = np.exp(rng.normal(-1.0, 0.8, size=(T, 2)))
    sig = np.array([[-4.0, 2.0], [1.0, -60.0]])      # -60 at 10 Hz: |2 lambda dt| > 1
    a = np.array([[-1.0, -3.0], [-2.0, -0.5]])
    D = np.array([[0.3, 0.1], [0.05, 0.2]])
    starts = [127, 128, 300, 641]
    lb = envelope_emissions(x, sigma=sig, a=a, D=D, sfreq=10.0, segment_starts=starts)
    ref = np.zeros_like(lb)
    for s in range(2):
        for m in range(2):
            ref[1:, s] += transition_logpdf(x[1:, m], x[:-1, m], sig[s, m], a[s, m], D[s, m], 0.1)
    ref[[0, *starts]] = 0.0
    np.testing.assert_allclose(lb, ref, rtol=1e-14, atol=1e-13)   # same arithmetic, reordered
    bad = envelope_emissions(x, sigma=sig, a=a, D=np.array([[0.3, 0.1], [0.05, -1.0]]),
                             sfreq=10.0)
    assert np.all(bad[1:, 1] == -np.inf) and np.all(np.isfinite(bad[:, 0]))


def test_bad_input_is_refused():
    with pytest.raises(DataError, match="positive"):
        check_envelope([1.0, 0.0, 2.0])
    with pytest.raises(DataError, match="non-finite"):
        check_envelope([1.0, np.nan, 2.0])
    with pytest.raises(ParameterError, match="kind"):
        envelope_loglik([1.0, 2.0, 3.0], sigma=1.0, a=-1.0, D=1.0, sfreq=10.0, kind="gauss")
    with pytest.raises(ParameterError, match="dt"):
        transition_logpdf(1.0, 1.0, 1.0, -1.0, 1.0, -0.1)
    with pytest.raises(ParameterError, match="shape"):
        envelope_emissions(np.ones((5, 2)), sigma=np.ones((2, 3)), a=-1.0, D=1.0, sfreq=10.0)
    # a blow-up of the noise-free flow (a > 0) is a zero-likelihood point, not an exception
    assert transition_logpdf(1.0, 1.0, 1.0, 5.0, 0.1, 1.0) == -np.inf
    assert stationary_logpdf(1.0, 1.0, 0.5, 0.1) == -np.inf


def test_recommended_sfreq():
    # band width 12 Hz + half of the two edges (5 and 8 Hz) for the 20-32 Hz band
    np.testing.assert_allclose(recommended_sfreq(20.0, 32.0), 18.5, rtol=1e-12)
    with pytest.raises(ParameterError):
        recommended_sfreq(30.0, 20.0)
