"""Reading and validating recordings (nmm_inference.features.io)."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import importorskip

from nmm_inference.errors import DataError
from nmm_inference.features import Recording, extract_label_time_courses, read_recording


def _noise(shape, seed=0, sd=1e-5):
    return sd * np.random.default_rng(seed).standard_normal(shape)


def test_import_is_light():
    code = ("import sys, nmm_inference, nmm_inference.features; "
            "print(sorted(m for m in ('mne', 'pymc', 'matplotlib', 'xarray', 'scipy') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_array_units_and_scale(bonn_o):
    x = bonn_o[0]
    with pytest.raises(DataError, match=r"units='uV'"):
        read_recording(x, sfreq=173.61)  # integer file units read as volts
    rec = read_recording(x, sfreq=173.61, units="uV")
    rec2 = read_recording(x, sfreq=173.61, scale=1e-6)
    # same conversion two ways: exact up to float rounding
    np.testing.assert_allclose(rec.data, rec2.data, rtol=1e-15, atol=0)
    np.testing.assert_allclose(rec.data[0, 0], x * 1e-6, rtol=1e-15)  # µV -> V
    assert rec.units == "V" and rec.sfreq == 173.61 and rec.n_times == 4097
    au = read_recording(x, sfreq=173.61, units="au")
    assert au.units == "au"
    np.testing.assert_array_equal(au.data[0, 0], x)
    with pytest.raises(ValueError, match="either units or scale"):
        read_recording(x, sfreq=173.61, units="uV", scale=1e-6)
    with pytest.raises(ValueError, match="units must be one of"):
        read_recording(x, sfreq=173.61, units="microvolt")
    with pytest.raises(DataError, match="sfreq"):
        read_recording(x)


def test_ascii_file(data_dir):
    path = data_dir / "bonn_epilepsy" / "B_O" / "O001.txt"
    rec = read_recording(path, sfreq=173.61, units="uV")
    assert rec.n_times == 4097 and rec.source == str(path)
    with pytest.raises(DataError, match="sfreq"):
        read_recording(path)


def test_pd_brainvision_units_and_sidecars(pd_path, caplog):
    with pytest.raises(DataError, match="microvolts stored as volts"):
        read_recording(pd_path)
    with caplog.at_level(logging.INFO, logger="nmm_inference"):
        rec = read_recording(pd_path, units="uV")
    assert "BIDS sidecar" in caplog.text
    # default picks: data channels, i.e. not the MISC grip-force trace
    assert rec.ch_names == tuple([f"LFP_RIGHT_{i}" for i in range(3)]
                                 + [f"ECOG_RIGHT_{i}" for i in range(6)])
    assert rec.ch_types == ("dbs",) * 3 + ("ecog",) * 6
    assert rec.line_freq == 60.0
    sd = rec.data[0].std(axis=1)
    # README: SDs of 18-48 µV
    assert np.all((sd > 15e-6) & (sd < 50e-6))
    mov = read_recording(pd_path, units="uV", picks=["MOV_RIGHT"])
    assert mov.ch_types == ("misc",)


def test_bids_path(data_dir, pd_path, tmp_path):
    mne_bids = importorskip("mne_bids")
    ieeg = tmp_path / "sub-testsub" / "ses-EphysMedOff" / "ieeg"
    ieeg.mkdir(parents=True)
    for f in (data_dir / "pd_stn_ecog_beta").iterdir():
        (ieeg / f.name).symlink_to(f.resolve())  # links, not copies
    (tmp_path / "dataset_description.json").write_text(
        '{"Name": "test", "BIDSVersion": "1.8.0"}')
    bp = mne_bids.BIDSPath(subject="testsub", session="EphysMedOff", task="gripforce", run="0",
                           datatype="ieeg", suffix="ieeg", extension=".vhdr", root=tmp_path)
    rec = read_recording(bp, units="uV")
    direct = read_recording(pd_path, units="uV")
    assert rec.ch_names == direct.ch_names and rec.ch_types == direct.ch_types
    assert rec.line_freq == 60.0
    np.testing.assert_allclose(rec.data, direct.data, rtol=1e-12)  # the same file


def test_malow_bads_and_annotations(data_dir, malow, caplog):
    assert malow.n_channels == 18 and malow.sfreq == 100.0 and malow.n_times == 50000
    assert not {"SP1", "SP2", "Cz"} & set(malow.ch_names)
    (ann,) = malow.annotations
    assert ann.description == "seizure" and ann.onset == 350.0 and ann.duration == 150.0
    path = data_dir / "seizure_scalp_malow" / "malow_seizure_raw.fif"
    with caplog.at_level(logging.WARNING, logger="nmm_inference"):
        rec = read_recording(path, picks=["O1", "Cz"])
    assert rec.ch_names == ("O1",) and "Cz" in caplog.text
    rec = read_recording(path, picks=["O1", "Cz"], exclude_bads=False)
    assert rec.ch_names == ("O1", "Cz")
    with pytest.raises(DataError, match=r"Unknown channel name.*'Oz'"):
        read_recording(path, picks=["O1", "Oz"])


def test_crop_shifts_annotations(data_dir):
    path = data_dir / "seizure_scalp_malow" / "malow_seizure_raw.fif"
    rec = read_recording(path, tmin=300.0, tmax=400.0, picks="eeg")
    assert rec.n_times == 10000
    assert rec.annotations[0].onset == pytest.approx(50.0, abs=1e-9)  # 350 s - 300 s


def test_mne_objects(data_dir):
    import mne

    raw = mne.io.read_raw_edf(data_dir / "rest_eegmat" / "Subject00_1.edf", verbose="error")
    raw.crop(0.0, 40.0).load_data()
    rec = read_recording(raw, picks=["EEG O2", "EEG O1"])
    np.testing.assert_array_equal(rec.data[0], raw.get_data(picks=["EEG O2", "EEG O1"]))
    epochs = mne.make_fixed_length_epochs(raw, duration=4.0, preload=True, verbose="error")
    erec = read_recording(epochs, picks=["EEG O2"])
    assert erec.epoched and erec.data.shape == (len(epochs), 1, 2000)
    with pytest.raises(ValueError, match="only used for plain arrays"):
        read_recording(raw, sfreq=500.0)
    spec = raw.compute_psd(picks=["EEG O2"], verbose="error")
    with pytest.raises(DataError, match="read_spectrum"):
        read_recording(spec)


def test_nan_inf_flat():
    x = _noise((3, 1000))
    x[1, 10] = np.nan
    x[2, 20:23] = np.inf
    with pytest.raises(DataError, match=r"ch1 \(1 samples\), ch2 \(3 samples\)"):
        read_recording(x, sfreq=100.0)
    y = _noise((3, 1000))
    y[2] = 0.0
    with pytest.raises(DataError, match=r"Flat channel\(s\) \['ch2'\]"):
        read_recording(y, sfreq=100.0)
    rec = read_recording(y, sfreq=100.0, on_flat="drop")
    assert rec.ch_names == ("ch0", "ch1")


def test_reference_and_bipolar():
    x = _noise((3, 2000), seed=1)
    names = ["A", "B", "C"]
    rec = read_recording(x, sfreq=200.0, ch_names=names, reference="average")
    np.testing.assert_allclose(rec.data[0].mean(axis=0), 0.0, atol=1e-20)  # rounding only
    rec = read_recording(x, sfreq=200.0, ch_names=names, reference="C")
    assert rec.ch_names == ("A", "B")
    np.testing.assert_allclose(rec.data[0], x[:2] - x[2], rtol=1e-14)  # exact difference
    rec = read_recording(x, sfreq=200.0, ch_names=names, bipolar=[("A", "B"), ("B", "C")])
    assert rec.ch_names == ("A-B", "B-C")
    np.testing.assert_allclose(rec.data[0], [x[0] - x[1], x[1] - x[2]], rtol=1e-14)
    with pytest.raises(DataError, match="Unknown channel"):
        read_recording(x, sfreq=200.0, ch_names=names, bipolar=[("A", "D")])


def test_pd_bipolar_lfp(pd_path):
    rec = read_recording(pd_path, units="uV",
                         bipolar=[("LFP_RIGHT_0", "LFP_RIGHT_1"), ("LFP_RIGHT_1", "LFP_RIGHT_2")])
    raw = read_recording(pd_path, units="uV", picks="dbs")
    assert rec.ch_names == ("LFP_RIGHT_0-LFP_RIGHT_1", "LFP_RIGHT_1-LFP_RIGHT_2")
    np.testing.assert_allclose(rec.data[0, 0], raw.data[0, 0] - raw.data[0, 1], rtol=1e-12)


def test_recording_to_xarray(malow):
    da = malow.pick(["O1", "O2"]).to_xarray()
    assert da.dims == ("channel", "time") and da.sizes["time"] == 50000
    assert da.attrs["sfreq"] == 100.0


def test_label_time_courses():
    mne = importorskip("mne")
    rng = np.random.default_rng(3)

    def hemi(n, ident):
        rr = rng.normal(size=(n, 3)) * 0.05
        nn = rr / np.linalg.norm(rr, axis=1, keepdims=True)
        return dict(type="surf", id=ident, np=n, ntri=0,
                    coord_frame=mne.io.constants.FIFF.FIFFV_COORD_MRI, rr=rr, nn=nn,
                    inuse=np.ones(n, int), nuse=n, vertno=np.arange(n),
                    subject_his_id="fake", tris=None, use_tris=None, nuse_tri=0, dist=None,
                    dist_limit=None, nearest=None, nearest_dist=None, pinfo=None,
                    patch_inds=None)

    src = mne.SourceSpaces([hemi(20, 101), hemi(20, 102)])
    data = rng.standard_normal((40, 500))
    stc = mne.SourceEstimate(data, [np.arange(20), np.arange(20)], tmin=0.0, tstep=0.004,
                             subject="fake")
    labels = [mne.Label(np.arange(0, 10), hemi="lh", name="A-lh", subject="fake"),
              mne.Label(np.arange(5, 15), hemi="rh", name="B-rh", subject="fake")]
    rec = extract_label_time_courses(stc, labels, src, mode="mean")
    assert isinstance(rec, Recording) and rec.ch_names == ("A-lh", "B-rh")
    assert rec.ch_types == ("source", "source") and rec.sfreq == pytest.approx(250.0)
    np.testing.assert_allclose(rec.data[0, 0], data[:10].mean(axis=0), rtol=1e-12)  # label mean
    np.testing.assert_allclose(rec.data[0, 1], data[25:35].mean(axis=0), rtol=1e-12)
    erec = extract_label_time_courses([stc, stc], labels, src, mode="mean_flip")
    assert erec.epoched and erec.data.shape == (2, 2, 500)
