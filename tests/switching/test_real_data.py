"""The conventional burst detector and the switching model on the Parkinsonian recording."""
from __future__ import annotations

import numpy as np
import pytest

from nmm_inference.switching import detect_bursts_threshold
from tests.conftest import shared_path


@pytest.fixture(scope="module")
def ecog_envelope():
    from nmm_inference.features import compute_band_envelopes, read_recording

    path = next(shared_path("data", "pd_stn_ecog_beta").glob("*.vhdr"))
    rec = read_recording(path, units="uV", picks="all")
    env = compute_band_envelopes(rec, bands={"beta": (13.0, 30.0)}, sfreq_out=100.0,
                                 picks=["ECOG_RIGHT_0", "LFP_RIGHT_1"], verbose="error")
    mov = rec.data[0, rec.ch_names.index("MOV_RIGHT")]
    return env, mov, rec.sfreq


def test_conventional_detector_matches_the_data_readme(ecog_envelope):
    env, _, _ = ecog_envelope
    for ch in env.channel.values:
        b = detect_bursts_threshold(env.sel(band="beta", channel=ch).values, 100.0)
        # README: 0.7-1.06 bursts/s and median durations 127-195 ms across channels
        assert 0.5 <= b.rate <= 1.2
        assert 0.1 <= b.median_duration <= 0.25


def test_stationary_switching_model_shows_grip_suppression(ecog_envelope):
    """Posterior 'burst' probability is lower during grips than at rest (real sampling)."""
    from nmm_inference.switching.bursts import runs
    from nmm_inference.switching.model import build_free_switching_model, fit
    from nmm_inference.switching.results import SwitchingResult

    env, mov, sf = ecog_envelope
    e = env.sel(band="beta", channel="ECOG_RIGHT_0").values[::4]    # 25 Hz
    y = e[25:-25]
    model, terms = build_free_switching_model(y, sfreq=25.0, kind="stationary",
                                              parametrization="hopf", t0=1.0)
    idata = fit(model, draws=200, tune=200, chains=1, random_seed=1)
    res = SwitchingResult(terms, idata, n_draws=50, random_seed=2)
    grip = mov > mov.min() + 0.2 * (mov.max() - mov.min())
    assert runs(grip, True)[0].size == 3                            # README: three grips
    t = res.times
    in_grip = grip[np.clip(np.round(t * sf).astype(int), 0, grip.size - 1)]
    p = res.probability[:, 1]
    assert p[in_grip].mean() < 0.5 * p[~in_grip].mean()
