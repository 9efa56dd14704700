"""Scans along one parameter: Hopf points and changes in the set of stable states.

Pure numerics: numpy only.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError, ReductionError, ReductionValidityWarning
from ._core import PARAM_NAMES, check_inputs
from .reduction import reduce_cmc

__all__ = ["ScanResult", "scan_parameter"]


@dataclass(frozen=True)
class ScanResult:
    """A one-parameter bifurcation diagram of the amplitude reduction.

    Attributes
    ----------
    parameter : str
        Scanned parameter (one of ``PARAM_NAMES``).
    values : ndarray, shape (n,)
        Parameter values (its physical unit).
    eigenvalues : ndarray, shape (n, m), complex
        Mode eigenvalues, continued along the scan (column k follows one mode).
    hopf_points : list of dict
        ``{"value", "mode", "frequency_hz", "direction", "criticality", "g_kk"}`` where a
        growth rate crosses zero; ``direction`` is +1 when the mode destabilises with increasing
        value; ``criticality`` is ``"supercritical"`` (Re g_kk < 0) or ``"subcritical"``.
    stable_states : list of list of AmplitudeState or None
        Stable states at each value (None where the reduction refused).
    state_sets : list of tuple
        At each value, the sorted tuple of active-mode sets of the stable states (``()`` is the
        rest state), with modes labelled by continued column; None where refused.
    transitions : list of dict
        ``{"value", "before", "after"}`` where the set of stable states changes (the value is
        refined by bisection).
    refusals : list of tuple
        ``(value, message)`` where :class:`~nmm_inference.errors.ReductionError` was raised.
    """

    parameter: str
    values: np.ndarray
    eigenvalues: np.ndarray
    hopf_points: list
    stable_states: list
    state_sets: list
    transitions: list
    refusals: list

    def envelope_branches(self, population=1):
        """Envelope of ``population`` in each stable state along the scan, for plotting.

        Returns
        -------
        list of (value, column, frequency_hz, envelope) tuples.
        """
        out = []
        for v, states, perm in zip(self.values, self.stable_states, self._perms):
            if states is None:
                continue
            for s in states:
                for k, f, e in zip(s.active, s.frequencies_hz, s.envelopes[:, population]):
                    out.append((float(v), int(perm[k]), float(f), float(e)))
        return out

    @property
    def _perms(self):
        return self.__dict__.get("_perm_list", [])


def _match(prev, lam):
    """Permutation p with lam[p[c]] closest to prev[c] (greedy; small m)."""
    m = min(prev.size, lam.size)
    cost = np.abs(prev[:, None] - lam[None, :])
    perm = -np.ones(prev.size, dtype=int)
    used = set()
    for _ in range(m):
        c, j = np.unravel_index(np.argmin(cost), cost.shape)
        perm[c] = j
        used.add(j)
        cost[c, :] = np.inf
        cost[:, j] = np.inf
    return perm


def _state_set(red, col_of_mode):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ReductionValidityWarning)
            st = red.stable_states(warn=False)
    except ReductionError as exc:
        return None, None, str(exc)
    key = tuple(sorted(tuple(sorted(int(col_of_mode[k]) for k in s.active)) for s in st))
    return st, key, None


def scan_parameter(G, T, *, parameter, values, R=2.0 / 3.0, U=(0.0, 0.0, 0.0, 0.0),
                   refine=True, tol=1e-6):
    """Scan one parameter and locate Hopf points and changes in the set of stable states.

    Parameters
    ----------
    G, T, R, U
        Base parameters, as for :func:`~nmm_inference.adiabatic.reduce_cmc`.
    parameter : str
        One of ``PARAM_NAMES`` (``"G1"``..``"G10"``, ``"T_ss"``.., ``"R"``, ``"U_ss"``..).
    values : array-like, shape (n,)
        Values of that parameter, increasing (physical units: 1/s, s, 1/mV or input units).
    R, U : optional
        Slope and constant input.
    refine : bool, optional
        Refine Hopf points (secant on sigma) and transitions (bisection).
    tol : float, optional
        Relative tolerance of the refinement.

    Returns
    -------
    ScanResult
    """
    if parameter not in PARAM_NAMES:
        raise ParameterError(f"unknown parameter {parameter!r}; allowed: {list(PARAM_NAMES)}")
    G, T, R, U = check_inputs(G, T, R, U)
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or values.size < 2 or not np.all(np.diff(values) > 0):
        raise ParameterError("values must be a strictly increasing 1-D array of length >= 2")
    theta0 = np.concatenate([G, T, [R], U])
    ip = PARAM_NAMES.index(parameter)

    def reduce_at(x):
        th = theta0.copy()
        th[ip] = x
        return reduce_cmc(th[:10], th[10:14], th[14], th[15:19])

    reds = [reduce_at(x) for x in values]
    m = max(r.n_modes for r in reds)
    eig = np.full((values.size, m), np.nan + 1j * np.nan)
    perms = []
    prev = None
    for i, red in enumerate(reds):
        lam = red.eigenvalues
        if prev is None:
            perm = np.arange(m)
            perm[lam.size:] = -1
        else:
            perm = _match(prev, lam)
        col_of_mode = {int(perm[c]): c for c in range(m) if perm[c] >= 0}
        for c in range(m):
            if perm[c] >= 0:
                eig[i, c] = lam[perm[c]]
        prev = np.where(np.isfinite(eig[i]), eig[i], prev if prev is not None else eig[i])
        perms.append(col_of_mode)
    # Hopf points: sign changes of sigma in a column
    hopf = []
    for c in range(m):
        s = eig[:, c].real
        for i in range(values.size - 1):
            if np.isfinite(s[i]) and np.isfinite(s[i + 1]) and s[i] * s[i + 1] < 0:
                x0, x1, s0, s1 = values[i], values[i + 1], s[i], s[i + 1]
                red = None
                for _ in range(60 if refine else 0):
                    x = x1 - s1 * (x1 - x0) / (s1 - s0)
                    red = reduce_at(x)
                    k = int(np.argmin(np.abs(red.eigenvalues - eig[i, c])))
                    sx = red.sigma[k]
                    if abs(x1 - x0) < tol * max(abs(x), 1e-12) or sx == 0:
                        break
                    if sx * s0 < 0:
                        x1, s1 = x, sx
                    else:
                        x0, s0 = x, sx
                x = x1 - s1 * (x1 - x0) / (s1 - s0) if red is None else x
                red = red or reduce_at(x)
                k = int(np.argmin(np.abs(red.eigenvalues - eig[i, c])))
                gkk = complex(red.g[k, k])
                hopf.append({"value": float(x), "mode": c,
                             "frequency_hz": float(red.omega[k] / (2 * np.pi)),
                             "direction": int(np.sign(s[i + 1] - s[i])),
                             "criticality": "supercritical" if gkk.real < 0 else "subcritical",
                             "g_kk": gkk})
    # stable-state sets along the scan
    st_list, keys, refusals = [], [], []
    for x, red, col in zip(values, reds, perms):
        st, key, err = _state_set(red, col)
        st_list.append(st)
        keys.append(key)
        if err is not None:
            refusals.append((float(x), err))
    transitions = []
    for i in range(values.size - 1):
        if keys[i] != keys[i + 1]:
            lo, hi = values[i], values[i + 1]
            klo = keys[i]
            if refine:
                for _ in range(40):
                    if hi - lo < tol * max(abs(hi), 1e-12):
                        break
                    mid = 0.5 * (lo + hi)
                    red = reduce_at(mid)
                    perm = _match(np.nan_to_num(eig[i]), red.eigenvalues)
                    col = {int(perm[c]): c for c in range(m) if perm[c] >= 0}
                    _, kmid, _ = _state_set(red, col)
                    if kmid == klo:
                        lo = mid
                    else:
                        hi = mid
            transitions.append({"value": float(0.5 * (lo + hi)), "before": keys[i],
                                "after": keys[i + 1]})
    res = ScanResult(parameter, values, eig, hopf, st_list, keys, transitions, refusals)
    object.__setattr__(res, "_perm_list", perms)
    return res
