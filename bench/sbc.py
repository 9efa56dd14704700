"""Simulation-based calibration of the default inversion (``invert_csd`` defaults).

Run:  .venv/bin/python bench/sbc.py [--n 200] [--draws 300] [--tune 300] [--chains 2]
      .venv/bin/python bench/sbc.py --summary        (figure and table from what is there)

For each data set a parameter vector is drawn from the default prior (SPM's priors for the
24 parameters other than ``f(1)``; ``f(1)`` from the default "auto" prior: with probability
1/2 SPM's N(0, 1/64) in model units, otherwise N(0, 30^2), i.e. unknown units), the
spectrum is computed on SPM's default 4-48 Hz grid and multiplied by chi2_64 / 64 (32
averaged periodograms, as in the golden SPM inversions), and the posterior is sampled with
the default method (nutpie on the mode-merged warped posterior) with reduced settings.
Prior draws whose delay operator does not converge (zero likelihood in the model) are
redrawn.  The quantile of the truth among the posterior draws is stored per parameter;
coverage of the central 50 % and 90 % intervals is the fraction of data sets whose truth
lies inside them (nominal 50 and 90; binomial standard errors are printed).

Results are written one JSON file per data set to bench/out/sbc/ (atomically), so the
script can be stopped and resumed.  The summary figure goes to bench/sbc_summary.png.
Settings: 2 chains x 300 draws (300 tuning steps), 16 optimiser starts: at least ~10x fewer
draws than a production fit, but every data set is checked for R-hat and ESS and those
figures are reported with the coverage.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "sbc"
FIG = HERE / "sbc_summary.png"


def write_json_atomic(path, obj):
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def draw_truth(rng):
    from nmm_inference.cmc.kernel import FREE_NAMES, spectrum
    from nmm_inference.inference._problem import AUTO_SLAB_SD, AUTO_SLAB_WEIGHT, SPM_F1_SD
    from nmm_inference.params import parameter_table

    specs = {s.name: s for s in parameter_table(1)}
    hz = np.arange(4.0, 49.0)
    for _ in range(100):
        th = np.array([specs[n].prior_mean + np.sqrt(specs[n].prior_var) * rng.standard_normal()
                       for n in FREE_NAMES])
        slab = rng.uniform() < AUTO_SLAB_WEIGHT
        th[FREE_NAMES.index("filter_offset")] = rng.normal(0.0, AUTO_SLAB_SD if slab else SPM_F1_SD)
        S, status, _ = spectrum(th, hz)
        if status != 2 and np.all(np.isfinite(S)) and np.all(S > 0):
            return hz, th, S, slab
    raise RuntimeError("could not draw a valid parameter vector")


def run_one(i, args):
    from nmm_inference.cmc.kernel import FREE_NAMES
    from nmm_inference.spm import invert_csd

    path = OUT / f"ds_{i:04d}.json"
    if path.exists():
        return None
    rng = np.random.default_rng([20261126, i])
    hz, th, S, slab = draw_truth(rng)
    dof = 64.0
    y = S * rng.chisquare(dof, hz.size) / dof
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = invert_csd(hz, y, dof=dof, random_seed=i, draws=args.draws, tune=args.tune,
                          chains=args.chains, n_starts=args.n_starts, log_evidence=False)
    wall = time.perf_counter() - t0
    q = {}
    for j, nm in enumerate(FREE_NAMES):
        x = post["posterior"][nm].values.ravel()
        q[nm] = float(np.mean(x < th[j]) + 0.5 * np.mean(x == th[j]))
    rec = {"i": i, "truth": dict(zip(FREE_NAMES, th.tolist())), "slab": bool(slab),
           "quantile": q, "wall_s": wall, "converged": int(post.attrs["converged"]),
           "r_hat_max": float(post.attrs["r_hat_max"]), "ess_bulk_min": float(post.attrs["ess_bulk_min"]),
           "ess_tail_min": float(post.attrs["ess_tail_min"]), "n_divergent": int(post.attrs["n_divergent"]),
           "n_components": int(post.attrs.get("n_warp_components", 0)),
           "settings": vars(args)}
    write_json_atomic(path, rec)
    return rec


def summarise():
    from nmm_inference.cmc.kernel import FREE_NAMES

    recs = [json.loads(p.read_text()) for p in sorted(OUT.glob("ds_*.json"))]
    n = len(recs)
    if n == 0:
        print("no results yet")
        return
    Q = np.array([[r["quantile"][nm] for nm in FREE_NAMES] for r in recs])
    c50 = np.mean(np.abs(Q - 0.5) < 0.25, axis=0) * 100
    c90 = np.mean(np.abs(Q - 0.5) < 0.45, axis=0) * 100
    se50 = np.sqrt(0.25 / n) * 100
    se90 = np.sqrt(0.09 / n) * 100
    print(f"SBC: {n} data sets (settings {recs[0]['settings']})")
    print(f"wall per data set: median {np.median([r['wall_s'] for r in recs]):.1f} s, "
          f"total {sum(r['wall_s'] for r in recs) / 60:.1f} min")
    print(f"converged (R-hat <= 1.01, ESS >= 100/chain): {sum(r['converged'] for r in recs)}/{n}; "
          f"R-hat max median {np.median([r['r_hat_max'] for r in recs]):.3f}, "
          f"worst {max(r['r_hat_max'] for r in recs):.3f}; "
          f"bulk ESS min median {np.median([r['ess_bulk_min'] for r in recs]):.0f}; "
          f"divergences total {sum(r['n_divergent'] for r in recs)}")
    print(f"binomial SE of a coverage: 50 %: {se50:.1f} points, 90 %: {se90:.1f} points")
    print(f"{'parameter':24s} {'cov50':>6s} {'cov90':>6s}  within +-5 points")
    ok50 = ok90 = 0
    for j, nm in enumerate(FREE_NAMES):
        a = abs(c50[j] - 50) <= 5
        b = abs(c90[j] - 90) <= 5
        ok50 += a
        ok90 += b
        print(f"{nm:24s} {c50[j]:6.1f} {c90[j]:6.1f}  {'yes' if a else 'NO '} {'yes' if b else 'NO '}")
    print(f"within +-5 points: 50 % intervals {ok50}/25, 90 % intervals {ok90}/25")
    # chance level: how many of 25 parameters would miss +-5 points if perfectly calibrated
    from scipy.stats import binom

    p50 = 1 - (binom.cdf(np.floor(0.55 * n), n, 0.5) - binom.cdf(np.ceil(0.45 * n) - 1, n, 0.5))
    p90 = 1 - (binom.cdf(np.floor(0.95 * n), n, 0.9) - binom.cdf(np.ceil(0.85 * n) - 1, n, 0.9))
    print(f"expected misses for a perfectly calibrated method with n={n}: "
          f"50 %: {25 * p50:.1f}/25, 90 %: {25 * p90:.1f}/25")
    # pooled uniformity of the quantiles (all parameters)
    from scipy.stats import kstest

    print(f"KS test of all quantiles against U(0,1) per parameter: min p = "
          f"{min(kstest(Q[:, j], 'uniform').pvalue for j in range(25)):.3f}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 7), gridspec_kw={"width_ratios": [1, 1.3]})
    ypos = np.arange(25)[::-1]
    ax = axes[0]
    ax.axvspan(45, 55, color="C0", alpha=0.1)
    ax.axvspan(85, 95, color="C1", alpha=0.1)
    ax.errorbar(c50, ypos, xerr=1.96 * se50, fmt="o", color="C0", label="central 50 %")
    ax.errorbar(c90, ypos, xerr=1.96 * se90, fmt="s", color="C1", label="central 90 %")
    ax.axvline(50, color="C0", lw=0.8)
    ax.axvline(90, color="C1", lw=0.8)
    ax.set_yticks(ypos)
    ax.set_yticklabels(FREE_NAMES, fontsize=8)
    ax.set_xlabel("coverage (%), bars: 95 % binomial interval; bands: nominal +-5")
    ax.set_title(f"SBC coverage, {n} data sets")
    ax.legend(loc="lower left", fontsize=8)
    ax = axes[1]
    grid = np.linspace(0, 1, 101)
    for j in range(25):
        ecdf = np.mean(Q[:, j][:, None] <= grid[None, :], axis=0)
        ax.plot(grid, ecdf - grid, lw=0.8, alpha=0.7)
    band = 1.36 / np.sqrt(n)
    ax.fill_between(grid, -band, band, color="grey", alpha=0.2, label="95 % KS band")
    ax.set_xlabel("quantile of the truth in the posterior")
    ax.set_ylabel("ECDF - uniform")
    ax.set_title("rank ECDF differences (all 25 parameters)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = FIG.with_name(FIG.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, FIG)
    print(f"figure: {FIG}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--draws", type=int, default=300)
    ap.add_argument("--tune", type=int, default=300)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--n-starts", type=int, default=16)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--summary", action="store_true")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if not args.summary:
        t0 = time.perf_counter()
        for i in range(args.start, args.n):
            rec = run_one(i, argparse.Namespace(draws=args.draws, tune=args.tune,
                                                chains=args.chains, n_starts=args.n_starts))
            if rec is not None:
                print(f"[{i}] {rec['wall_s']:.1f} s, conv {rec['converged']}, R-hat {rec['r_hat_max']:.3f}, "
                      f"ESS {rec['ess_bulk_min']:.0f}, K {rec['n_components']}, "
                      f"elapsed {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
    summarise()


if __name__ == "__main__":
    sys.exit(main())
