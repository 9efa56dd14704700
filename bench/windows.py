"""Throughput of per-window posteriors: a 500-s single-channel recording, 2-s windows, 1-s step.

Run:  .venv/bin/python bench/windows.py [--channel T3] [--workers 1 2]

Recording: the Malow scalp EEG (``../shared/data/seizure_scalp_malow``, 500 s at 100 Hz),
one channel (default T3).  Windows: 2 s every 1 s (499 windows), multitaper spectra 1-45 Hz
with their dof.  Every window's posterior is the MAP + Laplace approximation of
:func:`nmm_inference.onset.fit_windows` (warm start from the neighbouring window, forward and
backward sweeps), run through :func:`nmm_inference.batch.run_batch` on a local Dask cluster
with 1 and with 2 worker processes (a fresh store each time, so nothing is reused).  Then the
linked change-point model (:func:`nmm_inference.onset.link_windows`) on the 2-worker result.

Printed: wall time, windows per minute for each worker count, the speed-up, the time of the
linked model, and the load average of the machine before and after (the machine is shared;
figures measured under load are lower bounds on the throughput).  Target: every window's
posterior in <= 10 min on this 2-core machine.
"""
from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / ".." / "shared" / "data" / "seizure_scalp_malow" / "malow_seizure_raw.fif"
OUT = HERE / "out"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--channel", default="T3")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import mne
    import numpy as np

    from nmm_inference.features import compute_windowed_psd
    from nmm_inference.onset import fit_windows, link_windows

    OUT.mkdir(exist_ok=True)
    raw = mne.io.read_raw_fif(DATA, preload=True, verbose="error")
    dur = raw.n_times / raw.info["sfreq"]
    t0 = time.perf_counter()
    psd = compute_windowed_psd(raw, window_length=2.0, step=1.0, fmin=1.0, fmax=45.0,
                               picks=[args.channel])
    t_psd = time.perf_counter() - t0
    nw = psd.sizes["window"]
    print(f"recording {dur:.0f} s, channel {args.channel}: {nw} windows (2 s, step 1 s), "
          f"{psd.sizes['freq']} bins; spectra in {t_psd:.1f} s")
    fits = None
    rates = {}
    for w in args.workers:
        store = OUT / f"windows_bench_store_{w}w"
        shutil.rmtree(store, ignore_errors=True)
        load0 = os.getloadavg()
        t0 = time.perf_counter()
        fits = fit_windows(psd, store=store, scheduler=None, n_workers=w,
                           random_seed=args.seed)
        wall = time.perf_counter() - t0
        load1 = os.getloadavg()
        n_ok = int(np.isfinite(fits["logp"].values).sum())
        rates[w] = nw / wall * 60
        print(f"{w} worker(s): {n_ok}/{nw} window posteriors in {wall:.1f} s wall = "
              f"{rates[w]:.1f} windows/min (cluster start-up included); load average "
              f"{load0[0]:.2f} before, {load1[0]:.2f} after; target <= 600 s: {wall <= 600}")
    if len(rates) > 1:
        ws = sorted(rates)
        print(f"speed-up {ws[-1]} vs {ws[0]} worker(s): {rates[ws[-1]] / rates[ws[0]]:.2f}x")
    t0 = time.perf_counter()
    tree = link_windows(fits)
    print(f"linked change-point model over {nw} windows: {time.perf_counter() - t0:.1f} s; "
          f"onset median {tree.attrs['onset_median']:.1f} s "
          f"[{tree.attrs['onset_lower']:.1f}, {tree.attrs['onset_upper']:.1f}]")


if __name__ == "__main__":
    main()
