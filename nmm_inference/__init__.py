"""nmm_inference: Bayesian inversion of neural mass models on M/EEG and intracranial recordings."""
from ._version import __version__

__all__ = ["__version__"]
