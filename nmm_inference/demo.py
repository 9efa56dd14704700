"""The bundled default: simulate a CMC recording and compare its spectrum with the model's."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from .errors import ParameterError

logger = logging.getLogger("nmm_inference.demo")

__all__ = ["run_demo", "DEMO_PARAMS", "DEMO_FIT"]

#: SPM-scale deviations from the prior used by the demo: a stronger ii->ss loop and a slower
#: inhibitory population give a clear alpha/beta peak.
DEMO_PARAMS = {"G": [0.0, 0.0, 0.4, 0.0], "T": [0.0, 0.0, 0.25, 0.0], "S": 0.1}


#: Settings of the demo's fit: the full 25-parameter posterior with the default sampler
#: (multi-start MAP, mode-merged NUTS with nutpie, 4 chains), on SPM's 1-Hz grid from 4 to
#: 48 Hz (Welch, 1-s Hann segments).  Chosen for a few minutes on two cores; 1500 draws
#: per chain because 1000 left the bulk ESS of ``contrib_dp`` at 368 (< 400, so the fit said
#: it had not converged); see ``demo_summary.json`` for the convergence figures of the run.
DEMO_FIT = {"fmin": 4.0, "fmax": 48.0, "seg_len_s": 1.0, "draws": 1500, "tune": 1000,
            "chains": 4, "target_accept": 0.9, "n_starts": 16}


def _atomic_write_bytes(path: Path, data: bytes):
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def run_demo(out_dir="nmm_demo", *, duration=120.0, sfreq=250.0, noise_std=0.01, random_seed=0,
             overwrite=False, fit=True, draws=DEMO_FIT["draws"], tune=DEMO_FIT["tune"]):
    """Simulate the CMC, estimate the spectrum, and plot it against the predicted spectrum.

    Parameters
    ----------
    out_dir : str or Path
        Folder for ``demo_raw.fif``, ``demo_spectra.png`` and ``demo_summary.json``.
    duration : float
        Seconds simulated.
    sfreq : float
        Sampling rate of the simulated recording (Hz).
    noise_std : float
        Spectral amplitude of the white endogenous input (see
        :mod:`nmm_inference.cmc.simulate`).
    random_seed : int
        Seed of the simulation.
    overwrite : bool
        Replace existing outputs.
    fit : bool
        Also fit the pre-transition part of the bundled demo recording
        (:func:`nmm_inference.datasets.load_demo`) with :func:`nmm_inference.spm.invert_csd`
        and write ``demo_posterior.nc`` and the HTML report ``demo_report.html``.
    draws, tune : int
        Draws and tuning steps per chain of the fit (4 chains; other settings in
        :data:`DEMO_FIT`).

    Returns
    -------
    dict
        Summary: paths written, frequency of the spectral peak (simulated and predicted), the
        median absolute log-ratio of simulated to predicted spectra over 2-45 Hz and, with
        ``fit``, the fit's convergence figures, posterior-predictive coverage and wall times.

    Raises
    ------
    FileExistsError
        Outputs exist and ``overwrite`` is false.
    nmm_inference.errors.ParameterError
        ``duration`` under 10 s.
    """
    from scipy.signal import welch

    from .cmc.simulate import simulate_cmc
    from .cmc.spectra import predict_csd_full
    from .viz import plot_spectra

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = [("raw", "demo_raw.fif"), ("figure", "demo_spectra.png"), ("summary", "demo_summary.json")]
    if fit:
        names += [("posterior", "demo_posterior.nc"), ("report", "demo_report.html")]
    paths = {k: out / v for k, v in names}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"outputs exist ({', '.join(existing)}); pass overwrite=True / --overwrite")
    if duration < 10:
        raise ParameterError(f"duration must be at least 10 s for a stable spectrum, got {duration}")
    logger.info("simulating %.0f s of the CMC at %.0f Hz", duration, sfreq)
    raw = simulate_cmc(DEMO_PARAMS, duration=duration, sfreq=sfreq, noise_std=noise_std,
                       random_seed=random_seed)
    x = raw.get_data()[0]
    f, pxx = welch(x, fs=sfreq, nperseg=int(4 * sfreq))
    band = (f >= 2) & (f <= 0.4 * sfreq)  # the anti-alias filter is flat up to 0.4 sfreq
    pred = predict_csd_full(DEMO_PARAMS, f[band], delays=False)
    H = pred.transfer[:, 0, 0]
    p_pred = 2 * noise_std**2 * np.abs(H) ** 2
    fig = plot_spectra(f[band], pxx[band], p_pred,
                       title="CMC: simulated recording vs predicted (undelayed) spectrum")
    tmp_fig = out / f".demo_spectra.tmp-{os.getpid()}.png"
    fig.savefig(tmp_fig, dpi=110)
    os.replace(tmp_fig, paths["figure"])
    tmp_raw = out / f"demo_raw.tmp-{os.getpid()}_raw.fif"
    raw.save(tmp_raw, overwrite=True, verbose="error")
    os.replace(tmp_raw, paths["raw"])
    sel = (f[band] <= 45)
    summary = {
        "duration_s": duration,
        "sfreq_hz": sfreq,
        "random_seed": random_seed,
        "params_spm": DEMO_PARAMS,
        "peak_hz_simulated": float(f[band][np.argmax(pxx[band])]),
        "peak_hz_predicted": float(f[band][np.argmax(p_pred)]),
        "median_abs_log_ratio_2_45hz": float(np.median(np.abs(np.log(pxx[band][sel] / p_pred[sel])))),
        "files": {k: str(v) for k, v in paths.items()},
    }
    logger.info("simulation and spectra written to %s", out)
    if fit:
        summary.update(_fit_demo(paths, random_seed=random_seed, draws=draws, tune=tune))
    _atomic_write_bytes(paths["summary"], json.dumps(summary, indent=2).encode())
    return summary


def _fit_demo(paths, *, random_seed, draws, tune):
    """Fit the pre-transition spectrum of the bundled recording; write posterior and report."""
    from .datasets import load_demo
    from .features import compute_psd
    from .report import build_report
    from .spm import invert_csd

    import time

    t0 = time.perf_counter()
    cfg = dict(DEMO_FIT, draws=draws, tune=tune)
    raw = load_demo()
    onset = float(raw.annotations.onset[0])
    seg = raw.copy().crop(0, onset - 5.0)
    psd = compute_psd(seg, method="welch", fmin=cfg["fmin"], fmax=cfg["fmax"],
                      n_per_seg=int(round(cfg["seg_len_s"] * raw.info["sfreq"])))
    hz, y, dof = psd["freq"].values, psd.values[0], psd["dof"].values
    logger.info("fitting the %g-%g Hz spectrum of the first %.0f s of the demo recording "
                "(%d chains x %d draws after %d tuning steps)", cfg["fmin"], cfg["fmax"],
                onset - 5.0, cfg["chains"], draws, tune)
    post = invert_csd(hz, y, dof=dof, random_seed=random_seed, draws=draws, tune=tune,
                      chains=cfg["chains"], target_accept=cfg["target_accept"],
                      n_starts=cfg["n_starts"])
    t_fit = time.perf_counter() - t0
    tmp = paths["posterior"].with_name(f".tmp-{os.getpid()}-{paths['posterior'].name}")
    post.to_netcdf(tmp)
    os.replace(tmp, paths["posterior"])
    logger.info("fit done in %.0f s (R-hat max %.3f, bulk ESS min %.0f); writing the report",
                t_fit, post.attrs.get("r_hat_max", np.nan), post.attrs.get("ess_bulk_min", np.nan))
    t1 = time.perf_counter()
    rep = build_report(post, paths["report"], title="nmm_inference demo: CMC fit of the bundled recording",
                       overwrite=True)
    logger.info("report written to %s", paths["report"])
    return {"fit_segment_s": [0.0, onset - 5.0], "fit_settings": cfg,
            "report_sections": rep["sections"],
            "ppc_coverage_94": rep["ppc_coverage"], "converged": rep["converged"],
            "r_hat_max": float(post.attrs.get("r_hat_max", np.nan)),
            "ess_bulk_min": float(post.attrs.get("ess_bulk_min", np.nan)),
            "n_divergent": int(post.attrs.get("n_divergent", -1)),
            "fit_wall_s": round(t_fit, 1), "report_wall_s": round(time.perf_counter() - t1, 1)}
