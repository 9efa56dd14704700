"""
.. _tut-beta-bursts:

Beta bursts as switches between semi-stable states
==================================================

Threshold detectors count beta bursts; hidden Markov models describe envelope states.  Here a
burst is an episode of a *semi-stable state of an amplitude flow*: the beta mode's amplitude
``r`` follows the stochastic amplitude equation of the adiabatic reduction,

    dr = [r (sigma_s + a r^2) + D / (2 r)] dt + sqrt(D) dW,

whose growth rate ``sigma_s`` is switched between a damped "quiet" state (``sigma < 0``: a
noise-driven quasi-cycle) and a self-sustained "burst" state (``sigma > 0``: a noisy limit
cycle).  In the CMC such switching arises when the beta mode competes with another mode
(winner-take-all; ``nmm_inference.switching.examples``), and the growth rates, saturation,
noise and switching rates are then functions of the synaptic connections.  With 19 s of one
recording we fit the amplitude-level model (``build_free_switching_model``) and report bursts
with credible intervals, next to the conventional detector.

This tutorial (about a minute, real NUTS sampling):

1. reads the Parkinsonian STN/ECoG recording, its beta envelope and the grip-force trace;
2. runs the conventional detector (envelope above its 75th percentile for >= 100 ms);
3. fits the two-state switching model and decodes the bursts (forward-backward);
4. prints burst rate, median duration and amplitude with 94 % credible intervals beside the
   detector's numbers, and the beta suppression during grips;
5. turns the inferred bursts into ``mne.Annotations`` on the raw recording;
6. shows, for the bistable CMC example, which synaptic connections set the switching rates.
"""

# %%
# Setup
# -----
import os
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mne  # noqa: E402
import numpy as np  # noqa: E402

from nmm_inference.features import compute_band_envelopes, read_recording  # noqa: E402
from nmm_inference.switching import (detect_bursts_threshold, positive_envelope,  # noqa: E402
                                     recommended_sfreq)
from nmm_inference.switching.bursts import runs  # noqa: E402
from nmm_inference.switching.model import build_free_switching_model, fit  # noqa: E402
from nmm_inference.switching.results import SwitchingResult  # noqa: E402

t_start = time.perf_counter()
DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pd_stn_ecog_beta"
VHDR = next(DATA.glob("*.vhdr"))
CHANNEL = "ECOG_RIGHT_0"
BAND = (13.0, 30.0)          # beta band (the spectral peak is at 18-19.5 Hz)
EDGE = 1.0                   # s left out at both ends (filter edge effects), as the detector does

# %%
# 1. Data: beta envelope and grips
# --------------------------------
# The BrainVision file stores microvolts; ``units="uV"`` converts to volts.  Channel types come
# from the BIDS ``channels.tsv`` beside the file.
rec = read_recording(VHDR, units="uV", picks="all")
mov = rec.data[0, rec.ch_names.index("MOV_RIGHT")]
grip = mov > mov.min() + 0.2 * (mov.max() - mov.min())
g_on, g_off = runs(grip, True)
print(f"{rec.n_channels} channels at {rec.sfreq:g} Hz, {rec.n_times / rec.sfreq:.1f} s; grips at "
      f"{np.round(g_on / rec.sfreq, 2).tolist()} s")

env100 = compute_band_envelopes(rec, bands={"beta": BAND}, sfreq_out=100.0, picks=[CHANNEL],
                                verbose="error").sel(band="beta", channel=CHANNEL)
# The Hilbert envelope is smoothed over ~1 / bandwidth; the model's samples should be about
# that far apart (``recommended_sfreq``), so the model sees the envelope at 25 Hz.
sf_fit = 25.0
print(f"recommended envelope rate for {BAND} Hz: {recommended_sfreq(*BAND):.1f} Hz; using "
      f"{sf_fit:g} Hz")
env25 = compute_band_envelopes(rec, bands={"beta": BAND}, sfreq_out=sf_fit, picks=[CHANNEL],
                               verbose="error").sel(band="beta", channel=CHANNEL)
x100 = env100.values
n_edge = int(EDGE * sf_fit)
y = positive_envelope(env25.values[n_edge:-n_edge])

# %%
# 2. The conventional detector
# ----------------------------
conv = detect_bursts_threshold(x100, 100.0, percentile=75.0, min_duration=0.1,
                               exclude_edges=EDGE)
print(f"conventional: {conv.onsets.size} bursts, {conv.rate:.2f} /s, median duration "
      f"{1e3 * conv.median_duration:.0f} ms, threshold {1e6 * conv.threshold:.1f} uV")

# %%
# 3. The switching model
# ----------------------
# Two hidden states with the stationary envelope density of the amplitude SDE as emission
# (``kind="stationary"``): state 0 damped (``sigma_0 < 0``), state 1 a limit cycle
# (``sigma_1 > 0``), shared saturation ``a`` and diffusion ``D``; free switching rates.  On a
# short, smoothed envelope the stationary emission is the robust choice: the transition density
# (``kind="transition"``) also reads the envelope's local slopes, which band-pass smoothing
# makes persistent, and then tends to switch with every rise and fall.
model, terms = build_free_switching_model(y, sfreq=sf_fit, kind="stationary",
                                          parametrization="hopf", t0=EDGE,
                                          band_names=["beta"])
with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    idata = fit(model, draws=300, tune=300, chains=2, random_seed=1)
post = idata["posterior"]
sig = np.asarray(post["switch_sigma"])[..., 0]
rates = np.exp(np.asarray(post["switch_log_rate"]))
print("posterior medians: sigma (1/s)", np.round(np.median(sig, axis=(0, 1)), 2).tolist(),
      "| exit rates (1/s)", np.round(np.median(rates, axis=(0, 1)), 2).tolist())

res = SwitchingResult(terms, idata, n_draws=200, random_seed=2)
probs = res.state_probabilities()           # xarray: probability (time, state) with bands
print(probs)

# %%
# 4. Bursts with credible intervals, beside the detector
# ------------------------------------------------------
bs = res.burst_statistics(state="burst", envelope=y, min_duration=0.1)
fmt = "{median:.2f} [{lower:.2f}, {upper:.2f}]"
print(f"{'':<22}{'conventional':>14}{'switching model (94 % HDI)':>32}")
print(f"{'rate (1/s)':<22}{conv.rate:>14.2f}{fmt.format(**bs['rate']):>32}")
print(f"{'median duration (s)':<22}{conv.median_duration:>14.3f}"
      f"{fmt.format(**bs['median_duration']):>32}")
amp = {k: 1e6 * v for k, v in bs["amplitude"].items()}
print(f"{'amplitude (uV)':<22}{1e6 * conv.amplitudes.mean():>14.1f}{fmt.format(**amp):>32}")
print(f"{'time in burst state':<22}{'':>14}{fmt.format(**bs['occupancy']):>32}")
dw = res.dwell_times()
print("mean dwell times (s), from the rates:",
      {k: round(v["from_rates"]["median"], 2) for k, v in dw.items()})

t_fit = res.times
in_grip = grip[np.clip(np.round(t_fit * rec.sfreq).astype(int), 0, grip.size - 1)]
p_burst = probs["probability"].sel(state="burst").values
print(f"P(burst state): {p_burst[in_grip].mean():.2f} during grips vs "
      f"{p_burst[~in_grip].mean():.2f} at rest (beta suppression during movement)")
t100 = np.arange(x100.size) / 100.0
in_conv = np.zeros(x100.size, bool)
for o, d in zip(conv.onsets, conv.durations):
    in_conv[(t100 >= o) & (t100 < o + d)] = True
g100 = grip[np.clip(np.round(t100 * rec.sfreq).astype(int), 0, grip.size - 1)]
print(f"conventional bursts cover {in_conv[g100].mean():.2f} of grip time vs "
      f"{in_conv[~g100 & (t100 > EDGE) & (t100 < t100[-1] - EDGE)].mean():.2f} of rest time")
events = res.switch_events(min_duration=0.1)
print(events.head())

# %%
# 5. Annotations on the raw recording
# -----------------------------------
raw = mne.io.read_raw_brainvision(VHDR, verbose="error")
ann = res.to_annotations(state="burst", description="beta_burst")
raw.set_annotations(ann)
print(f"{len(raw.annotations)} 'beta_burst' annotations on {raw.ch_names[:3]}...; first: "
      f"{raw.annotations[0]['onset']:.2f} s for {raw.annotations[0]['duration']:.2f} s")

# %%
# 6. The mechanism: which connections set the switching rates
# -----------------------------------------------------------
# For a CMC source with two competing modes (the bistable example: ~60 Hz and ~26 Hz states)
# the same quantities -- state growth rates, saturation, noise, and the mean dwell times from
# the reduced amplitude SDE's backward Kolmogorov equation -- are functions of the gains, with
# exact derivatives.  ``add_switching_likelihood`` puts them into a PyMC model (sharing the CMC
# parameters with a spectral likelihood if wanted); ``bench/switching_simulation.py`` recovers
# the ss self-inhibition G1 from envelopes of the full nonlinear CMC this way.
from nmm_inference.switching import MechanismSpec, assess_mechanism  # noqa: E402
from nmm_inference.switching import switching_quantities  # noqa: E402
from nmm_inference.switching.examples import bistable_example  # noqa: E402

ex = bistable_example()
spec = MechanismSpec(bands=((46.0, 76.0), (8.0, 44.0)), states=((0,), (1,)))
ass = assess_mechanism(ex["G"], ex["T"], ex["R"], ex["U"], ex["noise_std"], [0, 1, 0, 0], spec)
print(ass.summary())
vals, jac = switching_quantities(ex["G"], ex["T"], ex["R"], ex["U"], ex["noise_std"],
                                 [0, 1, 0, 0], ass.spec, gradient=True)
dlog = jac["log_dwell"][:, :10] * ex["G"]          # d log(dwell) / d log(G_i)
print("mean dwell times (s):", np.round(np.exp(vals["log_dwell"]), 2).tolist())

# %%
# Figure
# ------
fig, ax = plt.subplots(2, 2, figsize=(12, 7), gridspec_kw={"width_ratios": [3, 1]})
a0, a1 = ax[0, 0], ax[1, 0]
a0.plot(t100, 1e6 * x100, lw=0.7, color="k", label=f"{CHANNEL} {BAND[0]:g}-{BAND[1]:g} Hz envelope")
a0.axhline(1e6 * conv.threshold, color="C1", ls="--", lw=0.8, label="75th percentile")
for o, d in zip(conv.onsets, conv.durations):
    a0.axvspan(o, o + d, color="C1", alpha=0.3, lw=0)
for on, off in zip(g_on, g_off):
    for a in (a0, a1):
        a.axvspan(on / rec.sfreq, off / rec.sfreq, color="C2", alpha=0.15, lw=0)
a0.set(ylabel="envelope (uV)", title="conventional bursts (orange), grips (green)")
a0.legend(loc="upper right", fontsize=8)
lo = probs["lower"].sel(state="burst").values
hi = probs["upper"].sel(state="burst").values
a1.fill_between(t_fit, lo, hi, color="C0", alpha=0.3, lw=0, label="94 % band over draws")
a1.plot(t_fit, p_burst, color="C0", label="P(burst state | data)")
for o, d in zip(ann.onset, ann.duration):
    a1.axvspan(o, o + d, ymin=0.92, ymax=1.0, color="C3", lw=0)
a1.set(xlabel="time (s)", ylabel="probability", ylim=(0, 1.05),
       title="switching model: posterior burst probability (red: annotations)")
a1.legend(loc="lower right", fontsize=8)
for a in (a0, a1):
    a.set_xlim(0, t100[-1])
b = ax[0, 1]
names = ["rate (1/s)", "median dur. (s)"]
conv_v = [conv.rate, conv.median_duration]
mod = [bs["rate"], bs["median_duration"]]
for i in range(2):
    b.plot(i - 0.1, conv_v[i], "o", color="C1", label="conventional" if i == 0 else None)
    b.errorbar(i + 0.1, mod[i]["median"], yerr=[[mod[i]["median"] - mod[i]["lower"]],
                                                 [mod[i]["upper"] - mod[i]["median"]]],
               fmt="s", color="C0", label="model, 94 % HDI" if i == 0 else None)
b.set_xticks([0, 1], names)
b.set_title("burst statistics")
b.legend(fontsize=8)
c = ax[1, 1]
c.bar(np.arange(10) - 0.2, dlog[0], width=0.4, label="dwell in ~60 Hz state")
c.bar(np.arange(10) + 0.2, dlog[1], width=0.4, label="dwell in ~26 Hz state")
c.set_xticks(np.arange(10), [f"G{i + 1}" for i in range(10)], fontsize=7)
c.set(ylabel="d log dwell / d log G", title="bistable CMC: what sets the rates")
c.legend(fontsize=7)
fig.tight_layout()
out = Path(os.environ.get("NMM_TUTORIAL_OUT", tempfile.gettempdir())) / "04_beta_bursts.png"
fig.savefig(out, dpi=100)
print(f"figure saved to {out}; tutorial ran in {time.perf_counter() - t_start:.1f} s")
