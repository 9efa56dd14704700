"""Sliding windows and time-resolved features (nmm_inference.features.windows)."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pytest

from nmm_inference.errors import DataError
from nmm_inference.features import (compute_band_envelopes, compute_windowed_features,
                                    compute_windowed_psd, make_windows, read_recording)
from nmm_inference.features.io import Annotation


def test_windows_carry_times_and_annotations(malow):
    win = make_windows(malow, window_length=2.0, step=1.0)
    assert win.dims == ("window", "channel", "time")
    assert win.sizes["window"] == 499 and win.sizes["time"] == 200
    np.testing.assert_allclose(win["window_start"].values, np.arange(499.0))  # 1-s steps
    np.testing.assert_array_equal(win.values[10], malow.data[0][:, 1000:1200])
    ov = win["overlap_seizure"].values
    # the seizure annotation starts at 350 s: window [349, 351) is half inside
    assert ov[348] == 0.0 and ov[349] == pytest.approx(0.5) and ov[350] == 1.0
    assert win["annotations"].values[350] == "seizure" and win["annotations"].values[0] == ""


def test_malow_theta_rises_after_onset(malow):
    psd = compute_windowed_psd(malow, window_length=2.0, step=1.0, fmax=45.0)
    theta = psd.sel(freq=slice(4.0, 8.0)).mean("freq")
    start, ov = psd["window_start"], psd["overlap_seizure"]
    pre = theta.where((ov == 0) & (start >= 250.0), drop=True).mean("window")
    post = theta.where((ov == 1) & (start < 420.0), drop=True).mean("window")
    ratio = post / pre
    # acceptance: 4-8 Hz power at least tenfold after the onset at 350 s (median over the
    # 18 good channels; README: x19.7 for 360-420 s against 250-340 s)
    assert float(ratio.median()) >= 10.0, ratio.values


def test_bad_annotations(malow, caplog):
    rec = replace(malow, annotations=malow.annotations + (Annotation(100.5, 2.0, "BAD_blink"),))
    with caplog.at_level(logging.INFO, logger="nmm_inference"):
        win = make_windows(rec, window_length=2.0, step=1.0)
    assert "overlap BAD" in caplog.text
    # windows starting at 99, 100, 101, 102 s overlap [100.5, 102.5)
    assert win.sizes["window"] == 495
    assert not np.isin([99.0, 100.0, 101.0, 102.0], win["window_start"].values).any()
    with pytest.raises(DataError, match=r"4 window\(s\) overlap BAD annotations"):
        make_windows(rec, window_length=2.0, step=1.0, on_bad="raise")
    kept = make_windows(rec, window_length=2.0, step=1.0, on_bad="keep")
    assert kept.sizes["window"] == 499 and int(kept["bad"].sum()) == 4
    psd = compute_windowed_psd(rec, window_length=2.0, step=1.0, fmax=45.0)
    assert psd.sizes["window"] == 495


def test_short_recording_and_epochs():
    rec = read_recording(np.random.default_rng(0).standard_normal((2, 150)) * 1e-5, sfreq=100.0)
    with pytest.raises(DataError, match="shorter than one window"):
        make_windows(rec, window_length=2.0)
    ep = read_recording(np.random.default_rng(0).standard_normal((3, 2, 500)) * 1e-5,
                        sfreq=100.0)
    with pytest.raises(DataError, match="continuous"):
        compute_windowed_psd(ep, window_length=2.0)
    with pytest.raises(ValueError, match="step must be"):
        make_windows(rec, window_length=1.0, step=0.0)


def test_envelope_windows_and_features(malow):
    rec = malow.pick(["O1", "O2", "T3"])
    ds = compute_windowed_features(rec, window_length=2.0, step=1.0,
                                   bands={"theta": (4.0, 8.0), "alpha": (8.0, 13.0)})
    assert ds["psd"].dims == ("window", "channel", "freq")
    assert ds["envelope_mean"].dims == ("window", "band", "channel")
    assert ds["psd"].sizes["window"] == ds["envelope_mean"].sizes["window"] == 499
    env = compute_band_envelopes(rec, bands={"theta": (4.0, 8.0), "alpha": (8.0, 13.0)})
    t = env["time"].values
    eps = 1e-9  # sample times k / 33.33 Hz that equal a window edge, up to rounding
    direct = np.stack([env.values[..., (t >= a - eps) & (t < b - eps)].mean(axis=-1) for a, b in
                       zip(ds["window_start"].values, ds["window_stop"].values)])
    # cumulative-sum means equal the direct means over each window (rounding only)
    np.testing.assert_allclose(ds["envelope_mean"].values, direct, rtol=1e-9)
    win = make_windows(env, window_length=2.0, step=1.0)
    assert win.dims == ("window", "band", "channel", "time")
    # windows on the 33.3-Hz envelope grid start at the sample nearest k * 1 s: no drift
    np.testing.assert_allclose(win["window_start"].values, np.arange(win.sizes["window"]),
                               atol=0.5 / env.attrs["sfreq"])
    assert win.sizes["window"] == 499
    # annotations travel with the envelope
    assert win["overlap_seizure"].values[360] == 1.0
    assert "nmm_inference_version" in ds.attrs and "psd_settings" in ds.attrs
