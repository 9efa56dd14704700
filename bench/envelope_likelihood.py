"""Benchmark: envelope log-likelihood + gradient, 10 minutes at 100 Hz, two hidden states.

Run: ``.venv/bin/python bench/envelope_likelihood.py`` (prints a table; no assertions).

The data are 60 000 envelope samples (600 s at 100 Hz) simulated from the switching
amplitude-SDE model itself (``simulate_switching_envelope``).  Timed, best of several repeats:

* ``fused kernel``: :func:`nmm_inference.switching.hmm._envelope_hmm` -- the emission
  densities of both states with their derivatives, forward-backward, gradient with respect to
  the six SDE parameters and the 2 x 2 log transition matrix (numba); for both emission kinds,
  the Rice transition density (``"transition"``) and the stationary envelope density of each
  state (``"stationary"``, the switching model's emission); wall and CPU time;
* ``PyTensor Op (NUMBA)``: the same through :class:`EnvelopeHMMOp` inside a compiled graph that
  also maps (sigma, log a, log D, log rates) to the Op's inputs, value and ``pytensor.grad``,
  compiled with ``mode="NUMBA"`` (what nutpie runs);
* baseline, timed in the same run: a numpy/scipy implementation of the same quantities
  (vectorised emissions with ``scipy.special.i0e``, forward and backward passes as Python loops
  over time with numpy over states).  Both return the same log-likelihood and gradient.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy import special  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nmm_inference.switching.hmm import _envelope_hmm, transition_matrix  # noqa: E402
from nmm_inference.switching.simulate import simulate_switching_envelope  # noqa: E402

SFREQ = 100.0
SIG = np.array([[-6.0], [3.0]])
A = np.array([[-4.0], [-4.0]])
D = np.array([[0.6], [0.6]])
RATES = np.array([[0.0, 0.5], [0.8, 0.0]])


def best_time(fn, *, n=20, repeat=5, clock=time.perf_counter):
    """Best mean time per call over ``repeat`` runs of ``n`` calls (s)."""
    fn()
    best = np.inf
    for _ in range(repeat):
        t = clock()
        for _ in range(n):
            fn()
        best = min(best, (clock() - t) / n)
    return best


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
    t_kernel = {kind: best_time(lambda c=code: _envelope_hmm(x, SIG, A, D, lP, lpi, dt, c, starts))
                for kind, code in (("transition", 0), ("stationary", 1))}
    cpu_kernel = {kind: best_time(lambda c=code: _envelope_hmm(x, SIG, A, D, lP, lpi, dt, c,
                                                                starts), clock=time.process_time)
                  for kind, code in (("transition", 0), ("stationary", 1))}

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
    t_op, res = {}, None
    for kind in ("transition", "stationary"):
        lp = envelope_hmm_logp(x, sig_v[:, None], a_m, D_m, lP_v, lpi_v, starts, dt=dt, kind=kind)
        f = pytensor.function(ins, [lp] + pytensor.grad(lp, ins), mode="NUMBA")
        if kind == "transition":
            res = f(*vals)
        t_op[kind] = best_time(lambda f=f: f(*vals))

    ref = numpy_baseline(x, SIG, A, D, lP, lpi, dt)
    t_np = best_time(lambda: numpy_baseline(x, SIG, A, D, lP, lpi, dt), n=1, repeat=3)

    print(f"envelope log-likelihood + gradient: {n} samples at {SFREQ:g} Hz "
          f"({n / SFREQ / 60:g} min), 2 states, 1 band")
    print(f"  log L: kernel {out[0]:.6f}, PyTensor Op {float(res[0]):.6f}, numpy {ref[0]:.6f}")
    g_k = np.stack([out[1][:, 0], out[2][:, 0], out[3][:, 0]], axis=1)
    err = np.max(np.abs(g_k - ref[1]) / (np.abs(ref[1]) + 1.0))
    print(f"  gradient agreement kernel vs numpy (central differences there): {err:.1e}")
    print(f"{'implementation':<50}{'wall':>10}{'CPU':>10}   per logp+grad")
    for kind in ("transition", "stationary"):
        print(f"{'fused numba kernel, ' + kind + ' emissions':<50}{1e3 * t_kernel[kind]:>7.2f} ms"
              f"{1e3 * cpu_kernel[kind]:>7.2f} ms")
        print(f"{'PyTensor graph + EnvelopeHMMOp (NUMBA), ' + kind:<50}{1e3 * t_op[kind]:>7.2f} ms")
    print(f"{'baseline: numpy/scipy, Python time loops (transition)':<50}{1e3 * t_np:>7.2f} ms")
    for kind in ("stationary", "transition"):
        verdict = "met" if t_op[kind] <= 0.010 else "NOT met"
        print(f"target <= 10 ms, {kind} emissions through the Op: {1e3 * t_op[kind]:.2f} ms -> "
              f"{verdict}")
    print(f"speed-up over the baseline x{t_np / t_op['transition']:.0f} (transition Op); machine "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs during the run")

if __name__ == "__main__":
    main()
