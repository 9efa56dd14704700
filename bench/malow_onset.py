"""Seizure onset in the Malow scalp recording: time-resolved CMC inversion with a change point.

Run:  .venv/bin/python bench/malow_onset.py [--channels T3 T4 T5 T6] [--step 2] [--workers 2]

Data: ``../shared/data/seizure_scalp_malow/malow_seizure_raw.fif`` (100 Hz, 500 s; annotated
``seizure`` onset 350 s from the dataset description "seizure onset occurs after the 350-th
second"; a temporal-lobe seizure, so the four temporal electrodes T3 T4 T5 T6 are used by
default).  Every 2-s window (multitaper, 1-45 Hz, recorded dof) is inverted by MAP + Laplace
(:func:`nmm_inference.onset.fit_windows`, Dask with ``--workers`` processes, per-unit netCDF in
bench/out/malow_store_*, so a killed run resumes); the windows are then linked by the
change-point random-walk model (:func:`nmm_inference.onset.link_windows`, channels sharing
the onset time).

Printed: the onset posterior (median, 94 % equal-tailed interval; acceptance: median in
345-370 s, interval excluding times before 330 s), P(change), the jump of every parameter
with its interval and whether it moves, per channel, and the timings.  Figure:
bench/out/malow_onset_<channel>.png (trajectories through the recording).
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
DATA = HERE.parent / ".." / "shared" / "data" / "seizure_scalp_malow" / "malow_seizure_raw.fif"
OUT = HERE / "out"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--channels", nargs="+", default=["T3", "T4", "T5", "T6"])
    ap.add_argument("--window", type=float, default=2.0)
    ap.add_argument("--step", type=float, default=2.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=20261127)
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import mne

    from nmm_inference.features import compute_windowed_psd
    from nmm_inference.onset import fit_windows, link_windows, plot_onset

    OUT.mkdir(exist_ok=True)
    raw = mne.io.read_raw_fif(DATA, preload=True, verbose="error")
    ann = [(a["onset"], a["description"]) for a in raw.annotations]
    print(f"recording: {raw.n_times / raw.info['sfreq']:.0f} s at {raw.info['sfreq']:g} Hz; "
          f"annotations {ann}; channels {args.channels}")
    psd = compute_windowed_psd(raw, window_length=args.window, step=args.step, fmin=1.0,
                               fmax=45.0, picks=args.channels)
    print(f"windows: {psd.sizes['window']} x {psd.sizes['channel']} channels, "
          f"{psd.sizes['freq']} bins, dof {float(np.median(psd['dof'])):.1f}")
    store = OUT / f"malow_store_w{args.window:g}_s{args.step:g}_{'-'.join(args.channels)}_seed{args.seed}"
    t0 = time.perf_counter()
    fits = fit_windows(psd, store=store, scheduler=None, n_workers=args.workers,
                       random_seed=args.seed, progressbar=False)
    t_fit = time.perf_counter() - t0
    n_fail = int(np.sum(~np.isfinite(fits["logp"].values)))
    print(f"per-window fits: {t_fit:.1f} s wall with {args.workers} worker(s) "
          f"(store {store.name}; finished units are reused), {n_fail} window(s) failed")
    t0 = time.perf_counter()
    tree = link_windows(fits)
    t_link = time.perf_counter() - t0
    a = tree.attrs
    print(f"linked model: {t_link:.1f} s; hyperparameters q = {tree['hyper'].attrs['q']}, "
          f"kappa = {tree['hyper'].attrs['kappa']}")
    print(f"ONSET posterior median {a['onset_median']:.1f} s, 94 % interval "
          f"[{a['onset_lower']:.1f}, {a['onset_upper']:.1f}] s; P(change) = {a['p_change']:.4f}")
    ok_med = 345 <= a["onset_median"] <= 370
    ok_lo = a["onset_lower"] >= 330
    print(f"acceptance: median in 345-370 s: {ok_med}; interval excludes < 330 s: {ok_lo}")
    chg = tree["change"].to_dataset()
    for ch in chg["channel"].values:
        print(f"channel {ch}: P(jump at the onset), jump given that it jumps (mean [94 % "
              "interval], P(>0)); * = moves (P(jump) > 0.5)")
        for p in chg["param"].values:
            c = chg.sel(channel=ch, param=p)
            star = "*" if bool(c["moves"]) else " "
            print(f"  {star} {str(p):16s} P(jump) {float(c['prob_move']):.3f}  "
                  f"{float(c['mean']):+7.3f} [{float(c['lower']):+7.3f}, "
                  f"{float(c['upper']):+7.3f}]  P(>0) = {float(c['prob_positive']):.3f}")
        fig = plot_onset(tree, channel=str(ch), annotation=350.0)
        path = OUT / f"malow_onset_{ch}.png"
        fig.savefig(path, dpi=110)
        print(f"  figure: {path}")


if __name__ == "__main__":
    main()
