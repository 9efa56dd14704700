"""Fixtures for the inference tests: golden SPM inversions and a small synthetic spectrum."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import shared_path


@pytest.fixture(scope="session")
def golden_inversion():
    cache = {}

    def load(name):
        if name not in cache:
            p = shared_path("reference", "spm_golden", "inversion", f"inversion_{name}.json")
            cache[name] = json.loads(p.read_text())
        return cache[name]

    return load


@pytest.fixture(scope="session")
def noisy_spectrum(golden_inversion):
    """(hz, y, dof) of SPM's noisy 4-48 Hz synthetic inversion (32 averaged periodograms)."""
    d = golden_inversion("noisy_4_48")
    return np.array(d["Hz"], float), np.array(d["data_csd_unscaled"], float), 64.0
