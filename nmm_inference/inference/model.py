"""The CMC spectral model object: features + settings in, ArviZ ``DataTree`` out.

:class:`CMCModel` follows Bambi and scikit-learn: the constructor only stores its
arguments; :meth:`CMCModel.build` makes the PyMC model (lazily, only when a sampler or the
user needs it); :meth:`CMCModel.fit` finds the posterior's modes, samples and returns an
``xarray.DataTree`` with groups ``posterior``, ``sample_stats``, ``log_likelihood``,
``posterior_predictive``, ``observed_data`` and ``constant_data``.  What ``fit`` learns is
stored in attributes ending in ``_`` (``problem_``, ``modes_``, ``idata_``, ...).

How the posterior geometry is handled (measured; see ``bench/inversion_speed.py``)
-------------------------------------------------------------------------------------
1. **Exact symmetry of the LFP gain.** The predicted spectrum depends on ``L**2`` only
   (``L`` multiplies every observed population), so the posterior has two mirror modes
   ``+L`` and ``-L``, weighted only by SPM's prior ``N(1, 64)`` (about 56 : 44 at |L| = 8).
   A sampler started at positive ``L`` never visits ``-L``.  The sampler works with
   ``log|L|`` and the folded prior, and the sign is drawn exactly afterwards from
   ``P(L > 0 | |L|) = N(|L|; 1, 64) / (N(|L|; 1, 64) + N(-|L|; 1, 64))``.
2. **The overall scale.** The filter offset ``f(1)`` multiplies the whole spectrum; with the
   free data scale (default) it gets a flat prior, which makes the inference invariant to
   the units of the spectrum, and it is integrated out in closed form (drawn exactly
   afterwards).  This removes SPM's data-dependent rescaling from the inference (see
   :func:`nmm_inference.spm.invert_csd`).
3. **Remaining separated modes** (typically a second one, with the spiny-stellate and
   superficial-pyramidal time constants and the LFP contributions moved, 3-10 log-units
   lower) are found by multi-start MAP.  Every mode with a Laplace weight of at least
   ``min_mode_weight`` is whitened by its Laplace covariance and all of them are merged into
   one near-normal density by the Warp-U transformation, which is exact whatever the quality
   of the Laplace approximations (:mod:`nmm_inference.inference._target`).  NUTS (nutpie)
   samples that density; each draw is assigned to a mode with the exact conditional
   probabilities, so the modes get their correct weights and R-hat/ESS measure the mixing
   of the whole posterior.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone

import numpy as np

from .._version import __version__
from ..errors import DataError, NotFittedError, ParameterError
from ._problem import Problem
from .diagnostics import bridge_log_evidence, convergence_summary, warn_convergence
from .laplace import find_components, find_modes
from .likelihoods import check_spectrum
from .samplers import SAMPLERS

logger = logging.getLogger("nmm_inference")

__all__ = ["CMCModel", "HDI_PROB"]

#: Default credible-interval probability (as in ArviZ).
HDI_PROB = 0.94


def _child_seeds(random_seed, n):
    if isinstance(random_seed, np.random.Generator):
        return [int(s) for s in random_seed.integers(2 ** 63 - 1, size=n)]
    ss = np.random.SeedSequence(random_seed)
    return [int(c.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)) for c in ss.spawn(n)]


class CMCModel:
    """Bayesian inversion of SPM's canonical microcircuit on spectral features.

    Parameters
    ----------
    features : xarray.DataArray | array-like
        The spectrum: the output of :func:`nmm_inference.features.compute_psd` (dims
        ``channel``, ``freq``; coordinate ``dof``), or a 1-D array of power values (then give
        ``freqs`` and ``dof``).  Units are free (V**2/Hz or anything else; see
        ``data_scale``).
    freqs : array-like, shape (n_freqs,), optional
        Frequencies in Hz (> 0), when ``features`` is an array.
    dof : float | array-like, shape (n_freqs,), optional
        Equivalent chi-square degrees of freedom of each bin (overrides the features'
        ``dof`` coordinate).
    channel : str | int | None
        Which channel of ``features`` to fit (default: the only one).
    n_sources : int
        Number of sources; only 1 is implemented (one LFP channel).
    forward, backward, lateral : array-like of bool, optional
        Extrinsic connectivity (several sources only; not implemented yet).
    free : list of str, optional
        Parameters to keep free (default: all 25 with non-zero prior variance in SPM).
        Others are held at their prior mean or at ``fixed``.
    fixed : dict, optional
        ``{name: value}`` on SPM's scale for parameters held fixed.
    priors : dict, optional
        ``{name: (mean, sd)}`` on SPM's scale, overriding SPM's priors by name
        (``"log_precision"`` for SPM's Gaussian likelihood hyperparameter).
    likelihood : {"gamma", "spm"}
        ``"gamma"``: Whittle/Gamma with the recorded dof (default).  ``"spm"``: SPM's
        Gaussian with precision ``exp(h) Q`` (for comparisons).
    data_scale : {"free", "spm"}
        ``"free"`` (default): the filter offset ``f(1)`` gets a flat prior (any units).
        ``"spm"``: SPM's scaling ``k = 8 / max(ccf)`` and SPM's ``N(0, 1/64)`` prior on the
        scaled data's ``f(1)``.  Either way the reported ``filter_offset`` is for the
        spectrum in the units given, and ``k`` is recorded in ``attrs``.
    dof_scale : {"recorded", "fit"}
        ``"recorded"`` (default): the dof are taken as given.  ``"fit"``: the Gamma shape is
        ``kappa * dof / 2`` with ``log(kappa) ~ N(0, 1.5**2)`` (``log_dof_scale``), which
        lets the likelihood widen where the model cannot follow the spectrum within its
        sampling error (real data; the analogue of SPM's estimated precision).
    reject_growing : bool
        Give zero likelihood to parameters whose delayed Jacobian has growing modes (SPM's
        eigenvalue conditioning is used otherwise, as in SPM).
    leakage : None | (nu, W) | "auto"
        Spectral leakage of the estimate (opt-in; default ``None``: the model spectrum is
        compared with the data bin by bin, as in SPM).  ``(nu, W)``: the expected value of
        the estimate is ``W @ S(nu)`` for the model spectrum ``S`` on the fine grid ``nu``
        (:func:`nmm_inference.features.leakage.welch_expectation_matrix`).  ``"auto"``:
        built from the Welch settings that :func:`nmm_inference.features.compute_psd`
        stores in the features' attributes (Welch estimates only).

    Examples
    --------
    >>> import numpy as np
    >>> from nmm_inference.spm import predict_csd
    >>> from nmm_inference.inference import CMCModel
    >>> hz = np.arange(4.0, 49.0)
    >>> y = predict_csd({"L": 6.0}, hz)
    >>> model = CMCModel(y, freqs=hz, dof=64)
    >>> idata = model.fit(sampler="laplace", draws=100, chains=2, random_seed=0)  # doctest: +SKIP
    """

    def __init__(self, features=None, *, freqs=None, dof=None, channel=None, n_sources=1,
                 forward=None, backward=None, lateral=None, free=None, fixed=None, priors=None,
                 likelihood="gamma", data_scale="auto", dof_scale="recorded",
                 reject_growing=False, leakage=None):
        self.features = features
        self.freqs = freqs
        self.dof = dof
        self.channel = channel
        self.n_sources = n_sources
        self.forward = forward
        self.backward = backward
        self.lateral = lateral
        self.free = free
        self.fixed = fixed
        self.priors = priors
        self.likelihood = likelihood
        self.data_scale = data_scale
        self.dof_scale = dof_scale
        self.reject_growing = reject_growing
        self.leakage = leakage

    # ------------------------------------------------------------------ data and build

    def _data(self):
        feats = self.features
        if feats is None:
            raise DataError("no features given: pass a spectrum (compute_psd output or an array)")
        if self.n_sources != 1 or any(c is not None for c in (self.forward, self.backward, self.lateral)):
            raise NotImplementedError(
                "only the single-source model is implemented (n_sources=1, no extrinsic "
                "connections); several sources need the multi-source spectral Op")
        ch_name = None
        if hasattr(feats, "dims") and hasattr(feats, "coords"):
            da = feats
            if np.iscomplexobj(da.values):
                raise NotImplementedError("cross-spectral (complex) features need the multi-channel "
                                          "complex-Wishart model, not implemented yet; pass a PSD")
            if "channel" in da.dims:
                if self.channel is None:
                    if da.sizes["channel"] != 1:
                        raise DataError(f"features have {da.sizes['channel']} channels; choose one "
                                        f"with channel= (one of {list(da.channel.values)})")
                    da = da.isel(channel=0)
                elif isinstance(self.channel, (int, np.integer)):
                    da = da.isel(channel=int(self.channel))
                else:
                    if self.channel not in list(da.channel.values):
                        raise DataError(f"channel {self.channel!r} not in {list(da.channel.values)}")
                    da = da.sel(channel=self.channel)
                ch_name = str(da.channel.values) if "channel" in da.coords else None
            if "freq" not in da.dims or da.ndim != 1:
                raise DataError(f"features must have dims (channel, freq) or (freq,), got {da.dims}")
            hz = np.asarray(da["freq"].values, float)
            y = np.asarray(da.values, float)
            dof = self.dof
            if dof is None:
                if "dof" not in da.coords:
                    raise DataError("features have no 'dof' coordinate; pass dof=")
                dof = np.asarray(da["dof"].values, float)
            attrs = dict(getattr(da, "attrs", {}))
        else:
            y = np.asarray(feats)
            if np.iscomplexobj(y):
                raise NotImplementedError("complex cross-spectra are not supported yet; pass a PSD")
            if self.freqs is None or self.dof is None:
                raise DataError("with an array of spectral values, give freqs= (Hz) and dof=")
            hz, y, dof = np.asarray(self.freqs, float), y.astype(float), self.dof
            attrs = {}
        hz, y, dof = check_spectrum(hz, y, dof)
        return hz, y, dof, ch_name, attrs

    def _leakage(self, hz, attrs):
        lk = self.leakage
        if lk is None or not isinstance(lk, str):
            return lk
        if lk != "auto":
            raise ParameterError(f"leakage must be None, (nu, W) or 'auto', got {lk!r}")
        import json

        from ..features.leakage import welch_expectation_matrix

        try:
            st = json.loads(attrs["settings"])
            sfreq = float(attrs["sfreq"])
        except (KeyError, TypeError, ValueError):
            raise ParameterError("leakage='auto' needs the output of compute_psd (its attrs "
                                 "'settings' and 'sfreq'); pass leakage=(nu, W) instead") from None
        if st.get("method") != "welch" or st.get("detrend") not in ("constant", None):
            raise ParameterError("leakage='auto' supports Welch estimates with constant or no "
                                 f"detrending (got method={st.get('method')!r}, detrend="
                                 f"{st.get('detrend')!r}); pass leakage=(nu, W) instead")
        win = st.get("window") or "hann"
        win = tuple(win) if isinstance(win, list) else win
        return welch_expectation_matrix(hz, sfreq=sfreq, n_per_seg=int(st["n_per_seg"]),
                                        window=win,
                                        detrend=st.get("detrend"))

    def _problem(self):
        if getattr(self, "problem_", None) is None:
            hz, y, dof, ch, attrs = self._data()
            self.problem_ = Problem(hz=hz, y=y, dof=dof, likelihood=self.likelihood,
                                    data_scale=self.data_scale, priors=dict(self.priors or {}),
                                    fixed=dict(self.fixed or {}),
                                    free=list(self.free) if self.free is not None else None,
                                    reject_growing=self.reject_growing,
                                    dof_scale=self.dof_scale,
                                    leakage=self._leakage(hz, attrs))
            self._channel = ch
            self._feature_attrs = attrs
        return self.problem_

    def build(self):
        """Build the explicit PyMC model (``pymc_model_``) and return it.

        Every free parameter is a scalar variable named as in the parameter table, with its
        prior on SPM's scale; see :mod:`nmm_inference.inference._pymc_model`.
        """
        from ._pymc_model import build_pymc_model

        self.pymc_model_ = build_pymc_model(self._problem())
        return self.pymc_model_

    @staticmethod
    def _variant(prob, data_scale):
        return Problem(hz=prob.hz, y=prob.y, dof=prob.dof, likelihood=prob.likelihood,
                       data_scale=data_scale, priors=prob.priors, fixed=prob.fixed,
                       free=prob.free, reject_growing=prob.reject_growing,
                       dof_scale=prob.dof_scale, leakage=prob.leakage)

    @property
    def param_names(self):
        """Names of the sampled parameters (free parameters, table order)."""
        return list(self._problem().names)

    # ------------------------------------------------------------------ modes

    def find_modes(self, *, n_starts=32, random_seed=None, **mode_search):
        """Multi-start MAP with Laplace approximations; sets and returns ``modes_``.

        ``mode_search``: further options of
        :func:`~nmm_inference.inference.laplace.find_modes`."""
        self.modes_ = find_modes(self._problem(), n_starts=n_starts, random_seed=random_seed,
                                 **mode_search)
        return self.modes_

    def find_components(self, *, n_starts=32, random_seed=None, mode_search=None):
        """The mode search of :meth:`fit`: modes and warp components of the posterior.

        With ``data_scale="auto"`` and the Gamma likelihood the "model" and "free" data-scale
        variants are searched (:func:`~nmm_inference.inference.laplace.find_components`).
        Sets ``modes_`` and ``components_``.

        Parameters
        ----------
        n_starts : int
            Optimiser starts per searched variant.
        random_seed : int | numpy.random.Generator | None
            Seed of the starts (``fit`` passes its first child seed).
        mode_search : dict, optional
            Options of :func:`~nmm_inference.inference.laplace.find_modes`.

        Returns
        -------
        modes, components : list of Mode
        """
        prob = self._problem()
        variants = None
        if prob.data_scale == "auto" and prob.lik_code == 0:
            variants = [self._variant(prob, "model"), self._variant(prob, "free")]
        self.modes_, self.components_ = find_components(
            prob, variants, n_starts=n_starts, random_seed=random_seed, mode_search=mode_search)
        return self.modes_, self.components_

    # ------------------------------------------------------------------ fit

    def fit(self, *, sampler="nutpie", draws=1000, tune=1000, chains=4, random_seed=None,
            target_accept=0.8, n_starts=32, min_mode_weight=1e-3, log_evidence=True,
            cores=None, progressbar=False, mode_search=None, **sample_kwargs):
        """Sample the posterior and return an ArviZ ``DataTree``.

        Parameters
        ----------
        sampler : {"nutpie", "pymc", "smc", "laplace"}
            See :mod:`nmm_inference.inference.samplers`.
        draws, tune, chains : int
            Draws and tuning steps per chain (``tune`` unused by SMC and Laplace; for SMC
            ``draws`` is the number of particles per chain).
        random_seed : int | numpy.random.Generator | None
            Seeds every random step (mode search, sampler, sign and scale draws,
            posterior predictive).
        target_accept : float
            NUTS step-size adaptation target.
        n_starts : int
            Optimiser starts for the mode search.
        min_mode_weight : float
            Modes with a smaller Laplace weight are not sampled (they are listed in
            ``attrs["modes"]`` with their weights).
        log_evidence : bool
            Estimate the log evidence (bridge sampling for NUTS; SMC's own estimate).
        cores : int | None
            Parallel chains (default: min(chains, CPU count)).
        progressbar : bool
        mode_search : dict, optional
            Options of the mode search (:func:`~nmm_inference.inference.laplace.find_modes`:
            ``explore``, ``explore_sd``, ``explore_rounds``, ``explore_delta``, ...).
        **sample_kwargs
            Passed to ``nutpie.sample``, ``pymc.sample`` or ``pymc.sample_smc``.

        Returns
        -------
        xarray.DataTree
        """
        from . import samplers as S

        if sampler not in SAMPLERS:
            raise ParameterError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        for nm, v in (("draws", draws), ("chains", chains)):
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ParameterError(f"{nm} must be a positive integer, got {v!r}")
        if sampler in ("nutpie", "pymc") and (not isinstance(tune, (int, np.integer)) or tune < 0):
            raise ParameterError(f"tune must be a non-negative integer, got {tune!r}")
        t_start = time.perf_counter()
        seeds = _child_seeds(random_seed, 4)
        prob = self._problem()
        t0 = time.perf_counter()
        if sampler != "smc":
            self.find_components(n_starts=n_starts, random_seed=seeds[0], mode_search=mode_search)
        t_modes = time.perf_counter() - t0
        buf = None
        kept = dropped = None
        if sampler == "nutpie":
            res, buf, kept, dropped = S.sample_nutpie(
                prob, self.components_, draws=draws, tune=tune, chains=chains, random_seed=seeds[1],
                target_accept=target_accept, min_mode_weight=min_mode_weight, cores=cores,
                progressbar=progressbar, **sample_kwargs)
        elif sampler == "pymc":
            res, buf, kept, dropped = S.sample_pymc(
                prob, self.components_, draws=draws, tune=tune, chains=chains, random_seed=seeds[1],
                target_accept=target_accept, min_mode_weight=min_mode_weight, cores=cores,
                progressbar=progressbar, **sample_kwargs)
        elif sampler == "smc":
            model = getattr(self, "pymc_model_", None) or self.build()
            res = S.sample_smc(prob, model, draws=draws, chains=chains, random_seed=seeds[1],
                               cores=cores, progressbar=progressbar, **sample_kwargs)
            self.modes_ = []
        else:
            res = S.sample_laplace(prob, self.modes_, draws=draws, chains=chains,
                                   random_seed=seeds[1])
        if buf is not None:
            self.warp_buffer_ = buf
            self.warp_draws_ = res.z
        le = le_se = None
        le_method = None
        if log_evidence:
            if buf is not None:
                le, le_se = bridge_log_evidence(buf, res.z, random_seed=seeds[2])
                le_method = "warp-U bridge sampling"
            elif res.log_evidence is not None:
                le, le_se = res.log_evidence, res.log_evidence_se
                le_method = {"smc": "SMC (pymc.sample_smc)", "laplace": "importance sampling from the Laplace mixture"}[sampler]
        if le is not None:   # internal (scaled) frame -> user units
            le = le - prob.hz.size * prob.log_k
        idata = self._assemble(res, seeds[3], kept=kept, dropped=dropped, log_evidence=le,
                               log_evidence_se=le_se, log_evidence_method=le_method,
                               settings=dict(sampler=sampler, draws=draws, tune=tune,
                                             chains=chains, target_accept=target_accept,
                                             n_starts=n_starts, min_mode_weight=min_mode_weight,
                                             mode_search=dict(mode_search or {}),
                                             random_seed=None if isinstance(random_seed, np.random.Generator) else random_seed),
                               t_modes=t_modes, t_total=time.perf_counter() - t_start)
        self.idata_ = idata
        return idata

    # ------------------------------------------------------------------ assembly

    def _assemble(self, res, seed, *, kept, dropped, log_evidence, log_evidence_se,
                  log_evidence_method, settings, t_modes, t_total):
        import xarray as xr

        prob = self.problem_
        rng = np.random.default_rng(seed)
        nc, nd, d = res.phi.shape
        flat = res.phi.reshape(-1, d)
        theta, Sint = prob.theta_matrix(flat, rng)
        named = prob.to_named(theta)
        ll = prob.pointwise_loglik(theta, Sint)
        yrep = prob.predictive(theta, Sint, rng)
        lp = np.array([prob.logp(p, False)[0] for p in flat])
        coords = {"chain": np.arange(nc), "draw": np.arange(nd), "freq": prob.hz}
        cd = ("chain", "draw")
        post = xr.Dataset({nm: (cd, v.reshape(nc, nd)) for nm, v in named.items()},
                          coords={"chain": coords["chain"], "draw": coords["draw"]})
        post["spectrum"] = (cd + ("freq",), (Sint / prob.k).reshape(nc, nd, -1))
        post = post.assign_coords(freq=prob.hz)
        post["spectrum"].attrs["description"] = "predicted spectrum (model mean) in the data's units"
        stats = {k: (cd, np.asarray(v).reshape(nc, nd)) for k, v in res.stats.items()}
        stats["lp"] = (cd, lp.reshape(nc, nd))
        all_modes = list(self.modes_ or [])
        assign = self._assign_modes(flat, all_modes) if all_modes else None
        if assign is not None:
            stats["mode"] = (cd, assign.reshape(nc, nd))
        if res.mode is not None and res.sampler in ("nutpie", "pymc"):
            stats["warp_component"] = (cd, np.asarray(res.mode).reshape(nc, nd).astype(np.int64))
        ss = xr.Dataset(stats, coords={"chain": coords["chain"], "draw": coords["draw"]})
        if "diverging" not in ss:
            ss["diverging"] = (cd, np.zeros((nc, nd), dtype=bool))
        llds = xr.Dataset({"y": (cd + ("freq",), ll.reshape(nc, nd, -1))}, coords=coords)
        ppds = xr.Dataset({"y": (cd + ("freq",), yrep.reshape(nc, nd, -1))}, coords=coords)
        obs = xr.Dataset({"y": (("freq",), prob.y)}, coords={"freq": prob.hz})
        const = xr.Dataset({"dof": (("freq",), prob.dof)}, coords={"freq": prob.hz})
        n_div = int(np.sum(ss["diverging"].values))
        var_names = list(named)
        diag = convergence_summary(post[var_names], n_divergent=n_div, sampler=res.sampler)
        if res.sampler == "laplace":
            k = float(res.info.get("pareto_k", np.nan))
            diag["pareto_k"] = k
            diag["n_redrawn_outside_support"] = int(res.info.get("n_redrawn_outside_support", 0))
            if not k <= 0.7:
                diag["converged"] = False
                diag["problems"] = [f"the Laplace mixture is a poor approximation of the posterior "
                                    f"(Pareto k of p/q = {k:.2f} > 0.7)"]
                diag["advice"] = "use sampler='nutpie' (default) for the posterior"
        warn_convergence(diag, stacklevel=4)
        now = datetime.now(timezone.utc).isoformat()
        base_attrs = {"created_at": now, "inference_library": f"nmm_inference ({res.sampler})",
                      "modeling_interface": "nmm_inference.inference.CMCModel",
                      "modeling_interface_version": __version__}
        modes_info = []
        min_w = json.loads(json.dumps(settings)).get("min_mode_weight", 0.0)
        for i, m in enumerate(all_modes):
            dct = m.as_dict(prob.names)
            dct["sampled"] = (m.weight >= min_w) if kept is not None else True
            if assign is not None:
                dct["weight_posterior"] = float(np.mean(assign == i))
            modes_info.append(dct)
        attrs = dict(base_attrs)
        attrs.update({
            "nmm_inference_version": __version__,
            "forward_model": "SPM canonical microcircuit (spm_fx_cmc, spm_csd_mtf), one LFP source",
            "likelihood": {"gamma": "Whittle/Gamma with the recorded dof", "spm": "SPM Gaussian (spm_dcm_csd_Q)"}[prob.likelihood],
            "data_scale": prob.data_scale,
            "dof_scale": prob.dof_scale,
            "spm_scale_factor_k": float(prob.k_spm),
            "internal_scale_factor": float(prob.k),
            "filter_offset_frame": "filter_offset (SPM f(1)) is for the spectrum in the units given; "
                                   "SPM's scaled-data value is filter_offset + log(spm_scale_factor_k)",
            "lfp_gain_sign": "the spectrum depends on lfp_gain**2; its sign is drawn from the prior given |L|",
            "sampler": res.sampler,
            "settings": json.dumps(settings),
            "sampler_info": json.dumps(res.info, default=str),
            "free_parameters": json.dumps(prob.names),
            "fixed_parameters": json.dumps(dict(self.fixed or {})),
            "priors": json.dumps({n: [float(m), float(s)] for n, m, s in zip(prob.names, prob.mu, prob.sd)}),
            "modes": json.dumps(modes_info),
            "n_modes_found": len(self.modes_ or []),
            "n_warp_components": len(kept) if kept is not None else 0,
            "converged": int(bool(diag["converged"])),
            "convergence": json.dumps(diag, default=str),
            "r_hat_max": float(diag["r_hat_max"]),
            "ess_bulk_min": float(diag["ess_bulk_min"]),
            "ess_tail_min": float(diag["ess_tail_min"]),
            "n_divergent": n_div,
            "hdi_prob": HDI_PROB,
            "wall_time_s": float(t_total),
            "wall_time_modes_s": float(t_modes),
            "wall_time_sampling_s": float(res.wall_s),
        })
        if self._channel is not None:
            attrs["channel"] = self._channel
        if log_evidence is not None:
            attrs["log_evidence"] = float(log_evidence)
            attrs["log_evidence_se"] = float(log_evidence_se) if log_evidence_se is not None else float("nan")
            attrs["log_evidence_method"] = log_evidence_method
            attrs["log_evidence_note"] = ("log p(y) of the spectrum in the units given; with "
                                          "data_scale='free' the flat prior on filter_offset is "
                                          "improper, so compare only models fitted to the same data")
        if self._feature_attrs:
            attrs["feature_settings"] = json.dumps({k: v for k, v in self._feature_attrs.items()},
                                                   default=str)
        for ds in (post, ss, llds, ppds, obs, const):
            ds.attrs.update(base_attrs)
        dt = xr.DataTree.from_dict({"posterior": post, "sample_stats": ss, "log_likelihood": llds,
                                    "posterior_predictive": ppds, "observed_data": obs,
                                    "constant_data": const})
        dt.attrs.update(attrs)
        self.diagnostics_ = diag
        return dt

    @staticmethod
    def _assign_modes(phi, modes):
        """Index of the mode whose weighted Laplace density is largest at each draw."""
        score = np.empty((phi.shape[0], len(modes)))
        for k, m in enumerate(modes):
            r = np.linalg.solve(m.chol, (phi - m.phi).T)
            score[:, k] = (np.log(max(m.weight, 1e-300)) - 0.5 * np.sum(r * r, axis=0)
                           - np.sum(np.log(np.diag(m.chol))))
        return np.argmax(score, axis=1).astype(np.int64)

    # ------------------------------------------------------------------ reports

    def _check_fitted(self):
        if getattr(self, "idata_", None) is None:
            raise NotFittedError("this CMCModel is not fitted yet: call fit() first")
        return self.idata_

    def summary(self, *, hdi_prob=HDI_PROB):
        """ArviZ summary (mean, sd, HDI, ESS, R-hat) of the parameters."""
        import arviz as az

        dt = self._check_fitted()
        names = [v for v in dt.posterior.data_vars if v != "spectrum"]
        return az.summary(dt, var_names=names, ci_kind="hdi", ci_prob=hdi_prob, round_to=None)

    def loo(self, **kwargs):
        """PSIS-LOO (``arviz.loo``) over frequency bins."""
        import arviz as az

        return az.loo(self._check_fitted(), var_name="y", **kwargs)

    def log_evidence(self):
        """``(log evidence, standard error, method)`` of the last fit."""
        dt = self._check_fitted()
        if "log_evidence" not in dt.attrs:
            raise NotFittedError("this fit has no log-evidence estimate: fit(log_evidence=True)")
        return dt.attrs["log_evidence"], dt.attrs["log_evidence_se"], dt.attrs["log_evidence_method"]

    def ppc_coverage(self, *, hdi_prob=HDI_PROB):
        """Fraction of frequency bins whose observed value lies in the central
        ``hdi_prob`` posterior-predictive interval."""
        dt = self._check_fitted()
        yrep = dt.posterior_predictive["y"].values.reshape(-1, dt.posterior_predictive.sizes["freq"])
        lo, hi = np.quantile(yrep, [(1 - hdi_prob) / 2, (1 + hdi_prob) / 2], axis=0)
        y = dt.observed_data["y"].values
        return float(np.mean((y >= lo) & (y <= hi)))
