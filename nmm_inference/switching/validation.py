"""Acceptance check of the switching model on simulated data from the full nonlinear CMC.

:func:`simulation_check` runs the whole chain once and returns the acceptance figures; the
benchmark ``bench/switching_simulation.py`` runs it at full size (600 s) and the test suite at
reduced size.

1. Simulate the full 8-state CMC (:func:`nmm_inference.cmc.simulate.simulate_cmc_states`:
   stochastic Heun, no reduction) of the bistable example source
   (:func:`~nmm_inference.switching.examples.bistable_example`: a ~60 Hz and a ~26 Hz
   winner-take-all state) with white noise on every population input.
2. Truth (:func:`true_basins`): the mode amplitudes ``r_k = |p_k^H (x - x*)|`` of the full
   trajectory (left eigenvectors of the linearisation, smoothed over 40 ms), scaled intensities
   ``J_k = r_k^2 / I_k*`` (``I_k*`` the intensity of mode k in its own stable state), the basin
   label with hysteresis (committed to state k once ``J_k - J_j > core``) and, for every
   switch, the time of the last crossing of ``J_0 = J_1`` before the commitment.
3. Data: the LFP (sp voltage, SPM's LFP observer), band envelopes of the two bands
   (:func:`nmm_inference.features.compute_band_envelopes`), first and last 1 s left out.  The
   stationary emission describes instantaneous envelope values, so the fitted samples are
   every k-th sample of the decoding envelope (``fit_sfreq``; subsampled, not low-passed, which
   would narrow the envelope's distribution); states are decoded at ``decode_sfreq``.
4. Model (:func:`~nmm_inference.switching.model.add_switching_likelihood`): the CMC parameters
   at their true values except the log-scaling of G1 (ss self-inhibition, which tilts the double
   well: see the example's notes) and the log input-noise std; sensor gains per band within
   ~10 % of the mechanistic ``2 |nu_sp|`` (a calibrated LFP) and small background floors; the
   switching rates come from the mechanism (mean dwell times of the reduced amplitude SDE) times
   a log-normal discrepancy; the emissions' growth rates carry a log-normal discrepancy.
5. Figures: state classification accuracy of the posterior-mode path against the true basin,
   switch-time errors of matched switches, and the 94 % HDI of log G1 against the truth (0).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..errors import ParameterError, ReductionValidityWarning
from .bursts import hdi_interval, match_switches
from .examples import bistable_example

__all__ = ["BasinTruth", "true_basins", "SimulationCheck", "simulation_check",
           "build_simulation_model", "G1_PRIOR", "SIM_BANDS"]

#: Bands around the two modes of the bistable example: wide, so that the envelope's smoothing
#: (about 1 / bandwidth) stays short against the sampling interval of the fit.
SIM_BANDS = ((46.0, 76.0), (8.0, 44.0))
#: Prior of log G1 (mean, sd): centred away from the truth (0), inside the bistable window
#: (G1 x [0.94, 1.10]).
G1_PRIOR = (0.03, 0.05)


@dataclass
class BasinTruth:
    """Basin labels of a full-model trajectory.

    Attributes
    ----------
    labels : ndarray of int, shape (n_times,)
        Basin (index into the two modes) at every sample, switching at the switch times.
    switch_times : ndarray
        Times of the switches (s, from the first sample).
    from_state, to_state : ndarray of int
        Basins left and entered.
    intensities : ndarray, shape (n_times, 2)
        Scaled mode intensities ``J_k``.
    """

    labels: np.ndarray
    switch_times: np.ndarray
    from_state: np.ndarray
    to_state: np.ndarray
    intensities: np.ndarray


def true_basins(states, reduction, sfreq, *, smooth=0.04, core=0.5):
    """Basin labels of a trajectory of the full CMC from its mode amplitudes.

    Parameters
    ----------
    states : ndarray, shape (n_times, 8)
        Full state trajectory of one source (SPM's state order).
    reduction : Reduction
        :func:`nmm_inference.adiabatic.reduce_cmc` of the same source, with two single-mode
        stable states on its first two modes.
    sfreq : float
        Sampling rate of ``states`` (Hz).
    smooth : float, optional
        Length of the moving average of the mode amplitudes (s).
    core : float, optional
        Commitment threshold of the scaled intensity difference (hysteresis).

    Returns
    -------
    BasinTruth
        A switch is placed at the last crossing of ``J_0 = J_1`` before the trajectory commits
        to the other basin.
    """
    X = np.asarray(states, dtype=float)
    if X.ndim != 2 or X.shape[1] != reduction.operating_state.size:
        raise ParameterError(f"states must be (n_times, {reduction.operating_state.size}), got "
                             f"{X.shape}")
    if not (np.isfinite(sfreq) and sfreq > 0):
        raise ParameterError(f"sfreq must be positive, got {sfreq}")
    if not (core > 0 and smooth >= 0):
        raise ParameterError("core must be positive and smooth non-negative")
    pv = np.array([m.left_vector for m in reduction.modes[:2]])
    r = np.abs((X - reduction.operating_state) @ np.conj(pv).T)
    k = max(1, int(round(smooth * sfreq)))
    ker = np.ones(k) / k
    r = np.column_stack([np.convolve(r[:, j], ker, mode="same") for j in range(2)])
    stable = [s for s in reduction.stable_states(warn=False) if not s.is_rest]
    try:
        i_star = np.array([next(s.intensities[0] for s in stable if s.active == (j,))
                           for j in range(2)])
    except StopIteration:
        raise ParameterError("the reduction lacks a single-mode stable state of mode 0 and of "
                             "mode 1") from None
    J = r ** 2 / i_star
    u = J[:, 0] - J[:, 1]
    cur = 0 if u[0] >= 0 else 1
    first = cur
    last_cross = 0
    switches = []
    for i in range(1, u.size):
        if np.sign(u[i]) != np.sign(u[i - 1]):
            last_cross = i
        new = 0 if u[i] > core else (1 if u[i] < -core else cur)
        if new != cur:
            switches.append((last_cross, cur, new))
            cur = new
    labels = np.empty(u.size, dtype=int)
    cur, pos = first, 0
    for i_sw, _, b in switches:
        labels[pos:i_sw] = cur
        cur, pos = b, i_sw
    labels[pos:] = cur
    return BasinTruth(labels=labels,
                      switch_times=np.array([(i - 0.5) / sfreq for i, _, _ in switches]),
                      from_state=np.array([a for _, a, _ in switches], dtype=int),
                      to_state=np.array([b for _, _, b in switches], dtype=int),
                      intensities=J)


@dataclass
class SimulationCheck:
    """Acceptance figures of :func:`simulation_check`.

    Attributes
    ----------
    accuracy : float
        Fraction of decoding samples whose posterior-mode state is the true basin.
    switch_errors : ndarray
        ``inferred - true`` time of every true switch matched to an inferred switch of the same
        type within ``max_lag`` (s); NaN for unmatched switches.
    n_true_switches, n_inferred_switches : int
    g1_mean : float
        Posterior mean of log G1 (truth 0).
    g1_hdi : (float, float)
        Its 94 % HDI.
    rate_source : str
        Where the switching rates came from (``"mechanism"`` or ``"free"``).
    fit_seconds, simulate_seconds : float
        Wall times.
    idata : xarray.DataTree
        Posterior draws.
    result : SwitchingResult
        Decoding of the fine envelope.
    info : dict
        Settings and side figures (diffusions, occupancy, sampler settings).
    """

    accuracy: float
    switch_errors: np.ndarray
    n_true_switches: int
    n_inferred_switches: int
    g1_mean: float
    g1_hdi: tuple
    rate_source: str
    fit_seconds: float
    simulate_seconds: float
    idata: object = None
    result: object = None
    info: dict = field(default_factory=dict)

    @property
    def median_abs_switch_error(self) -> float:
        """Median absolute error of the matched switches (s; NaN if none matched)."""
        e = self.switch_errors[np.isfinite(self.switch_errors)]
        return float(np.median(np.abs(e))) if e.size else float("nan")

    @property
    def truth_in_hdi(self) -> bool:
        """Whether the 94 % HDI of log G1 contains the truth (0)."""
        return bool(self.g1_hdi[0] <= 0.0 <= self.g1_hdi[1])


def build_simulation_model(*, duration=600.0, noise=0.35, fit_sfreq=2.0, decode_sfreq=25.0,
                           emission_discrepancy_sd=0.4, diffusion_discrepancy_sd=0.3,
                           rate_discrepancy_sd=1.0, random_seed=1, g1_prior=G1_PRIOR,
                           n_cells=40, gain_sd=0.1):
    """Simulate the bistable CMC and build the mechanistic switching model of its envelopes.

    Steps 1-4 of the module notes (simulation, truth, data, model); :func:`simulation_check`
    calls it, then samples and scores.

    Parameters
    ----------
    duration : float, optional
        Simulated time (s) after a 2 s burn-in; at least 20 s.
    noise : float, optional
        White-noise std on every population input (SPM input units per sqrt(s)); also the
        reference value of the input-noise std in the model.
    fit_sfreq, decode_sfreq : float, optional
        Envelope rates of the fit and of the decoding (Hz), ``0 < fit_sfreq <= decode_sfreq``;
        the fitted envelope is every k-th decoding sample, ``k = round(rate / fit_sfreq)``
        with ``rate`` the decoding envelope's actual rate.
    emission_discrepancy_sd, diffusion_discrepancy_sd, rate_discrepancy_sd : float, optional
        Prior sds of the log discrepancies of the emissions' growth rates, of their diffusions
        and of each mechanistic switching rate (see :func:`simulation_check` for how the
        defaults were sized).
    random_seed : int, optional
        Seed of the simulation.
    g1_prior : (float, float), optional
        Normal prior of log G1 (mean, sd); its mean is also the initial point.
    n_cells : int, optional
        Cells per axis of the grid of the switching-rate (backward Kolmogorov) solve.
    gain_sd : float, optional
        Prior sd of the log sensor gain of each band around the mechanistic gain
        ``2 |nu_sp|`` at the true parameters (0.1: within ~10 %).

    Returns
    -------
    dict
        ``model`` (pymc.Model, free variables ``log_G1``, ``log_noise``, ``log_gain`` (2,),
        ``log_floor`` (2,)); ``init`` (initial point of those variables); ``terms``
        (:class:`~nmm_inference.switching.model.SwitchingTerms`); ``envelope`` (decoding
        envelope, shape (n_times, 2), bands gamma and beta, first and last 1 s left out);
        ``sfreq`` and ``t0`` (its rate, Hz, and first sample time, s); ``labels`` (true basin
        at each decoding sample, 0 gamma, 1 beta); ``switches`` (true switch times (s), from
        and to states, within the envelope's span); ``diffusion`` (true diffusions of the two
        modes, 1/s); ``simulate_seconds`` (wall time of the simulation); ``state_names``;
        ``fit_sfreq`` (rate of the fitted envelope, Hz); ``gain0`` (mechanistic gains of the
        two bands at the true parameters).

    Raises
    ------
    ParameterError
        If ``duration < 20`` or not ``0 < fit_sfreq <= decode_sfreq``.
    """
    import pymc as pm
    import pytensor.tensor as pt

    from ..adiabatic import noise_diffusion, reduce_cmc
    from ..cmc.simulate import simulate_cmc_states
    from ..features import compute_band_envelopes, read_recording
    from .envelope_likelihood import positive_envelope
    from .mechanism import MechanismSpec, assess_mechanism
    from .model import add_switching_likelihood
    from .rates import PassageGrid

    if not (duration >= 20.0):
        raise ParameterError(f"duration must be at least 20 s, got {duration}")
    if not (0 < fit_sfreq <= decode_sfreq):
        raise ParameterError("need 0 < fit_sfreq <= decode_sfreq")
    ex = bistable_example()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReductionValidityWarning)
        red = reduce_cmc(ex["G"], ex["T"], ex["R"], ex["U"])
    sf = 250.0
    t0 = time.perf_counter()
    _, X = simulate_cmc_states(ex["spm"], duration=duration, sfreq=sf, noise_std=0.0,
                               population_noise_std=np.full((1, 4), float(noise)),
                               burn_in=2.0, random_seed=random_seed)
    t_sim = time.perf_counter() - t0
    truth = true_basins(X, red, sf)
    rec = read_recording(X[:, 2][None], sfreq=sf, units="au", ch_names=["LFP"])
    bands = {"gamma": SIM_BANDS[0], "beta": SIM_BANDS[1]}
    env = compute_band_envelopes(rec, bands=bands, sfreq_out=decode_sfreq, verbose="error")
    sfd = float(env.attrs["sfreq"])
    n_ex = int(round(sfd))
    y_dec = positive_envelope(env.sel(channel="LFP").values.T[n_ex:-n_ex])   # (n_times, 2)
    t_env = (np.arange(y_dec.shape[0]) + n_ex) / sfd
    step = max(1, int(round(sfd / fit_sfreq)))
    y, sfe, t_fit = y_dec[::step], sfd / step, t_env[::step]
    lab_env = truth.labels[np.clip(np.round(t_env * sf).astype(int), 0, truth.labels.size - 1)]
    keep = (truth.switch_times > t_env[0]) & (truth.switch_times < t_env[-1])

    spec = MechanismSpec(bands=SIM_BANDS, states=((0,), (1,)))
    G_true = ex["G"]
    readout = np.array([0.0, 1.0, 0.0, 0.0])
    ref = dict(G=G_true, T=ex["T"], R=ex["R"], U=ex["U"], noise_std=np.full(4, float(noise)),
               readout=readout)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReductionValidityWarning)
        ass = assess_mechanism(*ref.values(), spec)
    spec = MechanismSpec(bands=SIM_BANDS, states=spec.states,
                         grid=PassageGrid(n_cells=int(n_cells), j_max=ass.spec.grid.j_max,
                                          core=ass.spec.grid.core))
    gain0 = ass.values["gain"]
    floor0 = 0.05 * np.median(y, axis=0)
    log_noise0 = np.log(noise) + 0.2
    init = {"log_G1": g1_prior[0], "log_noise": log_noise0, "log_gain": np.log(gain0),
            "log_floor": np.log(floor0)}
    with pm.Model() as model:
        log_g1 = pm.Normal("log_G1", *g1_prior)          # ss self-inhibition (log-scaling)
        log_noise = pm.Normal("log_noise", log_noise0, 0.5)
        # sensor gains within ~10 % of the mechanistic gain (a calibrated LFP); background
        # floors small against the envelopes: with looser priors a label-swapped mode (gamma
        # state explained by a large beta-band floor) competes with the right one
        log_gain = pm.Normal("log_gain", np.log(gain0), float(gain_sd), shape=(2,))
        log_floor = pm.Normal("log_floor", np.log(floor0), 0.5, shape=(2,))
        G = pt.set_subtensor(pt.as_tensor_variable(G_true)[0], G_true[0] * pt.exp(log_g1))
        terms = add_switching_likelihood(
            "sw", y, sfreq=sfe, G=G, T=ex["T"], R=ex["R"], U=ex["U"],
            noise_std=pt.exp(log_noise) * pt.ones(4), readout=readout, spec=spec,
            reference=ref, gain=pt.exp(log_gain), floor=pt.exp(log_floor),
            emission_discrepancy_sd=emission_discrepancy_sd,
            diffusion_discrepancy_sd=diffusion_discrepancy_sd,
            rate_discrepancy_sd=rate_discrepancy_sd, kind="stationary",
            state_names=ex["state_names"], band_names=list(bands), t0=float(t_fit[0]))
    return {"model": model, "init": init, "terms": terms, "envelope": y_dec, "sfreq": sfd,
            "t0": float(t_env[0]), "labels": lab_env,
            "switches": (truth.switch_times[keep], truth.from_state[keep],
                         truth.to_state[keep]),
            "diffusion": noise_diffusion(red, noise)[:2], "simulate_seconds": t_sim,
            "state_names": list(ex["state_names"]), "fit_sfreq": sfe, "gain0": gain0}


def simulation_check(*, duration=600.0, noise=0.35, fit_sfreq=2.0, decode_sfreq=25.0,
                     emission_discrepancy_sd=0.4, diffusion_discrepancy_sd=0.3,
                     rate_discrepancy_sd=1.0, draws=400, tune=400, chains=2, random_seed=1,
                     sampler="nutpie", min_dwell=0.3, max_lag=2.0, g1_prior=G1_PRIOR,
                     n_result_draws=100, n_cells=40):
    """Simulate the bistable CMC, fit the mechanistic switching model and score it.

    Parameters
    ----------
    duration : float, optional
        Simulated time (s) after a 2 s burn-in.
    noise : float, optional
        White-noise std on every population input.
    fit_sfreq, decode_sfreq : float, optional
        Envelope rates of the fit and of the decoding (Hz).
    emission_discrepancy_sd : float, optional
        Prior sd of the log discrepancy of the emissions' growth rates.
    diffusion_discrepancy_sd : float, optional
        Prior sd of the log discrepancy of the emissions' diffusions (see
        :func:`~nmm_inference.switching.model.add_switching_likelihood`).
    rate_discrepancy_sd : float, optional
        Prior sd of the log discrepancy of each mechanistic switching rate.  The defaults of the
        three discrepancies are sized by the reduction's measured errors for this source: at
        the true parameters the reduced SDE's mean dwell times are 8.3 s (gamma) and 9.8 s
        (beta), the full CMC's 9.0-12.8 s and 6.7-8.9 s (three 600 s runs), a log dwell-ratio
        error of about 0.5; and the emissions' growth rates need log discrepancies up to ~0.45
        at the posterior mode.  Tighter priors make the model read those errors as a shift of
        G1 (the connection that sets the dwell-time ratio).
    draws, tune, chains : int, optional
        NUTS settings.
    random_seed : int, optional
        Seed of the simulation, the sampler and the posterior path sampling.
    sampler : {"nutpie", "pymc"}, optional
        NUTS implementation.
    min_dwell : float, optional
        Inferred dwells shorter than this (s) are merged before switches are read off.
    max_lag : float, optional
        Largest distance (s) at which an inferred switch is matched to a true one.
    g1_prior : (float, float), optional
        Normal prior of log G1 (mean, sd).
    n_result_draws : int, optional
        Posterior draws used for the decoding.
    n_cells : int, optional
        Cells per axis of the grid of the switching-rate (backward Kolmogorov) solve, which
        dominates the cost of a gradient evaluation (fewer cells: rates a few % less accurate,
        well inside the rate discrepancy's prior).

    Returns
    -------
    SimulationCheck
    """
    from .model import fit
    from .results import SwitchingResult

    b = build_simulation_model(duration=duration, noise=noise, fit_sfreq=fit_sfreq,
                               decode_sfreq=decode_sfreq,
                               emission_discrepancy_sd=emission_discrepancy_sd,
                               diffusion_discrepancy_sd=diffusion_discrepancy_sd,
                               rate_discrepancy_sd=rate_discrepancy_sd,
                               random_seed=random_seed, g1_prior=g1_prior, n_cells=n_cells)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        # the mechanism Op runs in object mode under the NUMBA backend (a scipy-backed solve)
        warnings.filterwarnings("ignore", message=".*object mode.*")
        idata = fit(b["model"], draws=draws, tune=tune, chains=chains, random_seed=random_seed,
                    nuts_sampler=sampler, initvals=b["init"])
    t_fit = time.perf_counter() - t0
    g1 = np.asarray(idata["posterior"]["log_G1"]).ravel()
    res = SwitchingResult(b["terms"], idata, n_draws=n_result_draws, random_seed=random_seed,
                          envelope=b["envelope"], sfreq=b["sfreq"], t0=b["t0"])
    path = res.map_path()
    ev = res.switch_events(min_duration=min_dwell)
    names = b["state_names"]
    fr_i = np.array([names.index(s) for s in ev["from_state"]], dtype=int)
    to_i = np.array([names.index(s) for s in ev["to_state"]], dtype=int)
    t_sw, fr, to = b["switches"]
    lag = match_switches(t_sw, fr, to, ev["time"].to_numpy(), fr_i, to_i, max_lag=max_lag)
    return SimulationCheck(
        accuracy=float(np.mean(path == b["labels"])), switch_errors=lag,
        n_true_switches=int(t_sw.size), n_inferred_switches=int(len(ev)),
        g1_mean=float(g1.mean()), g1_hdi=tuple(float(v) for v in hdi_interval(g1, 0.94)),
        rate_source=b["terms"].rate_source, fit_seconds=t_fit,
        simulate_seconds=b["simulate_seconds"], idata=idata, result=res,
        info={"diffusion": b["diffusion"], "gamma_occupancy": float(np.mean(b["labels"] == 0)),
              "fit_sfreq": b["fit_sfreq"], "decode_sfreq": b["sfreq"],
              "reasons": list(b["terms"].reasons), "draws": draws, "tune": tune,
              "chains": chains, "sampler": sampler, "g1_prior": tuple(g1_prior),
              "min_dwell": min_dwell, "diffusion_discrepancy_sd": diffusion_discrepancy_sd,
              "emission_discrepancy_sd": emission_discrepancy_sd,
              "rate_discrepancy_sd": rate_discrepancy_sd})
