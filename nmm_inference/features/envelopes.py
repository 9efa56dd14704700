"""Band-limited amplitude envelopes.

The envelope of a band is the modulus of the analytic signal of the band-passed data.
Both steps are done at once in the frequency domain: the (reflection-padded) signal is
Fourier transformed once, and for every band its positive frequencies are multiplied by
twice a zero-phase band-pass gain with raised-cosine edges (the gain is 0.5, -6 dB, at
the band edges, like MNE's FIR filters), and the inverse transform gives the analytic
signal. The envelope is then decimated by an integer factor with an anti-aliasing
polyphase filter to a rate of at least four times the widest band's envelope bandwidth
(band width plus transition), which keeps its content while making samples far fewer.
"""

from __future__ import annotations

import json
from fractions import Fraction
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import DataError
from ._common import logger, provenance, signal_unit, use_log_level
from .io import as_recording

__all__ = ["compute_band_envelopes", "DEFAULT_BANDS", "bands_from_peaks"]

#: Canonical EEG bands in Hz.
DEFAULT_BANDS = {"delta": (1.0, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 13.0),
                 "beta": (13.0, 30.0), "gamma": (30.0, 45.0)}


def _transitions(lo: float, hi: float, nyq: float, transition: float | None) -> tuple[float, float]:
    if transition is not None:
        t = float(transition)
        return min(t, 2 * lo) if lo > 0 else 0.0, min(t, 2 * (nyq - hi))
    # MNE's "auto" transition bandwidths, centred on the edges here.
    tl = min(max(0.25 * lo, 2.0), lo) if lo > 0 else 0.0
    th = min(max(0.25 * hi, 2.0), nyq - hi)
    return tl, th


def _gain(freqs: np.ndarray, lo: float, hi: float, tl: float, th: float) -> np.ndarray:
    g = ((freqs >= lo) & (freqs <= hi)).astype(np.float64)
    if tl > 0:
        r = (freqs > lo - tl / 2) & (freqs < lo + tl / 2)
        g[r] = 0.5 - 0.5 * np.cos(np.pi * (freqs[r] - (lo - tl / 2)) / tl)
    if th > 0:
        r = (freqs > hi - th / 2) & (freqs < hi + th / 2)
        g[r] = 0.5 + 0.5 * np.cos(np.pi * (freqs[r] - (hi - th / 2)) / th)
    return g


def bands_from_peaks(inst: Any, *, picks: Any = None, fmin: float = 2.0, fmax: float = 40.0,
                     min_height_db: float = 3.0, max_peaks: int = 3,
                     min_half_width: float = 1.0) -> dict[str, tuple[float, float]]:
    """Bands around the spectral peaks of the channel-average PSD.

    Parameters
    ----------
    inst : Recording | mne.io.Raw | ...
        The data.
    picks : str | list | None
        Channels averaged.
    fmin, fmax : float
        Search range in Hz.
    min_height_db : float
        Minimum height of a peak over the aperiodic fit, in dB.
    max_peaks : int
        Keep at most this many peaks (the highest).
    min_half_width : float
        Minimum half-width of a band in Hz.

    Returns
    -------
    dict
        ``{"peak_<freq>Hz": (fmin, fmax)}``, bands in Hz (half-maximum width of each peak).
    """
    from .spectra import compute_psd, find_spectral_peaks

    rec = as_recording(inst, picks)
    fmax = min(fmax, rec.sfreq / 2.0)
    psd = compute_psd(rec, method="welch", fmax=fmax, line_noise="keep")
    peaks = find_spectral_peaks(psd.mean("channel"), fmin=fmin, fmax=fmax,
                                min_height_db=min_height_db)[:max_peaks]
    bands = {}
    for pk in sorted(peaks, key=lambda q: q.freq):
        lo = min(pk.fmin, pk.freq - min_half_width)
        hi = max(pk.fmax, pk.freq + min_half_width)
        bands[f"peak_{pk.freq:.4g}Hz"] = (max(lo, 0.5), min(hi, rec.sfreq / 2.0 * 0.95))
    logger.info("Bands from spectral peaks: %s", bands or "none found")
    return bands


def compute_band_envelopes(inst: Any, *, bands: Mapping[str, tuple[float, float]] | str |
                           Sequence[tuple[float, float]] | None = None, picks: Any = None,
                           sfreq_out: float | None = None, transition: float | None = None,
                           verbose: bool | str | None = None):
    """Amplitude envelopes of band-passed signals, downsampled.

    Parameters
    ----------
    inst : Recording | mne.io.Raw | mne.Epochs | path-like
        The data (anything but a Recording is read with ``read_recording`` defaults).
    bands : dict | list of (float, float) | "peaks" | None
        Bands in Hz: ``{"beta": (13, 30), ...}``, a list of ``(fmin, fmax)``, ``"peaks"``
        for bands around the peaks of the channel-average spectrum
        (:func:`bands_from_peaks`), or ``None`` for :data:`DEFAULT_BANDS` (those reaching
        the Nyquist frequency are left out, logged).
    picks : str | list | None
        Channels.
    sfreq_out : float | None
        Envelope sampling rate in Hz (rounded to a rational ratio of ``sfreq``). Default:
        ``sfreq / q`` with the largest integer ``q`` keeping it at least four times the
        widest band's envelope bandwidth.
    transition : float | None
        Width in Hz of the raised-cosine band edges (default as MNE's FIR design:
        ``max(0.25 f, 2 Hz)``, bounded by ``f`` and the distance to Nyquist).
    verbose : bool | str | None
        Log level of the ``nmm_inference`` logger during the call.

    Returns
    -------
    xarray.DataArray
        ``envelope`` with dims (``band``, ``channel``, ``time``) (``epoch`` first for
        epoched data), in V; coords ``band_fmin``/``band_fmax`` (Hz), ``time`` (s from
        the first sample); attrs ``sfreq`` (the envelope rate, Hz), ``sfreq_in``,
        ``annotations`` (JSON), ``source``, ``settings``, ``nmm_inference_version``.

    Raises
    ------
    DataError
        A band outside (0, Nyquist), or the errors of ``read_recording``.

    Examples
    --------
    >>> import numpy as np
    >>> from nmm_inference.features import read_recording
    >>> t = np.arange(5000) / 250.0
    >>> rec = read_recording(1e-5 * np.sin(2 * np.pi * 10 * t)[None], sfreq=250.0)
    >>> env = compute_band_envelopes(rec, bands={"alpha": (8.0, 12.0)})
    >>> round(float(env.sel(band="alpha").isel(time=slice(20, -20)).mean()) * 1e5, 2)
    1.0
    """
    import xarray as xr
    from scipy.fft import ifft, next_fast_len, rfft
    from scipy.signal import resample_poly

    with use_log_level(verbose):
        rec = as_recording(inst, picks)
        nyq = rec.sfreq / 2.0
        if isinstance(bands, str):
            if bands != "peaks":
                raise ValueError(f"bands must be a dict, a list of (fmin, fmax), 'peaks' or None; "
                                 f"got {bands!r}")
            band_dict = bands_from_peaks(rec, fmax=min(45.0, nyq * 0.9))
            if not band_dict:
                raise DataError("bands='peaks' found no spectral peak (>= 3 dB over the "
                                "aperiodic fit, 2-45 Hz); name the bands instead")
        elif bands is None:
            band_dict = {k: v for k, v in DEFAULT_BANDS.items() if v[1] < nyq}
            left = sorted(set(DEFAULT_BANDS) - set(band_dict))
            if left:
                logger.info("Default band(s) %s reach the Nyquist frequency %g Hz; left out",
                            left, nyq)
        elif isinstance(bands, Mapping):
            band_dict = {str(k): (float(v[0]), float(v[1])) for k, v in bands.items()}
        else:
            band_dict = {f"{lo:g}-{hi:g}Hz": (float(lo), float(hi)) for lo, hi in bands}
        for name, (lo, hi) in band_dict.items():
            if not (0 <= lo < hi < nyq):
                raise DataError(f"Band {name!r} = ({lo}, {hi}) Hz must satisfy 0 <= fmin < fmax "
                                f"< Nyquist = {nyq:g} Hz")
        if not band_dict:
            raise DataError("No bands to compute")
        edges = {n: _transitions(lo, hi, nyq, transition) for n, (lo, hi) in band_dict.items()}
        env_bw = max(hi - lo + (tl + th) / 2 for (lo, hi), (tl, th) in
                     zip(band_dict.values(), edges.values()))
        if sfreq_out is None:
            q = max(1, int(np.floor(rec.sfreq / (4.0 * env_bw))))
            up, down = 1, q
        else:
            if not 0 < sfreq_out <= rec.sfreq:
                raise ValueError(f"sfreq_out must be in (0, sfreq={rec.sfreq:g}] Hz, got "
                                 f"{sfreq_out}")
            frac = Fraction(float(sfreq_out) / rec.sfreq).limit_denominator(1000)
            up, down = frac.numerator, frac.denominator
            if sfreq_out < 2.0 * env_bw:
                logger.warning("sfreq_out=%g Hz is below twice the envelope bandwidth %g Hz; the "
                               "envelope will be smoothed", sfreq_out, env_bw)
        sf_out = rec.sfreq * up / down

        n = rec.n_times
        min_tr = min([t for pair in edges.values() for t in pair if t > 0] or [1.0])
        pad = int(min(n - 1, np.ceil(3.3 / min_tr * rec.sfreq)))
        x = rec.data - rec.data.mean(axis=-1, keepdims=True)
        x = np.pad(x, [(0, 0), (0, 0), (pad, pad)], mode="reflect")
        n_fft = next_fast_len(x.shape[-1], real=False)
        spec = rfft(x, n=n_fft, axis=-1)
        freqs = np.fft.rfftfreq(n_fft, 1.0 / rec.sfreq)
        envs = []
        for name, (lo, hi) in band_dict.items():
            tl, th = edges[name]
            g = _gain(freqs, lo, hi, tl, th)
            nz = np.flatnonzero(g)
            full = np.zeros(spec.shape[:-1] + (n_fft,), dtype=np.complex128)
            full[..., nz] = spec[..., nz] * (2.0 * g[nz])
            full[..., 0] = spec[..., 0] * g[0]
            analytic = ifft(full, axis=-1)[..., pad:pad + n]
            env = np.abs(analytic)
            if up != 1 or down != 1:
                env = resample_poly(env, up, down, axis=-1, padtype="line")
            envs.append(env)
        out = np.stack(envs, axis=1)  # (epoch, band, channel, time)
        times = np.arange(out.shape[-1]) / sf_out
        settings = {"bands": band_dict, "transitions": edges, "sfreq_out": sfreq_out,
                    "picks": list(rec.ch_names), "resample": [up, down]}
        attrs = provenance(rec.source, settings, sfreq=sf_out, sfreq_in=rec.sfreq,
                           units=signal_unit(rec.ch_types, rec.units),
                           history=";".join(rec.history),
                           annotations=json.dumps([[a.onset, a.duration, a.description]
                                                   for a in rec.annotations]))
        coords = {"band": list(band_dict),
                  "band_fmin": ("band", [v[0] for v in band_dict.values()]),
                  "band_fmax": ("band", [v[1] for v in band_dict.values()]),
                  "channel": list(rec.ch_names), "time": times}
        if rec.epoched:
            da = xr.DataArray(out, dims=("epoch", "band", "channel", "time"), coords=coords,
                              attrs=attrs, name="envelope")
        else:
            da = xr.DataArray(out[0], dims=("band", "channel", "time"), coords=coords,
                              attrs=attrs, name="envelope")
        da["time"].attrs["units"] = "s"
        logger.info("Envelopes of %d band(s) x %d channel(s) at %g Hz", len(band_dict),
                    rec.n_channels, sf_out)
        return da
