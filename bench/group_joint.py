"""Joint hierarchical CMC model against the two-stage route on a simulated 20 + 20 cohort.

Run:  .venv/bin/python bench/group_joint.py [--n-per-group 20] [--draws 500] [--tune 500]
          [--chains 4] [--cores 2] [--parameterization mixed|centred|noncentred]

The cohort (``bench/group_common.py``): 40 spectra (2-40 Hz, 100 dof per bin, random
units) from the one-source CMC with g_ii_ss and tau_ii varying between recordings; patients
differ from controls by +0.3 in g_ii_ss only.  Two-stage: Laplace first-level fits (all other
parameters fixed as in the simulation), first-level prior divided out, second-level NUTS.
Joint: every spectrum's likelihood in one PyMC model (``fit_joint``), started at the
first-level posterior means (``--no-init``: at the prior).  Printed: every group
effect from both routes with its 94 % HDI, whether the truth is inside and zero outside, and
the agreement ``|mean_joint - mean_two_stage| / sqrt(sd_joint**2 + sd_two_stage**2)``.
Figure: bench/out/group_joint_effects.png.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np

import group_common as GC

OUT = Path(__file__).resolve().parent / "out"


def main():
    from nmm_inference.group import (first_level_unit, fit_group, group_effects_table,
                                     plot_group_effects, remove_first_level_prior,
                                     summarize_posteriors)
    from nmm_inference.group_joint import fit_joint

    ap = argparse.ArgumentParser()
    ap.add_argument("--n-per-group", type=int, default=20)
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--tune", type=int, default=500)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--parameterization", default="mixed",
                    help="joint model: 'centred', 'noncentred' or 'mixed' (g_ii_ss centred, "
                         "tau_ii non-centred)")
    ap.add_argument("--no-init", action="store_true",
                    help="joint model: do not start at the first-level posterior means")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    par = ({"g_ii_ss": "centred", "tau_ii": "noncentred"} if args.parameterization == "mixed"
           else args.parameterization)
    OUT.mkdir(exist_ok=True)
    warnings.simplefilter("ignore")
    X, sim, keys = GC.cohort(args.n_per_group, random_seed=args.seed)
    t0 = time.perf_counter()
    units = GC.units(sim, keys)
    posts = [first_level_unit(units[k], random_seed=i) for i, k in enumerate(keys)]
    m, C = summarize_posteriors(posts, GC.NAMES)
    ml, Cl = remove_first_level_prior(m, C, np.zeros(len(GC.NAMES)), GC.PRIOR_SD)
    d2 = fit_group(ml, Cl, X, names=GC.NAMES, covariates=GC.COVARIATES, recordings=keys,
                   draws=1000, tune=1000, chains=2, random_seed=args.seed + 1)
    t2 = time.perf_counter() - t0
    t0 = time.perf_counter()
    dj = fit_joint(sim["spectra"], GC.FREQS, GC.DOF, X, names=GC.NAMES, covariates=GC.COVARIATES,
                   recordings=keys, fixed=GC.FIXED, draws=args.draws, tune=args.tune,
                   chains=args.chains, cores=args.cores, random_seed=args.seed + 2,
                   parameterization=par, init_theta=None if args.no_init else m)
    tj = time.perf_counter() - t0
    print(f"cohort {2 * args.n_per_group} recordings; two-stage {t2:.0f} s (first level + group), "
          f"joint {tj:.0f} s ({args.draws}+{args.tune} x {args.chains} chains, {args.cores} cores, "
          f"{dj.attrs['parameterization']})")
    for lab, dt in (("two-stage", d2), ("joint", dj)):
        print(f"{lab}: r_hat_max {dt.attrs['r_hat_max']:.3f} ess_bulk_min {dt.attrs['ess_bulk_min']:.0f} "
              f"divergent {dt.attrs['n_divergent']} (beta, tau)")
    ss = dj["sample_stats"]
    print(f"joint recording level (theta / eps): r_hat_max {dj.attrs['r_hat_max_recording']:.3f} "
          f"ess_bulk_min {dj.attrs['ess_bulk_min_recording']:.0f}; mean tree depth "
          f"{float(ss['depth'].mean()):.2f}, mean leapfrog steps {float(ss['n_steps'].mean()):.1f}")
    import arviz as az
    print(az.summary(dj, var_names=["beta", "tau"])[["mean", "sd", "r_hat", "ess_bulk", "ess_tail"]]
          .to_string())
    truth = GC.truth()
    t2r = {(r["covariate"], r["param"]): r for r in group_effects_table(d2)}
    tjr = {(r["covariate"], r["param"]): r for r in group_effects_table(dj)}
    print(f"{'effect':28s} {'truth':>6s} | {'two-stage mean [94% HDI]':>30s} | {'joint mean [94% HDI]':>30s} | z_diff")
    for key in t2r:
        a, b = t2r[key], tjr[key]
        z = abs(a["mean"] - b["mean"]) / np.hypot(a["sd"], b["sd"])
        print(f"{key[0] + ': ' + key[1]:28s} {truth[key]:6.2f} | {a['mean']:7.3f} [{a['hdi_low']:7.3f}, {a['hdi_high']:7.3f}]"
              f"{'*' if a['excludes_zero'] else ' '} {'in ' if a['hdi_low'] <= truth[key] <= a['hdi_high'] else 'OUT'} | "
              f"{b['mean']:7.3f} [{b['hdi_low']:7.3f}, {b['hdi_high']:7.3f}]{'*' if b['excludes_zero'] else ' '} "
              f"{'in ' if b['hdi_low'] <= truth[key] <= b['hdi_high'] else 'OUT'} | {z:5.2f}")
    print("(* = 94 % HDI excludes zero; in/OUT = truth inside the HDI)")
    th2 = d2["posterior"]["theta"].mean(("chain", "draw")).values
    thj = dj["posterior"]["theta"].mean(("chain", "draw")).values
    for j, n in enumerate(GC.NAMES):
        print(f"shrunken theta[{n}]: rms(two-stage - joint) {np.sqrt(np.mean((th2[:, j] - thj[:, j]) ** 2)):.4f}, "
              f"rms(joint - truth) {np.sqrt(np.mean((thj[:, j] - sim['theta'][:, j]) ** 2)):.4f}, "
              f"rms(first-level mean - truth) {np.sqrt(np.mean((m[:, j] - sim['theta'][:, j]) ** 2)):.4f}")
    fig = plot_group_effects({"two-stage": d2, "joint": dj}, truth=truth)
    fig.savefig(OUT / "group_joint_effects.png", dpi=120)
    print("figure:", OUT / "group_joint_effects.png")


if __name__ == "__main__":
    main()
