"""
Fitting a resting spectrum: the alpha rhythm of an eyes-closed EEG
==================================================================

A resting scalp EEG (PhysioNet's EEGMAT, subject 0, the background recording before the
arithmetic task) has a strong posterior alpha peak: at O2 it stands 17 dB above the
aperiodic background at 10.5 Hz.  This tutorial fits SPM's canonical microcircuit (CMC) to
the O2 spectrum with the package's Bayesian inversion and checks the fit against the data:

1. read the recording and pick one channel (:func:`nmm_inference.features.read_recording`);
2. estimate its spectrum with the degrees of freedom of every bin
   (:func:`nmm_inference.features.compute_psd`);
3. build and fit the model (:class:`nmm_inference.inference.CMCModel`): SPM's 25 free
   parameters and priors, a Whittle/Gamma likelihood, NUTS on the mode-merged posterior;
4. read the posterior: convergence, the parameters that moved away from their priors, and
   the posterior-predictive spectrum against the observed one.

The recording lives in ``../shared/data/rest_eegmat`` beside the repository (not shipped
with the package; ODC-By 1.0, cite Zyma et al. 2019 and PhysioNet); set ``NMM_DATA`` to the
folder that holds ``rest_eegmat`` if it is elsewhere.  Set ``NMM_TUTORIAL_QUICK=1`` for the
reduced settings used in CI (60 s of data, short chains: a real but rough posterior in a few
tens of seconds).  The same fit from the command line::

    nmm fit Subject00_1.edf --picks "EEG O2" --fmin 2 --fmax 40 --seg-len 2 --out o2.nc
    nmm report o2.nc --html o2.html
"""

# %%
import json
import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from nmm_inference.features import compute_psd, find_spectral_peaks, read_recording  # noqa: E402
from nmm_inference.inference import CMCModel  # noqa: E402

QUICK = bool(os.environ.get("NMM_TUTORIAL_QUICK"))
OUT = Path(os.environ.get("NMM_TUTORIAL_OUT", tempfile.gettempdir()))
HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
DATA = Path(os.environ.get("NMM_DATA", HERE.parent.parent / "shared" / "data"))
EDF = DATA / "rest_eegmat" / "Subject00_1.edf"
if not EDF.exists():
    raise FileNotFoundError(f"{EDF} not found: set NMM_DATA to the folder holding rest_eegmat/")

# %%
# 1. One channel of the recording
# -------------------------------
# EDF files are read by MNE in volts; ``read_recording`` checks the amplitudes, drops nothing
# silently and keeps the annotations.  The first 60 s are enough for a quick fit; the whole
# 182 s give a sharper spectrum.
rec = read_recording(EDF, picks=["EEG O2"], tmax=60.0 if QUICK else None)
print(f"{rec.ch_names[0]}: {rec.duration:.0f} s at {rec.sfreq:g} Hz")

# %%
# 2. The spectrum and its degrees of freedom
# ------------------------------------------
# Welch's estimate with 2-s Hann segments (0.5-Hz bins; 1-s segments in the quick run) from
# 2 to 40 Hz: the recording was low-passed at 45 Hz.  Every bin carries its equivalent
# chi-square degrees of freedom, which set the width of the likelihood.
seg_s = 1.0 if QUICK else 2.0
psd = compute_psd(rec, method="welch", fmin=2.0, fmax=40.0, n_per_seg=int(seg_s * rec.sfreq))
freqs, power = psd["freq"].values, psd.values[0]
peaks = find_spectral_peaks(psd.isel(channel=0), fmin=4.0, fmax=30.0)
print(f"{freqs.size} bins, dof per bin about {float(np.median(psd['dof'])):.0f}")
print("spectral peaks:", ", ".join(f"{p.freq:.1f} Hz (+{p.height_db:.1f} dB)" for p in peaks))

# %%
# 3. The model and the fit
# ------------------------
# The likelihood takes the dof of every bin as recorded (``dof_scale="recorded"``, the
# default).  ``dof_scale="fit"`` would learn a factor on them (the analogue of SPM's estimated
# precision); on this spectrum that lets the posterior settle on a broad, peakless spectrum
# explained as "noisy data" (factor ~0.01), so the recorded dof are the better choice here:
# compare both with ``model.ppc_coverage()`` and the figure below.  The sampler finds the
# posterior's modes by multi-start optimisation, merges them into one density and runs NUTS
# (nutpie) on it.
model = CMCModel(psd, dof_scale="recorded")
if QUICK:
    post = model.fit(draws=200, tune=300, chains=2, n_starts=12, random_seed=1)
else:
    post = model.fit(draws=1000, tune=1000, chains=4, random_seed=1)
print(f"converged: {bool(post.attrs['converged'])}  (R-hat max {post.attrs['r_hat_max']:.3f}, "
      f"bulk ESS min {post.attrs['ess_bulk_min']:.0f}, {post.attrs['n_divergent']} divergences)")
if QUICK:
    print("(the quick settings are too short for a converged posterior; run without "
          "NMM_TUTORIAL_QUICK for 4 x 1000 draws)")

# %%
# 4. What the data say
# --------------------
# The parameters whose posterior moved furthest from the prior, in prior standard
# deviations, and the posterior-predictive check: the fraction of bins whose observed power
# lies inside the central 94 % predictive interval.
summary = model.summary()
priors = json.loads(post.attrs["priors"])
shift = {n: (summary.loc[n, "mean"] - m) / s for n, (m, s) in priors.items()
         if n in summary.index and 0 < s < 1e3}
for n in sorted(shift, key=lambda k: -abs(shift[k]))[:6]:
    print(f"  {n:<20s} posterior mean {summary.loc[n, 'mean']:+.3f}  ({shift[n]:+.1f} prior sd)")
coverage = model.ppc_coverage()
print(f"posterior-predictive coverage of the observed bins: {coverage * 100:.0f} %")

yrep = post["posterior_predictive"]["y"].values.reshape(-1, freqs.size)
mean_spec = post["posterior"]["spectrum"].values.reshape(-1, freqs.size)
lo, hi = np.quantile(yrep, [0.03, 0.97], axis=0)
peak_model = freqs[np.argmax(np.median(mean_spec, axis=0) * (freqs >= 4))]
print(f"alpha peak: observed {freqs[np.argmax(power * (freqs >= 4))]:.1f} Hz, "
      f"model {peak_model:.1f} Hz")

# %%
# The figure: observed spectrum, the 94 % posterior-predictive band and the posterior of the
# model's mean spectrum; on the right, the prior and posterior of the inhibitory
# interneuron's self-connection and the superficial pyramidal time constant.
fig, ax = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained", width_ratios=(2, 1))
ax[0].fill_between(freqs, lo, hi, color="C0", alpha=0.25, label="94 % posterior predictive")
ax[0].semilogy(freqs, np.median(mean_spec, axis=0), color="C0", lw=2, label="model spectrum (median)")
ax[0].semilogy(freqs, power, color="k", lw=1, label="observed (Welch)")
ax[0].set(xlabel="frequency (Hz)", ylabel="PSD (V$^2$/Hz)",
          title=f"EEGMAT O2: {coverage * 100:.0f} % of bins inside the band")
ax[0].legend(frameon=False, fontsize=8)
from scipy.stats import norm  # noqa: E402

for name, color, ls in (("g_ii_ii", "C2", "--"), ("tau_sp", "C3", ":")):
    if name not in priors:
        continue
    x = post["posterior"][name].values.ravel()
    m, s = priors[name]
    grid = np.linspace(m - 3.5 * s, m + 3.5 * s, 200)
    ax[1].hist(x, bins=30, density=True, color=color, alpha=0.5, label=f"{name} posterior")
    ax[1].plot(grid, norm.pdf(grid, m, s), color=color, lw=1.5, ls=ls, label=f"{name} prior")
ax[1].set(xlabel="SPM log-scale value", ylabel="density")
ax[1].legend(frameon=False, fontsize=8)
fig.savefig(OUT / "02_resting_spectrum.png", dpi=100)
print("figure saved to", OUT / "02_resting_spectrum.png")
