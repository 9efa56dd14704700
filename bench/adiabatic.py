"""Benchmark of the adiabatic amplitude reduction (one CMC source).

Run: ``.venv/bin/python bench/adiabatic.py`` (prints a table; no assertions).

Timed, best of several repeats, on spec Example 1 (one growing mode) and Example 2 (bistable):

* ``reduce``: :func:`reduce_cmc` + ``stable_states()`` (modes, g, cubic profiles, states);
* ``reduce+grad``: the same with all 19-parameter sensitivities and state derivatives;
* ``op logp+grad``: the PyTensor Op (``pytensor_ops.adiabatic_features``) value and gradient;
* baselines timed in the same run: the naive 8 x 8 formulation (``_naive``: scipy ``eig`` with
  left vectors, 8 x 8 resolvent solves), and central finite differences of it for gradients.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nmm_inference.adiabatic import reduce_cmc  # noqa: E402
from nmm_inference.adiabatic._core import check_inputs  # noqa: E402
from nmm_inference.adiabatic._naive import naive_reduction  # noqa: E402
from nmm_inference.errors import ReductionValidityWarning  # noqa: E402

GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "reference" / "adiabatic_golden.json"


def best_time(fn, *, n=200, repeat=7):
    """Best mean time per call over ``repeat`` runs of ``n`` calls (s)."""
    fn()
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n)
    return best


def naive_fd_gradients(G, T, R, U):
    """Baseline gradients: central differences of the naive 8 x 8 reduction (38 calls)."""
    theta = np.concatenate([G, T, [R], U])
    out = []
    for p in range(theta.size):
        h = 1e-6 * max(abs(theta[p]), 1e-3)
        for s in (1, -1):
            th = theta.copy()
            th[p] += s * h
            out.append(naive_reduction(th[:10], th[10:14], th[14], th[15:])[2])
    return out


def main():
    warnings.simplefilter("ignore", ReductionValidityWarning)
    cases = json.loads(GOLDEN.read_text())[1:]
    rows = []
    for c in cases:
        G, T, R, U = check_inputs(c["G"], np.asarray(c["T_ms"]) / 1000, c["R"], c["U"])
        t_red = best_time(lambda: reduce_cmc(G, T, R, U).stable_states(warn=False))
        t_grad = best_time(lambda: reduce_cmc(G, T, R, U, gradients=True)
                           .stable_states(gradients=True, warn=False), n=100)
        t_naive = best_time(lambda: naive_reduction(G, T, R, U), n=100)
        t_naive_fd = best_time(lambda: naive_fd_gradients(G, T, R, U), n=3, repeat=3)
        rows.append((c["name"].split(":")[0], t_red, t_grad, t_naive, t_naive_fd))
    try:
        import pytensor
        import pytensor.tensor as pt

        from nmm_inference.adiabatic.pytensor_ops import adiabatic_features

        c = cases[1]
        lg = pt.dvector("lg")
        f = adiabatic_features(pt.as_tensor(np.asarray(c["G"])) * pt.exp(lg),
                               np.asarray(c["T_ms"]) / 1000, c["R"], np.asarray(c["U"]),
                               n_modes=2, active=(0,))
        obj = f["envelopes"].sum() + f["sigma"].sum()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn = pytensor.function([lg], [obj, pytensor.grad(obj, lg)], mode="FAST_RUN")
        t_op = best_time(lambda: fn(np.zeros(10)), n=100)
    except ImportError:  # pragma: no cover - pytensor is a dependency
        t_op = np.nan
    print("adiabatic reduction, one CMC source (best mean of repeats; this machine)")
    print(f"{'case':<12} {'reduce':>10} {'reduce+grad':>12} | {'naive 8x8':>10} "
          f"{'naive FD grad':>14}")
    for name, a, b, c0, d in rows:
        print(f"{name:<12} {a * 1e6:8.0f} us {b * 1e3:9.2f} ms | {c0 * 1e6:7.0f} us "
              f"{d * 1e3:11.1f} ms")
    print(f"PyTensor Op (Example 2, envelopes + sigma), value + gradient: {t_op * 1e3:.2f} ms")
    print("targets: reduce <= 1 ms, reduce+grad <= 5 ms")


if __name__ == "__main__":
    main()
