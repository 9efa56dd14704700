"""Two-stage group model on a simulated cohort with a known group difference."""
from __future__ import annotations

import numpy as np
import pytest

from nmm_inference.errors import ParameterError
from nmm_inference.group import fit_group, group_effects_table, summarize_posteriors


def _cohort(rng, n_per_group=20, effect=0.3):
    names = ["g_ii_ss", "tau_ii", "sigmoid_slope"]
    n = 2 * n_per_group
    X = np.column_stack([np.ones(n), np.r_[np.zeros(n_per_group), np.ones(n_per_group)]])
    beta = np.array([[0.0, 0.05, 0.0], [effect, 0.0, 0.0]])  # patients differ in g_ii_ss only
    tau = np.array([0.1, 0.08, 0.05])
    theta = X @ beta + tau * rng.standard_normal((n, 3))
    # first-level posteriors: draws around the truth with recording-specific uncertainty
    posts = []
    for r in range(n):
        sd = np.array([0.08, 0.1, 0.05]) * rng.uniform(0.7, 1.3)
        center = theta[r] + sd * rng.standard_normal(3)
        draws = center + sd * rng.standard_normal((2000, 3))
        posts.append({k: draws[:, i] for i, k in enumerate(names)})
    return names, X, beta, posts


def test_group_difference_recovered(rng):
    names, X, beta, posts = _cohort(rng)
    m, C = summarize_posteriors(posts, names)
    dt = fit_group(m, C, X, names=names, covariates=["mean", "patient"], draws=500, tune=500,
                   chains=2, random_seed=1)
    rows = {(r["covariate"], r["param"]): r for r in group_effects_table(dt)}
    eff = rows[("patient", "g_ii_ss")]
    assert eff["hdi_low"] <= beta[1, 0] <= eff["hdi_high"]  # truth inside the 94 % HDI
    assert eff["excludes_zero"]                              # and the difference is detected
    for p in ("tau_ii", "sigmoid_slope"):                    # null effects are not reported
        assert not rows[("patient", p)]["excludes_zero"]
    assert dt["posterior"]["theta"].dims[-2:] == ("recording", "param")


def test_bad_input():
    with pytest.raises(ParameterError, match="shapes"):
        fit_group(np.zeros((3, 2)), np.zeros((3, 2, 2)), np.ones((4, 1)), names=["a", "b"], covariates=["m"])
    with pytest.raises(ParameterError, match="rank"):
        fit_group(np.zeros((3, 1)), np.ones((3, 1, 1)), np.ones((3, 2)), names=["a"], covariates=["m", "m2"])
