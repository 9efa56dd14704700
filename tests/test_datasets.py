"""The bundled demo recording: regenerated bit for bit, and it contains the transition."""
from __future__ import annotations

import json

import numpy as np
from scipy.signal import welch

from nmm_inference.datasets import DEMO_PATH, DEMO_SETTINGS, demo_hopf_time, load_demo, make_demo_recording


def test_demo_file_regenerates_bit_for_bit():
    assert DEMO_PATH.exists(), "data/demo_seizure_raw.fif is missing: run data/make_demo.py"
    shipped = load_demo()
    fresh = make_demo_recording()
    np.testing.assert_array_equal(shipped.get_data(), fresh.get_data())  # bit for bit
    assert json.loads(shipped.info["description"])["settings"]["random_seed"] == DEMO_SETTINGS["random_seed"]


def test_demo_contains_a_hopf_transition():
    raw = load_demo()
    onset = raw.annotations.onset[0]
    assert raw.annotations.description[0] == "seizure"
    np.testing.assert_allclose(onset, demo_hopf_time(), atol=0.05)  # the annotation is the linear prediction
    assert DEMO_SETTINGS["ramp"][0] < onset < DEMO_SETTINGS["ramp"][1]
    x = raw.get_data()[0]
    sf = raw.info["sfreq"]

    def band_power(a, b):
        f, p = welch(x[int(a * sf):int(b * sf)], fs=sf, nperseg=512)
        return p[(f >= 8) & (f <= 16)].sum(), f[np.argmax(p)]

    pre, _ = band_power(0, 60)
    post, fpk = band_power(150, 180)
    assert post > 50 * pre  # a self-sustained rhythm replaces the noise-driven one (measured ~300x)
    assert 9 < fpk < 14     # the dp<->ii beta/alpha mode of the circuit (~11-12 Hz)
