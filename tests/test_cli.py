"""The command-line tool and the demo."""
from __future__ import annotations

import json

import numpy as np
import pytest

from nmm_inference.cli import main
from tests.helpers import importorskip


def test_demo_end_to_end(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--duration", "60", "--no-fit"]) == 0
    summary = json.loads((tmp_path / "demo_summary.json").read_text())
    assert (tmp_path / "demo_spectra.png").stat().st_size > 10_000
    # the simulated spectrum follows the linear prediction: 60 s of Welch (4 s) gives ~29
    # segments per bin, so the typical |log ratio| is ~0.15; 0.25 allows for the nonlinearity
    assert summary["median_abs_log_ratio_2_45hz"] < 0.25
    assert abs(summary["peak_hz_simulated"] - summary["peak_hz_predicted"]) <= 1.5  # 0.25-Hz bins, noisy peak
    # no overwrite without --overwrite
    assert main(["demo", "--out", str(tmp_path), "--duration", "60", "--no-fit"]) == 2
    assert "overwrite" in capsys.readouterr().err


def test_simulate_writes_fif(tmp_path):
    mne = importorskip("mne")
    out = tmp_path / "sim_raw.fif"
    assert main(["simulate", "--out", str(out), "--duration", "12", "--seed", "3",
                 "--param", "g_ii_ss=0.2"]) == 0
    raw = mne.io.read_raw_fif(out, verbose="error")
    assert raw.info["sfreq"] == 250.0 and raw.n_times == 3000
    assert np.all(np.isfinite(raw.get_data()))


def test_simulate_rejects_bad_param(tmp_path, capsys):
    assert main(["simulate", "--out", str(tmp_path / "x_raw.fif"), "--param", "g_ii_sss=0.2"]) == 2
    assert "did you mean" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_with_fit_writes_report(tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--duration", "30", "--draws", "200", "--tune", "200"]) == 0
    summary = json.loads((tmp_path / "demo_summary.json").read_text())
    assert (tmp_path / "demo_report.html").stat().st_size > 100_000
    assert "Convergence" in summary["report_sections"]


# ----------------------------------------------------------------------------- nmm fit / report


def _demo_path():
    from nmm_inference.datasets import DEMO_PATH

    return str(DEMO_PATH)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One fast spectral fit of the demo's stationary part (Laplace sampler), reused below."""
    out = tmp_path_factory.mktemp("fit") / "result.nc"
    rc = main(["fit", _demo_path(), "--tmax", "55", "--fmin", "2", "--fmax", "45", "--sampler",
               "laplace", "--draws", "250", "--chains", "2", "--seed", "7", "--out", str(out)])
    return rc, out


def test_fit_spectral_writes_result(fitted):
    import xarray as xr

    from nmm_inference.datasets import load_demo
    from nmm_inference.features import compute_psd

    rc, out = fitted
    assert rc == 0
    assert [p.name for p in out.parent.iterdir()] == ["result.nc"]  # no temporary files left
    with xr.open_datatree(out, engine="h5netcdf") as tree:
        tree = tree.load()
    assert {"posterior", "posterior_predictive", "observed_data", "sample_stats"} <= set(tree.children)
    assert tree.attrs["nmm_model"] == "spectral" and tree.attrs["random_seed"] == 7
    assert tree["posterior"].sizes["chain"] == 2 and tree["posterior"].sizes["draw"] == 250
    # the observed spectrum is the features module's Welch PSD of the same segment (1-s
    # segments), computed here independently of the CLI: equal to float rounding
    psd = compute_psd(load_demo().crop(0, 55), method="welch", fmin=2, fmax=45, n_per_seg=250)
    obs = tree["observed_data"]["y"]
    np.testing.assert_allclose(obs["freq"].values, psd["freq"].values, rtol=0, atol=1e-12)
    np.testing.assert_allclose(obs.values, psd.values[0], rtol=1e-10)  # same numbers, one path
    # the fit follows the spectrum: 55 1-s segments (~100 dof) give a sampling SD of log power
    # of ~0.14 per bin; a median |log ratio| under 0.2 means the model curve runs through it
    pp = tree["posterior_predictive"]["y"].values.reshape(-1, obs.size)
    assert np.median(np.abs(np.log(np.median(pp, axis=0) / obs.values))) < 0.2


def test_fit_is_reproducible_and_refuses_overwrite(fitted, tmp_path, capsys):
    import xarray as xr

    rc, out = fitted
    before = out.stat().st_mtime_ns
    assert main(["fit", _demo_path(), "--tmax", "55", "--sampler", "laplace", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.stat().st_mtime_ns == before  # untouched
    again = tmp_path / "again.nc"
    assert main(["fit", _demo_path(), "--tmax", "55", "--fmin", "2", "--fmax", "45", "--sampler",
                 "laplace", "--draws", "250", "--chains", "2", "--seed", "7", "--out", str(again)]) == 0
    with xr.open_datatree(out, engine="h5netcdf") as a, xr.open_datatree(again, engine="h5netcdf") as b:
        # same seed, same settings: the same draws, bit for bit
        np.testing.assert_array_equal(a["posterior"]["g_ii_ss"].values, b["posterior"]["g_ii_ss"].values)


def test_report_from_result(fitted, tmp_path, capsys):
    from nmm_inference.report import SECTIONS

    rc, out = fitted
    html_out = tmp_path / "report.html"
    assert main(["report", str(out), "--html", str(html_out)]) == 0
    text = html_out.read_text()
    for s in SECTIONS[:5]:  # spectral fits have the first five sections
        assert s in text
    assert "Not an MCMC result" in text  # a Laplace fit is not judged by R-hat
    assert main(["report", str(out), "--html", str(html_out)]) == 2
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("argv, code, message", [
    (["fit", "no_such_file.fif", "--out", "{tmp}/r.nc"], 2, "not found"),
    (["fit", "{demo}", "--fmin", "30", "--fmax", "10", "--out", "{tmp}/r.nc"], 2, "--fmin"),
    (["fit", "{demo}", "--picks", "nope", "--out", "{tmp}/r.nc"], 2, "nope"),
    (["fit", "{demo}", "--out", "{tmp}/missing_dir/r.nc"], 2, "does not exist"),
    (["fit", "{demo}", "--model", "switching", "--out", "{tmp}/r.nc"], 2, "--band"),
    (["fit", "{demo}", "--band", "13,30", "--out", "{tmp}/r.nc"], 2, "--band"),
    (["report", "{tmp}/none.nc", "--html", "{tmp}/r.html"], 2, "not found"),
    (["report", "{demo}", "--html", "{tmp}/r.html"], 2, "cannot read"),
])
def test_errors_and_exit_codes(argv, code, message, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path, demo=_demo_path()) for a in argv]
    assert main(argv) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.nc")) and not list(tmp_path.glob(".*tmp*"))  # nothing written


def test_fit_refuses_several_channels(tmp_path, capsys):
    from tests.conftest import shared_path

    edf = shared_path("data", "rest_eegmat", "Subject00_1.edf")
    assert main(["fit", str(edf), "--picks", "EEG O1,EEG O2", "--tmax", "20",
                 "--out", str(tmp_path / "r.nc")]) == 2
    err = capsys.readouterr().err
    assert "one channel" in err and "EEG O2" in err


def test_bad_option_values_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "x.fif", "--out", "r.nc", "--draws", "0"])
    assert exc.value.code == 2  # argparse's usage error
    assert "positive integer" in capsys.readouterr().err


def test_fit_windows_and_report(tmp_path):
    """--model windows: per-window MAP + Laplace fits linked by the change-point model."""
    import xarray as xr

    from nmm_inference.datasets import demo_hopf_time

    out = tmp_path / "w.nc"
    assert main(["fit", _demo_path(), "--model", "windows", "--tmin", "58", "--tmax", "106",
                 "--window-length", "4", "--step", "4", "--fmax", "30", "--seed", "1",
                 "--out", str(out)]) == 0
    with xr.open_datatree(out, engine="h5netcdf") as tree:
        tree = tree.load()
    assert {"trajectory", "onset", "change", "windows"} <= set(tree.children)
    assert tree["windows"].sizes["window"] == 12
    onset = tree.attrs["onset_median"] + tree.attrs["time_origin_s"]
    # the ~12 Hz rhythm grows out of the noise after the linear Hopf crossing (81.3 s), so
    # the change must be placed after it minus one window and before the end of the segment
    assert demo_hopf_time() - 4 <= onset <= 106
    html_out = tmp_path / "w.html"
    assert main(["report", str(out), "--html", str(html_out)]) == 0
    assert "Parameter trajectories" in html_out.read_text()


def test_fit_switching_and_report(tmp_path):
    """--model switching: two-state envelope model on the Parkinsonian ECoG beta band."""
    import xarray as xr

    from tests.conftest import shared_path

    vhdr = next(shared_path("data", "pd_stn_ecog_beta").glob("*.vhdr"))
    out = tmp_path / "s.nc"
    assert main(["fit", str(vhdr), "--units", "uV", "--picks", "ECOG_RIGHT_0", "--model",
                 "switching", "--band", "13,30", "--draws", "30", "--tune", "30", "--chains", "1",
                 "--seed", "3", "--out", str(out)]) == 0
    with xr.open_datatree(out, engine="h5netcdf") as tree:
        tree = tree.load()
    p = tree["state_probability"]["probability"]
    np.testing.assert_allclose(p.sum("state").values, 1.0, rtol=1e-9)  # a distribution per time
    assert list(p["state"].values) == ["quiet", "burst"]
    html_out = tmp_path / "s.html"
    assert main(["report", str(out), "--html", str(html_out), "--recording", str(vhdr)]) == 0
    assert "State probabilities over the recording" in html_out.read_text()


def test_unavailable_model_exit_3(tmp_path, capsys, monkeypatch):
    """A model whose module cannot be imported gives exit code 3 and says so."""
    import sys

    monkeypatch.setitem(sys.modules, "nmm_inference.onset", None)  # makes the import fail
    assert main(["fit", _demo_path(), "--model", "windows", "--out", str(tmp_path / "w.nc")]) == 3
    assert "not available" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
