"""The adiabatic amplitude reduction of one CMC source: :func:`reduce_cmc` and its result.

See ``shared/docs/adiabatic.md`` for the mathematics.  Everything here is numpy only.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import ParameterError, ReductionError, ReductionValidityWarning
from ._core import N_PARAMS, check_inputs, core_reduction
from ._fast import candidates_fast, not_copositive_fast, states_fast
from .amplitude import AmplitudeState, _state_jacobian, potential, symmetrizer
from .validity import ValidityIssue, ValiditySettings, state_issues

__all__ = ["Mode", "Reduction", "reduce_cmc", "POPULATIONS"]

#: Populations of a source, in the order of every population axis.
POPULATIONS = ("ss", "sp", "ii", "dp")


def _to_spm_order(v_part, c_part):
    """Interleave voltage and current blocks into SPM's (v_ss, c_ss, v_sp, ...) order."""
    out = np.empty(8, dtype=np.result_type(v_part, c_part))
    out[0::2] = v_part
    out[1::2] = c_part
    return out


@dataclass(frozen=True)
class Mode:
    """One oscillatory mode (complex pair) of the CMC at its operating point.

    Attributes
    ----------
    index : int
        Position in ``Reduction.modes`` (modes are sorted by decreasing growth rate).
    eigenvalue : complex
        ``lambda = sigma + i omega`` with ``omega > 0`` (1/s).
    nu : ndarray, shape (4,), complex
        Voltage profile over (ss, sp, ii, dp); the largest-modulus entry is 1.
    mu : ndarray, shape (4,), complex
        Left voltage vector, normalised so that ``p^H q = 1``.
    kappa : ndarray, shape (4,)
        Rate constants 1/T (1/s), needed to build the 8-dimensional vectors.
    """

    index: int
    eigenvalue: complex
    nu: np.ndarray
    mu: np.ndarray
    kappa: np.ndarray = field(repr=False)

    @property
    def growth_rate(self) -> float:
        """``sigma = Re lambda`` (1/s)."""
        return float(self.eigenvalue.real)

    @property
    def angular_frequency(self) -> float:
        """``omega = Im lambda`` (rad/s)."""
        return float(self.eigenvalue.imag)

    @property
    def frequency_hz(self) -> float:
        """Linear frequency ``omega / 2 pi`` (Hz)."""
        return float(self.eigenvalue.imag / (2 * np.pi))

    @property
    def right_vector(self) -> np.ndarray:
        """Right eigenvector ``q = (nu, lambda nu)`` in SPM state order (8,)."""
        return _to_spm_order(self.nu, self.eigenvalue * self.nu)

    @property
    def left_vector(self) -> np.ndarray:
        """Left eigenvector p in SPM state order (8,): ``z = p^H (x - x*)``, ``p^H q = 1``."""
        lamb = np.conj(self.eigenvalue)
        return _to_spm_order((lamb + 2.0 * self.kappa) * self.mu, self.mu)

    def amplitude(self, x, x_star):
        """Complex amplitude ``z = p^H (x - x*)`` of states ``x`` (..., 8) in SPM order."""
        return (np.asarray(x) - x_star) @ np.conj(self.left_vector)

    def __repr__(self):
        return (f"Mode({self.index}: lambda = {self.eigenvalue.real:.4g} + "
                f"{self.eigenvalue.imag:.4g}i 1/s, f = {self.frequency_hz:.3f} Hz)")


class Reduction:
    """Result of :func:`reduce_cmc`: modes, cubic coefficients and everything built on them.

    Normally built by :func:`reduce_cmc`, not directly.

    Parameters
    ----------
    G : ndarray, shape (10,)
        Intrinsic gains in 1/s, SPM order, already validated.
    T : ndarray, shape (4,)
        Time constants of ss, sp, ii, dp in seconds, already validated.
    R : float
        Sigmoid slope (1/mV).
    U : ndarray, shape (4,)
        Constant input to ss, sp, ii, dp, SPM units.
    core : dict
        Output of the internal ``core_reduction`` for these parameters: operating point
        ``v``, eigenvalues ``lam``, voltage profiles ``nu``, left vectors ``mu``, cubic
        coefficients ``g``, ``real_eigenvalues`` and the rate constants ``K``; with the
        forward-mode tangents (``d_lam``, ``d_g``, ...) when gradients were requested.
        Kept by reference, not copied.
    settings : ValiditySettings
        Thresholds of the validity guards.

    Attributes
    ----------
    G, T, R, U
        The physical parameters (1/s, s, 1/mV, SPM input units).
    operating_point : ndarray, shape (4,)
        Operating-point voltages v* of ss, sp, ii, dp (mV); the currents vanish there.
    modes : tuple of Mode
        All oscillatory modes, sorted by decreasing growth rate.
    real_eigenvalues : ndarray
        Non-oscillatory eigenvalues of the Jacobian (1/s), decreasing.
    g : ndarray, shape (m, m), complex
        Cubic normal-form coefficients: ``dz_k/dt = lambda_k z_k + sum_j g_kj |z_j|^2 z_k``.
    settings : ValiditySettings
        Thresholds of the validity guards.
    """

    def __init__(self, G, T, R, U, core, settings):
        self.G, self.T, self.R, self.U = G, T, R, U
        self._core = core
        self.operating_point = core["v"]
        kap = core["K"]
        self.modes = tuple(Mode(k, complex(core["lam"][k]), core["nu"][k], core["mu"][k], kap)
                           for k in range(core["lam"].size))
        self.real_eigenvalues = core["real_eigenvalues"]
        self.g = core["g"]
        self.settings = settings
        self._cache = {}
        self._tan = None
        if "d_lam" in core:
            self._tan = self._tangent_dict(core)

    # ---------------------------------------------------------------- basic quantities
    @property
    def n_modes(self) -> int:
        """Number of oscillatory modes."""
        return len(self.modes)

    @property
    def eigenvalues(self) -> np.ndarray:
        """Eigenvalues ``lambda_k`` (Im > 0) of the modes (1/s)."""
        return self._core["lam"].copy()

    @property
    def sigma(self) -> np.ndarray:
        """Growth rates ``sigma_k`` (1/s)."""
        return self._core["lam"].real.copy()

    @property
    def omega(self) -> np.ndarray:
        """Angular frequencies ``omega_k`` (rad/s)."""
        return self._core["lam"].imag.copy()

    @property
    def a(self) -> np.ndarray:
        """``Re g``: amplitude (saturation and competition) coefficients."""
        return self.g.real.copy()

    @property
    def b(self) -> np.ndarray:
        """``Im g``: amplitude-dependent frequency shifts (rad/s per unit r^2)."""
        return self.g.imag.copy()

    @property
    def nu(self) -> np.ndarray:
        """Voltage profiles of all modes, shape (m, 4)."""
        return self._core["nu"].copy()

    @property
    def operating_state(self) -> np.ndarray:
        """Full operating point x* (8,) in SPM state order."""
        return _to_spm_order(self.operating_point, np.zeros(4))

    def amplitude_flow(self, r, *, modes=None):
        """Right-hand side of the amplitude-phase equations.

        Parameters
        ----------
        r : array-like, shape (..., n)
            Mode amplitudes (the other modes at zero amplitude).
        modes : sequence of int, optional
            The n modes r refers to (default: all m modes).

        Returns
        -------
        drdt : ndarray, shape (..., m)
            ``r_k (sigma_k + sum_j a_kj r_j^2)`` (1/s).
        dthetadt : ndarray, shape (..., m)
            ``omega_k + sum_j b_kj r_j^2`` (rad/s).
        """
        r = np.asarray(r, dtype=float)
        idx = list(range(self.n_modes)) if modes is None else [int(k) for k in modes]
        if r.shape[-1] != len(idx):
            raise ParameterError(f"r has {r.shape[-1]} amplitudes for {len(idx)} modes")
        a = self.a[np.ix_(idx, idx)]
        b = self.b[np.ix_(idx, idx)]
        I = r ** 2
        return r * (self.sigma[idx] + I @ a.T), self.omega[idx] + I @ b.T

    # ---------------------------------------------------------------- sensitivities
    def _tangent_dict(self, core):
        lam = core["d_lam"]
        g = core["d_g"]
        return {"d_sigma": lam.real, "d_omega": lam.imag, "d_a": g.real, "d_b": g.imag,
                "d_nu": core["d_nu"], "d_lam": lam, "d_g": g, "d_v": core["d_v"],
                "d_mu": core["d_mu"], "d_eta3": core["d_eta3"]}

    def _tangents(self):
        if self._tan is None:
            core = core_reduction(self.G, self.T, self.R, self.U, tangents=True,
                                  v_star=self.operating_point)
            self._tan = self._tangent_dict(core)
        return self._tan

    def jacobian(self):
        """Derivatives of the reduction's quantities with respect to the 19 parameters.

        Returns
        -------
        dict of ndarray
            Keys ``"eigenvalues"`` (m, 19) complex, ``"sigma"``, ``"omega"`` (m, 19),
            ``"g"`` (m, m, 19) complex, ``"a"``, ``"b"`` (m, m, 19), ``"nu"`` (m, 4, 19)
            complex and ``"operating_point"`` (4, 19).  The last axis follows
            :data:`PARAM_NAMES` = (G1..G10 [1/s], T_ss..T_dp [s], R, U_ss..U_dp).
        """
        t = self._tangents()
        mv = lambda x: np.moveaxis(x, 0, -1).copy()  # noqa: E731
        return {"eigenvalues": mv(t["d_lam"]), "sigma": mv(t["d_sigma"]),
                "omega": mv(t["d_omega"]), "g": mv(t["d_g"]), "a": mv(t["d_a"]),
                "b": mv(t["d_b"]), "nu": mv(t["d_nu"]), "operating_point": mv(t["d_v"])}

    def eigenvalue_sensitivities(self):
        """``d lambda_k`` with respect to every connection, time constant, slope and input.

        Returns
        -------
        dict of ndarray (complex)
            ``"G"`` (m, 10): per gain G1..G10 (per 1/s); ``"T"`` (m, 4): per time constant
            (per s); ``"R"`` (m,): per unit slope; ``"U"`` (m, 4): per unit input;
            ``"log_G"``, ``"log_T"``, ``"log_R"``: the same per unit log-scaling
            (``G dlambda/dG``, as for SPM's log-scale parameters).
        """
        d = self.jacobian()["eigenvalues"]
        return {"G": d[:, :10], "T": d[:, 10:14], "R": d[:, 14], "U": d[:, 15:],
                "log_G": d[:, :10] * self.G, "log_T": d[:, 10:14] * self.T,
                "log_R": d[:, 14] * self.R}

    # ---------------------------------------------------------------- states
    def _candidates(self):
        """Modes that can be active: growing modes, closed under transverse destabilisation.

        A damped mode joins when some stationary state of the current candidates (stable or
        not) makes it grow (positive transverse exponent).
        """
        if "candidates" not in self._cache:
            mask = candidates_fast(self.sigma, self.a) if self.n_modes else 0
            self._cache["candidates"] = [k for k in range(self.n_modes) if (mask >> k) & 1]
        return self._cache["candidates"]

    def stationary_states(self, *, gradients=False):
        """Every stationary state of the cubic amplitude flow (stable or not).

        Parameters
        ----------
        gradients : bool, optional
            Attach derivatives (``AmplitudeState.jacobian``) with respect to the parameters.

        Returns
        -------
        list of AmplitudeState
            Rest state first; saddles (unstable mixed states) included.
        """
        key = ("states", bool(gradients))
        if key in self._cache:
            return list(self._cache[key])
        tan = self._tangents() if gradients else None
        states = self._build_states(tan)
        if self.real_eigenvalues.size and np.max(self.real_eigenvalues) > 0:
            # a positive real eigenvalue destabilises every state around this operating point
            states = [replace(s, stable=False) for s in states]
        self._cache[key] = tuple(states)
        return states

    def _build_states(self, tan):
        """Stationary states from the compiled enumeration (same results as
        :func:`~nmm_inference.adiabatic.amplitude.stationary_states`)."""
        sig, om, a, b = self.sigma, self.omega, self.a, self.b
        m = sig.size
        nu, eta3 = self._core["nu"], self._core["eta3"]
        P = N_PARAMS
        rest_jac = None if tan is None else {"amplitudes": np.zeros((0, P)),
                                             "frequencies_hz": np.zeros((0, P)),
                                             "envelopes": np.zeros((0, 4, P))}
        states = [AmplitudeState(active=(), intensities=np.zeros(0), amplitudes=np.zeros(0),
                                 frequencies_hz=np.zeros(0), envelopes=np.zeros((0, 4)),
                                 radial_exponents=sig.astype(complex), transverse_exponents={},
                                 stable=bool(np.all(sig < 0)), jacobian=rest_jac,
                                 envelopes_leading=np.zeros((0, 4)))]
        if m == 0:
            return states
        cmask = sum(1 << k for k in self._candidates())
        masks, Is, rad, trans, stable = states_fast(sig, a, cmask)
        order = np.argsort([bin(x).count("1") for x in masks], kind="stable")
        # potential on the modes of all existing states (when symmetrisable)
        pmodes = sorted({k for x in masks for k in range(m) if (x >> k) & 1})
        dvec = None
        if pmodes:
            dsub, _ = symmetrizer(a[pmodes][:, pmodes])
            if dsub is not None:
                dvec = np.zeros(m)
                dvec[pmodes] = dsub
                states[0] = replace(states[0], potential=0.0)
        for i in order:
            S = [k for k in range(m) if (masks[i] >> k) & 1]
            n = len(S)
            I = Is[i, S]
            r = np.sqrt(I)
            aSS = a[S][:, S]
            freq = (om[S] + b[S][:, S] @ I) / (2 * np.pi)
            prof = nu[S] + np.tensordot(eta3[S][:, S], I, axes=([1], [0]))
            env = 2.0 * r[:, None] * np.abs(prof)
            V = None
            if dvec is not None:
                dS = dvec[S]
                V = float(-0.5 * np.sum(dS * sig[S] * I) - 0.25 * (dS * I) @ aSS @ I)
            jac = None
            if tan is not None:
                jac = _state_jacobian(S, I, r, b, aSS, prof, nu, eta3, tan)
            states.append(AmplitudeState(
                active=tuple(S), intensities=I, amplitudes=r, frequencies_hz=freq,
                envelopes=env, radial_exponents=rad[i, :n].copy(),
                transverse_exponents={j: float(trans[i, j]) for j in range(m) if j not in S},
                stable=bool(stable[i]), potential=V, jacobian=jac,
                envelopes_leading=2.0 * r[:, None] * np.abs(nu[S])))
        return states

    def check(self):
        """Refuse when the cubic amplitude flow has no saturation for a relevant mode.

        Raises
        ------
        ReductionError
            For a growing mode (sigma > 0) with a subcritical Hopf (Re g_kk >= 0), for an
            amplitude flow that is unbounded along some combination of relevant modes, or for
            an operating point destabilised by a real (non-oscillatory) eigenvalue.
        """
        if "checked" in self._cache:
            return
        if self.real_eigenvalues.size and np.max(self.real_eigenvalues) > 0:
            raise ReductionError(
                f"the operating point v* = {np.round(self.operating_point, 4).tolist()} mV is "
                f"unstable in a non-oscillatory direction (real eigenvalue "
                f"{np.max(self.real_eigenvalues):.4g} 1/s): the system leaves it for another "
                "fixed point and the amplitude reduction around it does not describe the attractors")
        sig, a = self.sigma, self.a
        for k in range(sig.size):
            if sig[k] > 0 and a[k, k] >= 0:
                raise ReductionError(
                    f"mode {k} ({self.modes[k].frequency_hz:.2f} Hz) grows (sigma = {sig[k]:.4g} "
                    f"1/s) but its Hopf bifurcation is subcritical (Re g_kk = {a[k, k]:.4g} > 0): "
                    "the cubic amplitude equation has no saturation, so the oscillation amplitude "
                    "is set by higher-order terms that this reduction does not compute")
        cand = self._candidates()
        cmask = sum(1 << k for k in cand)
        bad = not_copositive_fast(-(a + a.T) / 2, cmask, 1e-12) if cand else 0
        if bad:
            modes = tuple(k for k in range(sig.size) if (bad >> k) & 1)
            raise ReductionError(
                f"the cubic amplitude flow of modes {modes} is unbounded (their mutual "
                "excitation outweighs saturation, x^T a x >= 0 for some x >= 0): amplitudes grow "
                "until higher-order terms, which this reduction does not compute, stop them")
        self._cache["checked"] = True

    def stable_states(self, *, gradients=False, warn=True):
        """The stable states of the amplitude flow (rest, single-mode and mixed).

        Parameters
        ----------
        gradients : bool, optional
            Attach derivatives with respect to the parameters to each state.
        warn : bool, optional
            Emit :class:`~nmm_inference.errors.ReductionValidityWarning` for states whose numbers
            are unreliable (resonances, weak time-scale separation, nearby subcritical modes).

        Returns
        -------
        list of AmplitudeState
            Each with ``frequencies_hz`` (n_active,) and ``envelopes`` (n_active, 4).

        Raises
        ------
        ReductionError
            See :meth:`check`; also when no stable stationary state exists (the cubic amplitude
            flow then has a non-stationary attractor, e.g. a heteroclinic cycle).
        """
        self.check()
        states = [s for s in self.stationary_states(gradients=gradients) if s.stable]
        if not states:
            raise ReductionError(
                "the cubic amplitude flow has no stable stationary state (rest state unstable and "
                "every single-mode and mixed state unstable): its attractor is not stationary "
                "(cycling between modes), which this reduction does not resolve")
        if warn:
            for issue in self.validity_issues(states):
                warnings.warn(issue.message, ReductionValidityWarning, stacklevel=2)
        return states

    def validity_issues(self, states=None):
        """Validity issues affecting ``states`` (default: the stable states).

        Parameters
        ----------
        states : list of AmplitudeState, optional
            States to check.

        Returns
        -------
        list of ValidityIssue
        """
        if states is None:
            states = self.stable_states(warn=False)
        issues = []
        lam = self._core["lam"]
        for s in states:
            if s.is_rest:
                issues.extend(self._subcritical_issues())
            else:
                issues.extend(state_issues(s, lam, self.real_eigenvalues, self.a, self.b,
                                           self.settings))
        return issues

    def _subcritical_issues(self):
        out = []
        sig, a = self.sigma, self.a
        for k in range(sig.size):
            if sig[k] < 0 and a[k, k] > 0:
                r_u = np.sqrt(-sig[k] / a[k, k])
                env = 2 * r_u * np.max(np.abs(self._core["nu"][k]))
                if env < 2.0:
                    out.append(ValidityIssue(
                        "subcritical", (k,),
                        f"rest state: mode {k} ({self.modes[k].frequency_hz:.2f} Hz) is subcritical "
                        f"(Re g_kk = {a[k, k]:.3g} > 0); the rest state is stable only inside an "
                        f"unstable cycle of amplitude r = {r_u:.3g} (envelope {env:.3g} mV), and a "
                        "large-amplitude oscillation beyond the cubic reduction probably coexists "
                        "(not listed)"))
        return out

    def potential(self, modes=None):
        """The potential V of the amplitude flow on ``modes`` (default: modes active in a
        stable state, else the least damped mode).

        Parameters
        ----------
        modes : sequence of int, optional
            Modes to include.

        Returns
        -------
        Potential

        Raises
        ------
        ReductionError
            If the cross-coupling of these modes cannot be symmetrised: the message states the
            obstruction (opposite-sign couplings or a failed cycle condition).
        """
        if modes is None:
            try:
                st = self.stable_states(warn=False)
                modes = sorted({k for s in st for k in s.active})
            except ReductionError:
                modes = []
            if not modes:
                modes = [0]
        return potential(self.sigma, self.a, modes)

    def __repr__(self):
        lines = [f"Reduction(v* = {np.round(self.operating_point, 4).tolist()} mV)"]
        lines += [f"  {m!r}" for m in self.modes]
        return "\n".join(lines)


def reduce_cmc(G, T, R=2.0 / 3.0, U=(0.0, 0.0, 0.0, 0.0), *, gradients=False, settings=None):
    """Adiabatic amplitude reduction of a single CMC source.

    Computes the operating point for the constant input ``U``, all oscillatory modes (the 4 x 4
    nonlinear eigenproblem ``((lambda I + K)^2 - K W diag S'(v*)) nu = 0``), their left and right
    eigenvectors and the cubic normal-form coefficients ``g_kj`` including the second-order
    contributions of the slaved quadratic terms (``shared/docs/adiabatic.md`` §3).

    Parameters
    ----------
    G : array-like, shape (10,)
        Intrinsic gains G1..G10 in 1/s, SPM order (positive; signs are fixed by the model).
    T : array-like, shape (4,)
        Time constants of ss, sp, ii, dp in seconds.
    R : float, optional
        Sigmoid slope (SPM's ``2/3 exp(P.S)``).
    U : array-like, shape (4,), optional
        Constant input to ss, sp, ii, dp, SPM units.
    gradients : bool, optional
        Compute the forward-mode sensitivities of every quantity at once (otherwise they are
        computed on first use by :meth:`Reduction.jacobian`).
    settings : ValiditySettings, optional
        Thresholds of the validity guards.

    Returns
    -------
    Reduction

    Raises
    ------
    ParameterError
        For ill-shaped or non-finite parameters.
    ReductionError
        If the operating point cannot be found.

    Examples
    --------
    >>> import numpy as np
    >>> from nmm_inference.adiabatic import reduce_cmc
    >>> G = np.array([4, 4, 8, 4, 4, 2, 4, 4, 2, 1]) * 200.0
    >>> red = reduce_cmc(G, [0.002, 0.002, 0.016, 0.028])
    >>> round(red.modes[0].frequency_hz, 2)
    7.26
    >>> [s.is_rest for s in red.stable_states()]
    [True]
    """
    G, T, R, U = check_inputs(G, T, R, U)
    core = core_reduction(G, T, R, U, tangents=gradients)
    return Reduction(G, T, R, U, core, settings or ValiditySettings())
