"""Shared settings of the group benches: the simulated 20 + 20 cohort and the first level.

Imported by ``bench/group_joint.py`` and ``bench/group_two_stage.py`` (run them from the
repository root).
"""
from __future__ import annotations

import numpy as np

#: Frequencies (Hz), dof per bin, and the CMC parameters held fixed (SPM scale).
FREQS = np.arange(2.0, 41.0)
DOF = 100.0
FIXED = {"lfp_gain": 6.0}
#: Parameters varying between recordings (g_ii_ss and tau_ii are separately identified by a
#: spectrum: Fisher correlation 0.01 here, against -0.98 for g_ii_ss and tau_ss); a patient
#: effect on g_ii_ss only.
NAMES = ["g_ii_ss", "tau_ii"]
COVARIATES = ["mean", "patient"]
BETA = np.array([[0.0, 0.05],     # mean (controls)
                 [0.3, 0.0]])     # patient - control
TAU = np.array([0.1, 0.08])
#: First-level prior SDs of NAMES (SPM: variance 1/32 for both).
PRIOR_SD = np.sqrt([1 / 32, 1 / 32])


def design(n_per_group=20):
    n = 2 * n_per_group
    return np.column_stack([np.ones(n), np.r_[np.zeros(n_per_group), np.ones(n_per_group)]])


def cohort(n_per_group=20, random_seed=0):
    from nmm_inference.group_joint import simulate_cohort

    X = design(n_per_group)
    sim = simulate_cohort(X, BETA, TAU, names=NAMES, freqs=FREQS, dof=DOF, fixed=FIXED,
                          random_seed=random_seed)
    keys = [f"{'ctl' if X[i, 1] == 0 else 'pat'}{i:02d}" for i in range(X.shape[0])]
    return X, sim, keys


def units(sim, keys, sampler="laplace"):
    fit = {"sampler": sampler, "draws": 1000, "chains": 2, "log_evidence": False}
    if sampler == "laplace":
        fit["n_starts"] = 8
    else:
        fit.update(tune=1000, cores=1, n_starts=8)
    return {k: {"spectrum": sim["spectra"][i], "freqs": FREQS, "dof": DOF,
                "model": {"free": NAMES, "fixed": FIXED, "data_scale": "free"}, "fit": fit}
            for i, k in enumerate(keys)}


def truth():
    return {(c, p): float(BETA[i, j]) for i, c in enumerate(COVARIATES) for j, p in enumerate(NAMES)}
