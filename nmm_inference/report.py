"""HTML reports of fitted models (MNE's ``Report``), and the figures in them.

A report is built from a fit result, an :class:`xarray.DataTree` in ArviZ's layout:

* ``posterior``: one variable per free parameter, named as in
  :func:`nmm_inference.params.parameter_table` (SPM scale), dims ``(chain, draw)`` (or a
  single variable ``theta`` with a ``param`` dim, which is split);
* ``posterior_predictive`` and ``observed_data``: the spectrum (variable ``psd`` or the only
  variable), dims ``(..., freq)`` with a ``freq`` coordinate in Hz;
* optional ``state_probability`` (dims ``state``, ``time``) from the switching model, and
  ``trajectories`` (parameters over ``window`` with ``window_center``) from windowed fits.

Every section is optional in the input; the report says which sections are present.
"""

from __future__ import annotations

import html
import logging
import os
from pathlib import Path

import numpy as np

logger = logging.getLogger("nmm_inference")

__all__ = ["build_report", "posterior_draws", "plot_ppc", "plot_prior_posterior", "plot_pairs",
           "convergence_table", "plot_landscape", "plot_state_timeline", "plot_trajectories",
           "SECTIONS"]

#: Section titles, in report order.
SECTIONS = (
    "Observed vs posterior predictive",
    "Posteriors against priors",
    "Most correlated parameters",
    "Convergence",
    "Potential landscape at the posterior mean",
    "State probabilities over the recording",
    "Parameter trajectories",
)


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def posterior_draws(dt, group="posterior"):
    """Flattened draws of the scalar variables of a group.

    Parameters
    ----------
    dt : xarray.DataTree
        Fit result.
    group : str
        Group to read (default ``"posterior"``).  A variable with a ``param`` dim is split
        into one entry per ``param`` value; variables with other dims are left out.

    Returns
    -------
    dict
        ``{name: ndarray of shape (n_chains * n_draws,)}``.
    """
    ds = dt[group].to_dataset() if hasattr(dt[group], "to_dataset") else dt[group]
    out = {}
    for name, da in ds.data_vars.items():
        if "param" in da.dims:
            for p in da["param"].values:
                out[str(p)] = np.asarray(da.sel(param=p)).ravel()
        elif set(da.dims) <= {"chain", "draw"}:
            out[str(name)] = np.asarray(da).ravel()
    return out


def _spectrum_var(ds):
    if "psd" in ds.data_vars:
        return ds["psd"]
    for da in ds.data_vars.values():
        if "freq" in da.dims:
            return da
    raise KeyError("no variable with a 'freq' dim")


def plot_ppc(dt, *, hdi_prob=0.94):
    """Observed spectrum against the posterior-predictive band.

    Parameters
    ----------
    dt : xarray.DataTree
        Fit result with ``observed_data`` and ``posterior_predictive`` groups holding a
        spectrum (variable ``psd``, or the first variable with a ``freq`` dim).
    hdi_prob : float
        Probability of the central predictive band.

    Returns
    -------
    fig : matplotlib.figure.Figure
    coverage : float
        Fraction of frequency bins whose observed value lies inside the band.
    """
    plt = _plt()
    obs = _spectrum_var(dt["observed_data"].to_dataset())
    pp = _spectrum_var(dt["posterior_predictive"].to_dataset())
    freqs = np.asarray(obs["freq"])
    draws = np.asarray(pp).reshape(-1, freqs.size) if pp.ndim >= 2 else np.asarray(pp)[None]
    lo, hi = np.quantile(draws, [(1 - hdi_prob) / 2, 1 - (1 - hdi_prob) / 2], axis=0)
    y = np.asarray(obs).reshape(-1, freqs.size)[0]
    coverage = float(np.mean((y >= lo) & (y <= hi)))
    fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    ax.fill_between(freqs, lo, hi, color="C0", alpha=0.3, label=f"{int(hdi_prob * 100)} % predictive band")
    ax.plot(freqs, np.median(draws, axis=0), color="C0", lw=1.5, label="predictive median")
    ax.plot(freqs, y, color="k", lw=1.0, label="observed")
    ax.set_yscale("log")
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("power")
    ax.set_title(f"{coverage * 100:.0f} % of bins inside the band")
    ax.legend(frameon=False)
    return fig, coverage


def plot_prior_posterior(dt, *, names=None, max_params=16):
    """Histograms of posterior draws over the prior density, per parameter.

    Parameters
    ----------
    dt : xarray.DataTree
        Fit result with a ``posterior`` group (parameters named as in
        :func:`nmm_inference.params.parameter_table`; others are drawn without a prior).
    names : list of str, optional
        Parameters to draw (default: all scalar posterior variables).
    max_params : int
        At most this many panels.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from scipy.stats import norm

    from .params import parameter_table

    plt = _plt()
    draws = posterior_draws(dt)
    import json

    table = {s.name: (s.prior_mean, np.sqrt(s.prior_var)) for s in parameter_table(1) if s.prior_var > 0}
    try:  # the priors the fit actually used (overrides included), when recorded
        table.update({k: (float(m), float(sd)) for k, (m, sd) in
                      json.loads(dt.attrs.get("priors", "{}") or "{}").items()})
    except (TypeError, ValueError):
        pass
    names = [n for n in (names or draws) if n in draws][:max_params]
    ncol = 4
    nrow = max(1, int(np.ceil(len(names) / ncol)))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.0 * ncol, 2.2 * nrow), layout="constrained",
                             squeeze=False)
    for ax, n in zip(axes.ravel(), names):
        x = draws[n]
        ax.hist(x, bins=40, density=True, color="C0", alpha=0.6, label="posterior")
        prior = table.get(n)
        if prior is not None and prior[1] > 0 and np.isfinite(prior[1]) and prior[1] < 1e3:
            m, sd = prior
            grid = np.linspace(min(x.min(), m - 3 * sd), max(x.max(), m + 3 * sd), 200)
            ax.plot(grid, norm.pdf(grid, m, sd), color="C3", lw=1.2, label="prior")
        ax.set_title(n, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(names):]:
        ax.set_visible(False)
    if names:
        axes.ravel()[0].legend(fontsize=7, frameon=False)
    return fig


def plot_pairs(dt, *, n_pairs=4):
    """Scatter plots of the most strongly correlated parameter pairs.

    Parameters
    ----------
    dt : xarray.DataTree
        Fit result with a ``posterior`` group.
    n_pairs : int
        Number of pairs (largest absolute posterior correlation first).

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _plt()
    draws = posterior_draws(dt)
    names = [n for n, v in draws.items() if np.std(v) > 0]
    X = np.column_stack([draws[n] for n in names])
    C = np.corrcoef(X, rowvar=False)
    iu = np.triu_indices(len(names), 1)
    order = np.argsort(-np.abs(C[iu]))[:n_pairs]
    fig, axes = plt.subplots(1, len(order), figsize=(3.2 * len(order), 3.0), layout="constrained",
                             squeeze=False)
    for ax, o in zip(axes[0], order):
        i, j = iu[0][o], iu[1][o]
        ax.plot(X[:, i], X[:, j], ".", ms=2, alpha=0.3)
        ax.set_xlabel(names[i], fontsize=8)
        ax.set_ylabel(names[j], fontsize=8)
        ax.set_title(f"r = {C[i, j]:+.2f}", fontsize=9)
    return fig


def convergence_table(dt):
    """R-hat, bulk and tail ESS per parameter, and the number of divergences.

    Parameters
    ----------
    dt : xarray.DataTree
        Fit result with a ``posterior`` group (and optionally ``sample_stats.diverging``).
        Only scalar parameters (dims ``chain``, ``draw``) are summarised; derived arrays
        such as the predicted ``spectrum`` are left out.

    Returns
    -------
    rows : list of tuple
        ``(name, mean, sd, r_hat, ess_bulk, ess_tail)`` per parameter.
    n_divergent : int
    ok : bool
        True when every R-hat <= 1.01, every bulk ESS >= 400 and there were no divergences.
    """
    import arviz as az

    names = list(posterior_draws(dt))
    post = dt["posterior"].to_dataset()
    names = [n for n in names if n in post.data_vars]  # split "param" variables are summarised whole
    s = az.summary(dt, var_names=names or None)
    rows = []
    for name in s.index:
        rows.append((str(name), float(s.loc[name, "mean"]), float(s.loc[name, "sd"]),
                     float(s.loc[name, "r_hat"]), float(s.loc[name, "ess_bulk"]),
                     float(s.loc[name, "ess_tail"])))
    ndiv = 0
    if "sample_stats" in dt.children and "diverging" in dt["sample_stats"].data_vars:
        ndiv = int(np.asarray(dt["sample_stats"]["diverging"]).sum())
    ok = all(r[3] <= 1.01 and r[4] >= 400 for r in rows) and ndiv == 0
    return rows, ndiv, ok


def _is_laplace(dt):
    return str(getattr(dt, "attrs", {}).get("sampler", "")) == "laplace"


def _convergence_html(dt):
    rows, ndiv, ok = convergence_table(dt)
    if _is_laplace(dt) or (rows and all(not np.isfinite(r[3]) for r in rows)):
        import json

        conv = json.loads(dt.attrs.get("convergence", "{}") or "{}")
        k = conv.get("pareto_k")
        kt = ""
        if k is not None:
            good = float(k) <= 0.7
            kt = (f" Pareto k of the importance weights p/q: {float(k):.2f} "
                  f"({'reliable' if good else 'NOT reliable: the Laplace mixture misses the posterior; use NUTS'}"
                  ", threshold 0.7).")
        body = "".join(f"<tr><td>{html.escape(r[0])}</td><td>{r[1]:.3g}</td><td>{r[2]:.3g}</td></tr>"
                       for r in rows)
        return ("<div class='nmm-convergence'><p><b>Not an MCMC result</b> (sampler: "
                f"{html.escape(str(dt.attrs.get('sampler', 'unknown')))}): R-hat and ESS do not apply."
                f"{kt}</p><table class='table table-sm'><thead><tr><th>parameter</th><th>mean</th>"
                f"<th>sd</th></tr></thead><tbody>{body}</tbody></table></div>")
    verdict = ("<p style='color:#176117'><b>Converged</b>: R-hat &le; 1.01 and bulk ESS &ge; 400 for every "
               "parameter, no divergences.</p>" if ok else
               "<p style='color:#a40000'><b>NOT converged</b>: some parameters have R-hat &gt; 1.01, "
               "bulk ESS &lt; 400 or there were divergences. Do not interpret these posteriors; run "
               "longer chains, more tuning, or the multimodal sampler.</p>")
    body = "".join(
        f"<tr><td>{html.escape(r[0])}</td><td>{r[1]:.3g}</td><td>{r[2]:.3g}</td>"
        f"<td{' style=color:#a40000' if r[3] > 1.01 else ''}>{r[3]:.3f}</td>"
        f"<td{' style=color:#a40000' if r[4] < 400 else ''}>{r[4]:.0f}</td><td>{r[5]:.0f}</td></tr>"
        for r in rows)
    return (f"<div class='nmm-convergence'>{verdict}<p>Divergent transitions: {ndiv}</p>"
            "<table class='table table-sm'><thead><tr><th>parameter</th><th>mean</th><th>sd</th>"
            "<th>R-hat</th><th>ESS bulk</th><th>ESS tail</th></tr></thead>"
            f"<tbody>{body}</tbody></table></div>")


def plot_landscape(named_means: dict):
    """Single-mode amplitude potentials and stable states at the given (SPM-scale) parameters.

    Parameters
    ----------
    named_means : dict
        ``{parameter name: SPM-scale value}`` (missing ones at the prior mean).

    Returns
    -------
    matplotlib.figure.Figure
        Potentials ``V(r) = -sigma r**2 / 2 - a r**4 / 4`` of the three least-damped modes,
        with the stable states in the title; the reason in the panel when the reduction is
        refused (e.g. a subcritical Hopf).
    """
    import warnings

    from .adiabatic import reduce_cmc
    from .cmc.equations import neural_from_spm
    from .errors import ReductionError
    from .params import named_to_spm, parameter_table

    plt = _plt()
    table = {s.name for s in parameter_table(1)}
    P = named_to_spm({k: v for k, v in named_means.items() if k in table})
    nm = neural_from_spm(P)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            red = reduce_cmc(nm.G[0], nm.T[0], R=nm.R)
            states = red.stable_states()
        sig = np.asarray(red.sigma)
        a = np.real(np.diag(np.asarray(red.a)))
        rmax = 1.5
        r = np.linspace(0, rmax, 300)
        for k, mode in enumerate(red.modes[:3]):
            f = mode.eigenvalue.imag / (2 * np.pi)
            V = -0.5 * sig[k] * r**2 - 0.25 * a[k] * r**4
            ax.plot(r, V, label=f"mode {k + 1}: {f:.1f} Hz, sigma = {sig[k]:+.1f}/s")
        desc = "; ".join("rest" if len(s.frequencies_hz) == 0 else
                         "+".join(f"{fr:.1f} Hz" for fr in s.frequencies_hz) for s in states)
        ax.set_title(f"stable states: {desc}", fontsize=9)
        ax.set_xlabel("mode amplitude r")
        ax.set_ylabel("potential V(r)")
        ax.legend(fontsize=8, frameon=False)
    except ReductionError as exc:
        ax.text(0.02, 0.5, f"reduction refused:\n{exc}", transform=ax.transAxes, fontsize=8, wrap=True)
        ax.set_axis_off()
    return fig


def plot_state_timeline(times, probs, *, raw_times=None, raw_data=None, state_names=None):
    """State probabilities over the raw trace.

    Parameters
    ----------
    times : ndarray, shape (n_times,)
        Times of the probabilities (s).
    probs : ndarray, shape (n_states, n_times)
        Probability of each state.
    raw_times, raw_data : ndarray, shape (n_samples,), optional
        The recording to draw above the probabilities.
    state_names : list of str, optional
        Legend labels (default ``state 0``, ``state 1``, ...).

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _plt()
    probs = np.asarray(probs)
    fig, axes = plt.subplots(2, 1, figsize=(8, 4.2), sharex=True, layout="constrained")
    if raw_times is not None and raw_data is not None:
        axes[0].plot(raw_times, raw_data, color="k", lw=0.4)
    axes[0].set_ylabel("signal")
    for s in range(probs.shape[0]):
        lab = state_names[s] if state_names is not None else f"state {s}"
        axes[1].plot(times, probs[s], label=lab)
    axes[1].set_ylim(-0.02, 1.02)
    axes[1].set_ylabel("P(state)")
    axes[1].set_xlabel("time (s)")
    axes[1].legend(fontsize=8, frameon=False)
    return fig


def plot_trajectories(ds):
    """Parameter medians and 94 % intervals over windows.

    Parameters
    ----------
    ds : xarray.Dataset
        One variable per parameter with dim ``window`` (and ``sample`` for draws, whose
        3 %, 50 % and 97 % quantiles are drawn); optional coordinate ``window_center`` (s).

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _plt()
    names = [n for n, v in ds.data_vars.items() if "window" in v.dims]
    t = np.asarray(ds["window_center"]) if "window_center" in ds.coords else np.arange(ds.sizes["window"])
    fig, axes = plt.subplots(len(names), 1, figsize=(8, 1.6 * len(names) + 0.5), sharex=True,
                             layout="constrained", squeeze=False)
    for ax, n in zip(axes[:, 0], names):
        v = ds[n]
        if "sample" in v.dims:
            lo, med, hi = (np.asarray(v.quantile(q, dim="sample")) for q in (0.03, 0.5, 0.97))
            ax.fill_between(t, lo, hi, alpha=0.3)
            ax.plot(t, med)
        else:
            ax.plot(t, np.asarray(v))
        ax.set_ylabel(n, fontsize=8)
    axes[-1, 0].set_xlabel("time (s)")
    return fig


def build_report(dt, out, *, title="nmm_inference report", raw=None, overwrite=False):
    """Write an HTML report of a fit.

    Parameters
    ----------
    dt : xarray.DataTree
        Fit result (see the module docstring for the layout).
    out : str or Path
        HTML file to write (atomically).
    title : str
    raw : mne.io.Raw, optional
        Recording to draw under the state timeline.
    overwrite : bool

    Returns
    -------
    dict
        ``{"path": ..., "sections": [titles present], "ppc_coverage": float or None,
        "converged": bool or None}``.
    """
    import mne

    plt = _plt()
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite)")
    rep = mne.Report(title=title, verbose="error")
    present = []
    info = {"ppc_coverage": None, "converged": None}

    def add(fig, name, caption=""):
        rep.add_figure(fig, title=name, caption=caption, image_format="png", tags=("nmm",))
        plt.close(fig)
        present.append(name)

    kids = set(dt.children)
    if {"observed_data", "posterior_predictive"} <= kids:
        fig, cov = plot_ppc(dt)
        info["ppc_coverage"] = cov
        add(fig, SECTIONS[0], f"{cov * 100:.1f} % of frequency bins inside the 94 % band")
    if "posterior" in kids:
        add(plot_prior_posterior(dt), SECTIONS[1])
        add(plot_pairs(dt), SECTIONS[2])
        rows, ndiv, ok = convergence_table(dt)
        info["converged"] = bool(int(dt.attrs.get("converged", 0))) if _is_laplace(dt) else ok
        rep.add_html(_convergence_html(dt), title=SECTIONS[3], tags=("nmm",))
        present.append(SECTIONS[3])
        means = {k: float(np.mean(v)) for k, v in posterior_draws(dt).items()}
        from .params import parameter_table

        if set(means) & {p.name for p in parameter_table(1) if p.free}:  # a CMC posterior
            add(plot_landscape(means), SECTIONS[4])
    if "state_probability" in kids:
        sp = dt["state_probability"].to_dataset()
        da = sp["probability"] if "probability" in sp.data_vars else next(iter(sp.data_vars.values()))
        if "state" in da.dims and "time" in da.dims:
            da = da.transpose("state", "time")
        names = [str(v) for v in da["state"].values] if "state" in da.coords else None
        rt = rd = None
        if raw is not None:
            rt, rd = raw.times, raw.get_data()[0]
        add(plot_state_timeline(np.asarray(da["time"]), np.asarray(da), raw_times=rt, raw_data=rd,
                                state_names=names), SECTIONS[5])
    if "trajectories" in kids:
        add(plot_trajectories(dt["trajectories"].to_dataset()), SECTIONS[6])
    elif {"trajectory", "onset"} <= kids:  # linked window fits (nmm_inference.onset)
        from .onset import plot_onset

        a = dt.attrs
        cap = (f"onset median {a['onset_median']:.1f} s, {a.get('hdi_prob', 0.94) * 100:.0f} % "
               f"interval [{a['onset_lower']:.1f}, {a['onset_upper']:.1f}] s; "
               f"P(change) = {a['p_change']:.3f}") if "onset_median" in a else ""
        add(plot_onset(dt), SECTIONS[6], cap)
    missing = [s for s in SECTIONS if s not in present]
    if missing:
        rep.add_html("<p>Sections not applicable to this result: " + html.escape(", ".join(missing)) + "</p>",
                     title="About this report", tags=("nmm",))
    tmp = out.with_name(f".tmp-{os.getpid()}-{out.name}")
    rep.save(tmp, open_browser=False, overwrite=True, verbose="error")
    os.replace(tmp, out)
    return {"path": str(out), "sections": present, **info}
