"""Envelope dynamics and switching between semi-stable states, as a mechanistic state model.

The adiabatic reduction of the CMC (:mod:`nmm_inference.adiabatic`) turns a circuit into a few
mode amplitudes that follow a stochastic flow with semi-stable states.  This subpackage makes
that a likelihood for band envelopes:

* :mod:`~nmm_inference.switching.envelope_likelihood` -- transition and stationary densities of
  the amplitude SDE, mapped to sensor envelopes;
* :mod:`~nmm_inference.switching.hmm` -- hidden states (basins) marginalised with the forward
  algorithm; forward-backward, Viterbi and posterior path sampling (numba);
* :mod:`~nmm_inference.switching.rates` -- switching rates from mean first-passage times of the
  reduced amplitude SDE (backward Kolmogorov equation, with gradient);
* :mod:`~nmm_inference.switching.mechanism` -- CMC parameters -> states, emissions, gains and
  rates, with the decision whether the rates may come from the mechanism;
* :mod:`~nmm_inference.switching.model` -- PyMC models (``add_switching_likelihood`` for
  joint models sharing CMC parameters, ``build_free_switching_model`` standalone);
* :mod:`~nmm_inference.switching.results` -- state-probability time courses (xarray), switch
  events with credible intervals, dwell-time and burst statistics, ``mne.Annotations``;
* :mod:`~nmm_inference.switching.bursts` -- episode statistics and the conventional
  threshold burst detector;
* :mod:`~nmm_inference.switching.validation` -- the acceptance check on simulated data from the
  full nonlinear CMC (true basins, fit, classification and switch-time scores).

Importing this package loads numpy, scipy and numba only; PyMC/PyTensor are imported by
``model``, ``results`` (xarray) and ``pytensor_ops`` on first use.
"""

from .bursts import ThresholdBursts, detect_bursts_threshold, episode_statistics, hdi_interval
from .envelope_likelihood import (envelope_emissions, envelope_loglik, positive_envelope,
                                  recommended_sfreq, stationary_logpdf, to_sensor_units,
                                  transition_logpdf)
from .hmm import (envelope_hmm_logp, forward_backward, hmm_logp, sample_paths,
                  transition_matrix, viterbi)
from .mechanism import MechanismSpec, assess_mechanism, switching_quantities
from .rates import PassageGrid, two_mode_passage_times

_LAZY = {
    "SwitchingTerms": "model", "add_switching_likelihood": "model",
    "add_envelope_likelihood": "model", "build_free_switching_model": "model", "fit": "model",
    "log_transition_from_rates": "model", "SwitchingResult": "results",
}

__all__ = [
    "transition_logpdf", "stationary_logpdf", "envelope_emissions", "envelope_loglik",
    "to_sensor_units", "positive_envelope", "recommended_sfreq", "hmm_logp", "forward_backward",
    "viterbi", "sample_paths", "envelope_hmm_logp", "transition_matrix", "PassageGrid",
    "two_mode_passage_times", "MechanismSpec", "assess_mechanism", "switching_quantities",
    "ThresholdBursts", "detect_bursts_threshold", "episode_statistics", "hdi_interval",
    *_LAZY,
]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        mod = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(mod, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
