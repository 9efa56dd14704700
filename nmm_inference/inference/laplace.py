"""Modes of the posterior: multi-start MAP, Laplace approximations and their weights.

This is the fast, SPM-like answer (a Gaussian at each mode, weighted by its Laplace
evidence) and it is also what the samplers start from: the modes and their Laplace
covariances define the whitening (Warp-U) transformation of
:mod:`nmm_inference.inference._target`.

Optimisation runs in prior-whitened coordinates with L-BFGS-B and the exact gradient of the
numba kernel, single-threaded BLAS (``threadpoolctl``; multi-threaded OpenBLAS makes
L-BFGS-B ~100x slower on small problems).  Optima are merged into one mode when the
straight segment between them has no barrier (the log density never drops more than
``barrier`` below the lower end point).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..errors import ConvergenceWarning, ParameterError

logger = logging.getLogger("nmm_inference")

__all__ = ["Mode", "find_modes", "find_components", "ridge_components", "laplace_covariance",
           "mode_weights"]


@dataclass(eq=False)
class Mode:
    """One local maximum of the posterior with its Laplace approximation.

    Attributes
    ----------
    phi : ndarray, shape (d,)
        Location in sampler coordinates (see :mod:`nmm_inference.inference._problem`).
    logp : float
        Log posterior density at ``phi`` (unnormalised).
    cov, chol : ndarray, shape (d, d)
        Laplace covariance (inverse negative Hessian) and its lower Cholesky factor.
    log_evidence : float
        Laplace estimate of the log posterior mass of the mode's basin.
    weight : float
        ``exp(log_evidence)`` normalised over all modes found.
    n_hits : int
        Number of optimiser starts that ended in this mode.
    hessian_ok : bool
        False when the Hessian was not negative definite (eigenvalues were clipped).
    """

    phi: np.ndarray
    logp: float
    cov: np.ndarray
    chol: np.ndarray
    log_evidence: float
    weight: float = 1.0
    n_hits: int = 1
    hessian_ok: bool = True

    def as_dict(self, names):
        return {"logp": float(self.logp), "log_evidence_laplace": float(self.log_evidence),
                "weight_laplace": float(self.weight), "n_hits": int(self.n_hits),
                "hessian_ok": bool(self.hessian_ok),
                "location": {n: float(v) for n, v in zip(names, self.phi)},
                "sd": {n: float(v) for n, v in zip(names, np.sqrt(np.diag(self.cov)))}}


def laplace_covariance(problem, phi, *, min_eig=0.05):
    """Covariance from the finite-difference Hessian of the exact gradient.

    The Hessian is taken in prior-whitened coordinates; eigenvalues of the negative
    Hessian below ``min_eig`` (i.e. posterior SDs above ``1/sqrt(min_eig)`` prior SDs) are
    clipped, and ``ok`` is False if any was not positive.

    Parameters
    ----------
    problem : nmm_inference.inference._problem.Problem
        The inversion; its ``logp`` gradient and prior ``scale`` are used.
    phi : ndarray, shape (d,)
        Point in sampler coordinates (normally a posterior maximum).
    min_eig : float, optional
        Smallest eigenvalue kept of the negative Hessian in prior-whitened coordinates.

    Returns
    -------
    cov : ndarray, shape (d, d)
        Laplace covariance in sampler coordinates; the prior's diagonal covariance
        (``diag(scale**2)``) if the Hessian has non-finite entries.
    chol : ndarray, shape (d, d)
        Lower Cholesky factor of ``cov``.
    ok : bool
        True when the negative Hessian was positive definite (finite, no eigenvalue
        ``<= 0``).
    """
    c = problem.scale
    d = phi.size
    h = 1e-4
    H = np.empty((d, d))
    for i in range(d):
        e = np.zeros(d)
        e[i] = h * c[i]
        gp = problem.logp(phi + e)[1]
        gm = problem.logp(phi - e)[1]
        H[i] = (gp - gm) / (2 * h) * c
    H = -(H + H.T) / 2
    if not np.all(np.isfinite(H)):
        return np.diag(c ** 2), np.diag(c), False
    w, V = np.linalg.eigh(H)
    ok = bool(w.min() > 0)
    w = np.maximum(w, min_eig)
    cov_u = (V / w) @ V.T
    cov = cov_u * np.outer(c, c)
    cov = (cov + cov.T) / 2
    return cov, np.linalg.cholesky(cov), ok


def mode_weights(modes):
    """Normalise the Laplace evidences of ``modes`` into weights (in place).

    Parameters
    ----------
    modes : list of Mode
        Modes with finite ``log_evidence`` (at least one); their ``weight`` is overwritten.

    Returns
    -------
    list of Mode
        The same list, with ``weight`` proportional to ``exp(log_evidence)`` and summing to 1.
    """
    le = np.array([m.log_evidence for m in modes])
    w = np.exp(le - le.max())
    w /= w.sum()
    for m, wk in zip(modes, w):
        m.weight = float(wk)
    return modes


def _same_basin(problem, a, b, lpa, lpb, barrier):
    floor = min(lpa, lpb) - barrier
    for t in np.linspace(0, 1, 11)[1:-1]:
        lp = problem.logp(a + t * (b - a), False)[0]
        if not np.isfinite(lp) or lp < floor:
            return False
    return True


def _continuation(problem, continuation):
    """``{index: value}`` of the parameters held in the first stage of a continuation start."""
    from ._problem import LOG_DOF_SCALE

    if continuation is None:
        return {}
    if isinstance(continuation, str):
        if continuation != "auto":
            raise ParameterError(f"continuation must be 'auto', None or a dict, got {continuation!r}")
        continuation = {LOG_DOF_SCALE: 0.0} if LOG_DOF_SCALE in problem.names else {}
    out = {}
    for nm, v in continuation.items():
        if nm not in problem.names:
            raise ParameterError(f"continuation names {nm!r}, which is not a free parameter "
                             f"(free: {problem.names})")
        if not np.isfinite(v):
            raise ParameterError(f"continuation value of {nm!r} is not finite: {v!r}")
        out[problem.names.index(nm)] = float(v)
    return out


def _held_maximum(fun, u0, hold, c0, s, maxiter):
    """Maximise with the coordinates in ``hold`` fixed; the whitened point, or None."""
    from scipy.optimize import minimize

    d = u0.size
    idx = np.array(sorted(hold))
    free = np.setdiff1d(np.arange(d), idx)
    u = u0.copy()
    u[idx] = [(hold[i] - c0[i]) / s[i] for i in idx]

    def fh(uf):
        uu = u.copy()
        uu[free] = uf
        f, g = fun(uu)
        return f, g[free]

    if fh(u[free])[0] >= 1e12:
        return None
    r = minimize(fh, u[free], jac=True, method="L-BFGS-B", options={"maxiter": maxiter})
    if r.fun >= 1e12:
        return None
    u[free] = r.x
    return u


def find_modes(problem, *, n_starts=32, random_seed=None, max_delta=25.0, barrier=1.0,
               maxiter=3000, continuation="auto", explore=True, explore_sd=(3.0,),
               explore_delta=10.0, explore_rounds=3, informative=0.75):
    """Multi-start MAP: local maxima of the posterior with Laplace approximations.

    With a free dof factor (``dof_scale="fit"``, parameter ``log_dof_scale``) every start is
    also run by continuation: first maximised with ``log_dof_scale`` held at 0 (the data
    weighted by their recorded dof), then with all parameters free.  A spectrum the model
    can follow only with parameters far from the start otherwise draws the optimiser into
    the basin where kappa shrinks and the misfit is called noise: on the resting alpha
    spectrum (EEGMAT O2, 4x priors on ``tau_ss``/``delay_intrinsic``, leakage) 32-96 starts
    from prior draws all ended at kappa ~0.02-0.07, while continuation from 2 of 8 starts
    reaches kappa 0.82, 24 log-units higher.  Both sets of optima enter the mode list and
    are weighted by their Laplace evidence as usual; nothing is hidden.

    Excursions (``explore=True``): a neighbouring mode separated by a deep, narrow valley
    is rarely reached from prior draws.  From every mode within ``explore_delta`` of the
    best, each parameter the data inform (Laplace SD below ``informative`` prior SDs) is
    held ``explore_sd`` Laplace SDs to either side, the rest maximised, then all freed;
    optima in new basins join the list and are explored in turn (at most
    ``explore_rounds`` rounds).  On the resting alpha spectrum (EEGMAT O2, leakage, 4x
    priors, fitted dof factor) 32 continuation starts find the mode at ``tau_ii`` 0.49
    (log posterior 131.3) but not the one at 0.39 (132.6, Laplace weight ~0.84; the segment
    between them drops ~70 log-units); 5 of the 24 excursions from the first reach the
    second, in ~1 s each.

    Parameters
    ----------
    problem : nmm_inference.inference._problem.Problem
    n_starts : int
        Number of L-BFGS-B starts: the prior mean and ``n_starts - 1`` prior draws.
    random_seed : int | numpy.random.Generator | None
    max_delta : float
        Optima more than this many log-units below the best are discarded.
    barrier : float
        Two optima are one mode if the segment between them never drops more than this
        below the lower one.
    maxiter : int
        Maximum L-BFGS-B iterations per start.
    continuation : {"auto", None} or dict, optional
        Parameters held, by name, at the given values (sampler coordinates) in a first
        maximisation from every start, before all are freed; the starts are also run
        without it.  ``"auto"``: ``{"log_dof_scale": 0.0}`` when that parameter is free,
        otherwise none.  ``None``: no continuation.
    explore : bool, optional
        Search the neighbourhood of the modes found by excursions along the informed
        parameters (see above).
    explore_sd : float or sequence of float, optional
        Excursion lengths in Laplace standard deviations (each is tried).
    explore_delta : float, optional
        Modes more than this many log-units below the best are not explored.
    explore_rounds : int, optional
        Maximum number of rounds (each explores the modes new in the previous one).
    informative : float, optional
        A parameter is explored when its Laplace SD is below this fraction of its prior SD.

    Returns
    -------
    list of Mode
        Sorted by Laplace evidence, weights normalised.

    Raises
    ------
    RuntimeError
        If no start reaches a finite posterior density.

    Warns
    -----
    ConvergenceWarning
        For a mode whose Hessian is not negative definite (its covariance is regularised).
    """
    from scipy.optimize import minimize
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(random_seed)
    c0 = problem.center
    s = problem.scale
    starts = np.vstack([c0[None], problem.prior_draws(max(n_starts - 1, 0), rng)])

    hold = _continuation(problem, continuation)

    def fun(u):
        lp, g = problem.logp(c0 + s * u)
        if not np.isfinite(lp):
            return 1e12, np.zeros_like(u)
        return -lp, -g * s

    found = []
    with threadpool_limits(1):
        for x0 in starts:
            u0 = (x0 - c0) / s
            f0 = fun(u0)[0]
            if not np.isfinite(f0) or f0 >= 1e12:
                continue
            inits = [u0]
            if hold:
                u1 = _held_maximum(fun, u0, hold, c0, s, maxiter)
                if u1 is not None:
                    inits.append(u1)
            for ui in inits:
                r = minimize(fun, ui, jac=True, method="L-BFGS-B", options={"maxiter": maxiter})
                if r.fun >= 1e12:
                    continue
                found.append((-float(r.fun), c0 + s * r.x))
    if not found:
        raise RuntimeError("no optimiser start reached a finite posterior density; check the "
                           "data scale and the frequencies")
    groups = []   # [logp, phi, hits, laplace (cov, chol, ok) or None, explored]

    def merge(found):
        """Add optima to ``groups``; the number of new groups."""
        found = sorted(found, key=lambda t: -t[0])
        best = max([found[0][0]] + [g[0] for g in groups])
        n_new = 0
        for lp, phi in found:
            if lp < best - max_delta:
                continue
            for g in groups:
                if np.max(np.abs(phi - g[1]) / s) < 1e-3 or _same_basin(problem, g[1], phi, g[0], lp, barrier):
                    g[2] += 1
                    break
            else:
                groups.append([lp, phi, 1, None, False])
                n_new += 1
        groups.sort(key=lambda g: -g[0])
        return n_new

    merge(found)
    lengths = np.atleast_1d(np.asarray(explore_sd, dtype=float))
    if explore and (lengths.size == 0 or not np.all(np.isfinite(lengths) & (lengths > 0))):
        raise ParameterError(f"explore_sd must be positive lengths, got {explore_sd!r}")
    if explore:
        with threadpool_limits(1):
            for rnd in range(int(explore_rounds) + 1):
                best = groups[0][0]
                todo = [g for g in groups if not g[4] and g[0] >= best - explore_delta]
                if not todo:
                    break
                if rnd == int(explore_rounds):
                    import warnings

                    warnings.warn(
                        f"the mode search was still finding modes after {explore_rounds} "
                        f"exploration round(s) ({len(todo)} mode(s) within {explore_delta} of the "
                        "best not explored); raise explore_rounds in mode_search=",
                        ConvergenceWarning, stacklevel=2)
                    break
                new = []
                for g in todo:
                    g[4] = True
                    g[3] = laplace_covariance(problem, g[1])
                    sd = np.sqrt(np.diag(g[3][0]))
                    u0 = (g[1] - c0) / s
                    for i in np.flatnonzero(sd < informative * s):
                        for step in np.concatenate([-lengths, lengths]):
                            u1 = _held_maximum(fun, u0, {int(i): g[1][i] + step * sd[i]},
                                               c0, s, maxiter)
                            if u1 is None:
                                continue
                            r = minimize(fun, u1, jac=True, method="L-BFGS-B",
                                         options={"maxiter": maxiter})
                            if r.fun < 1e12:
                                new.append((-float(r.fun), c0 + s * r.x))
                n_new = merge(new) if new else 0
                logger.info("mode search, exploration round %d: %d mode(s) explored, %d new",
                            rnd + 1, len(todo), n_new)
                if not n_new:
                    break
    modes = []
    d = problem.d
    for lp, phi, hits, lap, _ in groups:
        cov, chol, ok = lap if lap is not None else laplace_covariance(problem, phi)
        le = lp + 0.5 * d * np.log(2 * np.pi) + float(np.sum(np.log(np.diag(chol))))
        modes.append(Mode(phi=phi, logp=lp, cov=cov, chol=chol, log_evidence=le, n_hits=hits,
                          hessian_ok=ok))
        if not ok:
            import warnings

            warnings.warn("the Hessian at a posterior optimum is not negative definite; its "
                          "Laplace approximation was regularised", ConvergenceWarning, stacklevel=2)
    modes.sort(key=lambda m: -m.log_evidence)
    mode_weights(modes)
    logger.info("found %d mode(s) from %d starts; Laplace weights %s", len(modes), len(found),
                np.round([m.weight for m in modes], 4).tolist())
    return modes


def find_components(problem, variants=None, *, n_starts=32, random_seed=None, max_delta=25.0,
                    ridge=("contrib_ss", "lfp_gain"), mode_search=None):
    """Modes and warp components of the posterior.

    Returns ``(modes, components)``.  ``modes`` are the local maxima (multi-start MAP with
    Laplace approximations, :func:`find_modes`); ``components`` add, for each parameter in
    ``ridge``, profile points along its weakly identified direction
    (:func:`ridge_components`).

    ``variants``: with ``data_scale="auto"`` the prior of ``f(1)`` is a two-component
    mixture (model units or unknown units), and the posterior a mixture of a narrow and a
    wide part along the gain/noise ridge, which one Laplace approximation describes badly.
    The modes of each sub-model (e.g. the ``"model"`` and ``"free"`` problems) are then found
    separately, and all of them are weighted by the Laplace evidence of the *full* posterior
    (``problem``) at their centre with their covariance.  Correctness of the warped sampler
    does not depend on these choices; only its efficiency does.

    Parameters
    ----------
    problem : nmm_inference.inference._problem.Problem
        The full posterior; it weights every mode and component.
    variants : sequence of Problem, optional
        Sub-models searched for modes instead of ``problem`` (a variant in which no start
        reaches a finite density is skipped).  Default: ``[problem]``.
    n_starts : int, optional
        Starts per searched problem (see :func:`find_modes`).
    random_seed : int, numpy.random.Generator or None, optional
        Seed of the starts; one generator is shared by all variants.
    max_delta : float, optional
        See :func:`find_modes`.
    ridge : sequence of str, optional
        Parameters along which :func:`ridge_components` adds profile points (empty: none).
    mode_search : dict, optional
        Further keyword arguments of :func:`find_modes` (e.g. ``explore_sd``,
        ``explore_rounds``, ``continuation``).

    Returns
    -------
    modes : list of Mode
        The local maxima of all searched problems, sorted by Laplace evidence under
        ``problem``, weights normalised over the modes.
    components : list of Mode
        Copies of the modes plus the ridge points (``n_hits`` 0), sorted by Laplace
        evidence, weights normalised over all of them.

    Raises
    ------
    RuntimeError
        If no mode with a finite Laplace evidence is found.
    """
    rng = np.random.default_rng(random_seed)
    modes, comps = [], []

    def reweight(m, n_hits):
        lp = float(problem.logp(m.phi, False)[0])
        le = lp + 0.5 * problem.d * np.log(2 * np.pi) + float(np.sum(np.log(np.diag(m.chol))))
        return Mode(phi=m.phi, logp=lp, cov=m.cov, chol=m.chol, log_evidence=le,
                    n_hits=n_hits, hessian_ok=m.hessian_ok)

    for v in (variants or [problem]):
        try:
            mv = find_modes(v, n_starts=n_starts, random_seed=rng, max_delta=max_delta,
                            **(mode_search or {}))
        except RuntimeError:
            if variants is None:
                raise
            continue   # e.g. "model units" for a spectrum in V^2/Hz: no support at all
        rv = ridge_components(v, mv, names=ridge) if ridge else []
        modes += [reweight(m, m.n_hits) for m in mv]
        comps += [reweight(m, 0) for m in rv]
    modes = [m for m in modes if np.isfinite(m.log_evidence)]
    comps = [m for m in comps if np.isfinite(m.log_evidence)]
    if not modes:
        raise RuntimeError("no posterior mode found; check the data and the priors")
    modes.sort(key=lambda m: -m.log_evidence)
    mode_weights(modes)
    allc = modes + comps
    wsave = [m.weight for m in modes]
    mode_weights(allc)
    comps_out = [Mode(phi=m.phi, logp=m.logp, cov=m.cov, chol=m.chol, log_evidence=m.log_evidence,
                      weight=m.weight, n_hits=m.n_hits, hessian_ok=m.hessian_ok) for m in allc]
    for m, w in zip(modes, wsave):
        m.weight = w
    comps_out.sort(key=lambda m: -m.log_evidence)
    return modes, comps_out


def ridge_components(problem, modes, names=("contrib_ss",), *, steps=(-6.0, -3.0, 3.0, 6.0),
                     max_drop=12.0):
    """Extra warp components along weakly identified directions (profile points).

    For each parameter in ``names`` and each step (in Laplace SDs of the best mode), the
    posterior is maximised with that parameter held at ``mode + step * sd`` and a Laplace
    approximation (of the full posterior) is placed there.  These tile long, curved or
    skewed tails (the LFP contributions trade off against the gain and time constants) so
    that the warped density stays close to a standard normal.  Points more than
    ``max_drop`` log-units below the mode are not used.

    Parameters
    ----------
    problem : nmm_inference.inference._problem.Problem
        The inversion.
    modes : list of Mode
        Modes sorted by evidence; only the first (best) is used.  Empty: no components.
    names : sequence of str, optional
        Parameters to step along; names not among the problem's free parameters are
        skipped.
    steps : sequence of float, optional
        Offsets of the held parameter, in Laplace SDs of the best mode.
    max_drop : float, optional
        Largest drop (log-units) of the profile maximum below the best mode's log density.

    Returns
    -------
    list of Mode
        One component per accepted (parameter, step), with the best mode's covariance and
        Cholesky factor, its Laplace log evidence at the profile point, ``n_hits = 0`` and
        unnormalised weight 1.
    """
    from scipy.optimize import minimize
    from threadpoolctl import threadpool_limits

    if not modes:
        return []
    best = modes[0]
    out = []
    s = problem.scale
    for nm in names:
        if nm not in problem.names:
            continue
        j = problem.names.index(nm)
        sd_j = float(np.sqrt(best.cov[j, j]))
        free = [i for i in range(problem.d) if i != j]
        for st in steps:
            x = best.phi.copy()
            x[j] = best.phi[j] + st * sd_j

            def fun(u, x=x):
                xx = x.copy()
                xx[free] = best.phi[free] + s[free] * u
                lp, g = problem.logp(xx)
                if not np.isfinite(lp):
                    return 1e12, np.zeros_like(u)
                return -lp, -g[free] * s[free]

            with threadpool_limits(1):
                r = minimize(fun, np.zeros(len(free)), jac=True, method="L-BFGS-B",
                             options={"maxiter": 2000})
            if r.fun >= 1e12 or -r.fun < best.logp - max_drop:
                continue
            x[free] = best.phi[free] + s[free] * r.x
            # the shape of the best mode, moved along the ridge (a local Hessian away from a
            # maximum can be nearly singular, and a too-wide component makes the warped
            # density narrow and the sampler's steps small)
            le = -float(r.fun) + 0.5 * problem.d * np.log(2 * np.pi) + float(np.sum(np.log(np.diag(best.chol))))
            out.append(Mode(phi=x, logp=-float(r.fun), cov=best.cov.copy(), chol=best.chol.copy(),
                            log_evidence=le, n_hits=0, hessian_ok=True))
    return out
