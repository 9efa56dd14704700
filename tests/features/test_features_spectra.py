"""PSD/CSD estimation with degrees of freedom (nmm_inference.features.spectra)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from nmm_inference._version import __version__
from nmm_inference.errors import DataError
from nmm_inference.features import (compute_csd, compute_psd, compute_windowed_psd,
                                    equivalent_dof, find_spectral_peaks, read_recording,
                                    read_spectrum)
from nmm_inference.features.io import Annotation


@pytest.fixture(scope="module")
def white():
    """4 channels x 800 s of unit-variance Gaussian white noise at 100 Hz."""
    rng = np.random.default_rng(20240611)
    return read_recording(rng.standard_normal((4, 80000)), sfreq=100.0, units="au")


def _var_ratio(psd):
    """Empirical var(P) / E(P)**2 over windows and channels, divided by 2/dof, per bin."""
    p = psd.values.reshape(-1, psd.sizes["freq"])
    return p.var(axis=0, ddof=1) / p.mean(axis=0) ** 2 / (2.0 / psd["dof"].values)


@pytest.mark.parametrize("method, kw", [
    ("welch", {"n_per_seg": 100}),                     # 50 % overlap (default)
    ("welch", {"n_per_seg": 100, "n_overlap": 75}),    # 75 % overlap
    ("multitaper", {}),                                # 7 tapers over the window
    ("multitaper", {"n_per_seg": 100, "n_overlap": 50}),
])
def test_white_noise_dof(white, method, kw):
    # 200 independent 4-s windows x 4 channels = 800 replicate spectra per bin
    psd = compute_windowed_psd(white, window_length=4.0, step=4.0, method=method, **kw)
    ratio = _var_ratio(psd)
    f = psd["freq"].values
    interior = (f > 5) & (f < 45)
    # the acceptance criterion: var(P)/E(P)^2 = 2/dof within 10 % (pooled over bins;
    # one bin alone has ~5 % sampling error with 800 replicates)
    np.testing.assert_allclose(ratio[interior].mean(), 1.0, rtol=0.10)
    # also near 0 Hz and Nyquist, where the dof change (pool the 3 lowest / highest bins)
    np.testing.assert_allclose(ratio[:3].mean(), 1.0, rtol=0.10)
    np.testing.assert_allclose(ratio[-3:].mean(), 1.0, rtol=0.10)
    if method == "multitaper" and not kw:
        # 7 tapers over one segment: 2K = 14 inside the band, K = 7 at Nyquist
        np.testing.assert_allclose(psd["dof"].values[interior], 14.0, rtol=1e-5)
        assert psd["dof"].values[-1] == pytest.approx(7.0, rel=1e-6)


def test_white_noise_dof_long_average(white):
    """Welch over the whole record: few replicates, so check the value against theory."""
    psd = compute_psd(white, n_per_seg=200, fmin=10, fmax=40)
    n_seg = (80000 - 200) // 100 + 1
    # Hann, 50 % overlap: rho(N/2) = 1/6, so (Percival & Walden's 36 n^2 / (19 n - 1))
    # dof = 2n / (1 + 2 (1 - 1/n) / 36); O(1/N) differences for the periodic Hann
    expect = 2 * n_seg / (1 + 2 * (1 - 1 / n_seg) / 36.0)
    np.testing.assert_allclose(psd["dof"].values, expect, rtol=1e-3)
    assert psd.attrs["n_segments"] == n_seg
    # one-sided PSD of unit-variance white noise is 2 / sfreq; the average over 60 bins
    # of a dof ~1100 estimate has relative SD ~ 0.006
    np.testing.assert_allclose(psd.values.mean(), 2 / 100.0, rtol=0.02)


def test_equivalent_dof_standard_formula():
    h = np.hanning(64)
    starts = np.arange(0, 640, 32)
    standard = equivalent_dof(h[None], starts)
    exact = equivalent_dof(h[None], starts, freqs=np.array([10.0, 20.0]), sfreq=64.0)
    # the exact per-bin value equals the standard formula inside the band
    np.testing.assert_allclose(exact, standard, rtol=1e-3)
    # no overlap: 2 per segment
    assert equivalent_dof(np.ones((1, 64)), [0, 64, 128, 192]) == pytest.approx(8.0)


def test_sine_scaling_and_peak():
    sf, n = 250.0, 25000
    t = np.arange(n) / sf
    amp = 20e-6
    x = amp * np.sin(2 * np.pi * 12.0 * t) + 1e-7 * np.random.default_rng(1).standard_normal(n)
    psd = compute_psd(read_recording(x, sfreq=sf), method="multitaper", n_per_seg=500)
    # integrated power of a sine is amp^2 / 2 (tapers leak nothing outside +-bandwidth)
    power = float(psd.sel(freq=slice(8, 16)).sum() * (sf / 500))
    np.testing.assert_allclose(power, amp ** 2 / 2, rtol=0.01)
    assert float(psd["freq"][int(np.argmax(psd.values[0]))]) == pytest.approx(12.0)


def test_bad_input_errors(white):
    with pytest.raises(DataError, match="above the Nyquist frequency 50 Hz"):
        compute_psd(white, fmax=60.0)
    short = read_recording(np.random.default_rng(0).standard_normal(100) * 1e-5, sfreq=100.0)
    with pytest.raises(DataError, match="shorter than one segment"):
        compute_psd(short, n_per_seg=200)
    with pytest.raises(ValueError, match="method must be one of"):
        compute_psd(white, method="fft")
    with pytest.raises(DataError, match="plain array"):
        compute_psd(np.zeros((2, 100)))


def test_bad_annotations_reduce_segments(malow, caplog):
    from dataclasses import replace

    rec = replace(malow, annotations=malow.annotations + (Annotation(100.0, 50.0, "BAD_move"),))
    with caplog.at_level(logging.INFO, logger="nmm_inference"):
        psd = compute_psd(rec, fmax=45.0)
    full = compute_psd(malow, fmax=45.0)
    assert "overlapping BAD" in caplog.text
    assert psd.attrs["n_segments"] < full.attrs["n_segments"]
    # 2-s segments in 1-s steps: those starting in (98, 150) s overlap the BAD span
    assert full.attrs["n_segments"] - psd.attrs["n_segments"] == 51
    assert np.all(psd["dof"].values < full["dof"].values)


def test_csd_matches_psd(malow):
    rec = malow.pick(["O1", "O2", "P3"])
    csd = compute_csd(rec, fmax=45.0)
    psd = compute_psd(rec, fmax=45.0)
    assert csd.dims == ("channel_i", "channel_j", "freq")
    diag = np.stack([csd.values[i, i] for i in range(3)])
    np.testing.assert_allclose(diag.real, psd.values, rtol=1e-10)  # same estimator
    np.testing.assert_allclose(diag.imag, 0.0, atol=1e-25)
    # Hermitian in (i, j)
    np.testing.assert_allclose(csd.values, np.conj(np.swapaxes(csd.values, 0, 1)), rtol=1e-12)
    np.testing.assert_array_equal(csd["dof"].values, psd["dof"].values)


def test_line_noise_drop_and_provenance(pd_path):
    rec = read_recording(pd_path, units="uV")
    psd = compute_psd(rec, fmax=200.0)
    f = psd["freq"].values
    for h in (60.0, 120.0, 180.0):
        assert np.min(np.abs(f - h)) > 1.0  # Hann main lobe (+-1 Hz at 2-s segments) left out
    settings = json.loads(psd.attrs["settings"])
    assert settings["line_freq"] == 60.0 and len(settings["dropped_freqs"]) == 15
    assert psd.attrs["nmm_inference_version"] == __version__
    assert psd.attrs["source"].endswith(".vhdr") and psd.attrs["units"] == "V**2/Hz"
    kept = compute_psd(rec, fmax=200.0, line_noise="keep")
    assert kept.sizes["freq"] == psd.sizes["freq"] + 15


def test_netcdf_roundtrip(malow, tmp_path):
    import xarray as xr

    psd = compute_psd(malow.pick(["O1", "O2"]), fmax=45.0)
    path = tmp_path / "psd.nc"
    psd.to_netcdf(path, engine="scipy")  # attrs must be netCDF-serialisable
    back = xr.load_dataarray(path, engine="scipy")
    np.testing.assert_array_equal(back.values, psd.values)
    np.testing.assert_array_equal(back["dof"].values, psd["dof"].values)
    assert back.attrs["settings"] == psd.attrs["settings"]


def test_read_spectrum(data_dir):
    import mne

    raw = mne.io.read_raw_fif(data_dir / "seizure_scalp_malow" / "malow_seizure_raw.fif",
                              verbose="error")
    spec = raw.compute_psd(method="multitaper", fmax=45.0, picks=["O1", "O2", "Cz"],
                           verbose="error")
    with pytest.raises(TypeError):
        read_spectrum(spec)  # dof is required
    psd = read_spectrum(spec, dof=14.0)
    assert list(psd["channel"].values) == ["O1", "O2"]  # Cz is bad
    np.testing.assert_allclose(psd.values, spec.get_data(picks=["O1", "O2"]), rtol=1e-12)
    assert np.all(psd["dof"].values == 14.0)


# ----------------------------------------------------------- real recordings (README)


def test_bonn_o_alpha_peak(bonn_o):
    rec = read_recording(bonn_o[:, np.newaxis, :], sfreq=173.61, units="uV")  # 100 epochs
    psd = compute_psd(rec, n_per_seg=512, fmax=60.0)
    peaks = find_spectral_peaks(psd.mean("channel"), fmin=2.0, fmax=40.0)
    alpha = max((p for p in peaks if 6 <= p.freq <= 14), key=lambda p: p.height_db)
    # README: 11.2 Hz on the mean PSD of set O; acceptance: within 0.5 Hz
    assert abs(alpha.freq - 11.2) <= 0.5, alpha
    assert alpha.height_db > 10.0  # README: +15.7 dB, a clear peak
    one = compute_psd(read_recording(bonn_o[0], sfreq=173.61, units="uV"), n_per_seg=512,
                      fmax=60.0)
    # independent epochs: dof add up
    np.testing.assert_allclose(psd["dof"].values, 100 * one["dof"].values, rtol=1e-12)
    assert psd.attrs["n_epochs"] == 100


def test_eegmat_o2_alpha_peak(data_dir):
    rec = read_recording(data_dir / "rest_eegmat" / "Subject00_1.edf", picks=["EEG O2"])
    psd = compute_psd(rec, n_per_seg=2000, fmax=45.0)  # 4-s windows as the README
    (alpha,) = [p for p in find_spectral_peaks(psd.sel(channel="EEG O2"), fmin=2.0, fmax=40.0)
                if 7 <= p.freq <= 14]
    # README: O2 alpha at 10.5 Hz (+17.4 dB); acceptance: within 0.5 Hz
    assert abs(alpha.freq - 10.5) <= 0.5, alpha
    assert alpha.height_db > 12.0


def test_pd_beta_peak(pd_path):
    rec = read_recording(pd_path, units="uV")
    psd = compute_psd(rec, fmax=45.0)  # Welch 2-s windows as the README
    for ch in psd["channel"].values:
        peaks = [p for p in find_spectral_peaks(psd.sel(channel=ch), fmin=2.0, fmax=45.0)
                 if 13 <= p.freq <= 30]
        beta = max(peaks, key=lambda p: p.height_db)
        # README: beta peak at 18.0-19.5 Hz in every neural channel
        assert 18.0 <= beta.freq <= 19.5, (ch, beta)
        assert beta.height_db > 5.0, (ch, beta)


def test_notch_and_line_freq_option():
    sf, n = 500.0, 30000
    t = np.arange(n) / sf
    rng = np.random.default_rng(5)
    x = 1e-5 * rng.standard_normal(n) + 5e-5 * np.sin(2 * np.pi * 50.0 * t)
    rec = read_recording(x, sfreq=sf)
    raw = compute_psd(rec, fmax=100.0, line_noise="keep")
    notched = compute_psd(rec, fmax=100.0, line_noise="notch", line_freq=50.0)
    assert notched.sizes["freq"] == raw.sizes["freq"]
    # the 50-Hz line is 25 dB above the noise floor; the notch removes >99 % of it
    assert notched.sel(freq=50.0).item() < 0.01 * raw.sel(freq=50.0).item()
    # away from the notch the spectrum is unchanged (to the estimator's noise)
    np.testing.assert_allclose(notched.sel(freq=slice(10, 40)).values,
                               raw.sel(freq=slice(10, 40)).values, rtol=0.05)
    dropped = compute_psd(rec, fmax=100.0, line_freq=50.0)
    assert np.min(np.abs(dropped["freq"].values - 50.0)) > 1.0
    with pytest.raises(DataError, match="line frequency"):
        compute_psd(rec, line_noise="notch")


def test_file_path_input(data_dir):
    psd = compute_psd(data_dir / "rest_eegmat" / "Subject00_1.edf", picks=["EEG O2"],
                      fmax=45.0)
    assert list(psd["channel"].values) == ["EEG O2"]
    assert psd.attrs["source"].endswith("Subject00_1.edf")
