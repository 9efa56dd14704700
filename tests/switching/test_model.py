"""PyMC models: building, finite logp/dlogp, joint model with the spectral likelihood, recovery."""
from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import pytest

from nmm_inference.errors import DataError, ParameterError
from nmm_inference.switching.examples import bistable_example
from nmm_inference.switching.mechanism import MechanismSpec
from nmm_inference.switching.model import (add_switching_likelihood, build_free_switching_model,
                                           fit, log_transition_from_rates)
from nmm_inference.switching.simulate import simulate_switching_envelope

EX = bistable_example()
SPEC = MechanismSpec(bands=((46.0, 76.0), (8.0, 44.0)), states=((0,), (1,)))


def _finite_at_ip(model, *extra):
    """Log-density and gradient at the initial point are finite (one compiled function)."""
    ip = model.initial_point()
    # FAST_COMPILE: no C compilation (a single evaluation does not pay for it)
    f = model.compile_fn([model.logp(), model.dlogp(), *extra], point_fn=True,
                         mode="FAST_COMPILE")
    out = f(ip)
    assert np.isfinite(out[0]) and np.all(np.isfinite(out[1]))
    return f, ip


def test_log_transition_from_rates_matches_expm():
    from nmm_inference.switching.hmm import stationary_distribution, transition_matrix

    k = np.array([[0.0, 0.7, 0.1], [0.3, 0.0, 0.2], [0.5, 0.4, 0.0]])
    lP, lpi = log_transition_from_rates(pt.as_tensor_variable(k), 0.05)
    P = transition_matrix(k, 0.05)
    np.testing.assert_allclose(np.exp(lP.eval()), P, rtol=1e-10)      # expm path, S = 3
    np.testing.assert_allclose(np.exp(lpi.eval()), stationary_distribution(P), rtol=1e-8)
    lP2, lpi2 = log_transition_from_rates(pt.as_tensor_variable(k[:2, :2]), 0.05)
    np.testing.assert_allclose(np.exp(lP2.eval()), transition_matrix(k[:2, :2], 0.05),
                               rtol=1e-12)                                # closed form, S = 2


def test_free_model_builds_and_gradient_is_finite():
    env, _ = simulate_switching_envelope(sigma=[[-6.0], [3.0]], a=[[-4.0], [-4.0]],
                                         D=[[0.6], [0.6]], rates=[[0, 0.5], [0.5, 0]],
                                         sfreq=20.0, duration=30.0, random_seed=0)
    for par, kind in (("ordered", "transition"), ("hopf", "stationary")):
        model, terms = build_free_switching_model(env[:, 0], sfreq=20.0, parametrization=par,
                                                  kind=kind)
        _finite_at_ip(model)
        assert terms.rate_source == "free" and terms.state_names == ["quiet", "burst"]
    model3, _ = build_free_switching_model(env[:, 0], sfreq=20.0, n_states=3)
    _finite_at_ip(model3)
    with pytest.raises(DataError, match="one band"):
        build_free_switching_model(np.ones((10, 2)), sfreq=20.0)
    with pytest.raises(ParameterError, match="unknown prior"):
        build_free_switching_model(env[:, 0], sfreq=20.0, priors={"nope": 1})
    with pytest.raises(ParameterError, match="hopf"):
        build_free_switching_model(env[:, 0], sfreq=20.0, n_states=3, parametrization="hopf")


def _cmc_envelope(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return 0.3 + np.abs(rng.normal(0.6, 0.2, size=(n, 2)))


def test_cmc_switching_likelihood_builds_with_mechanistic_rates():
    y = _cmc_envelope()
    with pm.Model() as model:
        log_g1 = pm.Normal("log_G1", 0.0, 0.02)
        G = pt.set_subtensor(pt.as_tensor_variable(EX["G"])[0], EX["G"][0] * pt.exp(log_g1))
        terms = add_switching_likelihood(
            "sw", y, sfreq=5.0, G=G, T=EX["T"], R=EX["R"], U=EX["U"],
            noise_std=EX["noise_std"] * pt.ones(4), readout=np.array([0.0, 1.0, 0.0, 0.0]),
            spec=SPEC, floor=np.array([0.1, 0.1]), emission_discrepancy_sd=0.2,
            kind="stationary")
    assert terms.rate_source == "mechanism"
    f, ip = _finite_at_ip(model)
    names = [v.name for v in model.value_vars]
    assert "sw_log_rate_discrepancy" in names and "sw_log_sigma_discrepancy" in names
    assert f(ip)[1][names.index("log_G1")] != 0.0     # the likelihood depends on G1


def test_diffusion_discrepancy_scales_only_the_emission_diffusions():
    y = _cmc_envelope()
    with pm.Model() as model:
        terms = add_switching_likelihood(
            "sw", y, sfreq=5.0, G=EX["G"], T=EX["T"], R=EX["R"], U=EX["U"],
            noise_std=EX["noise_std"] * np.ones(4), readout=np.array([0.0, 1.0, 0.0, 0.0]),
            spec=SPEC, diffusion_discrepancy_sd=0.3, kind="stationary")
    f, ip = _finite_at_ip(model, *model.replace_rvs_by_values([model["sw_D"],
                                                                model["sw_rates"]]))
    D0, k0 = (np.array(v) for v in f(ip)[2:])
    D1, k1 = (np.array(v) for v in f(dict(ip, sw_log_D_discrepancy=np.log([2.0, 0.5])))[2:])
    # D_m exp(eta_m) per band (no floor here: exact), the mechanistic rates untouched
    np.testing.assert_allclose(D1, D0 * np.array([2.0, 0.5]), rtol=1e-12)
    np.testing.assert_allclose(k1, k0, rtol=1e-12)
    assert terms.rate_source == "mechanism"


def test_joint_model_shares_cmc_parameters_with_the_spectral_likelihood():
    """Below threshold (rest state only): envelope transition density + Gamma/Whittle spectrum,
    both functions of the same SPM-scale theta."""
    from nmm_inference.cmc.kernel import FREE_NAMES, theta_from_spm
    from nmm_inference.cmc.pytensor_ops import cmc_spectrum
    from nmm_inference.params import prior_mean_spm
    from nmm_inference.switching.model import cmc_physical_from_theta

    rng = np.random.default_rng(0)
    y = 0.05 + np.abs(rng.normal(0.2, 0.1, size=(300, 1)))
    hz = np.arange(4.0, 48.0, 1.0)
    spec = MechanismSpec(bands=((12.0, 25.0),), states=((),))
    i_g4 = FREE_NAMES.index("g_ii_ii")
    with pm.Model() as model:
        g4 = pm.Normal("g_ii_ii", 0.0, 0.5)
        theta0 = theta_from_spm(prior_mean_spm(1))         # SPM's prior mean (LFP gain 1)
        theta = pt.set_subtensor(pt.as_tensor_variable(theta0)[i_g4], g4)
        G, T, R = cmc_physical_from_theta(theta)
        terms = add_switching_likelihood("env", y, sfreq=20.0, G=G, T=T, R=R, U=np.zeros(4),
                                         noise_std=pt.as_tensor_variable(np.full(4, 0.5)),
                                         readout=np.array([0.0, 1.0, 0.0, 0.0]), spec=spec,
                                         gain=pt.as_tensor_variable(np.array([0.5])))
        spec_hat, _ = cmc_spectrum(theta, hz)
        pm.Gamma("psd", alpha=8.0, beta=8.0 / spec_hat, observed=np.ones(hz.size))
    assert terms.n_states == 1
    env_term = model.replace_rvs_by_values([model.potentials[0]])[0]
    psd_term = model.logp(vars=[model["psd"]])
    f, ip = _finite_at_ip(model, env_term, psd_term)
    # both likelihood terms depend on the shared gain
    a, b = f(ip), f(dict(ip, g_ii_ii=np.asarray(0.1)))
    assert a[2] != b[2] and a[3] != b[3]


def test_cmc_switching_likelihood_refuses_bad_input():
    with pm.Model():
        with pytest.raises(DataError, match="bands"):
            add_switching_likelihood("sw", np.ones((10, 3)), sfreq=5.0, G=EX["G"], T=EX["T"],
                                     R=EX["R"], U=EX["U"], noise_std=0.35,
                                     readout=[0, 1, 0, 0], spec=SPEC)
        with pytest.raises(ParameterError, match="MechanismSpec"):
            add_switching_likelihood("sw", np.ones((10, 2)), sfreq=5.0, G=EX["G"], T=EX["T"],
                                     R=EX["R"], U=EX["U"], noise_std=0.35,
                                     readout=[0, 1, 0, 0], spec=((1, 2),))


@pytest.mark.slow
def test_free_model_recovers_simulated_parameters():
    """Real NUTS sampling (nutpie, NUMBA backend) on data from the model itself."""
    sig, a, D, k = np.array([[-6.0], [3.0]]), -4.0, 0.6, np.array([0.5, 0.8])
    env, states = simulate_switching_envelope(sigma=sig, a=[[a], [a]], D=[[D], [D]],
                                              rates=[[0, k[0]], [k[1], 0]], sfreq=20.0,
                                              duration=240.0, random_seed=3)
    model, terms = build_free_switching_model(env[:, 0], sfreq=20.0, scale=1.0,
                                              parametrization="hopf", kind="transition")
    idata = fit(model, draws=300, tune=300, chains=1, random_seed=4)
    post = idata["posterior"]
    from nmm_inference.switching.bursts import hdi_interval

    checks = {"switch_sigma": (np.asarray(post["switch_sigma"])[..., :, 0], sig[:, 0]),
              "switch_log_D": (np.asarray(post["switch_log_D"])[..., None], [np.log(D)]),
              "switch_log_rate": (np.asarray(post["switch_log_rate"]), np.log(k))}
    for name, (draws, truth) in checks.items():
        d = draws.reshape(-1, np.size(truth))
        for j, t in enumerate(np.atleast_1d(truth)):
            lo, hi = hdi_interval(d[:, j], 0.99)
            # 99 % HDI of 300 draws contains the generating value
            assert lo <= t <= hi, f"{name}[{j}] = {t} outside [{lo:.3g}, {hi:.3g}]"
    assert idata.attrs["sampler"] == "nutpie"
