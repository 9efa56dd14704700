"""Fixtures of the adiabatic-reduction tests."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ..conftest import shared_path


@pytest.fixture(scope="session")
def adiabatic_golden():
    """The three reference cases of ``shared/reference/adiabatic_golden.json``."""
    cases = json.loads(shared_path("reference", "adiabatic_golden.json").read_text())
    for c in cases:
        c["T"] = np.asarray(c["T_ms"]) / 1000.0
    return cases


@pytest.fixture(scope="session")
def example2(adiabatic_golden):
    """Spec Example 2 (bistable): (G, T, U)."""
    c = adiabatic_golden[2]
    return np.asarray(c["G"]), c["T"], np.asarray(c["U"])
