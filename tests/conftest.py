"""Shared fixtures.  ../shared must exist beside the repository: tests fail loudly without it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO / ".." / "shared").resolve()
GOLDEN = SHARED / "reference" / "spm_golden"


def shared_path(*parts) -> Path:
    """Path inside ../shared; fails (never skips) when it is missing."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.fail(f"required reference data missing: {p} (../shared must sit beside the repository)")
    return p


def golden_cases():
    idx = json.loads(shared_path("reference", "spm_golden", "index.json").read_text())
    return [c["case"] for c in idx]


@pytest.fixture(scope="session")
def golden():
    cache = {}

    def load(case):
        if case not in cache:
            cache[case] = json.loads(shared_path("reference", "spm_golden", f"{case}.json").read_text())
        return cache[case]

    return load


@pytest.fixture
def rng():
    return np.random.default_rng(20261126)


def cplx(d):
    return np.asarray(d["re"]) + 1j * np.asarray(d["im"])
