"""Power and cross-spectral densities with the degrees of freedom of every bin.

The likelihoods of :mod:`nmm_inference` treat an averaged spectral estimate as scaled
chi-square (auto-spectra) or complex Wishart (cross-spectra), so each estimate here
carries its equivalent degrees of freedom ``dof`` (chi-square dof of an auto-spectrum;
the Wishart dof of the cross-spectral matrix is ``dof / 2``):

* **Welch / multitaper.** A segment estimate averages ``K`` tapered periodograms (Welch:
  one window, ``K = 1``; multitaper: ``K`` Slepian tapers, equally weighted), which for a
  locally flat spectrum gives ``2K`` dof. Averaging ``n`` segments whose start samples
  are ``s_1..s_n`` gives (Welch 1967; Percival & Walden 1993, eq. 292b, generalised to
  several tapers and to irregular segment positions, e.g. after leaving out ``BAD``
  segments)::

      dof = 2 K n**2 / sum_{a,b} r(s_a - s_b),
      r(tau) = (1/K) sum_{j,k} (sum_t h_j(t) h_k(t + tau))**2      (tapers with sum h**2 = 1)

  For equally spaced segments this is the standard ``2Kn / (1 + 2 sum_m (1 - m/n)
  r(m * step))``. Near 0 Hz and the Nyquist frequency the Fourier coefficients become
  real-valued and the dof fall to half that value; the returned ``dof`` are computed
  exactly for every bin for a locally flat spectrum (the ratio ``(sum tr A)**2 /
  sum tr(A A)`` of the quadratic forms ``A`` that map the samples to the estimate; see
  :func:`equivalent_dof`), which equals the standard value in the interior and also
  covers the taper main lobe around 0 Hz and Nyquist and the effect of detrending.
  Epochs are independent: their dof add up.
* **Autoregressive (SPM's feature).** The asymptotic variance of an order-``p`` AR
  spectrum fitted to ``N`` samples is ``2p/N * P(f)**2`` inside the band (twice that at
  0 Hz and Nyquist; Berk 1974), so ``dof = N / p`` per segment. This is a large-sample
  approximation, and neighbouring AR bins are strongly correlated.

By default the 0 Hz bin is not returned (``fmin`` defaults to the first positive bin, as
constant detrending empties it).

References
----------
Welch PD (1967) IEEE Trans Audio Electroacoust 15:70-73. doi:10.1109/TAU.1967.1161901
Percival DB, Walden AT (1993) Spectral Analysis for Physical Applications. Cambridge UP.
doi:10.1017/CBO9780511622762
Thomson DJ (1982) Proc IEEE 70:1055-1096. doi:10.1109/PROC.1982.12433
Berk KN (1974) Ann Stat 2:489-502. doi:10.1214/aos/1176342709
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import DataError
from ._common import check_option, logger, provenance, signal_unit, use_log_level
from .io import Recording, as_recording
from .mar import compute_mar_spectrum, fit_mar

__all__ = ["compute_psd", "compute_csd", "read_spectrum", "find_spectral_peaks",
           "SpectralPeak", "equivalent_dof"]

_METHODS = ("welch", "multitaper", "ar")
_LINE_NOISE = ("drop", "keep", "notch")


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class _Settings:
    method: str
    n_per_seg: int
    n_overlap: int
    n_fft: int
    tapers: np.ndarray  # (K, n_per_seg), sum(h**2) = 1 per taper
    bandwidth: float | None  # Hz (multitaper)
    detrend: str | None
    order: int
    freqs: np.ndarray  # returned frequencies (Hz)
    fft_index: np.ndarray | None  # rfft bins of `freqs` (welch/multitaper)
    line_freq: float | None
    line_noise: str
    dropped_freqs: np.ndarray

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "n_per_seg": self.n_per_seg,
                "n_overlap": self.n_overlap, "n_fft": self.n_fft,
                "n_tapers": int(self.tapers.shape[0]), "bandwidth": self.bandwidth,
                "detrend": self.detrend, "order": self.order if self.method == "ar" else None,
                "line_freq": self.line_freq, "line_noise": self.line_noise,
                "dropped_freqs": self.dropped_freqs.tolist()}


def _make_tapers(method: str, n_per_seg: int, sfreq: float, *, window: str,
                 bandwidth: float | None, low_bias: bool) -> tuple[np.ndarray, float | None]:
    from scipy.signal import get_window
    from scipy.signal.windows import dpss

    if method == "welch":
        h = np.asarray(get_window(window, n_per_seg), dtype=np.float64)
        return (h / np.sqrt(np.sum(h ** 2)))[np.newaxis], None
    if method == "ar":
        return np.full((1, n_per_seg), 1.0 / np.sqrt(n_per_seg)), None
    half_nbw = 4.0 if bandwidth is None else float(bandwidth) * n_per_seg / (2.0 * sfreq)
    if half_nbw < 0.5:
        raise ValueError(f"bandwidth={bandwidth} Hz is below the minimum "
                         f"{sfreq / n_per_seg:g} Hz for {n_per_seg}-sample segments")
    n_max = max(int(2 * half_nbw), 1)
    tapers, ratios = dpss(n_per_seg, half_nbw, n_max, return_ratios=True)
    tapers, ratios = np.atleast_2d(tapers), np.atleast_1d(ratios)
    if low_bias:
        keep = ratios > 0.9
        if not keep.any():
            keep = ratios == ratios.max()
        tapers = tapers[keep]
    tapers = tapers / np.sqrt(np.sum(tapers ** 2, axis=1, keepdims=True))
    return tapers, 2.0 * half_nbw * sfreq / n_per_seg


def _settings(rec: Recording, *, method: str, fmin: float | None, fmax: float | None,
              n_per_seg: int | None, n_overlap: int | None, n_fft: int | None,
              window: str, bandwidth: float | None, low_bias: bool, detrend: str | None,
              order: int, freqs: Sequence[float] | None, line_freq: float | None,
              line_noise: str, line_width: float | None, n_times: int,
              default_seg_s: float | None = 2.0) -> _Settings:
    check_option("method", method, _METHODS)
    check_option("line_noise", line_noise, _LINE_NOISE)
    check_option("detrend", detrend, ("constant", "linear", None))
    sfreq = rec.sfreq
    nyq = sfreq / 2.0
    if n_per_seg is None:
        n_per_seg = (n_times if default_seg_s is None
                     else min(n_times, int(round(default_seg_s * sfreq))))
    n_per_seg = int(n_per_seg)
    if n_per_seg > n_times:
        raise DataError(f"The recording ({n_times} samples = {n_times / sfreq:g} s per "
                        f"epoch/window) is shorter than one segment (n_per_seg={n_per_seg} "
                        f"samples = {n_per_seg / sfreq:g} s); expected n_per_seg <= {n_times}")
    if n_per_seg < 2:
        raise DataError(f"n_per_seg must be at least 2 samples, got {n_per_seg}")
    if n_overlap is None:
        n_overlap = n_per_seg // 2 if method == "welch" else 0
    n_overlap = int(n_overlap)
    if not 0 <= n_overlap < n_per_seg:
        raise ValueError(f"n_overlap must be in [0, n_per_seg={n_per_seg}), got {n_overlap}")
    n_fft = n_per_seg if n_fft is None else int(n_fft)
    if n_fft < n_per_seg:
        raise ValueError(f"n_fft ({n_fft}) must be >= n_per_seg ({n_per_seg})")
    if fmax is not None and fmax > nyq * (1 + 1e-12):
        raise DataError(f"fmax={fmax} Hz is above the Nyquist frequency {nyq:g} Hz (sfreq = "
                        f"{sfreq:g} Hz); expected fmax <= {nyq:g}")
    fmax_ = nyq if fmax is None else float(fmax)
    if fmin is not None and fmin < 0:
        raise ValueError(f"fmin must be >= 0 Hz, got {fmin}")
    tapers, bw = _make_tapers(method, n_per_seg, sfreq, window=window, bandwidth=bandwidth,
                              low_bias=low_bias)
    if method == "ar":
        if order >= n_per_seg // 2:
            raise DataError(f"order={order} is too high for {n_per_seg}-sample segments")
        if freqs is None:
            lo = 1.0 if fmin is None else float(np.ceil(fmin))
            grid = np.arange(lo, np.floor(fmax_) + 0.5, 1.0)
        else:
            grid = np.asarray(freqs, dtype=np.float64)
            if grid.size and grid.max() > nyq * (1 + 1e-12):
                raise DataError(f"freqs up to {grid.max()} Hz exceed the Nyquist frequency "
                                f"{nyq:g} Hz")
        fft_index = None
    else:
        if freqs is not None:
            raise ValueError("freqs is only used with method='ar'; set fmin, fmax and n_fft "
                             "for Welch and multitaper")
        all_f = np.fft.rfftfreq(n_fft, 1.0 / sfreq)
        lo = all_f[1] if fmin is None else float(fmin)
        sel = (all_f >= lo - 1e-9) & (all_f <= fmax_ + 1e-9)
        fft_index = np.flatnonzero(sel)
        grid = all_f[fft_index]
    if grid.size == 0:
        raise DataError(f"No frequencies between fmin={fmin} and fmax={fmax} Hz at "
                        f"resolution {sfreq / n_fft:g} Hz")
    lf = rec.line_freq if line_freq is None else float(line_freq)
    dropped = np.array([])
    if lf is not None and line_noise == "drop":
        if line_width is None:
            line_width = (bw / 2.0 if method == "multitaper" else
                          2.0 * sfreq / n_per_seg if method == "welch" else 1.0)
        harmonics = np.arange(lf, nyq + line_width, lf)
        dist = np.min(np.abs(grid[:, None] - harmonics[None, :]), axis=1)
        near = dist <= line_width + 1e-9
        if near.all():
            raise DataError(f"All frequencies lie within {line_width:g} Hz of the line frequency "
                            f"{lf:g} Hz or its harmonics; pass line_noise='keep'")
        if near.any():
            dropped = grid[near]
            logger.info("Leaving out %d bin(s) within %g Hz of %g Hz line noise and harmonics: "
                        "%s Hz", int(near.sum()), line_width, lf, np.round(dropped, 3).tolist())
            grid = grid[~near]
            if fft_index is not None:
                fft_index = fft_index[~near]
    return _Settings(method, n_per_seg, n_overlap, n_fft, tapers, bw, detrend, int(order), grid,
                     fft_index, lf, line_noise, dropped)


# --------------------------------------------------------------------------- dof


def _taper_overlap_corr(tapers: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """r(tau) = (1/K) sum_jk (sum_t h_j(t) h_k(t+tau))**2 for each lag (samples)."""
    k, n = tapers.shape
    out = np.zeros(lags.shape, dtype=np.float64)
    for i, tau in enumerate(lags):
        tau = int(tau)
        if tau >= n:
            continue
        rho = tapers[:, : n - tau] @ tapers[:, tau:].T  # (K, K)
        out[i] = np.sum(rho ** 2) / k
    return out


def _lag_counts(starts: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct positive start differences below ``n`` and how often each occurs."""
    s = np.sort(np.asarray(starts, dtype=np.int64))
    diffs = []
    for j in range(1, s.size):
        d = s[j:] - s[:-j]
        d = d[d < n]
        if d.size == 0:  # sorted starts: larger offsets only give larger differences
            break
        diffs.append(d)
    if not diffs:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate(diffs), return_counts=True)


def equivalent_dof(tapers: np.ndarray, starts: Sequence[int] | np.ndarray, *,
                   freqs: np.ndarray | None = None, sfreq: float | None = None,
                   detrend: str | None = None) -> np.ndarray | float:
    """Equivalent chi-square degrees of freedom of an averaged (multi)taper estimate.

    Parameters
    ----------
    tapers : ndarray, shape (n_tapers, n_per_seg)
        Data tapers (any scale; normalised internally). One row for Welch.
    starts : array of int
        Start sample of every averaged segment (of one epoch or continuous stretch).
    freqs : ndarray, shape (n_freqs,) | None
        Frequencies in Hz. ``None``: return the standard interior value
        ``2 K n**2 / sum_{a,b} r(s_a - s_b)`` (module notes). Given: return the exact
        dof of every bin for a flat (white) spectrum, ``(sum tr A)**2 / sum tr(A A)``
        for the quadratic forms ``A`` of the estimator, which equals the standard value
        away from 0 Hz and Nyquist and accounts for the real-valued bins there, the
        taper main lobe around them and the detrending.
    sfreq : float | None
        Sampling frequency in Hz (needed with ``freqs``).
    detrend : "constant" | "linear" | None
        Detrending applied to each segment before tapering (used with ``freqs``).

    Returns
    -------
    float | ndarray, shape (n_freqs,)
        Degrees of freedom (for one epoch; independent epochs add up).

    Examples
    --------
    >>> import numpy as np
    >>> round(float(equivalent_dof(np.ones((1, 100)), [0, 100, 200])), 6)  # no overlap
    6.0
    >>> d = equivalent_dof(np.ones((1, 100)), [0, 100, 200], freqs=np.array([0., 10., 50.]),
    ...                    sfreq=100.0)
    >>> np.round(d, 6).tolist()  # real-valued bins at 0 Hz and Nyquist: half
    [3.0, 6.0, 3.0]
    """
    tapers = np.atleast_2d(np.asarray(tapers, dtype=np.float64))
    tapers = tapers / np.sqrt(np.sum(tapers ** 2, axis=1, keepdims=True))
    k, n = tapers.shape
    starts = np.asarray(starts, dtype=np.int64)
    n_seg = starts.size
    if n_seg == 0:
        raise DataError("No segments to average")
    lags, counts = _lag_counts(starts, n)
    if freqs is None:
        total = float(n_seg) + 2.0 * float(np.sum(counts * _taper_overlap_corr(tapers, lags)))
        return 2.0 * k * n_seg ** 2 / total
    if sfreq is None:
        raise ValueError("equivalent_dof needs sfreq with freqs")
    check_option("detrend", detrend, ("constant", "linear", None))
    freqs = np.atleast_1d(np.asarray(freqs, dtype=np.float64))
    t = np.arange(n)
    if detrend == "linear":
        basis = np.linalg.qr(np.stack([np.ones(n), t - t.mean()], axis=1))[0]  # (n, 2)
    out = np.empty(freqs.shape)
    chunk = max(1, int(2e7 // (16 * k * n)))
    for c0 in range(0, freqs.size, chunk):
        f = freqs[c0:c0 + chunk]
        # X = v^T x for the segment x, with v = D (h * exp(-i 2 pi f t / sfreq))
        v = tapers[np.newaxis] * np.exp(-2j * np.pi * f[:, None, None] * t / sfreq)
        if detrend == "constant":
            v = v - v.mean(axis=-1, keepdims=True)
        elif detrend == "linear":
            v = v - (v @ basis) @ basis.T
        tr_a = np.sum(np.abs(v) ** 2, axis=(1, 2))  # (f,)

        def tr_aa(tau: int, v: np.ndarray = v) -> np.ndarray:
            vj, vk = v[..., tau:], v[..., :n - tau]
            c = np.einsum("fju,fku->fjk", np.conj(vj), vk)
            d = np.einsum("fju,fku->fjk", vj, vk)
            return 0.5 * np.sum(np.abs(c) ** 2 + np.abs(d) ** 2, axis=(1, 2))

        total = n_seg * tr_aa(0)
        for tau, cnt in zip(lags, counts):
            total = total + 2.0 * cnt * tr_aa(int(tau))
        out[c0:c0 + chunk] = (n_seg * tr_a) ** 2 / total
    return out


def _dof(settings: _Settings, starts_per_epoch: Sequence[np.ndarray], sfreq: float) -> np.ndarray:
    if settings.method == "ar":
        # Berk (1974): var = 2p/N P^2 inside the band, 4p/N at 0 Hz and Nyquist.
        per_seg = settings.n_per_seg / settings.order
        out = np.zeros(settings.freqs.shape)
        for starts in starts_per_epoch:
            if len(starts) == 0:
                continue
            # segments overlapping in time are correlated: use the boxcar-overlap rule
            rect = equivalent_dof(settings.tapers, starts) / 2.0  # effective segment count
            out += per_seg * rect
        edge = np.isclose(settings.freqs, 0.0) | np.isclose(settings.freqs, sfreq / 2.0)
        out[edge] /= 2.0
        return out
    out = np.zeros(settings.freqs.shape)
    for starts in starts_per_epoch:
        if len(starts) == 0:
            continue
        out += equivalent_dof(settings.tapers, starts, freqs=settings.freqs, sfreq=sfreq,
                              detrend=settings.detrend)
    return out


# --------------------------------------------------------------------------- estimation


def _segment_starts(n_times: int, settings: _Settings) -> np.ndarray:
    step = settings.n_per_seg - settings.n_overlap
    n_seg = 1 + (n_times - settings.n_per_seg) // step
    return np.arange(n_seg) * step


def _bad_mask(starts: np.ndarray, n_len: int, rec: Recording) -> np.ndarray:
    """True for segments [s, s + n_len) overlapping a BAD annotation."""
    bad = np.zeros(starts.shape, dtype=bool)
    t0 = starts / rec.sfreq
    t1 = (starts + n_len) / rec.sfreq
    for ann in rec.annotations:
        if not ann.is_bad:
            continue
        a0, a1 = ann.onset, ann.onset + ann.duration
        bad |= (t0 < a1) & (a0 < t1) if ann.duration > 0 else (t0 <= a0) & (a0 < t1)
    return bad


def _spectra_core(data: np.ndarray, starts: np.ndarray, settings: _Settings, sfreq: float, *,
                  cross: bool, max_bytes: float = 64e6) -> np.ndarray:
    """Average (cross-)spectra over segments ``starts`` for every leading item.

    ``data`` is (n_items, n_channels, n_times); returns (n_items, n_ch, n_f) real or
    (n_items, n_ch, n_ch, n_f) complex, one-sided, in units**2/Hz.
    """
    from scipy.fft import rfft
    from scipy.signal import detrend as sp_detrend

    n_items, n_ch, _ = data.shape
    n_f = settings.freqs.size
    if settings.method == "ar":
        return _ar_core(data, starts, settings, sfreq, cross=cross)
    tapers = settings.tapers
    k = tapers.shape[0]
    n = settings.n_per_seg
    scale = np.full(n_f, 2.0 / sfreq)
    f = settings.freqs
    scale[np.isclose(f, 0.0)] = 1.0 / sfreq
    if settings.n_fft % 2 == 0:
        scale[np.isclose(f, sfreq / 2.0)] = 1.0 / sfreq
    shape = (n_items, n_ch, n_ch, n_f) if cross else (n_items, n_ch, n_f)
    out = np.empty(shape, dtype=np.complex128 if cross else np.float64)
    per_item = n_ch * starts.size * k * (settings.n_fft // 2 + 1) * 16 * 3
    chunk = max(1, int(max_bytes // max(per_item, 1)))
    for c0 in range(0, n_items, chunk):
        block = data[c0:c0 + chunk]
        segs = sliding_window_view(block, n, axis=-1)[..., starts, :]  # (b, ch, seg, n)
        if settings.detrend == "constant":
            segs = segs - segs.mean(axis=-1, keepdims=True)
        elif settings.detrend == "linear":
            segs = sp_detrend(segs, axis=-1, type="linear")
        spec = rfft(segs[..., np.newaxis, :] * tapers, n=settings.n_fft, axis=-1)
        spec = spec[..., settings.fft_index]  # (b, ch, seg, K, f)
        if cross:
            acc = np.einsum("bisf,bjsf->bijf", spec.reshape(spec.shape[0], n_ch, -1, n_f),
                            np.conj(spec.reshape(spec.shape[0], n_ch, -1, n_f)))
            out[c0:c0 + chunk] = acc * (scale / (starts.size * k))
        else:
            power = spec.real ** 2 + spec.imag ** 2
            out[c0:c0 + chunk] = power.mean(axis=(2, 3)) * scale
    return out


def _ar_core(data: np.ndarray, starts: np.ndarray, settings: _Settings, sfreq: float, *,
             cross: bool) -> np.ndarray:
    n_items, n_ch, _ = data.shape
    n_f = settings.freqs.size
    n = settings.n_per_seg
    shape = (n_items, n_ch, n_ch, n_f) if cross else (n_items, n_ch, n_f)
    out = np.zeros(shape, dtype=np.complex128 if cross else np.float64)
    for b in range(n_items):
        for s in starts:
            seg = data[b, :, s:s + n]
            if settings.detrend == "constant":
                seg = seg - seg.mean(axis=-1, keepdims=True)
            elif settings.detrend == "linear":
                from scipy.signal import detrend as sp_detrend
                seg = sp_detrend(seg, axis=-1, type="linear")
            if cross:
                fit = fit_mar(seg, order=settings.order)
                out[b] += compute_mar_spectrum(fit.coefs, fit.noise_cov, freqs=settings.freqs,
                                               sfreq=sfreq)
            else:
                for c in range(n_ch):
                    fit = fit_mar(seg[c], order=settings.order)
                    out[b, c] += compute_mar_spectrum(fit.coefs, fit.noise_cov,
                                                      freqs=settings.freqs, sfreq=sfreq)[0, 0].real
    return out / starts.size


def _notch(rec: Recording, line_freq: float | None) -> Recording:
    from dataclasses import replace

    if line_freq is None:
        raise DataError("line_noise='notch' needs a line frequency: pass line_freq=... (Hz)")
    import mne

    harmonics = np.arange(line_freq, rec.sfreq / 2.0, line_freq)
    if harmonics.size == 0:
        return rec
    data = mne.filter.notch_filter(rec.data, rec.sfreq, harmonics, verbose="error")
    logger.info("Notch-filtered %s Hz", harmonics.tolist())
    return replace(rec, data=data, history=rec.history + (f"notch:{line_freq:g}",))


def _spectral(inst: Any, *, cross: bool, method: str, fmin, fmax, picks, n_per_seg,
              n_overlap, n_fft, window, bandwidth, low_bias, detrend, order, freqs,
              line_freq, line_noise, line_width, reject_by_annotation):
    import xarray as xr

    rec = as_recording(inst, picks)
    st = _settings(rec, method=method, fmin=fmin, fmax=fmax, n_per_seg=n_per_seg,
                   n_overlap=n_overlap, n_fft=n_fft, window=window, bandwidth=bandwidth,
                   low_bias=low_bias, detrend=detrend, order=order, freqs=freqs,
                   line_freq=line_freq, line_noise=line_noise, line_width=line_width,
                   n_times=rec.n_times)
    if line_noise == "notch":
        rec = _notch(rec, st.line_freq)
    starts = _segment_starts(rec.n_times, st)
    n_total = starts.size
    if reject_by_annotation and not rec.epoched and rec.annotations:
        bad = _bad_mask(starts, st.n_per_seg, rec)
        if bad.all():
            raise DataError(f"All {starts.size} segments overlap BAD annotations; nothing left "
                            "to estimate a spectrum from")
        if bad.any():
            logger.info("Leaving out %d of %d segment(s) overlapping BAD annotations",
                        int(bad.sum()), starts.size)
        starts = starts[~bad]
    spec = _spectra_core(rec.data, starts, st, rec.sfreq, cross=cross)
    spec = spec.mean(axis=0)  # average over epochs (each has the same segments)
    dof = _dof(st, [starts] * rec.n_epochs, rec.sfreq)
    u = signal_unit(rec.ch_types, rec.units)
    settings = st.as_dict() | {"fmin": fmin, "fmax": fmax, "picks": list(rec.ch_names),
                                "reject_by_annotation": reject_by_annotation,
                                "window": window if method == "welch" else None}
    attrs = provenance(rec.source, settings, sfreq=rec.sfreq, method=method,
                       units=f"{u}**2/Hz", n_segments=int(starts.size),
                       n_segments_total=int(n_total), n_epochs=rec.n_epochs,
                       n_tapers=int(st.tapers.shape[0]) if method != "ar" else None,
                       bandwidth=st.bandwidth, freq_resolution=rec.sfreq / st.n_fft
                       if method != "ar" else None, line_freq=st.line_freq,
                       history=";".join(rec.history))
    coords = {"freq": st.freqs, "dof": ("freq", dof)}
    if cross:
        coords |= {"channel_i": list(rec.ch_names), "channel_j": list(rec.ch_names)}
        da = xr.DataArray(spec, dims=("channel_i", "channel_j", "freq"), coords=coords,
                          attrs=attrs, name="csd")
    else:
        coords |= {"channel": list(rec.ch_names), "ch_type": ("channel", list(rec.ch_types))}
        da = xr.DataArray(spec, dims=("channel", "freq"), coords=coords, attrs=attrs, name="psd")
    da["freq"].attrs["units"] = "Hz"
    da["dof"].attrs["long_name"] = "equivalent chi-square degrees of freedom"
    logger.info("%s %s of %d channel(s): %d bins %g-%g Hz, %d segment(s) x %d epoch(s), "
                "dof %g", method, "CSD" if cross else "PSD", rec.n_channels, st.freqs.size,
                st.freqs[0], st.freqs[-1], starts.size, rec.n_epochs, float(np.median(dof)))
    return da


_SPEC_DOC = """
    Parameters
    ----------
    inst : Recording | mne.io.Raw | mne.Epochs | path-like | mne_bids.BIDSPath
        The data; anything but a :class:`~nmm_inference.features.Recording` is read
        with :func:`~nmm_inference.features.read_recording` defaults (volts expected).
    method : "welch" | "multitaper" | "ar"
        Welch's averaged periodogram, Thomson's multitaper (equal-weight Slepian tapers,
        per segment), or SPM's order-``order`` Bayesian autoregressive spectrum
        (``spm_mar`` + ``spm_mar_spectra``).
    fmin, fmax : float | None
        Frequency range in Hz. ``fmin=None`` starts at the first positive bin (1 Hz for
        ``"ar"``); ``fmax=None`` is the Nyquist frequency; ``fmax`` above Nyquist raises.
    picks : str | list | None
        Channels (see :func:`~nmm_inference.features.read_recording`).
    n_per_seg : int | None
        Segment length in samples (default 2 s, or the whole epoch if shorter); the
        frequency resolution is ``sfreq / n_fft``.
    n_overlap : int | None
        Overlap of successive segments in samples (default half a segment for Welch,
        none for multitaper and AR).
    n_fft : int | None
        FFT length (>= ``n_per_seg``; zero-padding interpolates, it adds no dof).
    window : str
        Welch window (any ``scipy.signal.get_window`` name), default ``"hann"``.
    bandwidth : float | None
        Multitaper full bandwidth ``2W`` in Hz (default ``8 sfreq / n_per_seg``, i.e.
        time-half-bandwidth 4 and 7 tapers).
    low_bias : bool
        Keep only Slepian tapers with spectral concentration above 0.9.
    detrend : "constant" | "linear" | None
        Detrending of each segment.
    order : int
        AR model order for ``method="ar"`` (SPM: 8).
    freqs : array | None
        Frequencies in Hz for ``method="ar"`` (default 1-Hz steps from ``fmin`` to
        ``fmax``, as SPM).
    line_freq : float | None
        Power-line frequency in Hz (default: from the recording).
    line_noise : "drop" | "keep" | "notch"
        ``"drop"`` leaves out bins within ``line_width`` of the line frequency and its
        harmonics (logged; listed in ``settings``), ``"notch"`` notch-filters the data
        first (MNE), ``"keep"`` does nothing.
    line_width : float | None
        Half-width in Hz of the bins dropped (default: half the multitaper bandwidth, the
        Hann main-lobe half-width ``2 sfreq / n_per_seg`` for Welch, 1 Hz for AR).
    reject_by_annotation : bool
        Leave out segments that overlap ``BAD`` annotations (logged); their removal is
        accounted for in ``dof``.
    verbose : bool | str | None
        Log level of the ``nmm_inference`` logger during the call.
"""


def compute_psd(inst: Any, *, method: str = "welch", fmin: float | None = None,
                fmax: float | None = None, picks: Any = None, n_per_seg: int | None = None,
                n_overlap: int | None = None, n_fft: int | None = None, window: str = "hann",
                bandwidth: float | None = None, low_bias: bool = True,
                detrend: str | None = "constant", order: int = 8,
                freqs: Sequence[float] | None = None, line_freq: float | None = None,
                line_noise: str = "drop", line_width: float | None = None,
                reject_by_annotation: bool = True, verbose: bool | str | None = None):
    """Power spectral density per channel, with the degrees of freedom of every bin.
    %(params)s
    Returns
    -------
    xarray.DataArray
        ``psd`` with dims (``channel``, ``freq``) in V**2/Hz (one-sided), coords ``freq``
        (Hz), ``dof`` (per ``freq``: equivalent chi-square dof, so that
        ``var(psd) = 2 psd**2 / dof``) and ``ch_type``; attrs ``sfreq``, ``method``,
        ``n_segments``, ``n_epochs``, ``source``, ``settings`` (JSON) and
        ``nmm_inference_version``. Epochs are averaged.

    Raises
    ------
    DataError
        ``fmax`` above Nyquist, recordings shorter than one segment, no segments left
        after leaving out ``BAD`` annotations, and the errors of ``read_recording``.

    Examples
    --------
    >>> import numpy as np
    >>> from nmm_inference.features import read_recording
    >>> x = np.random.default_rng(0).standard_normal((1, 5000)) * 1e-5
    >>> psd = compute_psd(read_recording(x, sfreq=250.0), fmax=40.0)
    >>> psd.dims, round(float(psd.dof[10]), 1)  # 19 half-overlapping Hann segments
    (('channel', 'freq'), 36.1)
    """
    with use_log_level(verbose):
        return _spectral(inst, cross=False, method=method, fmin=fmin, fmax=fmax, picks=picks,
                         n_per_seg=n_per_seg, n_overlap=n_overlap, n_fft=n_fft, window=window,
                         bandwidth=bandwidth, low_bias=low_bias, detrend=detrend, order=order,
                         freqs=freqs, line_freq=line_freq, line_noise=line_noise,
                         line_width=line_width, reject_by_annotation=reject_by_annotation)


def compute_csd(inst: Any, *, method: str = "welch", fmin: float | None = None,
                fmax: float | None = None, picks: Any = None, n_per_seg: int | None = None,
                n_overlap: int | None = None, n_fft: int | None = None, window: str = "hann",
                bandwidth: float | None = None, low_bias: bool = True,
                detrend: str | None = "constant", order: int = 8,
                freqs: Sequence[float] | None = None, line_freq: float | None = None,
                line_noise: str = "drop", line_width: float | None = None,
                reject_by_annotation: bool = True, verbose: bool | str | None = None):
    """Cross-spectral density matrix of all channel pairs, with degrees of freedom.
    %(params)s
    Returns
    -------
    xarray.DataArray
        Complex ``csd`` with dims (``channel_i``, ``channel_j``, ``freq``) in V**2/Hz,
        ``csd[i, j] = 2 <X_i conj(X_j)> / sfreq`` (Hermitian in i, j; SPM's order for
        ``method="ar"``: a multivariate AR model of all picked channels). Coord ``dof``:
        chi-square dof of the auto-spectra; the matrix is complex Wishart with
        ``dof / 2`` degrees of freedom. Attrs as :func:`compute_psd`.

    Raises
    ------
    DataError
        As :func:`compute_psd`.

    Examples
    --------
    >>> import numpy as np
    >>> from nmm_inference.features import read_recording
    >>> x = np.random.default_rng(0).standard_normal((2, 5000)) * 1e-5
    >>> csd = compute_csd(read_recording(x, sfreq=250.0), fmax=40.0)
    >>> csd.dims
    ('channel_i', 'channel_j', 'freq')
    """
    with use_log_level(verbose):
        return _spectral(inst, cross=True, method=method, fmin=fmin, fmax=fmax, picks=picks,
                         n_per_seg=n_per_seg, n_overlap=n_overlap, n_fft=n_fft, window=window,
                         bandwidth=bandwidth, low_bias=low_bias, detrend=detrend, order=order,
                         freqs=freqs, line_freq=line_freq, line_noise=line_noise,
                         line_width=line_width, reject_by_annotation=reject_by_annotation)


compute_psd.__doc__ = compute_psd.__doc__ % {"params": _SPEC_DOC}
compute_csd.__doc__ = compute_csd.__doc__ % {"params": _SPEC_DOC}


def read_spectrum(spectrum: Any, *, dof: float | np.ndarray, picks: Any = None,
                  units: str | None = None, fmin: float | None = None,
                  fmax: float | None = None):
    """Convert an MNE ``Spectrum``/``EpochsSpectrum`` to the package's PSD format.

    MNE spectra do not record how many segments and tapers were averaged, so the
    degrees of freedom must be given.

    Parameters
    ----------
    spectrum : mne.time_frequency.Spectrum | mne.time_frequency.EpochsSpectrum
        Power spectrum (an ``EpochsSpectrum`` is averaged over epochs).
    dof : float | ndarray, shape (n_freqs,)
        Equivalent chi-square dof of one (epoch's) spectrum per bin (e.g. ``2 * n_tapers``
        for a multitaper spectrum of one segment); multiplied by the number of epochs
        averaged.
    picks : str | list | None
        Channels (names or types); bad channels are left out.
    units : str | None
        Units of the underlying signal (as in ``read_recording``); the PSD is scaled by
        the square of the factor to volts. ``None``: volts, with the amplitude check.
    fmin, fmax : float | None
        Frequency range in Hz.

    Returns
    -------
    xarray.DataArray
        As :func:`compute_psd`.

    Raises
    ------
    DataError
        Non-finite or negative power, implausible amplitudes, unknown channels.
    """
    import xarray as xr

    from .io import MAX_PLAUSIBLE_SD, UNIT_FACTORS, _resolve_picks

    names = list(spectrum.ch_names)
    types = list(spectrum.get_channel_types())
    idx = _resolve_picks(picks, names, types, bads=list(spectrum.info["bads"]),
                         exclude_bads=True)
    data = np.asarray(spectrum.get_data(picks=idx), dtype=np.float64)
    freqs = np.asarray(spectrum.freqs, dtype=np.float64)
    n_epochs = 1
    if data.ndim == 3:
        n_epochs = data.shape[0]
        data = data.mean(axis=0)
    if data.ndim != 2:
        raise DataError(f"Expected a power spectrum (channels x freqs), got shape {data.shape}; "
                        "complex or per-taper spectra are not supported")
    if not np.all(np.isfinite(data)) or np.any(data < 0):
        raise DataError("The spectrum holds non-finite or negative power values")
    factor = 1.0
    if units is not None:
        check_option("units", units, tuple(UNIT_FACTORS) + ("au",))
        factor = 1.0 if units == "au" else UNIT_FACTORS[units]
    data = data * factor ** 2
    if units != "au":
        df = np.gradient(freqs) if freqs.size > 1 else np.ones(1)
        sd = np.sqrt(np.sum(data * df, axis=1))
        if np.median(sd) > MAX_PLAUSIBLE_SD:
            raise DataError(f"Implausible amplitude: median channel SD (from the spectrum) "
                            f"is {np.median(sd):.3g} V; expected below {MAX_PLAUSIBLE_SD:g} V. "
                            "Pass units='uV' if the signal was microvolts stored as volts")
    sel = np.ones(freqs.shape, dtype=bool)
    if fmin is not None:
        sel &= freqs >= fmin
    if fmax is not None:
        sel &= freqs <= fmax
    dof_arr = np.broadcast_to(np.asarray(dof, dtype=np.float64), freqs.shape) * n_epochs
    attrs = provenance(type(spectrum).__name__, {"dof": dof, "picks": [names[i] for i in idx],
                                                 "fmin": fmin, "fmax": fmax, "units": units},
                       sfreq=float(spectrum.info["sfreq"]), method=str(spectrum.method),
                       units=("au" if units == "au" else "V") + "**2/Hz", n_epochs=n_epochs)
    return xr.DataArray(data[:, sel], dims=("channel", "freq"),
                        coords={"channel": [names[i] for i in idx], "freq": freqs[sel],
                                "dof": ("freq", dof_arr[sel]),
                                "ch_type": ("channel", [types[i] for i in idx])},
                        attrs=attrs, name="psd")


# --------------------------------------------------------------------------- peaks


@dataclass(frozen=True)
class SpectralPeak:
    """A peak of a power spectrum above its aperiodic (1/f) fit.

    Attributes
    ----------
    freq : float
        Peak frequency in Hz.
    height_db : float
        Power at the peak over the aperiodic fit, in dB.
    fmin, fmax : float
        Band around the peak in Hz: where the power above the aperiodic fit falls to
        half its value at the peak (full width at half maximum of the periodic part), or
        at the valley towards a neighbouring peak if that comes first.
    """

    freq: float
    height_db: float
    fmin: float
    fmax: float


def _aperiodic_fit(freqs: np.ndarray, power: np.ndarray, *, exclude_db: float = 1.0,
                   n_iter: int = 5) -> np.ndarray:
    """log10 power of a robust straight-line fit in log-log coordinates."""
    lf, lp = np.log10(freqs), np.log10(power)
    use = np.ones(lf.shape, dtype=bool)
    for _ in range(n_iter):
        coef = np.polyfit(lf[use], lp[use], 1)
        resid_db = 10.0 * (lp - np.polyval(coef, lf))
        new = resid_db < exclude_db
        if new.sum() < 3 or np.array_equal(new, use):
            break
        use = new
    return np.polyval(coef, lf)


def find_spectral_peaks(psd: Any, *, fmin: float = 2.0, fmax: float = 40.0,
                        min_height_db: float = 3.0) -> list[SpectralPeak]:
    """Peaks of one power spectrum above a robust aperiodic (power-law) fit.

    A straight line is fitted to log10(PSD) against log10(f) between ``fmin`` and
    ``fmax``, iteratively leaving out bins more than 1 dB above it (the peaks); peaks of
    the residual of at least ``min_height_db`` are returned.

    Parameters
    ----------
    psd : xarray.DataArray
        A PSD with a single dim ``freq`` (select or average channels first, e.g.
        ``psd.mean("channel")``), in linear units.
    fmin, fmax : float
        Fit and search range in Hz.
    min_height_db : float
        Minimum peak height over the fit, in dB.

    Returns
    -------
    list of SpectralPeak
        Sorted by height, highest first (empty if there is none).

    Raises
    ------
    DataError
        A PSD with other dims, non-positive power, or fewer than 5 bins in range.
    """
    from scipy.signal import find_peaks

    if tuple(psd.dims) != ("freq",):
        raise DataError(f"find_spectral_peaks needs a PSD with the single dim 'freq', got dims "
                        f"{psd.dims}; select or average the other dims first")
    f = np.asarray(psd["freq"].values, dtype=np.float64)
    p = np.asarray(psd.values, dtype=np.float64)
    sel = (f >= fmin) & (f <= fmax) & (f > 0)
    if sel.sum() < 5:
        raise DataError(f"Fewer than 5 frequency bins between {fmin} and {fmax} Hz")
    f, p = f[sel], p[sel]
    if np.any(p <= 0) or not np.all(np.isfinite(p)):
        raise DataError("find_spectral_peaks needs positive, finite power in linear units")
    resid_db = 10.0 * (np.log10(p) - _aperiodic_fit(f, p))
    idx, _ = find_peaks(resid_db, height=min_height_db, prominence=min_height_db / 2.0)
    # band edges: where the periodic excess power P/fit - 1 falls to half its peak value
    excess = 10.0 ** (resid_db / 10.0) - 1.0
    peaks = []
    for i in idx:
        half = excess[i] / 2.0
        lo = i
        while lo > 0 and half < excess[lo - 1] <= excess[lo]:
            lo -= 1
        hi = i
        while hi < f.size - 1 and half < excess[hi + 1] <= excess[hi]:
            hi += 1
        # interpolate the half-height crossing; at a valley (or the range end) stop there
        f_lo = (float(np.interp(half, [excess[lo - 1], excess[lo]], [f[lo - 1], f[lo]]))
                if lo > 0 and excess[lo - 1] <= half else float(f[lo]))
        f_hi = (float(np.interp(half, [excess[hi + 1], excess[hi]], [f[hi + 1], f[hi]]))
                if hi < f.size - 1 and excess[hi + 1] <= half else float(f[hi]))
        peaks.append(SpectralPeak(float(f[i]), float(resid_db[i]), f_lo, f_hi))
    return sorted(peaks, key=lambda pk: -pk.height_db)
