"""PyMC models of envelope dynamics and switching between semi-stable states.

Two ways in:

* :func:`add_switching_likelihood` adds the envelope/switching likelihood to a PyMC model that
  already holds CMC parameter variables (``G``, ``T``, ``R``, ``U``, noise, readout), so it can
  share them with the spectral likelihood (``nmm_inference.cmc.pytensor_ops.cmc_spectrum``).
  The hidden states are basins of the amplitude flow, the emissions come from the amplitude SDE
  of each basin and the switching rates from the mechanism (mean dwell times of the reduced
  amplitude SDE, with a multiplicative discrepancy term) -- or, where the reduction is flagged
  unreliable for these states, are free with a prior.  The returned :class:`SwitchingTerms`
  says which (``rate_source`` and ``reasons``).
* :func:`build_free_switching_model` is the standalone model at the level of the amplitude SDE:
  every state has its own growth rate, sharing the saturation and the diffusion of one mode, and
  the rates are free.  This is the model for recordings where no CMC parameterisation is fitted
  (e.g. beta bursts in an STN recording).

The discrete states are marginalised by the forward algorithm inside one fused Op
(:class:`~nmm_inference.switching.pytensor_ops.EnvelopeHMMOp`); posterior state probabilities,
switch times and burst statistics are computed afterwards from the posterior draws
(:class:`~nmm_inference.switching.results.SwitchingResult`).

PyMC is imported inside the functions: importing this module is light.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .._version import __version__
from ..errors import DataError, ParameterError
from .envelope_likelihood import EMISSION_KINDS, _segment_starts, check_envelope

__all__ = ["SwitchingTerms", "add_envelope_likelihood", "add_switching_likelihood",
           "build_free_switching_model", "log_transition_from_rates", "cmc_physical_from_theta",
           "fit"]

logger = logging.getLogger("nmm_inference")


@dataclass
class SwitchingTerms:
    """What a switching likelihood added to a model, for post-processing and reporting.

    Attributes
    ----------
    name : str
        Prefix of the model variables.
    envelope : ndarray, shape (n_times, n_bands)
        The data the likelihood sees (after scaling).
    scale : ndarray, shape (n_bands,)
        The envelope was divided by this (sensor units per model unit).
    sfreq : float
        Envelope rate (Hz).
    kind : str
        Emission density.
    segment_starts : ndarray of bool
        Segment-start mask.
    state_names, band_names : list of str
        Labels.
    rate_source : str
        ``"mechanism"`` or ``"free"``.
    reasons : list of str
        Why (see :class:`~nmm_inference.switching.mechanism.MechanismAssessment`).
    var_names : dict
        Model variable names of the per-draw quantities: ``sigma``, ``a``, ``D`` (S, M) in model
        units, ``log_P`` (S, S), ``log_pi`` (S,), ``rates`` (S, S) 1/s.
    t0 : float
        Time of the first envelope sample (s), for events and annotations.
    rederive_transitions : bool
        Set for decoding at another rate: per-step transition matrices are recomputed from the
        posterior rates instead of read from the draws.
    """

    name: str
    envelope: np.ndarray
    scale: np.ndarray
    sfreq: float
    kind: str
    segment_starts: np.ndarray
    state_names: list
    band_names: list
    rate_source: str
    reasons: list = field(default_factory=list)
    var_names: dict = field(default_factory=dict)
    t0: float = 0.0
    rederive_transitions: bool = False

    @property
    def n_states(self) -> int:
        return len(self.state_names)

    @property
    def n_bands(self) -> int:
        return len(self.band_names)

    @property
    def times(self) -> np.ndarray:
        """Sample times (s)."""
        return self.t0 + np.arange(self.envelope.shape[0]) / self.sfreq


def _pm():
    import pymc as pm
    import pytensor.tensor as pt

    return pm, pt


def log_transition_from_rates(rates, dt):
    """Log one-step transition matrix and log stationary distribution from switching rates.

    Parameters
    ----------
    rates : TensorVariable, shape (S, S)
        Rates ``k_ij`` (1/s) from i to j; the diagonal is ignored.
    dt : float
        Step (s).

    Returns
    -------
    log_P : TensorVariable, shape (S, S)
    log_pi : TensorVariable, shape (S,)
        For S = 2 in closed form (stable logs); otherwise ``expm(Q dt)`` and the stationary
        distribution from the generator.
    """
    _, pt = _pm()
    k = pt.as_tensor_variable(rates)
    S = k.type.shape[0]
    if S == 2:
        k01, k10 = k[0, 1], k[1, 0]
        K = k01 + k10
        f = -pt.expm1(-K * np.float64(dt))             # 1 - e^{-K dt}
        p01 = k01 / K * f
        p10 = k10 / K * f
        log_P = pt.stack([pt.stack([pt.log1p(-p01), pt.log(p01)]),
                          pt.stack([pt.log(p10), pt.log1p(-p10)])])
        log_pi = pt.stack([pt.log(k10) - pt.log(K), pt.log(k01) - pt.log(K)])
        return log_P, log_pi
    if S is None:
        raise ParameterError("the number of states must be known statically")
    off = k * (1.0 - pt.eye(S))
    Q = off - pt.diag(off.sum(axis=1))
    P = pt.linalg.expm(Q * np.float64(dt))
    # stationary distribution: solve [Q^T; 1] pi = [0; 1] in the least-squares sense
    A = pt.concatenate([Q.T, pt.ones((1, S))], axis=0)
    b = pt.concatenate([pt.zeros(S), pt.ones(1)])
    pi = pt.linalg.solve(A.T @ A, A.T @ b)
    return pt.log(pt.clip(P, 1e-300, 1.0)), pt.log(pt.clip(pi, 1e-300, 1.0))


def add_envelope_likelihood(name, envelope, *, sfreq, sigma, a, D, log_P=None, log_pi=None,
                            kind="transition", segment_starts=None):
    """Add the envelope (switching) log-likelihood to the current PyMC model.

    Parameters
    ----------
    name : str
        Name of the ``pm.Potential``.
    envelope : array-like, shape (n_times,) or (n_times, n_bands)
        Envelope in the units of ``sigma``, ``a``, ``D`` (> 0).
    sfreq : float
        Envelope rate (Hz).
    sigma, a, D : TensorVariable, shape (n_states, n_bands)
        Amplitude-SDE parameters per state and band (1/s, 1/(s unit^2), unit^2/s).
    log_P : TensorVariable, shape (S, S), optional
        Log one-step transition matrix; default ``[[0]]`` (one state: plain transition density).
    log_pi : TensorVariable, shape (S,), optional
        Log initial distribution (default uniform).
    kind : {"transition", "stationary"}, optional
        Emission density.
    segment_starts : array-like of int, optional
        Starts of contiguous segments.

    Returns
    -------
    TensorVariable
        The log-likelihood (also added as a Potential).
    """
    pm, pt = _pm()
    from .pytensor_ops import envelope_hmm_logp

    x = check_envelope(envelope)
    if kind not in EMISSION_KINDS:
        raise ParameterError(f"kind must be one of {sorted(EMISSION_KINDS)}, got {kind!r}")
    starts = _segment_starts(x.shape[0], segment_starts)
    sigma = pt.as_tensor_variable(sigma)
    S = sigma.type.shape[0]
    if log_P is None:
        if S not in (1, None):
            raise ParameterError("log_P is required with more than one state")
        log_P = pt.zeros((1, 1))
    if log_pi is None:
        n = S if S is not None else 1
        log_pi = pt.as_tensor_variable(np.full(n, -np.log(n)))
    lp = envelope_hmm_logp(x, sigma, a, D, log_P, log_pi, starts, dt=1.0 / float(sfreq),
                           kind=kind)
    pm.Potential(name, lp)
    return lp


def _reference_values(model, variables):
    """Numeric values of (possibly random) variables at the model's initial point."""
    _, pt = _pm()
    tens = [pt.as_tensor_variable(v if hasattr(v, "type") else np.asarray(v, dtype=float))
            for v in variables]
    outs = model.replace_rvs_by_values(tens)
    f = model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore", point_fn=True)
    return [np.asarray(v, dtype=float) for v in f(model.initial_point())]


def add_switching_likelihood(name, envelope, *, sfreq, G, T, R, U, noise_std, readout, spec,
                             rates="auto", reference=None, gain=None, floor=None,
                             rate_discrepancy_sd=0.5, emission_discrepancy_sd=0.0,
                             diffusion_discrepancy_sd=0.0, log_rate_prior=(np.log(0.5), 1.5),
                             kind=None, segment_starts=None, state_names=None, band_names=None,
                             t0=0.0):
    """Add the CMC-parameterised switching likelihood of band envelopes to the current model.

    Parameters
    ----------
    name : str
        Prefix of the variables created.
    envelope : array-like, shape (n_times, n_bands)
        One envelope per band of ``spec`` (sensor units, > 0).
    sfreq : float
        Envelope rate (Hz).
    G, T, R, U, noise_std, readout : TensorVariable or array-like
        CMC gains (10,) 1/s, time constants (4,) s, sigmoid slope, constant input (4,),
        input noise std per population (4,) and sensor weights of the population voltages
        (4,).  Any of them may be random variables of the model (shared with other
        likelihoods).
    spec : MechanismSpec
        Bands and hidden states.
    rates : {"auto", "mechanism", "free"}, optional
        Source of the switching rates (see
        :func:`~nmm_inference.switching.mechanism.assess_mechanism`).
    reference : dict, optional
        Numeric values of the six inputs (keys ``G``, ``T``, ``R``, ``U``, ``noise_std``,
        ``readout``) at which the states are checked and the rate grid is fixed; default: their
        values at the model's initial point.
    gain : TensorVariable, shape (n_bands,), optional
        Sensor gain per band (sensor units per unit mode amplitude); default the mechanistic
        ``2 |readout . nu|``.  Pass a free gain for recordings with unknown scale.
    floor : TensorVariable or array-like, shape (n_bands,), optional
        RMS envelope of the background activity in each band (sensor units): other damped
        modes, aperiodic activity and sensor noise in the band add ``floor**2`` to the envelope
        intensity of every state (exact for quasi-cycle states).
    rate_discrepancy_sd : float, optional
        Prior sd of the log-rate discrepancy ``delta`` (mechanistic rates are
        ``exp(-log_dwell + delta)``).
    emission_discrepancy_sd : float, optional
        If > 0, the effective growth rates of the emissions are ``sigma_eff exp(eps)`` with
        ``eps ~ Normal(0, emission_discrepancy_sd)`` per state and band: the reduction's error
        in the transverse exponents and state amplitudes (O(r^2) truncation, noise-induced
        shifts) is carried into the posterior instead of biasing the CMC parameters.
    diffusion_discrepancy_sd : float, optional
        If > 0, the emissions' diffusions are ``D_m g_m^2 exp(eta_m)`` with
        ``eta_m ~ Normal(0, diffusion_discrepancy_sd)`` per band: the envelope's in-state spread
        may differ from the reduced SDE's (band-passed activity of other modes, O(r^2) terms),
        and without this term that mismatch is read as input noise, which sets the mechanistic
        rates (``exp(-barrier / D)``) and through them biases the connections that tilt the
        barrier.  The switching rates keep the undistorted ``D``.
    log_rate_prior : (float, float), optional
        Normal prior (mean, sd) of free log rates (log 1/s).
    kind : {"transition", "stationary"}, optional
        Emission density.  Default: ``"stationary"`` with several states (each state's
        stationary envelope density; robust to the envelope's band-pass smoothing, see
        :mod:`~nmm_inference.switching.envelope_likelihood`), ``"transition"`` with one state
        (the amplitude SDE's transition density of the envelope time series).
    segment_starts : array-like of int, optional
        Starts of contiguous segments.
    state_names, band_names : list of str, optional
        Labels.
    t0 : float, optional
        Time of the first sample (s).

    Returns
    -------
    SwitchingTerms

    Raises
    ------
    ReductionError
        If the declared states are not stable states of the reduction at the reference.
    """
    pm, pt = _pm()
    from .mechanism import MechanismSpec, assess_mechanism
    from .pytensor_ops import switching_mechanism

    if not isinstance(spec, MechanismSpec):
        raise ParameterError(f"spec must be a MechanismSpec, got {type(spec).__name__}")
    model = pm.modelcontext(None)
    if kind is None:
        kind = "stationary" if spec.n_states > 1 else "transition"
    x = check_envelope(envelope)
    if x.shape[1] != spec.n_bands:
        raise DataError(f"envelope has {x.shape[1]} bands, spec {spec.n_bands}")
    inputs = {"G": G, "T": T, "R": R, "U": U, "noise_std": noise_std, "readout": readout}
    if reference is None:
        vals = _reference_values(model, list(inputs.values()))
        reference = dict(zip(inputs, vals))
    ass = assess_mechanism(reference["G"], reference["T"], reference["R"], reference["U"],
                           reference["noise_std"], reference["readout"], spec, rates=rates)
    spec = ass.spec
    mech = switching_mechanism(*(pt.as_tensor_variable(np.asarray(v, dtype=float))
                                 if not hasattr(v, "type") else v for v in inputs.values()),
                               spec=spec, rates=ass.rate_source == "mechanism")
    S, M = spec.n_states, spec.n_bands
    state_names = list(state_names or ["+".join(f"band{k}" for k in s) or "rest"
                                       for s in spec.states])
    band_names = list(band_names or [f"{lo:g}-{hi:g}Hz" for lo, hi in spec.bands])
    g = mech["gain"] if gain is None else pt.as_tensor_variable(gain)
    sig_eff = mech["sigma_eff"]
    if emission_discrepancy_sd:
        eps = pm.Normal(f"{name}_log_sigma_discrepancy", 0.0, float(emission_discrepancy_sd),
                        shape=(S, M))
        sig_eff = sig_eff * pt.exp(eps)
    sig = pm.Deterministic(f"{name}_sigma", sig_eff)
    a_s = pm.Deterministic(f"{name}_a", pt.tile((mech["a"] / g ** 2)[None, :], (S, 1)))
    D_band = mech["D"] * g ** 2
    if diffusion_discrepancy_sd:
        eta = pm.Normal(f"{name}_log_D_discrepancy", 0.0, float(diffusion_discrepancy_sd),
                        shape=(M,))
        D_band = D_band * pt.exp(eta)
    D_sens = pt.tile(D_band[None, :], (S, 1))
    if floor is not None:
        # background activity in the band (other modes, aperiodic activity, sensor noise) adds
        # f^2 to the envelope intensity: exact for the quasi-cycle (Rayleigh) states, where
        # E x^2 = D / |sigma|, and a small extra spread about the oscillating states
        f2 = pt.as_tensor_variable(floor) ** 2
        D_sens = D_sens + f2[None, :] * pt.abs(sig_eff)
    D_s = pm.Deterministic(f"{name}_D", D_sens)
    if S == 1:
        # one state (e.g. the rest state below threshold): the plain transition likelihood
        rates_m = pm.Deterministic(f"{name}_rates", pt.zeros((1, 1)))
        log_P, log_pi = pt.zeros((1, 1)), pt.zeros(1)
    else:
        if ass.rate_source == "mechanism":
            delta = pm.Normal(f"{name}_log_rate_discrepancy", 0.0, float(rate_discrepancy_sd),
                              shape=(S,))
            log_k = -mech["log_dwell"] + delta
        else:
            log_k = pm.Normal(f"{name}_log_rate", float(log_rate_prior[0]),
                              float(log_rate_prior[1]), shape=(S,) if S == 2 else (S, S))
        rates_m = pm.Deterministic(f"{name}_rates", _rate_matrix(log_k, S))
        log_P, log_pi = log_transition_from_rates(rates_m, 1.0 / float(sfreq))
    log_P = pm.Deterministic(f"{name}_log_P", log_P)
    log_pi = pm.Deterministic(f"{name}_log_pi", log_pi)
    add_envelope_likelihood(f"{name}_loglik", x, sfreq=sfreq, sigma=sig, a=a_s, D=D_s,
                            log_P=log_P, log_pi=log_pi, kind=kind, segment_starts=segment_starts)
    logger.info("Switching likelihood %r: %s", name, ass.summary())
    return SwitchingTerms(name=name, envelope=x, scale=np.ones(M), sfreq=float(sfreq), kind=kind,
                          segment_starts=_segment_starts(x.shape[0], segment_starts),
                          state_names=state_names, band_names=band_names,
                          rate_source=ass.rate_source, reasons=list(ass.reasons),
                          var_names=_var_names(name), t0=float(t0))


def cmc_physical_from_theta(theta):
    """Physical CMC parameters ``(G, T, R)`` from SPM-scale free parameters.

    Lets the switching likelihood share parameters with the spectral likelihood
    (:func:`nmm_inference.cmc.pytensor_ops.cmc_spectrum`, which takes ``theta`` in
    :data:`nmm_inference.cmc.kernel.FREE_NAMES` order): the four free gains (G7, G2, G3, G4),
    the four time constants and the sigmoid slope are log-scalings of SPM's defaults; the other
    six gains stay at their defaults, as in SPM's spectral model.  Delays, observation and noise
    parameters of ``theta`` are not used by the reduction (it has no delays, and its noise is
    the white input noise ``noise_std``).

    Parameters
    ----------
    theta : TensorVariable, shape (25,)
        SPM-scale parameters in ``FREE_NAMES`` order.

    Returns
    -------
    G : TensorVariable, shape (10,)
        Gains G1..G10 (1/s).
    T : TensorVariable, shape (4,)
        Time constants (s).
    R : TensorVariable
        Sigmoid slope.
    """
    _, pt = _pm()
    from ..cmc.kernel import FREE_NAMES
    from ..params import G_DEFAULT, T_DEFAULT_MS

    theta = pt.as_tensor_variable(theta)
    idx = {n: i for i, n in enumerate(FREE_NAMES)}
    T = pt.as_tensor_variable(T_DEFAULT_MS / 1000.0) * pt.exp(
        pt.stack([theta[idx[n]] for n in ("tau_ss", "tau_sp", "tau_ii", "tau_dp")]))
    G = pt.as_tensor_variable(G_DEFAULT.copy())
    for name, g_index in (("g_sp_sp", 6), ("g_sp_ss", 1), ("g_ii_ss", 2), ("g_ii_ii", 3)):
        G = pt.set_subtensor(G[g_index], G_DEFAULT[g_index] * pt.exp(theta[idx[name]]))
    R = np.float64(2.0 / 3.0) * pt.exp(theta[idx["sigmoid_slope"]])
    return G, T, R


def _var_names(name):
    return {"sigma": f"{name}_sigma", "a": f"{name}_a", "D": f"{name}_D",
            "log_P": f"{name}_log_P", "log_pi": f"{name}_log_pi", "rates": f"{name}_rates"}


def _rate_matrix(log_k, S):
    """(S,) log exit rates (S = 2) or (S, S) log rates -> rate matrix with zero diagonal."""
    _, pt = _pm()
    if S == 2:
        k = pt.exp(log_k)
        return pt.stack([pt.stack([pt.zeros(()), k[0]]), pt.stack([k[1], pt.zeros(())])])
    return pt.exp(log_k) * (1.0 - pt.eye(S))


def build_free_switching_model(envelope, *, sfreq, n_states=2, kind="stationary",
                               segment_starts=None, scale=None, priors=None, state_names=None,
                               band_names=None, t0=0.0, name="switch", parametrization="ordered"):
    """Standalone switching model of one band envelope at the level of the amplitude SDE.

    State ``s`` has growth rate ``sigma_s`` (ordered: ``sigma_0 < sigma_1 < ...``, so state 0 is
    the most damped -- "quiet" -- and the last is the "burst" state), and all states share the
    saturation ``a < 0`` and the diffusion ``D`` of the mode (one mode whose effective growth
    rate is switched by the rest of the circuit, as for a mode's transverse exponent in
    winner-take-all competition).  Rates are free (log-normal prior).  Units: the envelope is
    divided by ``scale`` (default its median), so that every parameter is O(1).

    Parameters
    ----------
    envelope : array-like, shape (n_times,)
        One band envelope (sensor units, > 0).
    sfreq : float
        Envelope rate (Hz).
    n_states : int, optional
        Number of hidden states (>= 2).
    kind : {"stationary", "transition"}, optional
        Emission density (default stationary: on short, band-pass smoothed envelopes the
        transition density also reads the envelope's persistent local slopes and then switches
        with every rise and fall; use ``"transition"`` for envelopes sampled at most at their
        bandwidth).
    segment_starts : array-like of int, optional
        Starts of contiguous segments.
    scale : float, optional
        Envelope unit (default: median).
    priors : dict, optional
        Override any of ``sigma0`` (Normal mean, sd; 1/s), ``sigma_step`` (HalfNormal sd; 1/s),
        ``log_damping``, ``log_growth`` (Normal mean, sd; log(1/s); "hopf" only),
        ``log_neg_a`` (Normal mean, sd; log(1/s)), ``log_D`` (Normal mean, sd; log(1/s)),
        ``log_rate`` (Normal mean, sd; log(1/s)).
    state_names : list of str, optional
        Default ``["quiet", "burst"]`` for two states.
    band_names : list of str, optional
        Label of the band.
    t0 : float, optional
        Time of the first sample (s).
    name : str, optional
        Prefix of the variables.
    parametrization : {"ordered", "hopf"}, optional
        ``"ordered"``: ``sigma_0 ~ Normal``, increments ``HalfNormal`` (any signs);
        ``"hopf"`` (two states): ``sigma_0 = -exp(.) < 0 < sigma_1 = exp(.)``, a damped
        quasi-cycle and a noisy limit cycle (priors ``log_damping``, ``log_growth``).

    Returns
    -------
    model : pymc.Model
    terms : SwitchingTerms
    """
    pm, pt = _pm()
    x = check_envelope(envelope)
    if x.shape[1] != 1:
        raise DataError(f"the free model takes one band envelope, got {x.shape[1]}")
    S = int(n_states)
    if S < 2:
        raise ParameterError(f"n_states must be >= 2, got {n_states}")
    sc = float(np.median(x)) if scale is None else float(scale)
    if not (sc > 0 and np.isfinite(sc)):
        raise ParameterError(f"scale must be positive, got {scale}")
    y = x / sc
    pr = {"sigma0": (-5.0, 5.0), "sigma_step": 10.0, "log_damping": (np.log(5.0), 1.5),
          "log_growth": (np.log(5.0), 1.5), "log_neg_a": (np.log(5.0), 1.5),
          "log_D": (np.log(5.0), 1.5), "log_rate": (np.log(2.0), 1.5)}
    for k, v in (priors or {}).items():
        if k not in pr:
            raise ParameterError(f"unknown prior {k!r}; known: {sorted(pr)}")
        pr[k] = v
    if state_names is None:
        state_names = ["quiet", "burst"] if S == 2 else [f"state{k}" for k in range(S)]
    coords = {"state": list(state_names), "band": list(band_names or ["band"]),
              "state_to": list(state_names)}
    if parametrization not in ("ordered", "hopf"):
        raise ParameterError(f"parametrization must be 'ordered' or 'hopf', got "
                             f"{parametrization!r}")
    if parametrization == "hopf" and S != 2:
        raise ParameterError("parametrization='hopf' needs n_states=2")
    with pm.Model(coords=coords) as model:
        if parametrization == "ordered":
            s0 = pm.Normal(f"{name}_sigma0", *pr["sigma0"])
            steps = pm.HalfNormal(f"{name}_sigma_step", pr["sigma_step"], shape=(S - 1,))
            sig_vec = pt.concatenate([s0[None], s0 + pt.cumsum(steps)])
        else:
            lq = pm.Normal(f"{name}_log_damping", *pr["log_damping"])
            lb = pm.Normal(f"{name}_log_growth", *pr["log_growth"])
            sig_vec = pt.stack([-pt.exp(lq), pt.exp(lb)])
        log_neg_a = pm.Normal(f"{name}_log_neg_a", *pr["log_neg_a"])
        log_D = pm.Normal(f"{name}_log_D", *pr["log_D"])
        if S == 2:
            log_k = pm.Normal(f"{name}_log_rate", *pr["log_rate"], dims="state")
        else:
            log_k = pm.Normal(f"{name}_log_rate", *pr["log_rate"], dims=("state", "state_to"))
        sig = pm.Deterministic(f"{name}_sigma", sig_vec[:, None], dims=("state", "band"))
        a_s = pm.Deterministic(f"{name}_a", pt.fill(sig, -pt.exp(log_neg_a)),
                               dims=("state", "band"))
        D_s = pm.Deterministic(f"{name}_D", pt.fill(sig, pt.exp(log_D)), dims=("state", "band"))
        rates_m = pm.Deterministic(f"{name}_rates", _rate_matrix(log_k, S),
                                   dims=("state", "state_to"))
        log_P, log_pi = log_transition_from_rates(rates_m, 1.0 / float(sfreq))
        log_P = pm.Deterministic(f"{name}_log_P", log_P, dims=("state", "state_to"))
        log_pi = pm.Deterministic(f"{name}_log_pi", log_pi, dims="state")
        add_envelope_likelihood(f"{name}_loglik", y, sfreq=sfreq, sigma=sig, a=a_s, D=D_s,
                                log_P=log_P, log_pi=log_pi, kind=kind,
                                segment_starts=segment_starts)
    terms = SwitchingTerms(name=name, envelope=y, scale=np.array([sc]), sfreq=float(sfreq),
                           kind=kind, segment_starts=_segment_starts(y.shape[0], segment_starts),
                           state_names=list(state_names), band_names=coords["band"],
                           rate_source="free",
                           reasons=["no CMC parameterisation: amplitude-SDE parameters and "
                                    "switching rates are free (log-normal prior on the rates)"],
                           var_names=_var_names(name), t0=float(t0))
    return model, terms


def fit(model, *, draws=500, tune=500, chains=2, random_seed=None, nuts_sampler="nutpie",
        initvals=None, progressbar=False, **sample_kwargs):
    """Sample a switching model with NUTS and stamp the result with provenance.

    Parameters
    ----------
    model : pymc.Model
        A model built by this module (or any PyMC model).
    draws, tune, chains : int, optional
        Sampler settings.
    random_seed : int, optional
        Seed of the sampler (nutpie takes an int; ``None`` draws one from
        ``numpy.random.default_rng``).
    nuts_sampler : {"nutpie", "pymc"}, optional
        ``"nutpie"`` compiles the model with the NUMBA backend (custom Ops registered);
        ``"pymc"`` uses PyMC's sampler.
    initvals : dict, optional
        Initial point (variable name -> value), used by both samplers.
    progressbar : bool, optional
        Show progress.
    **sample_kwargs
        Passed to ``nutpie.sample`` or ``pymc.sample``.

    Returns
    -------
    xarray.DataTree
        Posterior draws (ArviZ 1.x layout), with ``attrs`` naming the package version and
        sampler.
    """
    if random_seed is None:
        random_seed = int(np.random.default_rng().integers(2 ** 31))
    if nuts_sampler == "nutpie":
        import nutpie

        cm = nutpie.compile_pymc_model(model, backend="numba",
                                       initial_points=initvals or None)
        idata = nutpie.sample(cm, draws=draws, tune=tune, chains=chains, seed=int(random_seed),
                              progress_bar=progressbar, **sample_kwargs)
    elif nuts_sampler == "pymc":
        import pymc as pm

        with model:
            idata = pm.sample(draws=draws, tune=tune, chains=chains, random_seed=random_seed,
                              initvals=initvals, progressbar=progressbar, **sample_kwargs)
    else:
        raise ParameterError(f"nuts_sampler must be 'nutpie' or 'pymc', got {nuts_sampler!r}")
    idata.attrs["nmm_inference_version"] = __version__
    idata.attrs["sampler"] = nuts_sampler
    return idata
