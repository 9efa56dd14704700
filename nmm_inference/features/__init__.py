"""The MNE boundary: from recordings to data features.

Recordings come in through :func:`read_recording` (files, MNE ``Raw``/``Epochs``, BIDS
paths, arrays) or :func:`extract_label_time_courses` (source estimates); features go
out as xarray objects with named dims (``channel``, ``freq``, ``time``, ``window``),
their degrees of freedom and provenance attributes.

Importing this subpackage imports numpy only; MNE, SciPy and xarray are imported when a
function needs them.
"""

from .envelopes import DEFAULT_BANDS, bands_from_peaks, compute_band_envelopes
from .io import Annotation, Recording, extract_label_time_courses, read_recording
from .mar import MarFit, compute_mar_spectrum, fit_mar
from .spectra import (SpectralPeak, compute_csd, compute_psd, equivalent_dof,
                      find_spectral_peaks, read_spectrum)
from .windows import compute_windowed_features, compute_windowed_psd, make_windows

__all__ = [
    "Annotation", "Recording", "read_recording", "extract_label_time_courses",
    "compute_psd", "compute_csd", "read_spectrum", "equivalent_dof", "find_spectral_peaks",
    "SpectralPeak", "fit_mar", "compute_mar_spectrum", "MarFit", "compute_band_envelopes",
    "bands_from_peaks", "DEFAULT_BANDS", "make_windows", "compute_windowed_psd",
    "compute_windowed_features",
]
