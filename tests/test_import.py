"""Meta-tests: import weight and global RNG use."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "nmm_inference"


def test_import_is_light():
    code = ("import sys, nmm_inference, nmm_inference.spm, nmm_inference.params, nmm_inference.cmc.spectra;"
            "bad=[m for m in ('pymc','mne','matplotlib','pytensor') if m in sys.modules];"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules loaded at import: {out.stdout}"


def test_no_global_rng():
    pat = re.compile(r"np\.random\.(seed|rand|randn|normal|uniform|randint|choice|standard_normal)\(")
    offenders = [str(p) for p in PKG.rglob("*.py") if pat.search(p.read_text())]
    assert offenders == [], f"global numpy RNG used in {offenders}"
