"""Convergence diagnostics, warnings and evidence estimates for fitted CMC models.

Every fit carries R-hat (rank-normalised split R-hat), bulk and tail ESS for every
parameter and the number of divergent transitions (Vehtari et al. 2021).  A fit that fails
the checks says so: a :class:`~nmm_inference.errors.ConvergenceWarning` with what to try,
and ``attrs["converged"] = 0`` plus ``attrs["convergence"]`` (the reasons) on the returned
``DataTree``.

The log evidence of the default sampler is a Warp-U bridge-sampling estimate (Meng & Wong
1996; Wang, Jones & Meng 2022): the warped density ``pi(z)`` of
:mod:`nmm_inference.inference._target` integrates to the posterior's normalising constant,
and is bridged to a standard normal from its own NUTS draws.

References
----------
Vehtari A, Gelman A, Simpson D, Carpenter B, Buerkner P-C (2021) Bayesian Analysis
16:667-718. doi:10.1214/20-BA1221
Meng X-L, Wong WH (1996) Statistica Sinica 6:831-860.
Wang L, Jones DE, Meng X-L (2022) J Am Stat Assoc 117:835-851. doi:10.1080/01621459.2020.1825447
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from ..errors import ConvergenceWarning

logger = logging.getLogger("nmm_inference")

__all__ = ["convergence_summary", "warn_convergence", "bridge_log_evidence", "compare_models",
           "RHAT_MAX", "ESS_PER_CHAIN"]

#: Largest acceptable R-hat.
RHAT_MAX = 1.01
#: Smallest acceptable bulk and tail ESS per chain (so 400 for 4 chains).
ESS_PER_CHAIN = 100


def convergence_summary(posterior, *, n_divergent=0, sampler="nutpie", var_names=None,
                        rhat_max=RHAT_MAX, ess_per_chain=ESS_PER_CHAIN):
    """R-hat, ESS and divergences of a posterior ``xarray.Dataset`` (dims chain, draw).

    A fit is converged when R-hat <= ``rhat_max`` and bulk and tail ESS >=
    ``ess_per_chain * n_chains`` for every variable, there are at least two chains and
    there are no divergences; divergences alone, in at most 0.1 % of the draws, do not
    make it unconverged (they are still listed in ``problems``).

    Parameters
    ----------
    posterior : xarray.Dataset
        Posterior draws with dims ``chain`` and ``draw``.
    n_divergent : int, optional
        Number of divergent transitions of the run.
    sampler : str, optional
        Name of the sampler; for ``"laplace"`` (independent draws) nothing is computed and
        the fit counts as converged, with NaN diagnostics.  For ``"nutpie"`` and ``"pymc"``
        the advice includes the mode search.
    var_names : sequence of str, optional
        Variables of ``posterior`` to check (default: all).
    rhat_max : float, optional
        Largest acceptable R-hat.
    ess_per_chain : float, optional
        Smallest acceptable bulk and tail ESS per chain.

    Returns
    -------
    dict
        ``r_hat_max``, ``ess_bulk_min``, ``ess_tail_min`` (with the parameter names that
        attain them), ``n_divergent``, ``converged`` (bool), ``problems`` (list of str) and
        ``advice`` (str).  Also ``sampler`` and ``ess_min_required``; the ``*_param`` names
        and ``ess_min_required`` are absent for ``sampler="laplace"``.
    """
    import arviz as az

    if var_names is not None:
        posterior = posterior[list(var_names)]
    n_chains = posterior.sizes.get("chain", 1)
    out = {"sampler": sampler, "n_divergent": int(n_divergent)}
    if sampler == "laplace":
        out.update(converged=True, problems=[], advice="", r_hat_max=float("nan"),
                   ess_bulk_min=float("nan"), ess_tail_min=float("nan"))
        return out
    rhat = az.rhat(posterior)
    ess_b = az.ess(posterior, method="bulk")
    ess_t = az.ess(posterior, method="tail")
    r = {k: float(v) for k, v in rhat.data_vars.items()}
    eb = {k: float(v) for k, v in ess_b.data_vars.items()}
    et = {k: float(v) for k, v in ess_t.data_vars.items()}
    worst_r = max(r, key=lambda k: r[k] if np.isfinite(r[k]) else np.inf)
    worst_b = min(eb, key=lambda k: eb[k] if np.isfinite(eb[k]) else -np.inf)
    worst_t = min(et, key=lambda k: et[k] if np.isfinite(et[k]) else -np.inf)
    ess_min = ess_per_chain * n_chains
    problems = []
    bad_r = sorted(k for k in r if not (r[k] <= rhat_max))
    bad_b = sorted(k for k in eb if not (eb[k] >= ess_min))
    bad_t = sorted(k for k in et if not (et[k] >= ess_min))
    if n_chains < 2:
        problems.append("only one chain: R-hat cannot detect non-convergence")
    if bad_r:
        problems.append(f"R-hat > {rhat_max} for {bad_r} (max {r[worst_r]:.3f} at {worst_r})")
    if bad_b:
        problems.append(f"bulk ESS < {ess_min} for {bad_b} (min {eb[worst_b]:.0f} at {worst_b})")
    if bad_t:
        problems.append(f"tail ESS < {ess_min} for {bad_t} (min {et[worst_t]:.0f} at {worst_t})")
    if n_divergent > 0:
        problems.append(f"{n_divergent} divergent transition(s)")
    advice = []
    if bad_r or bad_b or bad_t:
        advice.append("run longer (more tune= and draws=)")
        if sampler in ("nutpie", "pymc"):
            advice.append("search harder for modes (n_starts=, mode_search={'explore_sd': (3, 6), "
                          "'explore_rounds': 10}) or lower min_mode_weight=")
            advice.append("try sampler='smc' for a strongly multimodal posterior")
    if n_divergent > 0:
        advice.append("raise target_accept (e.g. 0.95); inspect sample_stats.diverging")
    out.update(r_hat_max=r[worst_r], r_hat_max_param=worst_r, ess_bulk_min=eb[worst_b],
               ess_bulk_min_param=worst_b, ess_tail_min=et[worst_t], ess_tail_min_param=worst_t,
               ess_min_required=ess_min, problems=problems, advice="; ".join(advice))
    # divergences alone are reported but do not by themselves mark the fit unconverged when
    # they are very rare (< 0.1 % of draws): they come from the rejection of parameter
    # values whose delay operator does not converge (an infinite spectrum), not from
    # curvature.
    n_draws = posterior.sizes.get("chain", 1) * posterior.sizes.get("draw", 1)
    only_rare_div = (problems and all("divergent" in p for p in problems)
                     and n_divergent <= 0.001 * n_draws)
    out["converged"] = (not problems) or bool(only_rare_div)
    return out


def warn_convergence(summary, *, stacklevel=3):
    """Emit a ConvergenceWarning for an unconverged fit (and log the diagnostics).

    The diagnostics are logged at INFO level; the problems of a fit counted as converged
    (e.g. rare divergences) are logged at WARNING level instead of warned about.

    Parameters
    ----------
    summary : dict
        Output of :func:`convergence_summary` (``converged``, ``problems`` and ``advice`` are
        required).
    stacklevel : int, optional
        Passed to :func:`warnings.warn`, so that the warning points at the user's call.

    Warns
    -----
    ConvergenceWarning
        If ``summary["converged"]`` is false, with the problems and the advice.
    """
    logger.info("diagnostics: R-hat max %.4f, bulk ESS min %.0f, tail ESS min %.0f, %d divergent",
                summary.get("r_hat_max", np.nan), summary.get("ess_bulk_min", np.nan),
                summary.get("ess_tail_min", np.nan), summary.get("n_divergent", 0))
    if not summary["converged"]:
        warnings.warn("THE SAMPLER HAS NOT CONVERGED: " + "; ".join(summary["problems"])
                      + (". Try: " + summary["advice"] if summary["advice"] else ""),
                      ConvergenceWarning, stacklevel=stacklevel)
    elif summary.get("problems"):
        logger.warning("sampler notes: %s", "; ".join(summary["problems"]))


def _ess_1d(x):
    import arviz as az
    import xarray as xr

    ds = xr.Dataset({"x": (("chain", "draw"), np.atleast_2d(x))})
    return float(az.ess(ds, method="mean")["x"])


def bridge_log_evidence(buf, Z, *, n_ref=None, random_seed=None, max_iter=1000, tol=1e-10):
    """Warp-U bridge-sampling estimate of the log normalising constant of ``pi(z)``.

    Parameters
    ----------
    buf : ndarray
        Packed warped target (see :func:`nmm_inference.inference._target.pack`).
    Z : ndarray, shape (chains, draws, d)
        Draws from ``pi`` (the sampler's warped coordinates).
    n_ref : int | None
        Number of standard-normal reference draws (default: as many as posterior draws).
    random_seed : int or numpy.random.Generator, optional
        Seed of the reference draws.
    max_iter : int, optional
        Maximum number of iterations of the Meng-Wong fixed-point equation.
    tol : float, optional
        Absolute tolerance on the change of the log ratio between iterations.

    Returns
    -------
    (float, float)
        Log evidence and its Monte Carlo standard error (from the spread of the per-chain
        estimates), in the frame of the packed data.  The standard error is NaN for a
        single chain.
    """
    from scipy.special import logsumexp

    from . import _target as T

    rng = np.random.default_rng(random_seed)
    nc, nd, d = Z.shape
    n_ref = n_ref or nc * nd
    Zr = rng.standard_normal((n_ref, d))

    def lphi(x):
        return -0.5 * np.sum(x * x, axis=1) - 0.5 * d * np.log(2 * np.pi)

    l_post_all = T.warp_logp_many(np.ascontiguousarray(Z.reshape(-1, d)), buf) - lphi(Z.reshape(-1, d))
    l_ref = T.warp_logp_many(Zr, buf) - lphi(Zr)

    def solve(l1, n1_eff):
        n1 = l1.size
        n2 = l_ref.size
        s1 = n1_eff / (n1_eff + n2)
        s2 = n2 / (n1_eff + n2)
        fin2 = np.isfinite(l_ref)
        lr = float(np.median(l1[np.isfinite(l1)]))
        for _ in range(max_iter):
            # numerator: mean over ref of e^{l2} / (s1 e^{l2} + s2 r)
            num = logsumexp(l_ref[fin2] - np.logaddexp(np.log(s1) + l_ref[fin2], np.log(s2) + lr)) - np.log(n2)
            den = logsumexp(-np.logaddexp(np.log(s1) + l1, np.log(s2) + lr)) - np.log(n1)
            new = num - den
            if abs(new - lr) < tol:
                lr = new
                break
            lr = new
        return lr

    n_eff = max(_ess_1d(l_post_all.reshape(nc, nd)), 10.0)
    le = solve(l_post_all, n_eff)
    per = []
    if nc > 1:
        lpc = l_post_all.reshape(nc, nd)
        for c in range(nc):
            per.append(solve(lpc[c], max(n_eff / nc, 5.0)))
        se = float(np.std(per, ddof=1) / np.sqrt(nc))
    else:
        se = float("nan")
    return float(le), se


def compare_models(fits):
    """Rank fitted models of the same spectrum by PSIS-LOO and by log evidence.

    Parameters
    ----------
    fits : dict of str to xarray.DataTree
        Results of :meth:`~nmm_inference.inference.CMCModel.fit` on the same data, e.g. with
        and without a parameter free.

    Returns
    -------
    pandas.DataFrame
        ``arviz.compare`` (elpd_loo, its SE and difference, weights) joined with
        ``log_evidence``, its SE and the posterior model probability from the evidences
        (equal prior model probabilities).
    """
    import arviz as az
    import pandas as pd

    names = list(fits)
    data = {}
    for nm in names:
        dt = fits[nm]
        data[nm] = dt
    cmp = az.compare(data)
    le = pd.Series({nm: fits[nm].attrs.get("log_evidence", np.nan) for nm in names}, name="log_evidence")
    se = pd.Series({nm: fits[nm].attrs.get("log_evidence_se", np.nan) for nm in names}, name="log_evidence_se")
    v = le.to_numpy(dtype=float)
    if np.all(np.isfinite(v)):
        w = np.exp(v - v.max())
        prob = pd.Series(w / w.sum(), index=le.index, name="p_model_evidence")
    else:
        prob = pd.Series(np.nan, index=le.index, name="p_model_evidence")
    return cmp.join(le).join(se).join(prob)
