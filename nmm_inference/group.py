"""Group-level (second-level) inference over many recordings: the two-stage route.

SPM answers group questions with PEB: a linear model over first-level posteriors.  This module
is the Bayesian counterpart.  Stage one fits every recording on its own (any sampler of
:mod:`nmm_inference.inference`, in parallel through :mod:`nmm_inference.batch`); each
posterior is summarised by its mean and covariance over the parameters of interest.  Stage two
is a hierarchical linear model over those summaries:

    theta_r = X_r beta + tau * eps_r,    eps_r ~ N(0, I)         (non-centred)
    m_r     ~ N(theta_r, C_r)                                     (first-level summary)

with a design matrix ``X`` (group means, patient/control, age, session, ...), group effects
``beta`` (covariate x parameter), between-recording scales ``tau`` and shrunken per-recording
parameters ``theta_r``.  The Gaussian summary is the approximation (as in PEB); it is good
when first-level posteriors are close to normal, which the first-level fits report.

First-level posteriors already contain the first-level prior.  PEB divides it out before the
second level; :func:`remove_first_level_prior` does the same (Gaussian division), so that the
group model's own prior is the only prior on ``theta_r``.  Without it the group effects are
shrunk twice towards the first-level prior mean.

Model comparison of group hypotheses (which group effects are non-zero; ``beta_mask``):
:func:`compare_group_hypotheses` gives PSIS-LOO over recordings (ArviZ, each recording's
log-likelihood with its own ``theta_r`` integrated out) and the log evidence
(:func:`group_log_evidence`: ``beta`` integrated in closed form, ``tau`` by importance
sampling).  The joint model, with the CMC likelihood of every spectrum, is
:func:`nmm_inference.group_joint.fit_joint`.
"""

from __future__ import annotations

import numpy as np

from ._version import __version__
from .errors import DataError, ParameterError

__all__ = ["first_level_unit", "summarize_posteriors", "remove_first_level_prior", "fit_group",
           "group_effects_table", "group_log_evidence", "marginal_loglik", "compare_group_hypotheses",
           "plot_group_effects", "group_conditional_weights"]


def first_level_unit(payload, *, random_seed=None):
    """Fit one recording's spectrum: a unit function for :func:`nmm_inference.batch.run_batch`.

    Parameters
    ----------
    payload : dict
        ``spectrum`` (n_freqs,), ``freqs`` (n_freqs,), ``dof`` (float or (n_freqs,)), and
        optionally ``model`` (keyword arguments of
        :class:`~nmm_inference.inference.CMCModel`, e.g. ``free``, ``fixed``,
        ``data_scale``, ``dof_scale``) and ``fit`` (keyword arguments of
        :meth:`~nmm_inference.inference.CMCModel.fit`, e.g. ``sampler="laplace"``).
    random_seed : int, optional
        Given by the batch engine (derived from the unit key).

    Returns
    -------
    xarray.DataTree
        The first-level fit.
    """
    import warnings

    from .inference import CMCModel

    for k in ("spectrum", "freqs", "dof"):
        if k not in payload:
            raise ParameterError(f"first-level payload needs {k!r}")
    model = CMCModel(np.asarray(payload["spectrum"], float), freqs=np.asarray(payload["freqs"], float),
                     dof=payload["dof"], **dict(payload.get("model", {})))
    with warnings.catch_warnings():   # convergence problems are recorded in the result's attrs
        warnings.simplefilter("ignore")
        return model.fit(random_seed=random_seed, **dict(payload.get("fit", {})))


def summarize_posteriors(posteriors, names):
    """Means (n_rec, n_par) and covariances (n_rec, n_par, n_par) of first-level posteriors.

    Parameters
    ----------
    posteriors : sequence of xarray.DataTree or mapping name -> draws
        First-level results (``posterior`` group with one variable per parameter) or dicts of
        draw arrays.
    names : sequence of str
        Parameters to carry to the group level.
    """
    means, covs = [], []
    for i, post in enumerate(posteriors):
        if hasattr(post, "children") and "posterior" in post.children:
            ds = post["posterior"].to_dataset()
            cols = [np.asarray(ds[n]).ravel() for n in names]
        else:
            missing = [n for n in names if n not in post]
            if missing:
                raise ParameterError(f"recording {i}: parameters {missing} are not in its posterior")
            cols = [np.asarray(post[n]).ravel() for n in names]
        X = np.column_stack(cols)
        if X.shape[0] < len(names) + 2:
            raise DataError(f"recording {i}: {X.shape[0]} draws cannot estimate a {len(names)}-dim covariance")
        means.append(X.mean(axis=0))
        covs.append(np.atleast_2d(np.cov(X, rowvar=False)))
    return np.asarray(means), np.asarray(covs)


def remove_first_level_prior(means, covs, prior_mu, prior_sd, *, on_uninformative="raise"):
    """Divide the first-level (Gaussian) prior out of first-level posterior summaries.

    With posterior ``N(m, C)`` and prior ``N(mu0, diag(sd0**2))``, the likelihood summary is
    ``N(m_l, C_l)`` with ``C_l^-1 = C^-1 - P0`` and ``m_l = C_l (C^-1 m - P0 mu0)``, as in
    SPM's PEB.

    Parameters
    ----------
    means : array (n_rec, n_par)
    covs : array (n_rec, n_par, n_par)
    prior_mu, prior_sd : array (n_par,)
        First-level prior means and SDs (SPM scale); ``inf`` for a flat prior.
    on_uninformative : {"raise", "clip"}
        What to do where the posterior is not narrower than the prior (the data carry no
        information in that direction, or the first-level approximation is too rough):
        raise :class:`DataError`, or clip the likelihood precision there to 1 % of the
        smallest prior precision (an almost flat likelihood in that direction).

    Returns
    -------
    means, covs : arrays of the same shapes

    Raises
    ------
    DataError
        When a posterior is not narrower than the prior in every direction (the data carry no
        information there, so no likelihood summary exists; carry fewer parameters).
    """
    if on_uninformative not in ("raise", "clip"):
        raise ParameterError(f"on_uninformative must be 'raise' or 'clip', got {on_uninformative!r}")
    m = np.asarray(means, float)
    C = np.asarray(covs, float)
    mu0 = np.broadcast_to(np.asarray(prior_mu, float), m.shape[1:])
    p0 = 1.0 / np.broadcast_to(np.asarray(prior_sd, float), m.shape[1:]) ** 2
    P0 = np.diag(p0)
    mu0 = np.where(p0 > 0, mu0, 0.0)
    floor = 1e-2 * (p0[p0 > 0].min() if np.any(p0 > 0) else 1.0)
    out_m = np.empty_like(m)
    out_C = np.empty_like(C)
    n_clipped = 0
    for r in range(m.shape[0]):
        P = np.linalg.inv(C[r])
        Pl = P - P0
        Pl = 0.5 * (Pl + Pl.T)
        w, V = np.linalg.eigh(Pl)
        h = P @ m[r] - P0 @ mu0          # information vector of the likelihood
        if w.min() <= floor:
            if on_uninformative == "raise":
                raise DataError(f"recording {r}: the first-level posterior is not narrower than the prior "
                                "in every direction; no likelihood summary (carry fewer parameters, or "
                                "on_uninformative='clip')")
            n_clipped += 1
            # no information along the clipped directions: a weak likelihood (precision
            # ``floor``) centred there on the first-level posterior mean.  Keeping h there
            # instead would put the mean at h / floor, extrapolated far away (Bonn: means of
            # +-1000 prior SDs)
            clip = w <= floor
            hv = V.T @ h
            hv[clip] = floor * (V[:, clip].T @ m[r])
            h = V @ hv
            Pl = (V * np.maximum(w, floor)) @ V.T
        out_C[r] = np.linalg.inv(Pl)
        out_C[r] = 0.5 * (out_C[r] + out_C[r].T)
        out_m[r] = out_C[r] @ h
    if n_clipped:
        import logging

        logging.getLogger("nmm_inference").info("remove_first_level_prior: clipped %d of %d recordings",
                                                n_clipped, m.shape[0])
    return out_m, out_C


def _check_summaries(means, covs, design, names, covariates):
    m = np.asarray(means, dtype=float)
    C = np.asarray(covs, dtype=float)
    X = np.asarray(design, dtype=float)
    n_rec, n_par = m.shape if m.ndim == 2 else (None, None)
    if m.ndim != 2 or C.shape != (n_rec, n_par, n_par) or X.ndim != 2 or X.shape[0] != n_rec:
        raise ParameterError(f"shapes do not fit: means {m.shape}, covs {C.shape}, design {X.shape}")
    if len(names) != n_par or len(covariates) != X.shape[1]:
        raise ParameterError("names/covariates must match the columns of means/design")
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(C)) and np.all(np.isfinite(X))):
        raise DataError("non-finite values in the first-level summaries or the design")
    if np.linalg.matrix_rank(X) < X.shape[1]:
        raise ParameterError("the design matrix is rank deficient")
    try:
        Lc = np.linalg.cholesky(C)
    except np.linalg.LinAlgError:
        raise DataError("a first-level covariance is not positive definite") from None
    return m, C, X, Lc


def marginal_loglik(means, covs, design, beta, tau):
    """Per-recording log N(m_r | X_r beta, C_r + diag(tau**2)) (theta_r integrated out).

    The second-level likelihood of one recording's summary given the group parameters: with
    ``theta_r ~ N(X_r beta, diag(tau**2))`` and ``m_r ~ N(theta_r, C_r)``, ``theta_r``
    integrates out to ``m_r ~ N(X_r beta, C_r + diag(tau**2))``.  This is the pointwise
    log-likelihood that :func:`fit_group` stores for LOO over recordings.  The inputs are not
    validated (see :func:`fit_group` for the checked entry point).

    Parameters
    ----------
    means : array, shape (n_rec, n_par)
        First-level summary means ``m_r`` (SPM scale: the units of the parameters).
    covs : array, shape (n_rec, n_par, n_par)
        First-level summary covariances ``C_r`` (SPM scale, squared).
    design : array, shape (n_rec, n_cov)
        Design matrix ``X``; row ``r`` is ``X_r``.
    beta : array, shape (..., n_cov, n_par)
        Group effects (SPM scale per unit of the covariate); one or many draws.
    tau : array, shape (..., n_par)
        Between-recording SDs (SPM scale); one or many draws.  The leading dimensions of
        ``beta`` and ``tau`` broadcast against each other (e.g. (chain, draw)).

    Returns
    -------
    ndarray, shape (..., n_rec)
        Log density (natural log) of each recording's summary, for each draw.

    Raises
    ------
    numpy.linalg.LinAlgError
        When some ``C_r + diag(tau**2)`` is not positive definite.
    """
    m = np.asarray(means, float)
    C = np.asarray(covs, float)
    X = np.asarray(design, float)
    beta = np.asarray(beta, float)
    tau = np.asarray(tau, float)
    mu = np.einsum("rc,...cp->...rp", X, beta)
    K = C + (tau[..., None, :, None] ** 2) * np.eye(m.shape[1])      # (..., n_rec, p, p)
    L = np.linalg.cholesky(K)
    r = (m - mu)[..., None]
    z = np.linalg.solve(L, r)[..., 0]
    logdet = 2.0 * np.sum(np.log(np.diagonal(L, axis1=-2, axis2=-1)), axis=-1)
    return -0.5 * (m.shape[1] * np.log(2 * np.pi) + logdet + np.sum(z * z, axis=-1))


def fit_group(means, covs, design, *, names, covariates, recordings=None, beta_mu=None,
              beta_sd=1.0, tau_sd=0.5, beta_mask=None, draws=1000, tune=1000, chains=4,
              random_seed=None, progressbar=False):
    """Second-level Bayesian linear model over first-level posterior summaries.

    Parameters
    ----------
    means : array, shape (n_rec, n_par)
    covs : array, shape (n_rec, n_par, n_par)
        First-level summaries (SPM scale): posterior means and covariances, or likelihood
        summaries from :func:`remove_first_level_prior` (recommended).
    design : array, shape (n_rec, n_cov)
        Design matrix (e.g. a column of ones and a patient indicator).
    names : sequence of str, length n_par
        Parameter names (coordinates of ``param``).
    covariates : sequence of str, length n_cov
        Column names of the design (coordinates of ``covariate``).
    recordings : sequence of str, optional
        Recording labels (coordinates of ``recording``).
    beta_mu, beta_sd : float or array (n_cov, n_par)
        Prior mean and SD of the group effects (SPM scale; log-units for most parameters).
        Default mean: the SPM prior mean of the parameter on all-ones columns (the
        intercept), 0 elsewhere.
    tau_sd : float or array (n_par,)
        Half-normal prior scale of the between-recording SDs.
    beta_mask : array of bool (n_cov, n_par), optional
        Group effects allowed to be non-zero (a hypothesis); the others are held at 0.
    draws, tune, chains : int
        NUTS settings: draws kept per chain, tuning steps per chain, number of chains (PyMC's
        sampler with the NUMBA backend, ``target_accept=0.9``).
    random_seed : int, optional
        Seed of :func:`pymc.sample`; ``None`` for a fresh one.
    progressbar : bool
        Show PyMC's progress bar.

    Returns
    -------
    xarray.DataTree
        ``posterior`` with ``beta`` (covariate, param), ``tau`` (param), ``theta``
        (recording, param), the standardised deviations ``eps`` (recording, param) and,
        under a ``beta_mask`` that holds effects at 0, ``beta_free`` (the free effects);
        ``log_likelihood`` with ``m`` (chain, draw, recording): each recording's
        log-likelihood with its ``theta_r`` integrated out (:func:`marginal_loglik`; for LOO
        over recordings); ``observed_data`` with ``m`` (recording, param) and ``C``
        (recording, param, param_bis); ``constant_data`` with ``design`` (recording,
        covariate) and ``beta_mask`` (covariate, param); ``sample_stats``.  ``attrs``:
        ``nmm_inference_version``, ``model``, ``r_hat_max`` and ``ess_bulk_min`` (over
        ``beta`` and ``tau``), ``n_divergent`` and ``converged`` (1 when R-hat <= 1.01, bulk
        ESS >= 400 and no divergences, else 0).

    Raises
    ------
    ParameterError
        When the shapes of ``means``, ``covs`` and ``design`` do not fit each other, when
        ``names``/``covariates`` do not match their columns, when the design is rank
        deficient, when ``beta_mu`` is not finite or ``beta_sd`` not positive, or when
        ``beta_mask`` is not (n_cov, n_par).
    DataError
        When the summaries or the design hold non-finite values, or a first-level covariance
        is not positive definite.
    """
    import pymc as pm
    import pytensor.tensor as pt
    import xarray as xr

    from .group_joint import _beta_mask, _beta_prior, _finish, _pymc_beta

    m, C, X, Lc = _check_summaries(means, covs, design, names, covariates)
    n_rec, n_par = m.shape
    mu, sd = _beta_prior(X, list(names), beta_mu, beta_sd)
    mask = _beta_mask(beta_mask, X.shape[1], n_par)
    recordings = list(recordings) if recordings is not None else [f"rec{i}" for i in range(n_rec)]
    coords = {"recording": recordings, "param": list(names), "covariate": list(covariates)}
    with pm.Model(coords=coords):
        beta = _pymc_beta(pm, pt, mask, mu, sd)
        tau = pm.HalfNormal("tau", np.broadcast_to(np.asarray(tau_sd, float), (n_par,)), dims="param")
        eps = pm.Normal("eps", 0.0, 1.0, dims=("recording", "param"))
        theta = pm.Deterministic("theta", pm.math.dot(X, beta) + tau * eps, dims=("recording", "param"))
        pm.MvNormal("m", mu=theta, chol=Lc, observed=m, dims=("recording", "param"))
        idata = pm.sample(draws=draws, tune=tune, chains=chains, random_seed=random_seed,
                          progressbar=progressbar, compile_kwargs={"mode": "NUMBA"},
                          target_accept=0.9)
    dt = idata if hasattr(idata, "children") else idata.to_datatree()
    post = dt["posterior"].to_dataset()
    b = post["beta"].transpose("chain", "draw", "covariate", "param").values
    t = post["tau"].transpose("chain", "draw", "param").values
    ll = marginal_loglik(m, C, X, b, t)
    groups = {k: dt[k].to_dataset() for k in dt.children if k not in ("log_likelihood", "observed_data")}
    groups["log_likelihood"] = xr.Dataset(
        {"m": (("chain", "draw", "recording"), ll)},
        coords={"chain": post["chain"].values, "draw": post["draw"].values, "recording": recordings})
    groups["observed_data"] = xr.Dataset(
        {"m": (("recording", "param"), m), "C": (("recording", "param", "param_bis"), C)},
        coords={"recording": recordings, "param": list(names), "param_bis": list(names)})
    groups["constant_data"] = xr.Dataset(
        {"design": (("recording", "covariate"), X), "beta_mask": (("covariate", "param"), mask)},
        coords={"recording": recordings, "covariate": list(covariates), "param": list(names)})
    out = xr.DataTree.from_dict(groups)
    out.attrs.update(dict(dt.attrs))
    return _finish(out, "two-stage group model")


def _evidence_given_tau(m, C, X, mu, sd, mask, tau):
    """log p(m | tau) with the free betas integrated out (Woodbury; block-diagonal noise)."""
    n_rec, p = m.shape
    K = C + np.eye(p) * tau ** 2
    L = np.linalg.cholesky(K)
    Li = np.linalg.inv(L)
    Di = np.einsum("rji,rjk->rik", Li, Li)                      # K_r^-1
    logdet_D = 2.0 * np.sum(np.log(np.diagonal(L, axis1=1, axis2=2)))
    resid = m - X @ (mu * mask)                                  # mean of theta (masked betas are 0)
    Dir = np.einsum("rij,rj->ri", Di, resid)
    quad = float(np.sum(resid * Dir))
    idx = np.flatnonzero(mask.ravel())                           # vec order: c * p + j
    if idx.size:
        ZDZ = np.einsum("rc,rd,rjk->cjdk", X, X, Di).reshape(X.shape[1] * p, X.shape[1] * p)[np.ix_(idx, idx)]
        b = np.einsum("rc,rj->cj", X, Dir).ravel()[idx]
        s2 = (sd.ravel()[idx]) ** 2
        M = ZDZ + np.diag(1.0 / s2)
        Lm = np.linalg.cholesky(M)
        zb = np.linalg.solve(Lm, b)
        quad -= float(zb @ zb)
        logdet = logdet_D + 2.0 * np.sum(np.log(np.diag(Lm))) + np.sum(np.log(s2))
    else:
        logdet = logdet_D
    return -0.5 * (m.size * np.log(2 * np.pi) + logdet + quad)


def group_log_evidence(means, covs, design, *, beta_mu=None, beta_sd=1.0, tau_sd=0.5,
                       beta_mask=None, names=None, n_draws=2000, random_seed=None):
    """Log evidence of the second-level model (a group hypothesis), with its standard error.

    ``log p(m | hypothesis)``: the group effects are integrated out in closed form (the model
    is linear-Gaussian given ``tau``); the between-recording SDs ``tau`` by importance
    sampling in ``log tau`` from a Student-t (4 dof) around the Laplace approximation.

    Parameters
    ----------
    means, covs, design : arrays as in :func:`fit_group`
    beta_mu, beta_sd, tau_sd, beta_mask : priors and hypothesis as in :func:`fit_group`
    names : sequence of str, optional
        Parameter names (only used for the default ``beta_mu``).
    n_draws : int
        Importance draws.
    random_seed : int, optional

    Returns
    -------
    log_evidence : float
    se : float
        Monte Carlo standard error (delta method).
    ess : float
        Effective sample size of the importance weights.

    Raises
    ------
    RuntimeError
        If the evidence is not finite around its maximum over ``log tau`` (a clear message
        instead of a failed eigen-decomposition).
    """
    from scipy.optimize import minimize
    from scipy.special import logsumexp

    from .group_joint import _beta_mask, _beta_prior

    names = list(names) if names is not None else [f"p{j}" for j in range(np.shape(means)[1])]
    m, C, X, _ = _check_summaries(means, covs, design, names, [f"c{i}" for i in range(np.shape(design)[1])])
    mu, sd = _beta_prior(X, names, beta_mu, beta_sd)
    mask = _beta_mask(beta_mask, X.shape[1], m.shape[1])
    p = m.shape[1]
    tau_sd = np.broadcast_to(np.asarray(tau_sd, float), (p,))
    if np.any(~np.isfinite(tau_sd)) or np.any(tau_sd <= 0):
        raise ParameterError("tau_sd must be positive")
    log_hn = np.log(2.0) - 0.5 * np.log(2 * np.pi * tau_sd ** 2)

    def g(u):
        tau = np.exp(u)
        lp = _evidence_given_tau(m, C, X, mu, sd, mask, tau)
        return lp + np.sum(log_hn - 0.5 * (tau / tau_sd) ** 2 + u)

    u0 = np.full(p, np.log(0.5 * tau_sd))
    res = minimize(lambda u: -g(u), u0, method="BFGS")
    u_hat = res.x
    h = 1e-3
    H = np.empty((p, p))
    for i in range(p):
        for j in range(p):
            ei, ej = np.eye(p)[i] * h, np.eye(p)[j] * h
            H[i, j] = -(g(u_hat + ei + ej) - g(u_hat + ei - ej) - g(u_hat - ei + ej) + g(u_hat - ei - ej)) / (4 * h * h)
    H = 0.5 * (H + H.T)
    if not (np.isfinite(res.fun) and np.all(np.isfinite(H))):
        raise RuntimeError("group_log_evidence: the evidence is not finite around its maximum over "
                           f"log tau (log tau = {np.round(u_hat, 2).tolist()}); the first-level "
                           "summaries are not described by one Gaussian distribution per group "
                           "(check them for outliers and multimodal spread)")
    w_, V = np.linalg.eigh(H)
    w_ = np.maximum(w_, 1e-2)
    cov = 1.5 ** 2 * (V / w_) @ V.T
    Lp = np.linalg.cholesky(cov)
    rng = np.random.default_rng(random_seed)
    nu = 4.0
    z = rng.standard_normal((n_draws, p))
    chi = rng.chisquare(nu, size=n_draws)
    U = u_hat + (z @ Lp.T) / np.sqrt(chi / nu)[:, None]
    from scipy.stats import multivariate_t

    lq = multivariate_t(loc=u_hat, shape=cov, df=nu).logpdf(U)
    lw = np.array([g(u) for u in U]) - np.atleast_1d(lq)
    lz = float(logsumexp(lw) - np.log(n_draws))
    w = np.exp(lw - lw.max())
    se = float(np.std(w) / (np.sqrt(n_draws) * np.mean(w)))
    ess = float(w.sum() ** 2 / np.sum(w ** 2))
    return lz, se, ess


def group_conditional_weights(theta, log_prior, mean, sd):
    """Weights that turn first-level posterior draws into draws under a group distribution.

    A recording's first-level posterior is ``L(theta) p1(theta)``.  Under the group model its
    carried parameters have the prior ``N(mean, sd**2)`` instead of ``p1``, so its posterior
    given the group parameters is the first-level posterior re-weighted by
    ``N(theta; mean, sd**2) / p1(theta)`` (importance sampling; the draws keep the correlations
    of every first-level parameter, carried or not).  Used for replicating the observed
    recordings under a group fit (mixed replication).

    Parameters
    ----------
    theta : array (n_rec, n_draws, n_par)
        First-level posterior draws of the carried parameters.
    log_prior : array (n_rec, n_draws)
        First-level log prior density of the carried parameters at the draws (up to a
        constant per recording).
    mean : array (n_rec, n_par)
        Group-level mean of each recording's carried parameters (``X @ beta``).
    sd : array (n_par,)
        Between-recording standard deviations (``tau``).

    Returns
    -------
    weights : array (n_rec, n_draws)
        Normalised weights (each row sums to 1).
    ess : array (n_rec,)
        Effective sample size of each row, ``1 / sum(w**2)``: small values mean that the group
        distribution is much narrower than the recording's first-level posterior (or far in
        its tail) and the re-weighted draws rest on few first-level draws.

    Raises
    ------
    ParameterError
        When the shapes disagree, ``sd`` is not positive, or an input is not finite.
    """
    theta = np.asarray(theta, float)
    log_prior = np.asarray(log_prior, float)
    mean = np.asarray(mean, float)
    sd = np.asarray(sd, float)
    if theta.ndim != 3:
        raise ParameterError(f"theta must be (n_rec, n_draws, n_par), got shape {theta.shape}")
    n_rec, n_d, n_par = theta.shape
    if log_prior.shape != (n_rec, n_d):
        raise ParameterError(f"log_prior must be {(n_rec, n_d)}, got {log_prior.shape}")
    if mean.shape != (n_rec, n_par):
        raise ParameterError(f"mean must be {(n_rec, n_par)}, got {mean.shape}")
    if sd.shape != (n_par,) or not np.all(sd > 0):
        raise ParameterError(f"sd must be {n_par} positive values, got {sd!r}")
    for nm, a in (("theta", theta), ("log_prior", log_prior), ("mean", mean), ("sd", sd)):
        if not np.all(np.isfinite(a)):
            raise ParameterError(f"{nm} has non-finite values")
    z = (theta - mean[:, None, :]) / sd
    lw = -0.5 * np.sum(z * z, axis=-1) - log_prior
    w = np.exp(lw - lw.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    return w, 1.0 / np.sum(w * w, axis=1)


def group_effects_table(dt, *, hdi_prob=0.94):
    """Per (covariate, parameter): posterior mean, HDI, and whether the HDI excludes zero.

    Parameters
    ----------
    dt : xarray.DataTree
        A group fit with ``posterior["beta"]`` over dims (chain, draw, covariate, param), as
        returned by :func:`fit_group` or :func:`nmm_inference.group_joint.fit_joint`.
    hdi_prob : float
        Probability mass of the highest-density interval (:func:`arviz.hdi`), in (0, 1].

    Returns
    -------
    list of dict
        One row per (covariate, param), covariates outer and parameters inner in the order
        of the fit's coordinates, with keys ``covariate`` and ``param`` (str), ``mean`` and
        ``sd`` (posterior mean and SD over all draws, SPM scale), ``hdi_low`` and
        ``hdi_high`` (HDI bounds) and ``excludes_zero`` (bool: the HDI lies wholly above or
        wholly below 0).

    Raises
    ------
    KeyError
        When ``dt`` has no ``posterior`` group or it has no ``beta``.
    ValueError
        When ``hdi_prob`` is outside (0, 1] (raised by ArviZ).
    """
    import arviz as az

    beta = dt["posterior"]["beta"]
    hdi = az.hdi(dt, var_names=["beta"], prob=hdi_prob)
    h = hdi["beta"] if hasattr(hdi, "__getitem__") else hdi
    rows = []
    for c in beta["covariate"].values:
        for p in beta["param"].values:
            draws = np.asarray(beta.sel(covariate=c, param=p)).ravel()
            lo, hi = (float(v) for v in np.asarray(h.sel(covariate=c, param=p)).ravel()[:2])
            rows.append({"covariate": str(c), "param": str(p), "mean": float(draws.mean()),
                         "sd": float(draws.std()),
                         "hdi_low": lo, "hdi_high": hi, "excludes_zero": bool(lo > 0 or hi < 0)})
    return rows


def _hypothesis_masks(hypotheses, names, covariates, test_covariate):
    if test_covariate not in covariates:
        raise ParameterError(f"test_covariate {test_covariate!r} is not one of {list(covariates)}")
    c = list(covariates).index(test_covariate)
    masks = {}
    for label, differ in hypotheses.items():
        bad = [d for d in differ if d not in names]
        if bad:
            raise ParameterError(f"hypothesis {label!r}: unknown parameters {bad}")
        mk = np.ones((len(covariates), len(names)), bool)
        mk[c] = [n in differ for n in names]
        masks[str(label)] = mk
    return masks


def compare_group_hypotheses(means, covs, design, *, names, covariates, test_covariate,
                             hypotheses=None, recordings=None, beta_mu=None, beta_sd=1.0,
                             tau_sd=0.5, draws=1000, tune=1000, chains=4, n_evidence_draws=2000,
                             loo=True, random_seed=None):
    """Which parameters differ with a covariate: LOO and log evidence of group hypotheses.

    Every hypothesis is the set of parameters whose effect of ``test_covariate`` is free; the
    other effects of that covariate are held at zero (all other covariates stay free).

    Parameters
    ----------
    means, covs, design, names, covariates, recordings, beta_mu, beta_sd, tau_sd :
        As in :func:`fit_group`.
    test_covariate : str
        The covariate under test (e.g. ``"patient"``).
    hypotheses : dict label -> sequence of str, optional
        Default: ``"none"`` (no parameter differs), each parameter alone, and ``"all"``.
    draws, tune, chains : int
        NUTS settings of each fit.
    n_evidence_draws : int
        Importance draws of :func:`group_log_evidence`.
    loo : bool
        Fit every hypothesis by NUTS and compute PSIS-LOO (default).  ``False`` gives the
        log evidences only (no sampling; seconds), with NaN LOO columns and no fits.
    random_seed : int, optional

    Returns
    -------
    xarray.DataTree
        ``comparison`` (dim ``hypothesis``): ``elpd_loo``, ``elpd_loo_se``, ``p_loo``,
        ``pareto_k_max``, ``log_evidence``, ``log_evidence_se``, ``posterior_prob``
        (from the evidences, equal prior odds) and ``differs`` (hypothesis, param); one child
        per hypothesis with its fit (see :func:`fit_group`).  ``attrs["best_loo"]`` and
        ``attrs["best_evidence"]`` name the winners.
    """
    import arviz as az
    import xarray as xr

    names = list(names)
    if hypotheses is None:
        hypotheses = {"none": [], **{n: [n] for n in names}, "all": list(names)}
    masks = _hypothesis_masks(hypotheses, names, covariates, test_covariate)
    ss = np.random.SeedSequence(random_seed)
    seeds = [int(c.generate_state(1)[0]) for c in ss.spawn(2 * len(masks))]
    fits, rows = {}, []
    for k, (label, mk) in enumerate(masks.items()):
        lz, lz_se, ess = group_log_evidence(means, covs, design, beta_mu=beta_mu, beta_sd=beta_sd,
                                            tau_sd=tau_sd, beta_mask=mk, names=names,
                                            n_draws=n_evidence_draws, random_seed=seeds[2 * k + 1])
        row = (np.nan, np.nan, np.nan, np.nan)
        if loo:
            dt = fit_group(means, covs, design, names=names, covariates=covariates, recordings=recordings,
                           beta_mu=beta_mu, beta_sd=beta_sd, tau_sd=tau_sd, beta_mask=mk, draws=draws,
                           tune=tune, chains=chains, random_seed=seeds[2 * k])
            res = az.loo(dt, var_name="m")
            fits[label] = dt
            row = (float(res.elpd), float(res.se), float(res.p), float(np.nanmax(np.asarray(res.pareto_k))))
        rows.append(row + (lz, lz_se, ess))
    R = np.array(rows)
    lz = R[:, 4]
    post = np.exp(lz - lz.max())
    post /= post.sum()
    labels = list(masks)
    c = list(covariates).index(test_covariate)
    comp = xr.Dataset(
        {"elpd_loo": ("hypothesis", R[:, 0]), "elpd_loo_se": ("hypothesis", R[:, 1]),
         "p_loo": ("hypothesis", R[:, 2]), "pareto_k_max": ("hypothesis", R[:, 3]),
         "log_evidence": ("hypothesis", lz), "log_evidence_se": ("hypothesis", R[:, 5]),
         "evidence_ess": ("hypothesis", R[:, 6]), "posterior_prob": ("hypothesis", post),
         "differs": (("hypothesis", "param"), np.array([masks[h][c] for h in labels]))},
        coords={"hypothesis": labels, "param": names})
    comp.attrs.update({"test_covariate": test_covariate,
                       "best_loo": labels[int(np.argmax(R[:, 0]))] if loo else "",
                       "best_evidence": labels[int(np.argmax(lz))],
                       "loo": "PSIS-LOO over recordings (arviz.loo), theta_r integrated out",
                       "evidence": "beta in closed form, tau by importance sampling"})
    tree = {"comparison": comp}
    for label, dt in fits.items():
        for child in dt.children:
            tree[f"{label}/{child}"] = dt[child].to_dataset()
    out = xr.DataTree.from_dict(tree)
    for label, dt in fits.items():
        out[label].attrs.update(dict(dt.attrs))
    out.attrs.update({"nmm_inference_version": __version__, **comp.attrs})
    return out


def plot_group_effects(results, *, covariate=None, hdi_prob=0.94, truth=None, ax=None):
    """Forest plot of group effects: posterior mean and HDI per parameter, one row per fit.

    Parameters
    ----------
    results : xarray.DataTree or dict label -> DataTree
        Fits from :func:`fit_group` or :func:`nmm_inference.group_joint.fit_joint`.
    covariate : str, optional
        The covariate to show (default: every covariate that is not an all-ones column).
    hdi_prob : float
    truth : dict (covariate, param) -> float, optional
        True values to mark (simulations).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    if not isinstance(results, dict):
        results = {"": results}
    first = next(iter(results.values()))
    covs = list(first["posterior"]["beta"]["covariate"].values)
    if covariate is None:
        X = first["constant_data"]["design"].values if "constant_data" in first.children else None
        show = [c for i, c in enumerate(covs) if X is None or not np.all(X[:, i] == 1.0)] or covs
    else:
        show = [covariate]
    rows = []
    for label, dt in results.items():
        tab = group_effects_table(dt, hdi_prob=hdi_prob)
        rows += [(label, r) for r in tab if r["covariate"] in show]
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.5, 0.32 * len(rows) + 1.2))
    else:
        fig = ax.figure
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    labels = list(results)
    for y, (label, r) in enumerate(rows[::-1]):
        col = colors[labels.index(label) % len(colors)]
        ax.plot([r["hdi_low"], r["hdi_high"]], [y, y], color=col, lw=2)
        ax.plot(r["mean"], y, "o", color=col, mfc="white" if not r["excludes_zero"] else col)
        if truth is not None and (r["covariate"], r["param"]) in truth:
            ax.plot(truth[(r["covariate"], r["param"])], y, "kx")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{r['covariate']}: {r['param']}" + (f" ({label})" if label else "")
                        for label, r in rows[::-1]], fontsize=8)
    ax.axvline(0.0, color="0.5", lw=0.8, ls="--")
    ax.set_xlabel(f"group effect (SPM scale), mean and {int(round(100 * hdi_prob))} % HDI; "
                  "filled: HDI excludes 0")
    fig.tight_layout()
    return fig
