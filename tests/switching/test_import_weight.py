"""``import nmm_inference.switching`` stays light (numpy, scipy, numba only)."""
from __future__ import annotations

import subprocess
import sys


def test_switching_import_is_light():
    code = ("import sys, nmm_inference.switching as s, nmm_inference.switching.examples;"
            "bad=[m for m in ('pymc','pytensor','mne','matplotlib','xarray','arviz') "
            "if m in sys.modules]; print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules loaded at import: {out.stdout}"


def test_lazy_attributes_resolve():
    import nmm_inference.switching as sw

    assert callable(sw.build_free_switching_model) and callable(sw.SwitchingResult)
    try:
        sw.not_a_function
    except AttributeError as exc:
        assert "not_a_function" in str(exc)
    else:
        raise AssertionError("unknown attribute did not raise")
