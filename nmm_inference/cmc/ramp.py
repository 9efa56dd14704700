"""Simulation of one CMC source whose intrinsic gains change slowly in time.

A slow drift of synaptic gains carries the circuit through a Hopf bifurcation: the damped,
noise-driven rhythm of the fixed point turns into a self-sustained oscillation.  This is the
mechanism of the package's bundled demo recording (a seizure-like transition driven by a slow
loss of inhibition; :mod:`nmm_inference.datasets`).

The ten intrinsic gains move linearly on SPM's log scale between two settings over a ramp;
time constants and sigmoid slope stay fixed.  Integration is stochastic Heun on an internal
step ``dt``, with white noise on the endogenous input (entering the spiny stellate cells as
``512 u``, the convention of :mod:`nmm_inference.cmc.simulate`), followed by zero-phase
anti-aliasing (``scipy.signal.decimate``, FIR) down to ``sfreq``.  No transmission delays.
"""

from __future__ import annotations

import numba
import numpy as np

from ..errors import ParameterError
from ..params import G_DEFAULT, G_FREE_INDEX, T_DEFAULT_MS, canonical_spm
from .equations import ENDOGENOUS_INPUT_GAIN

__all__ = ["simulate_gain_ramp", "full_gains"]


def full_gains(P) -> np.ndarray:
    """The ten physical gains G1..G10 (1/s) of a one-source SPM parameter dict.

    Parameters
    ----------
    P : mapping
        SPM fields of one source (see :func:`~nmm_inference.params.canonical_spm`); the
        ``k`` entries of ``P["G"]`` (1 to 10) are log-multipliers of the gains
        ``G_FREE_INDEX[:k]`` (:data:`~nmm_inference.params.G_FREE_INDEX`).

    Returns
    -------
    ndarray, shape (10,)
        ``G_DEFAULT`` with the freed gains multiplied by ``exp(P.G)``, in 1/s.

    Raises
    ------
    ParameterError
        For invalid SPM fields.
    """
    Pc = canonical_spm(P, 1)
    G = G_DEFAULT.copy()
    k = Pc["G"].shape[1]
    G[G_FREE_INDEX[:k]] *= np.exp(Pc["G"][0])
    return G


@numba.njit(cache=True, error_model="numpy")
def _rhs(x, G, kap, R, u):
    S = np.empty(4)
    for p in range(4):
        S[p] = 1.0 / (1.0 + np.exp(-R * x[2 * p])) - 0.5
    uin = np.empty(4)
    uin[0] = -G[0] * S[0] - G[2] * S[2] - G[1] * S[1] + u
    uin[1] = G[7] * S[0] - G[6] * S[1]
    uin[2] = G[4] * S[0] + G[5] * S[3] - G[3] * S[2]
    uin[3] = -G[9] * S[3] - G[8] * S[2]
    out = np.empty(8)
    for p in range(4):
        out[2 * p] = x[2 * p + 1]
        out[2 * p + 1] = kap[p] * (uin[p] - 2.0 * x[2 * p + 1] - kap[p] * x[2 * p])
    return out


@numba.njit(cache=True, error_model="numpy")
def _integrate(x0, logG0, logG1, i0, i1, kap, R, dt, noise, stride):
    n_steps = noise.shape[0]
    out = np.empty((n_steps // stride, 8))
    x = x0.copy()
    G = np.empty(10)
    for i in range(n_steps):
        if i <= i0:
            w = 0.0
        elif i >= i1:
            w = 1.0
        else:
            w = (i - i0) / (i1 - i0)
        for k in range(10):
            G[k] = np.exp((1.0 - w) * logG0[k] + w * logG1[k])
        # stochastic Heun, additive noise on u: the same increment in both stages
        du = noise[i] * ENDOGENOUS_INPUT_GAIN
        f1 = _rhs(x, G, kap, R, 0.0)
        xp = x + dt * f1
        xp[1] += kap[0] * du
        f2 = _rhs(xp, G, kap, R, 0.0)
        for j in range(8):
            x[j] = x[j] + 0.5 * dt * (f1[j] + f2[j])
        x[1] += kap[0] * du
        if (i + 1) % stride == 0:
            out[(i + 1) // stride - 1] = x
    return out


def simulate_gain_ramp(P_start, P_end, *, duration, ramp, sfreq=250.0, noise_std=0.01,
                       dt=1e-4, burn_in=2.0, random_seed=None):
    """Simulate one CMC source whose intrinsic gains ramp from one setting to another.

    Parameters
    ----------
    P_start, P_end : dict
        One-source SPM parameter dicts.  Only the gains may differ between them (``G`` with
        4 or 10 columns, SPM's column map); ``T`` and ``S`` are taken from ``P_start``.
    duration : float
        Seconds returned (after ``burn_in``).
    ramp : tuple of float
        ``(t_start, t_stop)`` in s from the first returned sample: gains equal ``P_start``'s
        before ``t_start``, ``P_end``'s after ``t_stop`` and move linearly on the log scale
        in between.
    sfreq : float
        Output sampling rate (Hz).
    noise_std : float
        Spectral amplitude of the white endogenous input (two-sided PSD ``noise_std**2``).
    dt : float
        Internal step (s); ``1 / (sfreq dt)`` must be an integer.
    burn_in : float
        Seconds simulated and dropped before the returned record.
    random_seed : int or numpy.random.Generator, optional

    Returns
    -------
    times : ndarray, shape (n_times,)
        Seconds from the first returned sample.
    states : ndarray, shape (n_times, 8)
        States in SPM order (v_ss, c_ss, v_sp, c_sp, v_ii, c_ii, v_dp, c_dp).
    gains : ndarray, shape (n_times, 10)
        Physical gains G1..G10 (1/s) at each sample.
    """
    from scipy.signal import decimate

    for name, v in (("duration", duration), ("sfreq", sfreq), ("dt", dt)):
        if not np.isfinite(v) or v <= 0:
            raise ParameterError(f"{name} must be positive and finite, got {v}")
    if not np.isfinite(noise_std) or noise_std < 0:
        raise ParameterError(f"noise_std must be >= 0, got {noise_std}")
    t0, t1 = (float(r) for r in ramp)
    if not (0 <= t0 < t1 <= duration):
        raise ParameterError(f"ramp must satisfy 0 <= t_start < t_stop <= duration, got {ramp}")
    q = 1.0 / (sfreq * dt)
    if abs(q - round(q)) > 1e-9:
        raise ParameterError(f"1/(sfreq*dt) must be an integer, got {q}")
    stride = int(round(q))
    Ps = canonical_spm(P_start, 1)
    kap = 1.0 / (T_DEFAULT_MS / 1000.0 * np.exp(Ps["T"][0]))
    if dt * kap.max() > 0.2:
        raise ParameterError(f"dt={dt} is too large for time constants down to {1 / kap.max():.2e} s")
    R = float(2.0 / 3.0 * np.exp(Ps["S"][0, 0]))
    logG0 = np.log(full_gains(P_start))
    logG1 = np.log(full_gains(P_end))
    n_out = int(round((duration + burn_in) * sfreq))
    n_steps = n_out * stride
    rng = np.random.default_rng(random_seed)
    noise = rng.standard_normal(n_steps) * (noise_std * np.sqrt(dt))
    i0 = int(round((burn_in + t0) / dt))
    i1 = int(round((burn_in + t1) / dt))
    # decimate in two stages of FIR filtering from the internal rate: first keep every
    # sample at 4x the output rate (the integrator already averages), then decimate by 4
    fine = _integrate(np.zeros(8), logG0, logG1, i0, i1, kap, R, dt, noise, stride // 4 if stride % 4 == 0 else 1)
    factor = 4 if stride % 4 == 0 else stride
    states = decimate(fine, factor, ftype="fir", axis=0, zero_phase=True)
    n_burn = int(round(burn_in * sfreq))
    states = np.ascontiguousarray(states[n_burn:n_burn + int(round(duration * sfreq))])
    times = np.arange(states.shape[0]) / sfreq
    w = np.clip((times - t0) / (t1 - t0), 0.0, 1.0)
    gains = np.exp((1 - w)[:, None] * logG0[None, :] + w[:, None] * logG1[None, :])
    if not np.all(np.isfinite(states)):
        raise ParameterError("the simulation diverged; reduce dt or the gains")
    return times, states, gains
