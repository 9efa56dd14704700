"""Seeded simulation of the switching amplitude-SDE model (the generative model of the likelihood).

A hidden continuous-time Markov chain over states switches with rates ``k_ij``; in state s the
complex amplitude of band m follows ``dz = z (sigma[s, m] + a[s, m] |z|^2) dt + sqrt(D[s, m])
(dW_1 + i dW_2)`` (sensor units), whose modulus is the amplitude SDE of
:mod:`~nmm_inference.switching.envelope_likelihood`.  Used by the tests and the documentation to
check the likelihood and the decoding against data with known states.

Numpy + numba; every random draw comes from ``numpy.random.default_rng(random_seed)``.
"""

from __future__ import annotations

import numba
import numpy as np

from ..errors import ParameterError
from .envelope_likelihood import _check_dt, _state_params

__all__ = ["simulate_switching_envelope"]


@numba.njit(cache=True, error_model="numpy")
def _simulate(states_fine, sigma, a, D, dt, xi, z0, every):
    n = states_fine.shape[0]
    M = sigma.shape[1]
    z = z0.copy()
    out = np.empty((n // every, M))
    o = 0
    for i in range(n):
        s = states_fine[i]
        for m in range(M):
            r2 = z[m].real ** 2 + z[m].imag ** 2
            amp = np.sqrt(D[s, m] * dt)
            z[m] = (z[m] + z[m] * (sigma[s, m] + a[s, m] * r2) * dt
                    + amp * (xi[i, m, 0] + 1j * xi[i, m, 1]))
        if (i + 1) % every == 0 and o < out.shape[0]:
            for m in range(M):
                out[o, m] = abs(z[m])
            o += 1
    return out


def simulate_switching_envelope(*, sigma, a, D, rates, sfreq, duration, substeps=20,
                                initial_state=0, random_seed=None):
    """Simulate envelopes of the switching amplitude-SDE model.

    Parameters
    ----------
    sigma, a, D : array-like, shape (n_states, n_bands)
        Per-state SDE parameters in sensor units (1/s, 1/(s unit^2), unit^2/s).
    rates : array-like, shape (n_states, n_states)
        Switching rates ``k_ij`` (1/s); the diagonal is ignored.
    sfreq : float
        Output rate (Hz).
    duration : float
        Length (s).
    substeps : int, optional
        Euler-Maruyama steps per output sample.
    initial_state : int, optional
        State at time 0.
    random_seed : None, int or numpy.random.Generator
        Seed for :func:`numpy.random.default_rng`.

    Returns
    -------
    envelope : ndarray, shape (n_times, n_bands)
        ``|z|`` sampled at ``sfreq``.
    states : ndarray of int, shape (n_times,)
        Hidden state at each output sample.

    Examples
    --------
    >>> env, st = simulate_switching_envelope(sigma=[[-5.0], [3.0]], a=[[-3.0], [-3.0]],
    ...                                       D=[[0.5], [0.5]], rates=[[0, 0.5], [0.5, 0]],
    ...                                       sfreq=50.0, duration=4.0, random_seed=0)
    >>> env.shape, st.shape
    ((200, 1), (200,))
    """
    k = np.asarray(rates, dtype=float)
    S = k.shape[0]
    if k.shape != (S, S):
        raise ParameterError(f"rates must be square, got {k.shape}")
    s_, a_, D_ = _state_params(sigma, a, D, np.asarray(sigma, dtype=float).shape[-1], n_states=S)
    if np.any(D_ <= 0):
        raise ParameterError("D must be positive")
    dt_out = _check_dt(1.0 / float(sfreq))
    n_out = int(round(float(duration) * float(sfreq)))
    if n_out < 1:
        raise ParameterError(f"duration * sfreq must give at least one sample, got {n_out}")
    substeps = int(substeps)
    if substeps < 1:
        raise ParameterError(f"substeps must be >= 1, got {substeps}")
    rng = np.random.default_rng(random_seed)
    # hidden chain in continuous time (Gillespie), then sampled on the fine grid
    Q = k.copy()
    np.fill_diagonal(Q, 0.0)
    if np.any(Q < 0):
        raise ParameterError("rates must be non-negative")
    out_rate = Q.sum(axis=1)
    dt = dt_out / substeps
    n_fine = n_out * substeps
    t_fine = (np.arange(n_fine) + 1) * dt
    states_fine = np.empty(n_fine, dtype=np.int64)
    t, s, i = 0.0, int(initial_state), 0
    while i < n_fine:
        hold = rng.exponential(1.0 / out_rate[s]) if out_rate[s] > 0 else np.inf
        j = int(np.searchsorted(t_fine, t + hold, side="left"))
        states_fine[i:j] = s
        i = j
        t += hold
        if out_rate[s] > 0:
            s = int(rng.choice(S, p=Q[s] / out_rate[s]))
    z0 = np.empty(s_.shape[1], dtype=np.complex128)
    s0 = int(initial_state)
    for m in range(s_.shape[1]):
        I0 = (-s_[s0, m] / a_[s0, m] if (s_[s0, m] > 0 and a_[s0, m] < 0)
              else D_[s0, m] / max(abs(s_[s0, m]), 1e-3))
        z0[m] = np.sqrt(max(I0, 1e-12))
    xi = rng.standard_normal((n_fine, s_.shape[1], 2))
    env = _simulate(states_fine, s_, a_, D_, dt, xi, z0, substeps)
    return env, states_fine[substeps - 1::substeps].copy()
