"""Exceptions raised by nmm_inference.

All subclass built-in exception types, so ``except ValueError`` keeps working.
"""

__all__ = ["NMMError", "ParameterError", "DataError", "UnstableSystemError", "ConvergenceWarning",
           "ReductionValidityWarning", "ReductionError", "NotFittedError"]


class NMMError(Exception):
    """Base class of the package's own errors."""


class ParameterError(NMMError, ValueError):
    """Unknown, misspelled, ill-shaped or non-finite model parameters."""


class DataError(NMMError, ValueError):
    """Recordings or features that cannot be used (NaN samples, flat channels, ...)."""


class UnstableSystemError(NMMError, RuntimeError):
    """The requested quantity does not exist because the linearised system is unstable."""


class ReductionError(NMMError, ValueError):
    """The adiabatic reduction would give meaningless numbers (e.g. a subcritical Hopf)."""


class NotFittedError(NMMError, RuntimeError):
    """A model method needs ``fit()`` to have been called first."""


class ConvergenceWarning(UserWarning):
    """A sampler or an iteration did not converge."""


class ReductionValidityWarning(UserWarning):
    """The adiabatic (cubic) reduction is unreliable for some of the reported quantities."""
