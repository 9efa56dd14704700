"""Ground truth of the simulation acceptance check, and the check itself at reduced size."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from nmm_inference.adiabatic import reduce_cmc
from nmm_inference.errors import ParameterError, ReductionValidityWarning
from nmm_inference.switching.examples import bistable_example
from nmm_inference.switching.validation import simulation_check, true_basins


@pytest.fixture(scope="module")
def reduction():
    ex = bistable_example()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReductionValidityWarning)
        return reduce_cmc(ex["G"], ex["T"], ex["R"], ex["U"])


def _trajectory(red, J0, J1, sfreq):
    """Full states x* + 2 Re(z_k q_k) with |z_k|^2 = J_k I_k* (so |p_k^H (x - x*)| = |z_k|)."""
    stable = [s for s in red.stable_states(warn=False) if not s.is_rest]
    i_star = [next(s.intensities[0] for s in stable if s.active == (k,)) for k in range(2)]
    t = np.arange(J0.size) / sfreq
    x = np.tile(red.operating_state, (t.size, 1)).astype(float)
    for k, J in enumerate((J0, J1)):
        m = red.modes[k]
        z = np.sqrt(J * i_star[k]) * np.exp(1j * m.angular_frequency * t)
        x += 2.0 * np.real(z[:, None] * m.right_vector[None, :])
    return x


def test_true_basins_reads_committed_switches(reduction):
    sf = 250.0
    t = np.arange(int(10 * sf)) / sf
    # u = J0 - J1: an excursion across 0 that does not commit (3.0-3.2 s, u >= -0.3), then a
    # crossing at 6.0 s that commits (u reaches -1 at 6.4 s)
    u = np.ones_like(t)
    u = np.where((t > 2.9) & (t < 3.3), 1.0 - 1.3 * np.sin(np.pi * (t - 2.9) / 0.4), u)
    u = np.where(t >= 5.8, np.clip(1.0 - (t - 5.8) / 0.2, -1.0, 1.0), u)
    J0, J1 = np.clip(u, 0, None) + 0.05, np.clip(-u, 0, None) + 0.05
    tb = true_basins(_trajectory(reduction, J0, J1, sf), reduction, sf, smooth=0.0)
    # the amplitudes are read back exactly (left/right eigenvectors biorthogonal)
    np.testing.assert_allclose(tb.intensities, np.c_[J0, J1], rtol=1e-9)
    assert tb.switch_times.size == 1 and tb.from_state[0] == 0 and tb.to_state[0] == 1
    # the switch is the last J0 = J1 crossing (6.0 s), within one sample
    assert abs(tb.switch_times[0] - 6.0) <= 1.0 / sf
    np.testing.assert_array_equal(tb.labels, (t >= tb.switch_times[0]).astype(int))


def test_true_basins_refuses_bad_input(reduction):
    with pytest.raises(ParameterError, match="states must be"):
        true_basins(np.zeros((10, 3)), reduction, 250.0)
    with pytest.raises(ParameterError, match="sfreq"):
        true_basins(np.zeros((10, 8)), reduction, 0.0)


@pytest.mark.slow
def test_simulation_acceptance_at_reduced_size():
    """The issue's acceptance on the full nonlinear CMC, at 300 s and a short NUTS run
    (bench/switching_simulation.py runs 600 s and prints the same figures)."""
    chk = simulation_check(duration=300.0, draws=150, tune=150, chains=1, random_seed=1,
                           n_cells=24, n_result_draws=40)
    assert chk.rate_source == "mechanism"
    assert chk.n_true_switches >= 10                 # enough switches to score (dwells ~10 s)
    # acceptance thresholds of the issue
    assert chk.accuracy >= 0.90
    assert chk.median_abs_switch_error <= 0.100
    assert np.isfinite(chk.switch_errors).mean() >= 0.8   # most true switches found within 2 s
    assert chk.truth_in_hdi                          # 94 % HDI of log G1 contains 0
