"""Forward algorithm, forward-backward, Viterbi and path sampling against brute force."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from nmm_inference.errors import ParameterError
from nmm_inference.switching.envelope_likelihood import envelope_emissions, envelope_loglik
from nmm_inference.switching.hmm import (_hmm_grad, check_log_transition, envelope_hmm_logp,
                                         forward_backward, hmm_logp, sample_paths,
                                         stationary_distribution, transition_matrix, viterbi)


@pytest.fixture
def small_hmm():
    rng = np.random.default_rng(0)
    T, S = 6, 3
    lb = rng.normal(size=(T, S))
    P = rng.dirichlet(np.ones(S), size=S)
    pi = rng.dirichlet(np.ones(S))
    return lb, P, pi


def _brute(lb, P, pi):
    T, S = lb.shape
    tot, best, bp = 0.0, -np.inf, None
    for path in itertools.product(range(S), repeat=T):
        lp = np.log(pi[path[0]]) + lb[0, path[0]]
        for t in range(1, T):
            lp += np.log(P[path[t - 1], path[t]]) + lb[t, path[t]]
        tot += np.exp(lp)
        if lp > best:
            best, bp = lp, path
    return np.log(tot), best, np.array(bp)


def test_forward_matches_enumeration(small_hmm):
    lb, P, pi = small_hmm
    ref, best, bp = _brute(lb, P, pi)
    np.testing.assert_allclose(hmm_logp(lb, np.log(P), np.log(pi)), ref, rtol=1e-13)
    path, vbest = viterbi(lb, np.log(P), np.log(pi))
    np.testing.assert_array_equal(path, bp)
    np.testing.assert_allclose(vbest, best, rtol=1e-13)


def test_gradient_is_posterior_counts(small_hmm):
    lb, P, pi = small_hmm
    T, S = lb.shape
    starts = np.zeros(T, bool)
    starts[0] = True
    logL, gamma, xi, g0 = _hmm_grad(lb, np.log(P), np.log(pi), starts)
    h = 1e-6
    fd_b = np.zeros_like(lb)
    for idx in np.ndindex(lb.shape):
        e = np.zeros_like(lb)
        e[idx] = h
        fd_b[idx] = (_hmm_grad(lb + e, np.log(P), np.log(pi), starts)[0]
                     - _hmm_grad(lb - e, np.log(P), np.log(pi), starts)[0]) / (2 * h)
    fd_P = np.zeros((S, S))
    for idx in np.ndindex(S, S):
        e = np.zeros((S, S))
        e[idx] = h
        fd_P[idx] = (_hmm_grad(lb, np.log(P) + e, np.log(pi), starts)[0]
                     - _hmm_grad(lb, np.log(P) - e, np.log(pi), starts)[0]) / (2 * h)
    # central differences: ~1e-10 absolute for O(1) log-likelihoods
    np.testing.assert_allclose(gamma, fd_b, atol=1e-8)
    np.testing.assert_allclose(xi, fd_P, atol=1e-8)
    np.testing.assert_allclose(g0, gamma[0], atol=1e-14)    # one segment: start = sample 0
    np.testing.assert_allclose(gamma.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(xi.sum(), T - 1, rtol=1e-12)  # one transition per step


def test_two_states_match_enumeration_and_finite_differences():
    """The two-state forward and backward passes (kept in registers) against brute force, with
    a segment start, a sample where one state has zero density and a tie."""
    rng = np.random.default_rng(9)
    T = 7
    lb = rng.normal(size=(T, 2))
    lb[2, 1] = -np.inf
    lb[4, 1] = lb[4, 0]
    P = np.array([[0.8, 0.2], [0.35, 0.65]])
    pi = np.array([0.3, 0.7])
    starts = np.zeros(T, bool)
    starts[[0, 4]] = True
    ref = _brute(lb[:4], P, pi)[0] + _brute(lb[4:], P, pi)[0]
    logL, gamma, xi, g0 = _hmm_grad(lb, np.log(P), np.log(pi), starts)
    np.testing.assert_allclose(logL, ref, rtol=1e-13)          # two independent segments
    h = 1e-6
    fd = np.zeros((2, 2))
    for idx in np.ndindex(2, 2):
        e = np.zeros((2, 2))
        e[idx] = h
        fd[idx] = (_hmm_grad(lb, np.log(P) + e, np.log(pi), starts)[0]
                   - _hmm_grad(lb, np.log(P) - e, np.log(pi), starts)[0]) / (2 * h)
    np.testing.assert_allclose(xi, fd, atol=1e-8)              # central differences ~1e-10
    np.testing.assert_allclose(g0, gamma[0] + gamma[4], atol=1e-14)
    np.testing.assert_allclose(gamma.sum(axis=1), 1.0, rtol=1e-12)
    assert gamma[2, 1] == 0.0


def test_segments_are_independent(small_hmm):
    lb, P, pi = small_hmm
    whole = hmm_logp(lb, np.log(P), np.log(pi), segment_starts=[3])
    parts = hmm_logp(lb[:3], np.log(P), np.log(pi)) + hmm_logp(lb[3:], np.log(P), np.log(pi))
    np.testing.assert_allclose(whole, parts, rtol=1e-13)   # restart from pi at sample 3


def test_sampled_paths_have_posterior_marginals(small_hmm):
    lb, P, pi = small_hmm
    paths = sample_paths(lb, np.log(P), np.log(pi), n_paths=40_000, random_seed=1)
    fb = forward_backward(lb, np.log(P), np.log(pi))
    freq = np.stack([(paths == s).mean(axis=0) for s in range(3)], axis=1)
    # binomial sd <= 0.0025 per entry with 40 000 paths
    np.testing.assert_allclose(freq, fb["gamma"], atol=0.012)
    # pairwise: expected transition counts of the sampled paths = xi
    counts = np.zeros((3, 3))
    for i, j in itertools.product(range(3), range(3)):
        counts[i, j] = np.mean(np.sum((paths[:, :-1] == i) & (paths[:, 1:] == j), axis=1))
    np.testing.assert_allclose(counts, fb["xi"], atol=0.03)


def test_same_seed_same_paths(small_hmm):
    lb, P, pi = small_hmm
    a = sample_paths(lb, np.log(P), np.log(pi), n_paths=5, random_seed=3)
    b = sample_paths(lb, np.log(P), np.log(pi), n_paths=5, random_seed=3)
    np.testing.assert_array_equal(a, b)


def test_fused_envelope_hmm_equals_generic():
    rng = np.random.default_rng(2)
    x = 0.2 + np.abs(rng.normal(size=(400, 2)))
    sig = np.array([[-3.0, 1.0], [2.0, -2.0]])
    a = np.array([[-1.0, -2.0], [-1.5, -1.0]])
    D = np.array([[0.4, 0.3], [0.5, 0.2]])
    P = np.array([[0.95, 0.05], [0.1, 0.9]])
    for kind in ("transition", "stationary"):
        lb = envelope_emissions(x, sigma=sig, a=a, D=D, sfreq=20.0, kind=kind)
        lp, g = envelope_hmm_logp(x, sigma=sig, a=a, D=D, log_P=np.log(P), sfreq=20.0, kind=kind,
                                  gradient=True)
        ref, (gamma, xi, g0) = hmm_logp(lb, np.log(P), gradient=True)
        np.testing.assert_allclose(lp, ref, rtol=1e-12)
        np.testing.assert_allclose(g["log_P"], xi, rtol=1e-10)
        # gradient w.r.t. the SDE parameters against central differences
        h = 1e-6
        for name, arr in (("sigma", sig), ("a", a), ("D", D)):
            fd = np.zeros_like(arr)
            for idx in np.ndindex(arr.shape):
                kw = {"sigma": sig, "a": a, "D": D}
                plus = {k: v.copy() for k, v in kw.items()}
                minus = {k: v.copy() for k, v in kw.items()}
                plus[name][idx] += h
                minus[name][idx] -= h
                fd[idx] = (envelope_hmm_logp(x, log_P=np.log(P), sfreq=20.0, kind=kind, **plus)
                           - envelope_hmm_logp(x, log_P=np.log(P), sfreq=20.0, kind=kind,
                                               **minus)) / (2 * h)
            # log-likelihood ~1e3: central-difference error ~1e-6 relative
            np.testing.assert_allclose(g[name], fd, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("kind", ["transition", "stationary"])
def test_fused_envelope_hmm_with_segments_equals_generic(kind):
    """Segment starts inside and at the edges of the emission kernel's 128-sample blocks."""
    rng = np.random.default_rng(6)
    x = 0.1 + np.abs(rng.normal(size=(530, 1)))
    sig = np.array([[-5.0], [1.5]])
    a = np.array([[-2.0], [-3.0]])
    D = np.array([[0.3], [0.2]])
    P = np.array([[0.9, 0.1], [0.3, 0.7]])
    lpi = np.log([0.4, 0.6])
    seg = [128, 129, 200, 513]
    lb = envelope_emissions(x, sigma=sig, a=a, D=D, sfreq=25.0, kind=kind, segment_starts=seg)
    lp, g = envelope_hmm_logp(x, sigma=sig, a=a, D=D, log_P=np.log(P), log_pi=lpi, sfreq=25.0,
                              kind=kind, segment_starts=seg, gradient=True)
    ref, (gamma, xi, g0) = hmm_logp(lb, np.log(P), lpi, segment_starts=seg, gradient=True)
    # same emissions and recursion; the fused kernel adds the log x terms once at the end
    np.testing.assert_allclose(lp, ref, rtol=1e-12)
    np.testing.assert_allclose(g["log_P"], xi, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g["log_pi"], g0, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g0.sum(), 1 + len(seg), rtol=1e-12)   # one start per segment


def test_one_state_is_the_plain_transition_likelihood():
    rng = np.random.default_rng(4)
    x = 0.3 + np.abs(rng.normal(size=200))
    one = envelope_hmm_logp(x, sigma=[[1.0]], a=[[-2.0]], D=[[0.3]], log_P=[[0.0]], sfreq=10.0)
    np.testing.assert_allclose(one, envelope_loglik(x, sigma=1.0, a=-2.0, D=0.3, sfreq=10.0),
                               rtol=1e-13)


def test_transition_matrix_and_stationary_distribution():
    k01, k10, dt = 0.7, 0.2, 0.05
    P = transition_matrix([[0, k01], [k10, 0]], dt)
    K = k01 + k10
    p01 = k01 / K * (1 - np.exp(-K * dt))
    np.testing.assert_allclose(P, [[1 - p01, p01], [k10 / K * (1 - np.exp(-K * dt)),
                                                    1 - k10 / K * (1 - np.exp(-K * dt))]],
                               rtol=1e-12)          # two-state closed form
    np.testing.assert_allclose(stationary_distribution(P), [k10 / K, k01 / K], rtol=1e-10)


def test_bad_transition_input():
    with pytest.raises(ParameterError, match="sum to 1"):
        check_log_transition(np.log([[0.5, 0.4], [0.5, 0.5]]))
    with pytest.raises(ParameterError, match="square"):
        check_log_transition(np.zeros((2, 3)))
    with pytest.raises(ParameterError, match="non-negative"):
        transition_matrix([[0, -1.0], [1.0, 0]], 0.1)
    with pytest.raises(ParameterError, match="states"):
        hmm_logp(np.zeros((4, 3)), np.log(np.full((2, 2), 0.5)))
