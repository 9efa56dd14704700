"""Acceptance run of the switching model on simulated data from the full nonlinear CMC.

Run: ``.venv/bin/python bench/switching_simulation.py [--duration 600] [--noise 0.35]
[--draws 400] [--tune 400] [--chains 2] [--seed 1]`` (prints a report; no assertions).

Everything is :func:`nmm_inference.switching.validation.simulation_check` (see its module notes
for the steps): simulate the bistable example source with the full 8-state CMC (stochastic
Heun, no reduction), label the true basins from the full trajectory's mode amplitudes, take the
LFP's band envelopes, fit the mechanistic switching model (free: log G1, the connection that
tilts the double well, the input noise, sensor gains and background floors; rates from the
mechanism with a discrepancy term) with NUTS, decode the states at 25 Hz.  Printed: state
classification accuracy against the true basin, the median switch-time error of matched
switches, the 94 % HDI of log G1 against the truth (0), and the posterior summary.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nmm_inference.switching.validation import simulation_check  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=600.0)
    ap.add_argument("--noise", type=float, default=0.35)
    ap.add_argument("--fit-sfreq", type=float, default=2.0)
    ap.add_argument("--decode-sfreq", type=float, default=25.0)
    ap.add_argument("--emission-discrepancy", type=float, default=0.4)
    ap.add_argument("--diffusion-discrepancy", type=float, default=0.3)
    ap.add_argument("--rate-discrepancy", type=float, default=1.0)
    ap.add_argument("--draws", type=int, default=400)
    ap.add_argument("--tune", type=int, default=400)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sampler", default="nutpie")
    ap.add_argument("--save", default=None, help="write the posterior (netCDF) here")
    args = ap.parse_args()
    import arviz as az

    chk = simulation_check(duration=args.duration, noise=args.noise, fit_sfreq=args.fit_sfreq,
                           decode_sfreq=args.decode_sfreq,
                           emission_discrepancy_sd=args.emission_discrepancy,
                           diffusion_discrepancy_sd=args.diffusion_discrepancy,
                           rate_discrepancy_sd=args.rate_discrepancy, draws=args.draws,
                           tune=args.tune, chains=args.chains, random_seed=args.seed,
                           sampler=args.sampler)
    if args.save:
        chk.idata.to_netcdf(args.save)
    info = chk.info
    print(f"simulated {args.duration:g} s of the full CMC in {chk.simulate_seconds:.1f} s; noise "
          f"std {args.noise} on every population (D = {np.round(info['diffusion'], 4).tolist()});"
          f" {chk.n_true_switches} true switches, time in gamma state "
          f"{info['gamma_occupancy']:.2f}")
    print(f"rate source: {chk.rate_source}")
    for r in info["reasons"]:
        print("  -", r)
    print(az.summary(chk.idata, var_names=["log_G1", "log_noise", "log_gain", "log_floor",
                                           "sw_log_rate_discrepancy", "sw_log_D_discrepancy",
                                           "sw_log_sigma_discrepancy"]))
    print(f"discrepancy priors (sd): emission growth rates {info['emission_discrepancy_sd']}, "
          f"diffusions {info['diffusion_discrepancy_sd']}, rates {info['rate_discrepancy_sd']}")
    print(f"fit: {args.chains} chains x ({args.tune} + {args.draws}) draws in "
          f"{chk.fit_seconds:.0f} s ({args.sampler}); load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs at the end")
    print("\n=== acceptance (full nonlinear CMC, bistable regime) ===")
    print(f"state classification vs true basin: {100 * chk.accuracy:.1f} %   (target >= 90 %)")
    lag = chk.switch_errors
    matched = np.isfinite(lag)
    print(f"switches: {chk.n_true_switches} true, {chk.n_inferred_switches} inferred "
          f"(posterior-mode path, dwells >= {info['min_dwell']} s), {matched.sum()} matched "
          f"within 2 s")
    if matched.any():
        print(f"median |switch-time error|: {1e3 * chk.median_abs_switch_error:.0f} ms "
              f"(target <= 100 ms); median signed error {1e3 * np.median(lag[matched]):.0f} ms")
    lo, hi = chk.g1_hdi
    print(f"(prior of log G1: Normal{info['g1_prior']}; envelopes fitted at "
          f"{info['fit_sfreq']:g} Hz (stationary emissions), decoded at "
          f"{info['decode_sfreq']:g} Hz)")
    print(f"log G1 (truth 0): posterior mean {chk.g1_mean:.4f}, 94 % HDI [{lo:.4f}, {hi:.4f}] "
          f"-> {'contains' if chk.truth_in_hdi else 'MISSES'} the truth")
    print(f"mean dwell (s) posterior: {chk.result.dwell_times()}")


if __name__ == "__main__":
    main()
