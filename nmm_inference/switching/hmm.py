"""Hidden Markov chain over semi-stable states: forward algorithm, forward-backward, Viterbi,
posterior path sampling, and the fused envelope-HMM log-likelihood with its exact gradient.

The discrete state (which basin of the amplitude flow the circuit is in) is marginalised with
the forward algorithm.  Its gradient follows from the posterior marginals (Fisher's identity):
for ``log L = log sum_paths pi_{s0} prod_t P_{s_{t-1} s_t} prod_t b_t(s_t)``,

* ``d log L / d log b_t(s) = gamma_t(s)`` (posterior state probability),
* ``d log L / d log P_ij = sum_t xi_t(i, j)`` (expected number of i -> j steps),
* ``d log L / d log pi_s = gamma_0(s)`` (summed over segment starts),

so one forward-backward pass gives the exact gradient with respect to every emission and
transition parameter.  Probabilities are propagated with per-step scaling (no log-sum-exp in the
inner loop), which keeps the cost at a few ns per state and step.

All kernels are numba nopython functions (``error_model="numpy"``: bad proposals give -inf,
not exceptions).  The PyTensor Ops that wrap them are in
:mod:`nmm_inference.switching.pytensor_ops`.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ..errors import ParameterError
from .envelope_likelihood import (_check_dt, _emission_pass, _kind_code, _segment_starts,
                                  _state_params, check_envelope)

__all__ = ["hmm_logp", "forward_backward", "viterbi", "sample_paths", "envelope_hmm_logp",
           "check_log_transition", "transition_matrix", "stationary_distribution"]

_NJIT = dict(cache=True, error_model="numpy")


# ----------------------------------------------------------------------------------------
# kernels
# ----------------------------------------------------------------------------------------

@numba.njit(**_NJIT)
def _forward_core(f, q, sign, P, pi, starts):
    """Scaled forward pass over emission densities given as ``log b = log f - sign q``
    (``f`` with no rows: ``f = 1``); returns (log L, alpha (T,S) normalised, bb (T,S), c (T,),
    ok).

    Each step is scaled by a reference state's density ``b_r``, ``r`` the state of smallest
    ``sign q`` among those with ``f > 0``: ``bb[t, s] = b_s / b_r = (f_s / f_r)
    exp(sign (q_r - q_s))`` (so ``bb <= f_s / f_r``) and ``c[t]`` is the step's normaliser, so
    that ``log L = sum_t (log c[t] + log b_r(t))``.  The logarithms are taken of the running
    product of ``c[t] f_r(t)`` (renormalised before it could over- or underflow), not one per
    step: with the factored emissions of the envelope likelihood no logarithm is needed per
    sample at all.
    """
    T, S = q.shape
    have_f = f.shape[0] > 0
    alpha = np.empty((T, S))
    bb = np.empty((T, S))
    c = np.empty(T)
    logL = 0.0
    # pass 1, independent across steps: reference state and scaled densities; c holds f_r
    for t in range(T):
        if S == 2:
            # branch-free choice of the reference (which state wins flips from sample to sample)
            q0 = sign * q[t, 0]
            q1 = sign * q[t, 1]
            f0 = f[t, 0] if have_f else 1.0
            f1 = f[t, 1] if have_f else 1.0
            if q0 != q0 or q1 != q1 or not (f0 > 0.0 or f1 > 0.0):
                return -np.inf, alpha, bb, c, False
            one = f1 > 0.0 and (q1 < q0 or not f0 > 0.0)
            qr = q1 if one else q0
            qo = q0 if one else q1
            fr = f1 if one else f0
            fo = f0 if one else f1
            if qr == -np.inf:
                return -np.inf, alpha, bb, c, False
            eo = 0.0 if fo == 0.0 else fo / fr * math.exp(qr - qo)
            bb[t, 0] = eo if one else 1.0
            bb[t, 1] = 1.0 if one else eo
            c[t] = fr
            logL -= qr
            continue
        r = -1
        qr = np.inf
        for s in range(S):
            qs = sign * q[t, s]
            if qs != qs:
                return -np.inf, alpha, bb, c, False
            fs = f[t, s] if have_f else 1.0
            if fs > 0.0 and qs < qr:
                r = s
                qr = qs
        if r < 0 or qr == -np.inf:
            return -np.inf, alpha, bb, c, False
        fr = f[t, r] if have_f else 1.0
        rfr = 1.0 / fr
        for j in range(S):
            if j == r:
                bb[t, j] = 1.0
            else:
                fj = f[t, j] if have_f else 1.0
                bb[t, j] = 0.0 if fj == 0.0 else fj * rfr * math.exp(qr - sign * q[t, j])
        c[t] = fr
        logL -= qr
    # pass 2: the recursion (two states: in registers), and the logarithm of the running
    # product of c[t] f_r(t)
    prod = 1.0
    a0 = 0.0
    a1 = 0.0
    rt = 1.0
    for t in range(T):
        if S == 2:
            # (a0, a1) unnormalised: the division by the previous total overlaps the products
            if starts[t]:
                a0 = pi[0] * bb[t, 0]
                a1 = pi[1] * bb[t, 1]
            else:
                n0 = (a0 * P[0, 0] + a1 * P[1, 0]) * bb[t, 0] * rt
                a1 = (a0 * P[0, 1] + a1 * P[1, 1]) * bb[t, 1] * rt
                a0 = n0
            tot = a0 + a1
            if not (0.0 < tot < np.inf):
                return -np.inf, alpha, bb, c, False
            rt = 1.0 / tot
            alpha[t, 0] = a0 * rt
            alpha[t, 1] = a1 * rt
        else:
            tot = 0.0
            for j in range(S):
                if starts[t]:
                    pred = pi[j]
                else:
                    pred = 0.0
                    for i in range(S):
                        pred += alpha[t - 1, i] * P[i, j]
                alpha[t, j] = pred * bb[t, j]
                tot += alpha[t, j]
            if not (0.0 < tot < np.inf):
                return -np.inf, alpha, bb, c, False
            rt = 1.0 / tot
            for j in range(S):
                alpha[t, j] *= rt
        g = tot * c[t]
        c[t] = tot
        if 1e-100 < g < 1e100:
            prod *= g
            if not (1e-200 < prod < 1e200):
                logL += math.log(prod)
                prod = 1.0
        else:
            logL += math.log(g)
    return logL + math.log(prod), alpha, bb, c, True


@numba.njit(**_NJIT)
def _forward(logb, P, pi, starts):
    """Scaled forward pass; returns (log L, alpha (T,S) normalised, bb (T,S), c (T,), ok).

    ``bb[t] = exp(logb[t] - max_s logb[t])`` and ``c[t]`` is the step's normaliser, so that
    ``log L = sum_t (log c[t] + max_s logb[t])`` (:func:`_forward_core`).
    """
    return _forward_core(np.empty((0, logb.shape[1])), logb, -1.0, P, pi, starts)


@numba.njit(**_NJIT)
def _backward_pass(alpha, bb, c, P, starts, gamma, dl, g):
    """Scaled backward pass; returns xi summed (S,S) and gamma at segment starts (S,).

    The posterior probabilities gamma_t(s) are written to ``gamma`` (T,S) when it has rows,
    and, when ``dl`` (T,S,M,3) has rows, ``gamma_t(s) dl[t, s]`` is summed into ``g``
    (S,M,3) on the way (the emission-parameter gradient of the fused likelihood, without a
    second pass over time).  Two states run in registers (:func:`_backward_two`).
    """
    T, S = alpha.shape
    if S == 2:
        return _backward_two(alpha, bb, c, P, starts, gamma, dl, g)
    M = dl.shape[2]
    keep = gamma.shape[0] > 0
    weigh = dl.shape[0] > 0
    xi = np.zeros((S, S))
    g0 = np.zeros(S)
    beta = np.ones(S)
    nxt = np.empty(S)
    for t in range(T - 1, -1, -1):
        for s in range(S):
            w = alpha[t, s] * beta[s]
            if keep:
                gamma[t, s] = w
            if weigh:
                for m in range(M):
                    g[s, m, 0] += w * dl[t, s, m, 0]
                    g[s, m, 1] += w * dl[t, s, m, 1]
                    g[s, m, 2] += w * dl[t, s, m, 2]
            if starts[t]:
                g0[s] += w
        if t == 0:
            break
        if starts[t]:
            for s in range(S):
                beta[s] = 1.0
            continue
        # xi_t(i, j) = alpha_{t-1}(i) P_ij bb_t(j) beta_t(j) / c_t
        rc = 1.0 / c[t]
        for j in range(S):
            nxt[j] = bb[t, j] * beta[j] * rc
        for i in range(S):
            acc = 0.0
            ai = alpha[t - 1, i]
            for j in range(S):
                w = P[i, j] * nxt[j]
                xi[i, j] += ai * w
                acc += w
            beta[i] = acc
    return xi, g0


@numba.njit(**_NJIT)
def _backward_two(alpha, bb, c, P, starts, gamma, dl, g):
    """:func:`_backward_pass` for two states, with the recursion and sums in registers."""
    T = alpha.shape[0]
    M = dl.shape[2]
    keep = gamma.shape[0] > 0
    weigh = dl.shape[0] > 0
    p00, p01, p10, p11 = P[0, 0], P[0, 1], P[1, 0], P[1, 1]
    b0 = 1.0
    b1 = 1.0
    x00 = 0.0
    x01 = 0.0
    x10 = 0.0
    x11 = 0.0
    s0 = 0.0
    s1 = 0.0
    for t in range(T - 1, -1, -1):
        w0 = alpha[t, 0] * b0
        w1 = alpha[t, 1] * b1
        if keep:
            gamma[t, 0] = w0
            gamma[t, 1] = w1
        if weigh:
            for m in range(M):
                g[0, m, 0] += w0 * dl[t, 0, m, 0]
                g[0, m, 1] += w0 * dl[t, 0, m, 1]
                g[0, m, 2] += w0 * dl[t, 0, m, 2]
                g[1, m, 0] += w1 * dl[t, 1, m, 0]
                g[1, m, 1] += w1 * dl[t, 1, m, 1]
                g[1, m, 2] += w1 * dl[t, 1, m, 2]
        if starts[t]:
            s0 += w0
            s1 += w1
        if t == 0:
            break
        if starts[t]:
            b0 = 1.0
            b1 = 1.0
            continue
        rc = 1.0 / c[t]
        n0 = bb[t, 0] * b0 * rc
        n1 = bb[t, 1] * b1 * rc
        a0 = alpha[t - 1, 0]
        a1 = alpha[t - 1, 1]
        w00 = p00 * n0
        w01 = p01 * n1
        w10 = p10 * n0
        w11 = p11 * n1
        x00 += a0 * w00
        x01 += a0 * w01
        x10 += a1 * w10
        x11 += a1 * w11
        b0 = w00 + w01
        b1 = w10 + w11
    xi = np.empty((2, 2))
    xi[0, 0] = x00
    xi[0, 1] = x01
    xi[1, 0] = x10
    xi[1, 1] = x11
    g0 = np.empty(2)
    g0[0] = s0
    g0[1] = s1
    return xi, g0


@numba.njit(**_NJIT)
def _backward(alpha, bb, c, P, starts):
    """Scaled backward pass: gamma (T,S), xi summed (S,S), gamma at segment starts (S,)."""
    gamma = np.empty(alpha.shape)
    xi, g0 = _backward_pass(alpha, bb, c, P, starts, gamma, np.empty((0, 1, 1, 3)),
                            np.empty((1, 1, 3)))
    return gamma, xi, g0


@numba.njit(**_NJIT)
def _hmm_grad(logb, logP, logpi, starts):
    S = logb.shape[1]
    P = np.exp(logP)
    pi = np.exp(logpi)
    logL, alpha, bb, c, ok = _forward(logb, P, pi, starts)
    if not ok:
        return -np.inf, np.zeros(logb.shape), np.zeros((S, S)), np.zeros(S)
    gamma, xi, g0 = _backward(alpha, bb, c, P, starts)
    return logL, gamma, xi, g0


@numba.njit(**_NJIT)
def _log_x_sum(x, kind, starts):
    """``sum log x`` over the samples whose densities carry the ``x`` factor (every sample
    under the stationary density, the non-start samples under the transition density); as
    logarithms of running products, renormalised before they could over- or underflow."""
    T, M = x.shape
    out = 0.0
    prod = 1.0
    for t in range(T):
        if kind == 0 and starts[t]:
            continue
        for m in range(M):
            v = x[t, m]
            if 1e-100 < v < 1e100:
                prod *= v
                if not (1e-200 < prod < 1e200):
                    out += math.log(prod)
                    prod = 1.0
            else:
                out += math.log(v)
    return out + math.log(prod)


@numba.njit(**_NJIT)
def _envelope_hmm(x, sigma, a, D, logP, logpi, dt, kind, starts):
    """Fused envelope-HMM log-likelihood and gradient.

    The emission densities of every state with their derivatives
    (:func:`~nmm_inference.switching.envelope_likelihood._emission_pass`, the one
    implementation shared with :func:`~nmm_inference.switching.envelope_likelihood._emissions`)
    feed one scaled forward-backward pass: :func:`_forward_core` on the factored densities
    (no logarithm per sample) and :func:`_backward_pass`, whose sweep weighs the emission
    derivatives by the posterior state probabilities (Fisher's identity).  The
    state-independent ``log x`` terms are added once.  Returns log L and its gradient with
    respect to sigma, a, D (S, M), log P (S, S) and log pi (S,).
    """
    T, M = x.shape
    S = sigma.shape[0]
    g_s = np.zeros((S, M))
    g_a = np.zeros((S, M))
    g_D = np.zeros((S, M))
    f = np.ones((T, S))
    q = np.zeros((T, S))
    dl = np.empty((T, S, M, 3))
    _emission_pass(x, sigma, a, D, dt, kind, starts, True, f, q, dl)
    P = np.exp(logP)
    logL, alpha, bb, c, ok = _forward_core(f, q, 1.0, P, np.exp(logpi), starts)
    if not ok:
        return -np.inf, g_s, g_a, g_D, np.zeros((S, S)), np.zeros(S)
    g = np.zeros((S, M, 3))
    xi, g0 = _backward_pass(alpha, bb, c, P, starts, np.empty((0, S)), dl, g)
    for s in range(S):
        for m in range(M):
            g_s[s, m] = g[s, m, 0]
            g_a[s, m] = g[s, m, 1]
            g_D[s, m] = g[s, m, 2]
    return logL + _log_x_sum(x, kind, starts), g_s, g_a, g_D, xi, g0


@numba.njit(**_NJIT)
def _viterbi(logb, logP, logpi, starts):
    T, S = logb.shape
    delta = np.empty(S)
    new = np.empty(S)
    back = np.zeros((T, S), dtype=np.int64)
    for s in range(S):
        delta[s] = logpi[s] + logb[0, s]
    for t in range(1, T):
        for j in range(S):
            if starts[t]:
                best = -np.inf
                arg = 0
                for i in range(S):
                    if delta[i] > best:
                        best = delta[i]
                        arg = i
                new[j] = best + logpi[j] + logb[t, j]
                back[t, j] = arg
            else:
                best = -np.inf
                arg = 0
                for i in range(S):
                    v = delta[i] + logP[i, j]
                    if v > best:
                        best = v
                        arg = i
                new[j] = best + logb[t, j]
                back[t, j] = arg
        for j in range(S):
            delta[j] = new[j]
    path = np.empty(T, dtype=np.int64)
    best = -np.inf
    for s in range(S):
        if delta[s] > best:
            best = delta[s]
            path[T - 1] = s
    for t in range(T - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path, best


@numba.njit(**_NJIT)
def _ffbs(alpha, P, starts, u):
    """Backward sampling of state paths from filtered probabilities (u: (n_paths, T) uniforms)."""
    n, T = u.shape
    S = alpha.shape[1]
    paths = np.empty((n, T), dtype=np.int64)
    w = np.empty(S)
    for k in range(n):
        nxt = -1
        for t in range(T - 1, -1, -1):
            tot = 0.0
            for i in range(S):
                if nxt < 0:
                    w[i] = alpha[t, i]
                else:
                    w[i] = alpha[t, i] * P[i, nxt]
                tot += w[i]
            r = u[k, t] * tot
            acc = 0.0
            s_pick = S - 1
            for i in range(S):
                acc += w[i]
                if r < acc:
                    s_pick = i
                    break
            paths[k, t] = s_pick
            nxt = -1 if starts[t] else s_pick
    return paths


# ----------------------------------------------------------------------------------------
# numpy-level API
# ----------------------------------------------------------------------------------------

def check_log_transition(log_P, log_pi=None):
    """Validate a log transition matrix (rows sum to 1) and log initial distribution.

    Parameters
    ----------
    log_P : array-like, shape (S, S)
        ``log P(s_t = j | s_{t-1} = i)``.
    log_pi : array-like, shape (S,), optional
        Log initial probabilities (default: the stationary distribution of P).

    Returns
    -------
    log_P, log_pi : ndarray

    Raises
    ------
    ParameterError
        For wrong shapes, NaN, or rows that do not sum to 1 (to 1e-8).
    """
    lP = np.asarray(log_P, dtype=float)
    if lP.ndim != 2 or lP.shape[0] != lP.shape[1] or lP.shape[0] < 1:
        raise ParameterError(f"log_P must be a square (S, S) matrix, got shape {lP.shape}")
    if np.any(np.isnan(lP)):
        raise ParameterError("log_P has NaN entries")
    rows = np.exp(lP).sum(axis=1)
    if not np.allclose(rows, 1.0, atol=1e-8):
        raise ParameterError(f"rows of exp(log_P) must sum to 1, got {rows.tolist()}")
    if log_pi is None:
        lpi = np.log(stationary_distribution(np.exp(lP)))
    else:
        lpi = np.asarray(log_pi, dtype=float)
        if lpi.shape != (lP.shape[0],) or np.any(np.isnan(lpi)):
            raise ParameterError(f"log_pi must have shape ({lP.shape[0]},) without NaN, got "
                                 f"{lpi.shape}")
        if not np.isclose(np.exp(lpi).sum(), 1.0, atol=1e-8):
            raise ParameterError(f"exp(log_pi) must sum to 1, got {np.exp(lpi).sum()}")
    return np.ascontiguousarray(lP), np.ascontiguousarray(lpi)


def stationary_distribution(P):
    """Stationary distribution ``pi P = pi`` of a transition matrix (``pi >= 0``, sums to 1).

    Parameters
    ----------
    P : array-like, shape (S, S)
        Transition matrix (rows sum to 1).

    Returns
    -------
    ndarray, shape (S,)
    """
    P = np.asarray(P, dtype=float)
    S = P.shape[0]
    A = np.vstack([P.T - np.eye(S), np.ones((1, S))])
    b = np.zeros(S + 1)
    b[-1] = 1.0
    pi = np.linalg.lstsq(A, b, rcond=None)[0]
    pi = np.clip(pi, 0.0, None)
    return pi / pi.sum()


def transition_matrix(rates, dt):
    """One-step transition matrix ``expm(Q dt)`` of a continuous-time chain.

    Parameters
    ----------
    rates : array-like, shape (S, S)
        Switching rates ``k_ij`` (1/s) from state i to j; the diagonal is ignored.
    dt : float
        Step (s).

    Returns
    -------
    ndarray, shape (S, S)
    """
    from scipy.linalg import expm

    k = np.asarray(rates, dtype=float)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ParameterError(f"rates must be a square matrix, got shape {k.shape}")
    Q = k.copy()
    np.fill_diagonal(Q, 0.0)
    if np.any(Q < 0) or not np.all(np.isfinite(Q)):
        raise ParameterError(f"rates must be finite and non-negative, got {k.tolist()}")
    np.fill_diagonal(Q, -Q.sum(axis=1))
    return expm(Q * _check_dt(dt))


def _check_logb(log_b):
    lb = np.ascontiguousarray(np.asarray(log_b, dtype=float))
    if lb.ndim != 2:
        raise ParameterError(f"log_b must have shape (n_times, n_states), got {lb.shape}")
    if np.any(np.isnan(lb)):
        raise ParameterError("log_b has NaN entries")
    return lb


def hmm_logp(log_b, log_P, log_pi=None, *, segment_starts=None, gradient=False):
    """Log-likelihood of an HMM with given log emission densities (forward algorithm).

    Parameters
    ----------
    log_b : array-like, shape (n_times, n_states)
        ``log p(y_t | state)``.
    log_P : array-like, shape (n_states, n_states)
        Log transition matrix.
    log_pi : array-like, shape (n_states,), optional
        Log initial distribution (default: stationary distribution of P).
    segment_starts : array-like of int, optional
        Samples where a new segment starts (the chain restarts from pi).
    gradient : bool, optional
        Also return ``(d/dlog_b, d/dlog_P, d/dlog_pi)``.

    Returns
    -------
    float, or (float, tuple of ndarray)

    Examples
    --------
    >>> import numpy as np
    >>> lb = np.log(np.full((4, 2), 0.5))
    >>> lP = np.log(np.array([[0.9, 0.1], [0.2, 0.8]]))
    >>> round(hmm_logp(lb, lP), 6) == round(4 * np.log(0.5), 6)
    True
    """
    lb = _check_logb(log_b)
    lP, lpi = check_log_transition(log_P, log_pi)
    if lb.shape[1] != lP.shape[0]:
        raise ParameterError(f"log_b has {lb.shape[1]} states, log_P {lP.shape[0]}")
    starts = _segment_starts(lb.shape[0], segment_starts)
    logL, gamma, xi, g0 = _hmm_grad(lb, lP, lpi, starts)
    if gradient:
        return float(logL), (gamma, xi, g0)
    return float(logL)


def forward_backward(log_b, log_P, log_pi=None, *, segment_starts=None):
    """Posterior state probabilities and expected transition counts.

    Parameters
    ----------
    log_b, log_P, log_pi, segment_starts
        See :func:`hmm_logp`.

    Returns
    -------
    dict
        ``logp`` (float), ``gamma`` (n_times, n_states) posterior state probabilities,
        ``xi`` (n_states, n_states) expected transition counts, ``alpha`` (n_times, n_states)
        filtered probabilities.
    """
    lb = _check_logb(log_b)
    lP, lpi = check_log_transition(log_P, log_pi)
    starts = _segment_starts(lb.shape[0], segment_starts)
    P = np.exp(lP)
    logL, alpha, bb, c, ok = _forward(lb, P, np.exp(lpi), starts)
    if not ok:
        raise ParameterError("the observations have zero likelihood under every state at some "
                             "sample (log_b = -inf for all states)")
    gamma, xi, _ = _backward(alpha, bb, c, P, starts)
    return {"logp": float(logL), "gamma": gamma, "xi": xi, "alpha": alpha}


def viterbi(log_b, log_P, log_pi=None, *, segment_starts=None):
    """Most probable state path.

    Parameters
    ----------
    log_b, log_P, log_pi, segment_starts
        See :func:`hmm_logp`.

    Returns
    -------
    path : ndarray of int, shape (n_times,)
    logp : float
        Joint log probability of the path and the data.
    """
    lb = _check_logb(log_b)
    lP, lpi = check_log_transition(log_P, log_pi)
    starts = _segment_starts(lb.shape[0], segment_starts)
    path, best = _viterbi(lb, lP, lpi, starts)
    return path, float(best)


def sample_paths(log_b, log_P, log_pi=None, *, n_paths=1, segment_starts=None, random_seed=None):
    """Draw state paths from their posterior (forward filtering, backward sampling).

    Parameters
    ----------
    log_b, log_P, log_pi, segment_starts
        See :func:`hmm_logp`.
    n_paths : int, optional
        Number of independent paths.
    random_seed : None, int or numpy.random.Generator
        Seed for :func:`numpy.random.default_rng`.

    Returns
    -------
    ndarray of int, shape (n_paths, n_times)
    """
    lb = _check_logb(log_b)
    lP, lpi = check_log_transition(log_P, log_pi)
    starts = _segment_starts(lb.shape[0], segment_starts)
    P = np.exp(lP)
    logL, alpha, bb, c, ok = _forward(lb, P, np.exp(lpi), starts)
    if not ok:
        raise ParameterError("zero likelihood under every state at some sample")
    rng = np.random.default_rng(random_seed)
    u = rng.random((int(n_paths), lb.shape[0]))
    return _ffbs(alpha, P, starts, u)


def envelope_hmm_logp(envelope, *, sigma, a, D, log_P, log_pi=None, sfreq, kind="transition",
                      segment_starts=None, gradient=False):
    """Log-likelihood of envelopes under the switching amplitude-SDE model (states marginalised).

    Parameters
    ----------
    envelope : array-like, shape (n_times,) or (n_times, n_bands)
        Envelope in sensor units (> 0).
    sigma, a, D : array-like, shape (n_states, n_bands)
        Per-state SDE parameters in sensor units (see
        :mod:`nmm_inference.switching.envelope_likelihood`).
    log_P : array-like, shape (n_states, n_states)
        Log one-step transition matrix (at the envelope rate).
    log_pi : array-like, shape (n_states,), optional
        Log initial distribution (default: stationary).
    sfreq : float
        Envelope rate (Hz).
    kind : {"transition", "stationary"}, optional
        Emission density.
    segment_starts : array-like of int, optional
        Starts of contiguous segments.
    gradient : bool, optional
        Also return a dict of gradients (``sigma``, ``a``, ``D``, ``log_P``, ``log_pi``).

    Returns
    -------
    float or (float, dict)
    """
    x = check_envelope(envelope)
    lP, lpi = check_log_transition(log_P, log_pi)
    S = lP.shape[0]
    s, aa, dd = _state_params(sigma, a, D, x.shape[1], n_states=S)
    starts = _segment_starts(x.shape[0], segment_starts)
    out = _envelope_hmm(x, s, aa, dd, lP, lpi, 1.0 / _check_dt(sfreq), _kind_code(kind), starts)
    if not gradient:
        return float(out[0])
    return float(out[0]), {"sigma": out[1], "a": out[2], "D": out[3], "log_P": out[4],
                           "log_pi": out[5]}
