"""Shared helpers of the features subpackage: logging, provenance, small checks.

This module imports numpy only (no MNE), so that the helpers can be used by every
feature module without pulling in heavy dependencies.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any, Iterator, Mapping

import numpy as np

from .._version import __version__
from ..errors import DataError

logger = logging.getLogger("nmm_inference")

#: MNE channel types whose samples are electric potentials (volts).
VOLTAGE_TYPES = frozenset({"eeg", "ecog", "seeg", "dbs", "eog", "emg", "ecg", "bio"})

#: SI unit of the samples of MNE channel types other than voltages.
_TYPE_UNITS = {"mag": "T", "grad": "T/m"}


def signal_unit(ch_types, units: str) -> str:
    """Unit label of a set of channels: ``"V"``, ``"T"``, ``"T/m"``, ``"au"`` or mixed.

    Parameters
    ----------
    ch_types : sequence of str
        MNE channel types.
    units : str
        ``"V"`` (SI after reading) or ``"au"`` (arbitrary units).
    """
    if units == "au":
        return "au"
    kinds = {_TYPE_UNITS.get(t, "V" if t in VOLTAGE_TYPES else "au") for t in ch_types}
    return kinds.pop() if len(kinds) == 1 else "mixed (" + ", ".join(sorted(kinds)) + ")"


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR, "critical": logging.CRITICAL}


@contextlib.contextmanager
def use_log_level(verbose: bool | str | int | None) -> Iterator[None]:
    """Temporarily set the level of the ``nmm_inference`` logger.

    Parameters
    ----------
    verbose : bool | str | int | None
        ``None`` leaves the level unchanged; ``True`` means ``"info"``, ``False`` means
        ``"warning"``; a string is one of debug/info/warning/error/critical.
    """
    if verbose is None:
        yield
        return
    if verbose is True:
        level = logging.INFO
    elif verbose is False:
        level = logging.WARNING
    elif isinstance(verbose, str):
        if verbose.lower() not in _LEVELS:
            raise ValueError(f"verbose must be one of {sorted(_LEVELS)} or a bool, got {verbose!r}")
        level = _LEVELS[verbose.lower()]
    else:
        level = int(verbose)
    old = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(old)


def check_option(name: str, value: Any, allowed: tuple) -> Any:
    """Raise ``ValueError`` naming the allowed values when ``value`` is not one of them."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed!r}, got {value!r}")
    return value


def check_positive(name: str, value: float, *, unit: str = "") -> float:
    """Return ``float(value)`` or raise ``ValueError`` when it is not finite and > 0."""
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0{(' ' + unit) if unit else ''}, "
                         f"got {value!r}")
    return value


def provenance(source: str, settings: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """Attributes stamped on every returned xarray object.

    The values are netCDF-serialisable (strings and numbers); ``settings`` is stored as a
    JSON string.
    """
    attrs: dict[str, Any] = {
        "source": str(source),
        "nmm_inference_version": __version__,
        "settings": json.dumps(_jsonable(dict(settings)), sort_keys=True),
    }
    for key, val in extra.items():
        if val is None:
            continue
        attrs[key] = _jsonable(val) if not isinstance(val, (str, int, float)) else val
        if isinstance(attrs[key], (list, dict)):
            attrs[key] = json.dumps(attrs[key])
    return attrs


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return repr(obj)


def check_finite(data: np.ndarray, ch_names: tuple[str, ...]) -> None:
    """Raise :class:`DataError` naming the channels that hold NaN or infinite samples.

    ``data`` has shape (..., n_channels, n_times).
    """
    bad = ~np.isfinite(data)
    if bad.any():
        per_ch = bad.reshape(-1, data.shape[-2], data.shape[-1]).sum(axis=(0, 2))
        names = [f"{ch_names[i]} ({int(per_ch[i])} samples)" for i in np.flatnonzero(per_ch)]
        raise DataError(
            "The recording holds NaN or infinite samples in channel(s) " + ", ".join(names)
            + "; expected finite values everywhere. Interpolate or crop them (or mark the "
            "channel bad) before computing features.")
