"""Episodes, switches and burst statistics of state sequences; the conventional burst detector.

Numpy only.  The model-based statistics work on posterior *paths* (state sequences drawn from
their posterior, :func:`nmm_inference.switching.hmm.sample_paths`): each path gives one value of
every statistic, and the spread over paths (and over parameter draws, one path per draw) is the
posterior of the statistic.  The conventional detector (:func:`detect_bursts_threshold`) is the
usual "envelope above its 75th percentile for at least 100 ms" rule, for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError, ParameterError

__all__ = ["runs", "ThresholdBursts", "detect_bursts_threshold", "episode_statistics",
           "switch_times", "hdi_interval", "summarize_samples", "match_switches"]


def runs(labels, value):
    """Start (inclusive) and stop (exclusive) indices of the runs of ``labels == value``.

    Parameters
    ----------
    labels : array-like, shape (n,)
        A sequence (ints or bools).
    value : int or bool
        The label whose runs are wanted.

    Returns
    -------
    starts, stops : ndarray of int

    Examples
    --------
    >>> runs([0, 1, 1, 0, 1], 1)
    (array([1, 4]), array([3, 5]))
    """
    m = np.asarray(labels) == value
    d = np.diff(np.concatenate([[False], m, [False]]).astype(np.int8))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def hdi_interval(samples, prob=0.94):
    """Highest-density interval of 1-D samples (shortest interval holding ``prob`` of them).

    Parameters
    ----------
    samples : array-like
        Draws (NaN ignored).
    prob : float, optional
        Probability mass (ArviZ's default 0.94).

    Returns
    -------
    (float, float)
        NaN, NaN when there are no finite samples.
    """
    x = np.sort(np.asarray(samples, dtype=float).ravel())
    x = x[np.isfinite(x)]
    if not 0 < prob < 1:
        raise ParameterError(f"prob must be in (0, 1), got {prob}")
    n = x.size
    if n == 0:
        return (np.nan, np.nan)
    k = max(1, int(np.ceil(prob * n)))
    if k >= n:
        return (float(x[0]), float(x[-1]))
    widths = x[k - 1:] - x[:n - k + 1]
    i = int(np.argmin(widths))
    return (float(x[i]), float(x[i + k - 1]))


def summarize_samples(samples, prob=0.94):
    """Median and HDI of posterior samples, as a dict ``{"median", "lower", "upper"}``.

    Parameters
    ----------
    samples : array-like
        Draws of one scalar quantity, any shape (flattened); non-finite values are ignored.
    prob : float, optional
        Probability mass of the highest-density interval (:func:`hdi_interval`), in (0, 1).

    Returns
    -------
    dict
        ``"median"``: median of the finite draws; ``"lower"``, ``"upper"``: bounds of the
        HDI.  All three are NaN when there are no finite draws.

    Raises
    ------
    ParameterError
        If ``prob`` is not in (0, 1).
    """
    x = np.asarray(samples, dtype=float)
    lo, hi = hdi_interval(x, prob)
    fin = x[np.isfinite(x)]
    return {"median": float(np.median(fin)) if fin.size else np.nan, "lower": lo, "upper": hi}


@dataclass(frozen=True)
class ThresholdBursts:
    """Result of :func:`detect_bursts_threshold`.

    Attributes
    ----------
    onsets, durations : ndarray
        Burst onsets (s, on the envelope's time axis) and durations (s).
    amplitudes : ndarray
        Mean envelope during each burst (envelope units).
    threshold : float
        Envelope threshold used.
    span : float
        Analysed duration (s).
    """

    onsets: np.ndarray
    durations: np.ndarray
    amplitudes: np.ndarray
    threshold: float
    span: float

    @property
    def rate(self) -> float:
        """Bursts per second."""
        return float(self.onsets.size / self.span)

    @property
    def median_duration(self) -> float:
        """Median burst duration (s); NaN without bursts."""
        return float(np.median(self.durations)) if self.durations.size else np.nan


def detect_bursts_threshold(envelope, sfreq, *, percentile=75.0, min_duration=0.1,
                            exclude_edges=1.0, t0=0.0):
    """Conventional burst detector: envelope above a percentile for a minimum duration.

    Parameters
    ----------
    envelope : array-like, shape (n_times,)
        Band envelope.
    sfreq : float
        Envelope rate (Hz).
    percentile : float, optional
        Threshold percentile of the analysed envelope (default 75).
    min_duration : float, optional
        Minimum burst duration (s; default 0.1).
    exclude_edges : float, optional
        Seconds left out at each end before anything is computed (default 1).
    t0 : float, optional
        Time of the first sample (s).

    Returns
    -------
    ThresholdBursts

    Examples
    --------
    >>> import numpy as np
    >>> env = np.r_[np.ones(200), 3 * np.ones(30), np.ones(200)]
    >>> b = detect_bursts_threshold(env, 100.0, exclude_edges=0.5)
    >>> b.onsets.size, round(float(b.durations[0]), 2)
    (1, 0.3)
    """
    x = np.asarray(envelope, dtype=float).ravel()
    sfreq = float(sfreq)
    if not (sfreq > 0):
        raise ParameterError(f"sfreq must be positive, got {sfreq}")
    if not np.all(np.isfinite(x)):
        raise DataError("envelope has non-finite samples")
    n_ex = int(round(exclude_edges * sfreq))
    if x.size - 2 * n_ex < 2:
        raise DataError(f"envelope of {x.size / sfreq:.3g} s is too short to leave out "
                        f"{exclude_edges} s at both ends")
    seg = x[n_ex:x.size - n_ex]
    thr = float(np.percentile(seg, percentile))
    st, sp = runs(seg > thr, True)
    dur = (sp - st) / sfreq
    keep = dur >= min_duration - 1e-12
    st, sp, dur = st[keep], sp[keep], dur[keep]
    amps = np.array([seg[a:b].mean() for a, b in zip(st, sp)])
    return ThresholdBursts(onsets=t0 + (st + n_ex) / sfreq, durations=dur, amplitudes=amps,
                           threshold=thr, span=seg.size / sfreq)


def episode_statistics(paths, state, sfreq, *, envelope=None, min_duration=0.0,
                       exclude_partial=True):
    """Rate, duration and amplitude of the episodes of one state, per path.

    Parameters
    ----------
    paths : array-like of int, shape (n_paths, n_times)
        State sequences (posterior draws).
    state : int
        The state whose episodes are counted (e.g. the burst state).
    sfreq : float
        Rate of the paths (Hz).
    envelope : array-like, shape (n_times,), optional
        Envelope for the episode amplitudes (mean envelope during an episode).
    min_duration : float, optional
        Episodes shorter than this (s) are not counted.
    exclude_partial : bool, optional
        Leave out episodes cut by the start or end of the record from durations and amplitudes
        (they still count for the rate).

    Returns
    -------
    dict of ndarray, each shape (n_paths,)
        ``rate`` (1/s), ``median_duration`` (s), ``mean_duration`` (s), ``amplitude``
        (mean over episodes of their mean envelope), ``occupancy`` (fraction of time),
        ``n_episodes``.
    """
    P = np.atleast_2d(np.asarray(paths))
    n, T = P.shape
    span = T / float(sfreq)
    env = None if envelope is None else np.asarray(envelope, dtype=float).ravel()
    if env is not None and env.size != T:
        raise DataError(f"envelope has {env.size} samples, paths {T}")
    out = {k: np.full(n, np.nan) for k in ("rate", "median_duration", "mean_duration",
                                            "amplitude", "occupancy", "n_episodes")}
    cumenv = None if env is None else np.concatenate([[0.0], np.cumsum(env)])
    for i in range(n):
        st, sp = runs(P[i], state)
        dur = (sp - st) / float(sfreq)
        keep = dur >= min_duration - 1e-12
        st, sp, dur = st[keep], sp[keep], dur[keep]
        out["rate"][i] = st.size / span
        out["n_episodes"][i] = st.size
        out["occupancy"][i] = np.mean(P[i] == state)
        full = np.ones(st.size, bool)
        if exclude_partial:
            full = (st > 0) & (sp < T)
        if np.any(full):
            out["median_duration"][i] = np.median(dur[full])
            out["mean_duration"][i] = np.mean(dur[full])
            if cumenv is not None:
                out["amplitude"][i] = np.mean((cumenv[sp[full]] - cumenv[st[full]])
                                              / (sp[full] - st[full]))
    return out


def switch_times(labels, sfreq, *, t0=0.0):
    """Times and types of the switches of a state sequence.

    A switch at sample i (``labels[i] != labels[i - 1]``) is placed at the midpoint between the
    two samples, ``t0 + (i - 1/2) / sfreq``.

    Parameters
    ----------
    labels : array-like of int, shape (n_times,)
    sfreq : float
        Rate (Hz).
    t0 : float, optional
        Time of the first sample (s).

    Returns
    -------
    times : ndarray
        Switch times (s).
    from_state, to_state : ndarray of int
    """
    lab = np.asarray(labels)
    i = np.flatnonzero(lab[1:] != lab[:-1]) + 1
    return t0 + (i - 0.5) / float(sfreq), lab[i - 1], lab[i]


def match_switches(ref_times, ref_from, ref_to, times, from_state, to_state, *, max_lag):
    """Match switches to reference switches of the same type (nearest within ``max_lag``).

    Each reference switch is matched to at most one switch and vice versa (greedy by lag).

    Parameters
    ----------
    ref_times : array-like of float, shape (n_ref,)
        Reference switch times (s), e.g. the true switches of a simulation.
    ref_from, ref_to : ndarray of int, shape (n_ref,)
        States before and after each reference switch.
    times : array-like of float, shape (n_switches,)
        Switch times to match (s), e.g. from :func:`switch_times` on a decoded path.
    from_state, to_state : ndarray of int, shape (n_switches,)
        States before and after each switch; arrays (as :func:`switch_times` returns them),
        since they are compared elementwise.
    max_lag : float
        Largest ``|time - ref_time|`` (s) accepted for a match.

    Returns
    -------
    lag : ndarray, shape (n_ref,)
        ``time - ref_time`` of the matched switch (s); NaN when unmatched.
    """
    ref_times = np.asarray(ref_times, dtype=float)
    times = np.asarray(times, dtype=float)
    lag = np.full(ref_times.size, np.nan)
    pairs = []
    for r in range(ref_times.size):
        ok = np.flatnonzero((from_state == ref_from[r]) & (to_state == ref_to[r])
                            & (np.abs(times - ref_times[r]) <= max_lag))
        for j in ok:
            pairs.append((abs(times[j] - ref_times[r]), r, j))
    used_r, used_j = set(), set()
    for d, r, j in sorted(pairs):
        if r in used_r or j in used_j:
            continue
        used_r.add(r)
        used_j.add(j)
        lag[r] = times[j] - ref_times[r]
    return lag
