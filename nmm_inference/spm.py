"""SPM-compatible entry points: SPM parameter dicts in, SPM spectra out.

These functions take parameters exactly as SPM stores them (``P.T``, ``P.G``, ``P.a`` ...,
as in the ``params`` field of ``../shared/reference/spm_golden/*.json``) and reproduce the
numbers of SPM12's ``spm_csd_mtf`` for the canonical microcircuit.
"""

from __future__ import annotations

import numpy as np

from .cmc.spectra import predict_csd_full

__all__ = ["predict_csd", "invert_csd", "posterior_to_spm"]


def predict_csd(P, hz):
    """Predicted single-source LFP spectrum of SPM's CMC (``spm_csd_mtf``).

    Parameters
    ----------
    P : dict
        SPM parameter dict (fields ``M, A, C, T, G, D, S, R, Lpos, L, J, a, b, c, d, f``;
        missing fields take SPM's prior mean).  Values are on SPM's scale: log-multipliers
        for T, G, D, S, A and the exponents of a, b, c; linear for L, J, d, f.
    hz : array-like, shape (n_freqs,)
        Frequencies in Hz.  SPM's DCT (``d``) and filter (``f``) terms depend on the number
        of bins, so the same parameters give different spectra on different grids, as in SPM.

    Returns
    -------
    ndarray, shape (n_freqs,)
        The predicted auto-spectrum (real): ``(|H|^2 Gu + Gs + Gn) exp(f1 + f2 k / n)``,
        with SPM's delay operator and eigenvalue conditioning.

    Raises
    ------
    nmm_inference.errors.ParameterError
        Unknown fields, wrong sizes, non-finite values, or bad frequencies.

    Notes
    -----
    The delayed Jacobian is solved exactly (Newton's method) rather than by SPM's truncated
    series; agreement with SPM's own outputs is better than 4e-6 relative on all golden
    cases.  Where the delayed system has growing modes, SPM's conditioning removes them and
    this function returns SPM's number; see
    :func:`nmm_inference.cmc.spectra.predict_csd_full` for the growth rate.

    Examples
    --------
    >>> import numpy as np
    >>> from nmm_inference.spm import predict_csd
    >>> y = predict_csd({"G": [0.2, 0, 0, 0]}, np.arange(4, 49))
    >>> y.shape
    (45,)
    """
    pred = predict_csd_full(P, hz, n_sources=1)
    return np.ascontiguousarray(pred.csd[:, 0, 0].real)


#: SPM fields with free entries for one LFP source (``spm_vec`` order).
_FREE_FIELDS = ("T", "G", "D", "S", "L", "J", "a", "b", "c", "d", "f")


def invert_csd(hz, y, *, dof, random_seed=None, sampler="nutpie", draws=1000, tune=1000,
               chains=4, likelihood="gamma", data_scale="auto", dof_scale="recorded",
               priors=None, leakage=None, **fit_kwargs):
    """Posterior over the one-source LFP CMC parameters given an observed auto-spectrum.

    SPM's 25 free parameters and priors (``spm_cmc_priors``, ``spm_L_priors``,
    ``spm_ssr_priors``), a Whittle/Gamma likelihood with the given degrees of freedom, and
    the default sampler (nutpie NUTS on the mode-merged, Laplace-whitened posterior; see
    :class:`nmm_inference.inference.CMCModel`).

    Parameters
    ----------
    hz : array-like, shape (n_freqs,)
        Frequencies in Hz (> 0, increasing).
    y : array-like, shape (n_freqs,)
        Observed single-channel auto-spectrum on ``hz``, in any units.
    dof : float | array-like, shape (n_freqs,)
        Equivalent chi-square degrees of freedom per bin (``y = S * chi2_dof / dof``).
    random_seed : int | numpy.random.Generator | None
        Seeds every random step.
    sampler : {"nutpie", "pymc", "smc", "laplace"}
    draws, tune, chains : int
    likelihood : {"gamma", "spm"}
    data_scale : {"auto", "model", "free", "spm"}
        How the unknown units of ``y`` enter (SPM's filter offset ``f(1)`` multiplies the
        whole spectrum; it is integrated out in closed form and drawn exactly afterwards).

        * ``"auto"`` (default): a Bayesian average of two hypotheses with prior probability
          1/2 each: ``y`` is in the model's units (SPM's prior ``f(1) ~ N(0, 1/64)`` applies
          to ``y`` as given, as for spectra made by ``spm_csd_mtf``/:func:`predict_csd`), or
          its units are unknown (``f(1) ~ N(0, 30**2)``, i.e. any scale from 1e-26 to 1e26).
          Spectra in V**2/Hz fall in the second case automatically; model-unit spectra get
          SPM's informative prior on the overall level, which is what identifies the split
          between neural gain and channel noise.
        * ``"model"``: only the first hypothesis.  ``"free"``: a flat prior on ``f(1)`` (the
          inference is then exactly invariant to the units of ``y``).
        * ``"spm"``: SPM's own rescaling ``k = 8 / max(ccf)`` and ``N(0, 1/64)`` prior on the
          rescaled data's ``f(1)`` (data-dependent; for comparisons with SPM).

        ``k`` is recorded in ``attrs["spm_scale_factor_k"]``; ``filter_offset`` is always
        reported for ``y`` in the units given (SPM's value on its rescaled data is
        ``filter_offset + log k``).
    dof_scale : {"recorded", "fit"}
        ``"fit"`` multiplies the dof by an estimated factor (``log_dof_scale``), for real
        spectra that the model cannot follow within their sampling error.
    priors : dict, optional
        ``{name: (mean, sd)}`` overrides of SPM's priors (names as in
        :func:`nmm_inference.params.parameter_table`).
    leakage : None | (nu, W), optional
        Spectral leakage of the estimate: expected bin values ``W @ S(nu)`` (see
        :class:`nmm_inference.inference.CMCModel`); ``None`` (default) compares bin by bin
        as SPM does.
    **fit_kwargs
        Passed to :meth:`nmm_inference.inference.CMCModel.fit` (``target_accept``,
        ``n_starts``, ``min_mode_weight``, ``cores``, ...).

    Returns
    -------
    xarray.DataTree
        Groups ``posterior`` (one variable per free parameter, named as in the parameter
        table, plus ``spectrum``), ``sample_stats``, ``log_likelihood``,
        ``posterior_predictive``, ``observed_data``, ``constant_data``; provenance,
        diagnostics (``converged``, ``r_hat_max``, ``ess_bulk_min``, ``n_divergent``),
        modes and the log evidence in ``attrs``.

    Raises
    ------
    nmm_inference.errors.DataError
        NaN or non-positive spectra, non-positive dof, mismatched shapes, frequencies <= 0.

    Examples
    --------
    >>> import numpy as np
    >>> from nmm_inference.spm import invert_csd, posterior_to_spm, predict_csd
    >>> hz = np.arange(4.0, 49.0)
    >>> post = invert_csd(hz, predict_csd({"L": 6.0}, hz), dof=64, random_seed=0)  # doctest: +SKIP
    >>> posterior_to_spm(post)["T"].shape  # doctest: +SKIP
    (4000, 1, 4)
    """
    from .inference.model import CMCModel

    model = CMCModel(y, freqs=hz, dof=dof, likelihood=likelihood, data_scale=data_scale,
                     dof_scale=dof_scale, priors=priors, leakage=leakage)
    return model.fit(sampler=sampler, draws=draws, tune=tune, chains=chains,
                     random_seed=random_seed, **fit_kwargs)


def posterior_to_spm(post):
    """Posterior draws as SPM parameter arrays.

    Parameters
    ----------
    post : xarray.DataTree
        The result of :func:`invert_csd` (or ``CMCModel.fit``).

    Returns
    -------
    dict
        SPM field name -> array of shape ``(n_draws_total, *shape of the field in SPM)`` for
        every field with a free entry (``T (1,4)``, ``G (1,4)``, ``D (1,1)``, ``S (1,1)``,
        ``L (1,1)``, ``J (1,8)``, ``a (2,1)``, ``b (2,1)``, ``c (2,1)``, ``d (4,1)``,
        ``f (2,1)``).  Entries that were not sampled hold their fixed value (SPM's prior
        mean, or the value given in ``fixed=``).  ``f(1)`` is for the spectrum in the units
        it was given, so ``predict_csd(draw, hz)`` is comparable with the data.
    """
    import json

    from .params import parameter_table, prior_mean_spm

    try:
        posterior = post["posterior"]
    except (KeyError, TypeError):
        raise ValueError("posterior_to_spm needs the DataTree returned by invert_csd "
                         "(with a 'posterior' group)") from None
    sizes = posterior.sizes
    n = int(sizes.get("chain", 1) * sizes.get("draw", 1))
    base = prior_mean_spm(1)
    fixed = json.loads(post.attrs.get("fixed_parameters", "{}")) if hasattr(post, "attrs") else {}
    out = {f: np.broadcast_to(base[f], (n,) + base[f].shape).copy() for f in _FREE_FIELDS}
    for spec in parameter_table(1):
        if spec.spm_field not in out:
            continue
        if spec.name in posterior.data_vars:
            vals = np.asarray(posterior[spec.name].values, dtype=float).reshape(n)
            out[spec.spm_field][(slice(None),) + tuple(spec.spm_index)] = vals
        elif spec.name in fixed:
            out[spec.spm_field][(slice(None),) + tuple(spec.spm_index)] = float(fixed[spec.name])
    return out
