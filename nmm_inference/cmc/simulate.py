"""Stochastic time-domain simulation of the nonlinear canonical microcircuit (CMC).

The simulator integrates SPM's nonlinear CMC equations of motion (``spm_fx_cmc``, see
``shared/docs/spm-cmc.md`` §1) for one or more sources, driven by constant population inputs
and by white Gaussian noise, and returns the LFP observation.

* :func:`simulate_cmc_states` is the numerical core (numpy, scipy and numba only): it returns
  the sample times and the full state trajectory, in SPM's state order.
* :func:`simulate_cmc` wraps it and returns an :class:`mne.io.RawArray` of the LFP channels.
  MNE is imported inside that function only.

Noise convention
----------------
The endogenous input ``u_i(t)`` of source ``i`` (SPM's CSD input, which enters the spiny
stellate cells as ``512 u``) is white Gaussian noise ``u_i = sigma_i xi_i(t)`` with
``E[xi(t) xi(s)] = delta(t - s)``.  ``noise_std = sigma`` is therefore a spectral amplitude, in
input units times s^(1/2): the **two-sided** power spectral density of ``u_i`` is ``sigma**2``
(per Hz, on ``-inf < f < inf``) and its **one-sided** PSD is ``2 sigma**2`` (on ``f > 0``).  In
the linear regime the one-sided PSD of LFP channel ``c`` is then

    ``P_c(f) = 2 sum_i sigma_i**2 |H_ci(f)|**2``,

with ``H`` the transfer function from ``u`` to the LFP
(:func:`nmm_inference.cmc.spectra.predict_csd_full` ``(..., delays=False).transfer``); this is
what :func:`scipy.signal.welch` estimates with its default ``scaling="density"``.  Optional
noise on the input of any population (``population_noise_std``) follows the same convention, in
the units of the population input (those of ``drive``, i.e. without the factor 512).

Integration
-----------
Stochastic Heun (predictor-corrector trapezoidal) method with a fixed internal step ``dt``.  The
noise is additive, for which this method has weak order 2, so the simulated spectrum converges
to the continuous-time spectrum as ``dt**2``.  The internal step is rounded down so that one
output sample spans ``8 m`` steps (``m`` an integer).  The trajectory is brought to ``sfreq`` by
a zero-phase two-stage anti-aliasing filter applied while integrating (so that long runs need
no memory for the fine-grained trajectory): a moving average of ``m`` steps applied four
times, decimated by ``m``, then a Kaiser-window FIR decimated by 8 whose passband also undoes
the droop of the first stage.  The combined response is flat to within 1e-3 up to
``0.4 sfreq``, and everything that would alias into ``[0, 0.5 sfreq]`` is attenuated by at
least 70 dB.

Delays
------
With ``delays=False`` (the default) there are no transmission delays, and the simulator is the
exact time-domain counterpart of SPM's **undelayed** spectral model
(``predict_csd_full(..., delays=False)``, SPM's ``M.D = 1``): linearised about its fixed point
it has the same transfer function.

With ``delays=True`` the simulator uses true transmission delays: the firing of population
``q`` reaches population ``p`` after the intrinsic delay ``d_i = 1 ms exp(D(i, i))`` when ``p`` and
``q`` are different populations of source ``i``, and after the extrinsic delay
``d_ij = 8 ms exp(D(i, j))`` when they are in different sources (the firing entering SPM's
modulation ``P.M`` of sp self-inhibition by dp firing is delayed in the same way).
Self-connections and the synaptic kernels themselves are not delayed.  This is a delay
differential equation, integrated with a history buffer of the firing rates (linear
interpolation between steps for delays that are not multiples of ``dt``).  SPM's spectral model
does not solve this equation: it replaces the Jacobian by the delayed Jacobian of
``spm_dcm_delay`` (which, moreover, puts the intrinsic delay on every pair of different states,
including the synaptic decay and self-inhibition terms), and it also multiplies the input
vector by the same delay operator.  Simulated and SPM-predicted spectra with delays therefore
agree only to first order in the delays, and in practice they differ a lot: at SPM's prior
mean (1 ms intrinsic delay, one source) the true delays multiply the undelayed ``|H|**2`` by
1.05, 1.12, 1.01 and 0.99 at 10, 20, 40 and 64 Hz, where SPM's operator multiplies it by 1.01,
1.34, 2.06 and 3.9 (with ``D = 1``: 1.18, 1.31, 0.96, 0.92 against 1.02, 2.4, 12 and 81).
The linearised simulator with delays has the exact transfer function
``C (i w I - J0 - sum_d J_d exp(-i w d))^-1 B`` (``J_d``: the Jacobian entries carrying delay
``d``), which the tests check the simulated spectra against.

Pure numerics: numpy, scipy and numba only (MNE only inside :func:`simulate_cmc`).
"""

from __future__ import annotations

import json
import math

import numba
import numpy as np
from scipy import signal

from .._version import __version__
from ..errors import ParameterError, UnstableSystemError
from ..params import canonical_spm
from .equations import ENDOGENOUS_INPUT_GAIN, fixed_point, jacobian, neural_from_spm

__all__ = ["simulate_cmc", "simulate_cmc_states"]

#: Decimation factor of the FIR (second) anti-aliasing stage.
_STAGE2_FACTOR = 8
#: Passband edge, stopband edge (fractions of sfreq) and stopband attenuation (dB) of the FIR.
_PASS_EDGE = 0.4
_STOP_EDGE = 0.5
_STOP_DB = 80.0
#: Default upper bound on the internal step (s) and on |lambda| dt for the automatic choice.
_DT_DEFAULT = 1e-4
_DT_ACCURACY = 0.1
#: Internal steps per noise chunk (bounds the memory of pre-drawn noise).
_CHUNK_STEPS = 1 << 16


# --------------------------------------------------------------------------------------------
# Anti-aliasing design
# --------------------------------------------------------------------------------------------

def _stage1_weights(m1):
    """Weights of the first stage: a moving average of m1 steps applied four times.

    Length ``4 m1 - 3`` (symmetric, sums to 1).  Its response, ``[sin(pi f m1 dt) /
    (m1 sin(pi f dt))]**4``, has fourth-order zeros at the multiples of the intermediate rate
    ``1 / (m1 dt)``, which are the frequencies that decimation by ``m1`` folds onto 0 Hz.
    """
    w = np.ones(1)
    for _ in range(4):
        w = np.convolve(w, np.full(m1, 1.0 / m1))
    return w


def _stage1_response(freqs, m1, dt):
    """Amplitude response (real, zero phase) of :func:`_stage1_weights` for a step ``dt``."""
    x = np.pi * np.asarray(freqs, dtype=float) * dt
    sx = np.sin(x)
    small = np.abs(sx) < 1e-12  # f a multiple of 1/dt: every weight sees the same phase
    with np.errstate(invalid="ignore", divide="ignore"):
        box = np.where(small, 1.0, np.sin(m1 * x) / (m1 * np.where(small, 1.0, sx)))
    return box ** 4


def _antialias_design(sfreq, dt_max):
    """Internal step and the two anti-aliasing stages for output rate ``sfreq``.

    Returns
    -------
    dt : float
        Internal step (s), ``1 / (sfreq * 8 * m1)``, the largest such step <= ``dt_max``.
    m1 : int
        Decimation factor of the first stage (see :func:`_stage1_weights`).
    h2 : ndarray, shape (2 K + 1,)
        Symmetric FIR taps of the second stage, at rate ``8 sfreq``, with the first stage's
        passband droop compensated.
    """
    q = _STAGE2_FACTOR
    m1 = max(1, math.ceil(1.0 / (q * sfreq * dt_max) - 1e-9))
    dt = 1.0 / (sfreq * q * m1)
    fs1 = q * sfreq
    width = (_STOP_EDGE - _PASS_EDGE) * sfreq / (fs1 / 2.0)
    numtaps, beta = signal.kaiserord(_STOP_DB, width)
    numtaps |= 1  # odd, so that the filter is centred on a sample
    # Kaiser-windowed design of an ideal (droop-compensated) low-pass cut at the middle of
    # the transition band; the window spreads the edge over [pass edge, stop edge].
    grid = np.linspace(0.0, fs1 / 2.0, 8193)
    cut = 0.5 * (_PASS_EDGE + _STOP_EDGE) * sfreq
    gain = np.where(grid <= cut, 1.0 / _stage1_response(np.minimum(grid, cut), m1, dt), 0.0)
    h2 = signal.firwin2(numtaps, grid, gain, window=("kaiser", beta), fs=fs1)
    return dt, m1, h2 / np.sum(h2)  # exact unit gain at 0 Hz: constant states pass unchanged


# --------------------------------------------------------------------------------------------
# numba kernel
# --------------------------------------------------------------------------------------------

@numba.njit(cache=True, error_model="numpy", inline="always")
def _delayed(hist, kc, a, b, s):
    """Firing rate of population s, ``a + b`` steps before ring row kc (linear interpolation)."""
    lh = hist.shape[0]
    i1 = kc - a
    if i1 < 0:
        i1 += lh
    if b == 0.0:
        return hist[i1, s]
    i0 = i1 - 1
    if i0 < 0:
        i0 += lh
    return b * hist[i0, s] + (1.0 - b) * hist[i1, s]


@numba.njit(cache=True, error_model="numpy", inline="always")
def _population_inputs(out, kc, hist, drive, ent_tgt, ent_src, ent_w, ent_a, ent_b,
                       g7, sp0, mod_tgt, mod_src, mod_w, mod_a, mod_b, expo):
    """Population inputs (4n,) at history ring row kc (the current time)."""
    npop = out.shape[0]
    n = g7.shape[0]
    for p in range(npop):
        out[p] = drive[p]
    for e in range(ent_tgt.shape[0]):
        out[ent_tgt[e]] += ent_w[e] * _delayed(hist, kc, ent_a[e], ent_b[e], ent_src[e])
    # sp self-inhibition, modulated by (delayed) dp firing: G7 exp(-32 M S(v_dp))
    if mod_tgt.shape[0] == 0:
        for i in range(n):
            out[sp0 + i] -= g7[i] * hist[kc, sp0 + i]
    else:
        for i in range(n):
            expo[i] = 0.0
        for e in range(mod_tgt.shape[0]):
            expo[mod_tgt[e]] += mod_w[e] * _delayed(hist, kc, mod_a[e], mod_b[e], mod_src[e])
        for i in range(n):
            out[sp0 + i] -= g7[i] * math.exp(-32.0 * expo[i]) * hist[kc, sp0 + i]


@numba.njit(cache=True, error_model="numpy")
def _integrate_chunk(z, noise_pop, noise_scale, v, c, kappa, half_slope, drive,
                     ent_tgt, ent_src, ent_w, ent_a, ent_b,
                     g7, sp0, mod_tgt, mod_src, mod_w, mod_a, mod_b,
                     hist, w1, acc, ring2, h2, counters, m1, q, out, dt):
    """Advance the simulation by ``z.shape[0]`` internal steps (stochastic Heun).

    For each step: feed the current state to the anti-aliasing filter, then step to the next
    state with the noise draws ``z[t]``.  All state arrays are updated in place.  The integer
    ``counters`` (kept incrementally, so that the loop needs no integer division) are:
    0 step index k, 1 k mod m1, 2 k div m1, 3 history ring row (k mod len(hist)), 4 stage-2
    ring slot of the next stage-1 sample, 5 stage-1 samples pushed, 6 index of the stage-1
    sample completing the next output, 7 outputs written.
    """
    npop = v.shape[0]
    lh = hist.shape[0]
    l2 = h2.shape[0]
    n_out = out.shape[0]
    h1 = (w1.shape[0] - 1) // 2
    na = acc.shape[0]  # a power of two, > number of stage-1 samples a step contributes to
    push_r = h1 % m1
    push_s = -(h1 // m1)
    s_lo = -((h1 + m1 - 1) // m1)
    s_hi = (h1 + m1 - 1) // m1
    u0 = np.empty(npop)
    u1 = np.empty(npop)
    vp = np.empty(npop)
    cp = np.empty(npop)
    dc0 = np.empty(npop)
    xi = np.zeros(npop)
    expo = np.zeros(g7.shape[0])
    half_dt = 0.5 * dt
    k, r, j, kc = counters[0], counters[1], counters[2], counters[3]
    slot, n_pushed, next_out, o = counters[4], counters[5], counters[6], counters[7]
    for t in range(z.shape[0]):
        # ---- anti-aliasing stage 1: sample j + s (centred on step (j + s) m1) gets
        #      w1[r - s m1 + h1] of the state at step k = j m1 + r
        for s_ in range(s_lo, s_hi + 1):
            off = r - s_ * m1
            if off < -h1 or off > h1 or j + s_ < 0:
                continue
            w = w1[off + h1]
            row = (j + s_) & (na - 1)
            for p in range(npop):
                acc[row, p] += w * v[p]
                acc[row, npop + p] += w * c[p]
        if r == push_r and j + push_s >= 0:
            # stage-1 sample j + push_s is complete: push it to the stage-2 ring, which is
            # stored twice so that every window of l2 consecutive samples is contiguous
            row = (j + push_s) & (na - 1)
            for p in range(2 * npop):
                ring2[slot, p] = acc[row, p]
                ring2[slot + l2, p] = acc[row, p]
                acc[row, p] = 0.0
            # ---- stage 2: symmetric FIR over the last l2 samples, one output every q
            if n_pushed == next_out and o < n_out:
                start = slot + 1
                if start == l2:
                    start = 0
                # symmetric taps: h2[ell] = h2[l2 - 1 - ell], centre tap at k2
                k2 = (l2 - 1) // 2
                w = h2[k2]
                for p in range(2 * npop):
                    out[o, p] = w * ring2[start + k2, p]
                for ell in range(k2):
                    w = h2[ell]
                    r_lo = start + ell
                    r_hi = start + l2 - 1 - ell
                    for p in range(2 * npop):
                        out[o, p] += w * (ring2[r_lo, p] + ring2[r_hi, p])
                o += 1
                next_out += q
            n_pushed += 1
            slot += 1
            if slot == l2:
                slot = 0
        # ---- stochastic Heun step k -> k + 1 (noise additive, on the currents)
        for p in range(npop):
            xi[p] = 0.0
        for e in range(noise_pop.shape[0]):
            xi[noise_pop[e]] = noise_scale[e] * z[t, e]
        _population_inputs(u0, kc, hist, drive, ent_tgt, ent_src, ent_w, ent_a, ent_b,
                           g7, sp0, mod_tgt, mod_src, mod_w, mod_a, mod_b, expo)
        k1 = kc + 1
        if k1 == lh:
            k1 = 0
        for p in range(npop):
            kp = kappa[p]
            dc0[p] = kp * (u0[p] - 2.0 * c[p] - kp * v[p])
            vp[p] = v[p] + dt * c[p]
            cp[p] = c[p] + dt * dc0[p] + xi[p]
            hist[k1, p] = 0.5 * math.tanh(half_slope * vp[p])
        _population_inputs(u1, k1, hist, drive, ent_tgt, ent_src, ent_w, ent_a, ent_b,
                           g7, sp0, mod_tgt, mod_src, mod_w, mod_a, mod_b, expo)
        for p in range(npop):
            kp = kappa[p]
            dc1 = kp * (u1[p] - 2.0 * cp[p] - kp * vp[p])
            v[p] = v[p] + half_dt * (c[p] + cp[p])
            c[p] = c[p] + half_dt * (dc0[p] + dc1) + xi[p]
            hist[k1, p] = 0.5 * math.tanh(half_slope * v[p])
        k += 1
        kc = k1
        r += 1
        if r == m1:
            r = 0
            j += 1
    counters[0], counters[1], counters[2], counters[3] = k, r, j, kc
    counters[4], counters[5], counters[6], counters[7] = slot, n_pushed, next_out, o


# --------------------------------------------------------------------------------------------
# Set-up and validation
# --------------------------------------------------------------------------------------------

def _positive(name, value, *, allow_zero=False):
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(x) or x < 0 or (x == 0 and not allow_zero):
        need = "non-negative" if allow_zero else "positive"
        raise ParameterError(f"{name} must be finite and {need}, got {value!r}")
    return x


def _noise_array(name, value, shape):
    arr = np.asarray(value, dtype=float)
    try:
        arr = np.broadcast_to(arr, shape).astype(float)
    except ValueError:
        raise ParameterError(
            f"{name} must be a scalar or have shape {shape}, got {np.shape(value)}") from None
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ParameterError(f"{name} must be finite and non-negative, got {arr.tolist()}")
    return arr


def _heun_growth(z):
    """Modulus of the Heun amplification factor ``1 + z + z**2 / 2``."""
    return np.abs(1.0 + z + 0.5 * z * z)


def _coupling_entries(nm, delays, dt):
    """Sparse coupling (target, source, weight, lag) without sp self-inhibition."""
    n = nm.n_sources
    W = nm.W.copy()
    sp = n + np.arange(n)
    W[sp, sp] = 0.0  # handled separately (modulated by dp firing)
    tgt, src = np.nonzero(W)
    w = W[tgt, src]
    lag = np.zeros(tgt.size)
    if delays:
        si, ti = src % n, tgt % n
        same_pop = (src // n) == (tgt // n)
        lag = np.where(si == ti, np.where(same_pop, 0.0, nm.d_intrinsic[ti]),
                       nm.d_extrinsic[ti, si])
    mi, mj = np.nonzero(nm.M)
    mw = nm.M[mi, mj]
    mlag = np.zeros(mi.size)
    if delays:
        mlag = np.where(mi == mj, nm.d_intrinsic[mi], nm.d_extrinsic[mi, mj])
    return (tgt, src, w, lag / dt), (mi, 3 * n + mj, mw, mlag / dt)


def _split_lag(lag_steps):
    """Integer part and fraction ``b`` with ``lag = a + b``: value = b*h[k-a-1] + (1-b)*h[k-a]."""
    a = np.floor(lag_steps + 1e-9).astype(np.int64)
    b = np.clip(lag_steps - a, 0.0, 1.0)
    b[b < 1e-9] = 0.0
    return a, b


def _run(P, *, duration, sfreq, n_sources, noise_std, population_noise_std, drive,
         delays, dt, burn_in, initial_state, random_seed):
    """Validate, simulate; return times, SPM-order states, the parameters and settings."""
    duration = _positive("duration", duration)
    sfreq = _positive("sfreq", sfreq)
    burn_in = _positive("burn_in", burn_in, allow_zero=True)
    n_samples = int(round(duration * sfreq))
    if n_samples < 1:
        raise ParameterError(f"duration * sfreq must give at least one sample, got {duration * sfreq}")
    Pc = canonical_spm({} if P is None else P, n_sources)
    nm = neural_from_spm(Pc)
    n = nm.n_sources
    npop = 4 * n
    sigma = _noise_array("noise_std", noise_std, (n,))
    pop_sigma = (np.zeros((n, 4)) if population_noise_std is None
                 else _noise_array("population_noise_std", population_noise_std, (n, 4)))
    drive_arr = np.zeros((n, 4)) if drive is None else np.asarray(drive, dtype=float)
    if drive_arr.shape == (4,) and n == 1:
        drive_arr = drive_arr.reshape(1, 4)
    if drive_arr.shape != (n, 4):
        raise ParameterError(f"drive must have shape ({n}, 4) (ss, sp, ii, dp per source), "
                             f"got {drive_arr.shape}")
    if not np.all(np.isfinite(drive_arr)):
        raise ParameterError("drive has non-finite values")

    # fixed point (start and linearisation point) and stiffness
    try:
        x_star = fixed_point(nm, drive=drive_arr)
    except UnstableSystemError:
        x_star = np.zeros(8 * n)
    lam = np.concatenate([np.linalg.eigvals(jacobian(nm)), np.linalg.eigvals(jacobian(nm, x_star))])
    rho = float(np.max(np.abs(lam)))
    if dt is None:
        dt_max = min(_DT_DEFAULT, _DT_ACCURACY / rho)
    else:
        dt_max = _positive("dt", dt)
    dt_eff, m1, h2 = _antialias_design(sfreq, dt_max)
    # A stable mode must not grow under the Heun step.  Weakly damped oscillatory modes (at a
    # Hopf point) pick up a growth of ~|Im lambda|^4 dt^3 / 8 per second from the scheme -- a
    # tiny error relative to |lambda| -- so only numerical growth that exceeds the true rate
    # by more than 1e-3 |lambda| counts as instability (stiff modes exceed it by orders).
    stable = lam.real < 0
    ls = lam[stable]
    num_rate = np.log(_heun_growth(ls * dt_eff)) / dt_eff
    if np.any((num_rate >= 0.0) & (num_rate - ls.real > 1e-3 * np.abs(ls))):
        lim = _DT_ACCURACY / rho
        raise ParameterError(
            f"dt = {dt_eff:.3g} s (from dt={dt!r} and sfreq={sfreq:g}) is too large for a stable "
            f"Heun step: the fastest CMC mode has |lambda| = {rho:.4g} 1/s; use dt <= {lim:.3g} s "
            f"(or dt=None)")

    if initial_state is None:
        x0 = x_star
    else:
        x0 = np.asarray(initial_state, dtype=float)
        if x0.shape != (8 * n,) or not np.all(np.isfinite(x0)):
            raise ParameterError(f"initial_state must be finite with shape ({8 * n},), got shape {x0.shape}")
    X0 = x0.reshape(8, n)
    v = np.ascontiguousarray(X0[0::2].ravel())  # population-major (p * n + i)
    c = np.ascontiguousarray(X0[1::2].ravel())

    kappa = (1.0 / nm.T).T.ravel().copy()
    half_slope = 0.5 * nm.R
    drive_vec = drive_arr.T.ravel().copy()
    g = pop_sigma.T.ravel().copy()
    g[:n] = np.sqrt(g[:n] ** 2 + (ENDOGENOUS_INPUT_GAIN * sigma) ** 2)
    noise_pop = np.flatnonzero(g > 0).astype(np.int64)
    noise_scale = kappa[noise_pop] * g[noise_pop] * np.sqrt(dt_eff)

    (tgt, src, w, lag), (mt, ms, mw, mlag) = _coupling_entries(nm, delays, dt_eff)
    ent_a, ent_b = _split_lag(lag)
    mod_a, mod_b = _split_lag(mlag)
    max_a = int(max(ent_a.max(initial=0), mod_a.max(initial=0)))
    lh = max_a + 2
    hist = np.empty((lh, npop))
    hist[:] = 0.5 * np.tanh(half_slope * v)

    q = _STAGE2_FACTOR
    w1 = _stage1_weights(m1)
    h1 = (w1.size - 1) // 2
    l2 = h2.size
    k2 = (l2 - 1) // 2
    # first output: its FIR support starts after the burn-in, on complete stage-1 samples
    j_first = k2 + -(-h1 // m1) + math.ceil(burn_in * q * sfreq - 1e-9)
    j_last = j_first + (n_samples - 1) * q + k2
    n_steps = j_last * m1 + h1 + 1
    out = np.zeros((n_samples, 2 * npop))
    n_active = 2 * (-(-h1 // m1)) + 1  # stage-1 samples one step contributes to
    acc = np.zeros((1 << int(n_active).bit_length(), 2 * npop))
    ring2 = np.zeros((2 * l2, 2 * npop))
    # counters, see _integrate_chunk; output o completes with stage-1 sample j_first + o q + k2
    counters = np.zeros(8, dtype=np.int64)
    counters[6] = j_first + k2
    rng = np.random.default_rng(random_seed)
    done = 0
    while done < n_steps:
        m = min(_CHUNK_STEPS, n_steps - done)
        z = rng.standard_normal((m, noise_pop.size))
        _integrate_chunk(z, noise_pop, noise_scale, v, c, kappa, half_slope, drive_vec,
                         tgt.astype(np.int64), src.astype(np.int64), w, ent_a, ent_b,
                         nm.G[:, 6].copy(), n, mt.astype(np.int64), ms.astype(np.int64), mw,
                         mod_a, mod_b, hist, w1, acc, ring2, h2, counters, m1, q, out,
                         dt_eff)
        done += m
        if not (np.all(np.isfinite(v)) and np.all(np.isfinite(c))):
            raise UnstableSystemError(
                f"the simulation diverged after {done * dt_eff:.3g} s of model time; reduce dt, "
                "the noise or the drive")
    if counters[7] != n_samples:  # pragma: no cover - guards the index arithmetic
        raise RuntimeError(f"internal error: {counters[7]} of {n_samples} samples produced")

    states = np.empty((n_samples, 8, n))
    states[:, 0::2, :] = out[:, :npop].reshape(n_samples, 4, n)
    states[:, 1::2, :] = out[:, npop:].reshape(n_samples, 4, n)
    times = np.arange(n_samples) / sfreq
    settings = {
        "duration": duration, "sfreq": sfreq, "n_sources": n, "noise_std": sigma.tolist(),
        "population_noise_std": pop_sigma.tolist(), "drive": drive_arr.tolist(),
        "delays": bool(delays), "dt": dt_eff, "burn_in": burn_in,
        "initial_state": None if initial_state is None else x0.tolist(),
        "t_start": -j_first * m1 * dt_eff,  # time of the initial state (s; first sample at 0)
    }
    return times, states.reshape(n_samples, 8 * n), Pc, settings, rng


_COMMON_PARAMS = """
    P : dict or None
        SPM parameter dict (fields as in :func:`nmm_inference.params.canonical_spm`; missing
        fields take SPM's prior mean).  ``None`` means the prior mean.
    duration : float
        Length of the returned record, in s (``round(duration * sfreq)`` samples).
    sfreq : float
        Output sampling frequency, in Hz.
    n_sources : int or None
        Number of sources; by default inferred from ``P`` (see ``canonical_spm``).
    noise_std : float or array-like, shape (n_sources,)
        Spectral amplitude ``sigma`` of the white-noise endogenous input ``u`` of each source,
        in input units times s^(1/2): two-sided PSD ``sigma**2``, one-sided PSD
        ``2 sigma**2`` per Hz.  ``u`` enters the spiny stellate cells as ``512 u`` (SPM's CSD
        convention).  The default 0.01 keeps SPM's prior-mean model in its linear regime
        (standard deviation of the ss voltage about 0.1).
    population_noise_std : None, float or array-like, shape (n_sources, 4)
        Optional additional white noise on the inputs of the ss, sp, ii and dp populations,
        same convention, in the units of ``drive`` (no factor 512).
    drive : None or array-like, shape (n_sources, 4)
        Constant input to the ss, sp, ii and dp populations, in SPM units (the same units as
        ``512 u``).
    delays : bool
        Simulate true transmission delays (intrinsic ``1 ms exp(D(i, i))`` between different
        populations, extrinsic ``8 ms exp(D(i, j))`` between sources).  ``False`` (default) is
        the exact counterpart of SPM's undelayed spectrum; with ``True`` the simulation and
        SPM's delayed spectrum agree only to first order in the delays (see the module notes).
    dt : float or None
        Largest internal integration step, in s; the step used is the largest
        ``1 / (8 m sfreq)`` (``m`` an integer) that does not exceed it.  ``None`` chooses
        ``min(1e-4, 0.1 / |lambda|_max)`` from the eigenvalues of the (undelayed) Jacobian at
        0 and at the fixed point, against which an explicit ``dt`` is also checked for
        stability.
    burn_in : float
        Time simulated and discarded before the record starts, in s (the anti-aliasing filter
        adds a further ``~25 / sfreq`` s on each side).
    initial_state : None or array-like, shape (8 n_sources,)
        State at the start of the simulation (``burn_in`` plus the filter's ``~25 / sfreq`` s
        before the first sample), in SPM's order; the firing history before it is taken as
        constant.  Default: the fixed point for ``drive``
        (:func:`nmm_inference.cmc.equations.fixed_point`).
    random_seed : None, int or numpy.random.Generator
        Seed of the noise, passed to :func:`numpy.random.default_rng`."""

_COMMON_RAISES = """
    ParameterError
        For non-positive ``duration``, ``sfreq`` or ``dt``, negative ``burn_in`` or noise
        levels, ill-shaped inputs, non-finite parameters, or a ``dt`` too large for the Heun
        step to be stable at the fastest mode of the linearised model.
    UnstableSystemError
        If the trajectory diverges (becomes non-finite)."""


def simulate_cmc_states(P=None, *, duration, sfreq=250.0, n_sources=None, noise_std=0.01,
                        population_noise_std=None, drive=None, delays=False, dt=None,
                        burn_in=1.0, initial_state=None, random_seed=None):
    """Simulate the nonlinear stochastic CMC and return its full state trajectory.

    Parameters
    ----------%(params)s

    Returns
    -------
    times : ndarray, shape (n_times,)
        Sample times in s, ``arange(n_times) / sfreq``, from the end of the burn-in.
    states : ndarray, shape (n_times, 8 n_sources)
        Anti-alias filtered states in SPM's order (state ``s`` of source ``i`` in column
        ``s * n_sources + i``, ``s`` in v_ss, c_ss, v_sp, c_sp, v_ii, c_ii, v_dp, c_dp);
        voltages in SPM's units, currents in those units per s.

    Raises
    ------%(raises)s

    Notes
    -----
    Noise convention, integration scheme, anti-aliasing and the treatment of delays are
    described in :mod:`nmm_inference.cmc.simulate`.

    Examples
    --------
    >>> times, states = simulate_cmc_states(duration=2.0, random_seed=0)
    >>> states.shape
    (500, 8)
    """
    times, states, *_ = _run(P, duration=duration, sfreq=sfreq, n_sources=n_sources,
                             noise_std=noise_std, population_noise_std=population_noise_std,
                             drive=drive, delays=delays, dt=dt, burn_in=burn_in,
                             initial_state=initial_state, random_seed=random_seed)
    return times, states


def simulate_cmc(P=None, *, duration, sfreq=250.0, n_sources=None, noise_std=0.01,
                 population_noise_std=None, drive=None, delays=False, channel_noise=0.0,
                 dt=None, burn_in=1.0, initial_state=None, random_seed=None):
    """Simulate the LFP of the nonlinear stochastic CMC as an MNE Raw object.

    One LFP channel per source, ``LFP_i = L_i * sum_s J_s x[s * n + i]`` with SPM's observer
    parameters ``L`` and ``J`` from ``P`` (default: the sp voltage).

    Parameters
    ----------%(params)s
    channel_noise : float
        Standard deviation of white Gaussian measurement noise added to every sample, in LFP
        units (one-sided PSD ``2 channel_noise**2 / sfreq`` per Hz), independent across
        channels and drawn after the neural noise from the same generator.

    Returns
    -------
    raw : mne.io.RawArray
        Channels ``"LFP 0"``, ``"LFP 1"``, ... of type ``"misc"``, in the model's LFP units
        (not volts).  ``raw.info["description"]`` holds a JSON record of the generator, the
        package version, the canonical SPM parameters and all settings, including the
        internal step actually used (``"dt"``) and the time of the initial state relative to
        the first sample (``"t_start"``, s).

    Raises
    ------%(raises)s

    Examples
    --------
    >>> raw = simulate_cmc(duration=2.0, random_seed=0)
    >>> raw.ch_names, int(raw.n_times)
    (['LFP 0'], 500)
    """
    channel_noise = _positive("channel_noise", channel_noise, allow_zero=True)
    times, states, Pc, settings, rng = _run(
        P, duration=duration, sfreq=sfreq, n_sources=n_sources, noise_std=noise_std,
        population_noise_std=population_noise_std, drive=drive, delays=delays, dt=dt,
        burn_in=burn_in, initial_state=initial_state, random_seed=random_seed)
    n = settings["n_sources"]
    C = np.kron(Pc["J"].reshape(1, 8), np.diag(Pc["L"].ravel()))
    lfp = states @ C.T
    if channel_noise > 0:
        lfp = lfp + channel_noise * rng.standard_normal(lfp.shape)
    settings["channel_noise"] = channel_noise
    settings["random_seed"] = random_seed if isinstance(random_seed, (int, np.integer, type(None))) \
        else repr(random_seed)
    if isinstance(settings["random_seed"], np.integer):
        settings["random_seed"] = int(settings["random_seed"])
    record = {
        "generator": "nmm_inference.cmc.simulate.simulate_cmc",
        "version": __version__,
        "model": "CMC (spm_fx_cmc), LFP observer L*J*x",
        "units": "model LFP units (not volts)",
        "P": {k: np.asarray(val).tolist() for k, val in Pc.items()},
        "settings": settings,
    }
    import mne  # the MNE boundary: imported here only

    info = mne.create_info([f"LFP {i}" for i in range(n)], sfreq, ch_types="misc")
    info["description"] = json.dumps(record)
    return mne.io.RawArray(lfp.T, info, verbose=False)


simulate_cmc_states.__doc__ = simulate_cmc_states.__doc__ % {
    "params": _COMMON_PARAMS, "raises": _COMMON_RAISES}
simulate_cmc.__doc__ = simulate_cmc.__doc__ % {"params": _COMMON_PARAMS, "raises": _COMMON_RAISES}
