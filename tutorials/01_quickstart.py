"""
Quickstart: the bundled demo recording, its spectra and what the CMC predicts
==============================================================================

The package ships one recording made by its own simulator (``data/demo_seizure_raw.fif``): a
canonical-microcircuit (CMC) source whose interneurons slowly lose their self-inhibition, so
that the circuit crosses a Hopf bifurcation and a ~12 Hz rhythm grows out of the noise (a
seizure-like transition).  This tutorial

1. loads the recording with MNE and looks at it;
2. computes windowed spectra with their degrees of freedom (:mod:`nmm_inference.features`);
3. compares the early, pre-transition spectrum with the CMC's predicted spectrum at the
   parameters that generated it (:mod:`nmm_inference.cmc`);
4. shows how the circuit's least-damped mode moves towards instability along the ramp.

Set ``NMM_TUTORIAL_QUICK=1`` for the reduced settings used in CI.
"""

# %%
import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from nmm_inference.cmc.equations import jacobian, neural_from_spm  # noqa: E402
from nmm_inference.cmc.spectra import predict_csd_full  # noqa: E402
from nmm_inference.datasets import DEMO_SETTINGS, load_demo  # noqa: E402
from nmm_inference.features import compute_psd, compute_windowed_psd  # noqa: E402

OUT = Path(os.environ.get("NMM_TUTORIAL_OUT", tempfile.gettempdir()))

# %%
# 1. The recording
# ----------------
raw = load_demo()
print(raw)
print("annotations:", raw.annotations)

# %%
# 2. Windowed spectra with degrees of freedom
# -------------------------------------------
# Each window's multitaper spectrum comes with the effective degrees of freedom of every
# bin, which the likelihood of :mod:`nmm_inference.inference` uses.
win = compute_windowed_psd(raw, window_length=4.0, step=2.0, fmin=2.0, fmax=40.0)
print(win)

# %%
# 3. The pre-transition spectrum against the CMC prediction
# ---------------------------------------------------------
# Before the ramp the circuit sits at a stable fixed point and is driven by white noise on its
# input; its spectrum is ``2 sigma^2 |H(f)|^2`` with ``H`` the CMC's transfer function (no
# delays in the simulator, so the undelayed prediction is the right one).
early = raw.copy().crop(0, 58)
psd = compute_psd(early, method="welch", fmin=2.0, fmax=60.0, n_per_seg=1000)
freqs = psd["freq"].values
H = predict_csd_full(DEMO_SETTINGS["P_start"], freqs, delays=False).transfer[:, 0, 0]
pred = 2 * DEMO_SETTINGS["noise_std"] ** 2 * np.abs(H) ** 2 * DEMO_SETTINGS["lfp_scale"] ** 2
ratio = psd.values[0] / pred
print(f"median |log(observed / predicted)| over 2-60 Hz: {np.median(np.abs(np.log(ratio))):.3f}")

# %%
# 4. The least-damped mode along the ramp
# ---------------------------------------
t0, t1 = DEMO_SETTINGS["ramp"]
g0 = np.asarray(DEMO_SETTINGS["P_start"]["G"])
g1 = np.asarray(DEMO_SETTINGS["P_end"]["G"])
ts = np.linspace(0, DEMO_SETTINGS["duration"], 60 if os.environ.get("NMM_TUTORIAL_QUICK") else 300)
growth = []
for t in ts:
    w = np.clip((t - t0) / (t1 - t0), 0, 1)
    ev = np.linalg.eigvals(jacobian(neural_from_spm({"G": (1 - w) * g0 + w * g1})))
    growth.append(ev.real.max())

fig, ax = plt.subplots(3, 1, figsize=(8, 8), layout="constrained")
ax[0].plot(raw.times, raw.get_data()[0] * 1e6, lw=0.3, color="k")
ax[0].axvline(raw.annotations.onset[0], color="C3", label="Hopf crossing ('seizure' annotation)")
ax[0].set(xlabel="time (s)", ylabel="LFP (uV)")
ax[0].legend(loc="upper left", fontsize=8)
ax[1].loglog(freqs, psd.values[0], color="0.4", label="observed, 0-58 s (Welch)")
ax[1].loglog(freqs, pred, color="C3", lw=2, label="CMC prediction")
ax[1].set(xlabel="frequency (Hz)", ylabel="PSD (V$^2$/Hz)")
ax[1].legend(fontsize=8)
ax[2].plot(ts, growth)
ax[2].axhline(0, color="k", lw=0.5)
ax[2].set(xlabel="time (s)", ylabel="growth rate of the\nleast-damped mode (1/s)")
fig.savefig(OUT / "01_quickstart.png", dpi=100)
print("figure saved to", OUT / "01_quickstart.png")
