"""Test helpers."""
from __future__ import annotations

import importlib
import os

import pytest


def importorskip(name: str):
    """Import ``name``; skip if missing, but FAIL when NMM_REQUIRE_ALL_DEPS is set (CI)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if os.environ.get("NMM_REQUIRE_ALL_DEPS"):
            pytest.fail(f"required dependency {name!r} is missing in this environment: {exc}")
        pytest.skip(f"{name} not installed")
