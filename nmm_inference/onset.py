"""Time-resolved inversion through a recording: which parameters move, and when.

Two stages, each usable alone:

1. **Per-window fits** (:func:`fit_windows`, the cheap mode).  Every window's spectrum is
   inverted independently (one-source CMC, Whittle/Gamma likelihood with the recorded dof,
   free data scale) by MAP + Laplace: L-BFGS-B from the previous window's optimum (warm
   start), from the prior mean and from a few prior draws; the best optimum and the Laplace
   covariance of the finite-difference Hessian are kept (see
   :mod:`nmm_inference.inference.laplace`).  The overall log scale ``filter_offset`` (SPM's
   ``f(1)``), integrated out in closed form by the likelihood, is added back to the summary
   with its exact conditional law given the other parameters (``exp(-f) ~ Gamma(A, B)``) and
   the delta method over the Laplace posterior of the rest.  Windows are grouped into
   contiguous chunks (a chunk is one unit of :func:`nmm_inference.batch.run_batch`: Dask
   workers, atomic per-unit netCDF, resume after a kill); the warm start runs within a chunk,
   a chunk's first window gets more cold starts, and a backward sweep lets every window also
   start from its successor's optimum (keeping the better).  The optimiser is bounded at 20
   prior SDs from the prior mean.
2. **Linked change-point model** (:func:`link_windows`).  Each window's marginal Laplace
   posterior of each linked parameter (or, with ``measurement="likelihood"``, the same with
   the prior divided out) is a Gaussian measurement ``m_tj ~ N(theta_tj, kappa R_tj)``.
   Across windows every parameter ``j`` (of every channel) follows

   ``theta_tj = x_tj + s_j delta_j [t >= tau]``, ``x_tj = x_{t-1,j} + N(0, q**2 D_j dt)``,
   ``s_j ~ Bernoulli(p_move)``, ``delta_j ~ N(0, jump_sd**2 D_j)``

   with one change time ``tau`` shared by all (``D_j``: prior variance; ``dt``: window step
   in s; ``kappa >= 1`` tempers the per-window likelihoods for misfit).  Given ``tau`` the
   series are independent linear-Gaussian state-space models, so ``p(m | tau)``, the
   probability that each parameter jumps, the jump's posterior and the trajectories (Rauch-
   Tung-Striebel smoother) are exact, and ``tau`` is enumerated exactly (uniform prior over
   candidate windows, plus a no-change model).  All candidate change times are evaluated in
   O(T) by a forward Kalman filter and one backward information filter
   (:func:`changepoint_scalar`, :func:`changepoint_two_filter`; the batched augmented-state
   filter :func:`kalman_changepoint` is the O(T**2) reference).  ``q`` and ``kappa`` are
   chosen on a grid by type-II maximum likelihood.  Measurement errors are Student-t by
   default (iteratively reweighted), because real windows switch between posterior modes.

Approximations (stated once here and in the outputs' attrs): the per-window posteriors are
Gaussian (Laplace at the best optimum found; multimodality is not represented) and only
their marginals are used (correlations dropped); with the default posterior measurements the
prior is counted once per window (pooled jumps of weakly identified parameters are shrunk
towards zero); parameters and channels are independent given the onset time (spatial
correlation is ignored, which makes the onset interval too narrow when channels are
redundant); the hyperparameters ``q, kappa`` are plugged in, not integrated over; Student-t
errors by EM reweighting.  A single jump is a coarse description of a seizure that evolves:
the onset interval is conditional on this model and is typically too narrow on real
recordings.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time as _time
import zlib

import numpy as np

from .errors import DataError, ParameterError

logger = logging.getLogger("nmm_inference")

__all__ = ["DEFAULT_PARAMS", "fit_window", "fit_windows", "link_windows", "kalman_changepoint",
           "changepoint_two_filter", "changepoint_scalar", "plot_onset", "HDI_PROB"]

#: Credible-interval probability (equal-tailed) of every interval reported here.
HDI_PROB = 0.94

#: Parameters linked across windows by default: synaptic time constants, intrinsic gains,
#: delay, sigmoid slope and the overall log scale.  The LFP contributions (``contrib_ss``,
#: ``contrib_dp``) are observation-model parameters whose window optima flip between nearly
#: mirror-image modes (+-0.7 on the Malow recording); they can be linked on request.
DEFAULT_PARAMS = ("tau_ss", "tau_sp", "tau_ii", "tau_dp", "g_sp_sp", "g_sp_ss", "g_ii_ss",
                  "g_ii_ii", "delay_intrinsic", "sigmoid_slope", "filter_offset")
#: Name of the LFP-gain entry of the per-window summaries: the sampler's gain coordinate
#: ``log|L| + log(N)/2`` (see :mod:`nmm_inference.inference._problem`), not ``log|L|``.
GAIN_COORD = "lfp_gain_coord"
#: Optimiser bound, in prior SDs from the prior mean (sampler coordinates).
_U_BOUND = 20.0
#: Scale (log units) used for ``filter_offset`` in ``D`` (it has a flat prior).
OFFSET_SCALE = 1.0


# ------------------------------------------------------------------------------- window fits


def _problem(y, hz, dof, problem_kwargs):
    from .inference._problem import Problem

    kw = dict(problem_kwargs or {})
    kw.setdefault("data_scale", "free")
    if kw["data_scale"] != "free" or kw.get("likelihood", "gamma") != "gamma":
        raise ParameterError("per-window fits use the Gamma likelihood with data_scale='free' "
                             "(the overall scale is integrated out and added back exactly)")
    return Problem(hz=np.asarray(hz, float), y=np.asarray(y, float), dof=np.asarray(dof, float),
                   **kw)


def _spectra0(prob, phi):
    """Internal-frame spectra at f(1) = 0 for rows of ``phi``."""
    from .inference import _target as T

    phi = np.atleast_2d(np.asarray(phi, float))
    th = np.tile(prob.base, (phi.shape[0], 1))
    th[:, prob.free_idx] = phi
    if prob.fold >= 0:
        th[:, prob.free_idx[prob.fold]] = T.abs_gain_many(np.ascontiguousarray(phi), prob._buf)
    return T.spectra_many(np.ascontiguousarray(th), np.array(prob.hz, dtype=np.float64))


def _offset_summary(prob, phi, cov):
    """Mean, variance and covariance with phi of ``filter_offset`` (user units).

    ``exp(-f) | phi ~ Gamma(A, B(phi))`` exactly (flat prior), so ``E[f | phi] = log B - psi(A)``
    and ``Var[f | phi] = psi'(A)``; the marginal over the Laplace posterior of ``phi`` uses the
    delta method (``grad log B`` by central differences).
    """
    from scipy.special import polygamma, psi

    A = float(prob.alpha.sum())
    d = phi.size
    h = 1e-5 * np.maximum(prob.scale, 1e-3)
    pts = np.vstack([phi[None], phi + np.diag(h), phi - np.diag(h)])
    S = _spectra0(prob, pts)
    with np.errstate(divide="ignore", invalid="ignore"):
        logB = np.log(np.sum(prob.alpha * prob.y_int / S, axis=1))
    lp_, lm_ = logB[1:d + 1], logB[d + 1:]
    # central differences; one-sided where a neighbour has no spectrum (kernel status 2)
    grad = np.where(np.isfinite(lp_) & np.isfinite(lm_), (lp_ - lm_) / (2 * h),
                    np.where(np.isfinite(lp_), (lp_ - logB[0]) / h,
                             np.where(np.isfinite(lm_), (logB[0] - lm_) / h, 0.0)))
    mean = logB[0] - psi(A) - prob.log_k
    cross = cov @ grad
    var = float(grad @ cross + polygamma(1, A))
    return float(mean), var, cross


def fit_window(y, hz, dof, *, init=None, n_starts=4, random_seed=None, problem_kwargs=None,
               maxiter=2000):
    """MAP + Laplace posterior of one spectrum, optionally warm-started.

    Parameters
    ----------
    y : array-like, shape (n_freqs,)
        Power spectrum (any units).
    hz : array-like, shape (n_freqs,)
        Frequencies in Hz.
    dof : float | array-like
        Degrees of freedom of every bin.
    init : array-like, shape (d,), optional
        A starting point in sampler coordinates (e.g. the previous window's optimum).
    n_starts : int
        Optimiser starts: ``init`` (if given), the prior mean, and prior draws for the rest.
    random_seed : int | numpy.random.Generator | None
        Seeds the prior draws.
    problem_kwargs : dict, optional
        Passed to :class:`nmm_inference.inference._problem.Problem` (``free``, ``fixed``,
        ``priors``, ``dof_scale``, ...).
    maxiter : int
        L-BFGS-B iterations per start.

    Returns
    -------
    dict
        ``names`` (sampler coordinates, then ``filter_offset``; the gain entry is
        :data:`GAIN_COORD`), ``map``, ``cov`` (joint Laplace covariance), ``logp`` (at the
        optimum), ``phi`` (the optimum in sampler coordinates, for warm starts),
        ``prior_mean``, ``prior_sd`` (``nan`` for flat or non-Gaussian priors),
        ``hessian_ok``, ``n_ok`` (starts that reached a finite density).

    Raises
    ------
    DataError
        When no start reaches a finite posterior density.
    """
    from scipy.optimize import minimize
    from threadpoolctl import threadpool_limits

    from .inference.laplace import laplace_covariance

    if not isinstance(n_starts, (int, np.integer)) or n_starts < 1:
        raise ParameterError(f"n_starts must be a positive integer, got {n_starts!r}")
    prob = _problem(y, hz, dof, problem_kwargs)
    rng = np.random.default_rng(random_seed)
    c0, s = prob.center, prob.scale
    starts = []
    if init is not None:
        init = np.asarray(init, float)
        if init.shape != (prob.d,):
            raise ParameterError(f"init must have shape ({prob.d},), got {init.shape}")
        if np.all(np.isfinite(init)):
            starts.append(init)
    starts.append(c0)
    n_draw = max(n_starts - len(starts), 0)
    if n_draw:
        starts.extend(prob.prior_draws(n_draw, rng))

    def fun(u):
        lp, g = prob.logp(c0 + s * u)
        if not np.isfinite(lp):
            return 1e12, np.zeros_like(u)
        return -lp, -g * s

    best = None
    n_ok = 0
    with threadpool_limits(1):
        for x0 in starts[:max(n_starts, 1)]:
            u0 = (x0 - c0) / s
            if fun(u0)[0] >= 1e12:
                continue
            # bounded at +-20 prior SDs: an unbounded line search can step to absurd points
            # (e.g. log-multipliers of 1e4), where the numba kernel has crashed the process
            r = minimize(fun, np.clip(u0, -_U_BOUND, _U_BOUND), jac=True, method="L-BFGS-B",
                         bounds=[(-_U_BOUND, _U_BOUND)] * prob.d, options={"maxiter": maxiter})
            if r.fun >= 1e12:
                continue
            n_ok += 1
            if best is None or r.fun < best.fun:
                best = r
        if best is None:
            raise DataError("no optimiser start reached a finite posterior density for this "
                            "window; check the spectrum (positive, finite) and its frequencies")
        phi = c0 + s * best.x
        cov, _, ok = laplace_covariance(prob, phi)
        fm, fv, fc = _offset_summary(prob, phi, cov)
    d = prob.d
    full = np.empty((d + 1, d + 1))
    full[:d, :d] = cov
    full[:d, d] = full[d, :d] = fc
    full[d, d] = fv
    names = [GAIN_COORD if nm == "lfp_gain" else nm for nm in prob.names] + ["filter_offset"]
    pm = np.append(prob.mu, np.nan)
    psd_ = np.append(prob.sd, np.nan)
    if prob.fold >= 0:
        pm[prob.fold] = psd_[prob.fold] = np.nan
    return {"names": names, "map": np.append(phi, fm), "cov": full, "logp": -float(best.fun),
            "phi": phi, "prior_mean": pm, "prior_sd": psd_, "hessian_ok": bool(ok),
            "n_ok": n_ok}


def _fit_chunk(payload, *, random_seed=None):
    """One unit of :func:`fit_windows`: consecutive windows of one channel, warm-started."""
    import xarray as xr

    y = np.asarray(payload["y"], float)
    hz, dof = payload["hz"], payload["dof"]
    rng = np.random.default_rng(random_seed)
    out = []
    init = None
    t0 = _time.perf_counter()
    for i in range(y.shape[0]):
        n = payload["n_starts"] if init is not None else payload["n_starts_cold"]
        try:
            r = fit_window(y[i], hz, dof, init=init, n_starts=n, random_seed=rng,
                           problem_kwargs=payload.get("problem_kwargs"))
            init = r["phi"]
        except DataError as exc:
            logger.warning("window %s of channel %s: %s", payload["window"][i], payload["channel"],
                           exc)
            r = None
            init = None
        out.append(r)
    # backward sweep: every window is also started from its successor's final optimum and
    # keeps the better of the two, so that the optimum does not depend on the sweep direction
    # (a forward warm start alone can stay in a mode that a later window leaves)
    if payload.get("backward", True):
        for i in range(y.shape[0] - 2, -1, -1):
            if out[i + 1] is None:
                continue
            try:
                r = fit_window(y[i], hz, dof, init=out[i + 1]["phi"], n_starts=1,
                               problem_kwargs=payload.get("problem_kwargs"))
            except DataError:
                continue
            if out[i] is None or r["logp"] > out[i]["logp"] + 1e-6:
                out[i] = r
    ok = [r for r in out if r is not None]
    if not ok:
        raise DataError(f"no window of chunk {payload['window'][0]}-{payload['window'][-1]} "
                        f"(channel {payload['channel']}) could be fitted")
    names = ok[0]["names"]
    p = len(names)
    n = len(out)
    mp = np.full((n, p), np.nan)
    cv = np.full((n, p, p), np.nan)
    lp = np.full(n, np.nan)
    hok = np.zeros(n, bool)
    for i, r in enumerate(out):
        if r is not None:
            mp[i], cv[i], lp[i], hok[i] = r["map"], r["cov"], r["logp"], r["hessian_ok"]
    ds = xr.Dataset(
        {"map": (("window", "param"), mp), "cov": (("window", "param", "param_"), cv),
         "logp": (("window",), lp), "hessian_ok": (("window",), hok),
         "prior_mean": (("param",), ok[0]["prior_mean"]),
         "prior_sd": (("param",), ok[0]["prior_sd"])},
        coords={"window": np.asarray(payload["window"]), "param": names, "param_": names,
                "time": ("window", np.asarray(payload["time"], float))})
    ds.attrs["channel"] = str(payload["channel"])
    ds.attrs["wall_time_s"] = float(_time.perf_counter() - t0)
    return ds


def _stitch(ds, y, hz, dof, boundaries, problem_kwargs):
    """Offer each side of every unit boundary the other side's optimum (in this process).

    Units are fitted independently, so a unit's cold-started first window can settle in a
    different posterior mode than the previous unit's last window, and the warm start then
    carries that mode through the unit: a spurious "change" at the boundary.  Here the
    window after a boundary is restarted from the one before it (and vice versa), and an
    improvement is propagated window by window for as long as it improves the optimum, so
    the result no longer depends on where the boundaries fall.  Returns ``(ds, n_changed)``.
    """
    mp = ds["map"].values.copy()
    cv = ds["cov"].values.copy()
    lp = ds["logp"].values.copy()
    hok = ds["hessian_ok"].values.copy()
    nw = mp.shape[0]
    changed = 0

    def offer(i, j):
        """Restart window i from window j's optimum; True if it improved."""
        nonlocal changed
        if not (np.isfinite(lp[i]) and np.isfinite(lp[j]) and np.all(np.isfinite(mp[j]))):
            return False      # windows of failed units stay NaN (a rerun retries them)
        try:
            r = fit_window(y[i], hz, dof, init=mp[j, :-1], n_starts=1,
                           problem_kwargs=problem_kwargs)
        except DataError:
            return False
        if r["logp"] <= lp[i] + 1e-6:
            return False
        mp[i], cv[i], lp[i], hok[i] = r["map"], r["cov"], r["logp"], r["hessian_ok"]
        changed += 1
        return True

    for b in boundaries:
        i = b
        while i < nw and offer(i, i - 1):
            i += 1
        i = b - 1
        while i >= 0 and offer(i, i + 1):
            i -= 1
    out = ds.copy()
    out["map"] = (ds["map"].dims, mp)
    out["cov"] = (ds["cov"].dims, cv)
    out["logp"] = (ds["logp"].dims, lp)
    out["hessian_ok"] = (ds["hessian_ok"].dims, hok)
    return out, changed


def _spectra_input(psd, channels):
    if not (hasattr(psd, "dims") and {"window", "freq"} <= set(psd.dims)):
        raise DataError("psd must be the output of compute_windowed_psd (dims window, channel, "
                        f"freq), got {type(psd).__name__}")
    if "dof" not in psd.coords:
        raise DataError("psd has no 'dof' coordinate (use compute_windowed_psd)")
    if np.iscomplexobj(psd.values):
        raise DataError("psd must be real (a power spectrum)")
    if "channel" not in psd.dims:
        psd = psd.expand_dims(channel=["ch"])
    if channels is None:
        channels = list(psd["channel"].values)
    elif isinstance(channels, str):
        channels = [channels]
    missing = [c for c in channels if c not in list(psd["channel"].values)]
    if missing:
        raise DataError(f"channels {missing} not in {list(psd['channel'].values)}")
    psd = psd.sel(channel=list(channels)).transpose("window", "channel", "freq")
    v = psd.values
    if not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise DataError("the spectra must be finite and positive in every window")
    time = psd["window_center"].values if "window_center" in psd.coords else \
        np.arange(psd.sizes["window"], dtype=float)
    return psd, list(channels), np.asarray(time, float)


def _check_store(store, settings):
    """A store holds the units of one set of data and settings: refuse to mix."""
    from pathlib import Path

    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    path = store / "onset_settings.json"
    if path.exists():
        old = json.loads(path.read_text())
        if old != json.loads(json.dumps(settings)):
            diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            raise DataError(f"the store {store} holds window fits of other data or settings "
                            f"(differences in {diff}); use a new store")
    else:
        tmp = path.with_name(".tmp-onset_settings.json")
        tmp.write_text(json.dumps(settings))
        os.replace(tmp, path)


def fit_windows(psd, *, channels=None, chunk_size=50, n_starts=3, n_starts_cold=8,
                backward=True, problem_kwargs=None, store=None, scheduler="sync",
                n_workers=None, progressbar=False, random_seed=None):
    """Independent MAP + Laplace posteriors of every window (the cheap mode).

    Parameters
    ----------
    psd : xarray.DataArray
        Output of :func:`nmm_inference.features.compute_windowed_psd` (dims ``window``,
        ``channel``, ``freq``; coords ``dof``, ``window_center``).
    channels : str | list of str | None
        Channels to fit (default: all), each independently.
    chunk_size : int
        Consecutive windows per batch unit; the warm start runs within a unit.
    n_starts, n_starts_cold : int
        Optimiser starts of a warm-started window and of a unit's first window.
    backward : bool
        After the forward sweep, start every window once more from its successor's optimum
        and keep the better optimum (about 1.3x the cost; makes the chosen mode less
        dependent on the sweep direction); and, after the batch, offer the windows on each
        side of every unit boundary the other side's optimum, propagating improvements (in
        this process; see ``attrs["n_windows_stitched"]``).  Use ``backward=False`` when
        the "windows" are unrelated segments (e.g. one spectrum per recording).
    problem_kwargs : dict, optional
        Model settings passed to every window (``free``, ``fixed``, ``priors``, ...).
    store : str | Path | None
        With a store the units go through :func:`nmm_inference.batch.run_batch` (per-unit
        netCDF, resumable); without one they run in this process and nothing is written.
    scheduler, n_workers, progressbar
        As :func:`nmm_inference.batch.run_batch` (``scheduler=None``: a local Dask cluster
        with ``n_workers`` processes).
    random_seed : int | None
        Batch seed; each unit's seed derives from it and the unit key.

    Returns
    -------
    xarray.Dataset
        ``map`` (``channel``, ``window``, ``param``), ``cov`` (``channel``, ``window``,
        ``param``, ``param_``), ``logp``, ``hessian_ok``, ``prior_mean``/``prior_sd``
        (``param``); coord ``time`` (window centres, s).  Windows that could not be fitted
        hold NaN, and so do all windows of a unit whose worker failed (listed in attrs
        ``failed_units``; a rerun with the same store retries them).
    """
    import xarray as xr

    from .batch import run_batch, unit_seed

    psd, channels, time = _spectra_input(psd, channels)
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ParameterError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    nw = psd.sizes["window"]
    hz = np.asarray(psd["freq"].values, float)
    dof = np.asarray(psd["dof"].values, float)
    units = {}
    for ci, ch in enumerate(channels):
        for c0 in range(0, nw, chunk_size):
            idx = np.arange(c0, min(c0 + chunk_size, nw))
            key = f"c{ci:03d}-w{c0:05d}"
            units[key] = {"y": psd.values[idx, ci, :], "hz": hz, "dof": dof,
                          "window": idx, "time": time[idx], "channel": str(ch), "ci": ci,
                          "n_starts": int(n_starts), "n_starts_cold": int(n_starts_cold),
                          "backward": bool(backward), "problem_kwargs": problem_kwargs}
    t0 = _time.perf_counter()
    failed = {}
    if store is None:
        res = {}
        for k, p in units.items():
            try:
                res[k] = _fit_chunk(p, random_seed=unit_seed(random_seed, k))
            except DataError as exc:
                failed[k] = f"DataError: {exc}"
    else:
        _check_store(store, {"channels": [str(c) for c in channels], "n_windows": int(nw),
                             "chunk_size": int(chunk_size), "n_starts": int(n_starts),
                             "n_starts_cold": int(n_starts_cold), "backward": bool(backward),
                             "problem_kwargs": json.dumps(problem_kwargs or {}, default=str),
                             "random_seed": random_seed,
                             "freqs": [round(float(h), 9) for h in hz],
                             "data_crc": int(zlib.crc32(np.ascontiguousarray(psd.values).tobytes()))})
        br = run_batch(_fit_chunk, units, store=store, scheduler=scheduler,
                       n_workers=n_workers, progressbar=progressbar, random_seed=random_seed,
                       raise_on_error=False)
        failed = dict(br.failed)
        from .batch import load_results

        res = load_results(store, keys=set(units))
    if failed:
        logger.warning("%d of %d unit(s) failed and are left as NaN windows: %s", len(failed),
                       len(units), "; ".join(f"{k}: {v}" for k, v in list(failed.items())[:5]))
    done = list(res.values())
    if not done:
        raise DataError(f"no unit could be fitted ({'; '.join(list(failed.values())[:3])})")
    for k in failed:    # NaN placeholders with the failed unit's coordinates
        u = units[k]
        tmpl = done[0]
        n = len(u["window"])
        res[k] = tmpl.isel(window=[0] * n).assign_coords(
            window=np.asarray(u["window"]), time=("window", np.asarray(u["time"], float)))
        for v in ("map", "cov", "logp"):
            res[k][v] = res[k][v].copy(data=np.full(res[k][v].shape, np.nan))
        res[k]["hessian_ok"] = res[k]["hessian_ok"].copy(data=np.zeros(n, bool))
    per_ch = []
    n_stitched = 0
    for ci, ch in enumerate(channels):
        parts = [res[k] for k in sorted(res) if k.startswith(f"c{ci:03d}-")]
        ds = xr.concat([p.drop_vars(["prior_mean", "prior_sd"]) for p in parts], dim="window")
        ds["prior_mean"], ds["prior_sd"] = parts[0]["prior_mean"], parts[0]["prior_sd"]
        ds.attrs = {}
        if backward and nw > chunk_size:
            ds, k = _stitch(ds, psd.values[:, ci, :], hz, dof, range(chunk_size, nw, chunk_size),
                            problem_kwargs)
            n_stitched += k
        per_ch.append(ds.expand_dims(channel=[str(ch)]))
    out = xr.concat([d.drop_vars(["prior_mean", "prior_sd"]) for d in per_ch], dim="channel")
    out["prior_mean"], out["prior_sd"] = per_ch[0]["prior_mean"].isel(channel=0, drop=True), \
        per_ch[0]["prior_sd"].isel(channel=0, drop=True)
    out.attrs = {"method": "per-window MAP + Laplace (warm-started within units of "
                           f"{chunk_size} windows), Gamma/Whittle likelihood, free data scale",
                 "n_starts": int(n_starts), "n_starts_cold": int(n_starts_cold),
                 "wall_time_s": float(_time.perf_counter() - t0),
                 "failed_units": json.dumps(failed),
                 "n_windows_stitched": int(n_stitched),
                 "problem_kwargs": json.dumps(problem_kwargs or {}, default=str),
                 "window_length": float(psd.attrs.get("window_length", np.nan)),
                 "step": float(psd.attrs.get("step", np.nan))}
    return out


# ------------------------------------------------------------------------- linked model


def _pseudo_obs(fits, params, measurement="posterior", covariance="diagonal", min_info=0.1,
                vague=1e6):
    """Gaussian measurements ``N(m_t; theta_t, R_t)`` of every window's parameters.

    ``measurement="posterior"``: the window's Laplace posterior (MAP, covariance).
    ``measurement="likelihood"``: the prior divided out (directions where the window's data
    carry less than ``min_info`` of the prior's precision are made vague).

    Returns ``m`` (C, T, p), ``R`` (C, T, p, p), ``mu0`` (p), ``D`` (p) and ``valid`` (C, T).
    """
    names = list(fits["param"].values)
    bad = [p for p in params if p not in names]
    if bad:
        raise ParameterError(f"parameters {bad} are not in the window fits ({names})")
    if GAIN_COORD in params:
        raise ParameterError(f"{GAIN_COORD!r} is a sampler coordinate with a non-Gaussian prior; "
                             "it cannot be linked")
    idx = [names.index(p) for p in params]
    m = fits["map"].values[..., idx]
    C = fits["cov"].values[..., idx, :][..., idx]
    if covariance == "diagonal":    # marginal posteriors only: correlations dropped
        C = np.einsum("...ij,ij->...ij", C, np.eye(len(idx)))
    pm = fits["prior_mean"].values[idx]
    ps = fits["prior_sd"].values[idx]
    flat = ~np.isfinite(ps)          # filter_offset: flat prior
    prior_prec = np.where(flat, 0.0, 1.0 / np.where(flat, 1.0, ps) ** 2)
    mu0 = np.where(flat, 0.0, pm)
    D = np.where(flat, OFFSET_SCALE ** 2, np.where(flat, 1.0, ps) ** 2)
    nC, nT, p = m.shape
    valid = np.all(np.isfinite(m), axis=-1) & np.all(np.isfinite(C), axis=(-1, -2))
    mo = np.zeros_like(m)
    R = np.zeros_like(C)
    for c in range(nC):
        for t in range(nT):
            if not valid[c, t]:
                R[c, t] = np.diag(1e12 * D)
                mo[c, t] = mu0
                continue
            if measurement == "posterior":
                mo[c, t] = m[c, t]
                R[c, t] = (C[c, t] + C[c, t].T) / 2
                continue
            Cinv = np.linalg.inv(C[c, t])
            Lam = (Cinv + Cinv.T) / 2 - np.diag(prior_prec)
            eta = Cinv @ m[c, t] - prior_prec * mu0
            # whitened by D so that the floor is relative to the parameters' scales
            sD = np.sqrt(D)
            w, V = np.linalg.eigh(Lam * np.outer(sD, sD))
            e = V.T @ (sD * eta)
            low = w < min_info           # relative to the prior precision
            wk = np.where(low, 1.0 / vague, w)
            # uninformative directions: centre the pseudo-observation on the prior mean
            mu_w = V.T @ (mu0 / sD)
            z = np.where(low, mu_w, e / wk)
            mo[c, t] = sD * (V @ z)
            R[c, t] = np.outer(sD, sD) * ((V / wk) @ V.T)
    return mo, R, mu0, D, valid


def kalman_changepoint(m, R, *, mu0, P0, Q, J, taus, keep=False):
    """Exact marginal likelihoods of the change-point random-walk model, batched over ``taus``.

    Model: ``theta_t = x_t + delta [t >= tau]``, ``x_0 ~ N(mu0, P0)``,
    ``x_t = x_{t-1} + N(0, Q)``, ``delta ~ N(0, J)``, ``m_t ~ N(theta_t, R_t)``.

    Parameters
    ----------
    m : ndarray, shape (T, p)
        Pseudo-observations.
    R : ndarray, shape (T, p, p)
        Their covariances.
    mu0 : ndarray, shape (p,)
    P0, Q, J : ndarray, shape (p, p)
    taus : array-like of int, shape (K,)
        Change indices (first window after the change); ``tau >= T`` means no change.
    keep : bool
        Also return the filtered and predicted moments of every step (for smoothing).

    Returns
    -------
    dict
        ``loglik`` (K,): ``log p(m_1..m_T | tau)``; ``delta_mean`` (K, p) and ``delta_cov``
        (K, p, p): posterior of the jump given ``tau``; with ``keep``: ``mf``, ``Pf``
        (T, K, 2p[, 2p]) filtered and ``Pp`` predicted covariances.
    """
    m = np.asarray(m, float)
    R = np.asarray(R, float)
    T, p = m.shape
    taus = np.asarray(taus, int)
    K = taus.size
    z = np.zeros((K, 2 * p))
    z[:, :p] = mu0
    P = np.zeros((K, 2 * p, 2 * p))
    P[:, :p, :p] = P0
    P[:, p:, p:] = J
    ll = np.zeros(K)
    Qa = np.zeros((2 * p, 2 * p))
    Qa[:p, :p] = Q
    eye = np.eye(p)
    if keep:
        mf = np.empty((T, K, 2 * p))
        Pf = np.empty((T, K, 2 * p, 2 * p))
        Pp = np.empty((T, K, 2 * p, 2 * p))
    for t in range(T):
        if t > 0:
            P = P + Qa
        if keep:
            Pp[t] = P
        s = (t >= taus).astype(float)                   # (K,)
        pred = z[:, :p] + s[:, None] * z[:, p:]
        PH = P[:, :, :p] + s[:, None, None] * P[:, :, p:]     # (K, 2p, p) = P H'
        S = PH[:, :p, :] + s[:, None, None] * PH[:, p:, :] + R[t]
        S = (S + np.swapaxes(S, 1, 2)) / 2
        L = np.linalg.cholesky(S)
        v = m[t] - pred
        a = np.linalg.solve(L, v[..., None])[..., 0]
        ll += -0.5 * np.sum(a * a, axis=1) - np.sum(np.log(np.diagonal(L, axis1=1, axis2=2)),
                                                      axis=1) - 0.5 * p * np.log(2 * np.pi)
        Sinv = np.linalg.solve(L, np.broadcast_to(eye, S.shape))
        Sinv = np.swapaxes(Sinv, 1, 2) @ Sinv              # S^-1
        G = PH @ Sinv                                      # (K, 2p, p)
        z = z + (G @ v[..., None])[..., 0]
        P = P - G @ np.swapaxes(PH, 1, 2)
        P = (P + np.swapaxes(P, 1, 2)) / 2
        if keep:
            mf[t], Pf[t] = z, P
    out = {"loglik": ll, "delta_mean": z[:, p:].copy(), "delta_cov": P[:, p:, p:].copy()}
    if keep:
        out.update(mf=mf, Pf=Pf, Pp=Pp)
    return out


def changepoint_two_filter(m, R, *, mu0, P0, Q, J, taus):
    """Same quantities as :func:`kalman_changepoint` in O(T) for all ``taus`` at once.

    A change at ``tau`` only adds ``J`` to the random-walk variance of the step into window
    ``tau`` (``theta`` itself is a random walk with one bigger step).  So
    ``p(m | tau) = p(m_<tau) * integral N(theta_tau; a, B) beta_tau(theta_tau)`` with
    ``N(a, B)`` the forward (Kalman) prediction of window ``tau`` with variance
    ``P_{tau-1|tau-1} + Q + J``, and ``beta_tau(x) = p(m_tau..m_T | theta_tau = x)`` from
    one backward information filter, ``exp(c - x'Lam x / 2 + eta'x)``.  The jump follows from
    the joint Gaussian of ``theta_{tau-1}`` and ``z = w + delta`` (``E[delta | z] =
    J (Q + J)^-1 z``).  One forward and one backward pass serve every candidate.

    Parameters
    ----------
    m : array-like, shape (T, p)
        Pseudo-observations.
    R : array-like, shape (T, p, p)
        Their covariances (positive definite: the backward filter inverts them).
    mu0 : array-like, shape (p,)
        Prior mean of the random walk at the first window.
    P0 : array-like, shape (p, p)
        Prior covariance of the random walk at the first window.
    Q : array-like, shape (p, p)
        Covariance of each random-walk step.
    J : array-like, shape (p, p)
        Prior covariance of the jump ``delta``; ``Q + J`` must be invertible.
    taus : array-like of int, shape (K,)
        Change indices (first window after the change), each ``>= 1``; ``tau >= T`` means
        no change.

    Returns
    -------
    dict
        ``loglik``, ``delta_mean``, ``delta_cov`` as :func:`kalman_changepoint` (no-change
        entries, ``tau >= T``, have a zero jump with the prior covariance ``J``).

    Raises
    ------
    ParameterError
        If a change index is below 1.
    """
    m = np.asarray(m, float)
    R = np.asarray(R, float)
    T, p = m.shape
    taus = np.asarray(taus, int)
    eye = np.eye(p)
    l2pi = p * np.log(2 * np.pi)
    # forward filter (no change): filtered moments and log p(m_0..m_t)
    mf = np.empty((T, p))
    Pf = np.empty((T, p, p))
    lf = np.empty(T)
    x, P, ll = np.asarray(mu0, float).copy(), np.asarray(P0, float).copy(), 0.0
    for t in range(T):
        if t > 0:
            P = P + Q
        S = P + R[t]
        L = np.linalg.cholesky((S + S.T) / 2)
        v = m[t] - x
        a = np.linalg.solve(L, v)
        ll += -0.5 * a @ a - np.sum(np.log(np.diag(L))) - 0.5 * l2pi
        G = np.linalg.solve(S, P).T          # P S^-1 (S, P symmetric)
        x = x + G @ v
        P = P - G @ P
        P = (P + P.T) / 2
        mf[t], Pf[t], lf[t] = x, P, ll
    # backward information filter: beta_t(x) = p(m_t..m_T | theta_t = x)
    Lam = np.empty((T, p, p))
    eta = np.empty((T, p))
    cc = np.empty(T)
    Lb, eb, cb = np.zeros((p, p)), np.zeros(p), 0.0
    for t in range(T - 1, -1, -1):
        if t < T - 1:   # propagate beta_{t+1} through the random-walk step
            IQL = eye + Q @ Lb
            M = np.linalg.solve(IQL, Q)                # (I + Q Lam)^-1 Q = (Q^-1 + Lam)^-1
            M = (M + M.T) / 2
            sgn, ld = np.linalg.slogdet(IQL)
            LM = Lb @ M
            cb = cb - 0.5 * ld + 0.5 * eb @ M @ eb
            eb = eb - LM @ eb
            Lb = Lb - LM @ Lb
            Lb = (Lb + Lb.T) / 2
        Ri = np.linalg.inv(R[t])
        Ri = (Ri + Ri.T) / 2
        sgn, ldR = np.linalg.slogdet(R[t])
        Lb = Lb + Ri
        eb = eb + Ri @ m[t]
        cb = cb - 0.5 * m[t] @ Ri @ m[t] - 0.5 * ldR - 0.5 * l2pi
        Lam[t], eta[t], cc[t] = Lb, eb, cb
    if np.any(taus < 1):
        raise ParameterError("change indices must be >= 1 (at least one window before)")
    K = taus.size
    ll_out = np.empty(K)
    dmean = np.zeros((K, p))
    dcov = np.tile(np.asarray(J, float), (K, 1, 1))
    QJ = Q + J
    QJi = np.linalg.inv(QJ)
    Jg = J @ QJi                                      # E[delta | z] = Jg z
    none = taus >= T
    ll_out[none] = lf[T - 1]
    tk = taus[~none]
    if tk.size:      # all candidates at once (batched linear algebra)
        a_, Pprev, lpre = mf[tk - 1], Pf[tk - 1], lf[tk - 1]
        B = Pprev + QJ
        Lt, et, ct = Lam[tk], eta[tk], cc[tk]
        sgn, ld = np.linalg.slogdet(eye + B @ Lt)
        b = et - (Lt @ a_[..., None])[..., 0]
        Mb = (B @ np.linalg.solve(eye + Lt @ B, b[..., None]))[..., 0]   # (B^-1 + Lam)^-1 b
        ll_out[~none] = (lpre + ct - 0.5 * ld - 0.5 * np.einsum("ki,kij,kj->k", a_, Lt, a_)
                         + np.einsum("ki,ki->k", et, a_) + 0.5 * np.einsum("ki,ki->k", b, Mb))
        # posterior of (theta_{tau-1}, z) with theta_tau = theta_{tau-1} + z
        Pi = np.linalg.inv(Pprev)
        prec = np.empty((tk.size, 2 * p, 2 * p))
        prec[:, :p, :p] = Pi + Lt
        prec[:, :p, p:] = Lt
        prec[:, p:, :p] = Lt
        prec[:, p:, p:] = QJi + Lt
        info = np.concatenate([(Pi @ a_[..., None])[..., 0] + et, et], axis=1)
        cov2 = np.linalg.inv(prec)
        cov2 = (cov2 + np.swapaxes(cov2, 1, 2)) / 2
        mu2 = (cov2 @ info[..., None])[..., 0]
        zm, zc = mu2[:, p:], cov2[:, p:, p:]
        dmean[~none] = zm @ Jg.T
        dcov[~none] = J - Jg @ J + Jg @ zc @ Jg.T
    return {"loglik": ll_out, "delta_mean": dmean, "delta_cov": dcov}


def _rts(mf, Pf, Pp):
    """RTS smoother for the identity transition; arrays (T, K, n[, n])."""
    T = mf.shape[0]
    ms, Ps = mf.copy(), Pf.copy()
    for t in range(T - 2, -1, -1):
        Pn = Pp[t + 1]
        G = np.swapaxes(np.linalg.solve(Pn, np.swapaxes(Pf[t], 1, 2)), 1, 2)   # Pf Pn^-1
        ms[t] = mf[t] + (G @ (ms[t + 1] - mf[t])[..., None])[..., 0]
        Ps[t] = Pf[t] + G @ (Ps[t + 1] - Pn) @ np.swapaxes(G, 1, 2)
    return ms, Ps


def _mix_quantiles(w, mu, sd, probs, n_iter=60):
    """Quantiles of Gaussian mixtures: ``w`` (K,), ``mu``/``sd`` (K, ...) -> (len(probs), ...)."""
    from scipy.special import ndtr

    w = np.asarray(w, float)[(slice(None),) + (None,) * (mu.ndim - 1)]
    lo = np.min(mu - 10 * sd, axis=0)
    hi = np.max(mu + 10 * sd, axis=0)
    out = []
    for pr in probs:
        a, b = lo.copy(), hi.copy()
        for _ in range(n_iter):
            c = (a + b) / 2
            F = np.sum(w * ndtr((c - mu) / sd), axis=0)
            a = np.where(F < pr, c, a)
            b = np.where(F < pr, b, c)
        out.append((a + b) / 2)
    return np.stack(out)


def changepoint_scalar(m, R, *, mu0, P0, Q, J, taus):
    """:func:`changepoint_two_filter` for many independent scalar series at once.

    Parameters
    ----------
    m, R : ndarray, shape (T, n)
        Measurements and their variances of ``n`` independent series.
    mu0, P0, Q, J : ndarray, shape (n,)
        Initial mean and variance, random-walk variance per step, jump variance.
    taus : array-like of int, shape (K,)
        Change indices (``>= 1``); ``tau >= T`` means no change.

    Returns
    -------
    dict
        ``loglik`` (K, n), ``delta_mean`` (K, n), ``delta_var`` (K, n).
    """
    m = np.asarray(m, float)
    R = np.asarray(R, float)
    T, n = m.shape
    taus = np.asarray(taus, int)
    if np.any(taus < 1):
        raise ParameterError("change indices must be >= 1 (at least one window before)")
    l2pi = np.log(2 * np.pi)
    mf = np.empty((T, n))
    Pf = np.empty((T, n))
    lf = np.empty((T, n))
    x, P, ll = np.array(mu0, float), np.array(P0, float), np.zeros(n)
    for t in range(T):
        if t > 0:
            P = P + Q
        S = P + R[t]
        v = m[t] - x
        ll = ll - 0.5 * (v * v / S + np.log(S) + l2pi)
        G = P / S
        x = x + G * v
        P = P - G * P
        mf[t], Pf[t], lf[t] = x, P, ll
    Lam = np.empty((T, n))
    eta = np.empty((T, n))
    cc = np.empty((T, n))
    Lb, eb, cb = np.zeros(n), np.zeros(n), np.zeros(n)
    for t in range(T - 1, -1, -1):
        if t < T - 1:
            IQL = 1.0 + Q * Lb
            M = Q / IQL
            cb = cb - 0.5 * np.log(IQL) + 0.5 * eb * eb * M
            eb = eb - Lb * M * eb
            Lb = Lb - Lb * Lb * M
        Lb = Lb + 1.0 / R[t]
        eb = eb + m[t] / R[t]
        cb = cb - 0.5 * m[t] * m[t] / R[t] - 0.5 * np.log(R[t]) - 0.5 * l2pi
        Lam[t], eta[t], cc[t] = Lb, eb, cb
    K = taus.size
    out_ll = np.empty((K, n))
    dm = np.zeros((K, n))
    dv = np.broadcast_to(np.asarray(J, float), (K, n)).copy()
    none = taus >= T
    out_ll[none] = lf[T - 1]
    tk = taus[~none]
    if tk.size:
        QJ = Q + J
        a, Pp = mf[tk - 1], Pf[tk - 1]
        B = Pp + QJ
        Lt, et, ct = Lam[tk], eta[tk], cc[tk]
        b = et - Lt * a
        out_ll[~none] = (lf[tk - 1] + ct - 0.5 * np.log(1.0 + B * Lt) - 0.5 * a * a * Lt
                         + et * a + 0.5 * b * b * B / (1.0 + Lt * B))
        # posterior of (theta_{tau-1}, z = w + delta) given everything, then of delta
        pxx, pzz, pxz = 1.0 / Pp + Lt, 1.0 / QJ + Lt, Lt
        det = pxx * pzz - pxz * pxz
        i1, i2 = a / Pp + et, et
        zm = (-pxz * i1 + pxx * i2) / det
        zv = pxx / det
        Jg = J / QJ
        dm[~none] = Jg * zm
        dv[~none] = J - Jg * J + Jg * Jg * zv
    return {"loglik": out_ll, "delta_mean": dm, "delta_var": dv}


def _smooth_scalar(m, R, *, mu0, P0, Q, J, taus):
    """Smoothed means and SDs (K, T) of one scalar series for the change indices ``taus``."""
    T = m.shape[0]
    kf = kalman_changepoint(m[:, None], R[:, None, None], mu0=np.array([mu0]),
                            P0=np.array([[P0]]), Q=np.array([[Q]]), J=np.array([[J]]),
                            taus=taus, keep=True)
    ms, Ps = _rts(kf["mf"], kf["Pf"], kf["Pp"])            # (T, K, 2[, 2])
    s = (np.arange(T)[:, None] >= np.asarray(taus)[None, :]).astype(float)
    mu = ms[..., 0] + s * ms[..., 1]
    var = Ps[..., 0, 0] + s * s * Ps[..., 1, 1] + 2 * s * Ps[..., 0, 1]
    return mu.T, np.sqrt(np.maximum(var, 1e-300)).T


def link_windows(fits, *, params=DEFAULT_PARAMS, q_grid=(0.001, 0.003, 0.01, 0.03),
                 kappa_grid=(1.0, 2.0, 4.0, 8.0, 16.0, 32.0), measurement="posterior",
                 robust=True, robust_nu=4.0, n_robust=3, jump_sd=1.0, p_move=0.5,
                 min_segment=5, p_change=0.5, hdi_prob=HDI_PROB, tmin=None, tmax=None,
                 max_smooth=40):
    """Link per-window posteriors by random walks with one shared change point.

    Every linked parameter ``j`` of every channel follows its own random walk with, at the
    common change time ``tau``, a jump that is present with prior probability ``p_move``
    (spike and slab).  Each window contributes the marginal Laplace posterior of every
    parameter (correlations dropped), so given ``tau`` the series are independent and
    everything -- ``p(m | tau)``, which parameters jump, their jumps and trajectories -- is
    exact for this model (Kalman filtering, see :func:`changepoint_scalar`), and ``tau`` is
    enumerated exactly.

    Parameters
    ----------
    fits : xarray.Dataset
        Output of :func:`fit_windows`.
    params : sequence of str
        Parameters to link (``filter_offset`` included by default).
    q_grid : sequence of float
        Random-walk SDs per sqrt(s), in units of each parameter's prior SD.  The walk stands
        for slow drift; the default grid stops at 0.03 (0.3 prior SD over 100 s) because a
        faster walk can mimic the jump itself, and on real recordings (persistent switches
        between posterior modes) type-II likelihood then prefers the roughest walk and
        spreads the change over it.  Changes faster than the walk allows count as the jump.
    kappa_grid : sequence of float
        Factors on the per-window variances (a tempered likelihood: ``kappa`` divides the
        spectra's dof).  ``kappa > 1`` absorbs what the one-source model cannot follow within
        the spectra's sampling error; it plays the role of the fitted dof scale of
        :class:`~nmm_inference.inference.CMCModel`.
    measurement : {"posterior", "likelihood"}
        ``"posterior"`` (default): a window's marginal Laplace posterior ``N(MAP, sd**2)`` is
        a Gaussian measurement of ``theta_t``.  This counts the prior once per window: pooled
        estimates keep one window's shrinkage towards the prior mean (jumps of weakly
        identified parameters are underestimated) but stay where the window optima are.
        ``"likelihood"``: the prior is divided out of each marginal (exact for Gaussian
        windows; directions with less than a tenth of the prior's precision are made vague),
        which pools correctly but extrapolates the local curvature of weakly identified
        parameters.  (Using the full covariances instead of the marginals moved the pooled
        trajectories of the Malow recording outside the cloud of window optima: the Laplace
        correlations of real windows are not reliable enough for generalised least squares.)
    robust : bool
        Student-t (``robust_nu`` dof) instead of Gaussian measurement errors, approximated by
        ``n_robust`` rounds of iteratively reweighted Gaussians (EM weights per window and
        parameter at the smoothed trajectory given a change; hyperparameters re-chosen after
        the last round).  Windows whose optimum sits in another posterior mode (real
        recordings switch between modes) then get small weights instead of posing as
        changes.  The weights are returned in ``/windows`` (``weight``); computing them
        given a change favours the change model somewhat in ``p_change``.
    robust_nu : float
        Degrees of freedom of the Student-t errors.
    n_robust : int
        Reweighting rounds.
    jump_sd : float
        Prior SD of a jump, in prior-SD units (``filter_offset``: in units of
        :data:`OFFSET_SCALE` log units).
    p_move : float
        Prior probability that a given parameter jumps at the change (0 < p_move < 1).
    min_segment : int
        Candidate change indices leave at least this many windows on each side.
    p_change : float
        Prior probability of the change model (0 < p_change < 1).
    hdi_prob : float
        Probability of the equal-tailed intervals.
    tmin, tmax : float, optional
        Candidate onset times are restricted to this range (s); the uniform prior over
        candidates is then over this range only.
    max_smooth : int
        At most this many change times (those with the largest posterior mass) are smoothed
        for the trajectories.

    Returns
    -------
    xarray.DataTree
        ``/trajectory``: ``mean``, ``sd``, ``lower``, ``upper`` and the window optima
        ``window_map`` (``channel``, ``window``, ``param``) with coord ``time``;
        ``/change``: ``prob_move`` (posterior probability that the parameter jumps, given a
        change), the jump given that it does (``mean``, ``sd``, ``lower``, ``upper``,
        ``prob_positive``) and ``moves`` (``prob_move > 0.5``); ``/onset``: ``prob`` over
        candidate times (coord ``time``), attrs ``median``, ``lower``, ``upper`` (s),
        ``p_change`` (posterior probability that at least one parameter jumps); ``/hyper``:
        the log marginal likelihood over the (q, kappa) grid; ``/windows``: the per-window
        fits and the robust ``weight``.
    """
    import xarray as xr
    from scipy.special import expit, ndtr

    params = list(params)
    if not params:
        raise ParameterError("params must name at least one parameter")
    for nm, v in (("p_change", p_change), ("p_move", p_move), ("hdi_prob", hdi_prob)):
        if not 0 < v < 1:
            raise ParameterError(f"{nm} must be in (0, 1), got {v}")
    if (jump_sd <= 0 or not len(q_grid) or not len(kappa_grid)
            or any(q <= 0 for q in q_grid) or any(k <= 0 for k in kappa_grid)):
        raise ParameterError("jump_sd, q_grid and kappa_grid must be positive (non-empty "
                             f"grids), got jump_sd={jump_sd}, q_grid={q_grid}, "
                             f"kappa_grid={kappa_grid}")
    if not isinstance(min_segment, (int, np.integer)) or min_segment < 1:
        raise ParameterError(f"min_segment must be a positive integer, got {min_segment!r}")
    if measurement not in ("posterior", "likelihood"):
        raise ParameterError(f"measurement must be 'posterior' or 'likelihood', got {measurement!r}")
    if robust and (robust_nu <= 0 or not isinstance(n_robust, (int, np.integer)) or n_robust < 1):
        raise ParameterError(f"robust_nu must be positive and n_robust a positive integer, got "
                             f"{robust_nu!r}, {n_robust!r}")
    mo, Rfull, mu0, D, valid = _pseudo_obs(fits, params, measurement, "diagonal")
    nC, T, p = mo.shape
    time = np.asarray(fits["time"].values, float)
    step = float(np.median(np.diff(time))) if T > 1 else 1.0
    if T < 2 * min_segment + 1:
        raise DataError(f"{T} windows are too few for min_segment={min_segment}")
    cand = np.arange(min_segment, T - min_segment + 1)
    t_cand = (time[cand - 1] + time[np.minimum(cand, T - 1)]) / 2
    sel = np.ones(cand.size, bool)
    if tmin is not None:
        sel &= t_cand >= tmin
    if tmax is not None:
        sel &= t_cand <= tmax
    if not sel.any():
        raise DataError(f"no candidate change time in [{tmin}, {tmax}] s")
    cand, t_cand = cand[sel], t_cand[sel]
    taus = np.append(cand, T)                      # last entry: no change
    log_prior = np.append(np.full(cand.size, np.log(p_change / cand.size)), np.log1p(-p_change))
    # flatten (channel, param) into n independent series
    n = nC * p
    m = np.moveaxis(mo, 1, 0).reshape(T, n)
    R = np.moveaxis(np.diagonal(Rfull, axis1=2, axis2=3), 1, 0).reshape(T, n)
    Dn = np.tile(D, nC)
    mu0n = np.tile(mu0, nC)
    P0n = np.tile(np.where(np.isin(params, ["filter_offset"]), 1e4, D), nC)
    Jn = jump_sd ** 2 * Dn
    lpm, lps = np.log(p_move), np.log1p(-p_move)
    t0 = _time.perf_counter()

    def evaluate(Rw, q, kap):
        out = changepoint_scalar(m, kap * Rw, mu0=mu0n, P0=P0n, Q=q ** 2 * Dn * step, J=Jn,
                                 taus=taus)
        L1, L0 = out["loglik"][:-1], out["loglik"][-1]          # (K, n), (n,)
        mix = np.logaddexp(lpm + L1, lps + L0)
        lj = np.append(mix.sum(axis=1), L0.sum()) + log_prior
        incl = expit(lpm + L1 - lps - L0)                       # P(param jumps | tau)
        return lj, incl, out

    def search(Rw):
        grid = np.full((len(q_grid), len(kappa_grid)), -np.inf)
        best = None
        for (iq, q), (ik, kap) in itertools.product(enumerate(q_grid), enumerate(kappa_grid)):
            lj, incl, out = evaluate(Rw, q, kap)
            lml = float(np.logaddexp.reduce(lj))
            grid[iq, ik] = lml
            if best is None or lml > best[0]:
                best = (lml, q, kap, lj, incl, out)
        return grid, best

    def trajectories(Rw, q, kap, post, incl):
        """Mixture moments and components per series (no jump, or a jump at a top tau)."""
        order = np.argsort(-post[:-1])
        cum = np.cumsum(post[:-1][order]) / max(post[:-1].sum(), 1e-300)
        nkeep = int(min(np.searchsorted(cum, 0.999) + 1, max_smooth, order.size))
        ks = order[:nkeep]
        tt = np.append(cand[ks], T)
        mus = np.empty((n, nkeep + 1, T))
        sds = np.empty((n, nkeep + 1, T))
        ws = np.empty((n, nkeep + 1))
        for i in range(n):
            mus[i], sds[i] = _smooth_scalar(m[:, i], kap * Rw[:, i], mu0=mu0n[i], P0=P0n[i],
                                            Q=q ** 2 * Dn[i] * step, J=Jn[i], taus=tt)
            wj = post[:-1][ks] * incl[ks, i]
            ws[i, :nkeep] = wj
            ws[i, nkeep] = max(1.0 - wj.sum(), 0.0)      # no jump of this series
        ws /= ws.sum(axis=1, keepdims=True)
        mean = np.einsum("ik,ikt->it", ws, mus)
        var = np.einsum("ik,ikt->it", ws, sds ** 2 + mus ** 2) - mean ** 2
        return mean, np.sqrt(np.maximum(var, 0.0)), mus, sds, ws

    Rw = R.copy()
    weights = np.ones((T, n))
    grid, best = search(Rw)
    if robust:
        lml, q, kap, lj, incl, _ = best
        for _ in range(n_robust):
            post = np.exp(lj - lml)
            post[-1] = 0.0                # weights at the trajectory given a change
            post /= post.sum()
            mean, sd, *_ = trajectories(Rw, q, kap, post, incl)
            z2 = (m - mean.T) ** 2 / (kap * R + sd.T ** 2)
            weights = np.where(np.isfinite(z2), (robust_nu + 1) / (robust_nu + z2), 1.0)
            Rw = R / weights
            lj, incl, _ = evaluate(Rw, q, kap)
            lml = float(np.logaddexp.reduce(lj))
        grid, best = search(Rw)
    lml, q, kap, lj, incl, out = best
    post = np.exp(lj - lml)
    prob = post[:-1] / max(post[:-1].sum(), 1e-300)
    p_any = float(np.sum(post[:-1] * (1.0 - np.prod(1.0 - incl, axis=1))))
    cdf = np.cumsum(prob)
    qs = [(1 - hdi_prob) / 2, 0.5, (1 + hdi_prob) / 2]
    onset_q = [float(t_cand[min(np.searchsorted(cdf, x), cdf.size - 1)]) for x in qs]
    mean, sd, mus, sds, ws = trajectories(Rw, q, kap, post, incl)
    lohi = np.stack([_mix_quantiles(ws[i], mus[i], sds[i], [qs[0], qs[2]]) for i in range(n)],
                    axis=1)                                            # (2, n, T)
    # jumps given that the parameter moves, mixed over the onset posterior
    wj = prob[:, None] * incl                                          # (K, n)
    pm = wj.sum(axis=0)
    wjn = wj / np.maximum(pm, 1e-300)
    dm, dsd = out["delta_mean"][:-1], np.sqrt(out["delta_var"][:-1])
    jmean = np.sum(wjn * dm, axis=0)
    jsd = np.sqrt(np.maximum(np.sum(wjn * (dsd ** 2 + dm ** 2), axis=0) - jmean ** 2, 0.0))
    jq = np.empty((2, n))
    for i in range(n):
        k = wjn[:, i] > 1e-12 * wjn[:, i].max()
        jq[:, i] = _mix_quantiles(wjn[k, i], dm[k, i][:, None], dsd[k, i][:, None],
                                  [qs[0], qs[2]])[:, 0]
    jpos = np.sum(wjn * ndtr(dm / dsd), axis=0)

    def cp(a):      # (n, ...) -> (channel, param, ...)
        return np.asarray(a).reshape((nC, p) + np.shape(a)[1:])

    def ctp(a):     # (n, T) -> (channel, window, param)
        return np.moveaxis(cp(a), 2, 1)

    chans = list(fits["channel"].values)
    base = {"channel": chans, "param": params}
    cwp = ("channel", "window", "param")
    traj = xr.Dataset({"mean": (cwp, ctp(mean)), "sd": (cwp, ctp(sd)),
                       "lower": (cwp, ctp(lohi[0])), "upper": (cwp, ctp(lohi[1])),
                       "window_map": (cwp, np.where(valid[..., None],
                                                    fits["map"].sel(param=params).values,
                                                    np.nan))},
                      coords={**base, "window": fits["window"].values, "time": ("window", time)})
    cpd = ("channel", "param")
    change = xr.Dataset({"prob_move": (cpd, cp(pm)), "mean": (cpd, cp(jmean)),
                         "sd": (cpd, cp(jsd)), "lower": (cpd, cp(jq[0])),
                         "upper": (cpd, cp(jq[1])), "prob_positive": (cpd, cp(jpos)),
                         "moves": (cpd, cp(pm) > 0.5)}, coords=base)
    change.attrs["description"] = (
        "prob_move: posterior probability that the parameter jumps at the change (given a "
        f"change; prior {p_move}); mean/sd/lower/upper ({hdi_prob:.0%} equal-tailed)/"
        "prob_positive: its jump given that it jumps, mixed over the onset posterior; "
        "moves: prob_move > 0.5")
    onset = xr.Dataset({"prob": (("candidate",), prob)},
                       coords={"candidate": np.arange(cand.size), "time": ("candidate", t_cand),
                               "window_index": ("candidate", cand)})
    onset.attrs.update({"median": onset_q[1], "lower": onset_q[0], "upper": onset_q[2],
                        "hdi_prob": hdi_prob, "p_change": p_any,
                        "description": "onset = midpoint between the centres of the last pre- "
                                       "and the first post-change window; posterior given a "
                                       "change, uniform prior over candidates"})
    hyper = xr.Dataset({"log_marginal_likelihood": (("q", "kappa"), grid)},
                       coords={"q": list(q_grid), "kappa": list(kappa_grid)})
    hyper.attrs.update({"q": float(q), "kappa": float(kap), "jump_sd": float(jump_sd),
                        "p_move": float(p_move),
                        "method": "type-II maximum likelihood over the (q, kappa) grid"})
    win = fits.copy()
    win["weight"] = (("channel", "window", "param_linked"), ctp(weights.T))
    win = win.assign_coords(param_linked=params)
    tree = xr.DataTree.from_dict({"trajectory": traj, "change": change, "onset": onset,
                                  "hyper": hyper, "windows": win})
    tree.attrs.update({
        "model": "theta_tj = x_tj + s_j delta_j [t >= tau]; random walks x (q**2 D_j per s); "
                 "s_j ~ Bernoulli(p_move), delta_j ~ N(0, jump_sd**2 D_j); measurements: "
                 f"per-window marginal Laplace {measurement}s, variance times kappa",
        "measurement": measurement,
        "robust": f"Student-t ({robust_nu:g} dof) by {n_robust} reweighting rounds" if robust
                  else "Gaussian",
        "approximations": "Gaussian (Laplace) marginal per-window posteriors at the best "
                          "optimum found, correlations dropped; channels and parameters "
                          "independent given the onset; q and kappa plugged in (type-II ML); "
                          "robust weights by EM; trajectories mixed over the "
                          f"{mus.shape[1] - 1} most probable change times",
        "hdi_prob": hdi_prob, "onset_median": onset_q[1], "onset_lower": onset_q[0],
        "onset_upper": onset_q[2], "p_change": p_any,
        "wall_time_s": float(_time.perf_counter() - t0)})
    return tree


# --------------------------------------------------------------------------------- figure


def plot_onset(tree, *, params=None, channel=None, annotation=None, ncols=3):
    """Trajectories with intervals, per-window MAPs and the onset posterior.

    Parameters
    ----------
    tree : xarray.DataTree
        Output of :func:`link_windows`.
    params : list of str, optional
        Parameters to draw (default: those that move, else all).
    channel : str, optional
        Channel (default: the first).
    annotation : float, optional
        A reference time (s) drawn as a dashed line (e.g. the annotated onset).
    ncols : int
        Panels per row.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    tr = tree["trajectory"].to_dataset()
    ch = channel if channel is not None else str(tr["channel"].values[0])
    tr = tr.sel(channel=ch)
    chg = tree["change"].to_dataset().sel(channel=ch)
    if params is None:
        mv = [str(p) for p in chg["param"].values if bool(chg["moves"].sel(param=p))]
        params = mv or [str(p) for p in chg["param"].values]
    on = tree["onset"].to_dataset()
    n = len(params) + 1
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 2.6 * nrows), sharex=True,
                             squeeze=False)
    t = tr["time"].values
    lo, md, hi = tree.attrs["onset_lower"], tree.attrs["onset_median"], tree.attrs["onset_upper"]
    for ax, pname in zip(axes.flat, params):
        d = tr.sel(param=pname)
        ax.plot(t, d["window_map"], ".", ms=2, color="0.6", label="window MAP")
        ax.fill_between(t, d["lower"], d["upper"], color="C0", alpha=0.3, lw=0)
        ax.plot(t, d["mean"], color="C0", lw=1.2, label="linked posterior")
        c = chg.sel(param=pname)
        ax.set_title(f"{pname}: P(jump) {float(c['prob_move']):.2f}, jump "
                     f"{float(c['mean']):+.2f} [{float(c['lower']):+.2f}, "
                     f"{float(c['upper']):+.2f}]", fontsize=8)
        ax.axvspan(lo, hi, color="C3", alpha=0.1)
        ax.axvline(md, color="C3", lw=1)
        if annotation is not None:
            ax.axvline(annotation, color="k", ls="--", lw=0.8)
    ax = axes.flat[len(params)]
    ax.plot(on["time"], on["prob"], color="C3")
    ax.axvspan(lo, hi, color="C3", alpha=0.1)
    ax.set_title(f"onset {md:.1f} s [{lo:.1f}, {hi:.1f}], P(change) = "
                 f"{tree.attrs['p_change']:.3f}", fontsize=8)
    if annotation is not None:
        ax.axvline(annotation, color="k", ls="--", lw=0.8)
    for a in list(axes.flat)[n:]:
        a.set_visible(False)
    for a in axes[-1]:
        a.set_xlabel("time (s)")
    axes.flat[0].legend(fontsize=7, loc="best")
    fig.suptitle(f"channel {ch}: linked change-point posterior ({tree.attrs['hdi_prob']:.0%} "
                 "intervals)", fontsize=9)
    fig.tight_layout()
    return fig
