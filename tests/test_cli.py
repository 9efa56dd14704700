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
