"""The package's bundled demo recording, made by its own simulator.

``data/demo_seizure_raw.fif`` is one CMC source (LFP of superficial pyramidal cells, 250 Hz,
180 s) whose interneurons slowly lose their self-inhibition (G4 falls from 0.75x to 0.30x of
SPM's default over 60-150 s) in a circuit with a strong deep-pyramidal <-> interneuron loop
(G6, G9 at 2.7x).  The fixed point loses stability at a Hopf bifurcation partway down the
ramp and a ~12 Hz rhythm grows out of the noise: a seizure-like transition.  The recording
carries a ``seizure`` annotation at the Hopf crossing (computed from the linearisation, not
from the data) and the full settings in ``raw.info["description"]``.

``data/make_demo.py`` regenerates the file bit for bit; ``tests/test_datasets.py`` checks it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["DEMO_SETTINGS", "make_demo_recording", "load_demo", "demo_hopf_time", "DEMO_PATH"]

DEMO_PATH = Path(__file__).resolve().parents[1] / "data" / "demo_seizure_raw.fif"

#: Everything that defines the demo recording.
DEMO_SETTINGS = {
    "P_start": {"G": [0, 0, 0, float(np.log(0.75)), 0, 0, 1.0, 0, 1.0, 0]},
    "P_end": {"G": [0, 0, 0, float(np.log(0.30)), 0, 0, 1.0, 0, 1.0, 0]},
    "duration": 180.0,
    "ramp": (60.0, 150.0),
    "sfreq": 250.0,
    "noise_std": 0.01,
    "random_seed": 20261126,
    "lfp_scale": 1e-4,   # model units -> volts, so the record is EEG-sized
}


def demo_hopf_time(settings=DEMO_SETTINGS, *, n_grid=2001):
    """Time (s) at which the ramping circuit's fixed point loses stability.

    The gains are interpolated linearly on SPM's log scale between ``P_start["G"]`` and
    ``P_end["G"]`` over the ramp (other fields at SPM's prior mean, no delays), and the
    largest real part of the Jacobian's eigenvalues at the zero fixed point is followed
    on a grid of the ramp.

    Parameters
    ----------
    settings : mapping, optional
        Demo settings (see :data:`DEMO_SETTINGS`); ``P_start``, ``P_end`` and ``ramp`` are
        used.
    n_grid : int, optional
        Number of grid points over the ramp.

    Returns
    -------
    float or None
        Seconds from the start of the record (the frame of ``ramp``) of the first zero
        crossing of the growth rate, interpolated linearly between grid points; the ramp's
        start if the fixed point is unstable there already; ``None`` if it stays stable
        over the whole ramp.
    """
    from .cmc.equations import jacobian, neural_from_spm

    t0, t1 = settings["ramp"]
    g0 = np.asarray(settings["P_start"]["G"], float)
    g1 = np.asarray(settings["P_end"]["G"], float)
    ts = np.linspace(t0, t1, n_grid)
    growth = []
    for t in ts:
        w = (t - t0) / (t1 - t0)
        nm = neural_from_spm({"G": (1 - w) * g0 + w * g1})
        growth.append(np.max(np.linalg.eigvals(jacobian(nm)).real))
    growth = np.asarray(growth)
    i = np.flatnonzero(growth > 0)
    if i.size == 0:
        return None
    k = i[0]
    if k == 0:
        return float(ts[0])
    # linear interpolation of the crossing
    return float(ts[k - 1] + (ts[k] - ts[k - 1]) * (-growth[k - 1]) / (growth[k] - growth[k - 1]))


def make_demo_recording(settings=DEMO_SETTINGS):
    """Simulate the demo recording; returns an :class:`mne.io.RawArray`.

    Parameters
    ----------
    settings : mapping, optional
        Demo settings with the keys of :data:`DEMO_SETTINGS`: ``P_start``, ``P_end``,
        ``duration``, ``ramp``, ``sfreq``, ``noise_std`` and ``random_seed`` are passed to
        :func:`~nmm_inference.cmc.ramp.simulate_gain_ramp`; ``lfp_scale`` converts model
        units to volts.  The ramp must cross the Hopf point (:func:`demo_hopf_time` not
        ``None``).

    Returns
    -------
    mne.io.RawArray
        One EEG-type channel ``"LFP"`` (sp voltage times ``lfp_scale``) at ``sfreq``, with a
        ``"seizure"`` annotation from the Hopf time to the end and the generator, package
        version, settings and Hopf time as JSON in ``raw.info["description"]``.

    Raises
    ------
    ParameterError
        For invalid simulation settings.
    """
    import mne

    from ._version import __version__
    from .cmc.ramp import simulate_gain_ramp

    s = settings
    times, states, gains = simulate_gain_ramp(
        s["P_start"], s["P_end"], duration=s["duration"], ramp=s["ramp"], sfreq=s["sfreq"],
        noise_std=s["noise_std"], random_seed=s["random_seed"])
    lfp = states[:, 2] * s["lfp_scale"]
    info = mne.create_info(["LFP"], s["sfreq"], ch_types="eeg")
    raw = mne.io.RawArray(lfp[None, :], info, verbose="error")
    onset = demo_hopf_time(s)
    raw.set_annotations(mne.Annotations([onset], [s["duration"] - onset], ["seizure"]))
    desc = {"generator": "nmm_inference.datasets.make_demo_recording", "version": __version__,
            "settings": {k: v for k, v in s.items()}, "hopf_time_s": onset}
    raw.info["description"] = json.dumps(desc)
    return raw


def load_demo():
    """Read the bundled demo recording (regenerating it if the file is missing)."""
    import mne

    if DEMO_PATH.exists():
        return mne.io.read_raw_fif(DEMO_PATH, preload=True, verbose="error")
    return make_demo_recording()
