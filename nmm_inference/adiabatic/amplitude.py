"""Amplitude-phase equations, their stationary states and the potential.

With ``z_k = r_k exp(i theta_k)``, ``a = Re g`` and ``b = Im g`` (``shared/docs/adiabatic.md``
§3.4, §4)::

    dr_k/dt = r_k (sigma_k + sum_j a_kj r_j^2),   dtheta_k/dt = omega_k + sum_j b_kj r_j^2.

In action variables ``I_k = r_k^2`` this is a Lotka-Volterra system whose stationary states are
found by solving ``a_SS I_S = -sigma_S`` for every set ``S`` of active modes.

Pure numerics: numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from ..errors import ReductionError

__all__ = ["AmplitudeState", "Potential", "stationary_states", "symmetrizer", "potential"]


@dataclass(frozen=True)
class AmplitudeState:
    """A stationary state of the amplitude equations (rest, single-mode or mixed).

    Attributes
    ----------
    active : tuple of int
        Indices (into ``Reduction.modes``) of the oscillating modes; empty for the rest state.
    intensities : ndarray, shape (n_active,)
        ``I_k = r_k^2`` of the active modes.
    amplitudes : ndarray, shape (n_active,)
        Mode amplitudes ``r_k`` (``|z_k|``, dimensionless with nu scaled to max entry 1).
    frequencies_hz : ndarray, shape (n_active,)
        Amplitude-corrected frequencies ``(omega_k + sum_j b_kj r_j^2) / 2 pi`` in Hz.
    envelopes : ndarray, shape (n_active, 4)
        Voltage envelope of population i (ss, sp, ii, dp) in mode k (mV):
        ``v_i(t) ~ v_i* + sum_k envelopes[k, i] cos(omega_k t + phase) + harmonics``.  To
        leading order this is ``2 r_k |nu_k,i|`` (:attr:`envelopes_leading`); the reported value
        adds the cubic slaved profile, ``2 r_k |nu_k,i + sum_j eta3_kj,i r_j^2|``, which has the
        same O(r^3) accuracy as the amplitude equations and makes every population's envelope as
        accurate as ``r_k`` itself (the leading-order profile alone is off by O(r^2) per population).
    radial_exponents : ndarray, shape (n_active,), complex
        Eigenvalues of the amplitude flow inside the state (1/s; ``-2 sigma_k`` for one mode).
        For the rest state: the growth rates ``sigma_k`` of all modes.
    transverse_exponents : dict of int to float
        For each inactive mode j: its growth rate ``sigma_j + sum_k a_jk I_k`` (1/s) at the state.
    stable : bool
        True when all exponents have negative real parts.
    potential : float or None
        Value of the potential V at the state when V exists (see :func:`potential`).
    jacobian : dict or None
        When the reduction was made with ``gradients=True``: derivatives of
        ``"amplitudes"``, ``"frequencies_hz"`` and ``"envelopes"`` with respect to the 19
        parameters ``PARAM_NAMES`` (last axis).
    envelopes_leading : ndarray, shape (n_active, 4)
        Leading-order envelopes ``2 r_k |nu_k,i|`` (mV).
    """

    active: tuple
    intensities: np.ndarray
    amplitudes: np.ndarray
    frequencies_hz: np.ndarray
    envelopes: np.ndarray
    radial_exponents: np.ndarray
    transverse_exponents: dict
    stable: bool
    potential: float | None = None
    jacobian: dict | None = field(default=None, repr=False)
    envelopes_leading: np.ndarray | None = field(default=None, repr=False)

    @property
    def is_rest(self) -> bool:
        """True for the rest state (no active mode)."""
        return len(self.active) == 0

    @property
    def stability_exponents(self) -> np.ndarray:
        """All exponents (radial then transverse), 1/s."""
        tr = np.array(list(self.transverse_exponents.values()), dtype=complex)
        return np.concatenate([np.asarray(self.radial_exponents, dtype=complex), tr])

    def __repr__(self):
        if self.is_rest:
            return f"AmplitudeState(rest, stable={self.stable})"
        f = ", ".join(f"{x:.3f}" for x in self.frequencies_hz)
        r = ", ".join(f"{x:.4g}" for x in self.amplitudes)
        return f"AmplitudeState(active={self.active}, r=({r}), f=({f}) Hz, stable={self.stable})"


def stationary_states(sigma, omega, a, b, nu, eta3=None, *, candidates=None, tangents=None):
    """All stationary states of the amplitude equations built from a set of candidate modes.

    Parameters
    ----------
    sigma, omega : ndarray, shape (m,)
        Growth rates and angular frequencies of the modes (1/s, rad/s).
    a, b : ndarray, shape (m, m)
        Real and imaginary parts of the cubic coefficients g.
    nu : ndarray, shape (m, 4)
        Voltage profiles of the modes.
    eta3 : ndarray, shape (m, m, 4), optional
        Cubic slaved voltage profiles: the voltage fundamental of mode k in a state is
        ``(nu_k + sum_j eta3_kj r_j^2) z_k``.  Without it the envelopes are ``2 r_k |nu_k|``.
    candidates : sequence of int, optional
        Modes allowed to be active (default: all).  Transverse stability is always checked
        against every mode.
    tangents : dict, optional
        ``d_sigma``, ``d_omega`` (P, m), ``d_a``, ``d_b`` (P, m, m), ``d_nu`` (P, m, 4) and
        ``d_eta3`` (P, m, m, 4): if given, every state carries the derivatives of its amplitudes,
        frequencies and envelopes.

    Returns
    -------
    list of AmplitudeState
        The rest state first, then states ordered by number of active modes.
    """
    m = sigma.size
    cand = list(range(m)) if candidates is None else list(candidates)
    states = [AmplitudeState(active=(), intensities=np.zeros(0), amplitudes=np.zeros(0),
                             frequencies_hz=np.zeros(0), envelopes=np.zeros((0, 4)),
                             radial_exponents=sigma.astype(complex), transverse_exponents={},
                             stable=bool(np.all(sigma < 0)),
                             jacobian=None if tangents is None else {
                                 "amplitudes": np.zeros((0, tangents["d_sigma"].shape[0])),
                                 "frequencies_hz": np.zeros((0, tangents["d_sigma"].shape[0])),
                                 "envelopes": np.zeros((0, 4, tangents["d_sigma"].shape[0]))})]
    for n in range(1, len(cand) + 1):
        for S in combinations(cand, n):
            S = list(S)
            aSS = a[S][:, S]
            try:
                I = np.linalg.solve(aSS, -sigma[S])
            except np.linalg.LinAlgError:
                continue
            if not (np.all(I > 0) and np.all(np.isfinite(I))):
                continue
            r = np.sqrt(I)
            freq = (omega[S] + b[S][:, S] @ I) / (2 * np.pi)
            prof = nu[S] if eta3 is None else nu[S] + np.einsum("kji,j->ki", eta3[S][:, S], I)
            env = 2.0 * r[:, None] * np.abs(prof)
            rad = np.linalg.eigvals(2.0 * I[:, None] * aSS) if n > 1 else 2.0 * I * aSS[0]
            trans = {j: float(sigma[j] + a[j, S] @ I) for j in range(m) if j not in S}
            stable = bool(np.all(rad.real < 0) and all(t < 0 for t in trans.values()))
            jac = None
            if tangents is not None:
                jac = _state_jacobian(S, I, r, b, aSS, prof, nu, eta3, tangents)
            states.append(AmplitudeState(active=tuple(S), intensities=I, amplitudes=r,
                                         frequencies_hz=freq, envelopes=env,
                                         radial_exponents=np.asarray(rad, dtype=complex),
                                         transverse_exponents=trans, stable=stable,
                                         jacobian=jac,
                                         envelopes_leading=2.0 * r[:, None] * np.abs(nu[S])))
    return states


def _state_jacobian(S, I, r, b, aSS, prof, nu, eta3, t):
    """Derivatives of a state's amplitudes, frequencies and envelopes (last axis: parameters)."""
    d_sig = t["d_sigma"][:, S]                                  # (P, n)
    d_a = t["d_a"][:, S][:, :, S]                               # (P, n, n)
    d_I = -np.linalg.solve(aSS, (d_sig + d_a @ I).T)            # (n, P)
    d_r = d_I / (2.0 * r[:, None])
    d_om = t["d_omega"][:, S].T                                 # (n, P)
    d_b = t["d_b"][:, S][:, :, S]
    d_f = (d_om + (d_b @ I).T + b[S][:, S] @ d_I) / (2 * np.pi)
    d_prof = t["d_nu"][:, S]                                    # (P, n, 4)
    if eta3 is not None:
        e3 = eta3[S][:, S]
        d_prof = (d_prof + np.swapaxes(t["d_eta3"][:, S][:, :, S], 2, 3) @ I
                  + np.moveaxis(np.swapaxes(e3, 1, 2) @ d_I, -1, 0))
    absp = np.abs(prof)
    with np.errstate(divide="ignore", invalid="ignore"):
        d_absp = np.where(absp[None] > 0, np.real(np.conj(prof)[None] * d_prof) / absp[None], 0.0)
    d_env = 2.0 * d_r.T[:, :, None] * absp[None] + 2.0 * r[None, :, None] * d_absp
    return {"amplitudes": d_r, "frequencies_hz": d_f, "envelopes": np.moveaxis(d_env, 0, -1)}


def symmetrizer(a, *, rtol=1e-8):
    """Weights d > 0 with ``d_k a_kj = d_j a_jk`` (diagonal symmetrisation of ``a``).

    Parameters
    ----------
    a : ndarray, shape (n, n)
        Real cross-coupling matrix.
    rtol : float, optional
        Relative tolerance for the cycle (Kolmogorov) conditions.

    Returns
    -------
    d : ndarray or None
        Weights normalised to ``d[0] = 1``, or None when none exist.
    reason : str
        Empty when d exists, else why the coupling cannot be symmetrised.
    """
    a = np.asarray(a, dtype=float)
    n = a.shape[0]
    scale = np.max(np.abs(a)) if a.size else 1.0
    zero = np.abs(a) <= 1e-14 * scale
    for k in range(n):
        for j in range(k + 1, n):
            if zero[k, j] != zero[j, k]:
                return None, (f"a[{k},{j}] = {a[k, j]:.4g} and a[{j},{k}] = {a[j, k]:.4g}: one "
                              "coupling vanishes and the other does not")
            if not zero[k, j] and a[k, j] * a[j, k] < 0:
                return None, (f"a[{k},{j}] = {a[k, j]:.4g} and a[{j},{k}] = {a[j, k]:.4g} have "
                              "opposite signs (predator-prey coupling; no potential)")
    d = np.full(n, np.nan)
    # spanning forest over the graph of non-zero couplings
    for root in range(n):
        if np.isfinite(d[root]):
            continue
        d[root] = 1.0
        stack = [root]
        while stack:
            k = stack.pop()
            for j in range(n):
                if j != k and not zero[k, j] and not np.isfinite(d[j]):
                    d[j] = d[k] * a[k, j] / a[j, k]
                    stack.append(j)
    Sm = d[:, None] * a
    err = np.abs(Sm - Sm.T)
    tol = rtol * np.max(np.abs(Sm))
    if np.any(err > tol):
        k, j = np.unravel_index(np.argmax(err), err.shape)
        return None, (f"the cycle condition fails (d_k a_kj - d_j a_jk = {Sm[k, j] - Sm[j, k]:.3g} "
                      f"for k={k}, j={j}): with three or more coupled modes a potential exists only "
                      "if a_kj a_jl a_lk = a_kl a_lj a_jk for every cycle")
    return d / d[0], ""


@dataclass(frozen=True)
class Potential:
    """Potential of the cubic amplitude flow (``shared/docs/adiabatic.md`` §4.3).

    ``V(r) = -1/2 sum_k d_k sigma_k r_k^2 - 1/4 sum_kj d_k a_kj r_k^2 r_j^2``; in the rescaled
    amplitudes ``rho_k = sqrt(d_k) r_k`` the flow is ``drho/dt = -grad_rho V`` exactly.

    Attributes
    ----------
    modes : tuple of int
        The modes the potential is defined on.
    weights : ndarray
        Symmetrising weights d (``d[0] = 1``).
    sigma : ndarray
        Growth rates of those modes (1/s).
    a : ndarray
        Their real cubic coefficients.
    """

    modes: tuple
    weights: np.ndarray
    sigma: np.ndarray
    a: np.ndarray

    def __call__(self, r):
        """V at amplitudes ``r`` (last axis: the modes of the potential), in 1/s units."""
        r = np.asarray(r, dtype=float)
        I = r ** 2
        d = self.weights
        return (-0.5 * np.sum(d * self.sigma * I, axis=-1)
                - 0.25 * np.einsum("...k,k,kj,...j->...", I, d, self.a, I))

    def gradient_rho(self, rho):
        """``dV/drho`` in rescaled amplitudes ``rho = sqrt(d) r``."""
        rho = np.asarray(rho, dtype=float)
        bsym = self.a / self.weights[None, :]
        return -(self.sigma * rho + rho * ((rho ** 2) @ bsym.T))


def potential(sigma, a, modes):
    """Build the :class:`Potential` on ``modes`` or explain why none exists.

    Parameters
    ----------
    sigma : ndarray, shape (m,)
        Growth rates (1/s).
    a : ndarray, shape (m, m)
        Real cubic coefficients.
    modes : sequence of int
        Modes to build V on.

    Returns
    -------
    Potential

    Raises
    ------
    ReductionError
        When the cross-coupling of these modes cannot be symmetrised (the amplitude flow is then
        not a gradient flow and has no potential).
    """
    modes = tuple(int(k) for k in modes)
    sub = a[np.ix_(modes, modes)]
    d, reason = symmetrizer(sub)
    if d is None:
        raise ReductionError(f"no potential for modes {modes}: {reason}. The amplitude flow of "
                             "these modes is not a gradient flow; use the amplitude equations "
                             "(Reduction.amplitude_flow) or fewer modes.")
    return Potential(modes=modes, weights=d, sigma=sigma[list(modes)].copy(), a=sub.copy())
