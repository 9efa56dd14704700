"""The ``nmm`` command-line tool."""
from __future__ import annotations

import argparse
import json
import logging
import sys

from ._version import __version__
from .errors import NMMError

__all__ = ["main"]


def _parse_params(items):
    out = {}
    for it in items or []:
        if "=" not in it:
            raise NMMError(f"--param expects NAME=VALUE (SPM-scale value of a named parameter), got {it!r}")
        k, v = it.split("=", 1)
        try:
            out[k.strip()] = float(v)
        except ValueError:
            raise NMMError(f"--param {k}: value {v!r} is not a number") from None
    return out


def build_parser():
    p = argparse.ArgumentParser(prog="nmm", description="Bayesian inversion of the canonical microcircuit.")
    p.add_argument("--version", action="version", version=f"nmm_inference {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="the main job on the bundled default")
    d.add_argument("--out", default="nmm_demo", help="output folder (default: nmm_demo)")
    d.add_argument("--duration", type=float, default=120.0, help="seconds to simulate")
    d.add_argument("--seed", type=int, default=0, help="random seed")
    d.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    d.add_argument("--no-fit", action="store_true", help="skip the fit and the HTML report")
    d.add_argument("--draws", type=int, default=500, help="posterior draws per chain (4 chains)")
    d.add_argument("--tune", type=int, default=500, help="tuning steps per chain")

    s = sub.add_parser("simulate", help="simulate a CMC recording to a FIF file")
    s.add_argument("--out", required=True, help="output file (*_raw.fif or *.fif)")
    s.add_argument("--duration", type=float, default=60.0, help="seconds")
    s.add_argument("--sfreq", type=float, default=250.0, help="sampling rate (Hz)")
    s.add_argument("--noise-std", type=float, default=0.01, help="spectral amplitude of the input noise")
    s.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="SPM-scale value of a named parameter (see nmm_inference.params); repeatable")
    s.add_argument("--seed", type=int, default=None, help="random seed")
    s.add_argument("--overwrite", action="store_true", help="replace an existing file")
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "demo":
            from .demo import run_demo

            summary = run_demo(args.out, duration=args.duration, random_seed=args.seed,
                               overwrite=args.overwrite, fit=not args.no_fit, draws=args.draws,
                               tune=args.tune)
            print(json.dumps(summary, indent=2))
        elif args.command == "simulate":
            import os
            from pathlib import Path

            from .cmc.simulate import simulate_cmc
            from .params import named_to_spm

            out = Path(args.out)
            if out.exists() and not args.overwrite:
                raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
            P = named_to_spm(_parse_params(args.param))
            raw = simulate_cmc(P, duration=args.duration, sfreq=args.sfreq, noise_std=args.noise_std,
                               random_seed=args.seed)
            tmp = out.with_name(f".tmp-{os.getpid()}-{out.name}")
            raw.save(tmp, overwrite=True, verbose="error")
            os.replace(tmp, out)
            print(f"wrote {out} ({raw.n_times} samples at {raw.info['sfreq']:g} Hz)")
    except (NMMError, FileExistsError, FileNotFoundError) as exc:
        print(f"nmm: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
