"""Joint hierarchical inversion of a cohort of spectra (one CMC source per recording).

The joint model puts the CMC spectrum likelihood of every recording and the group model in
one PyMC model:

    beta[c, p] ~ N(mu_cp, beta_sd)          group effects (covariate x parameter)
    tau[p]     ~ HalfNormal(tau_sd)         between-recording SDs
    eps[r, p]  ~ N(0, 1)                    (non-centred, default)
    theta[r]   = X[r] @ beta + tau * eps[r] per-recording parameters (SPM scale)
                 or theta[r, p] ~ N(X[r] @ beta[:, p], tau[p]) (centred), per parameter
    y[r]       ~ Whittle/Gamma(dof) around the CMC spectrum S(theta[r], fixed), with the
                 recording's scale (filter offset) integrated out under a flat prior

Only a few parameters per recording are free (``names``); all other CMC parameters are held
at their SPM prior means or at ``fixed``.  The spectrum goes through
:class:`nmm_inference.cmc.pytensor_ops.CMCSpectrumOp` (exact gradient, NUMBA backend), so
one log-density evaluation costs about one kernel call per recording (0.2 ms with its
Jacobian at 39 bins; 1.7 ms for 8 recordings, measured).  NUTS needs 10-50 evaluations per
draw here (tree depth 3.4 with one free parameter per recording, 5.6 with two, measured on
small cohorts), so this is feasible at small size (tens of recordings, a few parameters);
for large cohorts use the two-stage route of :mod:`nmm_inference.group`, which this model
checks (``bench/group_joint.py``).  Choose parameters the spectrum identifies separately: for
example g_ii_ss and tau_ss are nearly collinear (Fisher correlation -0.98 at the prior mean
with L = 6), g_ii_ss and tau_ii are not (0.01).

Parameterisation (``parameterization``, ``adaptation`` of :func:`fit_joint`).  With an
informative spectrum per recording neither the centred nor the non-centred form is uniformly
better: measured on the 6 + 6 cohort of ``bench/group_common.py`` (g_ii_ss, tau_ii; posterior
SD of theta about 0.6 x posterior mean of tau for g_ii_ss, 0.85 x for tau_ii), nutpie, 2
chains x (300 + 300), one seed, the worst bulk ESS over beta and tau was 45 all centred
(tau[tau_ii], R-hat 1.08, 8 divergences, 33 leapfrog steps per draw), 93 all non-centred
(tau[tau_ii]; tau[g_ii_ss] 130; 16 steps), 166 with g_ii_ss centred and tau_ii non-centred
(15 steps); with the low-rank mass matrix 108 non-centred and 162 mixed (13-14 steps), the
ESS of beta rising from 130-320 (diagonal) to 380-840 (low rank).
So centre the well identified parameters, keep the others non-centred, and let nutpie adapt a
low-rank mass matrix (the default).

The per-recording log-likelihood (scale integrated out) is stored in ``log_likelihood`` with
dim ``recording``, for leave-one-recording-out comparisons.
"""

from __future__ import annotations

import numpy as np

from ._version import __version__
from .errors import DataError, ParameterError

__all__ = ["simulate_cohort", "marginal_scale_loglik", "build_joint_model", "fit_joint",
           "intercept_prior_means"]


def _check_names(names):
    from .cmc.kernel import FREE_NAMES

    names = [str(n) for n in names]
    bad = [n for n in names if n not in FREE_NAMES]
    if bad:
        raise ParameterError(f"unknown CMC parameters {bad} (one of {list(FREE_NAMES)})")
    if "filter_offset" in names:
        raise ParameterError("filter_offset is integrated out per recording; it cannot be a group parameter "
                             "of the joint model")
    if len(set(names)) != len(names):
        raise ParameterError("parameter names must be unique")
    return names


def _base_vector(fixed):
    """25-vector of SPM-scale values: prior means, overridden by ``fixed``."""
    from .cmc.kernel import FREE_NAMES
    from .params import parameter_table

    table = {s.name: s for s in parameter_table(1)}
    base = np.array([table[n].prior_mean for n in FREE_NAMES], dtype=float)
    for k, v in dict(fixed or {}).items():
        if k not in FREE_NAMES:
            raise ParameterError(f"unknown fixed parameter {k!r}")
        if not np.isfinite(float(v)):
            raise ParameterError(f"fixed value of {k!r} is not finite")
        base[FREE_NAMES.index(k)] = float(v)
    return base


def intercept_prior_means(design, names):
    """Prior means of the group effects: the SPM prior mean for all-ones columns, else 0.

    Parameters
    ----------
    design : array, shape (n_rec, n_cov)
    names : sequence of str
        CMC parameter names.

    Returns
    -------
    ndarray, shape (n_cov, n_par)
    """
    from .params import parameter_table

    table = {s.name: s for s in parameter_table(1)}
    X = np.asarray(design, float)
    ones = np.all(X == 1.0, axis=0)
    mu = np.zeros((X.shape[1], len(names)))
    for j, n in enumerate(names):
        if n in table:
            mu[ones, j] = table[n].prior_mean
    return mu


def simulate_cohort(design, beta, tau, *, names, freqs, dof, fixed=None, scale_sd=1.0,
                    random_seed=None):
    """Simulated cohort of spectra from the hierarchical model (the generating process).

    Parameters
    ----------
    design : array, shape (n_rec, n_cov)
    beta : array, shape (n_cov, n_par)
        True group effects (SPM scale).
    tau : array, shape (n_par,)
        True between-recording SDs.
    names : sequence of str
        The varying CMC parameters; the others are at their prior means or ``fixed``.
    freqs : array, shape (n_freqs,)
    dof : float or array (n_freqs,)
        Degrees of freedom of every bin: each spectrum is ``S * Gamma(dof/2, 2/dof)``.
    fixed : dict, optional
    scale_sd : float
        SD of each recording's log scale (the units are arbitrary; the filter offset).
    random_seed : int, optional

    Returns
    -------
    dict
        ``spectra`` (n_rec, n_freqs), ``theta`` (n_rec, n_par), ``log_scale`` (n_rec,) and
        ``clean`` (n_rec, n_freqs) -- the spectra without sampling noise or scale.
    """
    from .cmc.kernel import FREE_NAMES, spectrum

    names = _check_names(names)
    X = np.asarray(design, float)
    B = np.asarray(beta, float)
    t = np.asarray(tau, float)
    if B.shape != (X.shape[1], len(names)) or t.shape != (len(names),):
        raise ParameterError(f"beta must be ({X.shape[1]}, {len(names)}) and tau ({len(names)},)")
    hz = np.asarray(freqs, float)
    dof = np.broadcast_to(np.asarray(dof, float), hz.shape)
    rng = np.random.default_rng(random_seed)
    base = _base_vector(fixed)
    idx = [FREE_NAMES.index(n) for n in names]
    theta = X @ B + t * rng.standard_normal((X.shape[0], len(names)))
    clean = np.empty((X.shape[0], hz.size))
    for r in range(X.shape[0]):
        th = base.copy()
        th[idx] = theta[r]
        S, status, _ = spectrum(th, hz)
        if status == 2 or not np.all(np.isfinite(S)):
            raise DataError(f"recording {r}: the CMC has no spectrum at the simulated parameters")
        clean[r] = S
    log_scale = scale_sd * rng.standard_normal(X.shape[0])
    noise = rng.gamma(dof / 2.0, 2.0 / dof, size=clean.shape)
    spectra = clean * np.exp(log_scale)[:, None] * noise
    return {"spectra": spectra, "theta": theta, "log_scale": log_scale, "clean": clean}


def marginal_scale_loglik(y, S, dof):
    """Whittle/Gamma log-likelihood with the scale integrated out under a flat prior on its log.

    ``log int prod_k Gamma(y_k; a_k, a_k / (S_k e^f)) df`` with ``a = dof / 2``, in closed
    form: ``sum[a log a - lgamma(a) + (a - 1) log y - a log S] + lgamma(A) - A log B`` with
    ``A = sum a`` and ``B = sum a y / S``.

    Parameters
    ----------
    y, S : array, shape (..., n_freqs)
        Observed and predicted spectra.
    dof : float or array (n_freqs,)

    Returns
    -------
    ndarray, shape (...)
    """
    from scipy.special import gammaln

    y = np.asarray(y, float)
    S = np.asarray(S, float)
    a = 0.5 * np.broadcast_to(np.asarray(dof, float), y.shape[-1:])
    A = a.sum()
    B = np.sum(a * y / S, axis=-1)
    const = np.sum(a * np.log(a) - gammaln(a) + (a - 1) * np.log(y), axis=-1)
    return const - np.sum(a * np.log(S), axis=-1) + gammaln(A) - A * np.log(B)


def _beta_prior(X, names, beta_mu, beta_sd):
    n_cov, n_par = X.shape[1], len(names)
    mu = intercept_prior_means(X, names) if beta_mu is None else np.broadcast_to(
        np.asarray(beta_mu, float), (n_cov, n_par)).copy()
    sd = np.broadcast_to(np.asarray(beta_sd, float), (n_cov, n_par)).copy()
    if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sd)) and np.all(sd > 0)):
        raise ParameterError("beta_mu must be finite and beta_sd positive")
    return mu, sd


def _beta_mask(mask, n_cov, n_par):
    if mask is None:
        return np.ones((n_cov, n_par), bool)
    m = np.asarray(mask, bool)
    if m.shape != (n_cov, n_par):
        raise ParameterError(f"beta_mask must have shape ({n_cov}, {n_par}), got {m.shape}")
    return m


def _pymc_beta(pm, pt, mask, mu, sd):
    """Group effects with the entries outside ``mask`` held at zero."""
    if mask.all():
        return pm.Normal("beta", mu=mu, sigma=sd, dims=("covariate", "param"))
    free = pm.Normal("beta_free", mu=mu[mask], sigma=sd[mask], shape=int(mask.sum()))
    beta = pt.set_subtensor(pt.zeros(mask.shape)[np.nonzero(mask)], free)
    return pm.Deterministic("beta", beta, dims=("covariate", "param"))


def _diagnostics(dt, var_names):
    """(max R-hat, min bulk ESS) over ``var_names``; NaN where none is defined."""
    import warnings

    import arviz as az

    with warnings.catch_warnings():   # effects held at 0 by a hypothesis have no R-hat
        warnings.simplefilter("ignore", RuntimeWarning)
        s = az.summary(dt, var_names=list(var_names))
    rh = np.asarray(s["r_hat"], float)
    es = np.asarray(s["ess_bulk"], float)
    rhat = float(np.nanmax(rh)) if np.any(np.isfinite(rh)) else float("nan")
    ess = float(np.nanmin(es)) if np.any(np.isfinite(es)) else float("nan")
    return rhat, ess


def _finish(dt, model_name, var_names=("beta", "tau")):
    rhat, ess = _diagnostics(dt, var_names)
    ndiv = int(np.asarray(dt["sample_stats"]["diverging"]).sum())
    dt.attrs.update({"nmm_inference_version": __version__, "model": model_name,
                     "r_hat_max": rhat, "ess_bulk_min": ess, "n_divergent": ndiv,
                     "converged": int(rhat <= 1.01 and ess >= 400 and ndiv == 0)})
    return dt


def _centred_mask(parameterization, names):
    """Boolean (n_par,): which parameters' recording values are sampled centred."""
    if isinstance(parameterization, str):
        if parameterization not in ("centred", "noncentred"):
            raise ParameterError(f"parameterization must be 'centred', 'noncentred' or a dict, "
                                 f"got {parameterization!r}")
        return np.full(len(names), parameterization == "centred")
    choice = dict(parameterization)
    bad = [k for k in choice if k not in names] + [v for v in choice.values()
                                                   if v not in ("centred", "noncentred")]
    if bad:
        raise ParameterError(f"parameterization dict: unknown parameters or values {bad}")
    return np.array([choice.get(n, "centred") == "centred" for n in names])


def build_joint_model(spectra, freqs, dof, design, *, names, covariates, recordings=None,
                      fixed=None, beta_mu=None, beta_sd=1.0, tau_sd=0.5, beta_mask=None,
                      parameterization="noncentred"):
    """The PyMC model of :func:`fit_joint` (arguments as there), without sampling.

    Parameters
    ----------
    spectra, freqs, dof, design, names, covariates, recordings, fixed, beta_mu, beta_sd, \
tau_sd, beta_mask, parameterization
        As in :func:`fit_joint`.

    Returns
    -------
    pymc.Model
        Free variables ``beta`` (or ``beta_free`` under a mask), ``tau`` and the
        recording-level variables: ``theta`` (recording, param) when centred; ``eps``
        (recording, param) when non-centred, with deterministic ``theta``; under a
        per-parameter choice ``theta_centred`` (recording, param_centred) and ``eps``
        (recording, param_noncentred), with deterministic ``theta``.  Deterministic
        ``loglik`` (recording).
    """
    import pymc as pm
    import pytensor.tensor as pt
    from scipy.special import gammaln

    from .cmc.kernel import FREE_NAMES
    from .cmc.pytensor_ops import CMCSpectrumOp
    from .cmc.spectra import check_freqs

    names = _check_names(names)
    Y = np.asarray(spectra, float)
    X = np.asarray(design, float)
    hz = np.asarray(check_freqs(freqs), float)
    if Y.ndim != 2 or Y.shape[1] != hz.size or X.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise ParameterError(f"shapes do not fit: spectra {Y.shape}, freqs {hz.shape}, design {X.shape}")
    if not np.all(np.isfinite(Y)) or np.any(Y <= 0):
        raise DataError("spectra must be finite and positive")
    dof = np.broadcast_to(np.asarray(dof, float), hz.shape).copy()
    if not np.all(np.isfinite(dof)) or np.any(dof <= 0):
        raise DataError("dof must be finite and positive")
    if len(covariates) != X.shape[1]:
        raise ParameterError("covariates must name the columns of the design")
    if not np.all(np.isfinite(X)) or np.linalg.matrix_rank(X) < X.shape[1]:
        raise ParameterError("the design matrix is rank deficient or not finite")
    n_rec, n_par = Y.shape[0], len(names)
    mu, sd = _beta_prior(X, names, beta_mu, beta_sd)
    mask = _beta_mask(beta_mask, X.shape[1], n_par)
    recordings = list(recordings) if recordings is not None else [f"rec{i}" for i in range(n_rec)]
    if len(recordings) != n_rec:
        raise ParameterError("recordings must label every spectrum")
    base = _base_vector(fixed)
    idx = np.array([FREE_NAMES.index(n) for n in names])
    op = CMCSpectrumOp(hz)
    a = 0.5 * dof
    A = float(a.sum())
    centred = _centred_mask(parameterization, names)
    coords = {"recording": recordings, "param": names, "covariate": list(covariates), "freq": hz}
    if centred.any() and not centred.all():
        coords["param_centred"] = [n for n, c in zip(names, centred) if c]
        coords["param_noncentred"] = [n for n, c in zip(names, centred) if not c]
    with pm.Model(coords=coords) as model:
        beta = _pymc_beta(pm, pt, mask, mu, sd)
        tau = pm.HalfNormal("tau", tau_sd, dims="param")
        loc = pt.dot(X, beta)
        if not centred.any():
            eps = pm.Normal("eps", 0.0, 1.0, dims=("recording", "param"))
            theta = pm.Deterministic("theta", loc + tau * eps, dims=("recording", "param"))
        elif centred.all():
            theta = pm.Normal("theta", mu=loc, sigma=tau, dims=("recording", "param"))
        else:
            c, nc = np.flatnonzero(centred), np.flatnonzero(~centred)
            th_c = pm.Normal("theta_centred", mu=loc[:, c], sigma=tau[c],
                             dims=("recording", "param_centred"))
            eps = pm.Normal("eps", 0.0, 1.0, dims=("recording", "param_noncentred"))
            cols = pt.zeros((n_rec, n_par))
            cols = pt.set_subtensor(cols[:, c], th_c)
            cols = pt.set_subtensor(cols[:, nc], loc[:, nc] + tau[nc] * eps)
            theta = pm.Deterministic("theta", cols, dims=("recording", "param"))
        lls = []
        for r in range(n_rec):
            th = pt.set_subtensor(pt.as_tensor_variable(base)[idx], theta[r])
            S = op(th)[0]
            const = float(np.sum(a * np.log(a) - gammaln(a) + (a - 1) * np.log(Y[r])) + gammaln(A))
            B = pt.sum(a * Y[r] / S)
            lls.append(np.float64(const) - pt.sum(a * pt.log(S)) - np.float64(A) * pt.log(B))
        ll = pm.Deterministic("loglik", pt.stack(lls), dims="recording")
        pm.Potential("spectra", pt.sum(ll))
    model._nmm_joint = {"Y": Y, "X": X, "hz": hz, "dof": dof, "mask": mask, "base": base,
                        "names": names, "recordings": recordings, "covariates": list(covariates),
                        "centred": centred}
    return model


def _initial_values(info, init_theta, tau_sd):
    """Starting values (untransformed) of the free variables; see ``init_theta``."""
    X, mask, centred = info["X"], info["mask"], info["centred"]
    n_rec, n_par = X.shape[0], len(info["names"])
    if init_theta is None:
        return None
    th = np.asarray(init_theta, float)
    if th.shape != (n_rec, n_par) or not np.all(np.isfinite(th)):
        raise ParameterError(f"init_theta must be finite with shape ({n_rec}, {n_par})")
    beta = np.zeros(mask.shape)
    for j in range(n_par):
        cols = np.flatnonzero(mask[:, j])
        if cols.size:
            beta[cols, j] = np.linalg.lstsq(X[:, cols], th[:, j], rcond=None)[0]
    res = th - X @ beta
    tau = np.maximum(np.sqrt(np.mean(res ** 2, axis=0)), 0.02)
    init = {"tau": tau}
    init["beta" if mask.all() else "beta_free"] = beta if mask.all() else beta[mask]
    eps = res / tau
    if not centred.any():
        init["eps"] = eps
    elif centred.all():
        init["theta"] = th
    else:
        init["theta_centred"], init["eps"] = th[:, centred], eps[:, ~centred]
    return init


def fit_joint(spectra, freqs, dof, design, *, names, covariates, recordings=None, fixed=None,
              beta_mu=None, beta_sd=1.0, tau_sd=0.5, beta_mask=None, draws=1000, tune=1000,
              chains=2, cores=1, target_accept=0.9, random_seed=None, progressbar=False,
              nuts_sampler="nutpie", compile_mode="NUMBA", parameterization="noncentred",
              adaptation=None, init_theta=None):
    """Joint hierarchical inversion of many spectra (see the module docstring).

    Parameters
    ----------
    spectra : array, shape (n_rec, n_freqs)
        Power spectra (any units; each recording's scale is integrated out).
    freqs : array, shape (n_freqs,)
        Frequencies in Hz.
    dof : float or array (n_freqs,)
        Degrees of freedom of each bin (common to all recordings).
    design : array, shape (n_rec, n_cov)
        Design matrix.
    names : sequence of str
        CMC parameters that vary between recordings (SPM scale).
    covariates : sequence of str
        Column names of the design.
    recordings : sequence of str, optional
    fixed : dict, optional
        SPM-scale values of the parameters held fixed (default: SPM prior means).
    beta_mu, beta_sd : float or array (n_cov, n_par)
        Prior of the group effects (default mean: SPM prior mean on all-ones columns, 0 else).
    tau_sd : float
        Half-normal scale of the between-recording SDs.
    beta_mask : array of bool (n_cov, n_par), optional
        Group effects allowed to be non-zero (a group hypothesis); the others are held at 0.
    draws, tune, chains, cores, target_accept : NUTS settings.
    nuts_sampler : {"nutpie", "pymc"}
        nutpie (default) adapts much better on this geometry: with PyMC's NUTS and 100
        tuning steps the step size stayed 8x smaller (tree depth 7.7 against 5.6, measured
        on 4 recordings).
    compile_mode : str
        PyTensor mode of the log density for PyMC's sampler (``"NUMBA"`` or ``"FAST_RUN"``).
        Compiling the NUMBA graph takes about a minute on this machine.
    parameterization : {"noncentred", "centred"} or dict
        How the recording-level parameters are sampled: ``theta = X beta + tau * eps`` with
        ``eps ~ N(0, 1)`` (non-centred, default) or ``theta ~ N(X beta, tau)`` (centred); a
        dict ``{name: "centred" | "noncentred"}`` chooses per parameter (unnamed parameters
        centred).  Centre the parameters that each spectrum pins down well inside the
        between-recording spread (posterior SD of theta small against tau), keep the weakly
        identified ones non-centred; see the module docstring for measurements.
    init_theta : array (n_rec, n_par), optional
        Starting values of the recording parameters (SPM scale), e.g. first-level posterior
        means; beta starts at their least-squares fit on the design and tau at the residual
        SD (at least 0.02).  Without it beta starts at its prior mean, tau at its support
        point and theta at ``X beta``.  With nutpie, only ``tau`` and ``eps`` get the U(-1, 1)
        starting jitter (on the sampler's scale), never ``beta`` or a centred ``theta``
        (a jitter of 1 is about 5 prior SDs of an SPM log-scale parameter; with it, one
        chain of the 20 + 20 bench, mixed parameterisation, ended away from the others:
        R-hat 1.53).  Pass it with a centred parameter on large cohorts: on the 20 + 20
        bench with the mixed parameterisation and no ``init_theta`` nutpie stopped with "All
        initialization points failed" (cause not established).
    adaptation : {None, "diag", "low_rank"}
        nutpie's mass-matrix adaptation; None: ``"low_rank"`` with nutpie (diagonal plus
        low-rank corrections; with the mixed parameterisation at 6 + 6 recordings it gave
        3x the bulk ESS of ``"diag"`` for beta and the same for tau), PyMC's diagonal
        adaptation with ``nuts_sampler="pymc"``.
    random_seed : int, optional
    progressbar : bool

    Returns
    -------
    xarray.DataTree
        ``posterior``: ``beta`` (covariate, param), ``tau`` (param), ``theta``
        (recording, param); ``log_likelihood``: ``y`` (recording), each recording's
        log-likelihood given its parameters; ``observed_data``; ``constant_data`` (design
        with dims recording, covariate); attrs with convergence.
    """
    import pymc as pm
    import xarray as xr

    from .cmc.kernel import FREE_NAMES

    model = build_joint_model(spectra, freqs, dof, design, names=names, covariates=covariates,
                              recordings=recordings, fixed=fixed, beta_mu=beta_mu,
                              beta_sd=beta_sd, tau_sd=tau_sd, beta_mask=beta_mask,
                              parameterization=parameterization)
    info = model._nmm_joint
    kw = {}
    if nuts_sampler == "nutpie":
        adaptation = "low_rank" if adaptation is None else adaptation
        if adaptation not in ("diag", "low_rank"):
            raise ParameterError(f"adaptation must be 'diag' or 'low_rank', got {adaptation!r}")
        kw["nuts"] = {"adaptation": adaptation}     # pm.sample passes it on to nutpie
    elif adaptation not in (None, "diag"):
        raise ParameterError("adaptation='low_rank' needs nuts_sampler='nutpie'")
    init = _initial_values(info, init_theta, tau_sd)
    ck = {"mode": compile_mode}
    if nuts_sampler == "nutpie":
        ck["jitter_rvs"] = {v for v in model.free_RVs if v.name in ("tau", "eps")}
    with model:
        idata = pm.sample(draws=draws, tune=tune, chains=chains, cores=cores,
                          random_seed=random_seed, progressbar=progressbar, initvals=init,
                          compile_kwargs=ck, target_accept=target_accept,
                          nuts_sampler=nuts_sampler, **kw)
    dt = idata if hasattr(idata, "children") else idata.to_datatree()
    post = dt["posterior"].to_dataset()
    llv = post["loglik"]
    post = post.drop_vars("loglik")
    recs, covs, hz, names = info["recordings"], info["covariates"], info["hz"], info["names"]
    groups = {k: dt[k].to_dataset() for k in dt.children if k != "posterior"}
    groups["posterior"] = post
    groups["log_likelihood"] = xr.Dataset({"y": llv})
    groups["observed_data"] = xr.Dataset({"spectra": (("recording", "freq"), info["Y"])},
                                         coords={"recording": recs, "freq": hz})
    groups["constant_data"] = xr.Dataset(
        {"design": (("recording", "covariate"), info["X"]), "dof": (("freq",), info["dof"]),
         "beta_mask": (("covariate", "param"), info["mask"])},
        coords={"recording": recs, "covariate": covs, "freq": hz, "param": names})
    out = xr.DataTree.from_dict(groups)
    out.attrs.update(dict(dt.attrs))
    out.attrs["fixed_parameters"] = str({n: float(v) for n, v in zip(FREE_NAMES, info["base"])
                                         if n not in names})
    out.attrs["parameterization"] = str({n: "centred" if c else "noncentred"
                                         for n, c in zip(names, info["centred"])})
    out = _finish(out, "joint hierarchical CMC model")
    rest = [v for v in ("theta_centred", "eps") if v in post] or ["theta"]
    s = _diagnostics(out, rest)
    out.attrs.update({"r_hat_max_recording": s[0], "ess_bulk_min_recording": s[1]})
    return out
