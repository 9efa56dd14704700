"""The 40-recording two-stage group analysis through the Dask batch engine, 1 and 2 workers.

Run:  .venv/bin/python bench/group_two_stage.py [--n-per-group 20] [--sampler laplace]

The simulated 20 + 20 cohort of ``bench/group_common.py`` (patients differ by +0.3 in
g_ii_ss; tau_ii does not differ).  Stage one: every recording is fitted by
``nmm_inference.group.first_level_unit`` (``CMCModel(free=[g_ii_ss, tau_ii]).fit(sampler=...)``)
through ``run_batch`` on a local Dask cluster with 1 worker, then again (fresh store) with 2
workers; the wall time of each and their ratio are printed.  Stage two: first-level prior
divided out, ``fit_group``, and the comparison of the hypotheses "none / g_ii_ss / tau_ii /
all" by LOO and log evidence.  The total (first level with 2 workers + group level) is the
figure for the 15-minute target.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np

import group_common as GC


def main():
    from nmm_inference.batch import run_batch
    from nmm_inference.group import (compare_group_hypotheses, first_level_unit, fit_group,
                                     group_effects_table, remove_first_level_prior,
                                     summarize_posteriors)

    ap = argparse.ArgumentParser()
    ap.add_argument("--n-per-group", type=int, default=20)
    ap.add_argument("--sampler", default="laplace", choices=("laplace", "nutpie"))
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    X, sim, keys = GC.cohort(args.n_per_group, random_seed=args.seed)
    units = GC.units(sim, keys, sampler=args.sampler)
    times = {}
    store = None
    for nw in (int(w) for w in args.workers.split(",")):
        store = Path(tempfile.mkdtemp(prefix=f"group_two_stage_w{nw}_"))
        t0 = time.perf_counter()
        res = run_batch(first_level_unit, units, store=store, n_workers=nw, progressbar=False,
                        random_seed=args.seed)
        times[nw] = time.perf_counter() - t0
        print(f"first level, {len(keys)} recordings, {args.sampler}: {nw} Dask worker(s) {times[nw]:.1f} s "
              f"({len(res.done)} done, {len(res.failed)} failed)")
    if len(times) > 1:
        w = sorted(times)
        print(f"speed-up {w[0]} -> {w[-1]} workers: {times[w[0]] / times[w[-1]]:.2f}x")
    t0 = time.perf_counter()
    fits = res.load()
    posts = [fits[k] for k in keys]
    k_bad = sum(1 for p in posts if not p.attrs.get("converged", 1))
    m, C = summarize_posteriors(posts, GC.NAMES)
    ml, Cl = remove_first_level_prior(m, C, np.zeros(len(GC.NAMES)), GC.PRIOR_SD)
    dt = fit_group(ml, Cl, X, names=GC.NAMES, covariates=GC.COVARIATES, recordings=keys,
                   draws=1000, tune=1000, chains=2, random_seed=args.seed + 1)
    t_group = time.perf_counter() - t0
    t0 = time.perf_counter()
    comp = compare_group_hypotheses(ml, Cl, X, names=GC.NAMES, covariates=GC.COVARIATES,
                                    test_covariate="patient", recordings=keys, draws=1000, tune=1000,
                                    chains=2, random_seed=args.seed + 2)
    t_comp = time.perf_counter() - t0
    shutil.rmtree(store, ignore_errors=True)
    truth = GC.truth()
    print(f"first-level fits flagged not converged: {k_bad} of {len(posts)}")
    print(f"group fit: {t_group:.1f} s, r_hat_max {dt.attrs['r_hat_max']:.3f}, "
          f"ess_bulk_min {dt.attrs['ess_bulk_min']:.0f}, divergent {dt.attrs['n_divergent']}")
    for r in group_effects_table(dt):
        tr = truth[(r["covariate"], r["param"])]
        print(f"  {r['covariate']:8s} {r['param']:8s} truth {tr:5.2f}  mean {r['mean']:6.3f} "
              f"94% HDI [{r['hdi_low']:6.3f}, {r['hdi_high']:6.3f}]  excludes 0: {r['excludes_zero']}  "
              f"truth inside: {r['hdi_low'] <= tr <= r['hdi_high']}")
    c = comp["comparison"].to_dataset()
    print(f"hypotheses ({t_comp:.1f} s): best by LOO {c.attrs['best_loo']}, best by evidence {c.attrs['best_evidence']}")
    for h in c["hypothesis"].values:
        s = c.sel(hypothesis=h)
        print(f"  {str(h):8s} elpd_loo {float(s.elpd_loo):8.2f} +- {float(s.elpd_loo_se):5.2f}  "
              f"k_max {float(s.pareto_k_max):4.2f}  log_evidence {float(s.log_evidence):8.2f} +- "
              f"{float(s.log_evidence_se):4.2f}  P(h|m) {float(s.posterior_prob):.3f}")
    total = times[max(times)] + t_group
    print(f"TOTAL two-stage analysis ({max(times)} workers first level + group fit): {total:.1f} s "
          f"(+ {t_comp:.1f} s for the hypothesis comparison); target <= 900 s")


if __name__ == "__main__":
    main()
