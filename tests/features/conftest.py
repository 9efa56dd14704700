"""Fixtures for the features tests: the real recordings in ../shared/data."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

DATA_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
PD_VHDR = "pd_stn_ecog_beta/sub-testsub_ses-EphysMedOff_task-gripforce_run-0_ieeg.vhdr"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real recordings; a missing folder is a failure, not a skip."""
    if not DATA_DIR.is_dir():
        pytest.fail(f"The real test recordings are missing: expected the folder "
                    f"{DATA_DIR.resolve()} (../shared/data beside the repository; see its "
                    "README.md). These tests must not be skipped.")
    return DATA_DIR


@pytest.fixture(scope="session")
def malow(data_dir):
    from nmm_inference.features import read_recording

    return read_recording(data_dir / "seizure_scalp_malow" / "malow_seizure_raw.fif")


@pytest.fixture(scope="session")
def pd_path(data_dir) -> Path:
    return data_dir / PD_VHDR


@pytest.fixture(scope="session")
def bonn_o(data_dir) -> np.ndarray:
    files = sorted((data_dir / "bonn_epilepsy" / "B_O").glob("*.txt"))
    if len(files) != 100:
        pytest.fail(f"Expected 100 Bonn set O files, found {len(files)}")
    return np.stack([np.loadtxt(f) for f in files])


@pytest.fixture(autouse=True)
def _logger_level_unchanged():
    logger = logging.getLogger("nmm_inference")
    level = logger.level
    yield
    assert logger.level == level, "a test or function changed the nmm_inference log level"
