"""Adiabatic amplitude reduction of the canonical microcircuit (CMC).

Oscillation amplitudes of a CMC source follow a slow flow on a potential shaped by intrinsic
connectivity (``shared/docs/adiabatic.md``).  The entry point is :func:`reduce_cmc`::

    red = reduce_cmc(G, T, R=2/3, U=(0, 0, 0, 0))
    red.modes               # oscillatory modes (eigenvalue, voltage profile nu, ...)
    red.g                   # cubic normal-form coefficients
    red.stable_states()     # rest, single-mode and mixed states with frequencies and envelopes

Submodules: ``amplitude`` (states, potential), ``stochastic`` (amplitude SDE, densities,
switching, sensor features), ``scan`` (bifurcation diagrams along a parameter), ``validity``
(guards).  PyTensor Ops with analytic gradients live in ``pytensor_ops``, which is imported only
on request; importing this package loads numpy and scipy only.
"""

from ._core import PARAM_NAMES, operating_point
from .amplitude import AmplitudeState, Potential, symmetrizer
from .reduction import POPULATIONS, Mode, Reduction, reduce_cmc
from .scan import ScanResult, scan_parameter
from .stochastic import (AmplitudeSDE, band_features, mean_first_passage_time, noise_diffusion,
                         stationary_density)
from .validity import ValidityIssue, ValiditySettings

__all__ = [
    "reduce_cmc", "Reduction", "Mode", "AmplitudeState", "Potential", "symmetrizer",
    "PARAM_NAMES", "POPULATIONS", "operating_point", "ValidityIssue", "ValiditySettings",
    "scan_parameter", "ScanResult", "AmplitudeSDE", "noise_diffusion", "stationary_density",
    "mean_first_passage_time", "band_features",
]
