"""Bonn segments: ictal (set S) vs eyes-open surface EEG (set Z) from inferred CMC parameters.

Run:  .venv/bin/python bench/bonn_auc.py [--n 100] [--workers 2]

Data: ``../shared/data/bonn_epilepsy/E_S`` (S, intracranial ictal) and ``A_Z`` (Z, surface,
eyes open), 4097 samples at 173.61 Hz each.  The same pipeline runs on every segment, with
nothing chosen per set: Welch spectrum (2-s Hann segments, half overlap, 1-40 Hz, recorded
dof), MAP + Laplace inversion of the one-source CMC (free data scale, 8 optimiser starts,
segments independent: no warm start or stitching between them;
:func:`nmm_inference.onset.fit_windows` with one segment per unit, Dask, resumable store
bench/out/bonn_store_*).  Features: the posterior means (Laplace) of the parameters of
:data:`nmm_inference.onset.DEFAULT_PARAMS`: 10 synaptic/intrinsic parameters and the overall
log scale ``filter_offset``.

Classifier: L2-penalised logistic regression on standardised features (penalty fixed at 1,
not tuned), stratified 10-fold cross-validation repeated 5 times with different splits;
AUC of the pooled out-of-fold scores (Mann-Whitney), mean and range over repeats.  Printed
for (a) all 11 features, (b) the 10 neural parameters without the overall scale (the sets
differ in recording type and amplitude, so (b) shows what the spectral shape alone gives),
and (c) each parameter alone (no fitting: the AUC of the raw posterior mean).
Acceptance: cross-validated AUC >= 0.95.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / ".." / "shared" / "data" / "bonn_epilepsy"
OUT = HERE / "out"
SFREQ = 173.61


def auc(score, label):
    """Area under the ROC curve (Mann-Whitney U with mid-ranks for ties)."""
    from scipy.stats import rankdata

    score, label = np.asarray(score, float), np.asarray(label, bool)
    r = rankdata(score)
    n1, n0 = label.sum(), (~label).sum()
    return float((r[label].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def fit_logistic(X, y, lam=1.0):
    """L2-penalised logistic regression (intercept not penalised); returns (w, b)."""
    from scipy.optimize import minimize
    from scipy.special import expit

    def f(wb):
        w, b = wb[:-1], wb[-1]
        z = X @ w + b
        # log(1 + exp(-s z)) with s = +-1, stable
        s = np.where(y, 1.0, -1.0)
        loss = np.sum(np.logaddexp(0.0, -s * z)) + 0.5 * lam * w @ w
        g = -s * expit(-s * z)
        return loss, np.append(X.T @ g + lam * w, g.sum())

    r = minimize(f, np.zeros(X.shape[1] + 1), jac=True, method="L-BFGS-B")
    return r.x[:-1], r.x[-1]


def cv_auc(X, y, *, n_folds=10, n_repeats=5, random_seed=0):
    rng = np.random.default_rng(random_seed)
    out = []
    for _ in range(n_repeats):
        folds = np.empty(y.size, int)
        for cls in (False, True):
            idx = np.flatnonzero(y == cls)
            rng.shuffle(idx)
            folds[idx] = np.arange(idx.size) % n_folds
        score = np.empty(y.size)
        for k in range(n_folds):
            tr, te = folds != k, folds == k
            mu, sd = X[tr].mean(0), X[tr].std(0) + 1e-12
            w, b = fit_logistic((X[tr] - mu) / sd, y[tr])
            score[te] = ((X[te] - mu) / sd) @ w + b
        out.append(auc(score, y))
    return np.array(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100, help="segments per set")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=20261127)
    args = ap.parse_args()

    import xarray as xr

    from nmm_inference.features import compute_psd, read_recording
    from nmm_inference.onset import DEFAULT_PARAMS, fit_windows

    OUT.mkdir(exist_ok=True)
    sets = {"S": sorted((DATA / "E_S").glob("*.txt"))[:args.n],
            "Z": sorted((DATA / "A_Z").glob("*.txt"))[:args.n]}
    spectra, labels, names = [], [], []
    for lab, files in sets.items():
        for f in files:
            x = np.loadtxt(f)
            rec = read_recording(x[None, :], sfreq=SFREQ, units="uV")
            psd = compute_psd(rec, method="welch", n_per_seg=int(round(2 * SFREQ)), fmin=1.0,
                              fmax=40.0)
            spectra.append(psd.isel(channel=0))
            labels.append(lab == "S")
            names.append(f.stem)
    hz = spectra[0]["freq"].values
    dof = spectra[0]["dof"].values
    arr = np.stack([s.values for s in spectra])[:, None, :]
    da = xr.DataArray(arr, dims=("window", "channel", "freq"),
                      coords={"freq": hz, "dof": ("freq", dof), "channel": ["EEG"],
                              "window_center": ("window", np.arange(len(names), dtype=float))})
    print(f"{len(names)} segments ({sum(labels)} S, {len(labels) - sum(labels)} Z), "
          f"{hz.size} bins {hz[0]:g}-{hz[-1]:g} Hz, dof {float(np.median(dof)):.1f}")
    store = OUT / f"bonn_store_n{args.n}_seed{args.seed}"
    t0 = time.perf_counter()
    fits = fit_windows(da, chunk_size=1, n_starts_cold=8, backward=False, store=store,
                       scheduler=None,
                       n_workers=args.workers, random_seed=args.seed)
    print(f"fits: {time.perf_counter() - t0:.1f} s wall with {args.workers} worker(s)")
    y = np.array(labels)
    ok = np.isfinite(fits["logp"].values[0])
    print(f"{int((~ok).sum())} segment(s) failed to fit (left out)")
    feats = list(DEFAULT_PARAMS)
    X = fits["map"].sel(param=feats).values[0]
    X, y = X[ok], y[ok]
    res = {}
    lab_all = f"all {len(feats)} ({len(feats) - 1} neural + filter_offset)"
    for label, cols in ((lab_all, feats),
                        (f"{len(feats) - 1} neural, no overall scale",
                         [f for f in feats if f != "filter_offset"])):
        idx = [feats.index(c) for c in cols]
        a = cv_auc(X[:, idx], y, random_seed=args.seed)
        res[label] = a
        print(f"CV AUC, {label}: mean {a.mean():.4f} (range {a.min():.4f}-{a.max():.4f} over "
              f"{a.size} repeats of stratified 10-fold)")
    print("single parameters (AUC of the posterior mean, S high = AUC > 0.5):")
    for j, f in enumerate(feats):
        print(f"  {f:16s} AUC {auc(X[:, j], y):.3f}   median S {np.median(X[y, j]):+.3f}  "
              f"Z {np.median(X[~y, j]):+.3f}")
    best = res[lab_all].mean()
    print(f"acceptance (CV AUC >= 0.95, all features): {best >= 0.95}")


if __name__ == "__main__":
    main()
