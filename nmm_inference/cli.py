"""The ``nmm`` command-line tool: a thin wrapper over the public API.

Commands
--------
``nmm fit RECORDING --out RESULT.nc``
    Read a recording, compute its features and fit a model; the result (an ArviZ-layout
    ``xarray.DataTree``) is written atomically to netCDF.
``nmm report RESULT.nc --html REPORT.html``
    The HTML report of a fit result (:func:`nmm_inference.report.build_report`).
``nmm simulate --out FILE.fif``
    Simulate a CMC recording.
``nmm demo``
    The main job on the bundled default recording.

Exit codes
----------
0 success; 1 unexpected internal error (a bug: please report it with the traceback printed
by ``--verbose``); 2 bad usage or input (unknown options, missing or unreadable files,
existing outputs without ``--overwrite``, unusable data or parameters); 3 the requested
model is not available in this version; 130 interrupted (Ctrl-C).  Nothing is left at the
output path unless the command succeeded.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

from ._version import __version__
from .errors import NMMError

__all__ = ["main", "build_parser", "MODELS", "EXIT_OK", "EXIT_ERROR", "EXIT_USAGE",
           "EXIT_UNAVAILABLE", "EXIT_INTERRUPTED"]

#: Exit codes of :func:`main`.
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

#: Models that ``nmm fit --model`` knows.
MODELS = ("spectral", "windows", "switching")

logger = logging.getLogger("nmm_inference")


class ModelUnavailableError(NMMError, NotImplementedError):
    """The requested model is not available in this version of the package."""


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


def _parse_picks(items):
    """``--picks A,B --picks C`` -> ``["A", "B", "C"]`` (None when not given)."""
    if not items:
        return None
    out = []
    for it in items:
        out += [p.strip() for p in it.split(",") if p.strip()]
    return out or None


def _int_at_least(minimum, what):
    """An argparse type: an integer >= ``minimum``; ``what`` names it in the error."""
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {v}")
        return v
    return parse


_positive_int = _int_at_least(1, "a positive integer")
_nonneg_int = _int_at_least(0, "a non-negative integer")


def build_parser():
    """The ``argparse`` parser of the ``nmm`` command.

    Returns
    -------
    argparse.ArgumentParser
    """
    p = argparse.ArgumentParser(
        prog="nmm", description="Bayesian inversion of the canonical microcircuit.",
        epilog="exit codes: 0 ok, 1 internal error, 2 bad usage or input, 3 model not "
               "available, 130 interrupted")
    p.add_argument("--version", action="version", version=f"nmm_inference {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress and show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    f = sub.add_parser("fit", help="fit a model to a recording; write the result as netCDF",
                       description="Read RECORDING (any file mne.io.read_raw reads), compute "
                                   "its features and fit a model: the CMC on one channel's "
                                   "spectrum (spectral), on every window with a linked change "
                                   "point (windows), or the two-state switching model of one "
                                   "band envelope (switching).")
    f.add_argument("recording", help="recording file (FIF, EDF/BDF, BrainVision, EEGLAB, ...)")
    f.add_argument("--out", required=True, help="result file (netCDF, e.g. RESULT.nc)")
    f.add_argument("--model", choices=MODELS, default="spectral",
                   help="spectral: one stationary spectrum (default); windows: per-window fits "
                        "over the recording; switching: state-switching envelope model")
    f.add_argument("--picks", action="append", metavar="CH[,CH...]",
                   help="channel name(s) or type; the spectral model fits one channel")
    f.add_argument("--fmin", type=float, default=2.0, help="lowest frequency (Hz, default 2)")
    f.add_argument("--fmax", type=float, default=40.0, help="highest frequency (Hz, default 40)")
    f.add_argument("--tmin", type=float, default=None, help="start of the segment (s)")
    f.add_argument("--tmax", type=float, default=None, help="end of the segment (s)")
    f.add_argument("--method", choices=("welch", "multitaper"), default="welch",
                   help="spectral estimator (default welch)")
    f.add_argument("--seg-len", type=float, default=1.0,
                   help="Welch segment length in s (bin spacing 1/seg-len Hz; default 1)")
    f.add_argument("--units", default=None,
                   help="units of the samples in the file (V, mV, uV, nV, au); default: volts "
                        "with an amplitude check")
    f.add_argument("--sampler", choices=("nutpie", "pymc", "smc", "laplace"), default="nutpie",
                   help="posterior sampler (default nutpie; laplace is a fast approximation)")
    f.add_argument("--draws", type=_positive_int, default=1000, help="draws per chain (default 1000)")
    f.add_argument("--tune", type=_nonneg_int, default=1000, help="tuning steps per chain (default 1000)")
    f.add_argument("--chains", type=_positive_int, default=4, help="chains (default 4)")
    f.add_argument("--dof-scale", choices=("recorded", "fit"), default="recorded",
                   help="recorded: the spectral dof as estimated (default); fit: learn a factor "
                        "on them (for spectra the model cannot follow within their sampling "
                        "error; compare the reports)")
    f.add_argument("--window-length", type=float, default=4.0,
                   help="--model windows: window length in s (default 4)")
    f.add_argument("--step", type=float, default=2.0,
                   help="--model windows: window step in s (default 2)")
    f.add_argument("--band", default=None, metavar="FMIN,FMAX",
                   help="--model switching: band of the envelope in Hz (e.g. 13,30)")
    f.add_argument("--env-sfreq", type=float, default=25.0,
                   help="--model switching: envelope sampling rate in Hz (default 25)")
    f.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    f.add_argument("--overwrite", action="store_true", help="replace an existing result")
    f.add_argument("--no-progress", action="store_true", help="no progress bar")

    r = sub.add_parser("report", help="HTML report of a fit result",
                       description="Write the HTML report (MNE Report) of a result of `nmm fit`.")
    r.add_argument("result", help="result file written by `nmm fit` (netCDF)")
    r.add_argument("--html", required=True, help="HTML file to write")
    r.add_argument("--title", default=None, help="report title")
    r.add_argument("--recording", default=None,
                   help="recording to draw above the state probabilities (switching results)")
    r.add_argument("--picks", default=None, help="channel of --recording to draw (default: the "
                   "channel that was fitted, else the first)")
    r.add_argument("--overwrite", action="store_true", help="replace an existing report")

    d = sub.add_parser("demo", help="the main job on the bundled default")
    d.add_argument("--out", default="nmm_demo", help="output folder (default: nmm_demo)")
    d.add_argument("--duration", type=float, default=120.0, help="seconds to simulate")
    d.add_argument("--seed", type=int, default=0, help="random seed")
    d.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    d.add_argument("--no-fit", action="store_true", help="skip the fit and the HTML report")
    d.add_argument("--draws", type=_positive_int, default=None,
                   help="posterior draws per chain (4 chains; default: the demo's setting)")
    d.add_argument("--tune", type=_nonneg_int, default=None,
                   help="tuning steps per chain (default: the demo's setting)")

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


def _say(msg):
    print(f"nmm: {msg}", file=sys.stderr, flush=True)


def _check_out(out, overwrite, what="--out"):
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"{what}: folder {out.parent} does not exist")
    return out


def _atomic_netcdf(tree, out):
    """Write a DataTree to ``out`` through a temporary file in the same folder."""
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        tree.to_netcdf(tmp, engine="h5netcdf")
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()


def _fit_spectral(args, rec, progress):
    from .features import compute_psd
    from .inference import CMCModel

    if rec.n_channels != 1:
        raise NMMError(f"the spectral model fits one channel; {rec.n_channels} were selected "
                       f"({', '.join(rec.ch_names[:12])}{', ...' if rec.n_channels > 12 else ''}): "
                       "choose one with --picks NAME")
    kw = {}
    if args.method == "welch":
        n = int(round(args.seg_len * rec.sfreq))
        if n < 8:
            raise NMMError(f"--seg-len {args.seg_len} s is shorter than 8 samples at {rec.sfreq:g} Hz")
        kw["n_per_seg"] = n
    _say(f"computing the {args.method} spectrum of {rec.ch_names[0]} "
         f"({rec.duration:.1f} s, {args.fmin:g}-{args.fmax:g} Hz)")
    psd = compute_psd(rec, method=args.method, fmin=args.fmin, fmax=args.fmax, **kw)
    _say(f"fitting the CMC to {psd.sizes['freq']} bins with {args.sampler} "
         f"({args.chains} chains x {args.draws} draws" +
         (f", {args.tune} tuning" if args.sampler in ("nutpie", "pymc") else "") + ")")
    model = CMCModel(psd, dof_scale=args.dof_scale)
    kws = {"progressbar": progress} if args.sampler != "laplace" else {}
    return model.fit(sampler=args.sampler, draws=args.draws, tune=args.tune, chains=args.chains,
                     random_seed=args.seed, **kws)


def _fit_windows(args, rec, progress):
    """Per-window MAP + Laplace fits linked by the change-point model (:mod:`.onset`)."""
    try:
        from .onset import fit_windows, link_windows
    except ImportError:  # pragma: no cover - depends on the installed version
        raise ModelUnavailableError("--model windows is not available in this version "
                                    "(nmm_inference.onset is missing)") from None
    from .features import compute_windowed_psd

    if args.sampler != "nutpie" or args.draws != 1000 or args.tune != 1000:
        raise NMMError("--model windows fits every window by MAP + Laplace and links them "
                       "exactly; --sampler/--draws/--tune do not apply")
    _say(f"windowed spectra: {args.window_length:g}-s windows every {args.step:g} s, "
         f"{args.fmin:g}-{args.fmax:g} Hz, channels {', '.join(rec.ch_names)}")
    psd = compute_windowed_psd(rec, window_length=args.window_length, step=args.step,
                               fmin=args.fmin, fmax=args.fmax)
    _say(f"fitting {psd.sizes['window']} windows x {psd.sizes['channel']} channel(s) "
         "(MAP + Laplace, warm-started)")
    fits = fit_windows(psd, progressbar=progress, random_seed=args.seed)
    _say("linking the windows (random walk with one change point)")
    tree = link_windows(fits)
    a = tree.attrs
    t0 = float(args.tmin or 0.0)
    _say(f"onset: median {a['onset_median'] + t0:.1f} s, 94 % interval [{a['onset_lower'] + t0:.1f}, "
         f"{a['onset_upper'] + t0:.1f}] s of the recording; P(change) = {a['p_change']:.3f}")
    return tree


def _fit_switching(args, rec, progress):
    """Two-state (quiet/burst) switching model of one band envelope (:mod:`.switching`)."""
    try:
        from .switching import positive_envelope
        from .switching.model import build_free_switching_model, fit
        from .switching.results import SwitchingResult
    except ImportError:  # pragma: no cover - depends on the installed version
        raise ModelUnavailableError("--model switching is not available in this version") from None
    import xarray as xr

    from .features import compute_band_envelopes

    if args.band is None:
        raise NMMError("--model switching needs --band FMIN,FMAX (e.g. --band 13,30 for beta)")
    try:
        lo, hi = (float(v) for v in args.band.split(","))
    except ValueError:
        raise NMMError(f"--band expects FMIN,FMAX in Hz, got {args.band!r}") from None
    if rec.n_channels != 1:
        raise NMMError(f"the switching model fits one channel; {rec.n_channels} were selected "
                       f"({', '.join(rec.ch_names[:12])}): choose one with --picks NAME")
    if args.sampler not in ("nutpie", "pymc"):
        raise NMMError("--model switching samples with NUTS: --sampler nutpie or pymc")
    edge = 1.0
    _say(f"{lo:g}-{hi:g} Hz envelope of {rec.ch_names[0]} at {args.env_sfreq:g} Hz")
    env = compute_band_envelopes(rec, bands={"band": (lo, hi)}, sfreq_out=args.env_sfreq,
                                 verbose="error").isel(channel=0).sel(band="band")
    n_edge = int(edge * args.env_sfreq)
    y = positive_envelope(np.asarray(env.values)[n_edge:-n_edge])
    model, terms = build_free_switching_model(y, sfreq=args.env_sfreq, kind="stationary",
                                              parametrization="hopf", t0=edge,
                                              band_names=[f"{lo:g}-{hi:g} Hz"])
    _say(f"sampling the switching model ({args.chains} chains x {args.draws} draws)")
    tree = fit(model, draws=args.draws, tune=args.tune, chains=args.chains,
               random_seed=args.seed, nuts_sampler=args.sampler, progressbar=progress)
    res = SwitchingResult(terms, tree, n_draws=min(200, args.draws * args.chains),
                          random_seed=args.seed + 1)
    probs = res.state_probabilities()
    tree = tree.copy()
    tree["state_probability"] = xr.DataTree(probs)
    return tree


_FITTERS = {"spectral": _fit_spectral, "windows": _fit_windows, "switching": _fit_switching}


def _cmd_fit(args):
    from .features import read_recording

    out = _check_out(args.out, args.overwrite)
    src = Path(args.recording)
    if not src.exists():
        raise FileNotFoundError(f"recording {src} not found")
    if args.fmin <= 0 or args.fmax <= args.fmin:
        raise NMMError(f"need 0 < --fmin < --fmax, got {args.fmin:g} and {args.fmax:g}")
    progress = (not args.no_progress) and sys.stderr.isatty()
    t0 = time.perf_counter()
    _say(f"reading {src}")
    rec = read_recording(src, picks=_parse_picks(args.picks), tmin=args.tmin, tmax=args.tmax,
                         units=args.units)
    if args.model != "switching" and args.band is not None:
        raise NMMError("--band applies to --model switching only")
    tree = _FITTERS[args.model](args, rec, progress)
    tree.attrs.update({
        "nmm_command": " ".join(["nmm", *(args._argv or [])]),
        "nmm_model": args.model,
        "recording": str(src.resolve()),
        "recording_channels": json.dumps(list(rec.ch_names)),
        "fmin": float(args.fmin), "fmax": float(args.fmax),
        "random_seed": int(args.seed),
        "time_origin_s": float(args.tmin or 0.0),
        "time_origin_note": "times in this file are in s from --tmin (time_origin_s) of the recording",
    })
    out = _check_out(args.out, args.overwrite)  # again: it may have appeared meanwhile
    _atomic_netcdf(tree, out)
    summary = {"result": str(out), "model": args.model}
    verdict = ""
    if "converged" in tree.attrs:  # MCMC and Laplace results carry a verdict
        ok = bool(int(tree.attrs["converged"]))
        verdict = "; converged" if ok else "; NOT converged (see the report's convergence table)"
        summary.update(converged=ok, r_hat_max=float(tree.attrs.get("r_hat_max", float("nan"))),
                       ess_bulk_min=float(tree.attrs.get("ess_bulk_min", float("nan"))))
    if "onset_median" in tree.attrs:
        summary.update({k: float(tree.attrs[k]) for k in ("onset_median", "onset_lower", "onset_upper")})
    _say(f"wrote {out} in {time.perf_counter() - t0:.0f} s{verdict}")
    return summary


def _cmd_report(args):
    import xarray as xr

    from .report import build_report

    src = Path(args.result)
    if not src.exists():
        raise FileNotFoundError(f"result {src} not found")
    out = _check_out(args.html, args.overwrite, what="--html")
    try:
        tree = xr.open_datatree(src, engine="h5netcdf")
    except Exception as exc:  # noqa: BLE001 - any reader failure means the same to the user
        raise NMMError(f"cannot read {src} as a result of `nmm fit` (netCDF/HDF5): {exc}") from None
    with tree:
        tree = tree.load()
    if not {"posterior", "trajectories", "trajectory", "state_probability"} & set(tree.children):
        raise NMMError(f"{src} has none of the groups of a fit result (posterior, trajectory, "
                       "state_probability)")
    title = args.title or f"nmm_inference: {src.name}"
    raw = None
    if args.recording is not None:
        import mne

        rpath = Path(args.recording)
        if not rpath.exists():
            raise FileNotFoundError(f"recording {rpath} not found")
        raw = mne.io.read_raw(rpath, verbose="error")
        fitted = json.loads(tree.attrs.get("recording_channels", "[]") or "[]")
        pick = args.picks or next((c for c in fitted if c in raw.ch_names), raw.ch_names[0])
        if pick not in raw.ch_names:
            raise NMMError(f"--picks {pick!r} is not a channel of {rpath.name}")
        raw = raw.pick([pick]).load_data(verbose="error")
        t0 = float(tree.attrs.get("time_origin_s", 0.0))
        if t0 > 0:
            raw.crop(tmin=min(t0, raw.times[-1]))
    info = build_report(tree, out, title=title, raw=raw, overwrite=args.overwrite)
    _say(f"wrote {out} ({len(info['sections'])} sections)")
    return info


def main(argv=None):
    """Run the ``nmm`` command.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit code (see the module docstring).
    """
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args._argv = argv
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command == "demo":  # the demo's own progress messages
        logging.getLogger("nmm_inference.demo").setLevel(logging.INFO)
    try:
        if args.command == "fit":
            print(json.dumps(_cmd_fit(args), indent=2))
        elif args.command == "report":
            info = _cmd_report(args)
            print(json.dumps({"html": info["path"], "sections": info["sections"]}, indent=2))
        elif args.command == "demo":
            from .demo import run_demo

            kw = {k: v for k, v in (("draws", args.draws), ("tune", args.tune)) if v is not None}
            summary = run_demo(args.out, duration=args.duration, random_seed=args.seed,
                               overwrite=args.overwrite, fit=not args.no_fit, **kw)
            print(json.dumps(summary, indent=2))
        elif args.command == "simulate":
            from .cmc.simulate import simulate_cmc
            from .params import named_to_spm

            out = _check_out(args.out, args.overwrite)
            P = named_to_spm(_parse_params(args.param))
            raw = simulate_cmc(P, duration=args.duration, sfreq=args.sfreq, noise_std=args.noise_std,
                               random_seed=args.seed)
            tmp = out.with_name(f".tmp-{os.getpid()}-{out.name}")
            raw.save(tmp, overwrite=True, verbose="error")
            os.replace(tmp, out)
            print(f"wrote {out} ({raw.n_times} samples at {raw.info['sfreq']:g} Hz)")
    except KeyboardInterrupt:
        print("nmm: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ModelUnavailableError as exc:
        print(f"nmm: error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except (NMMError, ValueError, FileExistsError, FileNotFoundError, IsADirectoryError,
            PermissionError) as exc:
        if args.verbose:
            import traceback

            traceback.print_exc()
        print(f"nmm: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - last resort: a clear message and exit code 1
        import traceback

        if args.verbose:
            traceback.print_exc()
        print(f"nmm: internal error ({type(exc).__name__}): {exc}\n"
              "nmm: rerun with --verbose for the traceback and report it", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
