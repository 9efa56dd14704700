"""Validity guards of the cubic adiabatic reduction (``shared/docs/adiabatic.md`` §8).

The non-resonant cubic normal form assumes that

* no low-order combination of the active modes' eigenvalues falls near another eigenvalue
  (resonances ``omega_k ~ omega_j``, ``2 omega_k ~ omega_j``, ``3 omega_k ~ omega_j`` and
  combination tones ``omega_k + omega_l ~ omega_j``, ``2 omega_k - omega_l ~ omega_j``), and
* the slow rates (growth rates, amplitude-relaxation rates and frequency shifts) are small
  against the oscillation frequencies and against the damping of the slaved directions.

The functions here return :class:`ValidityIssue` records naming what each violation affects;
:class:`~nmm_inference.adiabatic.Reduction` turns them into ``ReductionValidityWarning``.

Pure numerics: numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ValidityIssue", "ValiditySettings", "state_issues"]


@dataclass(frozen=True)
class ValiditySettings:
    """Thresholds of the validity guards.

    Attributes
    ----------
    resonance_rtol : float
        A combination ``c`` of active eigenvalues is near-resonant with eigenvalue ``lam_j`` when
        ``|c - lam_j| < max(resonance_rtol * |lam_j|, resonance_rate_factor * gamma)``.
    resonance_rate_factor : float
        See above; ``gamma`` is the largest slow rate of the state (1/s).
    separation_ratio : float
        Slow rates larger than ``separation_ratio * omega`` of an active mode break the time-scale
        separation (averaging); the cubic truncation error of the amplitude is of that order.
    amplitude_error_tol : float
        In a mixed state, warn when the expected relative amplitude error of a mode, the
        truncation error ``max sigma/omega`` amplified by the cross-coupling cancellation, exceeds
        this.
    slaving_factor : float
        Slaved (damped) directions must decay faster than ``slaving_factor`` times the slow rate.
    """

    resonance_rtol: float = 0.03
    resonance_rate_factor: float = 5.0
    separation_ratio: float = 0.1
    amplitude_error_tol: float = 0.05
    slaving_factor: float = 5.0


@dataclass(frozen=True)
class ValidityIssue:
    """One reason why some reported numbers may be unreliable.

    Attributes
    ----------
    kind : str
        ``"resonance"``, ``"time-scale separation"``, ``"slaving"`` or ``"subcritical"``.
    modes : tuple of int
        Modes involved.
    message : str
        What is near-violated, by how much, and which reported quantities it affects.
    """

    kind: str
    modes: tuple
    message: str


def state_issues(state, lam, real_eigs, a, b, settings):
    """Validity issues for one stationary state.

    Parameters
    ----------
    state : AmplitudeState
        The state (its active modes and amplitudes).
    lam : ndarray, shape (m,)
        Oscillatory eigenvalues (Im > 0), 1/s.
    real_eigs : ndarray
        Real eigenvalues of the Jacobian (1/s).
    a, b : ndarray, shape (m, m)
        Real and imaginary cubic coefficients.
    settings : ValiditySettings
        Thresholds.

    Returns
    -------
    list of ValidityIssue
    """
    issues = []
    S = list(state.active)
    if not S:
        return issues
    m = lam.size
    I = np.asarray(state.intensities)
    sig = lam.real
    om = lam.imag
    # slow rates of the state: growth rates, relaxation exponents, amplitude-induced rates and
    # frequency shifts of the active modes (transverse exponents of strongly damped inactive
    # modes are fast, not slow, and are left out)
    rates = [np.abs(sig[S]), np.abs(np.asarray(state.radial_exponents)),
             np.abs(b[np.ix_(S, S)] @ I), np.abs(a[np.ix_(S, S)] @ I)]
    gamma = float(max(np.max(x) for x in rates))
    gamma = max(gamma, 1e-12)
    tag = f"state with active modes {tuple(S)}"
    # time-scale separation against the oscillation itself: per active mode, its growth rate,
    # half its relaxation exponent (2 sigma for one mode) and its frequency shift
    rad_half = 0.5 * np.max(np.abs(np.asarray(state.radial_exponents)))
    shifts = b[np.ix_(S, S)] @ I
    for n, k in enumerate(S):
        slow = max(abs(sig[k]), rad_half if len(S) == 1 else abs(sig[k]), abs(shifts[n]))
        ratio = slow / om[k]
        if ratio > settings.separation_ratio:
            issues.append(ValidityIssue(
                "time-scale separation", (k,),
                f"{tag}: slow rate {slow:.3g} 1/s is {100 * ratio:.1f}% of omega_{k} = "
                f"{om[k]:.4g} rad/s; phase averaging and the cubic truncation are unreliable "
                f"(amplitude and frequency errors of order {100 * ratio:.0f}%)"))
    # conditioning of mixed states: I_k = (-sigma_k - sum_j a_kj I_j) / a_kk amplifies the
    # O(sigma/omega) errors of the other intensities when the numerator nearly cancels
    if len(S) > 1:
        base = max(abs(sig[k]) / om[k] for k in S)
        for n, k in enumerate(S):
            cross = sum(abs(a[k, j]) * I[jn] for jn, j in enumerate(S) if j != k)
            amp = cross / (abs(a[k, k]) * I[n])
            if amp * base > settings.amplitude_error_tol:
                issues.append(ValidityIssue(
                    "time-scale separation", tuple(S),
                    f"{tag}: the amplitude of mode {k} is set by a near cancellation "
                    f"(cross-coupling {amp:.2g} x its own saturation): expect its amplitude error "
                    f"to be ~{100 * amp * base:.0f}%"))
    # slaved real directions and damped oscillatory modes that are not active
    for r in real_eigs:
        if abs(r) < settings.slaving_factor * gamma:
            issues.append(ValidityIssue(
                "slaving", tuple(S),
                f"{tag}: a non-oscillatory direction decays at {r:.3g} 1/s, not fast against the "
                f"slow rate {gamma:.3g} 1/s; adiabatic elimination is unreliable (amplitudes, "
                "stability)"))
    # resonances: eigenvalue of a removed monomial near an eigenvalue lambda_j
    g_aff = "the cubic coefficients g (small divisor in the slaved terms), hence amplitudes and frequencies"
    combos = []  # (value, name, modes of the monomial, kind, affected quantities)
    for k in S:
        combos.append((lam[k], f"f_{k}", (k,), "1:1",
                       "all amplitude and phase predictions of these modes (phase averaging fails)"))
        combos.append((2 * lam[k], f"2 f_{k}", (k,), "2:1", g_aff))
        combos.append((3 * lam[k], f"3 f_{k}", (k,), "3:1",
                       "the stability (transverse exponents) of this state and its forced "
                       "third-harmonic response"))
        for l in S:
            if l == k:
                continue
            if l > k:
                combos.append((lam[k] + lam[l], f"f_{k} + f_{l}", (k, l), "combination-tone", g_aff))
            combos.append((lam[k] + np.conj(lam[l]), f"f_{k} - f_{l}", (k, l), "combination-tone",
                           g_aff))
            combos.append((2 * lam[k] + np.conj(lam[l]), f"2 f_{k} - f_{l}", (k, l),
                           "combination-tone", "the stability and phase dynamics of this state"))
    for c, name, ks, kind, affects in combos:
        for j in range(m):
            if j in ks:
                continue
            d = abs(c - lam[j])
            thr = max(settings.resonance_rtol * abs(lam[j]),
                      settings.resonance_rate_factor * gamma)
            if d < thr:
                issues.append(ValidityIssue(
                    "resonance", tuple(sorted(set(ks) | {j})),
                    f"{tag}: near {kind} resonance {name} ~ f_{j} ({c.imag / (2 * np.pi):.2f} Hz "
                    f"vs {lam[j].imag / (2 * np.pi):.2f} Hz; |detuning| = {d:.3g} 1/s < {thr:.3g} "
                    f"1/s); unreliable: {affects}"))
    # de-duplicate identical messages
    seen, out = set(), []
    for it in issues:
        if it.message not in seen:
            seen.add(it.message)
            out.append(it)
    return out
