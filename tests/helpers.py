"""Test helpers."""
from __future__ import annotations

import importlib
import os

import numpy as np
import pytest


def importorskip(name: str):
    """Import ``name``; skip if missing, but FAIL when NMM_REQUIRE_ALL_DEPS is set (CI)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if os.environ.get("NMM_REQUIRE_ALL_DEPS"):
            pytest.fail(f"required dependency {name!r} is missing in this environment: {exc}")
        pytest.skip(f"{name} not installed")


def fd_grad(f, x, h=1e-6):
    """Central finite-difference gradient of the scalar function ``f`` at ``x``."""
    g = np.empty_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g
