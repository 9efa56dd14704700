"""Acceptance: the reduction against full nonlinear simulation of the 8-state CMC (spec §6)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from nmm_inference.adiabatic import noise_diffusion, reduce_cmc
from nmm_inference.adiabatic.stochastic import stationary_moments
from nmm_inference.cmc.equations import CMCNeural, vector_field
from nmm_inference.errors import ReductionValidityWarning

from .fullsim import (T_DEFAULT, FullCMC, example1_gains, shoot_state, tune_growth_rate,
                      windowed_fundamental)

EX1_INDEX = (5, 8)   # G6, G9


def _ex1(sigma, U=np.zeros(4)):
    a, red = tune_growth_rate(sigma, gains=example1_gains, index=EX1_INDEX, x0=3.15, U=U)
    return example1_gains(a), red


def test_simulator_matches_package_vector_field():
    G = example1_gains(3.15)
    U = np.array([10.0, -5.0, 3.0, 200.0])
    nm = CMCNeural(G=G[None], T=T_DEFAULT[None], R=2 / 3, A=np.zeros((4, 1, 1)), M=np.zeros((1, 1)),
                   d_intrinsic=np.array([1e-3]), d_extrinsic=np.zeros((1, 1)))
    full = FullCMC(G, T_DEFAULT, 2 / 3, U)
    x0 = np.random.default_rng(3).normal(0, 1, 8)
    # same equations: rounding only
    np.testing.assert_allclose(full.rhs(x0), vector_field(x0, nm, drive=U), rtol=1e-12, atol=1e-9)
    sol = solve_ivp(lambda t, x: vector_field(x, nm, drive=U), (0, 0.05), x0, method="DOP853",
                    rtol=1e-11, atol=1e-11)
    traj = full.simulate(x0, 0.05, dt=1e-5)
    # RK4 at dt = 1e-5 s against DOP853 at rtol 1e-11: both ~1e-9 accurate
    np.testing.assert_allclose(traj[-1], sol.y[:, -1], rtol=0, atol=1e-6 * np.abs(sol.y).max())


@pytest.mark.parametrize("U", [np.zeros(4), np.array([0, 0, 0, 200.0])], ids=["zero", "dp200"])
def test_one_mode_convergence_table(U):
    """Spec §6.1 table: amplitude error O(sigma), frequency within 0.05 Hz."""
    errs = {}
    for sigma in (4.0, 2.0, 1.0, 0.5):
        G, red = _ex1(sigma, U)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ReductionValidityWarning)  # none expected here
            states = red.stable_states()
        (st,) = [s for s in states if not s.is_rest]
        assert st.active == (0,)
        ref = shoot_state(FullCMC(G, T_DEFAULT, 2 / 3, U), red, st)
        errs[sigma] = st.amplitudes[0] / ref["r"] - 1
        # frequency shift b r^2 is captured to O(r^4): spec tolerance
        np.testing.assert_allclose(st.frequencies_hz[0], ref["freq"], rtol=0, atol=0.05)
        # envelope of every population as accurate as r itself (cubic profile included)
        np.testing.assert_allclose(st.envelopes[0], ref["envelopes"], rtol=1.3 * abs(errs[sigma]) + 0.003)
        # radial Floquet exponent -2 sigma, up to the same O(sigma) relative error
        radial = ref["floquet"][1].real
        np.testing.assert_allclose(radial, -2 * sigma, rtol=0.1)
    # spec: -4.0 % at sigma = 4 and -0.5 % at sigma = 0.5 (acceptance: <= 4.5 %, <= 0.6 %)
    assert abs(errs[4.0]) <= 0.045 and abs(errs[0.5]) <= 0.006
    # the error is O(sigma): halving sigma halves it (ratios 2 +- 0.2)
    np.testing.assert_allclose([errs[4.0] / errs[2.0], errs[2.0] / errs[1.0], errs[1.0] / errs[0.5]],
                               2.0, rtol=0.1)


@pytest.mark.parametrize("c, tol_beta, tol_gamma", [(8.5, 0.05, 0.2), (8.7, 0.05, 0.05)])
def test_two_mode_mixed_states(c, tol_beta, tol_gamma):
    """Spec §6.2: coexisting beta and gamma modes (mixed state)."""
    G = example1_gains(3.15, c)
    red = reduce_cmc(G, T_DEFAULT)
    states = red.stable_states(warn=False)
    (st,) = states
    assert len(st.active) == 2
    x0 = red.operating_state.copy()
    for k, r in zip(st.active, st.amplitudes):
        x0 = x0 + 2 * np.real(r * red.modes[k].right_vector)
    dt = 2e-5
    traj = FullCMC(G, T_DEFAULT, 2 / 3, np.zeros(4)).simulate(x0, 3.0, dt=dt, every=5)
    t = np.arange(traj.shape[0]) * dt * 5
    sel = t > 1.5
    for j, k in enumerate(st.active):
        z = red.modes[k].amplitude(traj[sel], red.operating_state)
        f_full = np.polyfit(t[sel], np.unwrap(np.angle(z)), 1)[0] / (2 * np.pi)
        is_beta = red.modes[k].frequency_hz < 30
        # beta (strong mode): O(sigma) = 4 % truncation error; gamma at c = 8.5 sits near its
        # threshold, where the error of the beta intensity is amplified (spec: 0.185 vs 0.20-0.23)
        np.testing.assert_allclose(st.amplitudes[j], np.mean(np.abs(z)),
                                   rtol=tol_beta if is_beta else tol_gamma)
        np.testing.assert_allclose(st.frequencies_hz[j], f_full, rtol=0, atol=0.05)
        env = [2 * abs(windowed_fundamental(t[sel], traj[sel, 2 * i], f_full)) for i in range(4)]
        i_max = int(np.argmax(env))
        np.testing.assert_allclose(st.envelopes[j, i_max], env[i_max],
                                   rtol=tol_beta if is_beta else tol_gamma)


def test_example2_both_states(example2):
    """Spec §6.4: two stable states (25.6 Hz and 78.5 Hz), frequency 0.1 Hz, envelope 5 %."""
    G, T, U = example2
    red = reduce_cmc(G, T, 2 / 3, U)
    with pytest.warns(ReductionValidityWarning, match="3:1 resonance.*stability"):
        states = red.stable_states()
    osc = sorted((s for s in states if not s.is_rest), key=lambda s: s.frequencies_hz[0])
    assert [s.active for s in osc] == [(1,), (0,)]
    full = FullCMC(G, T, 2 / 3, U)
    for st in osc:
        ref = shoot_state(full, red, st)
        np.testing.assert_allclose(st.frequencies_hz[0], ref["freq"], rtol=0, atol=0.1)
        np.testing.assert_allclose(st.envelopes[0], ref["envelopes"], rtol=0.05)
        # both cycles are stable in the full model: all non-trivial Floquet exponents < 0
        assert np.all(ref["floquet"][1:].real < 0)
    # state B (78 Hz): radial -9.94 and transverse -0.229 in the full model (spec)
    refB = shoot_state(full, red, osc[1])
    np.testing.assert_allclose(osc[1].radial_exponents.real, refB["floquet"][3].real, rtol=0.03)
    np.testing.assert_allclose(osc[1].transverse_exponents[1], refB["floquet"][1].real, rtol=0.06)


# own parameter sets (not in the spec): a ss<->ii gamma loop and a bistable set found by a
# random scan (multipliers of the SPM defaults and a constant input)
OWN_BISTABLE = dict(
    mult=np.array([0.3705, 4.9715, 4.8796, 5.2224, 3.8227, 9.5204, 0.9328, 11.1008, 12.6376,
                   3.017]),
    U=np.array([-215.26, 50.34, -18.24, -15.18]))


def _own_loop_gains(x):
    """SPM defaults with the ss <-> ii loop (G3, G5) scaled by 2.6 x."""
    G = example1_gains(1.0, 1.0)
    G[[2, 4]] *= 2.6 * x
    return G


def test_own_parameter_set_single_mode():
    x, red = tune_growth_rate(1.5, gains=_own_loop_gains, index=(2, 4), x0=1.0,
                              U=np.array([30.0, 0, 0, 0]))
    st = [s for s in red.stable_states() if not s.is_rest]
    assert len(st) == 1
    ref = shoot_state(FullCMC(red.G, T_DEFAULT, 2 / 3, red.U), red, st[0])
    # sigma = 1.5 1/s: O(sigma/omega) truncation error, well inside 5 %
    np.testing.assert_allclose(st[0].amplitudes[0], ref["r"], rtol=0.03)
    np.testing.assert_allclose(st[0].frequencies_hz[0], ref["freq"], rtol=0, atol=0.1)
    np.testing.assert_allclose(st[0].envelopes[0], ref["envelopes"], rtol=0.05)


def test_own_bistable_parameter_set():
    G = example1_gains(1.0, 1.0) * OWN_BISTABLE["mult"]
    U = OWN_BISTABLE["U"]
    red = reduce_cmc(G, T_DEFAULT, 2 / 3, U)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReductionValidityWarning)  # a clean case: no warnings
        states = red.stable_states()
    osc = [s for s in states if not s.is_rest]
    assert len(osc) >= 2
    full = FullCMC(G, T_DEFAULT, 2 / 3, U)
    for st in osc:
        ref = shoot_state(full, red, st)
        np.testing.assert_allclose(st.frequencies_hz[0], ref["freq"], rtol=0, atol=0.1)
        np.testing.assert_allclose(st.envelopes[0], ref["envelopes"], rtol=0.05)
        assert np.all(ref["floquet"][1:].real < 0)   # stable in the full model too


def _stochastic_case(sigma, n_ens, duration, seed):
    G, red = _ex1(sigma)
    s = np.sqrt(0.15 / noise_diffusion(red, 1.0)[0])      # D_1 = 0.15, as in the spec
    D = noise_diffusion(red, s)
    pred = stationary_moments(red.sigma[0], red.a[0, 0], D[0])
    Z = FullCMC(G, T_DEFAULT, 2 / 3, np.zeros(4)).stochastic_amplitudes(
        red.operating_state, np.full(4, s), red.modes[0].left_vector, n_ens=n_ens,
        duration=duration, burn=1.5, dt=2e-4, every=10, random_seed=seed)
    r = np.abs(Z[0])
    return pred, r


def test_stochastic_quasi_cycles():
    """Spec §6.3, sigma = -2, D = 0.15: E r and E r^2 within 3 %."""
    pred, r = _stochastic_case(-2.0, 300, 6.0, seed=11)
    np.testing.assert_allclose(pred["mean_r"], 0.2279, rtol=3e-3)   # spec's predicted value
    np.testing.assert_allclose(pred["mean_r2"], 0.0652, rtol=3e-3)
    # ensemble of 300 x 6 s: standard errors ~0.8 % (E r) and ~1.4 % (E r^2)
    np.testing.assert_allclose(r.mean(), pred["mean_r"], rtol=0.03)
    np.testing.assert_allclose((r ** 2).mean(), pred["mean_r2"], rtol=0.03)
    # the stationary density itself (histogram) within a few % where it carries mass
    from nmm_inference.adiabatic import stationary_density
    hist, edges = np.histogram(r.ravel(), bins=np.linspace(0, 0.5, 11), density=True)
    mid = 0.5 * (edges[1:] + edges[:-1])
    p = stationary_density(mid, -2.0, pred_a := _ex1(-2.0)[1].a[0, 0], 0.15)
    big = p > 1.0
    np.testing.assert_allclose(hist[big], p[big], rtol=0.08)  # bin width + sampling error
    assert pred_a < 0


def test_stochastic_noisy_limit_cycle():
    """Spec §6.3, sigma = +1, D = 0.15 (spec: +3 % / +6 % bias from the O(r^2) truncation)."""
    pred, r = _stochastic_case(1.0, 160, 5.0, seed=12)
    np.testing.assert_allclose(r.mean(), pred["mean_r"], rtol=0.035)
    np.testing.assert_allclose((r ** 2).mean(), pred["mean_r2"], rtol=0.07)
