"""Batch execution of many units (windows, recordings, subjects) with checkpointing.

Each unit is computed by a user function that returns an :class:`xarray.Dataset` or
:class:`xarray.DataTree`.  The result of every unit is written on the worker that computed it,
as its own netCDF file in the store folder, through a temporary file and an atomic rename: a
unit's file either exists whole or not at all.  Restarting a killed batch with the same store
skips every unit whose file exists, so nothing finished is recomputed or lost.

Execution goes through Dask: a local cluster by default (one single-threaded worker process
per core), the same code on a distributed cluster when a scheduler address is given, or
``scheduler="sync"`` to run in the calling process (no Dask; useful for debugging).

Randomness: each unit receives its own ``random_seed``, derived from the batch seed and the
unit's key (not its position), so results do not depend on the order of execution or on
which units were already done.
"""

from __future__ import annotations

import logging
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from .errors import NMMError, ParameterError

logger = logging.getLogger("nmm_inference")

__all__ = ["run_batch", "BatchResult", "load_results", "unit_seed"]

_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def unit_seed(random_seed, key: str) -> int:
    """Seed of one unit: a function of the batch seed and the unit key only.

    Parameters
    ----------
    random_seed : int or None
        Batch seed (``None`` counts as 0).
    key : str
        Unit key.

    Returns
    -------
    int
        Seed in ``[0, 2**32)``, drawn from a :class:`numpy.random.SeedSequence` of the batch
        seed and the CRC-32 of the key, so it does not depend on the unit's position.
    """
    base = 0 if random_seed is None else int(random_seed)
    ss = np.random.SeedSequence([base, zlib.crc32(key.encode())])
    return int(ss.generate_state(1, dtype=np.uint32)[0])


def _unit_path(store: Path, key: str) -> Path:
    return store / "units" / f"{key}.nc"


def _write_atomic(obj, path: Path):
    import xarray as xr

    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        if isinstance(obj, xr.DataTree):
            obj.to_netcdf(tmp, engine="h5netcdf")
        elif isinstance(obj, xr.Dataset):
            obj.to_netcdf(tmp, engine="h5netcdf")
        else:
            raise NMMError(f"a unit must return an xarray Dataset or DataTree, got {type(obj).__name__}")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _compute_unit(func, key, payload, seed, store_str):
    """Runs on a worker: compute one unit and write its file atomically."""
    store = Path(store_str)
    path = _unit_path(store, key)
    if path.exists():  # another attempt finished it
        return key, "skipped"
    out = func(payload, random_seed=seed)
    if hasattr(out, "attrs"):
        out.attrs["unit_key"] = key
        out.attrs["unit_random_seed"] = seed
    _write_atomic(out, path)
    return key, "done"


@dataclass
class BatchResult:
    """What :func:`run_batch` did.

    Attributes
    ----------
    store : Path
        The store folder.
    done : list of str
        Units computed in this run.
    skipped : list of str
        Units found complete in the store and not recomputed.
    failed : dict
        Unit key -> error message, for units that raised.
    """

    store: Path
    done: list
    skipped: list
    failed: dict

    @property
    def complete(self) -> bool:
        return not self.failed

    def load(self, keys=None):
        """Load finished units (see :func:`load_results`)."""
        return load_results(self.store, keys=keys)


def _check_units(units):
    if isinstance(units, Mapping):
        items = list(units.items())
    else:
        items = list(units)
    keys = [k for k, _ in items]
    bad = [k for k in keys if not isinstance(k, str) or not _KEY_RE.match(k)]
    if bad:
        raise ParameterError(f"unit keys must be strings of letters, digits, '_', '-', '.', got {bad[:5]}")
    if len(set(keys)) != len(keys):
        raise ParameterError("unit keys must be unique")
    return items


def run_batch(func: Callable[..., Any], units, *, store, scheduler=None, n_workers=None,
              progressbar=True, random_seed=None, raise_on_error=True):
    """Compute every unit not yet in the store; resume where a killed run stopped.

    Parameters
    ----------
    func : callable
        ``func(payload, *, random_seed) -> xarray.Dataset | xarray.DataTree``.  Must be
        picklable (a module-level function) for process-based clusters.
    units : mapping or sequence of (key, payload)
        Unit keys (file-name safe strings) and their payloads (picklable).
    store : str or Path
        Folder of the results; created if needed.  Unit results go to ``store/units/KEY.nc``.
    scheduler : None, "sync", str or distributed.Client
        ``None``: a local Dask cluster with ``n_workers`` single-threaded worker processes;
        ``"sync"``: run in this process without Dask; a string: address of a running Dask
        scheduler (``"tcp://host:8786"``); or an existing ``distributed.Client``.
    n_workers : int, optional
        Workers of the local cluster (default: number of cores).
    progressbar : bool
        Show a progress bar (tqdm).
    random_seed : int, optional
        Batch seed; unit seeds are derived from it and the unit key (:func:`unit_seed`).
    raise_on_error : bool
        Raise after the batch if any unit failed (finished units are kept either way).

    Returns
    -------
    BatchResult
    """
    items = _check_units(units)
    store = Path(store)
    (store / "units").mkdir(parents=True, exist_ok=True)
    for stale in (store / "units").glob(".tmp-*"):
        stale.unlink(missing_ok=True)  # partial writes of a killed run
    todo = [(k, p) for k, p in items if not _unit_path(store, k).exists()]
    skipped = [k for k, _ in items if _unit_path(store, k).exists()]
    logger.info("batch: %d units, %d already done, %d to compute", len(items), len(skipped), len(todo))
    done, failed = [], {}
    bar = None
    if progressbar and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="units", unit="unit")
    try:
        if scheduler == "sync":
            for k, p in todo:
                try:
                    _compute_unit(func, k, p, unit_seed(random_seed, k), str(store))
                    done.append(k)
                except Exception as exc:  # noqa: BLE001 - recorded and reported
                    failed[k] = f"{type(exc).__name__}: {exc}"
                if bar is not None:
                    bar.update(1)
        elif todo:
            from distributed import Client, LocalCluster, as_completed

            own_client = None
            cluster = None
            if scheduler is None:
                nw = n_workers or os.cpu_count() or 1
                cluster = LocalCluster(n_workers=nw, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=logging.ERROR)
                client = own_client = Client(cluster)
            elif isinstance(scheduler, str):
                client = own_client = Client(scheduler)
            else:
                client = scheduler
            try:
                futs = {client.submit(_compute_unit, func, k, p, unit_seed(random_seed, k), str(store),
                                      key=f"nmm-unit-{k}", pure=False): k for k, p in todo}
                for fut in as_completed(futs):
                    k = futs[fut]
                    try:
                        fut.result()
                        done.append(k)
                    except Exception as exc:  # noqa: BLE001 - recorded and reported
                        failed[k] = f"{type(exc).__name__}: {exc}"
                    if bar is not None:
                        bar.update(1)
            finally:
                if own_client is not None:
                    own_client.close()
                if cluster is not None:
                    cluster.close()
    finally:
        if bar is not None:
            bar.close()
    result = BatchResult(store=store, done=done, skipped=skipped, failed=failed)
    if failed and raise_on_error:
        msg = "; ".join(f"{k}: {v}" for k, v in list(failed.items())[:5])
        raise NMMError(f"{len(failed)} of {len(items)} units failed ({msg}); finished units are "
                       f"kept in {store} and a rerun resumes")
    return result


def load_results(store, *, keys=None):
    """Load finished units of a store as ``{key: Dataset or DataTree}``.

    Files are opened fully into memory and closed.

    Parameters
    ----------
    store : str or Path
        Store folder of :func:`run_batch`; the units are read from ``store/units/*.nc``.
    keys : container of str, optional
        Load only these unit keys (keys without a file are ignored); default: all.

    Returns
    -------
    dict
        Unit key -> :class:`xarray.Dataset` (a file without groups) or
        :class:`xarray.DataTree`, in sorted key order; empty when no unit is finished.
    """
    import xarray as xr

    store = Path(store)
    paths = sorted((store / "units").glob("*.nc"))
    out = {}
    for p in paths:
        k = p.stem
        if keys is not None and k not in keys:
            continue
        tree = xr.open_datatree(p, engine="h5netcdf")
        tree = tree.load()
        tree.close()
        out[k] = tree.to_dataset() if not tree.children else tree
    return out
