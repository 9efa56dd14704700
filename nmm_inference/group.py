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
"""

from __future__ import annotations

import numpy as np

from ._version import __version__
from .errors import DataError, ParameterError

__all__ = ["summarize_posteriors", "fit_group", "group_effects_table"]


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


def fit_group(means, covs, design, *, names, covariates, recordings=None, beta_sd=1.0,
              tau_sd=0.5, draws=1000, tune=1000, chains=4, random_seed=None, progressbar=False):
    """Second-level Bayesian linear model over first-level posterior summaries.

    Parameters
    ----------
    means : array, shape (n_rec, n_par)
    covs : array, shape (n_rec, n_par, n_par)
        First-level posterior means and covariances (SPM scale).
    design : array, shape (n_rec, n_cov)
        Design matrix (e.g. a column of ones and a patient indicator).
    names : sequence of str, length n_par
        Parameter names (coordinates of ``param``).
    covariates : sequence of str, length n_cov
        Column names of the design (coordinates of ``covariate``).
    recordings : sequence of str, optional
        Recording labels (coordinates of ``recording``).
    beta_sd : float
        Prior SD of every group effect (SPM scale; log-units for most parameters).
    tau_sd : float
        Half-normal prior scale of the between-recording SDs.
    draws, tune, chains : int
        NUTS settings (PyMC's sampler with the NUMBA backend).
    random_seed : int, optional

    Returns
    -------
    xarray.DataTree
        ``posterior`` with ``beta`` (covariate, param), ``tau`` (param) and ``theta``
        (recording, param); ``sample_stats``; attrs with provenance and convergence.
    """
    import pymc as pm

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
    recordings = list(recordings) if recordings is not None else [f"rec{i}" for i in range(n_rec)]
    coords = {"recording": recordings, "param": list(names), "covariate": list(covariates)}
    with pm.Model(coords=coords):
        beta = pm.Normal("beta", 0.0, beta_sd, dims=("covariate", "param"))
        tau = pm.HalfNormal("tau", tau_sd, dims="param")
        eps = pm.Normal("eps", 0.0, 1.0, dims=("recording", "param"))
        theta = pm.Deterministic("theta", pm.math.dot(X, beta) + tau * eps, dims=("recording", "param"))
        pm.MvNormal("m", mu=theta, chol=Lc, observed=m, dims=("recording", "param"))
        idata = pm.sample(draws=draws, tune=tune, chains=chains, random_seed=random_seed,
                          progressbar=progressbar, compile_kwargs={"mode": "NUMBA"},
                          target_accept=0.9)
    import arviz as az

    dt = idata if hasattr(idata, "children") else idata.to_datatree()
    s = az.summary(dt, var_names=["beta", "tau"])
    rhat = float(np.nanmax(np.asarray(s["r_hat"], float)))
    ess = float(np.nanmin(np.asarray(s["ess_bulk"], float)))
    ndiv = int(np.asarray(dt["sample_stats"]["diverging"]).sum())
    dt.attrs.update({"nmm_inference_version": __version__, "model": "two-stage group model",
                     "r_hat_max": rhat, "ess_bulk_min": ess, "n_divergent": ndiv,
                     "converged": int(rhat <= 1.01 and ess >= 400 and ndiv == 0)})
    return dt


def group_effects_table(dt, *, hdi_prob=0.94):
    """Per (covariate, parameter): posterior mean, HDI, and whether the HDI excludes zero."""
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
                         "hdi_low": lo, "hdi_high": hi, "excludes_zero": bool(lo > 0 or hi < 0)})
    return rows
