"""Switching rates (backward Kolmogorov) and the CMC -> switching-model map."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from nmm_inference.adiabatic import AmplitudeSDE, noise_diffusion, reduce_cmc
from nmm_inference.errors import ParameterError, ReductionError, ReductionValidityWarning
from nmm_inference.switching.bursts import runs
from nmm_inference.switching.examples import bistable_example
from nmm_inference.switching.mechanism import (INPUT_NAMES, MechanismSpec, assess_mechanism,
                                               switching_quantities)
from nmm_inference.switching.rates import PassageGrid, two_mode_passage_times
from tests.conftest import shared_path

EX = bistable_example()
SPEC = MechanismSpec(bands=((46.0, 76.0), (8.0, 44.0)), states=((0,), (1,)))
READOUT = np.array([0.0, 1.0, 0.0, 0.0])


@pytest.fixture(scope="module")
def reduced():
    red = reduce_cmc(EX["G"], EX["T"])
    D = noise_diffusion(red, EX["noise_std"])[:2]
    return red.sigma[:2], red.a[:2, :2], D


def test_passage_gradient_matches_finite_differences(reduced):
    sig, a, D = reduced
    grid = PassageGrid(n_cells=32, j_max=3.0)
    T, J = two_mode_passage_times(sig, a, D, grid=grid, gradient=True)
    x = np.concatenate([sig, a.ravel(), D])
    fd = np.zeros((2, 8))
    for i in range(8):
        h = 1e-6 * abs(x[i])
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        fd[:, i] = (two_mode_passage_times(xp[:2], xp[2:6].reshape(2, 2), xp[6:], grid=grid)
                    - two_mode_passage_times(xm[:2], xm[2:6].reshape(2, 2), xm[6:], grid=grid)) / (2 * h)
    # adjoint gradient (incl. the moving start point) vs central differences
    np.testing.assert_allclose(J, fd, rtol=1e-5, atol=1e-6 * np.abs(fd).max())


def test_passage_times_scale_with_time_and_swap_with_modes(reduced):
    sig, a, D = reduced
    grid = PassageGrid(n_cells=32, j_max=3.0)
    T = two_mode_passage_times(sig, a, D, grid=grid)
    # multiplying every rate (sigma, a, D) by c divides every time by c: exact in scaled coordinates
    np.testing.assert_allclose(two_mode_passage_times(3 * sig, 3 * a, 3 * D, grid=grid), T / 3,
                               rtol=1e-10)
    # relabelling the modes swaps the two passage times exactly
    np.testing.assert_allclose(two_mode_passage_times(sig[::-1], a[::-1, ::-1], D[::-1], grid=grid),
                               T[::-1], rtol=1e-10)
    # grid refinement: 32 -> 64 cells changes the times by a few %
    T64 = two_mode_passage_times(sig, a, D, grid=PassageGrid(n_cells=64, j_max=3.0))
    np.testing.assert_allclose(T, T64, rtol=0.08)


def test_passage_needs_two_states():
    with pytest.raises(ReductionError, match="single-mode"):
        two_mode_passage_times([1.0, -1.0], [[-1.0, -2.0], [-2.0, -1.0]], [0.1, 0.1])
    with pytest.raises(ParameterError):
        two_mode_passage_times([1.0, 1.0], [[-1.0, -2.0]], [0.1, 0.1])
    with pytest.raises(ParameterError, match="j_max"):
        PassageGrid(j_max=1.2)


@pytest.mark.slow
def test_passage_times_against_reduced_sde_simulation(reduced):
    """Mean dwell times of the reduced SDE (hysteresis labels) within sampling error."""
    sig, a, D = reduced
    red = reduce_cmc(EX["G"], EX["T"])
    T = two_mode_passage_times(sig, a, D)
    sde = AmplitudeSDE(red, EX["noise_std"], modes=(0, 1))
    st = [s for s in red.stable_states(warn=False) if not s.is_rest]
    t, z = sde.simulate(2000.0, dt=1e-3, n_trials=2, r0=[st[0].amplitudes[0], 0.01],
                        random_seed=11, record_every=10)
    Istar = np.array([st[0].intensities[0], st[1].intensities[0]])
    dwell = {0: [], 1: []}
    for tr in range(z.shape[0]):
        J = np.abs(z[tr]) ** 2 / Istar
        u = J[:, 0] - J[:, 1]
        lab = np.empty(u.size, int)
        cur = 0
        for i, v in enumerate(u):
            cur = 0 if v > 0.5 else (1 if v < -0.5 else cur)
            lab[i] = cur
        for s in (0, 1):
            b, e = runs(lab, s)
            ok = (b > 0) & (e < lab.size)
            dwell[s] += list((e - b)[ok] * (t[1] - t[0]))
    sim = np.array([np.mean(dwell[0]), np.mean(dwell[1])])
    n = np.array([len(dwell[0]), len(dwell[1])])
    # ~200 dwells each: standard error ~7 %; discretisation and start-point model ~15 %
    np.testing.assert_allclose(T, sim, rtol=3.0 / np.sqrt(n.min()) + 0.15)


def test_switching_quantities_match_the_reduction():
    red = reduce_cmc(EX["G"], EX["T"])
    v = switching_quantities(EX["G"], EX["T"], EX["R"], EX["U"], EX["noise_std"], READOUT, SPEC,
                             rates=False)
    st = {s.active: s for s in red.stable_states(warn=False) if not s.is_rest}
    # active mode: its own growth rate; inactive: the transverse exponent of the state
    np.testing.assert_allclose(v["sigma_eff"][0, 0], red.sigma[0], rtol=1e-12)
    np.testing.assert_allclose(v["sigma_eff"][0, 1], st[(0,)].transverse_exponents[1], rtol=1e-10)
    np.testing.assert_allclose(v["sigma_eff"][1, 0], st[(1,)].transverse_exponents[0], rtol=1e-10)
    np.testing.assert_allclose(v["intensity"][0, 0], st[(0,)].intensities[0], rtol=1e-10)
    np.testing.assert_allclose(v["D"], noise_diffusion(red, EX["noise_std"])[:2], rtol=1e-12)
    np.testing.assert_allclose(v["gain"], 2 * np.abs(red.nu[:2, 1]), rtol=1e-12)  # sp readout
    assert np.all(np.isnan(v["log_dwell"]))


def test_switching_quantities_jacobian():
    grid = PassageGrid(n_cells=24, j_max=3.0)
    spec = MechanismSpec(SPEC.bands, SPEC.states, grid)
    x0 = np.concatenate([EX["G"], EX["T"], [EX["R"]], EX["U"], np.full(4, EX["noise_std"]),
                         READOUT + 0.05])
    f = lambda z: switching_quantities(z[:10], z[10:14], z[14], z[15:19], z[19:23], z[23:27],  # noqa: E731
                                       spec, gradient=False)
    v, J = switching_quantities(x0[:10], x0[10:14], x0[14], x0[15:19], x0[19:23], x0[23:27],
                                spec, gradient=True)
    assert J["sigma_eff"].shape == (2, 2, len(INPUT_NAMES))
    for p in (0, 11, 14, 19, 24):         # G1, T_sp, R, noise_ss, L_sp
        h = 1e-6 * max(abs(x0[p]), 1e-2)
        xp, xm = x0.copy(), x0.copy()
        xp[p] += h
        xm[p] -= h
        a, b = f(xp), f(xm)
        for k in ("sigma_eff", "D", "gain", "intensity", "log_dwell"):
            fd = (a[k] - b[k]) / (2 * h)
            scale = np.abs(J[k]).max() + 1e-12
            # forward-mode tangents + adjoint solve vs central differences
            np.testing.assert_allclose(J[k][..., p], fd, rtol=1e-4, atol=1e-5 * scale,
                                       err_msg=f"{k} wrt {INPUT_NAMES[p]}")


def test_assessment_mechanism_and_flags():
    ass = assess_mechanism(EX["G"], EX["T"], EX["R"], EX["U"], EX["noise_std"], READOUT, SPEC)
    assert ass.rate_source == "mechanism"
    assert ass.spec.grid is not None and ass.validity_issues == []
    assert np.all(np.isfinite(ass.values["log_dwell"]))
    # spec Example 2 has a near 3:1 resonance: rates must be free, and the result says why
    ex2 = json.loads(shared_path("reference", "adiabatic_golden.json").read_text())[2]
    spec2 = MechanismSpec(bands=((70.0, 90.0), (20.0, 30.0)), states=((0,), (1,)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReductionValidityWarning)
        ass2 = assess_mechanism(ex2["G"], np.asarray(ex2["T_ms"]) / 1000, ex2["R"], ex2["U"], 1.0,
                                READOUT, spec2)
    assert ass2.rate_source == "free"
    assert any("resonance" in r for r in ass2.reasons)
    with pytest.raises(ReductionError, match="not a stable state"):
        assess_mechanism(EX["G"], EX["T"], EX["R"], EX["U"], EX["noise_std"], READOUT,
                         MechanismSpec(SPEC.bands, ((), (0,))))
    with pytest.raises(ReductionError, match="no oscillatory mode"):
        assess_mechanism(EX["G"], EX["T"], EX["R"], EX["U"], EX["noise_std"], READOUT,
                         MechanismSpec(((100.0, 120.0), (8.0, 44.0)), SPEC.states))
