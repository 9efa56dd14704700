"""Acceptance run of the switching model on simulated data from the full nonlinear CMC.

Run: ``.venv/bin/python bench/switching_simulation.py [--duration 600] [--noise 1.0]
[--draws 400] [--tune 400] [--seed 1]`` (prints a report; no assertions).

1. Simulate the full 8-state CMC (``simulate_cmc_states``: stochastic Heun, no reduction) of the
   bistable example source (``nmm_inference.switching.examples``: a ~60 Hz and a ~26 Hz
   winner-take-all state) with white noise on every population input.
2. Truth: the mode amplitudes ``r_k = |p_k^H x|`` of the full trajectory (left eigenvectors of
   the linearisation; smoothed over 40 ms), scaled intensities ``J_k = r_k^2 / I_k*``, the basin
   label with hysteresis (committed to state k once ``J_k - J_j > 0.5``) and, for every switch,
   the time of the last crossing of ``J_0 = J_1`` before the commitment.
3. Data: the LFP (sp voltage), band envelopes of the two bands by
   ``nmm_inference.features.compute_band_envelopes`` at the envelope rate, first and last 1 s
   left out.
4. Model: ``add_switching_likelihood`` with the CMC parameters at their true values except the
   log-scaling of G1 (ss self-inhibition, which tilts the double well: see the example's notes)
   and the log input-noise std, both with broad priors; the sensor gain per band is free
   (log-normal around the mechanistic gain, sd 0.2), as it would be on recordings; the switching
   rates come from the mechanism (mean dwell times of the reduced amplitude SDE) times a
   log-normal discrepancy.
5. Report: state classification accuracy against the true basin, median switch-time error, the
   posterior of log G1 (94 % HDI) against the truth (0), the rate source and the timing.
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

from nmm_inference.adiabatic import noise_diffusion, reduce_cmc  # noqa: E402
from nmm_inference.cmc.simulate import simulate_cmc_states  # noqa: E402
from nmm_inference.errors import ReductionValidityWarning  # noqa: E402
from nmm_inference.features import compute_band_envelopes, read_recording  # noqa: E402
from nmm_inference.switching.bursts import hdi_interval, match_switches, runs  # noqa: E402
from nmm_inference.switching.examples import bistable_example  # noqa: E402
from nmm_inference.switching.mechanism import MechanismSpec, assess_mechanism  # noqa: E402


#: Bands around the two modes: wide, so that the envelope's smoothing (about 1 / bandwidth)
#: stays short against the sampling interval of the fit.
BANDS = ((46.0, 76.0), (8.0, 44.0))
#: Prior of log G1 (mean, sd): centred away from the truth (0), inside the bistable window.
G1_PRIOR = (0.03, 0.05)
#: Inferred switches: posterior-mode path with dwells shorter than this (s) merged.
MIN_DWELL = 0.3


def true_basins(states, red, sfreq, *, smooth=0.04, core=0.5):
    """Basin labels (committed, with switch times at the last J0 = J1 crossing) of a full run."""
    modes = red.modes[:2]
    pv = np.array([m.left_vector for m in modes])
    r = np.abs((states - red.operating_state) @ np.conj(pv).T)
    k = max(1, int(round(smooth * sfreq)))
    ker = np.ones(k) / k
    r = np.column_stack([np.convolve(r[:, j], ker, mode="same") for j in range(2)])
    st = [s for s in red.stable_states(warn=False) if not s.is_rest]
    Istar = np.array([next(s.intensities[0] for s in st if s.active == (j,)) for j in range(2)])
    J = r ** 2 / Istar
    u = J[:, 0] - J[:, 1]
    lab = np.empty(u.size, dtype=int)
    cur = 0 if u[0] >= 0 else 1
    last_cross = 0
    switches = []
    for i in range(u.size):
        if i > 0 and np.sign(u[i]) != np.sign(u[i - 1]):
            last_cross = i
        new = 0 if u[i] > core else (1 if u[i] < -core else cur)
        if new != cur:
            switches.append((last_cross, cur, new))
            cur = new
        lab[i] = cur
    # relabel: the switch happens at the last crossing
    lab2 = np.empty_like(lab)
    cur = lab[0] if not switches else switches[0][1]
    pos = 0
    for i_sw, a, b in switches:
        lab2[pos:i_sw] = cur
        cur = b
        pos = i_sw
    lab2[pos:] = cur
    t_sw = np.array([(i - 0.5) / sfreq for i, _, _ in switches])
    fr = np.array([a for _, a, _ in switches], dtype=int)
    to = np.array([b for _, _, b in switches], dtype=int)
    return lab2, t_sw, fr, to, J


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=600.0)
    ap.add_argument("--noise", type=float, default=0.35)
    ap.add_argument("--fit-sfreq", type=float, default=2.0)
    ap.add_argument("--decode-sfreq", type=float, default=25.0)
    ap.add_argument("--emission-discrepancy", type=float, default=0.2)
    ap.add_argument("--draws", type=int, default=400)
    ap.add_argument("--tune", type=int, default=400)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kind", default="stationary")
    ap.add_argument("--sampler", default="nutpie")
    args = ap.parse_args()
    warnings.simplefilter("ignore", ReductionValidityWarning)
    import pymc as pm
    import pytensor.tensor as pt

    from nmm_inference.switching.model import add_switching_likelihood, fit
    from nmm_inference.switching.results import SwitchingResult

    ex = bistable_example()
    red = reduce_cmc(ex["G"], ex["T"], ex["R"], ex["U"])
    sf = 250.0
    t0 = time.perf_counter()
    _, X = simulate_cmc_states(ex["spm"], duration=args.duration, sfreq=sf, noise_std=0.0,
                               population_noise_std=np.full((1, 4), args.noise), burn_in=2.0,
                               random_seed=args.seed)
    t_sim = time.perf_counter() - t0
    lab, t_sw, fr, to, _ = true_basins(X, red, sf)
    lfp = X[:, 2]                                    # sp voltage (SPM's LFP observer)
    rec = read_recording(lfp[None], sfreq=sf, units="au", ch_names=["LFP"])
    bands = {"gamma": BANDS[0], "beta": BANDS[1]}

    def envelopes(rate):
        env = compute_band_envelopes(rec, bands=bands, sfreq_out=rate, verbose="error")
        sfe = float(env.attrs["sfreq"])
        n_ex = int(round(sfe))
        y = env.sel(channel="LFP").values.T[n_ex:-n_ex]          # (n_times, 2)
        return y, sfe, (np.arange(y.shape[0]) + n_ex) / sfe

    y, sfe, t_fit = envelopes(args.fit_sfreq)
    y_dec, sfd, t_env = envelopes(args.decode_sfreq)
    lab_env = lab[np.clip(np.round(t_env * sf).astype(int), 0, lab.size - 1)]
    keep_sw = (t_sw > t_env[0]) & (t_sw < t_env[-1])
    t_sw, fr, to = t_sw[keep_sw], fr[keep_sw], to[keep_sw]
    D_true = noise_diffusion(red, args.noise)[:2]
    print(f"simulated {args.duration:g} s of the full CMC in {t_sim:.1f} s; noise std "
          f"{args.noise} on every population (D = {np.round(D_true, 4).tolist()}); "
          f"{t_sw.size} true switches, time in gamma state {np.mean(lab_env == 0):.2f}")

    spec = MechanismSpec(bands=BANDS, states=((0,), (1,)))
    G_true = ex["G"]
    ref = dict(G=G_true, T=ex["T"], R=ex["R"], U=ex["U"], noise_std=np.full(4, args.noise),
               readout=np.array([0.0, 1.0, 0.0, 0.0]))
    ass = assess_mechanism(*ref.values(), spec)
    gain0 = ass.values["gain"]
    floor0 = 0.1 * np.median(y, axis=0)
    init = {"log_G1": G1_PRIOR[0], "log_noise": np.log(args.noise) + 0.2,
            "log_gain": np.log(gain0), "log_floor": np.log(floor0)}
    with pm.Model() as model:
        log_g1 = pm.Normal("log_G1", *G1_PRIOR)          # ss self-inhibition (log-scaling)
        log_noise = pm.Normal("log_noise", np.log(args.noise) + 0.2, 0.5)
        log_gain = pm.Normal("log_gain", np.log(gain0), 0.2, shape=(2,))
        log_floor = pm.Normal("log_floor", np.log(floor0), 1.0, shape=(2,))
        G = pt.set_subtensor(pt.as_tensor_variable(G_true)[0], G_true[0] * pt.exp(log_g1))
        noise = pt.exp(log_noise) * pt.ones(4)
        terms = add_switching_likelihood(
            "sw", y, sfreq=sfe, G=G, T=ex["T"], R=ex["R"], U=ex["U"], noise_std=noise,
            readout=ref["readout"], spec=spec, reference=ref, gain=pt.exp(log_gain),
            floor=pt.exp(log_floor), emission_discrepancy_sd=args.emission_discrepancy,
            kind=args.kind, state_names=ex["state_names"], band_names=["gamma", "beta"],
            t0=float(t_fit[0]))
    print(f"rate source: {terms.rate_source}")
    for r in terms.reasons:
        print("  -", r)
    t0 = time.perf_counter()
    idata = fit(model, draws=args.draws, tune=args.tune, chains=args.chains,
                random_seed=args.seed, nuts_sampler=args.sampler,
                initvals=init)
    t_fit = time.perf_counter() - t0
    post = idata["posterior"]
    g1 = np.asarray(post["log_G1"]).ravel()
    lo, hi = hdi_interval(g1, 0.94)
    res = SwitchingResult(terms, idata, n_draws=100, random_seed=args.seed, envelope=y_dec,
                          sfreq=sfd, t0=float(t_env[0]))
    path = res.map_path()
    acc = float(np.mean(path == lab_env))
    ev = res.switch_events(min_duration=MIN_DWELL)
    t_inf = ev["time"].to_numpy()
    names = ex["state_names"]
    fr_i = np.array([names.index(s) for s in ev["from_state"]], dtype=int)
    to_i = np.array([names.index(s) for s in ev["to_state"]], dtype=int)
    lag = match_switches(t_sw, fr, to, t_inf, fr_i, to_i, max_lag=2.0)
    matched = np.isfinite(lag)
    import arviz as az

    summ = az.summary(idata, var_names=["log_G1", "log_noise", "log_gain", "log_floor",
                                        "sw_log_rate_discrepancy"])
    print(summ)
    print(f"fit: {args.chains} chains x ({args.tune} + {args.draws}) draws in {t_fit:.0f} s "
          f"({args.sampler})")
    print("\n=== acceptance (full nonlinear CMC, bistable regime) ===")
    print(f"state classification vs true basin: {100 * acc:.1f} %   (target >= 90 %)")
    print(f"switches: {t_sw.size} true, {t_inf.size} inferred (posterior-mode path, dwells "
          f">= {MIN_DWELL} s), {matched.sum()} matched within 2 s")
    if matched.any():
        print(f"median |switch-time error|: {1e3 * np.median(np.abs(lag[matched])):.0f} ms "
              f"(target <= 100 ms); median signed error {1e3 * np.median(lag[matched]):.0f} ms")
    inside = lo <= 0.0 <= hi
    print(f"(prior of log G1: Normal{G1_PRIOR}; envelopes fitted at {sfe:g} Hz "
          f"({args.kind} emissions), decoded at {sfd:g} Hz)")
    print(f"log G1 (truth 0): posterior mean {g1.mean():.4f}, 94 % HDI [{lo:.4f}, {hi:.4f}] -> "
          f"{'contains' if inside else 'MISSES'} the truth")
    print(f"mean dwell (s) posterior: {res.dwell_times()}")


if __name__ == "__main__":
    main()
