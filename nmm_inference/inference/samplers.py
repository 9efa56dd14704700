"""Samplers for the CMC spectral posterior.

``"nutpie"`` (default)
    nutpie's NUTS on the Warp-U transformed target (:mod:`._target`): modes from
    multi-start MAP, whitened by their Laplace covariances and merged into one near-normal
    density.  The log density is a numba C callback, so nutpie's Rust threads evaluate it
    in parallel without Python, and nothing is compiled per data set (the callback is
    cached on disk by numba).
``"pymc"``
    PyMC's NUTS on the same warped target (a PyTensor Op around the same numba function).
``"smc"``
    ``pymc.sample_smc`` on the explicit PyMC model (named parameters with SPM's priors,
    the LFP gain unfolded); tempering from the prior finds and weights modes on its own
    and gives a log-evidence estimate.  Slow (Python per particle).
``"laplace"``
    Draws from the mixture of Laplace approximations at the modes, weighted by their
    Laplace evidence -- SPM's kind of answer, in well under a second.

Each returns a :class:`SamplerResult` of draws in sampler coordinates; the model object
maps them to named parameters, pointwise log-likelihoods and predictive draws.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from . import _target as T

logger = logging.getLogger("nmm_inference")

__all__ = ["SamplerResult", "SAMPLERS", "warp_setup", "whiten_components", "pilot_outlier_chains",
           "sample_nutpie", "sample_pymc", "sample_smc", "sample_laplace"]

SAMPLERS = ("nutpie", "pymc", "smc", "laplace")


@dataclass
class SamplerResult:
    """Draws in sampler coordinates plus sampler statistics.

    Attributes
    ----------
    sampler : str
        Which sampler made the draws, one of :data:`SAMPLERS`.
    phi : ndarray, shape (chains, draws, d)
        Draws in sampler coordinates (the problem's free parameters).
    stats : dict
        Statistic name -> ndarray (chains, draws): NUTS statistics under ArviZ's names
        (``diverging``, ``tree_depth``, ``step_size``, ...) for ``"nutpie"`` and ``"pymc"``,
        the log posterior ``lp`` for ``"laplace"``, empty for ``"smc"``.
    mode : ndarray of int, shape (chains, draws), optional
        Index of the component each draw was assigned to: the kept warp component for the
        NUTS samplers, the kept mode for ``"laplace"``; ``None`` for ``"smc"``.
    mode_probs : ndarray, shape (chains, draws, K), optional
        Conditional probabilities of the ``K`` kept warp components for each draw (NUTS
        samplers only).
    z : ndarray, shape (chains, draws, d), optional
        The draws in warped coordinates (NUTS samplers only).
    log_evidence : float, optional
        Log evidence in the problem's internal (scaled) frame, where the sampler estimates
        it (``"smc"``, ``"laplace"``); ``None`` otherwise.
    log_evidence_se : float, optional
        Monte Carlo standard error of ``log_evidence`` (``"smc"`` only).
    info : dict
        Sampler-specific settings and diagnostics (e.g. ``pareto_k`` for ``"laplace"``).
    wall_s : float
        Wall-clock seconds of the sampling itself (0 for ``"laplace"``).
    """

    sampler: str
    phi: np.ndarray                      # (chains, draws, d)
    stats: dict = field(default_factory=dict)   # name -> (chains, draws)
    mode: np.ndarray | None = None       # (chains, draws) index into the kept modes
    mode_probs: np.ndarray | None = None  # (chains, draws, K)
    z: np.ndarray | None = None          # warped draws (chains, draws, d)
    log_evidence: float | None = None    # internal frame
    log_evidence_se: float | None = None
    info: dict = field(default_factory=dict)
    wall_s: float = 0.0


#: Smallest weight of a ridge tile (a profile point, not a mode) used in the warp.
MIN_TILE_WEIGHT = 0.01


def warp_setup(problem, modes, *, min_mode_weight=1e-3, min_tile_weight=MIN_TILE_WEIGHT,
               lp_max=None):
    """Warp components: the modes with weight >= ``min_mode_weight`` and the ridge tiles
    (``n_hits == 0``) with weight >= ``min_tile_weight``; return ``(buf, kept, dropped)``.

    If no component passes, the first one is kept.

    Parameters
    ----------
    problem : nmm_inference.inference._problem.Problem
        The inversion (its ``d`` free parameters, log posterior and warp buffer).
    modes : list of Mode
        Warp components (modes and ridge tiles, with normalised weights), best first
        (:func:`~nmm_inference.inference.laplace.find_components`); at least one.
    min_mode_weight : float, optional
        Smallest weight of a mode (``n_hits > 0``) that is kept.
    min_tile_weight : float, optional
        Smallest weight of a ridge tile that is kept.
    lp_max : float, optional
        Upper bound on the log posterior used to skip negligible warp terms; default: the
        largest ``logp`` of ``modes`` plus 2.

    Returns
    -------
    buf : ndarray
        Packed warped target for the numba functions of
        :mod:`nmm_inference.inference._target`: the kept components' centres, Cholesky
        factors and Laplace log evidences (shifted so that the largest is 0).
    kept, dropped : list of Mode
        The components used and those left out.
    """
    kept = [m for m in modes
            if m.weight >= (min_mode_weight if m.n_hits > 0 else min_tile_weight)] or [modes[0]]
    dropped = [m for m in modes if m not in kept]
    lw = np.array([m.log_evidence for m in kept])
    lw = lw - lw.max()
    # bound on the log posterior used to skip negligible warp terms: the best mode + 2
    if lp_max is None:
        lp_max = max(m.logp for m in modes) + 2.0
    buf = problem.buffer(np.array([m.phi for m in kept]), np.array([m.chol for m in kept]), lw,
                         lp_max=lp_max)
    return buf, kept, dropped


def whiten_components(problem, components, Z, *, prior_count=5.0):
    """Re-whiten warp components by the mean and covariance of draws of the warped target.

    The Laplace approximations that define the warp describe the posterior's curvature at
    the modes only; where the posterior is wider, narrower or shifted (a long ridge, a
    tilted one), the warped density is far from a standard normal and NUTS with a diagonal
    mass matrix mixes slowly along the correlated directions.  Given draws ``Z`` of the
    warped target (a pilot run), every component ``(m_k, L_k)`` becomes
    ``(m_k + L_k mu, L_k A)`` with ``mu`` and ``A A^T`` the mean and (regularised) covariance
    of ``Z``: the warped target of the new components has mean ~0 and covariance ~I (a dense
    mass matrix, in effect).  The warp stays exact for any centres and Cholesky factors
    (only the sampler's efficiency depends on them), so nothing about the posterior is
    assumed.

    Parameters
    ----------
    problem : nmm_inference.inference._problem.Problem
        The inversion (its log posterior gives the components' new Laplace log evidence).
    components : list of Mode
        The warp components that made ``Z`` (the ``kept`` list of :func:`warp_setup`).
    Z : ndarray, shape (..., d)
        Draws of the warped target in warped coordinates (chains and draws pooled).
    prior_count : float, optional
        Regularisation: the covariance is shrunk towards the identity as if ``prior_count``
        draws with covariance I were added (``(n C + prior_count I) / (n + prior_count)``).

    Returns
    -------
    list of Mode
        New components (same order, weights and ``n_hits``), lower-triangular Cholesky
        factors ``L_k A``, covariances ``L_k A A^T L_k^T`` and log evidence
        ``logp(m_k') + d/2 log(2 pi) + log|L_k A|``.

    Raises
    ------
    ValueError
        If ``Z`` has non-finite values, fewer than two draws or the wrong dimension.
    """
    from .laplace import Mode

    d = problem.d
    Z = np.asarray(Z, dtype=float).reshape(-1, np.shape(Z)[-1])
    if Z.shape[1] != d or Z.shape[0] < 2 or not np.all(np.isfinite(Z)):
        raise ValueError(f"need finite warped draws of dimension {d}, got shape {Z.shape}")
    n = Z.shape[0]
    mu = Z.mean(axis=0)
    C = (n * np.cov(Z.T, ddof=1).reshape(d, d) + prior_count * np.eye(d)) / (n + prior_count)
    A = np.linalg.cholesky((C + C.T) / 2)
    out = []
    for m in components:
        L = m.chol @ A
        phi = m.phi + m.chol @ mu
        lp = float(problem.logp(phi, False)[0])
        le = lp + 0.5 * d * np.log(2 * np.pi) + float(np.sum(np.log(np.abs(np.diag(L)))))
        out.append(Mode(phi=phi, logp=lp, cov=L @ L.T, chol=L, log_evidence=le, weight=m.weight,
                        n_hits=m.n_hits, hessian_ok=m.hessian_ok))
    return out


def pilot_outlier_chains(Z, *, ratio=4.0):
    """Chains of a pilot run that a whitening covariance should leave out.

    A chain is an outlier when, along some direction, its draws' mean square deviation from
    the other chains' mean exceeds ``ratio`` times the other chains' variance (the largest
    generalised eigenvalue of the two second-moment matrices): a chain stuck far out in a
    tail, or in a region the others never visit, would otherwise set the scale of the
    whitening along that direction (measured on the EEG alpha fit: one pilot chain gave the
    pooled covariance an eigenvalue of 91 against 0.5-8 for the rest).  Fewer than half the
    chains are ever flagged; when more would be, none is (the chains disagree as a whole,
    and pooling them is the honest estimate).

    Parameters
    ----------
    Z : ndarray, shape (chains, draws, d)
        Warped draws of the pilot run.
    ratio : float, optional
        Threshold on the variance ratio (4: twice the standard deviation).

    Returns
    -------
    list of int
        Indices of the outlying chains (empty when none or fewer than three chains).
    """
    Z = np.asarray(Z, dtype=float)
    if Z.ndim != 3:
        raise ValueError(f"need warped draws of shape (chains, draws, d), got {Z.shape}")
    nc, _, d = Z.shape
    if nc < 3:
        return []
    ratios = np.empty(nc)
    for c in range(nc):
        rest = np.delete(Z, c, axis=0).reshape(-1, d)
        m = rest.mean(axis=0)
        C = np.cov(rest.T).reshape(d, d) + 1e-9 * np.eye(d)
        X = Z[c] - m
        M2 = X.T @ X / X.shape[0]
        Li = np.linalg.inv(np.linalg.cholesky(C))
        ratios[c] = float(np.linalg.eigvalsh(Li @ M2 @ Li.T).max())
    out = [int(c) for c in np.flatnonzero(ratios > ratio)]
    return out if 2 * len(out) < nc else []


def _map_warped(Z, buf, rng):
    nc, nd, d = Z.shape
    U = rng.uniform(size=nc * nd)
    phi, mode, probs = T.warp_map_draws(np.ascontiguousarray(Z.reshape(-1, d)), buf, U)
    K = probs.shape[1]
    return phi.reshape(nc, nd, d), mode.reshape(nc, nd), probs.reshape(nc, nd, K)


# ----------------------------------------------------------------------------- nutpie

_STAT_NAMES = {"diverging": "diverging", "depth": "tree_depth", "maxdepth_reached":
               "reached_max_treedepth", "step_size": "step_size", "mean_tree_accept":
               "acceptance_rate", "energy": "energy", "n_steps": "n_steps", "logp": "lp_warped",
               "energy_error": "energy_error"}


def _nutpie_model(buf, d):
    """A nutpie CompiledModel whose log density is the numba C callback on ``buf``."""
    import nutpie

    logp_c, expand_c = T.c_functions()
    user_data = np.ascontiguousarray(np.concatenate([[float(buf.size)], buf]))
    try:
        from nutpie.compile_pymc import CompiledPyMCModel

        return CompiledPyMCModel(
            dims={"z": ("warp_dim",)}, _coords={"warp_dim": np.arange(d)}, _shapes={"z": (d,)},
            _n_dim=d, compiled_logp_func=logp_c, compiled_expand_func=expand_c,
            initial_point_func=lambda seed: np.random.default_rng(seed).normal(0.0, 0.5, d),
            shared_data={}, shared_var_keys={}, user_data=user_data, n_expanded=d,
            shape_info=(["z"], [slice(0, d)], [(d,)]), logp_func=None, expand_func=None), "cfunc"
    except (ImportError, TypeError) as exc:   # nutpie changed its internals: public Python API
        logger.warning("nutpie's C-callback model is unavailable (%s); using nutpie.from_pyfunc "
                       "(Python callbacks, slower)", exc)
        from nutpie.compiled_pyfunc import from_pyfunc

        def make_logp_fn():
            def logp(x, **_):
                lp, g = T.warp_logp_grad(np.ascontiguousarray(x, dtype=float), buf)
                return float(lp), g
            return logp

        def make_expand_fn(*args):
            def expand(x, **_):
                return {"z": np.asarray(x, dtype=float).copy()}
            return expand

        return from_pyfunc(d, make_logp_fn, make_expand_fn, [np.dtype("float64")], [(d,)], ["z"],
                           coords={"warp_dim": np.arange(d)}, dims={"z": ("warp_dim",)},
                           make_initial_point_fn=lambda seed: np.random.default_rng(seed).normal(0.0, 0.5, d)
                           ), "pyfunc"


def _run_nutpie(buf, d, *, draws, tune, chains, seed, target_accept, adaptation, cores,
                progressbar, **nutpie_kwargs):
    import nutpie

    cm, kind = _nutpie_model(buf, d)
    tr = nutpie.sample(cm, draws=draws, tune=tune, chains=chains, seed=int(seed),
                       progress_bar=progressbar, target_accept=target_accept,
                       adaptation=adaptation, cores=cores, save_warmup=False, **nutpie_kwargs)
    Z = np.asarray(tr.posterior["z"].values, dtype=float)
    return Z, tr.sample_stats, kind


def sample_nutpie(problem, modes, *, draws=1000, tune=1000, chains=4, random_seed=None,
                  target_accept=0.8, adaptation="diag", min_mode_weight=1e-3, cores=None,
                  progressbar=False, pilot=0, pilot_tune=None, pilot_robust=True, **nutpie_kwargs):
    """NUTS (nutpie) on the warped posterior; see the module docstring.

    ``modes`` are the warp components (modes and ridge tiles,
    :func:`~nmm_inference.inference.laplace.find_components`).

    Parameters
    ----------
    problem : nmm_inference.inference._problem.Problem
        The inversion (its ``d`` free parameters, log posterior and warp buffer).
    modes : list of Mode
        Warp components, best first (see :func:`warp_setup`).
    draws, tune : int, optional
        Kept and warm-up iterations per chain.
    chains : int, optional
        Number of chains.
    random_seed : int, numpy.random.Generator or None, optional
        Seeds nutpie and the assignment of draws to components.
    target_accept : float, optional
        NUTS step-size adaptation target.
    adaptation : str, optional
        nutpie's mass-matrix adaptation (``"diag"``, ``"low_rank"``, ...).
    min_mode_weight : float, optional
        Smallest weight of a mode kept in the warp (see :func:`warp_setup`).
    cores : int, optional
        Chains run in parallel (nutpie's default when ``None``).
    progressbar : bool, optional
        Show nutpie's progress bar.
    pilot : int, optional
        Draws per chain of a pilot run; 0 (default): none.  With ``pilot > 0`` the warp
        components are re-whitened by the mean and covariance of the pilot's warped draws
        (:func:`whiten_components`) before the main run, whose draws alone are returned.
    pilot_tune : int, optional
        Tuning steps per chain of the pilot run (default: ``tune``).
    pilot_robust : bool, optional
        Leave pilot chains that :func:`pilot_outlier_chains` flags out of the whitening
        mean and covariance (listed in ``info["pilot_chains_left_out"]``).
    **nutpie_kwargs
        Passed to :func:`nutpie.sample`.

    Returns
    -------
    result : SamplerResult
        Draws, NUTS statistics, component assignments and the warped draws ``z``; ``info``
        names the nutpie model used (``"cfunc"``, or ``"pyfunc"`` when nutpie's internal
        C-callback model is unavailable) and, with a pilot run, its settings, wall time and
        the eigenvalues of the pilot's warped-draw covariance (``pilot_cov_eigvals``).
    buf : ndarray
        The packed warped target (see :func:`warp_setup`).
    kept, dropped : list of Mode
        Warp components used and left out.
    """
    rng = np.random.default_rng(random_seed)
    buf, kept, dropped = warp_setup(problem, modes, min_mode_weight=min_mode_weight)
    t0 = time.perf_counter()
    seed = rng.integers(2 ** 31 - 1)
    pilot_info = {}
    if pilot:
        pilot_tune = tune if pilot_tune is None else pilot_tune
        # the pilot's seed is derived from the main run's without drawing from ``rng``:
        # the main run and the component assignment get the same random numbers as
        # without a pilot
        pseed = np.random.default_rng([int(seed), 1]).integers(2 ** 31 - 1)
        Zp, ssp, _ = _run_nutpie(buf, problem.d, draws=int(pilot), tune=int(pilot_tune),
                                 chains=chains, seed=pseed,
                                 target_accept=target_accept, adaptation=adaptation,
                                 cores=cores, progressbar=progressbar, **nutpie_kwargs)
        lp_max = max(m.logp for m in modes) + 2.0
        out_chains = pilot_outlier_chains(Zp) if pilot_robust else []
        Zw = np.delete(Zp, out_chains, axis=0) if out_chains else Zp
        kept = whiten_components(problem, kept, Zw)
        buf, _, _ = warp_setup(problem, kept, min_mode_weight=0.0, min_tile_weight=0.0,
                               lp_max=lp_max)
        Zf = Zw.reshape(-1, problem.d)
        pilot_info = {"pilot": int(pilot), "pilot_tune": int(pilot_tune),
                      "pilot_chains_left_out": out_chains,
                      "pilot_wall_s": time.perf_counter() - t0,
                      "pilot_n_divergent": int(np.sum(np.asarray(ssp["diverging"].values)))
                      if "diverging" in ssp else -1,
                      "pilot_cov_eigvals": np.linalg.eigvalsh(np.cov(Zf.T)).tolist(),
                      "pilot_mean_norm": float(np.linalg.norm(Zf.mean(axis=0)))}
    Z, ss, kind = _run_nutpie(buf, problem.d, draws=draws, tune=tune, chains=chains,
                              seed=seed, target_accept=target_accept,
                              adaptation=adaptation, cores=cores, progressbar=progressbar,
                              **nutpie_kwargs)
    wall = time.perf_counter() - t0
    stats = {}
    for src, dst in _STAT_NAMES.items():
        if src in ss:
            v = np.asarray(ss[src].values)
            if v.dtype.kind in "biuf":
                stats[dst] = v
    phi, comp, probs = _map_warped(Z, buf, rng)
    info = {"adaptation": adaptation, "target_accept": target_accept, "nutpie_model": kind,
            "n_components": len(kept), "n_components_dropped": len(dropped), **pilot_info}
    res = SamplerResult("nutpie", phi, stats, comp, probs, Z, info=info, wall_s=wall)
    return res, buf, kept, dropped


# ----------------------------------------------------------------------------- PyMC NUTS


def sample_pymc(problem, modes, *, draws=1000, tune=1000, chains=4, random_seed=None,
                target_accept=0.8, min_mode_weight=1e-3, cores=None, progressbar=False,
                **sample_kwargs):
    """PyMC's NUTS on the warped posterior (same target as :func:`sample_nutpie`).

    Chains start from normal draws (standard deviation 0.5) in warped coordinates.

    Parameters
    ----------
    problem : nmm_inference.inference._problem.Problem
        The inversion (its ``d`` free parameters, log posterior and warp buffer).
    modes : list of Mode
        Warp components, best first (see :func:`warp_setup`).
    draws, tune : int, optional
        Kept and warm-up iterations per chain.
    chains : int, optional
        Number of chains.
    random_seed : int, numpy.random.Generator or None, optional
        Seeds the chains, their initial points and the assignment of draws to components.
    target_accept : float, optional
        NUTS step-size adaptation target.
    min_mode_weight : float, optional
        Smallest weight of a mode kept in the warp (see :func:`warp_setup`).
    cores : int, optional
        Processes for the chains; default ``min(chains, 2)``.
    progressbar : bool, optional
        Show PyMC's progress bar.
    **sample_kwargs
        Passed to :func:`pymc.sample`.

    Returns
    -------
    result : SamplerResult
        Draws, NUTS statistics, component assignments and the warped draws ``z``.
    buf : ndarray
        The packed warped target (see :func:`warp_setup`).
    kept, dropped : list of Mode
        Warp components used and left out.
    """
    import pymc as pm

    from ._ops import WarpLogpOp

    rng = np.random.default_rng(random_seed)
    buf, kept, dropped = warp_setup(problem, modes, min_mode_weight=min_mode_weight)
    d = problem.d
    with pm.Model(coords={"warp_dim": np.arange(d)}) as m:
        z = pm.Flat("z", dims="warp_dim")
        pm.Potential("warped_logp", WarpLogpOp(buf)(z))
    seeds = rng.integers(2 ** 31 - 1, size=chains)
    inits = [{"z": rng.normal(0.0, 0.5, d)} for _ in range(chains)]
    t0 = time.perf_counter()
    with m:
        idata = pm.sample(draws=draws, tune=tune, chains=chains, cores=cores or min(chains, 2),
                          random_seed=[int(s) for s in seeds], initvals=inits,
                          target_accept=target_accept, progressbar=progressbar,
                          compute_convergence_checks=False, **sample_kwargs)
    wall = time.perf_counter() - t0
    Z = np.asarray(idata.posterior["z"].values, dtype=float)
    stats = {}
    for nm in ("diverging", "tree_depth", "step_size", "acceptance_rate", "energy", "n_steps",
               "reached_max_treedepth", "energy_error"):
        if nm in idata.sample_stats:
            stats[nm] = np.asarray(idata.sample_stats[nm].values)
    phi, mode, probs = _map_warped(Z, buf, rng)
    info = {"n_modes_sampled": len(kept), "n_modes_dropped": len(dropped),
            "target_accept": target_accept}
    return SamplerResult("pymc", phi, stats, mode, probs, Z, info=info, wall_s=wall), buf, kept, dropped


# ----------------------------------------------------------------------------- SMC


def sample_smc(problem, pymc_model, *, draws=1000, chains=4, random_seed=None, cores=None,
               progressbar=False, **smc_kwargs):
    """``pymc.sample_smc`` on the explicit model; returns draws and the log evidence.

    Parameters
    ----------
    problem : nmm_inference.inference._problem.Problem
        The inversion (its ``d`` free parameters, log posterior and warp buffer).
    pymc_model : pymc.Model
        The explicit model, with one variable named like each of ``problem.names``.
    draws : int, optional
        Particles per chain.
    chains : int, optional
        Number of independent SMC runs.
    random_seed : int, numpy.random.Generator or None, optional
        Passed to :func:`pymc.sample_smc`.
    cores : int, optional
        Processes for the chains; default ``min(chains, 2)``.
    progressbar : bool, optional
        Show PyMC's progress bar.
    **smc_kwargs
        Passed to :func:`pymc.sample_smc`.

    Returns
    -------
    SamplerResult
        ``phi`` (chains, draws, d) in the order of ``problem.names``, with the gain
        coordinate ``log|L| + log(N)/2`` in the LFP-gain column (as the NUTS routes);
        ``log_evidence``: log of the mean over chains of each chain's final SMC estimate
        of the marginal likelihood, ``log_evidence_se``: their standard
        deviation over ``sqrt(chains)`` (NaN for one chain); ``info`` holds the per-chain
        estimates.
    """
    import pymc as pm

    t0 = time.perf_counter()
    with pymc_model:
        idata = pm.sample_smc(draws=draws, chains=chains, random_seed=random_seed,
                              cores=cores or min(chains, 2), progressbar=progressbar,
                              compute_convergence_checks=False, **smc_kwargs)
    wall = time.perf_counter() - t0
    post = idata.posterior
    cols = []
    for i, nm in enumerate(problem.names):
        v = np.asarray(post[nm].values, dtype=float)
        if i == problem.fold:
            v = np.log(np.maximum(np.abs(v), 1e-300))
        cols.append(v)
    phi = np.stack(cols, axis=-1)
    if problem.fold >= 0:
        # the rest of the pipeline (theta_matrix, abs_gain_many) reads the gain column as the
        # gain coordinate u = log|L| + log(N)/2, as the NUTS routes produce it
        shape = phi.shape
        phi = problem._logabs_to_u(phi.reshape(-1, shape[-1])).reshape(shape)
    lml = np.asarray(idata.sample_stats["log_marginal_likelihood"].values)
    # PyMC stores the per-stage values of each chain; the evidence is the last finite one
    per_chain = []
    for c in range(lml.shape[0]):
        v = np.asarray(lml[c], dtype=object).ravel()
        vals = []
        for x in v:
            a = np.atleast_1d(np.asarray(x, dtype=float))
            vals.extend(a[np.isfinite(a)].tolist())
        per_chain.append(vals[-1] if vals else np.nan)
    per_chain = np.array(per_chain, dtype=float)
    le = float(np.log(np.mean(np.exp(per_chain - per_chain.max()))) + per_chain.max())
    se = float(np.std(per_chain, ddof=1) / np.sqrt(len(per_chain))) if len(per_chain) > 1 else np.nan
    stats = {}
    info = {"log_evidence_per_chain": per_chain.tolist()}
    for nm in ("beta", "accept_rate"):
        if nm in idata.sample_stats:
            info[nm] = str(np.asarray(idata.sample_stats[nm].values).tolist())[:2000]
    return SamplerResult("smc", phi, stats, log_evidence=le, log_evidence_se=se, info=info,
                         wall_s=wall)


# ----------------------------------------------------------------------------- Laplace


def sample_laplace(problem, modes, *, draws=1000, chains=4, random_seed=None,
                   min_mode_weight=0.0):
    """Draws from the Laplace mixture (modes weighted by their Laplace evidence).

    The quality of the approximation is reported as the Pareto k of the importance ratios
    ``p / q`` (``info["pareto_k"]``; above 0.7 the Gaussian mixture is not a good
    description of the posterior).

    Parameters
    ----------
    problem : nmm_inference.inference._problem.Problem
        The inversion (its ``d`` free parameters, log posterior and warp buffer).
    modes : list of Mode
        Posterior modes with normalised Laplace weights, best first.
    draws : int, optional
        Draws per chain.
    chains : int, optional
        Number of chains (the draws are independent; chains only shape the output).
    random_seed : int, numpy.random.Generator or None, optional
        Seed of the draws.
    min_mode_weight : float, optional
        Smallest weight of a mode kept (at least 1e-12; the best mode is kept if none
        passes); the kept weights are renormalised.

    Returns
    -------
    SamplerResult
        Draws, their log posterior (``stats["lp"]``), the mode of each draw, the
        importance-sampling estimate of the log evidence (internal frame) and
        ``info["pareto_k"]`` (NaN if it could not be computed).  Draws of the mixture where
        the posterior density is 0 are redrawn (the mixture restricted to the posterior's
        support; their number is ``info["n_redrawn_outside_support"]``, and
        ``info["n_outside_support"]`` counts any left after 50 rounds).
    """
    from arviz_stats.base import array_stats

    from scipy.special import logsumexp

    rng = np.random.default_rng(random_seed)
    kept = [m for m in modes if m.weight >= max(min_mode_weight, 1e-12)] or [modes[0]]
    w = np.array([m.weight for m in kept])
    w /= w.sum()
    n = draws * chains
    d = problem.d

    def draw(size):
        c = rng.choice(len(kept), size=size, p=w)
        x = np.empty((size, d))
        for k, m in enumerate(kept):
            idx = np.flatnonzero(c == k)
            x[idx] = m.phi + rng.standard_normal((idx.size, d)) @ m.chol.T
        return x, c, np.array([problem.logp(p, False)[0] for p in x])

    def log_q(x):
        lqk = np.full((x.shape[0], len(kept)), -np.inf)
        for k, m in enumerate(kept):
            r = np.linalg.solve(m.chol, (x - m.phi).T).T
            lqk[:, k] = (np.log(w[k]) - 0.5 * np.sum(r * r, axis=1)
                         - np.sum(np.log(np.diag(m.chol))) - 0.5 * d * np.log(2 * np.pi))
        return logsumexp(lqk, axis=1)

    phi, comp, lp = draw(n)
    # importance-sampling estimate of the evidence (internal frame) from the first round, in
    # which draws outside the posterior's support count with weight 0
    lr0 = np.where(np.isfinite(lp), lp - log_q(phi), -np.inf)
    fin = np.isfinite(lr0)
    le = float(logsumexp(lr0[fin]) - np.log(n)) if fin.any() else float("nan")
    # draws where the posterior density is 0 (e.g. a delay operator that does not converge)
    # are not posterior draws: redraw them, i.e. sample the mixture restricted to the support
    n_outside = int(np.sum(~np.isfinite(lp)))
    for _ in range(50):
        bad = np.flatnonzero(~np.isfinite(lp))
        if bad.size == 0:
            break
        phi[bad], comp[bad], lp[bad] = draw(bad.size)
    n_left = int(np.sum(~np.isfinite(lp)))
    # Pareto k of the importance ratios p/q (q restricted to the support: a constant factor)
    lr = np.where(np.isfinite(lp), lp - log_q(phi), -np.inf)
    try:
        _, khat = array_stats.psislw(lr, r_eff=1.0)
        khat = float(khat)
    except Exception:  # noqa: BLE001 - diagnostic only
        khat = float("nan")
    info = {"pareto_k": khat, "n_modes_sampled": len(kept), "n_redrawn_outside_support": n_outside,
            "n_outside_support": n_left}
    return SamplerResult("laplace", phi.reshape(chains, draws, d),
                         {"lp": lp.reshape(chains, draws)},
                         mode=comp.reshape(chains, draws), log_evidence=le, info=info)
