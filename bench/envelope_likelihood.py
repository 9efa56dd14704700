"""Benchmark: envelope log-likelihood + gradient, 10 minutes at 100 Hz, two hidden states.

Run: ``.venv/bin/python bench/envelope_likelihood.py`` (prints a table; no assertions).

The data are 60 000 envelope samples (600 s at 100 Hz) simulated from the switching
amplitude-SDE model itself (``simulate_switching_envelope``).  Timed, best of many repeats
(the host is shared: the best run is the one least disturbed), for both emission kinds, the Rice
transition density (``"transition"``) and the stationary envelope density of each state
(``"stationary"``):

* ``fused kernel``: :func:`nmm_inference.switching.hmm._envelope_hmm` -- the emission
  densities of both states with their derivatives, forward-backward, gradient with respect to
  the six SDE parameters and the 2 x 2 log transition matrix (numba, one thread); wall and CPU
  time, and its two parts timed alone: the emission pass with derivatives
  (``_emission_pass``) and the forward-backward pass on its output (``_forward_core`` +
  ``_backward_pass`` with the gradient weighting);
* ``emission pass, 2 threads``: the same emission pass with its (state, block) loop under
  ``numba.prange`` (defined here, from the package's per-block kernel), at 1 and 2 threads --
  a measurement only: the Op stays serial, because samplers (nutpie) already run chains in
  threads;
* ``PyTensor Op (NUMBA)``: the same through :class:`EnvelopeHMMOp` inside a compiled graph that
  also maps (sigma, log a, log D, log rates) to the Op's inputs, value and ``pytensor.grad``,
  compiled with ``mode="NUMBA"`` (what nutpie runs);
* baseline, timed in the same run: a numpy/scipy implementation of the same quantities
  (vectorised emissions with ``scipy.special.i0e``, forward and backward passes as Python loops
  over time with numpy over states).  Both return the same log-likelihood and gradient.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402
from scipy import special  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nmm_inference.switching.envelope_likelihood import (  # noqa: E402
    _BLOCK, _emission_pass, _transition_block, _transition_consts)
from nmm_inference.switching.hmm import (  # noqa: E402
    _backward_pass, _envelope_hmm, _forward_core, transition_matrix)
from nmm_inference.switching.simulate import simulate_switching_envelope  # noqa: E402

SFREQ = 100.0
SIG = np.array([[-6.0], [3.0]])
A = np.array([[-4.0], [-4.0]])
D = np.array([[0.6], [0.6]])
RATES = np.array([[0.0, 0.5], [0.8, 0.0]])
KINDS = (("transition", 0), ("stationary", 1))


def best_time(fn, *, n=10, repeat=30, clock=time.perf_counter):
    """Best mean time per call over ``repeat`` runs of ``n`` calls (s)."""
    fn()
    best = np.inf
    for _ in range(repeat):
        t = clock()
        for _ in range(n):
            fn()
        best = min(best, (clock() - t) / n)
    return best


@numba.njit(parallel=True, error_model="numpy")
def emission_pass_parallel(x, sigma, a, D, dt, starts, f, q, dlogb):
    """The transition-density emission pass with its (state, block) loop under prange."""
    T, M = x.shape
    S = sigma.shape[0]
    nb = (T - 1 + _BLOCK - 1) // _BLOCK
    for job in numba.prange(S * nb):
        s = job // nb
        t0 = 1 + (job % nb) * _BLOCK
        tmp = np.empty((12, _BLOCK))
        for m in range(M):
            c = _transition_consts(sigma[s, m], a[s, m], D[s, m], dt)
            _transition_block(x, m, t0, min(_BLOCK, T - t0), sigma[s, m], c, starts, True, s,
                              f, q, dlogb, tmp)


def numpy_baseline(x, sig, a, D, lP, lpi, dt):
    """Same log-likelihood and gradient with numpy/scipy (Python loops over time)."""
    x0, x1 = x[:-1, 0], x[1:, 0]
    S = sig.shape[0]
    logb = np.zeros((x.shape[0], S))
    dlogb = np.zeros((x.shape[0], S, 3))
    h = 1e-6
    for s in range(S):
        def lp(sv, av, Dv):
            I0 = x0 ** 2
            y = 2 * sv * dt
            H = np.expm1(y) / y
            den = 1 - 2 * av * I0 * dt * H
            I1 = I0 * np.exp(y) / den
            lam = sv + 1.5 * av * (I0 + I1)
            yv = 2 * lam * dt
            v = Dv * dt * np.expm1(yv) / yv
            nu = np.sqrt(I1)
            u = x1 * nu / v
            return np.log(x1 / v) - (x1 - nu) ** 2 / (2 * v) + np.log(special.i0e(u))
        base = lp(sig[s, 0], a[s, 0], D[s, 0])
        logb[1:, s] = base
        # derivatives by central differences (vectorised): the baseline's gradient
        dlogb[1:, s, 0] = (lp(sig[s, 0] + h, a[s, 0], D[s, 0]) - lp(sig[s, 0] - h, a[s, 0], D[s, 0])) / (2 * h)
        dlogb[1:, s, 1] = (lp(sig[s, 0], a[s, 0] + h, D[s, 0]) - lp(sig[s, 0], a[s, 0] - h, D[s, 0])) / (2 * h)
        dlogb[1:, s, 2] = (lp(sig[s, 0], a[s, 0], D[s, 0] * (1 + h))
                           - lp(sig[s, 0], a[s, 0], D[s, 0] * (1 - h))) / (2 * h * D[s, 0])
    P = np.exp(lP)
    T = x.shape[0]
    alpha = np.empty((T, S))
    c = np.empty(T)
    mx = logb.max(axis=1)
    bb = np.exp(logb - mx[:, None])
    a_t = np.exp(lpi) * bb[0]
    c[0] = a_t.sum()
    alpha[0] = a_t / c[0]
    for t in range(1, T):
        a_t = (alpha[t - 1] @ P) * bb[t]
        c[t] = a_t.sum()
        alpha[t] = a_t / c[t]
    logL = np.sum(np.log(c) + mx)
    beta = np.ones(S)
    gamma = np.empty((T, S))
    xi = np.zeros((S, S))
    for t in range(T - 1, 0, -1):
        gamma[t] = alpha[t] * beta
        w = bb[t] * beta / c[t]
        xi += np.outer(alpha[t - 1], w) * P
        beta = P @ w
    gamma[0] = alpha[0] * beta
    g = np.einsum("ts,tsk->sk", gamma, dlogb)
    return logL, g, xi


def main():
    load0 = os.getloadavg()
    env, states = simulate_switching_envelope(sigma=SIG, a=A, D=D, rates=RATES, sfreq=SFREQ,
                                              duration=600.0, random_seed=0)
    x = np.ascontiguousarray(env)
    n = x.shape[0]
    dt = 1.0 / SFREQ
    P = transition_matrix(RATES, dt)
    lP = np.log(P)
    lpi = np.log(np.array([RATES[1, 0], RATES[0, 1]]) / RATES.sum())
    starts = np.zeros(n, dtype=np.bool_)
    starts[0] = True
    out = _envelope_hmm(x, SIG, A, D, lP, lpi, dt, 0, starts)

    t_kernel, cpu_kernel, t_emis, t_fb = {}, {}, {}, {}
    f = np.ones((n, 2))
    q = np.zeros((n, 2))
    dl = np.empty((n, 2, 1, 3))
    for kind, code in KINDS:
        t_kernel[kind] = best_time(lambda c=code: _envelope_hmm(x, SIG, A, D, lP, lpi, dt, c,
                                                                starts))
        cpu_kernel[kind] = best_time(lambda c=code: _envelope_hmm(x, SIG, A, D, lP, lpi, dt, c,
                                                                  starts),
                                     clock=time.process_time)

        def emis(c=code):
            f[:] = 1.0
            q[:] = 0.0
            _emission_pass(x, SIG, A, D, dt, c, starts, True, f, q, dl)

        t_emis[kind] = best_time(emis)
        emis()
        f1, q1 = f.copy(), q.copy()

        def fb():
            _, alpha, bb, cc, _ = _forward_core(f1, q1, 1.0, P, np.exp(lpi), starts)
            _backward_pass(alpha, bb, cc, P, starts, np.empty((0, 2)), dl, np.zeros((2, 1, 3)))

        t_fb[kind] = best_time(fb)

    # the emission pass with prange, at 1 and 2 threads (same result as the serial pass)
    t_par = {}
    f_par = np.ones((n, 2))
    q_par = np.zeros((n, 2))
    dl_par = np.empty((n, 2, 1, 3))
    n_threads = numba.get_num_threads()
    for k in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
        numba.set_num_threads(k)

        def emis_par():
            f_par[:] = 1.0
            q_par[:] = 0.0
            emission_pass_parallel(x, SIG, A, D, dt, starts, f_par, q_par, dl_par)

        t_par[k] = best_time(emis_par)
    numba.set_num_threads(n_threads)
    emis(0)
    par_err = max(np.max(np.abs(f_par - f)), np.max(np.abs(q_par - q)))

    import pytensor
    import pytensor.tensor as pt

    from nmm_inference.switching.model import log_transition_from_rates
    from nmm_inference.switching.pytensor_ops import envelope_hmm_logp

    sig_v = pt.dvector("sigma")
    la_v = pt.dscalar("log_neg_a")
    lD_v = pt.dscalar("log_D")
    lk_v = pt.dvector("log_rates")
    k = pt.exp(lk_v)
    rates = pt.stack([pt.stack([pt.zeros(()), k[0]]), pt.stack([k[1], pt.zeros(())])])
    lP_v, lpi_v = log_transition_from_rates(rates, dt)
    a_m = pt.fill(sig_v[:, None], -pt.exp(la_v))
    D_m = pt.fill(sig_v[:, None], pt.exp(lD_v))
    ins = [sig_v, la_v, lD_v, lk_v]
    vals = [SIG[:, 0], np.log(4.0), np.log(0.6), np.log([0.5, 0.8])]
    t_op, cpu_op, res = {}, {}, None
    for kind, _ in KINDS:
        lp = envelope_hmm_logp(x, sig_v[:, None], a_m, D_m, lP_v, lpi_v, starts, dt=dt, kind=kind)
        f = pytensor.function(ins, [lp] + pytensor.grad(lp, ins), mode="NUMBA")
        if kind == "transition":
            res = f(*vals)
        t_op[kind] = best_time(lambda f=f: f(*vals))
        cpu_op[kind] = best_time(lambda f=f: f(*vals), clock=time.process_time)

    ref = numpy_baseline(x, SIG, A, D, lP, lpi, dt)
    t_np = best_time(lambda: numpy_baseline(x, SIG, A, D, lP, lpi, dt), n=1, repeat=3)
    load1 = os.getloadavg()

    print(f"envelope log-likelihood + gradient: {n} samples at {SFREQ:g} Hz "
          f"({n / SFREQ / 60:g} min), 2 states, 1 band")
    print(f"  log L: kernel {out[0]:.6f}, PyTensor Op {float(res[0]):.6f}, numpy {ref[0]:.6f}")
    g_k = np.stack([out[1][:, 0], out[2][:, 0], out[3][:, 0]], axis=1)
    err = np.max(np.abs(g_k - ref[1]) / (np.abs(ref[1]) + 1.0))
    print(f"  gradient agreement kernel vs numpy (central differences there): {err:.1e}")
    print(f"{'implementation (best of 30 x 10 calls)':<58}{'wall':>10}{'CPU':>10}")
    for kind, _ in KINDS:
        print(f"{'fused numba kernel, ' + kind:<58}{1e3 * t_kernel[kind]:>7.2f} ms"
              f"{1e3 * cpu_kernel[kind]:>7.2f} ms")
        print(f"{'  of which emission pass + derivatives (alone)':<58}"
              f"{1e3 * t_emis[kind]:>7.2f} ms")
        print(f"{'  of which forward-backward + gradient weighting (alone)':<58}"
              f"{1e3 * t_fb[kind]:>7.2f} ms")
    for k in sorted(t_par):
        print(f"{f'emission pass, transition, prange, {k} thread(s)':<58}"
              f"{1e3 * t_par[k]:>7.2f} ms")
    print(f"  (prange pass vs serial pass: max difference {par_err:.1e})")
    for kind, _ in KINDS:
        print(f"{'PyTensor graph + EnvelopeHMMOp (NUMBA), ' + kind:<58}{1e3 * t_op[kind]:>7.2f} ms"
              f"{1e3 * cpu_op[kind]:>7.2f} ms")
    print(f"{'baseline: numpy/scipy, Python time loops (transition)':<58}{1e3 * t_np:>7.2f} ms")
    for kind, _ in KINDS:
        verdict = "met" if t_op[kind] <= 0.010 else "NOT met"
        print(f"target <= 10 ms, {kind} emissions through the Op: {1e3 * t_op[kind]:.2f} ms wall "
              f"({1e3 * cpu_op[kind]:.2f} ms CPU) -> {verdict}")
    print(f"speed-up over the numpy baseline (same run): x{t_np / t_op['transition']:.0f} "
          f"(transition Op), x{t_np / t_kernel['transition']:.0f} (transition kernel)")
    print(f"load average (1 min) {load0[0]:.2f} before, {load1[0]:.2f} after, on "
          f"{os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
