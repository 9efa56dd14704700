"""Stochastic time-domain CMC simulator: spectra against linear theory, dynamics, MNE output.

The spectral checks compare Welch estimates of long simulations with the linear theory
(one-sided PSD ``2 sigma**2 |H|**2``) within their sampling error: per frequency bin the Welch
estimate has relative standard error ``1/sqrt(K_eff)`` (K_eff segments, corrected for the 50 %
overlap of Hann windows), and the mean log-ratio over bins has a standard error that accounts
for the correlation of neighbouring Hann bins.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import signal
from scipy.integrate import solve_ivp

from nmm_inference.cmc.equations import fixed_point, jacobian, neural_from_spm, vector_field
from nmm_inference.params import canonical_spm
from nmm_inference.cmc.simulate import (
    _antialias_design,
    _stage1_response,
    _stage1_weights,
    simulate_cmc,
    simulate_cmc_states,
)
from nmm_inference.cmc.spectra import predict_csd_full
from nmm_inference.errors import ParameterError

SFREQ = 250.0
NPERSEG = 1000  # 4-s Hann segments: 0.25 Hz bins, smoothing bias << sampling error
FMIN, FMAX = 2.0, 90.0  # inside the simulator's flat passband (0.4 sfreq = 100 Hz)
#: per-bin bound in standard errors; with ~350 bins and the right skew of chi-square Welch
#: estimates, P(any bin beyond it) ~ 0.1 % under the null
Z_MAX = 5.0
#: bound on the mean squared z-score over bins (expected ~1.05, standard deviation ~0.1)
MEAN_Z2_MAX = 1.5
#: per-bin bound for the complex cross-spectrum, |z|^2 ~ Exp(1): P(> 4) = e^-16 per bin
Z_CROSS_MAX = 4.0
#: squared correlation of Hann-windowed DFT bins 1 and 2 apart (complex correlations -2/3, 1/6)
HANN_BIN_CORR = (4.0 / 9.0, 1.0 / 36.0)
#: squared correlation of consecutive 50 %-overlapping Hann segments (Welch 1967)
HANN_SEG_CORR = 1.0 / 36.0


def _welch(y, *, nperseg=NPERSEG):
    """One-sided cross-spectral matrix (nf, nc, nc) ``E[X_i conj(X_j)]`` and K_eff."""
    y = np.atleast_2d(y.T).T
    nc = y.shape[1]
    S = None
    for i in range(nc):
        for j in range(nc):
            f, Pij = signal.csd(y[:, j], y[:, i], fs=SFREQ, nperseg=nperseg)  # conj(X_j) X_i
            if S is None:
                S = np.empty((f.size, nc, nc), dtype=complex)
            S[:, i, j] = Pij
    n_seg = (y.shape[0] - nperseg) // (nperseg // 2) + 1
    k_eff = n_seg / (1.0 + 2.0 * HANN_SEG_CORR)
    return f, S, k_eff


def _ratio_stats(est, pred, k_eff):
    """Per-bin z-scores of est/pred: max |z|, mean z^2, and the mean log-ratio with its
    expected bias (-1/(2 K_eff), from E log of a scaled chi-square) and standard error."""
    r = est / pred
    z = (r - 1.0) * np.sqrt(k_eff)
    n_bins = r.size
    se_mean = np.sqrt((1.0 + 2.0 * sum(HANN_BIN_CORR)) / (k_eff * n_bins))
    return np.abs(z).max(), np.mean(z**2), np.mean(np.log(r)), -1.0 / (2.0 * k_eff), se_mean


def _assert_matches(est, pred, k_eff):
    zmax, mz2, mlog, bias, se = _ratio_stats(est, pred, k_eff)
    assert zmax < Z_MAX, f"per-bin z-score {zmax:.2f} >= {Z_MAX}"
    assert mz2 < MEAN_Z2_MAX, f"mean squared z-score {mz2:.2f} >= {MEAN_Z2_MAX}"
    assert abs(mlog - bias) < 4.0 * se, f"mean log-ratio {mlog:.4f} (bias {bias:.4f}, SE {se:.4f})"


def _exact_delay_transfer(nm, freqs, *, delays=True):
    """Transfer function u -> v_sp, (nf, n, n), of the linearised delay equation at x = 0.

    ``(i w + k_p)^2 V_p = k_p sum_q W_pq S'(0) exp(-i w d_pq) V_q + 512 k_ss U`` with the
    simulator's delays: none within a population, intrinsic between populations of a source,
    extrinsic between sources.  Written independently of the simulator and of SPM's code.
    """
    n = nm.n_sources
    pop = np.arange(4 * n) // n
    src = np.arange(4 * n) % n
    same_src = src[:, None] == src[None, :]
    lag = np.where(same_src, np.where(pop[:, None] == pop[None, :], 0.0, nm.d_intrinsic[src][:, None]),
                   nm.d_extrinsic[src[:, None], src[None, :]])
    if not delays:
        lag = np.zeros_like(lag)
    kap = (1.0 / nm.T).T.ravel()
    K = nm.W * nm.R / 4.0
    B = np.zeros((4 * n, n))
    B[np.arange(n), np.arange(n)] = 512.0 * kap[:n]
    H = np.empty((len(freqs), n, n), dtype=complex)
    for i, f in enumerate(freqs):
        w = 2j * np.pi * f
        A = np.diag((w + kap) ** 2) - kap[:, None] * K * np.exp(-w * lag)
        H[i] = np.linalg.solve(A, B)[n:2 * n]
    return H


def _two_source_params():
    """Forward 0 -> 1 (strong) and backward 1 -> 0 (weak): stable, coherence 0.04-0.44."""
    A = np.full((4, 2, 2), -32.0)
    A[0, 1, 0] = A[1, 1, 0] = 4.0
    A[2, 0, 1] = A[3, 0, 1] = 1.0
    return {"A": A}


# ------------------------------------------------------------------------------------------
# anti-aliasing
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sfreq, dt", [(250.0, 1e-4), (1000.0, 1e-4), (100.0, 3e-4), (250.0, 1.0)])
def test_antialias_filter_flat_passband_and_alias_rejection(sfreq, dt):
    dt_eff, m1, h2 = _antialias_design(sfreq, dt)
    assert dt_eff <= dt and np.isclose(1.0 / (sfreq * dt_eff), 8 * m1)
    f = np.linspace(0.0, 0.5 / dt_eff, 40001)
    _, H2 = signal.freqz(h2, worN=f, fs=8 * sfreq)
    H2 = H2 * np.exp(1j * np.pi * f * (h2.size - 1) / (8 * sfreq))  # remove the causal delay
    w1 = _stage1_weights(m1)  # the weights the kernel uses; the design uses the closed form
    offsets = (np.arange(w1.size) - (w1.size - 1) / 2) * dt_eff
    H1 = np.cos(2 * np.pi * f[::100, None] * offsets) @ w1
    np.testing.assert_allclose(_stage1_response(f[::100], m1, dt_eff), H1, rtol=0,
                               atol=1e-12)  # same filter, two formulas
    total = np.abs(_stage1_response(f, m1, dt_eff) * H2)
    np.testing.assert_allclose(total[f <= 0.4 * sfreq], 1.0, atol=1e-3)  # documented flatness
    assert total[f >= 0.5 * sfreq].max() < 10 ** (-70 / 20)  # documented >= 70 dB rejection
    np.testing.assert_allclose(h2.sum(), 1.0, rtol=1e-12)  # exact DC gain (fixed points kept)


# ------------------------------------------------------------------------------------------
# spectra in the linear regime
# ------------------------------------------------------------------------------------------

def test_linear_spectrum_matches_undelayed_prediction():
    sigma = 0.01
    _, x = simulate_cmc_states(duration=300.0, sfreq=SFREQ, noise_std=sigma, random_seed=11)
    f, S, k_eff = _welch(x[:, 2])  # v_sp = the default LFP
    sel = (f >= FMIN) & (f <= FMAX)
    H = predict_csd_full({}, f[sel], delays=False).transfer[:, 0, 0]
    pred = 2.0 * sigma**2 * np.abs(H) ** 2
    _assert_matches(S[sel, 0, 0].real, pred, k_eff)
    # the test can fail: a two-sided convention (sigma**2 |H|**2) is off by log 2 on average
    assert abs(np.mean(np.log(S[sel, 0, 0].real / (pred / 2)))) > 0.5


def test_population_noise_matches_linear_theory():
    # noise on the ii input only, through the analytic Jacobian: H = C (i w - J)^-1 b
    sigma = 5.0
    pop_noise = np.array([[0.0, 0.0, sigma, 0.0]])
    _, x = simulate_cmc_states(duration=200.0, sfreq=SFREQ, noise_std=0.0,
                               population_noise_std=pop_noise, random_seed=12)
    f, S, k_eff = _welch(x[:, 2])
    sel = (f >= FMIN) & (f <= FMAX)
    nm = neural_from_spm({})
    J = jacobian(nm)
    b = np.zeros(8)
    b[5] = 1.0 / nm.T[0, 2]  # c_ii += kappa_ii * input
    H = np.array([np.linalg.solve(2j * np.pi * fk * np.eye(8) - J, b)[2] for fk in f[sel]])
    _assert_matches(S[sel, 0, 0].real, 2.0 * sigma**2 * np.abs(H) ** 2, k_eff)


def test_exact_delay_helper_reduces_to_undelayed_spm():
    # validates the test's own reference: without delays it is SPM's undelayed transfer
    freqs = np.linspace(1.0, 100.0, 34)
    for P, n in (({}, 1), (_two_source_params(), 2)):
        H = _exact_delay_transfer(neural_from_spm(P, n), freqs, delays=False)
        ref = predict_csd_full(P, freqs, delays=False, n_sources=n).transfer
        # same linear algebra, modal (eig) against direct solve
        np.testing.assert_allclose(H, ref, rtol=1e-7, atol=1e-12 * np.abs(ref).max())


def test_delayed_spectrum_matches_exact_delay_equation():
    sigma = 0.01
    P = {"D": [[1.5]]}  # intrinsic delay 4.5 ms, not a multiple of dt (linear interpolation)
    _, x = simulate_cmc_states(P, duration=300.0, sfreq=SFREQ, noise_std=sigma, delays=True,
                               random_seed=13)
    f, S, k_eff = _welch(x[:, 2])
    sel = (f >= FMIN) & (f <= FMAX)
    nm = neural_from_spm(P)
    pred = 2.0 * sigma**2 * np.abs(_exact_delay_transfer(nm, f[sel])[:, 0, 0]) ** 2
    _assert_matches(S[sel, 0, 0].real, pred, k_eff)
    # and the delays are visible: the undelayed prediction is rejected
    H0 = predict_csd_full(P, f[sel], delays=False).transfer[:, 0, 0]
    _, mz2, *_ = _ratio_stats(S[sel, 0, 0].real, 2.0 * sigma**2 * np.abs(H0) ** 2, k_eff)
    assert mz2 > 3 * MEAN_Z2_MAX  # delays change |H|^2 by up to a factor 1.8 here (mz2 ~ 9)


@pytest.mark.parametrize("delays", [False, True])
def test_two_sources_cross_spectra(delays):
    sigma = 0.01
    P = _two_source_params()
    _, x = simulate_cmc_states(P, n_sources=2, duration=200.0, sfreq=SFREQ, noise_std=sigma,
                               delays=delays, random_seed=14)
    assert x.shape[1] == 16
    f, S, k_eff = _welch(x[:, [4, 5]])  # v_sp of sources 0 and 1 (index 2 * n + i)
    sel = (f >= FMIN) & (f <= FMAX)
    if delays:
        H = _exact_delay_transfer(neural_from_spm(P, 2), f[sel])  # 8-ms extrinsic delays
    else:
        H = predict_csd_full(P, f[sel], delays=False, n_sources=2).transfer
    G = 2.0 * sigma**2 * np.einsum("fis,fjs->fij", H, H.conj())
    coh = np.abs(G[:, 0, 1]) ** 2 / (G[:, 0, 0].real * G[:, 1, 1].real)
    assert coh.max() > 0.3  # the connection matters, so the cross-spectrum test has teeth
    for i in range(2):
        _assert_matches(S[sel, i, i].real, G[:, i, i].real, k_eff)
    # complex cross-spectrum: Var(S01_hat) = P00 P11 / K_eff
    z01 = np.abs(S[sel, 0, 1] - G[:, 0, 1]) / np.sqrt(G[:, 0, 0].real * G[:, 1, 1].real / k_eff)
    assert z01.max() < Z_CROSS_MAX


# ------------------------------------------------------------------------------------------
# deterministic dynamics
# ------------------------------------------------------------------------------------------

def test_nonlinear_transient_matches_ode_solver():
    # no noise, strong drive from rest: the trajectory crosses the nonlinear range of the
    # sigmoid (v_ss up to ~2.8, R v / 2 ~ 0.9) and exercises the dp -> sp modulation (P.M)
    P = {"M": [[0.5]], "G": [0.2, -0.1, 0.0, 0.1]}
    drive = np.array([[2000.0, -200.0, 100.0, 50.0]])
    raw = simulate_cmc(P, duration=0.3, sfreq=1000.0, noise_std=0.0, drive=drive,
                       initial_state=np.zeros(8), burn_in=0.0)
    t_start = json.loads(raw.info["description"])["settings"]["t_start"]
    nm = neural_from_spm(P)
    sol = solve_ivp(lambda t, x: vector_field(x, nm, drive=drive), (t_start, raw.times[-1]),
                    np.zeros(8), method="LSODA", jac=lambda t, x: jacobian(nm, x),
                    t_eval=raw.times, rtol=1e-10, atol=1e-12)
    assert np.ptp(sol.y[2]) > 0.05  # a real transient
    np.testing.assert_allclose(raw.get_data()[0], sol.y[2], rtol=0,
                               atol=2e-6)  # Heun O(dt^2) + filter ripple; one-step misalignment gives ~2e-4


@pytest.mark.parametrize("delays", [False, True])
def test_constant_drive_mean_is_fixed_point(delays):
    P = {"M": [[0.5]]}
    drive = np.array([[300.0, -200.0, 100.0, 50.0]])
    xs = fixed_point(neural_from_spm(P), drive=drive)
    assert np.abs(xs).max() > 0.2  # nonlinear operating point
    # noiseless, from rest: converges to the fixed point (delays do not move it)
    _, x = simulate_cmc_states(P, duration=1.0, noise_std=0.0, drive=drive, delays=delays,
                               initial_state=np.zeros(8), burn_in=3.0)
    np.testing.assert_allclose(x, np.broadcast_to(xs, x.shape), rtol=0,
                               atol=1e-9)  # slowest mode decays as exp(-33 t): e^-100 after burn-in
    # with weak noise the time average stays there, within its sampling error
    _, x = simulate_cmc_states(P, duration=60.0, noise_std=0.002, drive=drive, delays=delays,
                               initial_state=np.zeros(8), random_seed=15)
    v = x[:, 0::2]
    se = v.std(axis=0) * np.sqrt(2 * 0.1 / 60.0)  # correlation time < 0.1 s
    assert np.all(np.abs(v.mean(axis=0) - xs[0::2]) < 5 * se + 1e-6)


def test_mode_at_hopf_point_is_not_rejected_by_the_stability_check():
    # reason: a mode with Re(lambda) ~ -1e-9 (at the Hopf point) gains only ~1e-5 1/s of growth
    # from the Heun step; the check once rejected it at any dt, stopping simulations at sigma = 0
    from scipy.optimize import brentq

    def P_of(g3):
        return {"S": np.array([[0.5]]), "G": np.array([[0.0, 0.0, g3, 0.0]])}

    def maxre(g3):
        nm = neural_from_spm(canonical_spm(P_of(g3), 1))
        return np.max(np.linalg.eigvals(jacobian(nm, fixed_point(nm))).real)

    g0 = brentq(lambda g: maxre(g) + 1e-9, 1.75, 2.0, xtol=1e-15)
    assert -1e-7 < maxre(g0) < 0.0
    _, x = simulate_cmc_states(P_of(g0), duration=0.2, noise_std=0.01, dt=5e-5, random_seed=0)
    assert np.all(np.isfinite(x))


def test_stiff_parameters_auto_dt_and_explicit_dt_error():
    P = {"T": [-4.0, -4.0, 0.0, 0.0]}  # ss and sp time constants 0.04 ms: |lambda| ~ 3e4 1/s
    _, x = simulate_cmc_states(P, duration=0.2, burn_in=0.1, random_seed=0)
    assert np.all(np.isfinite(x))
    with pytest.raises(ParameterError, match="too large for a stable"):
        simulate_cmc_states(P, duration=0.2, dt=1e-4)


# ------------------------------------------------------------------------------------------
# randomness
# ------------------------------------------------------------------------------------------

def test_seeds_determinism():
    kw = dict(duration=3.0, n_sources=2, noise_std=[0.01, 0.02], random_seed=7)
    _, a = simulate_cmc_states(**kw)
    _, b = simulate_cmc_states(**kw)
    np.testing.assert_array_equal(a, b)
    _, c = simulate_cmc_states(**{**kw, "random_seed": 8})
    assert np.abs(a - c).max() > 0.1 * np.abs(a).max()
    _, d = simulate_cmc_states(**{**kw, "random_seed": np.random.default_rng(7)})
    np.testing.assert_array_equal(a, d)  # a Generator with the same seed is the same stream
    # independent sources get independent noise
    assert abs(np.corrcoef(a[:, 4], a[:, 5])[0, 1]) < 0.2


# ------------------------------------------------------------------------------------------
# MNE output
# ------------------------------------------------------------------------------------------

def test_raw_output_observer_and_provenance():
    A = np.full((4, 2, 2), -32.0)
    A[0, 1, 0] = A[1, 1, 0] = 0.0  # forward connection 0 -> 1 at its prior strength
    P = {"A": A, "L": [[2.0, 0.5]], "J": [0.3, 0, 1, 0, 0, 0, -0.2, 0]}
    kw = dict(duration=4.0, sfreq=200.0, n_sources=2, noise_std=0.02, random_seed=3)
    raw = simulate_cmc(P, **kw)
    times, x = simulate_cmc_states(P, **kw)
    assert raw.ch_names == ["LFP 0", "LFP 1"]
    assert raw.get_channel_types() == ["misc", "misc"]
    assert raw.info["sfreq"] == 200.0 and raw.n_times == 800
    np.testing.assert_allclose(raw.times, times, rtol=0, atol=1e-12)  # same sample grid
    n = 2
    lfp = np.stack([P["L"][0][i] * sum(P["J"][s] * x[:, s * n + i] for s in range(8)) for i in range(n)])
    np.testing.assert_allclose(raw.get_data(), lfp, rtol=1e-12, atol=1e-15)  # L * J * x, exact
    rec = json.loads(raw.info["description"])
    assert rec["generator"].endswith("simulate_cmc") and rec["settings"]["random_seed"] == 3
    np.testing.assert_allclose(rec["P"]["A"], A, rtol=0, atol=0)  # parameters recorded verbatim
    assert rec["settings"]["dt"] == pytest.approx(1.0 / (200.0 * 8 * 7), rel=1e-12)
    # channel noise: white, per-sample standard deviation as documented
    noisy = simulate_cmc(P, **kw, channel_noise=0.5).get_data()
    resid = noisy - lfp
    np.testing.assert_allclose(resid.std(axis=1), 0.5, rtol=0.1)  # 800 samples: SE 2.5 %
    assert abs(np.corrcoef(resid)[0, 1]) < 0.15


def test_import_does_not_load_mne():
    code = ("import sys, nmm_inference, nmm_inference.cmc.simulate;"
            "print('mne' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    (dict(duration=0.0), "duration"),
    (dict(duration=-1.0), "duration"),
    (dict(duration=float("nan")), "duration"),
    (dict(duration=1.0, sfreq=0.0), "sfreq"),
    (dict(duration=1.0, sfreq=-250.0), "sfreq"),
    (dict(duration=1e-4), "at least one sample"),
    (dict(duration=1.0, dt=0.0), "dt"),
    (dict(duration=1.0, burn_in=-1.0), "burn_in"),
    (dict(duration=1.0, noise_std=-0.1), "noise_std"),
    (dict(duration=1.0, noise_std=[0.1, 0.1]), "noise_std"),
    (dict(duration=1.0, population_noise_std=[1.0, 2.0]), "population_noise_std"),
    (dict(duration=1.0, drive=[[1.0, 2.0]]), "drive"),
    (dict(duration=1.0, drive=[[np.nan, 0, 0, 0]]), "drive"),
    (dict(duration=1.0, initial_state=np.zeros(7)), "initial_state"),
    (dict(duration=1.0, channel_noise=-1.0), "channel_noise"),
])
def test_invalid_settings_raise(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        simulate_cmc(**kwargs)


def test_nan_parameters_raise():
    with pytest.raises(ParameterError, match="non-finite"):
        simulate_cmc_states({"G": [0.0, np.nan, 0.0, 0.0]}, duration=1.0)
    with pytest.raises(ParameterError, match="unknown"):
        simulate_cmc_states({"Gain": [0.0]}, duration=1.0)
