"""Acceptance run: beta bursts on the Parkinsonian STN/ECoG recording, per channel.

Run: ``.venv/bin/python bench/switching_pd_bursts.py [--draws 500] [--tune 500]
[--channels ECOG_RIGHT_0 LFP_RIGHT_1 ...]`` (prints a table; no assertions).

For each neural channel: the 13-30 Hz Hilbert envelope (``compute_band_envelopes``), the first
and last 1 s left out; the conventional detector (envelope above its 75th percentile for
>= 100 ms, on the 100 Hz envelope); and the two-state switching model
(``build_free_switching_model``: damped quiet state, limit-cycle burst state, stationary
amplitude-SDE emissions at 25 Hz, free rates), sampled with nutpie.  Printed: burst rate and
median duration (episodes >= 100 ms, as for the detector) with 94 % HDIs beside the detector's
values, and the beta suppression during the three grips (MOV_RIGHT): posterior probability of
the burst state during grips vs at rest, and the detector's burst coverage during grips vs rest.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nmm_inference.features import compute_band_envelopes, read_recording  # noqa: E402
from nmm_inference.switching import detect_bursts_threshold, positive_envelope  # noqa: E402
from nmm_inference.switching.bursts import runs  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pd_stn_ecog_beta"
BAND = (13.0, 30.0)
EDGE = 1.0
SF_FIT = 25.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--tune", type=int, default=500)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--channels", nargs="*", default=None)
    args = ap.parse_args()
    from nmm_inference.switching.model import build_free_switching_model, fit
    from nmm_inference.switching.results import SwitchingResult

    rec = read_recording(next(DATA.glob("*.vhdr")), units="uV", picks="all")
    chans = args.channels or [c for c, t in zip(rec.ch_names, rec.ch_types) if t != "misc"]
    mov = rec.data[0, rec.ch_names.index("MOV_RIGHT")]
    grip = mov > mov.min() + 0.2 * (mov.max() - mov.min())
    print(f"grips at {np.round(runs(grip, True)[0] / rec.sfreq, 2).tolist()} s; "
          f"{args.chains} chains x ({args.tune} + {args.draws}) draws per channel")
    e100 = compute_band_envelopes(rec, bands={"beta": BAND}, sfreq_out=100.0, picks=chans,
                                  verbose="error")
    e25 = compute_band_envelopes(rec, bands={"beta": BAND}, sfreq_out=SF_FIT, picks=chans,
                                 verbose="error")
    hdr = (f"{'channel':<14}{'conv rate':>10}{'model rate [94% HDI]':>24}{'conv med':>10}"
           f"{'model median dur [HDI]':>26}{'P(burst) grip/rest':>20}{'conv grip/rest':>16}"
           f"{'r_hat':>7}")
    rows = []
    t0 = time.perf_counter()
    for ch in chans:
        x100 = e100.sel(band="beta", channel=ch).values
        conv = detect_bursts_threshold(x100, 100.0, exclude_edges=EDGE)
        t100 = np.arange(x100.size) / 100.0
        g100 = grip[np.clip(np.round(t100 * rec.sfreq).astype(int), 0, grip.size - 1)]
        inner = (t100 >= EDGE) & (t100 < t100[-1] + 0.01 - EDGE)
        in_conv = np.zeros(x100.size, bool)
        for o, d in zip(conv.onsets, conv.durations):
            in_conv[(t100 >= o) & (t100 < o + d)] = True
        y = positive_envelope(
            e25.sel(band="beta", channel=ch).values[int(EDGE * SF_FIT):-int(EDGE * SF_FIT)])
        model, terms = build_free_switching_model(y, sfreq=SF_FIT, kind="stationary",
                                                  parametrization="hopf", t0=EDGE)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            idata = fit(model, draws=args.draws, tune=args.tune, chains=args.chains,
                        random_seed=args.seed)
        import arviz as az

        rh = az.rhat(idata, var_names=["switch_log_damping", "switch_log_growth",
                                       "switch_log_rate"])
        rh = rh.to_dataset() if hasattr(rh, "to_dataset") else rh     # ArviZ 1.x: DataTree
        rhat = max(float(rh[v].max()) for v in rh.data_vars)
        res = SwitchingResult(terms, idata, n_draws=300, random_seed=args.seed)
        bs = res.burst_statistics(state="burst", envelope=y, min_duration=0.1)
        g = grip[np.clip(np.round(res.times * rec.sfreq).astype(int), 0, grip.size - 1)]
        p = res.probability[:, 1]
        rows.append((ch, conv, bs, p[g].mean(), p[~g].mean(), in_conv[g100 & inner].mean(),
                     in_conv[~g100 & inner].mean(), rhat))
    print(hdr)
    for ch, conv, bs, pg, pr, cg, cr, rhat in rows:
        r, m = bs["rate"], bs["median_duration"]
        rate = "{median:.2f} [{lower:.2f}, {upper:.2f}]".format(**r)
        dur = "{median:.3f} [{lower:.3f}, {upper:.3f}]".format(**m)
        print(f"{ch:<14}{conv.rate:>10.2f}{rate:>24}{conv.median_duration:>10.3f}{dur:>26}"
              f"{pg:>13.2f} / {pr:.2f}{cg:>9.2f} / {cr:.2f}{rhat:>7.3f}")
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
