"""Regenerate data/demo_seizure_raw.fif bit for bit (run: .venv/bin/python data/make_demo.py)."""
import os
from pathlib import Path

from nmm_inference.datasets import DEMO_PATH, make_demo_recording

if __name__ == "__main__":
    raw = make_demo_recording()
    tmp = Path(DEMO_PATH).with_name(f".tmp-{os.getpid()}_raw.fif")
    raw.save(tmp, overwrite=True, fmt="double", verbose="error")
    os.replace(tmp, DEMO_PATH)
    print(f"wrote {DEMO_PATH}: {raw.n_times} samples at {raw.info['sfreq']:g} Hz, "
          f"seizure onset {raw.annotations.onset[0]:.2f} s")
