"""Sliding windows over a recording, for time-resolved features.

Windows of ``window_length`` s are placed every ``step`` s from the first sample (or
from ``tmin``). Every window carries its start, stop and centre times and its overlap
with each annotation (e.g. the fraction of the window after a ``seizure`` onset), so
that time-resolved fits can be lined up with events. Windows that overlap ``BAD``
annotations are left out (logged), kept, or make the call fail, as asked.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import DataError
from ._common import (check_option, check_positive, logger, provenance, signal_unit,
                      use_log_level)
from .io import Annotation, as_recording

__all__ = ["make_windows", "compute_windowed_psd", "compute_windowed_features"]

_ON_BAD = ("drop", "raise", "keep")


def _coord_name(description: str) -> str:
    return "overlap_" + re.sub(r"\W+", "_", description.strip()).strip("_")


def _plan(n_times: int, sfreq: float, annotations: Sequence[Annotation], *,
          window_length: float, step: float, tmin: float | None, tmax: float | None,
          on_bad: str) -> tuple[np.ndarray, int, dict[str, Any]]:
    """Start samples of the kept windows, window length in samples, window coords."""
    check_option("on_bad", on_bad, _ON_BAD)
    window_length = check_positive("window_length", window_length, unit="s")
    step = check_positive("step", step, unit="s")
    if step * sfreq < 1.0 - 1e-9:
        raise DataError(f"step={step} s is below one sample at {sfreq:g} Hz")
    n_win = int(round(window_length * sfreq))
    i0 = 0 if tmin is None else int(round(float(tmin) * sfreq))
    i1 = n_times if tmax is None else min(n_times, int(round(float(tmax) * sfreq)))
    if i0 < 0 or i0 >= i1:
        raise DataError(f"tmin={tmin}, tmax={tmax} s leave no data (recording 0 to "
                        f"{n_times / sfreq:g} s)")
    if n_win < 2:
        raise DataError(f"window_length={window_length} s is under 2 samples at {sfreq:g} Hz")
    if n_win > i1 - i0:
        raise DataError(f"The recording ({(i1 - i0) / sfreq:g} s) is shorter than one window "
                        f"({window_length:g} s); expected at least {n_win} samples, got "
                        f"{i1 - i0}")
    # window k starts at the sample nearest to tmin + k * step (no drift at non-integer
    # steps in samples, e.g. for envelopes at 33.3 Hz)
    n_max = int(np.floor((i1 - n_win - i0) / (step * sfreq) + 1e-9)) + 1
    starts = i0 + np.round(np.arange(n_max) * step * sfreq).astype(np.int64)
    starts = np.unique(starts[starts + n_win <= i1])
    t0 = starts / sfreq
    t1 = (starts + n_win) / sfreq
    bad = np.zeros(starts.shape, dtype=bool)
    overlap: dict[str, np.ndarray] = {}
    labels = [[] for _ in starts]
    for ann in annotations:
        a0, a1 = ann.onset, ann.onset + ann.duration
        if ann.duration > 0:
            cover = np.clip(np.minimum(t1, a1) - np.maximum(t0, a0), 0.0, None)
            hit = cover > 0
        else:
            cover = np.zeros(starts.shape)
            hit = (t0 <= a0) & (a0 < t1)
        if ann.is_bad:
            bad |= hit
        name = _coord_name(ann.description)
        prev = overlap.get(name, np.zeros(starts.shape))
        overlap[name] = np.minimum(prev + cover / window_length, 1.0)
        for i in np.flatnonzero(hit):
            if ann.description not in labels[i]:
                labels[i].append(ann.description)
    if bad.any():
        where = ", ".join(f"{a:g}-{b:g} s" for a, b in zip(t0[bad][:5], t1[bad][:5]))
        more = "" if bad.sum() <= 5 else f" and {int(bad.sum()) - 5} more"
        if on_bad == "raise":
            raise DataError(f"{int(bad.sum())} window(s) overlap BAD annotations ({where}{more}); "
                            "expected none with on_bad='raise'. Use on_bad='drop' to leave them "
                            "out")
        if on_bad == "drop":
            logger.info("Leaving out %d of %d window(s) that overlap BAD annotations (%s%s)",
                        int(bad.sum()), starts.size, where, more)
    keep = ~bad if on_bad == "drop" else np.ones(starts.shape, dtype=bool)
    if not keep.any():
        raise DataError(f"All {starts.size} windows overlap BAD annotations")
    coords: dict[str, Any] = {
        "window_start": ("window", t0[keep]), "window_stop": ("window", t1[keep]),
        "window_center": ("window", (t0[keep] + t1[keep]) / 2.0),
        "annotations": ("window", [";".join(lab) for lab, k in zip(labels, keep) if k]),
        "bad": ("window", bad[keep]),
    }
    for name, frac in overlap.items():
        coords[name] = ("window", frac[keep])
    return starts[keep], n_win, coords


def _annotations_from_attrs(attrs: Mapping[str, Any]) -> list[Annotation]:
    raw = attrs.get("annotations")
    if not raw:
        return []
    return [Annotation(float(o), float(d), str(s)) for o, d, s in json.loads(raw)]


def make_windows(inst: Any, *, window_length: float, step: float | None = None,
                 picks: Any = None, tmin: float | None = None, tmax: float | None = None,
                 on_bad: str = "drop", verbose: bool | str | None = None):
    """Cut a recording (or a signal such as an envelope) into sliding windows.

    Parameters
    ----------
    inst : Recording | mne.io.Raw | path-like | xarray.DataArray
        A continuous recording, or a DataArray with a ``time`` dim (last) and an
        ``sfreq`` attribute (e.g. from :func:`compute_band_envelopes`; its
        ``annotations`` attribute is used).
    window_length : float
        Window length in s.
    step : float | None
        Step between window starts in s (default: ``window_length``, no overlap).
    picks : str | list | None
        Channels (recordings only).
    tmin, tmax : float | None
        Only windows within this time range (s from the first sample).
    on_bad : "drop" | "raise" | "keep"
        Windows overlapping ``BAD`` annotations are left out (logged), raise
        :class:`~nmm_inference.errors.DataError`, or are kept (flagged by coord ``bad``).
    verbose : bool | str | None
        Log level of the ``nmm_inference`` logger during the call.

    Returns
    -------
    xarray.DataArray
        Dims (``window``, ..., ``time``) with ``time`` in s from the window start; coords
        ``window_start``, ``window_stop``, ``window_center`` (s from the first sample),
        ``annotations`` (descriptions overlapping each window), ``bad`` and, per
        annotation description, ``overlap_<description>`` (fraction of the window it
        covers).

    Raises
    ------
    DataError
        Epoched data, a recording shorter than one window, BAD overlaps with
        ``on_bad="raise"``.

    Examples
    --------
    >>> import numpy as np
    >>> from nmm_inference.features import read_recording
    >>> rec = read_recording(np.random.default_rng(0).standard_normal((2, 1000)) * 1e-5,
    ...                      sfreq=100.0)
    >>> make_windows(rec, window_length=2.0, step=1.0).sizes["window"]
    9
    """
    import xarray as xr

    with use_log_level(verbose):
        step = window_length if step is None else step
        if isinstance(inst, xr.DataArray):
            if "time" not in inst.dims or "sfreq" not in inst.attrs:
                raise DataError("A DataArray needs a 'time' dim and an 'sfreq' attribute (Hz)")
            da = inst.transpose(..., "time")
            sfreq = float(da.attrs["sfreq"])
            starts, n_win, coords = _plan(da.sizes["time"], sfreq,
                                          _annotations_from_attrs(da.attrs),
                                          window_length=window_length, step=step, tmin=tmin,
                                          tmax=tmax, on_bad=on_bad)
            view = sliding_window_view(da.values, n_win, axis=-1)[..., starts, :]
            view = np.moveaxis(view, -2, 0)
            other = {k: v for k, v in da.coords.items() if "time" not in v.dims}
            out = xr.DataArray(np.ascontiguousarray(view), dims=("window",) + da.dims,
                               coords=other, attrs=dict(da.attrs), name=da.name)
        else:
            rec = as_recording(inst, picks)
            if rec.epoched:
                raise DataError("Sliding windows need a continuous recording, got epoched data")
            sfreq = rec.sfreq
            starts, n_win, coords = _plan(rec.n_times, sfreq, rec.annotations,
                                          window_length=window_length, step=step, tmin=tmin,
                                          tmax=tmax, on_bad=on_bad)
            view = sliding_window_view(rec.data[0], n_win, axis=-1)[:, starts, :]
            out = xr.DataArray(np.ascontiguousarray(np.moveaxis(view, 1, 0)),
                               dims=("window", "channel", "time"),
                               coords={"channel": list(rec.ch_names),
                                       "ch_type": ("channel", list(rec.ch_types))},
                               attrs=provenance(rec.source, {}, sfreq=sfreq,
                                                units=signal_unit(rec.ch_types, rec.units)),
                               name="signal")
        out = out.assign_coords(time=np.arange(n_win) / sfreq, **coords)
        out.attrs["settings"] = json.dumps({"window_length": window_length, "step": step,
                                            "tmin": tmin, "tmax": tmax, "on_bad": on_bad})
        out.attrs["window_length"] = n_win / sfreq
        out.attrs["step"] = step
        return out


def compute_windowed_psd(inst: Any, *, window_length: float = 2.0, step: float = 1.0,
                         method: str = "multitaper", fmin: float | None = None,
                         fmax: float | None = None, picks: Any = None,
                         n_per_seg: int | None = None, n_overlap: int | None = None,
                         n_fft: int | None = None, window: str = "hann",
                         bandwidth: float | None = None, low_bias: bool = True,
                         detrend: str | None = "constant", order: int = 8,
                         freqs: Sequence[float] | None = None, line_freq: float | None = None,
                         line_noise: str = "drop", line_width: float | None = None,
                         tmin: float | None = None, tmax: float | None = None,
                         on_bad: str = "drop", verbose: bool | str | None = None):
    """Power spectral density in sliding windows, with degrees of freedom.

    Parameters
    ----------
    inst : Recording | mne.io.Raw | path-like
        A continuous recording.
    window_length, step : float
        Window length and step in s.
    method : "multitaper" | "welch" | "ar"
        As :func:`~nmm_inference.features.compute_psd`; default multitaper over the whole
        window (time-half-bandwidth 4: 7 tapers, 14 dof per window).
    fmin, fmax, picks, n_overlap, n_fft, window, bandwidth, low_bias, detrend : optional
        As :func:`~nmm_inference.features.compute_psd`, applied within each window.
    order, freqs, line_freq, line_noise, line_width : optional
        As :func:`~nmm_inference.features.compute_psd`.
    n_per_seg : int | None
        Segment length in samples within a window (default: the whole window for
        multitaper and AR, half a window for Welch).
    tmin, tmax : float | None
        Only windows within this time range (s).
    on_bad : "drop" | "raise" | "keep"
        Handling of windows overlapping ``BAD`` annotations (see :func:`make_windows`).
    verbose : bool | str | None
        Log level of the ``nmm_inference`` logger during the call.

    Returns
    -------
    xarray.DataArray
        ``psd`` with dims (``window``, ``channel``, ``freq``) in V**2/Hz; coords ``dof``
        (per ``freq``, the same for every window), the window coords of
        :func:`make_windows`; attrs as :func:`compute_psd`.

    Raises
    ------
    DataError
        As :func:`make_windows` and :func:`compute_psd`.
    """
    import xarray as xr

    from .spectra import _dof, _notch, _settings, _spectra_core

    with use_log_level(verbose):
        rec = as_recording(inst, picks)
        if rec.epoched:
            raise DataError("Sliding windows need a continuous recording, got epoched data")
        starts, n_win, coords = _plan(rec.n_times, rec.sfreq, rec.annotations,
                                      window_length=window_length, step=step, tmin=tmin,
                                      tmax=tmax, on_bad=on_bad)
        if n_per_seg is None and method == "welch":
            n_per_seg = n_win // 2
        st = _settings(rec, method=method, fmin=fmin, fmax=fmax, n_per_seg=n_per_seg,
                       n_overlap=n_overlap, n_fft=n_fft, window=window, bandwidth=bandwidth,
                       low_bias=low_bias, detrend=detrend, order=order, freqs=freqs,
                       line_freq=line_freq, line_noise=line_noise, line_width=line_width,
                       n_times=n_win, default_seg_s=None)
        if line_noise == "notch":
            rec = _notch(rec, st.line_freq)
        step_seg = st.n_per_seg - st.n_overlap
        seg_starts = np.arange(1 + (n_win - st.n_per_seg) // step_seg) * step_seg
        windows = sliding_window_view(rec.data[0], n_win, axis=-1)[:, starts, :]
        windows = np.moveaxis(windows, 1, 0)  # (window, channel, time), a view
        spec = _spectra_core(windows, seg_starts, st, rec.sfreq, cross=False)
        dof = _dof(st, [seg_starts], rec.sfreq)
        u = signal_unit(rec.ch_types, rec.units)
        settings = st.as_dict() | {"fmin": fmin, "fmax": fmax, "picks": list(rec.ch_names),
                                    "window_length": window_length, "step": step,
                                    "tmin": tmin, "tmax": tmax, "on_bad": on_bad}
        attrs = provenance(rec.source, settings, sfreq=rec.sfreq, method=method,
                           units=f"{u}**2/Hz", n_segments=int(seg_starts.size),
                           n_tapers=int(st.tapers.shape[0]) if method != "ar" else None,
                           bandwidth=st.bandwidth, line_freq=st.line_freq,
                           window_length=n_win / rec.sfreq, step=step,
                           history=";".join(rec.history))
        da = xr.DataArray(spec, dims=("window", "channel", "freq"),
                          coords={"channel": list(rec.ch_names),
                                  "ch_type": ("channel", list(rec.ch_types)),
                                  "freq": st.freqs, "dof": ("freq", dof), **coords},
                          attrs=attrs, name="psd")
        logger.info("Windowed %s PSD: %d window(s) x %d channel(s) x %d bin(s), dof %g", method,
                    spec.shape[0], spec.shape[1], spec.shape[2], float(np.median(dof)))
        return da


def compute_windowed_features(inst: Any, *, window_length: float = 2.0, step: float = 1.0,
                              method: str = "multitaper", bands: Any = None,
                              fmin: float | None = None, fmax: float | None = None,
                              picks: Any = None, sfreq_out: float | None = None,
                              line_noise: str = "drop", on_bad: str = "drop",
                              verbose: bool | str | None = None):
    """All time-resolved features: windowed PSD with dof and band envelopes.

    Parameters
    ----------
    inst : Recording | mne.io.Raw | path-like
        A continuous recording.
    window_length, step : float
        Window length and step in s.
    method : "multitaper" | "welch" | "ar"
        PSD method (see :func:`compute_windowed_psd`).
    bands : dict | list | "peaks" | None
        Envelope bands (see :func:`~nmm_inference.features.compute_band_envelopes`).
    fmin, fmax : float | None
        PSD frequency range in Hz.
    picks : str | list | None
        Channels.
    sfreq_out : float | None
        Envelope sampling rate in Hz (default: see ``compute_band_envelopes``).
    line_noise : "drop" | "keep" | "notch"
        Line-noise handling of the PSD.
    on_bad : "drop" | "raise" | "keep"
        Handling of windows overlapping ``BAD`` annotations.
    verbose : bool | str | None
        Log level of the ``nmm_inference`` logger during the call.

    Returns
    -------
    xarray.Dataset
        ``psd`` (``window``, ``channel``, ``freq``) with coord ``dof``; ``envelope``
        (``band``, ``channel``, ``time``) at the envelope rate ``envelope_sfreq`` (attr);
        ``envelope_mean`` (``window``, ``band``, ``channel``): mean envelope over the
        envelope samples of each PSD window (``window_start <= t < window_stop``).
    """
    import xarray as xr

    from .envelopes import compute_band_envelopes

    with use_log_level(verbose):
        rec = as_recording(inst, picks)
        psd = compute_windowed_psd(rec, window_length=window_length, step=step, method=method,
                                   fmin=fmin, fmax=fmax, line_noise=line_noise, on_bad=on_bad)
        env = compute_band_envelopes(rec, bands=bands, sfreq_out=sfreq_out)
        sf_env = float(env.attrs["sfreq"])
        # mean envelope per window via cumulative sums on the envelope grid
        # envelope samples with window_start <= t < window_stop
        i0 = np.ceil(psd["window_start"].values * sf_env - 1e-9).astype(int)
        i1 = np.ceil(psd["window_stop"].values * sf_env - 1e-9).astype(int)
        i1 = np.clip(np.maximum(i1, i0 + 1), 1, env.sizes["time"])
        csum = np.concatenate([np.zeros(env.shape[:-1] + (1,)), np.cumsum(env.values, axis=-1)],
                              axis=-1)
        means = (csum[..., i1] - csum[..., i0]) / (i1 - i0)  # (band, channel, window)
        env_mean = xr.DataArray(np.moveaxis(means, -1, 0), dims=("window", "band", "channel"),
                                coords={"band": env["band"].values,
                                        "channel": env["channel"].values})
        ds = xr.Dataset({"psd": psd, "envelope": env, "envelope_mean": env_mean})
        ds.attrs = {k: v for k, v in psd.attrs.items() if k != "settings"}
        ds.attrs["psd_settings"] = psd.attrs["settings"]
        ds.attrs["envelope_settings"] = env.attrs["settings"]
        ds.attrs["envelope_sfreq"] = sf_env
        return ds
