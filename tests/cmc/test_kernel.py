"""The fast numba kernel and the PyTensor Op against the reference and finite differences."""
from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import importorskip

from nmm_inference.cmc.kernel import FREE_NAMES, spectrum, spectrum_and_jacobian, theta_from_spm
from nmm_inference.errors import ParameterError
from nmm_inference.params import named_to_spm, parameter_table
from nmm_inference.spm import predict_csd

from ..conftest import cplx, golden_cases

SPECS = [s for s in parameter_table(1) if s.free]
MU = np.array([s.prior_mean for s in SPECS])
SD = np.sqrt([s.prior_var for s in SPECS])
HZ = np.arange(1.0, 65.0)


def prior_draws(rng, n, widen=1.0):
    return MU + widen * SD * rng.standard_normal((n, MU.size))


def test_free_names_follow_spm_vec_order(golden):
    g = golden("c00_prior_mean")
    names = [n for n, v in zip(g["param_vector_names"], g["prior_variance_vector"]) if v > 0]
    assert [s.spm_label for s in SPECS] == names


@pytest.mark.parametrize("case", golden_cases())
def test_kernel_matches_golden(golden, case):
    g = golden(case)
    th = theta_from_spm(g["params"])
    for hzkey, ykey in (("Hz", "csd_predicted"), ("Hz_4_48", "csd_predicted_4_48")):
        y, _, status, _ = spectrum_and_jacobian(th, g[hzkey])
        assert status in (0, 1)
        np.testing.assert_allclose(y, cplx(g[ykey]).real, rtol=1e-5)  # the SPM contract tolerance


def test_kernel_matches_reference_on_prior_draws(rng):
    for th in prior_draws(rng, 30, widen=2.0):
        P = named_to_spm(dict(zip(FREE_NAMES, th)))
        y_ref = predict_csd(P, HZ)
        y, _, status = spectrum(th, HZ)
        if status == 2:
            continue
        # two exact solutions of the same equations: agreement to rounding of the eigensolver
        np.testing.assert_allclose(y, y_ref, rtol=1e-8)


def test_gradient_against_finite_differences(rng):
    for th in prior_draws(rng, 8, widen=1.5):
        y, jac, status, _ = spectrum_and_jacobian(th, HZ)
        assert status == 0
        fd = np.empty_like(jac)
        h = 1e-6
        for i in range(th.size):
            e = np.zeros_like(th)
            e[i] = h
            fd[:, i] = (spectrum(th + e, HZ)[0] - spectrum(th - e, HZ)[0]) / (2 * h)
        # central differences with h=1e-6 carry ~1e-8 relative truncation/rounding error
        scale = np.maximum(np.abs(fd).max(axis=0), 1e-12 * np.abs(y).max())
        np.testing.assert_array_less(np.abs(jac - fd).max(axis=0) / scale, 1e-5)


def test_unstable_status_and_bad_input():
    th = MU.copy()
    th[FREE_NAMES.index("sigmoid_slope")] = 2.0  # golden case c15: delayed modes grow
    y, status, maxre = spectrum(th, HZ)
    assert status == 1 and maxre > 80 and np.all(np.isfinite(y))
    with pytest.raises(ParameterError, match="non-finite"):
        spectrum(np.where(np.arange(25) == 3, np.nan, MU), HZ)
    with pytest.raises(ParameterError, match="shape"):
        spectrum(MU[:24], HZ)
    with pytest.raises(ParameterError, match="positive"):
        spectrum(MU, np.array([0.0, 1.0]))


def test_long_delay_agrees_with_reference():
    th = MU.copy()
    th[FREE_NAMES.index("delay_intrinsic")] = 2.5  # 12 ms, 20 prior SDs: delayed modes grow
    y, status, maxre = spectrum(th, HZ)
    assert status == 1 and maxre > 0
    y_ref = predict_csd(named_to_spm(dict(zip(FREE_NAMES, th))), HZ)
    np.testing.assert_allclose(y, y_ref, rtol=1e-6)  # same equation, same Newton start


def test_delay_failure_gives_inf_signal():
    y, status, _ = spectrum(MU, HZ, max_iter=1)  # one Newton step cannot reach 1e-13
    assert status == 2 and np.all(np.isposinf(y))


@pytest.mark.parametrize("which, value", [("tau_sp", 1e4), ("tau_ss", 800.0), ("delay_intrinsic", -800.0),
                                          ("tau_ii", -800.0)])
def test_absurd_parameters_give_inf_signal_not_a_crash(which, value):
    # an unbounded optimiser step once reached tau_sp ~ 1e4 prior units (rates underflow to 0,
    # K singular): the kernel must return the status-2 signal, not read an incomplete pivot
    th = MU.copy()
    th[FREE_NAMES.index(which)] = value
    y, jac, status, _ = spectrum_and_jacobian(th, HZ)
    assert status == 2 and np.all(np.isposinf(y)) and np.all(jac == 0)


@pytest.mark.parametrize("mode", ["FAST_RUN", "NUMBA"])
def test_pytensor_op_gradient(mode, rng):
    pytensor = importorskip("pytensor")
    import pytensor.tensor as pt

    from nmm_inference.cmc.pytensor_ops import cmc_spectrum

    th = pt.dvector("theta")
    obs = np.exp(rng.standard_normal(HZ.size)) * 0.05
    y, _ = cmc_spectrum(th, HZ)
    logp = pt.sum(-pt.log(y) - obs / y)  # Whittle log-likelihood
    f = pytensor.function([th], [logp, pytensor.grad(logp, th)], mode=mode)
    x = prior_draws(rng, 1)[0]
    lp, g = f(x)
    yk, jk, _, _ = spectrum_and_jacobian(x, HZ)
    # same kernel; a differently specialised compile (read-only inputs) rounds differently
    np.testing.assert_allclose(lp, np.sum(-np.log(yk) - obs / yk), rtol=1e-8)
    np.testing.assert_allclose(g, (-1 / yk + obs / yk**2) @ jk, rtol=1e-7, atol=1e-9 * np.abs(g).max())
    h = 1e-6
    fdg = np.array([(f(x + h * e)[0] - f(x - h * e)[0]) / (2 * h) for e in np.eye(25)])
    # finite differences of the compiled logp: ~1e-7 relative accuracy
    np.testing.assert_allclose(g, fdg, rtol=1e-4, atol=1e-6 * np.abs(fdg).max())


def test_singular_jacobian_is_rejected_not_raised():
    th = MU.copy()
    th[FREE_NAMES.index("g_sp_ss")] = -60.0   # gains off: ss-sp coupling vanishes,
    th[FREE_NAMES.index("g_ii_ss")] = -60.0   # leaving repeated (defective) eigenvalues
    th[FREE_NAMES.index("g_sp_sp")] = -60.0
    th[FREE_NAMES.index("g_ii_ii")] = -60.0
    y, status, _ = spectrum(th, HZ)
    assert status in (0, 1, 2)
    if status == 2:
        assert np.all(np.isposinf(y))
    else:
        assert np.all(np.isfinite(y))
