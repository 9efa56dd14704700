"""Batched NUTS over many windows with the JAX backend (issue 7).

Run:  .venv/bin/python bench/jax_windows.py --windows 8 --warmup 100 --samples 100

Simulates window spectra from prior draws of the one-source CMC (chi-square noise with the
given degrees of freedom), samples every window's posterior side by side
(:func:`nmm_inference.jax_backend.fit_windows_jax`), and prints wall time, windows per minute,
JAX's device, divergences and how often the 94 % interval covers the truth.  Also times one
spectrum + gradient per window (vmapped) as the cost unit.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--windows", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--dof", type=float, default=64.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp

    from nmm_inference.jax_backend import cmc_spectrum_jax, fit_windows_jax, prior_moments

    rng = np.random.default_rng(args.seed)
    mu, sd = prior_moments()
    hz = np.arange(4.0, 49.0)
    truth = mu + 0.5 * sd * rng.standard_normal((args.windows, mu.size))
    f = jax.jit(jax.vmap(lambda t: cmc_spectrum_jax(t, hz)))
    S = np.asarray(f(jnp.asarray(truth)))
    Y = S * rng.chisquare(args.dof, S.shape) / args.dof
    # cost unit: vmapped value + gradient of the log-likelihood over all windows
    vg = jax.jit(jax.vmap(jax.value_and_grad(lambda t: jnp.sum(jnp.log(cmc_spectrum_jax(t, hz))))))
    vg(jnp.asarray(truth))[0].block_until_ready()
    t = time.perf_counter()
    for _ in range(3):
        vg(jnp.asarray(truth))[0].block_until_ready()
    t_grad = (time.perf_counter() - t) / 3
    t0 = time.perf_counter()
    res = fit_windows_jax(hz, Y, args.dof, num_warmup=args.warmup, num_samples=args.samples,
                          random_seed=args.seed)
    wall = time.perf_counter() - t0
    th = res["theta"]
    lo, hi = np.quantile(th, [0.03, 0.97], axis=1)
    cover = float(np.mean((truth >= lo) & (truth <= hi)))
    out = {
        "device": str(jax.devices()[0]),
        "windows": args.windows, "warmup": args.warmup, "samples": args.samples,
        "grad_eval_all_windows_ms": t_grad * 1e3,
        "wall_s_incl_compile": wall,
        "windows_per_min": args.windows / wall * 60,
        "divergences_per_window": float(res["diverging"].sum(axis=1).mean()),
        "mean_accept_prob": float(res["accept_prob"].mean()),
        "coverage_94": cover,
    }
    print(json.dumps(out, indent=2))
    if args.out:
        tmp = f"{args.out}.tmp-{os.getpid()}"
        with open(tmp, "w") as fh:
            json.dump(out, fh, indent=2)
        os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
