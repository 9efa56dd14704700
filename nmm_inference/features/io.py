"""Loading and validating recordings: the one place where MNE objects come in.

Every feature function of :mod:`nmm_inference.features` works on a :class:`Recording`, a
small immutable container of samples in volts with channel names and types, sampling
frequency and annotations. :func:`read_recording` builds one from a file path (anything
``mne.io.read_raw`` reads, plus plain ASCII columns), an MNE ``Raw`` or ``Epochs``, a
``mne_bids.BIDSPath``, another :class:`Recording` or a plain array with ``sfreq``;
:func:`extract_label_time_courses` builds one from source estimates, one "channel" per
cortical label. Channel selection (``picks``, bad channels), re-referencing, bipolar
derivations, units and the checks on bad input (NaN, flat channels, a likely
microvolts-stored-as-volts mistake) all happen here, once.

MNE is imported inside the functions that need it, never at module import.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import DataError
from ._common import VOLTAGE_TYPES, check_finite, check_option, logger, use_log_level

__all__ = ["Annotation", "Recording", "read_recording", "extract_label_time_courses",
           "UNIT_FACTORS"]

#: Multipliers from the supported ``units`` to volts. ``"au"`` (arbitrary units) is kept
#: unscaled and skips the amplitude check.
UNIT_FACTORS = {"V": 1.0, "mV": 1e-3, "uV": 1e-6, "µV": 1e-6, "μV": 1e-6, "nV": 1e-9}
_UNITS_ALLOWED = tuple(UNIT_FACTORS) + ("au",)

#: Channel types picked when ``picks=None`` (MNE's data channels plus label time courses).
_DEFAULT_PICK_TYPES = frozenset({"eeg", "ecog", "seeg", "dbs", "mag", "grad", "csd", "source"})

#: A voltage channel whose median SD exceeds this (in V) is taken as mis-scaled (µV as V).
MAX_PLAUSIBLE_SD = 2e-3
#: Below this median SD (in V) a warning is logged (double scaling?).
MIN_PLAUSIBLE_SD = 1e-8
#: A channel whose SD is below this (in V; for "au" exactly 0) is flat.
FLAT_SD = 1e-13

_BIDS_TYPES = {"EEG": "eeg", "ECOG": "ecog", "SEEG": "seeg", "DBS": "dbs", "EOG": "eog",
               "VEOG": "eog", "HEOG": "eog", "ECG": "ecg", "EMG": "emg", "MISC": "misc",
               "TRIG": "stim", "REF": "misc", "MEGMAG": "mag", "MEGGRADAXIAL": "grad",
               "MEGGRADPLANAR": "grad", "RESP": "resp", "TEMP": "temperature",
               "GSR": "gsr", "SYSCLOCK": "syst", "AUDIO": "misc", "PD": "misc"}


@dataclass(frozen=True)
class Annotation:
    """One annotated segment of a recording.

    Attributes
    ----------
    onset : float
        Start in s, relative to the first sample of the recording.
    duration : float
        Length in s (0 for an instantaneous event).
    description : str
        Label, e.g. ``"seizure"``; labels starting with ``"bad"`` (any case) mark
        segments to leave out, as in MNE.
    """

    onset: float
    duration: float
    description: str

    @property
    def is_bad(self) -> bool:
        """Whether the description marks a bad segment (starts with ``BAD``, any case)."""
        return self.description.lower().startswith("bad")


@dataclass(frozen=True, eq=False)
class Recording:
    """Samples of one recording, ready for feature extraction.

    Attributes
    ----------
    data : ndarray, shape (n_epochs, n_channels, n_times)
        Samples, in volts when ``units == "V"`` (in arbitrary units when ``"au"``).
        A continuous recording has ``n_epochs == 1`` and ``epoched == False``.
    sfreq : float
        Sampling frequency in Hz.
    ch_names : tuple of str
        Channel names (bipolar derivations are named ``"anode-cathode"``; label time
        courses by their label name).
    ch_types : tuple of str
        MNE channel types (``"eeg"``, ``"ecog"``, ``"dbs"``, ``"misc"``, ...; ``"source"``
        for label time courses).
    annotations : tuple of Annotation
        Annotated segments; onsets in s from the first sample.
    units : str
        ``"V"`` or ``"au"``.
    source : str
        Where the samples came from (file path or object type).
    line_freq : float or None
        Power-line frequency in Hz, when known.
    epoched : bool
        True for epoched data (each epoch a separate segment of time).
    history : tuple of str
        Processing steps applied when reading (scaling, reference, ...).
    """

    data: np.ndarray
    sfreq: float
    ch_names: tuple[str, ...]
    ch_types: tuple[str, ...]
    annotations: tuple[Annotation, ...] = ()
    units: str = "V"
    source: str = "array"
    line_freq: float | None = None
    epoched: bool = False
    history: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.data.ndim != 3:
            raise DataError(f"Recording.data must be 3-D (n_epochs, n_channels, n_times), "
                            f"got shape {self.data.shape}")
        if len(self.ch_names) != self.data.shape[1] or len(self.ch_types) != self.data.shape[1]:
            raise DataError(f"{len(self.ch_names)} channel names and {len(self.ch_types)} types "
                            f"for {self.data.shape[1]} channels; expected one of each per channel")

    @property
    def n_epochs(self) -> int:
        """Number of epochs (1 for a continuous recording)."""
        return self.data.shape[0]

    @property
    def n_channels(self) -> int:
        """Number of channels."""
        return self.data.shape[1]

    @property
    def n_times(self) -> int:
        """Number of samples per epoch."""
        return self.data.shape[2]

    @property
    def times(self) -> np.ndarray:
        """Sample times in s from the first sample, shape (n_times,)."""
        return np.arange(self.n_times) / self.sfreq

    @property
    def duration(self) -> float:
        """Length of one epoch (or of the recording) in s."""
        return self.n_times / self.sfreq

    def pick(self, picks: Any) -> "Recording":
        """Return a new Recording with the channels selected by ``picks``.

        Parameters
        ----------
        picks : str | list of str | list of int | None
            Channel names, indices, a channel type (``"eeg"``, ``"dbs"``, ...) or
            ``"data"``/``"all"``; ``None`` keeps all channels.

        Returns
        -------
        Recording
            The selected channels (bad channels were removed when reading).
        """
        if picks is None:
            return self
        idx = _resolve_picks(picks, self.ch_names, self.ch_types, bads=(), exclude_bads=False)
        return replace(self, data=self.data[:, idx], ch_names=tuple(self.ch_names[i] for i in idx),
                       ch_types=tuple(self.ch_types[i] for i in idx))

    def to_xarray(self):
        """Samples as an ``xarray.DataArray`` with dims (``channel``, ``time``).

        Returns
        -------
        xarray.DataArray
            Dims (``channel``, ``time``), or (``epoch``, ``channel``, ``time``) for epoched
            data; ``time`` in s; attrs ``sfreq``, ``units``, ``source``.
        """
        import xarray as xr

        coords = {"channel": list(self.ch_names), "time": self.times,
                  "ch_type": ("channel", list(self.ch_types))}
        attrs = {"sfreq": self.sfreq, "units": self.units, "source": self.source}
        if self.epoched:
            return xr.DataArray(self.data, dims=("epoch", "channel", "time"), coords=coords,
                                attrs=attrs, name="signal")
        return xr.DataArray(self.data[0], dims=("channel", "time"), coords=coords, attrs=attrs,
                            name="signal")


# --------------------------------------------------------------------------- loading


@dataclass
class _Loaded:
    data: np.ndarray  # (n_epochs, n_channels, n_times), float64
    sfreq: float
    ch_names: list[str]
    ch_types: list[str]
    bads: list[str]
    annotations: list[Annotation]
    source: str
    line_freq: float | None
    epoched: bool
    history: list[str]


def _raw_annotations(raw) -> list[Annotation]:
    ann = raw.annotations
    if len(ann) == 0:
        return []
    # With orig_time set, onsets count from the measurement date; raw.first_time is the
    # time of the first sample on that clock. Without it they count from the first sample.
    shift = raw.first_time if ann.orig_time is not None else 0.0
    return [Annotation(float(o) - shift, float(d), str(s))
            for o, d, s in zip(ann.onset, ann.duration, ann.description)]


def _from_raw(raw, source: str) -> _Loaded:
    data = raw.get_data()[np.newaxis].astype(np.float64, copy=False)
    return _Loaded(data, float(raw.info["sfreq"]), list(raw.ch_names),
                   list(raw.get_channel_types()), list(raw.info["bads"]), _raw_annotations(raw),
                   source, raw.info.get("line_freq"), False, [])


def _bids_sidecars(path: Path, loaded: _Loaded) -> None:
    """Apply BIDS ``_channels.tsv`` types/status and the JSON ``PowerLineFrequency``."""
    stem = path.name[: -len("".join(path.suffixes))] if path.suffixes else path.name
    if "_" not in stem:
        return
    prefix = stem.rsplit("_", 1)[0]
    chan_file = path.with_name(prefix + "_channels.tsv")
    if chan_file.is_file():
        with open(chan_file, encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        by_name = {r.get("name"): r for r in rows}
        changed = []
        for i, name in enumerate(loaded.ch_names):
            row = by_name.get(name)
            if row is None:
                continue
            btype = (row.get("type") or "").upper()
            new_type = _BIDS_TYPES.get(btype, "misc")
            if new_type != loaded.ch_types[i]:
                loaded.ch_types[i] = new_type
                changed.append(f"{name}:{new_type}")
            if (row.get("status") or "").lower() == "bad" and name not in loaded.bads:
                loaded.bads.append(name)
        logger.info("Applied BIDS sidecar %s (channel types %s; bads %s)", chan_file.name,
                    ", ".join(changed) or "unchanged", loaded.bads or "none")
        loaded.history.append(f"bids_channels:{chan_file.name}")
    json_file = path.with_name(stem + ".json")
    if loaded.line_freq is None and json_file.is_file():
        try:
            meta = json.loads(json_file.read_text(encoding="utf-8-sig"))
        except ValueError:
            meta = {}
        lf = meta.get("PowerLineFrequency")
        if isinstance(lf, (int, float)) and lf > 0:
            loaded.line_freq = float(lf)
            logger.info("Power-line frequency %g Hz from %s", lf, json_file.name)


def _load(source: Any, *, sfreq: float | None, ch_names: Sequence[str] | None,
          ch_types: str | Sequence[str] | None, bids_sidecars: bool) -> _Loaded:
    kind = type(source).__module__.split(".")[0]
    if isinstance(source, Recording):
        return _Loaded(np.asarray(source.data, dtype=np.float64), source.sfreq,
                       list(source.ch_names), list(source.ch_types), [],
                       list(source.annotations), source.source, source.line_freq,
                       source.epoched, list(source.history))
    if kind in ("mne", "mne_bids"):
        if sfreq is not None or ch_names is not None or ch_types is not None:
            raise ValueError("sfreq, ch_names and ch_types are only used for plain arrays; MNE "
                             "objects and files carry their own")
        import mne

        if isinstance(source, mne.io.BaseRaw):
            raw = source.copy().load_data() if not source.preload else source
            fname = raw.filenames[0] if raw.filenames and raw.filenames[0] else None
            return _from_raw(raw, str(fname) if fname else type(source).__name__)
        if isinstance(source, mne.BaseEpochs):
            data = source.get_data().astype(np.float64, copy=False)
            return _Loaded(data, float(source.info["sfreq"]), list(source.ch_names),
                           list(source.get_channel_types()), list(source.info["bads"]), [],
                           type(source).__name__, source.info.get("line_freq"), True, [])
        if type(source).__name__ == "BIDSPath":
            import mne_bids

            raw = mne_bids.read_raw_bids(source, verbose="error")
            raw.load_data()
            return _from_raw(raw, str(source.fpath))
        if isinstance(source, (mne.time_frequency.Spectrum, mne.time_frequency.EpochsSpectrum)):
            raise DataError("read_recording needs time series, got an MNE Spectrum; convert it "
                            "with nmm_inference.features.read_spectrum(spectrum, dof=...)")
        if isinstance(source, (mne.SourceEstimate, mne.VolSourceEstimate,
                               mne.MixedSourceEstimate, mne.VectorSourceEstimate)):
            raise DataError("read_recording needs sensor time series, got a source estimate; "
                            "use extract_label_time_courses(stc, labels, src)")
        raise DataError(f"Cannot read {type(source).__name__}; expected Raw, Epochs, a BIDSPath, "
                        "a file path, a Recording or an array with sfreq")
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise DataError(f"No such recording file: {path}")
        if path.suffix.lower() in (".txt", ".csv") and sfreq is not None:
            arr = np.loadtxt(path, delimiter="," if path.suffix.lower() == ".csv" else None,
                             ndmin=2)
            loaded = _from_array(arr.T, sfreq=sfreq, ch_names=ch_names, ch_types=ch_types)
            loaded.source = str(path)
            return loaded
        if sfreq is not None or ch_names is not None or ch_types is not None:
            raise ValueError("sfreq, ch_names and ch_types are only used for plain arrays and "
                             "ASCII files; MNE-readable files carry their own")
        import mne

        try:
            raw = mne.io.read_raw(path, preload=True, verbose="error")
        except Exception as err:  # readers fail in many ways (ValueError, assertions, ...)
            raise DataError(
                f"mne.io.read_raw cannot read {path.name} ({type(err).__name__}: {err}). For "
                "ASCII files with one column per channel (e.g. the Bonn database) pass "
                "sfreq=... and units=..."
            ) from err
        loaded = _from_raw(raw, str(path))
        if bids_sidecars:
            _bids_sidecars(path, loaded)
        return loaded
    if hasattr(source, "__array__") or isinstance(source, (list, tuple)):
        return _from_array(source, sfreq=sfreq, ch_names=ch_names, ch_types=ch_types)
    raise DataError(f"Cannot read {type(source).__name__}; expected a file path, an MNE Raw or "
                    "Epochs, a BIDSPath, a Recording or an array with sfreq")


def _from_array(source: Any, *, sfreq: float | None, ch_names: Sequence[str] | None,
                ch_types: str | Sequence[str] | None) -> _Loaded:
    arr = np.asarray(source)
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise DataError(f"Expected a real numeric array, got dtype {arr.dtype}")
    if sfreq is None:
        raise DataError("A plain array needs its sampling frequency: pass sfreq=... (Hz)")
    sfreq = float(sfreq)
    if not np.isfinite(sfreq) or sfreq <= 0:
        raise DataError(f"sfreq must be a finite frequency > 0 Hz, got {sfreq}")
    if arr.ndim == 1:
        arr = arr[np.newaxis]
    if arr.ndim == 2:
        data, epoched = arr[np.newaxis], False
    elif arr.ndim == 3:
        data, epoched = arr, True
    else:
        raise DataError(f"Expected an array of shape (n_times,), (n_channels, n_times) or "
                        f"(n_epochs, n_channels, n_times), got shape {arr.shape}")
    n_ch = data.shape[1]
    names = list(ch_names) if ch_names is not None else [f"ch{i}" for i in range(n_ch)]
    if len(names) != n_ch or len(set(names)) != n_ch:
        raise DataError(f"ch_names must hold {n_ch} distinct names, got {names!r}")
    if ch_types is None:
        types = ["eeg"] * n_ch
    elif isinstance(ch_types, str):
        types = [ch_types] * n_ch
    else:
        types = list(ch_types)
        if len(types) != n_ch:
            raise DataError(f"ch_types must be one type or {n_ch} types, got {len(types)}")
    return _Loaded(data.astype(np.float64), sfreq, names, types, [], [], "array", None,
                   epoched, [])


# --------------------------------------------------------------------------- picks


def _resolve_picks(picks: Any, ch_names: Sequence[str], ch_types: Sequence[str], *,
                   bads: Sequence[str], exclude_bads: bool,
                   default_types: frozenset = _DEFAULT_PICK_TYPES) -> list[int]:
    names = list(ch_names)
    types_present = set(ch_types)
    if picks is None:
        idx = [i for i, t in enumerate(ch_types) if t in default_types]
        if not idx:
            raise DataError(f"No data channels (types {sorted(default_types)}) among channel "
                            f"types {sorted(types_present)}; pass picks=... explicitly")
        explicit = False
    else:
        if isinstance(picks, (str, int, np.integer)):
            picks = [picks]
        picks = list(picks)
        idx, explicit = [], True
        unknown = []
        for p in picks:
            if isinstance(p, (int, np.integer)):
                if not -len(names) <= int(p) < len(names):
                    raise DataError(f"Channel index {p} out of range for {len(names)} channels")
                idx.append(int(p) % len(names))
            elif isinstance(p, str) and p in names:
                idx.append(names.index(p))
            elif isinstance(p, str) and (p in ("all", "data") or p in types_present):
                sel = ([i for i in range(len(names))] if p == "all" else
                       [i for i, t in enumerate(ch_types) if t in _DEFAULT_PICK_TYPES]
                       if p == "data" else [i for i, t in enumerate(ch_types) if t == p])
                idx.extend(sel)
                explicit = False
            else:
                unknown.append(p)
        if unknown:
            raise DataError(f"Unknown channel name(s) or type(s) in picks: {unknown!r}; expected "
                            f"names from {names!r} or types from {sorted(types_present)}")
        idx = list(dict.fromkeys(idx))
    if exclude_bads:
        dropped = [names[i] for i in idx if names[i] in bads]
        if dropped:
            log = logger.warning if explicit else logger.info
            log("Leaving out bad channel(s) %s (pass exclude_bads=False to keep them)", dropped)
        idx = [i for i in idx if names[i] not in bads]
    if not idx:
        raise DataError(f"No channels left after picks={picks!r} (bad channels: {list(bads)})")
    return idx


# --------------------------------------------------------------------------- reader


def read_recording(source: Any, *, sfreq: float | None = None,
                   ch_names: Sequence[str] | None = None,
                   ch_types: str | Sequence[str] | None = None, picks: Any = None,
                   exclude_bads: bool = True, tmin: float | None = None,
                   tmax: float | None = None, units: str | None = None,
                   scale: float | None = None, reference: str | Sequence[str] | None = None,
                   bipolar: Sequence[tuple[str, str]] | None = None,
                   line_freq: float | None = None, on_flat: str = "raise",
                   bids_sidecars: bool = True, verbose: bool | str | None = None) -> Recording:
    """Read and validate a recording for feature extraction.

    Parameters
    ----------
    source : path-like | mne.io.Raw | mne.Epochs | mne_bids.BIDSPath | Recording | array-like
        A file that ``mne.io.read_raw`` reads (FIF, EDF/BDF, BrainVision, EEGLAB, ...), a
        one-column-per-channel ASCII ``.txt``/``.csv`` file (then ``sfreq`` is required),
        an MNE ``Raw`` or ``Epochs``, a BIDS path (read with ``mne_bids.read_raw_bids``),
        a :class:`Recording`, or an array of shape (n_times,), (n_channels, n_times) or
        (n_epochs, n_channels, n_times).
    sfreq : float | None
        Sampling frequency in Hz; required for arrays and ASCII files, refused otherwise.
    ch_names : list of str | None
        Channel names for arrays (default ``ch0, ch1, ...``).
    ch_types : str | list of str | None
        MNE channel types for arrays (default ``"eeg"``).
    picks : str | list of str | list of int | None
        Channels to keep: names, indices, a type (``"eeg"``, ``"ecog"``, ``"dbs"``,
        ``"seeg"``, ``"misc"``, ...), ``"data"`` or ``"all"``. ``None`` keeps the data
        channels (EEG, ECoG, sEEG, DBS, MEG) or, with ``bipolar``, only the bipolar
        derivations. Unknown names raise :class:`~nmm_inference.errors.DataError`.
    exclude_bads : bool
        Leave out channels marked bad (``info['bads']``, BIDS ``status``), with a log
        message; a bad channel named in ``picks`` is also left out (logged as a warning).
    tmin, tmax : float | None
        Crop to this time range in s from the first sample (of each epoch).
    units : str | None
        Units of the numbers as they come from ``source``: ``"V"``, ``"mV"``, ``"uV"``
        (or ``"µV"``), ``"nV"``, or ``"au"`` (arbitrary units: kept as they are, amplitude
        check skipped). They are converted to volts. ``None`` means volts (MNE's
        convention) and checks the amplitude: a median channel SD above 2 mV raises
        :class:`~nmm_inference.errors.DataError` (microvolts stored as volts, as in some
        BrainVision exports, or integer file units as in the Bonn database).
    scale : float | None
        Instead of ``units``: multiply the samples by this factor to get volts.
    reference : "average" | str | list of str | None
        Re-reference the picked monopolar voltage channels to their average or to the
        mean of the named channels (which are then left out of the output).
    bipolar : list of (str, str) | None
        Bipolar derivations ``(anode, cathode)`` (e.g. adjacent LFP/iEEG contacts), named
        ``"anode-cathode"``; a derivation with a bad contact is bad.
    line_freq : float | None
        Power-line frequency in Hz; default from the file (``info['line_freq']`` or the
        BIDS ``PowerLineFrequency``).
    on_flat : "raise" | "drop"
        What to do with flat channels (SD below 1e-13 V; exactly constant for ``"au"``):
        raise :class:`~nmm_inference.errors.DataError`, or leave them out with a logged
        warning.
    bids_sidecars : bool
        For a file path, apply a BIDS ``*_channels.tsv`` (channel types, bad status) and
        ``PowerLineFrequency`` found beside the file.
    verbose : bool | str | None
        Log level of the ``nmm_inference`` logger during the call.

    Returns
    -------
    Recording
        The selected channels in volts (or arbitrary units), with annotations.

    Raises
    ------
    DataError
        NaN or infinite samples, flat channels (``on_flat="raise"``), unknown channel
        names, implausible amplitudes for the stated units, unreadable files.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> rec = read_recording(20 * rng.standard_normal((2, 1000)), sfreq=250.0, units="uV")
    >>> rec.n_channels, rec.sfreq, rec.units
    (2, 250.0, 'V')
    """
    with use_log_level(verbose):
        check_option("on_flat", on_flat, ("raise", "drop"))
        if units is not None and scale is not None:
            raise ValueError("Pass either units or scale, not both")
        if units is not None:
            check_option("units", units, _UNITS_ALLOWED)
        loaded = _load(source, sfreq=sfreq, ch_names=ch_names, ch_types=ch_types,
                       bids_sidecars=bids_sidecars)
        if line_freq is not None:
            loaded.line_freq = float(line_freq)
        data, sf = loaded.data, loaded.sfreq
        names, types, bads = loaded.ch_names, loaded.ch_types, loaded.bads
        history = loaded.history
        annotations = loaded.annotations

        # crop
        if tmin is not None or tmax is not None:
            t0 = 0.0 if tmin is None else float(tmin)
            t1 = data.shape[-1] / sf if tmax is None else float(tmax)
            i0, i1 = int(round(t0 * sf)), int(round(t1 * sf))
            if not 0 <= i0 < i1 <= data.shape[-1]:
                raise DataError(f"tmin={tmin}, tmax={tmax} s outside the recording "
                                f"(0 to {data.shape[-1] / sf:g} s)")
            data = data[..., i0:i1]
            t_start = i0 / sf
            annotations = [Annotation(a.onset - t_start, a.duration, a.description)
                           for a in annotations
                           if a.onset + a.duration > t_start and a.onset < i1 / sf]
            history.append(f"crop:{i0 / sf:g}-{i1 / sf:g}s")

        # re-reference (monopolar voltage channels)
        ref_names: list[str] = []
        if reference is not None:
            if reference == "average":
                pre = _resolve_picks(picks, names, types, bads=bads, exclude_bads=True)
                use = [i for i in pre if types[i] in VOLTAGE_TYPES]
                if len(use) < 2:
                    raise DataError("An average reference needs at least 2 good voltage "
                                    f"channels among the picks, got {len(use)}")
            else:
                ref_names = [reference] if isinstance(reference, str) else list(reference)
                missing = [r for r in ref_names if r not in names]
                if missing:
                    raise DataError(f"Unknown reference channel(s) {missing!r}; expected names "
                                    f"from {names!r}")
                badref = [r for r in ref_names if r in bads]
                if badref:
                    raise DataError(f"Reference channel(s) {badref} are marked bad")
                use = [names.index(r) for r in ref_names]
            ref = data[:, use].mean(axis=1, keepdims=True)
            volt = [i for i, t in enumerate(types) if t in VOLTAGE_TYPES]
            data = data.copy()
            data[:, volt] -= ref
            history.append(f"reference:{reference}")
            logger.info("Re-referenced %d voltage channels to %s", len(volt), reference)

        # bipolar derivations
        if bipolar is not None:
            new_data, new_names, new_types = [], [], []
            for pair in bipolar:
                if len(pair) != 2:
                    raise DataError(f"bipolar pairs must be (anode, cathode), got {pair!r}")
                an, ca = pair
                missing = [c for c in (an, ca) if c not in names]
                if missing:
                    raise DataError(f"Unknown channel(s) {missing!r} in bipolar pair {pair!r}; "
                                    f"expected names from {names!r}")
                ia, ic = names.index(an), names.index(ca)
                new_data.append(data[:, ia] - data[:, ic])
                new_names.append(f"{an}-{ca}")
                new_types.append(types[ia])
                if an in bads or ca in bads:
                    bads = bads + [f"{an}-{ca}"]
            data = np.concatenate([data, np.stack(new_data, axis=1)], axis=1)
            names = names + new_names
            types = types + new_types
            history.append("bipolar:" + ",".join(new_names))
            if picks is None:
                picks = new_names

        idx = _resolve_picks(picks, names, types, bads=bads, exclude_bads=exclude_bads)
        if ref_names:
            dropped = [names[i] for i in idx if names[i] in ref_names]
            if dropped:
                logger.info("Leaving out reference channel(s) %s (zero after re-referencing)",
                            dropped)
            idx = [i for i in idx if names[i] not in ref_names]
            if not idx:
                raise DataError("No channels left besides the reference channel(s)")
        data = data[:, idx]
        names = [names[i] for i in idx]
        types = [types[i] for i in idx]

        # units
        out_units = "V"
        if scale is not None:
            scale = float(scale)
            if not np.isfinite(scale) or scale == 0:
                raise ValueError(f"scale must be a finite non-zero factor, got {scale}")
            data = data * scale
            history.append(f"scale:{scale:g}")
        elif units == "au":
            out_units = "au"
        elif units is not None and units != "V":
            data = data * UNIT_FACTORS[units]
            history.append(f"units:{units}->V")

        check_finite(data, tuple(names))
        if data.shape[-1] < 2:
            raise DataError(f"The recording has {data.shape[-1]} sample(s) per channel; expected "
                            "at least 2")
        centred = data - data.mean(axis=-1, keepdims=True)
        sd = np.sqrt((centred ** 2).mean(axis=(0, 2)))
        flat_tol = FLAT_SD if out_units == "V" else 0.0
        flat = [i for i in range(len(names)) if sd[i] <= flat_tol]
        if flat:
            flat_names = [names[i] for i in flat]
            if on_flat == "raise" or len(flat) == len(names):
                raise DataError(f"Flat channel(s) {flat_names} (SD <= {flat_tol:g} {out_units}); "
                                "expected varying signals. Mark them bad, leave them out with "
                                "picks, or pass on_flat='drop'")
            logger.warning("Leaving out flat channel(s) %s", flat_names)
            keep = [i for i in range(len(names)) if i not in flat]
            data, sd = data[:, keep], sd[keep]
            names = [names[i] for i in keep]
            types = [types[i] for i in keep]
        if out_units == "V":
            volt = [i for i, t in enumerate(types) if t in VOLTAGE_TYPES]
            if volt:
                med = float(np.median(sd[volt]))
                if med > MAX_PLAUSIBLE_SD:
                    hint = (" Its numbers look like microvolts stored as volts: pass "
                            "units='uV' (or scale=1e-6)." if med < 1e4 else
                            " Pass units=... or scale=... to convert to volts.")
                    raise DataError(
                        f"Implausible amplitude: median channel SD is {med:.3g} V over "
                        f"{len(volt)} voltage channel(s); expected below "
                        f"{MAX_PLAUSIBLE_SD:g} V for EEG/ECoG/LFP.{hint} Use units='au' for "
                        "data in arbitrary units.")
                if med < MIN_PLAUSIBLE_SD:
                    logger.warning("Median channel SD is only %.3g V; check the units (scaled "
                                   "twice?)", med)
        rec = Recording(np.ascontiguousarray(data), sf, tuple(names), tuple(types),
                        tuple(annotations), out_units, loaded.source, loaded.line_freq,
                        loaded.epoched, tuple(history))
        logger.info("Read %d channel(s) x %d sample(s) at %g Hz from %s", rec.n_channels,
                    rec.n_times, rec.sfreq, rec.source)
        return rec


def as_recording(inst: Any, picks: Any = None) -> Recording:
    """Return ``inst`` as a :class:`Recording` (reading it with defaults if needed)."""
    if isinstance(inst, Recording):
        return inst.pick(picks)
    if isinstance(inst, np.ndarray) or isinstance(inst, (list, tuple)):
        raise DataError("A plain array needs its sampling frequency and units: wrap it with "
                        "read_recording(data, sfreq=..., units=...) first")
    return read_recording(inst, picks=picks)


def extract_label_time_courses(stcs: Any, labels: Any, src: Any, *, mode: str = "mean_flip",
                               units: str = "au", allow_empty: bool = False,
                               verbose: bool | str | None = None) -> Recording:
    """Label time courses from MNE source estimates, one channel per cortical label.

    Wraps :func:`mne.extract_label_time_course`, so that each cortical source can be
    modelled like a channel.

    Parameters
    ----------
    stcs : mne.SourceEstimate | list of mne.SourceEstimate
        Source estimate(s); a list is treated as epochs (same length each).
    labels : list of mne.Label
        Cortical labels; their names become the channel names.
    src : mne.SourceSpaces
        The source space the estimates live on.
    mode : str
        Summary over the vertices of a label (``"mean_flip"``, ``"mean"``, ``"pca_flip"``,
        ``"max"``, ...; see MNE).
    units : str
        Units of the estimates (``"au"``: current density or dSPM values, not checked as
        voltages; otherwise as in :func:`read_recording`).
    allow_empty : bool
        Passed to MNE: allow labels without vertices in the source space.
    verbose : bool | str | None
        Log level of the ``nmm_inference`` logger during the call.

    Returns
    -------
    Recording
        Channels of type ``"source"`` named after the labels.

    Raises
    ------
    DataError
        Non-finite or flat label time courses, estimates of unequal length.
    """
    with use_log_level(verbose):
        import mne

        single = not isinstance(stcs, (list, tuple))
        stc_list = [stcs] if single else list(stcs)
        if not stc_list:
            raise DataError("No source estimates given")
        tc = mne.extract_label_time_course(stc_list, labels, src, mode=mode,
                                           allow_empty=allow_empty, verbose="error")
        lengths = {np.shape(t)[-1] for t in tc}
        if len(lengths) != 1:
            raise DataError(f"Source estimates of unequal length {sorted(lengths)}; expected "
                            "equal lengths to treat them as epochs")
        data = np.stack([np.asarray(t, dtype=np.float64) for t in tc])
        names = [lab.name for lab in labels]
        sfreq = 1.0 / float(stc_list[0].tstep)
        arr = data[0] if single else data
        rec = read_recording(arr, sfreq=sfreq, ch_names=names, ch_types="source", units=units)
        return replace(rec, source=f"label_time_courses(mode={mode})",
                       history=rec.history + (f"labels:{mode}",))
