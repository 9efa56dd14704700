"""Band envelopes (nmm_inference.features.envelopes)."""

from __future__ import annotations

import numpy as np
import pytest

from nmm_inference.errors import DataError
from nmm_inference.features import (bands_from_peaks, compute_band_envelopes, make_windows,
                                    read_recording)


def test_am_sine_envelope():
    sf, n = 500.0, 20000
    t = np.arange(n) / sf
    amp = 10e-6 * (1.0 + 0.5 * np.sin(2 * np.pi * 0.5 * t))
    x = amp * np.cos(2 * np.pi * 20.0 * t)
    env = compute_band_envelopes(read_recording(x, sfreq=sf), bands={"beta": (15.0, 25.0)})
    # widest envelope bandwidth 10 + (5 + 6.25)/2 Hz -> q = floor(500 / (4 * 15.625)) = 8
    assert env.attrs["sfreq"] == pytest.approx(62.5)
    assert env.dims == ("band", "channel", "time")
    e = env.sel(band="beta").values[0]
    truth = np.interp(env["time"].values, t, amp)
    inner = slice(60, -60)  # ~1 s from each end: decimation edge effects
    # a 0.5-Hz modulation passes the 15-25 Hz band-pass unchanged; residual from the
    # finite transition bands and the decimation filter
    np.testing.assert_allclose(e[inner], truth[inner], rtol=0.02)


def test_default_bands_and_nyquist(malow):
    env = compute_band_envelopes(malow.pick(["O1", "O2"]))
    # sfreq 100 Hz: gamma (30-45 Hz) stays below Nyquist; all five default bands
    assert list(env["band"].values) == ["delta", "theta", "alpha", "beta", "gamma"]
    assert env.attrs["sfreq"] == 100.0  # gamma's envelope bandwidth forbids decimation
    with pytest.raises(DataError, match="Nyquist = 50 Hz"):
        compute_band_envelopes(malow.pick(["O1"]), bands={"high": (40.0, 60.0)})
    env = compute_band_envelopes(malow.pick(["O1"]), bands={"theta": (4.0, 8.0)},
                                 sfreq_out=20.0)
    assert env.attrs["sfreq"] == 20.0 and env.sizes["time"] == 10000


def test_peak_bands_eegmat(data_dir):
    rec = read_recording(data_dir / "rest_eegmat" / "Subject00_1.edf", picks=["EEG O2"])
    bands = bands_from_peaks(rec, fmin=2.0, fmax=40.0)
    alpha = [b for b in bands.values() if b[0] <= 10.5 <= b[1]]
    assert len(alpha) == 1 and alpha[0][1] - alpha[0][0] < 6.0, bands  # a narrow alpha band
    env = compute_band_envelopes(rec, bands="peaks")
    assert env.sizes["band"] == len(bands)


def test_pd_beta_suppression_during_grips(pd_path):
    mov = read_recording(pd_path, units="uV", picks=["MOV_RIGHT"])
    m = mov.data[0, 0]
    base = np.median(m)
    grip = m > base + 0.2 * (m.max() - base)
    onsets = np.flatnonzero(np.diff(grip.astype(int)) == 1) / mov.sfreq
    # README: 3 grips with onsets 3.20, 10.18, 14.91 s, 12 % of the time
    np.testing.assert_allclose(onsets, [3.20, 10.18, 14.91], atol=0.05)
    assert 0.10 < grip.mean() < 0.14

    rec = read_recording(pd_path, units="uV")
    env = compute_band_envelopes(rec, bands={"beta": (15.0, 22.0)})
    t = env["time"].values
    g = np.interp(t, mov.times, grip.astype(float)) > 0.5
    use = (t > 1.0) & (t < t[-1] - 1.0)  # leave out the first and last second
    e = env.sel(band="beta").values
    ratio = e[:, g & use].mean(axis=1) / e[:, ~g & use].mean(axis=1)
    is_ecog = np.array([c.startswith("ECOG") for c in env["channel"].values])
    # README: grip/rest 0.23-0.61 for ECoG, 0.53-0.84 for STN; margins for a different
    # filter design
    assert np.all(ratio[is_ecog] < 0.7), ratio
    assert np.all(ratio[~is_ecog] < 0.95), ratio
    assert np.median(ratio[is_ecog]) < 0.5, ratio
    # windowed: windows inside a grip have lower beta envelope than windows at rest
    win = make_windows(env, window_length=0.5, step=0.25)
    in_grip = np.array([g[(t >= a) & (t < b)].mean() for a, b in
                        zip(win["window_start"].values, win["window_stop"].values)])
    wmean = win.sel(band="beta").mean("time").values  # (window, channel)
    assert np.all(wmean[in_grip == 1].mean(0) < wmean[in_grip == 0].mean(0))
