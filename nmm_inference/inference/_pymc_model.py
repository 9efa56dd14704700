"""The explicit PyMC model of a single-source inversion (imports pymc).

Every free parameter is a scalar random variable named as in
:func:`nmm_inference.params.parameter_table`, with SPM's (or the overridden) Normal prior on
SPM's scale; the LFP gain is *not* folded here.  The spectrum comes from
:func:`nmm_inference.cmc.pytensor_ops.cmc_spectrum` (exact gradient).  With the free data
scale, the filter offset is integrated out and the likelihood is a ``pm.Potential``
(closed form, see :mod:`nmm_inference.inference._target`); otherwise ``filter_offset`` is an
explicit variable with its (mixture) prior and the observed spectrum (SPM-scaled, the
internal frame) is a ``pm.Gamma`` or ``pm.Normal`` variable named ``"y"``.
"""

from __future__ import annotations

import numpy as np


def build_pymc_model(problem):
    import pymc as pm
    import pytensor.tensor as pt

    from ..cmc.kernel import FREE_NAMES
    from ..cmc.pytensor_ops import cmc_spectrum
    from . import _target as T

    coords = {"freq": problem.hz}
    sp = problem.scale_prior
    with pm.Model(coords=coords) as model:
        rv = {}
        for i, nm in enumerate(problem.names):
            rv[nm] = pm.Normal(nm, mu=float(problem.mu[i]), sigma=float(problem.sd[i]))
        marginal_flat = problem.lik_code == T.LIK_GAMMA_MARGINAL and int(sp[0]) == 0
        if problem.lik_code == T.LIK_GAMMA_MARGINAL and not marginal_flat:
            # f(1) explicit, internal (SPM-scaled) frame, with its (mixture) prior
            if int(sp[0]) == 1:
                rv["filter_offset"] = pm.Normal("filter_offset", mu=float(sp[2]), sigma=float(sp[3]))
            else:
                rv["filter_offset"] = pm.NormalMixture(
                    "filter_offset", w=np.array([sp[1], sp[4]]), mu=np.array([sp[2], sp[5]]),
                    sigma=np.array([sp[3], sp[6]]))
        entries = []
        for j, nm in enumerate(FREE_NAMES):
            entries.append(rv[nm] if nm in rv else pt.as_tensor_variable(np.float64(problem.base[j])))
        theta = pt.stack(entries)
        S, _ = cmc_spectrum(theta, problem.hz)
        a = problem.alpha
        y = problem.y_int
        if marginal_flat:
            A = np.float64(a.sum())
            B = pt.sum(a * y / S)
            from scipy.special import gammaln

            ll = (np.float64(problem.const) - pt.sum(a * pt.log(S)) + np.float64(gammaln(A))
                  - A * pt.log(B))
            pm.Potential("loglik_scale_marginal", ll)
        elif problem.lik_code == T.LIK_GAMMA_MARGINAL:
            pm.Gamma("y", alpha=a, beta=a / S, observed=y, dims="freq")
        else:
            h = rv.get("log_precision", pt.as_tensor_variable(np.float64(problem.base[T.IDX_H])))
            sigma = 1.0 / pt.sqrt(pt.exp(h) * problem.q)
            pm.Normal("y", mu=S, sigma=sigma, observed=y, dims="freq")
    return model
