"""Every tutorial runs to the end (reduced but real settings: NMM_TUTORIAL_QUICK=1)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIALS = sorted((Path(__file__).resolve().parents[1] / "tutorials").glob("[0-9][0-9]_*.py"))


def test_tutorials_exist():
    assert len(TUTORIALS) >= 2


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(path, tmp_path):
    env = dict(os.environ, NMM_TUTORIAL_QUICK="1", MPLBACKEND="Agg", NMM_TUTORIAL_OUT=str(tmp_path),
               OPENBLAS_NUM_THREADS="1")
    res = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=900)
    assert res.returncode == 0, f"{path.name} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    figs = list(tmp_path.rglob("*.png"))
    assert figs, f"{path.name} must end in a saved figure (none found in NMM_TUTORIAL_OUT)"
