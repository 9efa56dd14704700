"""Posterior state probabilities, switch events, dwell times and bursts from a fitted model.

:class:`SwitchingResult` takes the :class:`~nmm_inference.switching.model.SwitchingTerms` of a
model and its posterior draws, and for a random subset of the draws runs forward-backward
(posterior state probabilities given those parameters) and draws state paths (forward filtering,
backward sampling).  Averaging over draws integrates over parameter uncertainty; statistics of
the sampled paths (one path per draw by default) are draws from their joint posterior, so their
highest-density intervals are credible intervals that include both the parameter and the path
uncertainty.

xarray is imported when a method returns xarray objects; MNE only in :meth:`to_annotations`.
"""

from __future__ import annotations

import numpy as np

from ..errors import NotFittedError, ParameterError
from .bursts import (episode_statistics, hdi_interval, match_switches, runs, summarize_samples,
                     switch_times)
from .hmm import _backward, _ffbs, _forward
from .envelope_likelihood import EMISSION_KINDS, _emissions

__all__ = ["SwitchingResult"]


def _posterior_group(idata):
    try:
        post = idata["posterior"]
    except (KeyError, TypeError):
        post = getattr(idata, "posterior", None)
    if post is None:
        raise NotFittedError("idata has no posterior group; sample the model first (fit)")
    return post.to_dataset() if hasattr(post, "to_dataset") else post


def _decoding_terms(terms, envelope, sfreq, t0):
    """Terms for decoding another envelope (e.g. at a finer rate) with the fitted parameters."""
    from dataclasses import replace

    from .envelope_likelihood import _segment_starts, check_envelope

    if sfreq is None:
        raise ParameterError("decoding another envelope needs its sfreq")
    x = check_envelope(envelope)
    if x.shape[1] != terms.n_bands:
        raise ParameterError(f"envelope has {x.shape[1]} bands, the model {terms.n_bands}")
    return replace(terms, envelope=x / terms.scale[None, :], sfreq=float(sfreq),
                   segment_starts=_segment_starts(x.shape[0], None),
                   t0=terms.t0 if t0 is None else float(t0), rederive_transitions=True)


def _log_transitions_from_rates(rates, dt):
    """Per-draw log transition matrices and stationary distributions at step ``dt``."""
    from scipy.linalg import expm

    from .hmm import stationary_distribution

    n, S, _ = rates.shape
    lP = np.empty((n, S, S))
    lpi = np.empty((n, S))
    for i in range(n):
        Q = rates[i].copy()
        np.fill_diagonal(Q, 0.0)
        np.fill_diagonal(Q, -Q.sum(axis=1))
        P = np.clip(expm(Q * dt), 1e-300, None)
        P /= P.sum(axis=1, keepdims=True)
        lP[i] = np.log(P)
        lpi[i] = np.log(np.clip(stationary_distribution(P), 1e-300, None))
    return lP, lpi


class SwitchingResult:
    """Posterior analysis of a switching model.

    Parameters
    ----------
    terms : SwitchingTerms
        Returned by the model builder.
    idata : xarray.DataTree or arviz InferenceData
        Posterior draws containing the Deterministics named in ``terms.var_names``.
    n_draws : int, optional
        Number of posterior draws used (random subset; all if fewer).
    paths_per_draw : int, optional
        State paths sampled per draw.
    random_seed : None, int or numpy.random.Generator
        Seed of the subset and the path sampling.
    hdi_prob : float, optional
        Mass of the credible intervals (ArviZ's 0.94).
    envelope : array-like, shape (n_times, n_bands), optional
        Decode this envelope (sensor units) instead of the fitted one -- e.g. the same record
        at a finer rate than the one used for fitting; the per-step transition matrices are
        recomputed from the posterior rates at ``1 / sfreq``.
    sfreq : float, optional
        Rate of ``envelope`` (Hz).
    t0 : float, optional
        Time of its first sample (s; default that of the fitted envelope).
    """

    def __init__(self, terms, idata, *, n_draws=200, paths_per_draw=1, random_seed=None,
                 hdi_prob=0.94, envelope=None, sfreq=None, t0=None):
        if envelope is not None:
            terms = _decoding_terms(terms, envelope, sfreq, t0)
        self.terms = terms
        self.hdi_prob = float(hdi_prob)
        rng = np.random.default_rng(random_seed)
        post = _posterior_group(idata)
        names = terms.var_names
        missing = [v for v in names.values() if v not in post]
        if missing:
            raise NotFittedError(f"posterior lacks {missing}; was the model built by "
                                 "nmm_inference.switching.model?")

        def flat(v):
            a = np.asarray(post[v].values, dtype=float)
            return a.reshape((-1,) + a.shape[2:])

        sig, a, D = flat(names["sigma"]), flat(names["a"]), flat(names["D"])
        lP, lpi = flat(names["log_P"]), flat(names["log_pi"])
        if terms.rederive_transitions:
            lP, lpi = _log_transitions_from_rates(flat(names["rates"]), 1.0 / terms.sfreq)
        n_all = sig.shape[0]
        pick = rng.choice(n_all, size=min(int(n_draws), n_all), replace=False)
        pick.sort()
        self.draw_index_ = pick
        x = np.ascontiguousarray(terms.envelope)
        starts = np.ascontiguousarray(terms.segment_starts, dtype=np.bool_)
        code = EMISSION_KINDS[terms.kind]
        dt = 1.0 / terms.sfreq
        T, S = x.shape[0], terms.n_states
        gam = np.empty((pick.size, T, S))
        paths = []
        logps = np.empty(pick.size)
        for n, i in enumerate(pick):
            logb, _ = _emissions(x, np.ascontiguousarray(sig[i]), np.ascontiguousarray(a[i]),
                                 np.ascontiguousarray(D[i]), dt, code, starts, False)
            P = np.exp(lP[i])
            logL, alpha, bb, c, ok = _forward(logb, P, np.exp(lpi[i]), starts)
            if not ok:
                gam[n] = np.nan
                logps[n] = -np.inf
                continue
            g, _, _ = _backward(alpha, bb, c, P, starts)
            gam[n] = g
            logps[n] = logL
            u = rng.random((int(paths_per_draw), T))
            paths.append(_ffbs(alpha, P, starts, u))
        good = np.isfinite(logps)
        if not np.any(good):
            raise ParameterError("every selected posterior draw gives zero likelihood")
        self.gamma_ = gam[good]                     # (n_draws, T, S)
        self.paths_ = np.concatenate(paths, axis=0)  # (n_draws * paths_per_draw, T)
        self.logp_ = logps[good]
        self.rates_ = flat(names["rates"])[pick[good]]

    # ------------------------------------------------------------------ probabilities
    @property
    def times(self):
        """Sample times (s)."""
        return self.terms.times

    @property
    def probability(self):
        """Posterior state probabilities averaged over draws, shape (n_times, n_states)."""
        return self.gamma_.mean(axis=0)

    def state_probabilities(self):
        """Posterior state probabilities as an xarray Dataset.

        Returns
        -------
        xarray.Dataset
            ``probability`` (time, state): averaged over posterior draws; ``lower``/``upper``
            (time, state): the ``hdi_prob`` central interval of the per-draw probabilities
            (parameter uncertainty); ``map_state`` (time): the most probable state.
        """
        import xarray as xr

        q = (1.0 - self.hdi_prob) / 2.0
        p = self.probability
        coords = {"time": self.times, "state": list(self.terms.state_names)}
        ds = xr.Dataset(
            {"probability": (("time", "state"), p),
             "lower": (("time", "state"), np.quantile(self.gamma_, q, axis=0)),
             "upper": (("time", "state"), np.quantile(self.gamma_, 1 - q, axis=0)),
             "map_state": (("time",), np.argmax(p, axis=1))},
            coords=coords,
            attrs={"hdi_prob": self.hdi_prob, "n_draws": int(self.gamma_.shape[0]),
                   "rate_source": self.terms.rate_source, "sfreq": self.terms.sfreq})
        ds["time"].attrs["units"] = "s"
        return ds

    def map_path(self, *, min_duration=0.0):
        """State with the highest posterior probability at each sample (runs shorter than
        ``min_duration`` seconds merged into their neighbours)."""
        lab = np.argmax(self.probability, axis=1)
        if min_duration > 0:
            n_min = int(round(min_duration * self.terms.sfreq))
            changed = True
            while changed:
                changed = False
                for s in range(self.terms.n_states):
                    st, sp = runs(lab, s)
                    for a, b in zip(st, sp):
                        if b - a < n_min and a > 0:
                            lab[a:b] = lab[a - 1]
                            changed = True
        return lab

    # ------------------------------------------------------------------ switches
    def switch_events(self, *, min_duration=0.0, max_lag=None):
        """Switches of the posterior-mode path, with credible intervals of their times.

        For each switch of :meth:`map_path`, every sampled path contributes the time of its
        nearest switch of the same type (within ``max_lag``, default half the distance to the
        neighbouring switches); the interval of those times is the credible interval, and the
        fraction of paths with such a switch its posterior probability.

        Parameters
        ----------
        min_duration : float, optional
            Minimum dwell (s) of the reference path.
        max_lag : float, optional
            Largest matching distance (s).

        Returns
        -------
        pandas.DataFrame
            Columns ``time`` (s), ``from_state``, ``to_state``, ``median``, ``lower``,
            ``upper`` (s), ``probability``.
        """
        import pandas as pd

        sf = self.terms.sfreq
        ref = self.map_path(min_duration=min_duration)
        t, fr, to = switch_times(ref, sf, t0=self.terms.t0)
        rows = []
        cand = [switch_times(p, sf, t0=self.terms.t0) for p in self.paths_]
        for k in range(t.size):
            lo_gap = t[k] - (t[k - 1] if k > 0 else self.times[0])
            hi_gap = (t[k + 1] if k + 1 < t.size else self.times[-1]) - t[k]
            lag_max = max_lag if max_lag is not None else 0.5 * min(lo_gap, hi_gap)
            lags = np.array([match_switches([t[k]], [fr[k]], [to[k]], c[0], c[1], c[2],
                                            max_lag=lag_max)[0] for c in cand])
            ok = np.isfinite(lags)
            lo, hi = hdi_interval(t[k] + lags[ok], self.hdi_prob) if ok.any() else (np.nan,
                                                                                     np.nan)
            rows.append({"time": t[k], "from_state": self.terms.state_names[fr[k]],
                         "to_state": self.terms.state_names[to[k]],
                         "median": float(np.median(t[k] + lags[ok])) if ok.any() else np.nan,
                         "lower": lo, "upper": hi, "probability": float(ok.mean())})
        return pd.DataFrame(rows, columns=["time", "from_state", "to_state", "median", "lower",
                                           "upper", "probability"])

    # ------------------------------------------------------------------ statistics
    def dwell_times(self):
        """Mean dwell time of each state: from the rates (1/k) and from the sampled paths.

        Returns
        -------
        dict
            ``{state: {"from_rates": {...}, "from_paths": {...}}}``, each a median/HDI dict (s).
        """
        out = {}
        for s, name in enumerate(self.terms.state_names):
            k_out = self.rates_[:, s, :].sum(axis=1) - self.rates_[:, s, s]
            st = episode_statistics(self.paths_, s, self.terms.sfreq)
            out[name] = {"from_rates": summarize_samples(1.0 / k_out, self.hdi_prob),
                         "from_paths": summarize_samples(st["mean_duration"], self.hdi_prob)}
        return out

    def burst_statistics(self, *, state=None, envelope=None, min_duration=0.0):
        """Rate, median duration and amplitude of the episodes of a state, with credible
        intervals.

        Parameters
        ----------
        state : int or str, optional
            The burst state (default: the last state, which in the free model has the largest
            growth rate).
        envelope : array-like, shape (n_times,), optional
            Envelope in sensor units for the amplitudes (default: the model's envelope times
            its scale).
        min_duration : float, optional
            Episodes shorter than this (s) are not counted.

        Returns
        -------
        dict
            ``rate`` (1/s), ``median_duration`` (s), ``amplitude`` (sensor units),
            ``occupancy``: each ``{"median", "lower", "upper"}``; plus ``n_paths``.
        """
        s = self._state_index(state)
        env = (self.terms.envelope[:, 0] * self.terms.scale[0] if envelope is None
               else np.asarray(envelope, dtype=float))
        st = episode_statistics(self.paths_, s, self.terms.sfreq, envelope=env,
                                min_duration=min_duration)
        out = {k: summarize_samples(st[k], self.hdi_prob)
               for k in ("rate", "median_duration", "amplitude", "occupancy")}
        out["n_paths"] = int(self.paths_.shape[0])
        return out

    def _state_index(self, state):
        if state is None:
            return self.terms.n_states - 1
        if isinstance(state, str):
            if state not in self.terms.state_names:
                raise ParameterError(f"unknown state {state!r}; states: {self.terms.state_names}")
            return self.terms.state_names.index(state)
        s = int(state)
        if not 0 <= s < self.terms.n_states:
            raise ParameterError(f"state must be in 0..{self.terms.n_states - 1}, got {state}")
        return s

    def to_annotations(self, *, state=None, threshold=0.5, description=None, orig_time=None):
        """Episodes where the posterior probability of a state exceeds ``threshold``, as
        :class:`mne.Annotations` (onsets in s on the envelope's time axis).

        Parameters
        ----------
        state : int or str, optional
            Default: the last state.
        threshold : float, optional
            Probability threshold.
        description : str, optional
            Annotation label (default: the state's name).
        orig_time : optional
            Passed to :class:`mne.Annotations`.

        Returns
        -------
        mne.Annotations
        """
        import mne

        s = self._state_index(state)
        p = self.probability[:, s]
        st, sp = runs(p > threshold, True)
        sf = self.terms.sfreq
        onset = self.times[0] + (st - 0.5) / sf
        onset = np.maximum(onset, self.times[0])
        dur = (sp - st) / sf
        desc = description or self.terms.state_names[s]
        return mne.Annotations(onset=onset, duration=dur, description=[desc] * st.size,
                               orig_time=orig_time)
