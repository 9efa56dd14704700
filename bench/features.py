"""Benchmark: all time-resolved features of the 500-s, 21-channel seizure recording.

Per-window PSD with degrees of freedom and band envelopes (the five default bands, with
their per-window means) in 2-s windows with a 1-s step, against a naive baseline in the
same run: a Python loop over windows calling ``scipy.signal.welch`` and, per band,
``sosfiltfilt`` + ``hilbert`` on each window.

Run::

    .venv/bin/python bench/features.py [--repeat 3]

Target: the features in <= 5 s.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

DATA = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "seizure_scalp_malow"
        / "malow_seizure_raw.fif")
WINDOW, STEP = 2.0, 1.0
TARGET_S = 5.0


def _features(rec, method):
    from nmm_inference.features import compute_windowed_features

    return compute_windowed_features(rec, window_length=WINDOW, step=STEP, method=method)


def _baseline(rec, bands):
    from scipy.signal import butter, hilbert, sosfiltfilt, welch

    x, sf = rec.data[0], rec.sfreq
    n_win, n_step = int(WINDOW * sf), int(STEP * sf)
    sos = {name: butter(4, band, btype="bandpass", fs=sf, output="sos")
           for name, band in bands.items()}
    psds, envs = [], []
    for s in range(0, x.shape[1] - n_win + 1, n_step):
        seg = x[:, s:s + n_win]
        f, p = welch(seg, fs=sf, nperseg=n_win // 2, axis=-1)
        psds.append(p)
        envs.append([np.abs(hilbert(sosfiltfilt(sos[b], seg, axis=-1), axis=-1)).mean(axis=-1)
                     for b in bands])
    return np.array(psds), np.array(envs)


def _best(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing (best kept)")
    args = parser.parse_args()
    if not DATA.is_file():
        raise SystemExit(f"Recording not found: {DATA.resolve()}")

    from nmm_inference.features import read_recording
    from nmm_inference.features.envelopes import DEFAULT_BANDS

    t0 = time.perf_counter()
    rec_all = read_recording(DATA, picks="all", exclude_bads=False)  # all 21 channels
    t_read = time.perf_counter() - t0
    bands = {k: v for k, v in DEFAULT_BANDS.items() if v[1] < rec_all.sfreq / 2}
    _features(rec_all, "multitaper")  # warm-up: imports, FFT plans

    print(f"recording: {rec_all.n_channels} channels x {rec_all.n_times} samples at "
          f"{rec_all.sfreq:g} Hz ({rec_all.duration:g} s); read in {t_read:.2f} s")
    print(f"windows: {WINDOW:g} s, step {STEP:g} s; bands {list(bands)}; best of {args.repeat}")
    results = {}
    for method in ("multitaper", "welch"):
        t, ds = _best(lambda m=method: _features(rec_all, m), args.repeat)
        results[method] = t
        print(f"  nmm_inference ({method:10s}): {t:7.3f} s  psd {dict(ds['psd'].sizes)}, "
              f"median dof {float(np.median(ds['psd']['dof'])):.3g}, envelope "
              f"{dict(ds['envelope'].sizes)} at {ds.attrs['envelope_sfreq']:.4g} Hz")
    t_base, (p, e) = _best(lambda: _baseline(rec_all, bands), args.repeat)
    print(f"  naive per-window scipy loop   : {t_base:7.3f} s  psd {p.shape}, envelopes {e.shape}")
    for method, t in results.items():
        ok = "PASS" if t <= TARGET_S else "FAIL"
        print(f"{method}: {t:.3f} s (target <= {TARGET_S:g} s: {ok}); baseline/ours = "
              f"{t_base / t:.1f}x")


if __name__ == "__main__":
    main()
