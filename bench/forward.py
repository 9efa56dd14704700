"""Cost of one predicted spectrum and of spectrum + gradient (one source, 64 bins, delays on).

Run:  .venv/bin/python bench/forward.py

Prints microseconds per evaluation for each implementation beside the plain numpy reference
(:func:`nmm_inference.cmc.spectra.predict_csd_full`) timed in the same run, and the ratio.
Target (issue 2): spectrum + gradient <= 50 us on one core.
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import time

import numpy as np


def best_of(fn, n, repeat=25):
    """Mean time per call of the fastest of `repeat` runs of `n` calls (timeit's rule: the
    minimum is the figure least disturbed by other work on a shared machine)."""
    fn()
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n)
    return best * 1e6


def main():
    import pytensor
    import pytensor.tensor as pt

    from nmm_inference.cmc.kernel import FREE_NAMES, _grid, _kernel, _kernel_grid, spectrum_and_jacobian
    from nmm_inference.cmc.pytensor_ops import cmc_spectrum
    from nmm_inference.cmc.spectra import predict_csd_full
    from nmm_inference.params import named_to_spm, parameter_table

    hz = np.arange(1.0, 65.0)
    specs = [s for s in parameter_table(1) if s.free]
    rng = np.random.default_rng(0)
    mu = np.array([s.prior_mean for s in specs])
    sd = np.sqrt([s.prior_var for s in specs])
    thetas = mu + sd * rng.standard_normal((20, mu.size))
    P = [named_to_spm(dict(zip(FREE_NAMES, th))) for th in thetas]

    rows = []
    i = [0]

    def cyc(seq):
        i[0] = (i[0] + 1) % len(seq)
        return seq[i[0]]

    t_ref = best_of(lambda: predict_csd_full(cyc(P), hz), 20)
    rows.append(("numpy reference (scipy/numpy, spectrum only)", t_ref))
    # numpy reference of spectrum + gradient by central differences (2 x 25 evaluations)
    rows.append(("numpy reference, spectrum + FD gradient (51 evals, estimated)", 51 * t_ref))
    # the frequency grid's log f and DCT basis are parameter-free: the PyTensor Op computes
    # them once per Op (as here); _kernel recomputes them on every call
    lnf, Xd = _grid(hz)
    rows.append(("numba kernel, spectrum", best_of(
        lambda: _kernel_grid(cyc(thetas), hz, lnf, Xd, False, 50, 1e-13), 100)))
    rows.append(("numba kernel, spectrum + Jacobian (25 columns)", best_of(
        lambda: _kernel_grid(cyc(thetas), hz, lnf, Xd, True, 50, 1e-13), 100)))
    rows.append(("numba kernel, spectrum + Jacobian, grid recomputed per call", best_of(
        lambda: _kernel(cyc(thetas), hz, True, 50, 1e-13), 100)))
    th = pt.dvector("theta")
    obs = predict_csd_full(P[0], hz).csd[:, 0, 0].real
    y, _ = cmc_spectrum(th, hz)
    logp = pt.sum(-pt.log(y) - obs / y)
    for mode in ("FAST_RUN", "NUMBA"):
        f = pytensor.function([th], [logp, pytensor.grad(logp, th)], mode=mode)
        rows.append((f"PyTensor Op, Whittle logp + grad, {mode}", best_of(lambda: f(cyc(thetas)), 100)))
    try:
        import jax

        from nmm_inference.jax_backend import cmc_spectrum_jax

        fj = jax.jit(lambda t: cmc_spectrum_jax(t, hz))
        gj = jax.jit(jax.value_and_grad(lambda t: jax.numpy.sum(jax.numpy.log(cmc_spectrum_jax(t, hz)))))
        rows.append(("JAX backend (CPU), spectrum", best_of(lambda: fj(cyc(thetas)).block_until_ready(), 5, 3)))
        rows.append(("JAX backend (CPU), log-spectrum sum + grad",
                     best_of(lambda: gj(cyc(thetas))[0].block_until_ready(), 5, 3)))
    except ImportError:
        pass
    _, _, status, _ = spectrum_and_jacobian(thetas[0], hz)
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"one source, {hz.size} frequencies, delays on; status of first draw: {status}")
    print(f"{'implementation':66s} {'us/eval':>10s} {'x faster than ref':>18s}")
    for name, t in rows:
        print(f"{name:66s} {t:10.1f} {t_ref / t:18.1f}")


if __name__ == "__main__":
    main()
