"""From CMC parameters to the switching model: states, emissions, gains and rates.

For a CMC source and a set of frequency bands (one oscillatory mode per band), the adiabatic
reduction (:func:`nmm_inference.adiabatic.reduce_cmc`) gives, for each hidden state (a set of
active modes; a basin of the amplitude flow):

* the effective growth rate of every band's mode in that state,
  ``sigma_eff[s, m] = sigma_m + sum_{j active, j != m} a_mj I_j(s)`` with the state's
  intensities ``a_SS I(s) = -sigma_S`` (so an active mode's stationary envelope peaks at the
  state's amplitude and an inactive mode is a quasi-cycle damped at its transverse exponent);
* the saturation ``a_mm`` and diffusion ``D_m`` of each band's mode (``noise_diffusion``);
* the sensor gain ``2 |L . nu_m|`` (``shared/docs/adiabatic.md`` §7.2);
* for two winner-take-all single-mode states, the mean dwell times from the backward
  Kolmogorov equation of the reduced amplitude SDE (:mod:`~nmm_inference.switching.rates`).

:func:`switching_quantities` returns all of them and their derivatives with respect to the 27
inputs ``(G[10], T[4], R, U[4], noise_std[4], readout[4])``, which is what the PyTensor Op
(:class:`~nmm_inference.switching.pytensor_ops.SwitchingMechanismOp`) needs for its gradient.
:func:`assess_mechanism` decides, at a reference parameter value, whether the states exist,
whether the reduction is flagged unreliable for them, and therefore whether the switching rates
may come from the mechanism or must be free.

Pure numerics: numpy and scipy (uses the reduction's forward-mode tangents).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..adiabatic import reduce_cmc
from ..adiabatic._core import N_PARAMS, check_inputs
from ..errors import ParameterError, ReductionError
from .rates import PassageGrid, two_mode_passage_times

__all__ = ["MechanismSpec", "MechanismAssessment", "switching_quantities", "assess_mechanism",
           "N_INPUTS", "INPUT_NAMES", "mechanism_layout"]

#: Names of the inputs that every derivative axis refers to.
INPUT_NAMES = ("G1", "G2", "G3", "G4", "G5", "G6", "G7", "G8", "G9", "G10",
               "T_ss", "T_sp", "T_ii", "T_dp", "R", "U_ss", "U_sp", "U_ii", "U_dp",
               "noise_ss", "noise_sp", "noise_ii", "noise_dp",
               "L_ss", "L_sp", "L_ii", "L_dp")
N_INPUTS = len(INPUT_NAMES)


@dataclass(frozen=True)
class MechanismSpec:
    """Which bands and states the switching model uses.

    Attributes
    ----------
    bands : tuple of (float, float)
        Frequency bands (Hz); each selects the least damped oscillatory mode whose linear
        frequency lies in it.  One envelope per band.
    states : tuple of tuple of int
        Hidden states as sets of active bands, e.g. ``((0,), (1,))`` for two winner-take-all
        states, ``((), (0,))`` for rest and one oscillation.
    grid : PassageGrid or None
        Grid of the rate computation (default: chosen at the reference parameters).
    """

    bands: tuple
    states: tuple
    grid: PassageGrid | None = None

    def __post_init__(self):
        bands = tuple((float(lo), float(hi)) for lo, hi in self.bands)
        for lo, hi in bands:
            if not 0 < lo < hi:
                raise ParameterError(f"bands must be (fmin, fmax) with 0 < fmin < fmax, got "
                                     f"{(lo, hi)}")
        states = tuple(tuple(sorted(int(k) for k in s)) for s in self.states)
        if len(states) < 1 or len(set(states)) != len(states):
            raise ParameterError(f"states must be distinct sets of active bands, got {states}")
        for s in states:
            if any(k < 0 or k >= len(bands) for k in s):
                raise ParameterError(f"state {s} names a band outside 0..{len(bands) - 1}")
        object.__setattr__(self, "bands", bands)
        object.__setattr__(self, "states", states)

    @property
    def n_bands(self) -> int:
        return len(self.bands)

    @property
    def n_states(self) -> int:
        return len(self.states)

    @property
    def winner_take_all(self) -> bool:
        """True for two single-mode states of two bands (rates from the mechanism possible)."""
        return self.n_bands == 2 and sorted(self.states) == [(0,), (1,)]


def mechanism_layout(spec):
    """Names and shapes of the flat output of :func:`switching_quantities`.

    The flat vector of
    :class:`~nmm_inference.switching.pytensor_ops.SwitchingMechanismOp` concatenates the
    raveled (C order) values of :func:`switching_quantities` in this order.

    Parameters
    ----------
    spec : MechanismSpec
        Bands and states; gives ``S = spec.n_states`` and ``M = spec.n_bands``.

    Returns
    -------
    list of (str, tuple of int)
        ``(key, shape)`` pairs, in order: ``sigma_eff`` (S, M), ``a`` (M,), ``D`` (M,),
        ``gain`` (M,), ``intensity`` (S, M), ``log_dwell`` (S,), ``freq_hz`` (M,): a flat
        length of ``2*S*M + 4*M + S``.
    """
    S, M = spec.n_states, spec.n_bands
    return [("sigma_eff", (S, M)), ("a", (M,)), ("D", (M,)), ("gain", (M,)),
            ("intensity", (S, M)), ("log_dwell", (S,)), ("freq_hz", (M,))]


def _select_modes(red, bands):
    f = red.omega / (2 * np.pi)
    idx = []
    for lo, hi in bands:
        inside = np.flatnonzero((f >= lo) & (f <= hi))
        if inside.size == 0:
            raise ReductionError(f"no oscillatory mode in band {lo:g}-{hi:g} Hz (modes at "
                                 f"{np.round(f, 2).tolist()} Hz)")
        idx.append(int(inside[np.argmax(red.sigma[inside])]))   # least damped mode in band
    if len(set(idx)) != len(idx):
        raise ReductionError(f"two bands select the same mode ({idx}); make the bands disjoint")
    return idx


def _check_vec(name, v, n):
    arr = np.asarray(v, dtype=float)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise ParameterError(f"{name} must be a finite scalar or shape ({n},), got {np.shape(v)}")
    return arr


def switching_quantities(G, T, R, U, noise_std, readout, spec, *, rates=True, gradient=False):
    """Switching-model quantities of one CMC source (see module notes), optionally with their
    Jacobian with respect to the 27 inputs :data:`INPUT_NAMES`.

    Parameters
    ----------
    G, T, R, U
        CMC parameters as for :func:`~nmm_inference.adiabatic.reduce_cmc` (1/s, s, 1/mV,
        input units).
    noise_std : float or array-like, shape (4,)
        Input noise std per population (ss, sp, ii, dp).
    readout : array-like, shape (4,)
        Sensor weights of the population voltages (SPM's LFP: ``(0, 1, 0, 0)`` for sp).
    spec : MechanismSpec
        Bands and states.
    rates : bool, optional
        Compute the mean dwell times (only for winner-take-all specs; NaN otherwise).
    gradient : bool, optional
        Also return the Jacobian.

    Returns
    -------
    values : dict of ndarray
        ``sigma_eff`` (S, M) 1/s, ``a`` (M,) (``Re g_mm``, mode units), ``D`` (M,) 1/s,
        ``gain`` (M,) sensor units per unit r, ``intensity`` (S, M) state intensities ``r^2``,
        ``log_dwell`` (S,) log mean dwell times (log s; NaN when not computed),
        ``freq_hz`` (M,) linear mode frequencies.
    jacobian : dict of ndarray
        Only with ``gradient=True``: same keys, each with a trailing axis of length 27.

    Raises
    ------
    ReductionError
        If a band holds no mode or a declared state does not exist (non-positive intensity).
    """
    G, T, R, U = check_inputs(G, T, R, U)
    s = _check_vec("noise_std", noise_std, 4)
    if np.any(s < 0):
        raise ParameterError(f"noise_std must be non-negative, got {s.tolist()}")
    L = _check_vec("readout", readout, 4)
    red = reduce_cmc(G, T, R, U, gradients=gradient)
    idx = _select_modes(red, spec.bands)
    M, S = spec.n_bands, spec.n_states
    sig = red.sigma[idx]
    a_full = red.a[np.ix_(idx, idx)]
    mu = red._core["mu"][idx]
    nu = red._core["nu"][idx]
    kap = 1.0 / T
    absmu2 = np.abs(mu) ** 2
    D = 0.5 * absmu2 @ (kap ** 2 * s ** 2)
    w = nu @ L
    gain = 2.0 * np.abs(w)
    vals = {"sigma_eff": np.zeros((S, M)), "a": np.diag(a_full).copy(), "D": D, "gain": gain,
            "intensity": np.zeros((S, M)), "log_dwell": np.full(S, np.nan),
            "freq_hz": red.omega[idx] / (2 * np.pi)}
    P = N_INPUTS
    if gradient:
        t = red._tangents()
        d_sig = np.zeros((M, P))
        d_sig[:, :N_PARAMS] = t["d_sigma"][:, idx].T
        d_a = np.zeros((M, M, P))
        d_a[:, :, :N_PARAMS] = np.moveaxis(t["d_a"][:, idx][:, :, idx], 0, -1)
        d_mu = np.moveaxis(t["d_mu"][:, idx], 0, -1)          # (M, 4, 19)
        d_nu = np.moveaxis(t["d_nu"][:, idx], 0, -1)
        jac = {k: np.zeros(np.shape(v) + (P,)) for k, v in vals.items()}
        jac["a"] = np.array([d_a[m, m] for m in range(M)])
        # D = 1/2 sum_i |mu_i|^2 kappa_i^2 s_i^2
        wts = kap ** 2 * s ** 2
        jac["D"][:, :N_PARAMS] = np.einsum("mip,i->mp", np.real(np.conj(mu)[:, :, None] * d_mu),
                                           wts)
        jac["D"][:, 10:14] += 0.5 * absmu2 * (2.0 * kap ** 2 * s ** 2 * (-kap))[None, :]
        jac["D"][:, 19:23] = absmu2 * (kap ** 2 * s)[None, :]
        # gain = 2 |L . nu|
        dw = np.einsum("i,mip->mp", L, d_nu)
        with np.errstate(divide="ignore", invalid="ignore"):
            jac["gain"][:, :N_PARAMS] = 2.0 * np.real(np.conj(w)[:, None] * dw) / np.abs(w)[:, None]
            jac["gain"][:, 23:27] = 2.0 * np.real(np.conj(w)[:, None] * nu) / np.abs(w)[:, None]
        jac["freq_hz"][:, :N_PARAMS] = t["d_omega"][:, idx].T / (2 * np.pi)
    for si, act in enumerate(spec.states):
        act = list(act)
        I = np.zeros(M)
        dI = np.zeros((M, P))
        if act:
            aSS = a_full[np.ix_(act, act)]
            try:
                Ia = np.linalg.solve(aSS, -sig[act])
            except np.linalg.LinAlgError:
                raise ReductionError(f"state {tuple(act)}: singular cubic coefficients") from None
            if not np.all(Ia > 0):
                raise ReductionError(f"state {tuple(act)} does not exist at these parameters "
                                     f"(intensities {Ia.tolist()})")
            I[act] = Ia
            if gradient:
                rhs = d_sig[act] + np.einsum("kjp,j->kp", d_a[np.ix_(act, act)], Ia)
                dI[act] = -np.linalg.solve(aSS, rhs)
        vals["intensity"][si] = I
        for m in range(M):
            others = [j for j in act if j != m]
            vals["sigma_eff"][si, m] = sig[m] + sum(a_full[m, j] * I[j] for j in others)
            if gradient:
                g = d_sig[m].copy()
                for j in others:
                    g += d_a[m, j] * I[j] + a_full[m, j] * dI[j]
                jac["sigma_eff"][si, m] = g
        if gradient:
            jac["intensity"][si] = dI
    if rates and spec.winner_take_all:
        grid = spec.grid
        if gradient:
            times, dtimes = two_mode_passage_times(sig, a_full, D, grid=grid, gradient=True)
        else:
            times = two_mode_passage_times(sig, a_full, D, grid=grid)
        order = [spec.states.index((0,)), spec.states.index((1,))]
        vals["log_dwell"][order] = np.log(times)
        if gradient:
            # chain (sigma_0, sigma_1, a00, a01, a10, a11, D0, D1) -> inputs
            dq = np.vstack([d_sig[0], d_sig[1], d_a[0, 0], d_a[0, 1], d_a[1, 0], d_a[1, 1],
                            jac["D"][0], jac["D"][1]])
            jac["log_dwell"][order] = (dtimes / times[:, None]) @ dq
    if gradient:
        return vals, jac
    return vals


@dataclass
class MechanismAssessment:
    """What the reduction says about the declared states at a reference parameter value.

    Attributes
    ----------
    rate_source : str
        ``"mechanism"`` (dwell times from the amplitude SDE) or ``"free"``.
    reasons : list of str
        Why the rates are free, or the caveats of the mechanistic ones.
    validity_issues : list
        :class:`~nmm_inference.adiabatic.ValidityIssue` records for the states.
    values : dict
        :func:`switching_quantities` at the reference.
    mode_index : list of int
        Mode selected by each band.
    spec : MechanismSpec or None
        The spec with its rate grid fixed at the reference (use this one in models, so that the
        rate computation is a smooth function of the parameters).
    """

    rate_source: str
    reasons: list = field(default_factory=list)
    validity_issues: list = field(default_factory=list)
    values: dict = field(default_factory=dict)
    mode_index: list = field(default_factory=list)
    spec: MechanismSpec | None = None

    def summary(self) -> str:
        lines = [f"switching rates: {self.rate_source}"]
        lines += [f"  - {r}" for r in self.reasons]
        return "\n".join(lines)


def assess_mechanism(G, T, R, U, noise_std, readout, spec, *, rates="auto"):
    """Check the declared states at reference parameters and choose the rate source.

    Rates come from the mechanism when ``rates="mechanism"``, or with ``rates="auto"`` when the
    spec is winner-take-all, both states exist and are stable in the reduction, and the
    reduction reports no validity issue for them; otherwise they are free (with a prior).

    Parameters
    ----------
    G, T, R, U, noise_std, readout, spec
        See :func:`switching_quantities`.
    rates : {"auto", "mechanism", "free"}, optional
        Requested rate source.

    Returns
    -------
    MechanismAssessment

    Raises
    ------
    ReductionError
        If a declared state does not exist or is unstable at the reference, or ``rates=
        "mechanism"`` is impossible for this spec.
    """
    if rates not in ("auto", "mechanism", "free"):
        raise ParameterError(f"rates must be 'auto', 'mechanism' or 'free', got {rates!r}")
    Gc, Tc, Rc, Uc = check_inputs(G, T, R, U)
    red = reduce_cmc(Gc, Tc, Rc, Uc)
    idx = _select_modes(red, spec.bands)
    stable = red.stable_states(warn=False)
    by_active = {tuple(sorted(s.active)): s for s in stable}
    chosen = []
    for act in spec.states:
        modes = tuple(sorted(idx[k] for k in act))
        if modes not in by_active:
            raise ReductionError(
                f"declared state with active bands {act} (modes {modes}) is not a stable state "
                f"of the reduction at the reference parameters; stable states: "
                f"{[tuple(s.active) for s in stable]}")
        chosen.append(by_active[modes])
    issues = red.validity_issues(chosen)
    vals = switching_quantities(Gc, Tc, Rc, Uc, noise_std, readout, spec, rates=False)
    if spec.grid is None and spec.winner_take_all:
        idx2 = list(idx)
        a_sub = red.a[np.ix_(idx2, idx2)]
        grid = PassageGrid.for_parameters(red.sigma[idx2], a_sub, vals["D"])
        spec = MechanismSpec(spec.bands, spec.states, grid)
    reasons = []
    source = "free"
    if rates == "free":
        reasons.append("free rates requested")
    elif not spec.winner_take_all:
        msg = ("dwell times are derived only for two winner-take-all single-mode states; "
               f"states {spec.states} get free rates")
        if rates == "mechanism":
            raise ReductionError(msg)
        reasons.append(msg)
    elif issues and rates == "auto":
        reasons.append("the reduction is flagged unreliable for these states: "
                       + "; ".join(i.message for i in issues))
    else:
        source = "mechanism"
        reasons.append("mean dwell times of the reduced amplitude SDE (backward Kolmogorov "
                       "equation); rates depend exponentially on the barrier, so O(sigma/omega) "
                       "errors of the cubic reduction can change them by tens of %: they enter "
                       "with a multiplicative discrepancy term")
        if issues:
            reasons.append("forced by rates='mechanism' despite validity issues")
    if source == "mechanism":
        vals = switching_quantities(Gc, Tc, Rc, Uc, noise_std, readout, spec, rates=True)
    return MechanismAssessment(source, reasons, issues, vals, idx, spec)
