"""Inversion across a Hopf point: adiabatic line vs SPM's linear spectrum on the same data.

Recordings are simulated with the full nonlinear stochastic CMC
(:func:`nmm_inference.cmc.simulate.simulate_cmc`, no delays, white endogenous noise) at
parameters where the leading mode (the ss<->ii loop, ~38 Hz) has linear growth rate sigma
from -5 to +5 1/s: base ``S = 0.5`` (sigmoid slope), the ii->ss gain ``G(3)`` (``g_ii_ss``)
solved for each target sigma.  Each Welch spectrum (Hann, 4 s, 50 % overlap, recorded dof) is
inverted for ``g_ii_ss`` and ``log_noise_std`` (overall scale integrated out) twice with
:class:`nmm_inference.inference.hopf.HopfModel`: ``spectrum="adiabatic"`` (leading mode from
the amplitude reduction) and ``spectrum="spm"`` (linear transfer function with SPM's
eigenvalue conditioning).  Printed per recording and model: posterior mean and 94 % HDI of
each parameter, whether the truth is inside (marginal HDIs and the joint 94 % HPD region),
the implied posterior of sigma, the maximum log-likelihood and the posterior-predictive
coverage of the bins.

Both models carry by default a model-error term (``--dof-scale fit``: Gamma shape
``kappa dof / 2``, ``log kappa ~ N(0, 1.5^2)`` integrated out); with ``--dof-scale recorded``
the recorded dof are used as they are.

The adiabatic line carries by default the corrections beyond the cubic reduction that improve
the fit of simulated LFP spectra (``--corrections quintic,noise``: fifth-order normal form and
the sigmoid's multiplicative noise, :mod:`nmm_inference.inference.hopf`, "Beyond the cubic
line") and interferes with the other modes at its pulled frequency (``--interference
pulled``); ``--corrections none --interference linear`` is the cubic line of earlier runs.
Both models scale the log-likelihood for the correlation of neighbouring Hann-Welch bins
(``--bin-correlation``, default on; ``--no-bin-correlation`` treats the bins as independent).
``--line-gain-sd X`` (default off) gives the adiabatic line an unknown readout gain,
``log g ~ N(0, X^2)``, integrated out inside the likelihood (``HopfModel(line_gain_sd=X)``);
the record-0 details then also print the conditional posterior of ``log g`` at the MAP.
``--residual-lags K`` (default off) replaces the Hann composite-likelihood scale of each fit by
one estimated from the record's own residual correlation at lags 1..K at a preliminary MAP
(``HopfModel(residual_lags=K)``; never above the Hann scale); the scale used is printed per
record and appended to the per-record lines of ``--records-out``.

Coverage over independent records (``--records K``, default 1): for each sigma, K
recordings are simulated and fitted; record 0 is the recording of the single-record run
(bit-identical output), records ``k >= 1`` are independent of it and of each other.  Seeds,
with ``j`` the index of sigma in the default grid (-5, -2.5, 0, 2.5, 5; a sigma off that grid
gets ``j = 5 + its position in --sigmas``), so that a record does not depend on which sigmas are
run together:

* record 0: simulation seed ``1000 + j``; posterior draws, sub-samples and predictive draws
  from one generator ``default_rng(--seed)`` shared by the record-0 fits in run order (as the
  single-record runs always did);
* record ``k >= 1``: simulation seed ``SeedSequence([--seed, j, k]).generate_state(1)[0]``,
  fit generator ``default_rng([--seed, j, k, 1])``.

With K > 1 each record prints a compact line and the run ends with, per sigma and model, the
fraction of records whose truth is inside each marginal 94 % HDI and inside the joint 94 % HPD
(with its binomial SE, ``sqrt(p (1 - p) / K)``; at the nominal 0.94 it is
``sqrt(0.94 * 0.06 / K)``), the mean posterior SD of each parameter and the RMS over records of
``z = (posterior mean - truth) / posterior SD`` (about 1 when the posterior is calibrated; for
K = 10 normal z the central 95 % range of the RMS is about [0.57, 1.43]) with the mean z (bias)
and the scatter ratio (SD over records of the posterior mean / mean posterior SD: about 1 when
the posterior width is right, whatever the bias).
The summary also goes to ``--records-out`` (default ``bench/out/hopf_crossing_records.txt``).
The posterior of sigma, the maximum log-likelihood and the predictive coverage are computed for
record 0 only (``--record-details`` computes them for every record).

Usage: ``python bench/hopf_crossing.py [--duration 200] [--dof-scale fit|recorded]
[--sigmas -5 0 5] [--models adiabatic spm] [--corrections quintic,noise|all|none]
[--interference linear|pulled] [--no-bin-correlation] [--records K] [--records-out PATH]
[--record-details] [--first-record k0] [--line-gain-sd X] [--residual-lags K]
[--combine FILE ...]``

``--combine FILE ...`` fits nothing: it re-reads the per-record results of earlier
``--records-out`` files (e.g. one run per sigma, run in parallel) and writes their joint
summary to ``--records-out``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from scipy.optimize import brentq

from nmm_inference.cmc.simulate import simulate_cmc
from nmm_inference.features import compute_psd
from nmm_inference.inference.hopf import CORRECTIONS, INTERFERENCE, HopfModel, leading_line

BASE = {"S": np.array([[0.5]])}
NOISE = 0.02
FREE = ["g_ii_ss", "log_noise_std"]
PRIORS = {"g_ii_ss": (1.95, 0.25), "log_noise_std": (float(np.log(NOISE)), 1.0)}
TAPER_S = 4.0
SIGMAS = (-5.0, -2.5, 0.0, 2.5, 5.0)
HERE = os.path.dirname(os.path.abspath(__file__))


def P_of(g3):
    P = dict(BASE)
    P["G"] = np.array([[0.0, 0.0, g3, 0.0]])
    return P


def g3_for_sigma(sigma):
    # sigma = 0 exactly trips the simulator's Heun stability check; 1e-3 is the crossing
    target = 1e-3 if sigma == 0 else sigma
    return brentq(lambda g: leading_line(P_of(g), NOISE).sigma - target, 1.75, 2.4, xtol=1e-12)


def hdi(x, prob=0.94):
    x = np.sort(x)
    n = x.size
    k = int(np.floor(prob * n))
    i = np.argmin(x[k:] - x[:n - k])
    return x[i], x[i + k]


def ppc_coverage(model, idata, rng, prob=0.94, n=400):
    """Fraction of bins inside the central ``prob`` posterior-predictive interval."""
    post = idata.posterior
    X = np.stack([post[nm].values.ravel() for nm in model.free], axis=1)
    X = X[rng.choice(X.shape[0], size=min(n, X.shape[0]), replace=False)]
    reps = []
    for x in X:
        kappa = 1.0
        if getattr(model, "line_gain_sd", None) is not None:
            # exact conditional draw of (kappa, line gain) on their grid
            w, (So, Sl, Sx) = model._gain_posterior_grid(x)
            i = rng.choice(w.size, p=w.ravel())
            if w.ndim == 2:
                ik, ig = np.unravel_index(i, w.shape)
                kappa = float(np.exp(model._logk[ik]))
            else:
                ig = i
            g = float(np.exp(model._logg[ig]))
            S0 = So + g * Sl + np.sqrt(g) * Sx
        else:
            S0 = model.predict(x)
            if model.dof_scale == "fit":   # exact conditional draw of kappa on its grid
                lw = model._logw + model._ll_kappa(S0)
                p = np.exp(lw - lw.max())
                kappa = float(np.exp(rng.choice(model._logk, p=p / p.sum())))
        a = 0.5 * model.dof * kappa
        # overall scale: exact conditional draw (flat prior on its log): e^-f ~ Gamma(A, B)
        A = a.sum()
        B = np.sum(a * model.y / S0)
        S = S0 / rng.gamma(A, 1.0 / B)
        reps.append(rng.gamma(a, S / a))
    reps = np.array(reps)
    lo, hi = np.quantile(reps, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
    return float(np.mean((model.y >= lo) & (model.y <= hi)))


def sigma_index(sig, position):
    """Index of ``sig`` in the default grid :data:`SIGMAS` (``5 + position`` off the grid)."""
    for j, s0 in enumerate(SIGMAS):
        if sig == s0:
            return j
    return len(SIGMAS) + position


def record_seeds(seed, j, k, shared_rng):
    """Simulation seed and fit generator of record ``k`` at sigma index ``j`` (module doc)."""
    if k == 0:
        return 1000 + j, shared_rng
    sim_seed = int(np.random.SeedSequence([seed, j, k]).generate_state(1)[0])
    return sim_seed, np.random.default_rng([seed, j, k, 1])


def simulate_record(P, duration, sim_seed):
    """Welch spectrum (20-60 Hz, Hann 4 s) of one simulated recording: ``(hz, y, dof)``."""
    raw = simulate_cmc(P, duration=duration, sfreq=250.0, noise_std=NOISE, dt=5e-5,
                       burn_in=5.0, random_seed=sim_seed)
    psd = compute_psd(raw, method="welch", fmin=20.0, fmax=60.0, n_per_seg=int(TAPER_S * 250),
                      picks=["LFP 0"])
    return psd.freq.values, psd.values[0], psd.dof.values


def summarise_records(recs, K):
    """Lines of the per-sigma coverage summary.

    Parameters
    ----------
    recs : list of dict
        One per fitted record: ``sigma``, ``model``, ``inside`` (bool per parameter),
        ``joint`` (bool), ``mean`` and ``sd`` (posterior, per parameter), ``truth``.
    K : int
        Records per sigma requested.

    Returns
    -------
    list of str
    """
    se0 = np.sqrt(0.94 * 0.06 / K)
    out = [f"coverage over {K} independent records per sigma (nominal 0.94, binomial SE at the "
           f"nominal {se0:.3f}); z = (posterior mean - truth) / posterior SD, RMS z ~ 1 if calibrated",
           f"{'sigma':>6s} {'model':9s} {'n':>3s}  "
           + "  ".join(f"{'in HDI ' + nm:>22s}" for nm in FREE)
           + f"  {'in joint HPD':>14s}  "
           + "  ".join(f"{'mean SD ' + nm:>22s}  {'RMS z':>6s}  {'mean z':>6s}  {'scatter':>7s}"
                       for nm in FREE),
           "(scatter: SD over records of the posterior mean / mean posterior SD, ~1 when the "
           "posterior width is right whatever the bias)"]
    keys = []
    for r in recs:
        if (r["sigma"], r["model"]) not in keys:
            keys.append((r["sigma"], r["model"]))
    for sig, mod in keys:
        rs = [r for r in recs if r["sigma"] == sig and r["model"] == mod]
        n = len(rs)
        inside = np.array([r["inside"] for r in rs], float)
        joint = np.array([r["joint"] for r in rs], float)
        mean = np.array([r["mean"] for r in rs])
        sd = np.array([r["sd"] for r in rs])
        truth = np.array([r["truth"] for r in rs])
        z = (mean - truth) / sd

        def frac(v):
            p = v.mean()
            return f"{p:.2f} +- {np.sqrt(p * (1 - p) / n):.2f}"

        out.append(f"{sig:+6.2f} {mod:9s} {n:3d}  "
                   + "  ".join(f"{frac(inside[:, i]):>22s}" for i in range(len(FREE)))
                   + f"  {frac(joint):>14s}  "
                   + "  ".join(f"{sd[:, i].mean():22.4f}  {np.sqrt(np.mean(z[:, i] ** 2)):6.2f}  "
                               f"{z[:, i].mean():+6.2f}  "
                               f"{(mean[:, i].std(ddof=1) / sd[:, i].mean() if n > 1 else np.nan):7.2f}"
                               for i in range(len(FREE))))
    return out


def read_records(paths):
    """Per-record results from the ``per record`` sections of ``--records-out`` files.

    Parameters
    ----------
    paths : sequence of str
        Summary files written by runs with ``--records K > 1``.

    Returns
    -------
    list of dict
        As taken by :func:`summarise_records`; the truth is recomputed from the grid sigma
        nearest to the printed one (:data:`SIGMAS`).
    """
    recs = []
    for path in paths:
        with open(path) as f:
            lines = f.read().splitlines()
        i = next(n for n, ln in enumerate(lines) if ln.startswith("per record:"))
        for ln in lines[i + 1:]:
            w = ln.split()
            if len(w) < 7 + 2 * len(FREE):
                continue
            sig = min(SIGMAS, key=lambda s0: abs(s0 - float(w[0])))
            nf = len(FREE)
            vals = [float(v) for v in w[4:4 + 2 * nf]]
            recs.append(dict(sigma=sig, model=w[1], record=int(w[2]),
                             seed=int(w[3]), mean=vals[0::2], sd=vals[1::2],
                             inside=[v == "IN" for v in w[4 + 2 * nf:4 + 3 * nf]],
                             joint=w[4 + 3 * nf] == "IN",
                             truth=[g3_for_sigma(sig), float(np.log(NOISE))]))
    return recs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=200.0)
    ap.add_argument("--sigmas", type=float, nargs="*", default=list(SIGMAS))
    ap.add_argument("--n-grid", type=int, default=41)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dof-scale", default="fit", choices=("recorded", "fit"),
                    help="'fit' (default): model-error term, Gamma shape kappa dof / 2 with "
                         "log kappa ~ N(0, 1.5^2) integrated out; 'recorded': dof as recorded")
    ap.add_argument("--models", nargs="*", default=["adiabatic", "spm"], choices=("adiabatic", "spm"))
    ap.add_argument("--corrections", default="quintic,noise",
                    help="corrections of the adiabatic line: comma-separated subset of "
                         f"{CORRECTIONS}, 'all' or 'none' (default quintic,noise)")
    ap.add_argument("--interference", default="pulled", choices=INTERFERENCE)
    ap.add_argument("--bin-correlation", dest="bin_correlation", action="store_true", default=True)
    ap.add_argument("--no-bin-correlation", dest="bin_correlation", action="store_false")
    ap.add_argument("--records", type=int, default=1,
                    help="independent recordings per sigma (default 1); K > 1 adds the coverage "
                         "summary over records")
    ap.add_argument("--first-record", type=int, default=0,
                    help="skip records below this index (resume or extend a run; the seeds of a "
                         "record do not depend on the others)")
    ap.add_argument("--records-out", default=os.path.join(HERE, "out", "hopf_crossing_records.txt"),
                    help="file for the coverage summary when --records > 1")
    ap.add_argument("--combine", nargs="+", metavar="FILE",
                    help="no fits: summarise the per-record results of earlier --records-out "
                         "files together and write --records-out")
    ap.add_argument("--line-gain-sd", type=float, default=None,
                    help="adiabatic line only: unknown line readout gain, log g ~ N(0, X^2), "
                         "integrated out (default: none)")
    ap.add_argument("--residual-lags", type=int, default=None,
                    help="composite-likelihood scale from the residual correlation at bin lags "
                         "1..K at a preliminary MAP, per record (default: Hann scale)")
    ap.add_argument("--record-details", action="store_true",
                    help="sigma posterior, max loglik and predictive coverage for every record, "
                         "not only record 0")
    args = ap.parse_args()
    if args.records < 1:
        ap.error("--records must be >= 1")
    K = args.records
    if args.combine:
        recs = read_records(args.combine)
        Ks = {}
        for r in recs:
            Ks[(r["sigma"], r["model"])] = Ks.get((r["sigma"], r["model"]), 0) + 1
        lines = summarise_records(recs, max(Ks.values()))
        out = [f"command: python bench/hopf_crossing.py {' '.join(sys.argv[1:])}",
               "combined from: " + ", ".join(args.combine)] + [""] + lines
        with open(args.records_out, "w") as f:
            f.write("\n".join(out) + "\n")
        print("\n".join(lines))
        return
    corrections = (() if args.corrections == "none" else
                   CORRECTIONS if args.corrections == "all" else tuple(args.corrections.split(",")))
    header = [f"load: {os.getloadavg()}",
              f"model: S=0.5, free {FREE}, priors {PRIORS}, noise_std={NOISE}, Welch Hann {TAPER_S} s, "
              f"dof_scale={args.dof_scale}, bin_correlation={args.bin_correlation}; adiabatic line: "
              f"corrections={list(corrections)}, interference={args.interference}"
              + ("" if args.line_gain_sd is None else f", line_gain_sd={args.line_gain_sd}")
              + ("" if args.residual_lags is None else f", residual_lags={args.residual_lags}")]
    for h in header:
        print(h)
    rng = np.random.default_rng(args.seed)
    rows = []
    recs = []
    t_start = time.perf_counter()
    for pos, sig in enumerate(args.sigmas):
        j = sigma_index(sig, pos)
        g3 = g3_for_sigma(sig)
        P = P_of(g3)
        line = leading_line(P, NOISE)
        truth = np.array([g3, np.log(NOISE)])
        for k in range(args.first_record, K):
            sim_seed, frng = record_seeds(args.seed, j, k, rng)
            details = k == 0 or args.record_details
            t0 = time.perf_counter()
            hz, y, dof = simulate_record(P, args.duration, sim_seed)
            t_sim = time.perf_counter() - t0
            if k == args.first_record:
                print(f"\n=== sigma = {line.sigma:+.3f} 1/s (g_ii_ss = {g3:.4f}), line {line.frequency_hz:.2f} Hz, "
                      f"E[r^2] = {line.mean_I:.3f}, D = {line.D:.3f}; simulated {args.duration:.0f} s in "
                      f"{t_sim:.1f} s; {hz.size} bins {hz[0]:.1f}-{hz[-1]:.1f} Hz, dof {dof[0]:.1f}")
            if K > 1:
                print(f"--- record {k} (simulation seed {sim_seed})", flush=True)
            for spectrum in args.models:
                t0 = time.perf_counter()
                extra = (dict(corrections=corrections, interference=args.interference)
                         if spectrum == "adiabatic" else {})
                if spectrum == "adiabatic" and args.line_gain_sd is not None:
                    extra["line_gain_sd"] = args.line_gain_sd
                if args.residual_lags is not None:
                    extra["residual_lags"] = args.residual_lags
                m = HopfModel(y, freqs=hz, dof=dof, free=FREE, priors=PRIORS, base=BASE,
                              spectrum=spectrum, taper_seconds=TAPER_S, dof_scale=args.dof_scale,
                              bin_correlation=args.bin_correlation, **extra)
                dt = m.fit(n_grid=args.n_grid, draws=4000, random_seed=frng)
                t_fit = time.perf_counter() - t0
                inside = []
                txt = []
                means = []
                sds = []
                for i, nm in enumerate(FREE):
                    d = dt.posterior[nm].values.ravel()
                    lo, hi = hdi(d)
                    ok = lo <= truth[i] <= hi
                    inside.append(ok)
                    means.append(d.mean())
                    sds.append(d.std())
                    txt.append(f"{nm}: mean {d.mean():+.4f} HDI [{lo:+.4f}, {hi:+.4f}] truth {truth[i]:+.4f} "
                               f"{'IN' if ok else 'OUT'}")
                joint = m.joint_hpd_contains(truth)
                recs.append(dict(sigma=line.sigma, model=spectrum, record=k, seed=sim_seed,
                                 inside=inside, joint=joint, mean=means, sd=sds, truth=truth.tolist()))
                if args.residual_lags is not None:
                    recs[-1]["scale"] = m.loglik_scale
                    print(f"  [{spectrum:9s}] composite scale from residuals {m.loglik_scale:.3f}")
                if not details:
                    z = (np.array(means) - truth) / np.array(sds)
                    print(f"  [{spectrum:9s}] fit {t_fit:5.1f} s, "
                          + "; ".join(f"{nm} {means[i]:+.4f} sd {sds[i]:.4f} z {z[i]:+.2f} "
                                      f"{'IN' if inside[i] else 'OUT'}" for i, nm in enumerate(FREE))
                          + f"; joint HPD {'IN' if joint else 'OUT'}", flush=True)
                    continue
                d = np.stack([dt.posterior[nm].values.ravel() for nm in FREE], axis=1)
                sub = d[frng.choice(d.shape[0], 200, replace=False)]
                sig_post = np.array([leading_line(P_of(x[0]), np.exp(x[1])).sigma for x in sub])
                ll_max = max(m.log_likelihood(x) for x in sub)
                cov = ppc_coverage(m, dt, frng)
                kap = ""
                if args.dof_scale == "fit":
                    mk, sk = m.dof_scale_posterior(m.map_)
                    kap = f", kappa at MAP {np.exp(mk):.3f} (log sd {sk:.2f})"
                if getattr(m, "line_gain_sd", None) is not None:
                    mg, sg_ = m.line_gain_posterior(m.map_)
                    kap += f", line gain at MAP {np.exp(mg):.3f} (log sd {sg_:.3f})"
                print(f"  [{spectrum:9s}] fit {t_fit:5.1f} s, edge mass {dt.attrs['grid_edge_mass']:.1e}, "
                      f"max loglik {ll_max:.1f}, log evidence {dt.attrs['log_evidence']:.1f}, "
                      f"PPC 94% coverage {100 * cov:.1f} %{kap}")
                for t in txt:
                    print("     " + t)
                print(f"     sigma posterior mean {sig_post.mean():+.3f}, 94% HDI "
                      f"[{hdi(sig_post)[0]:+.3f}, {hdi(sig_post)[1]:+.3f}] (truth {line.sigma:+.3f}); "
                      f"joint 94% HPD contains truth: {joint}", flush=True)
                rows.append((line.sigma, spectrum, all(inside), joint, cov, ll_max))
    lab = "" if K == 1 else " (record 0)"
    print(f"\nsummary{lab}: sigma, model, truth in both marginal HDIs, truth in joint HPD, PPC coverage, max loglik")
    for r in rows:
        print(f"  {r[0]:+6.2f}  {r[1]:9s}  {str(r[2]):5s}  {str(r[3]):5s}  {100 * r[4]:5.1f} %  {r[5]:9.1f}")
    if K > 1:
        lines = summarise_records(recs, K)
        print()
        for ln in lines:
            print(ln)
        per = ["", "per record: sigma, model, record, simulation seed, posterior mean and SD of each "
                   "parameter, truth in each marginal HDI, in joint HPD"]
        for r in recs:
            per.append(f"  {r['sigma']:+6.2f} {r['model']:9s} {r['record']:3d} {r['seed']:11d}  "
                       + "  ".join(f"{mu:+.5f} {sd:.5f}" for mu, sd in zip(r["mean"], r["sd"]))
                       + "  " + " ".join("IN " if ok else "OUT" for ok in r["inside"])
                       + "  " + ("IN" if r["joint"] else "OUT")
                       + (f"  scale {r['scale']:.4f}" if "scale" in r else ""))
        wall = time.perf_counter() - t_start
        cmd = "python bench/hopf_crossing.py " + " ".join(sys.argv[1:])
        os.makedirs(os.path.dirname(os.path.abspath(args.records_out)), exist_ok=True)
        with open(args.records_out, "w") as f:
            f.write("\n".join([f"command: {cmd}", f"wall time {wall:.0f} s, load at end: {os.getloadavg()}"]
                              + header + [""] + lines + per) + "\n")
        print(f"\nwrote {args.records_out} (wall {wall:.0f} s)")


if __name__ == "__main__":
    main()
