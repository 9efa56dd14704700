"""Bayesian inversion of CMC spectra: model object, likelihoods, samplers, diagnostics.

Importing this subpackage imports numpy, scipy and numba; PyMC, PyTensor, nutpie and ArviZ
are imported when a function needs them.
"""

from .diagnostics import compare_models
from .hopf import HopfModel, hopf_spectrum, leading_line
from .laplace import Mode, find_modes
from .likelihoods import (complex_wishart_logpdf, spm_csd2ccf, spm_gaussian_logpdf,
                          spm_precision, spm_scale_factor, whittle_gamma_logpdf,
                          whittle_gamma_marginal_loglik)
from .model import HDI_PROB, CMCModel
from .samplers import SAMPLERS

__all__ = [
    "CMCModel", "HDI_PROB", "SAMPLERS", "compare_models", "HopfModel", "hopf_spectrum", "leading_line", "Mode", "find_modes", "whittle_gamma_logpdf",
    "whittle_gamma_marginal_loglik", "complex_wishart_logpdf", "spm_gaussian_logpdf",
    "spm_csd2ccf", "spm_scale_factor", "spm_precision",
]
