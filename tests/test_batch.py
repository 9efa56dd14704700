"""Batch engine: atomic per-unit results, resume after SIGKILL, seeds by key."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import xarray as xr

from nmm_inference.batch import load_results, run_batch, unit_seed
from nmm_inference.errors import NMMError, ParameterError


def _square(payload, *, random_seed):
    rng = np.random.default_rng(random_seed)
    return xr.Dataset({"y": ("i", np.asarray(payload, float) ** 2), "noise": ("i", rng.normal(size=len(payload)))})


def _fails_on_three(payload, *, random_seed):
    if payload == 3:
        raise ValueError("bad unit")
    return xr.Dataset({"y": payload})


def test_sync_batch_and_resume(tmp_path):
    units = {f"u{i}": [i, i + 1] for i in range(5)}
    r1 = run_batch(_square, units, store=tmp_path, scheduler="sync", progressbar=False, random_seed=7)
    assert sorted(r1.done) == sorted(units) and r1.skipped == []
    r2 = run_batch(_square, units, store=tmp_path, scheduler="sync", progressbar=False, random_seed=7)
    assert r2.done == [] and sorted(r2.skipped) == sorted(units)
    res = load_results(tmp_path)
    np.testing.assert_array_equal(res["u3"]["y"].values, [9, 16])  # exact arithmetic
    assert res["u3"].attrs["unit_random_seed"] == unit_seed(7, "u3")


def test_seed_depends_on_key_not_order():
    assert unit_seed(1, "a") == unit_seed(1, "a")
    assert unit_seed(1, "a") != unit_seed(1, "b") != unit_seed(2, "b")


def test_failures_are_reported_and_finished_units_kept(tmp_path):
    units = {f"u{i}": i for i in range(5)}
    with pytest.raises(NMMError, match="1 of 5 units failed.*bad unit"):
        run_batch(_fails_on_three, units, store=tmp_path, scheduler="sync", progressbar=False)
    assert len(load_results(tmp_path)) == 4


def test_bad_keys(tmp_path):
    with pytest.raises(ParameterError, match="unit keys"):
        run_batch(_square, {"a/b": [1]}, store=tmp_path, scheduler="sync")


def test_dask_local_cluster(tmp_path):
    units = {f"u{i}": [i] for i in range(4)}
    r = run_batch(_square, units, store=tmp_path, n_workers=2, progressbar=False, random_seed=1)
    assert sorted(r.done) == sorted(units)
    res = load_results(tmp_path)
    # same seed, same key -> same numbers as the synchronous run
    run_batch(_square, units, store=tmp_path / "sync", scheduler="sync", progressbar=False, random_seed=1)
    res_sync = load_results(tmp_path / "sync")
    for k in units:
        np.testing.assert_array_equal(res[k]["noise"].values, res_sync[k]["noise"].values)


SCRIPT = textwrap.dedent('''
    import os, sys, time
    import numpy as np, xarray as xr
    from nmm_inference.batch import run_batch

    def slow(payload, *, random_seed):
        time.sleep(0.4)
        return xr.Dataset({"y": payload, "pid": os.getpid(), "t": time.time()})

    if __name__ == "__main__":
        store = sys.argv[1]
        units = {f"w{i:03d}": i for i in range(int(sys.argv[2]))}
        run_batch(slow, units, store=store, scheduler=sys.argv[3] if sys.argv[3] != "dask" else None,
                  n_workers=2, progressbar=False)
''')


@pytest.mark.parametrize("scheduler", ["sync", "dask"])
def test_resume_after_sigkill(tmp_path, scheduler):
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    store = tmp_path / "store"
    n = 12
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, str(script), str(store), str(n), scheduler],
                            start_new_session=True, env=env)
    deadline = time.time() + 120
    while time.time() < deadline:
        done = list((store / "units").glob("w*.nc")) if (store / "units").exists() else []
        if len(done) >= 3:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and every worker it started
    proc.wait()
    before = {p.stem: p.stat().st_mtime_ns for p in (store / "units").glob("w*.nc")}
    assert 3 <= len(before) < n, "the kill must land mid-run"
    res_before = load_results(store)
    out = subprocess.run([sys.executable, str(script), str(store), str(n), scheduler], env=env,
                         timeout=300)
    assert out.returncode == 0
    res = load_results(store)
    assert sorted(res) == [f"w{i:03d}" for i in range(n)]  # every unit exactly once
    assert not list((store / "units").glob(".tmp-*"))       # no half-written files left
    for k, mtime in before.items():                          # finished units not recomputed
        assert (store / "units" / f"{k}.nc").stat().st_mtime_ns == mtime
        assert float(res[k]["t"]) == float(res_before[k]["t"])
    for k, ds in res.items():
        assert int(ds["y"]) == int(k[1:])
