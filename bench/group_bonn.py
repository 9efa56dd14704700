"""Bonn EEG, set O (eyes closed) against set Z (eyes open), 100 segments each, as two groups.

Run:  .venv/bin/python bench/group_bonn.py [--n 100] [--workers 2] [--store bench/out/group_bonn_store]

Data: ``../shared/data/bonn_epilepsy`` (Andrzejak et al. 2001): single-channel surface EEG,
4097 samples at 173.61 Hz, integer file units (taken as uV, so the spectra are in V**2/Hz;
the data scale is free anyway).  The recordings were band-passed 0.53-40 Hz by their authors,
so the spectra are fitted on 2-32 Hz (Welch, 1-s Hann windows, half overlap, with the
equivalent dof of every bin).

First level: every segment is fitted by the one-source CMC (all SPM parameters free,
``data_scale="free"``, ``dof_scale="fit"`` because the model cannot follow an EEG spectrum
within its sampling error; sampler "laplace") through ``run_batch`` (resumable store).
Second level: posterior summaries of the carried parameters, the first-level prior divided
out, a linear model with an intercept and an ``eyes_closed`` indicator (``fit_group``), and the
hypotheses "none differ", "all differ", and "all but one differ" compared by LOO and log
evidence (``--compare loo`` adds LOO; it costs one NUTS fit per hypothesis).  Printed: every eyes-closed effect with its 94 % HDI, the comparison table.
Figures: bench/out/group_bonn_effects.png (group effects) and bench/out/group_bonn_ppc.png
(posterior-predictive group spectra against the observed mean spectra of both sets).
"""
from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / ".." / "shared" / "data" / "bonn_epilepsy"
OUT = HERE / "out"
SFREQ = 173.61
FMIN, FMAX = 2.0, 32.0
#: Carried to the group level (informative in single-source fits); filter_offset is the
#: log power scale (flat first-level prior).
CARRY = ["tau_ss", "tau_sp", "tau_ii", "g_ii_ss", "g_ii_ii", "sigmoid_slope", "innov_exponent",
         "filter_offset"]


def load_spectra(n):
    from nmm_inference.features import compute_psd, read_recording

    out = {}
    for folder, tag in (("A_Z", "Z"), ("B_O", "O")):
        files = sorted((DATA / folder).glob("*.txt"))[:n]
        for f in files:
            x = np.loadtxt(f)
            rec = read_recording(x[None, :], sfreq=SFREQ, units="uV", ch_names=["EEG"])
            psd = compute_psd(rec, method="welch", fmin=FMIN, fmax=FMAX, n_per_seg=174, n_overlap=87)
            out[f"{tag}{f.stem[1:]}"] = psd
    return out


def units_from(spectra):
    fit = {"sampler": "laplace", "draws": 1000, "chains": 2, "n_starts": 8, "log_evidence": False}
    return {k: {"spectrum": psd.values[0], "freqs": psd["freq"].values, "dof": psd["dof"].values,
                "model": {"data_scale": "free", "dof_scale": "fit"}, "fit": fit}
            for k, psd in spectra.items()}


def group_spectra(dt, x, base, idx, hz, n_draws, n_new, rng):
    """Predicted spectra of new recordings of one group: (n_draws, n_new, n_freqs)."""
    from nmm_inference.cmc.kernel import spectrum

    B = dt["posterior"]["beta"].stack(s=("chain", "draw")).transpose("s", "covariate", "param").values
    T = dt["posterior"]["tau"].stack(s=("chain", "draw")).transpose("s", "param").values
    pick = rng.choice(B.shape[0], n_draws, replace=False)
    out = np.full((n_draws, n_new, hz.size), np.nan)
    for i, s in enumerate(pick):
        th_mean = x @ B[s]
        for j in range(n_new):
            th = base.copy()
            th[idx] = th_mean + T[s] * rng.standard_normal(len(idx))
            y, status, _ = spectrum(th, hz)
            if status != 2:
                out[i, j] = y
    return out


def main():
    import matplotlib.pyplot as plt

    from nmm_inference.batch import run_batch
    from nmm_inference.cmc.kernel import FREE_NAMES
    from nmm_inference.group import (compare_group_hypotheses, first_level_unit, fit_group,
                                     group_effects_table, plot_group_effects,
                                     remove_first_level_prior, summarize_posteriors)
    from nmm_inference.group_joint import intercept_prior_means
    from nmm_inference.params import parameter_table

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100, help="segments per set")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--store", default=str(OUT / "group_bonn_store"))
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--compare", default="evidence", choices=("evidence", "loo", "none"),
                    help="hypothesis comparison: log evidence only (seconds), plus LOO (one NUTS fit "
                         "per hypothesis), or none")
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    warnings.simplefilter("ignore")
    spectra = load_spectra(args.n)
    keys = list(spectra)
    hz = spectra[keys[0]]["freq"].values
    t0 = time.perf_counter()
    res = run_batch(first_level_unit, units_from(spectra), store=args.store, n_workers=args.workers,
                    progressbar=False, random_seed=args.seed, raise_on_error=False)
    print(f"first level: {len(res.done)} fitted, {len(res.skipped)} from the store, "
          f"{len(res.failed)} failed, {time.perf_counter() - t0:.0f} s")
    fits = res.load()
    keys = [k for k in keys if k in fits]
    posts = [fits[k] for k in keys]
    pk = np.array([json_k(p) for p in posts])
    print(f"first-level Laplace mixtures with Pareto k > 0.7: {int(np.sum(pk > 0.7))} of {len(pk)}")
    X = np.column_stack([np.ones(len(keys)), [1.0 if k.startswith("O") else 0.0 for k in keys]])
    covariates = ["mean", "eyes_closed"]
    m, C = summarize_posteriors(posts, CARRY)
    table = {s.name: s for s in parameter_table(1)}
    prior_sd = np.array([np.inf if n == "filter_offset" else np.sqrt(table[n].prior_var) for n in CARRY])
    prior_mu = np.array([0.0 if n == "filter_offset" else table[n].prior_mean for n in CARRY])
    ml, Cl = remove_first_level_prior(m, C, prior_mu, prior_sd, on_uninformative="clip")
    fo = CARRY.index("filter_offset")
    beta_mu = intercept_prior_means(X, CARRY)
    beta_mu[0, fo] = float(np.mean(ml[:, fo]))   # the units' scale: centred on the data, wide
    beta_sd = np.ones((2, len(CARRY)))
    beta_sd[:, fo] = [10.0, 5.0]
    tau_sd = np.full(len(CARRY), 0.5)
    tau_sd[fo] = 2.0
    t0 = time.perf_counter()
    dt = fit_group(ml, Cl, X, names=CARRY, covariates=covariates, recordings=keys, beta_mu=beta_mu,
                   beta_sd=beta_sd, tau_sd=tau_sd, draws=args.draws, tune=1000, chains=2,
                   random_seed=args.seed + 1)
    print(f"group fit {time.perf_counter() - t0:.0f} s: r_hat_max {dt.attrs['r_hat_max']:.3f}, "
          f"ess_bulk_min {dt.attrs['ess_bulk_min']:.0f}, divergent {dt.attrs['n_divergent']}")
    print("eyes closed (O) - eyes open (Z), SPM scale, mean and 94 % HDI:")
    for r in group_effects_table(dt):
        if r["covariate"] == "eyes_closed":
            print(f"  {r['param']:15s} {r['mean']:7.3f} [{r['hdi_low']:7.3f}, {r['hdi_high']:7.3f}]  "
                  f"{'DIFFERS' if r['excludes_zero'] else ''}")
    dt.to_netcdf(OUT / "group_bonn_fit.nc", engine="h5netcdf")
    fig = plot_group_effects(dt, covariate="eyes_closed")
    fig.axes[0].set_title("Bonn O (eyes closed) - Z (eyes open): group effects")
    fig.savefig(OUT / "group_bonn_effects.png", dpi=120)
    if args.compare != "none":
        hyps = {"none": [], "all": list(CARRY), **{f"all_but_{n}": [c for c in CARRY if c != n] for n in CARRY}}
        t0 = time.perf_counter()
        comp = compare_group_hypotheses(ml, Cl, X, names=CARRY, covariates=covariates,
                                        test_covariate="eyes_closed", hypotheses=hyps, recordings=keys,
                                        beta_mu=beta_mu, beta_sd=beta_sd, tau_sd=tau_sd, draws=500,
                                        tune=500, chains=2, loo=args.compare == "loo",
                                        random_seed=args.seed + 2)
        c = comp["comparison"].to_dataset()
        print(f"hypotheses ({time.perf_counter() - t0:.0f} s): best by LOO {c.attrs['best_loo']}, "
              f"best by evidence {c.attrs['best_evidence']}")
        for h in c["hypothesis"].values:
            s = c.sel(hypothesis=h)
            print(f"  {str(h):24s} elpd_loo {float(s.elpd_loo):9.2f} +- {float(s.elpd_loo_se):5.2f} "
                  f"k_max {float(s.pareto_k_max):4.2f}  log_evidence {float(s.log_evidence):9.2f} +- "
                  f"{float(s.log_evidence_se):4.2f}  P {float(s.posterior_prob):.3f}")
    # posterior-predictive group spectra: parameters not carried are held at the group's
    # average first-level posterior mean (|L| for the LFP gain)
    rng = np.random.default_rng(args.seed + 3)
    idx = [FREE_NAMES.index(n) for n in CARRY]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, (tag, label, x) in zip(axes, (("Z", "set Z, eyes open", np.array([1.0, 0.0])),
                                          ("O", "set O, eyes closed", np.array([1.0, 1.0])))):
        sel = [i for i, k in enumerate(keys) if k.startswith(tag)]
        base = np.zeros(25)
        for j, n in enumerate(FREE_NAMES):
            v = [np.asarray(posts[i]["posterior"][n]).ravel() for i in sel]
            base[j] = np.mean([np.mean(np.abs(a) if n == "lfp_gain" else a) for a in v])
        pred = group_spectra(dt, x, base, idx, hz, 200, 20, rng)
        mean_pred = np.nanmean(pred, axis=1)                       # group-mean spectrum per draw
        obs = np.array([spectra[keys[i]].values[0] for i in sel])
        lo, hi = np.nanquantile(mean_pred, [0.03, 0.97], axis=0)
        plo, phi_ = np.nanquantile(pred.reshape(-1, hz.size), [0.05, 0.95], axis=0)
        olo, ohi = np.quantile(obs, [0.05, 0.95], axis=0)
        ax.fill_between(hz, plo, phi_, color="C0", alpha=0.15, label="predicted recordings 5-95 %")
        ax.fill_between(hz, lo, hi, color="C0", alpha=0.5, label="predicted group mean, 94 %")
        ax.plot(hz, obs.mean(axis=0), "k", lw=2, label="observed mean")
        ax.plot(hz, olo, "k:", lw=1, label="observed recordings 5-95 %")
        ax.plot(hz, ohi, "k:", lw=1)
        inside = np.mean((obs.mean(axis=0) >= lo) & (obs.mean(axis=0) <= hi))
        print(f"{label}: observed mean spectrum inside the 94 % band of the predicted group mean "
              f"at {100 * inside:.0f} % of bins; predicted/observed peak (6-14 Hz) "
              f"{hz[6 - 2 + np.argmax(np.nanmedian(mean_pred, 0)[4:13])]:.1f} / "
              f"{hz[4 + np.argmax(obs.mean(0)[4:13])]:.1f} Hz")
        ax.set_yscale("log")
        ax.set_title(label)
        ax.set_xlabel("frequency (Hz)")
    axes[0].set_ylabel("PSD (V$^2$/Hz, file units as uV)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / "group_bonn_ppc.png", dpi=120)
    print("figures:", OUT / "group_bonn_effects.png", OUT / "group_bonn_ppc.png")


def json_k(p):
    import json

    return float(json.loads(p.attrs.get("convergence", "{}")).get("pareto_k", np.nan))


if __name__ == "__main__":
    main()
