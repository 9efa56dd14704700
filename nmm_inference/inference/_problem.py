"""The numerical statement of one inversion: data, free parameters, priors, likelihood.

:class:`Problem` turns a model description (see :class:`~nmm_inference.inference.CMCModel`)
into the arrays the numba target needs, and maps sampler coordinates back to named SPM-scale
parameters.  Coordinates:

* ``phi`` -- the sampled parameters (length ``d``): every free parameter on SPM's scale,
  except the LFP gain, which is sampled as ``log|L|`` (the spectrum depends on ``L**2``
  only, so the sign is drawn exactly afterwards; see :meth:`Problem.to_named`), and
  ``filter_offset`` (SPM's ``f(1)``), which is integrated out when the data scale is free
  and drawn exactly afterwards.
* named draws -- ``{name: array}`` on SPM's scale, ``filter_offset`` in the units of the
  data the user passed (SPM's ``f(1)`` of a model fitted to the unscaled spectrum).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..cmc.kernel import FREE_NAMES
from ..errors import ParameterError
from ..params import parameter_table
from . import _target as T
from .likelihoods import SPM_LOG_PRECISION_PRIOR, spm_precision, spm_scale_factor

LIKELIHOODS = ("gamma", "spm")
DATA_SCALES = ("auto", "model", "free", "spm")
#: "auto": prior probability that the spectrum is NOT in model units, and the SD (log units)
#: of its unknown scale in that case.
AUTO_SLAB_WEIGHT = 0.5
AUTO_SLAB_SD = 30.0
SPM_F1_SD = 0.125   # sqrt(1/64)
LOG_PRECISION = "log_precision"
LOG_DOF_SCALE = "log_dof_scale"
#: Prior (mean, sd) of log(kappa), the factor on the recorded dof when dof_scale="fit".
DOF_SCALE_PRIOR = (0.0, 1.5)
DOF_SCALES = ("recorded", "fit")


def _prior_tuple(name, value):
    if isinstance(value, dict):
        try:
            mu, sd = float(value["mu"]), float(value["sigma"])
        except KeyError:
            raise ParameterError(f"prior for {name!r} must have keys 'mu' and 'sigma', got {sorted(value)}") from None
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        mu, sd = float(value[0]), float(value[1])
    else:
        raise ParameterError(f"prior for {name!r} must be (mean, sd) on SPM's scale or "
                             f"{{'mu': ..., 'sigma': ...}}, got {value!r}")
    if not (np.isfinite(mu) and np.isfinite(sd) and sd > 0):
        raise ParameterError(f"prior for {name!r} needs a finite mean and a positive sd, got ({mu}, {sd})")
    return mu, sd


@dataclass
class Problem:
    """Arrays and conventions of one single-source inversion."""

    hz: np.ndarray
    y: np.ndarray                 # data as passed (user units)
    dof: np.ndarray
    likelihood: str = "gamma"
    data_scale: str = "auto"
    priors: dict = field(default_factory=dict)
    fixed: dict = field(default_factory=dict)
    free: list | None = None
    reject_growing: bool = False
    dof_scale: str = "recorded"
    leakage: tuple | None = None   # (nu, W): expected bin value = W @ S(nu)

    def __post_init__(self):
        if self.likelihood not in LIKELIHOODS:
            raise ParameterError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        if self.data_scale not in DATA_SCALES:
            raise ParameterError(f"data_scale must be one of {DATA_SCALES}, got {self.data_scale!r}")
        if self.likelihood == "spm" and self.data_scale not in ("spm", "model"):
            raise ParameterError("likelihood='spm' (SPM's Gaussian) needs data_scale='spm' or 'model' "
                                 f"(got {self.data_scale!r}): the scale is integrated out for the "
                                 "Gamma likelihood only")
        if self.dof_scale not in DOF_SCALES:
            raise ParameterError(f"dof_scale must be one of {DOF_SCALES}, got {self.dof_scale!r}")
        if self.dof_scale == "fit" and self.likelihood != "gamma":
            raise ParameterError("dof_scale='fit' applies to the Gamma likelihood only (SPM's "
                                 "Gaussian has its own precision hyperparameter)")
        self._leak = None
        if self.leakage is not None:
            if not (isinstance(self.leakage, (tuple, list)) and len(self.leakage) == 2):
                raise ParameterError("leakage must be None or a pair (nu, W) with the expected "
                                     "bin values W @ S(nu), e.g. from "
                                     "nmm_inference.features.leakage.welch_expectation_matrix")
            try:
                self._leak = T.leakage_grid(self.hz, self.leakage[0], self.leakage[1])
            except ValueError as err:
                raise ParameterError(f"bad leakage operator: {err}") from None
        table = {s.name: s for s in parameter_table(1)}
        known = set(FREE_NAMES) | {LOG_PRECISION, LOG_DOF_SCALE}
        for nm in list(self.priors) + list(self.fixed) + list(self.free or []):
            if nm not in known:
                import difflib

                close = difflib.get_close_matches(str(nm), sorted(known), n=3)
                hint = f"; did you mean {close}?" if close else ""
                raise ParameterError(f"unknown parameter {nm!r}{hint} (free parameters of the "
                                     f"one-source CMC: {list(FREE_NAMES)})")
        if self.data_scale == "free" and "filter_offset" in self.priors:
            raise ParameterError("data_scale='free' gives filter_offset a flat prior (the data's "
                                 "units are unknown); use data_scale='model' to set a prior on it")
        self.k_spm = spm_scale_factor(self.y, self.hz)
        # internal frame: the SPM-scaled data (numbers of order one whatever the units)
        self.k = self.k_spm
        self.log_k = float(np.log(self.k))
        # prior of f(1) in the internal frame: [ncomp, w1, m1, s1, w2, m2, s2]
        lk = self.log_k
        if "filter_offset" in self.priors:
            m_, s_ = _prior_tuple("filter_offset", self.priors["filter_offset"])
            sp = [1, 1.0, m_ + lk, s_, 0.0, 0.0, 1.0]
        elif self.data_scale == "free":
            sp = [0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0]
        elif self.data_scale == "model":
            sp = [1, 1.0, lk, SPM_F1_SD, 0.0, 0.0, 1.0]
        elif self.data_scale == "spm":
            sp = [1, 1.0, 0.0, SPM_F1_SD, 0.0, 0.0, 1.0]
        else:   # auto
            sp = [2, 1.0 - AUTO_SLAB_WEIGHT, lk, SPM_F1_SD, AUTO_SLAB_WEIGHT, lk, AUTO_SLAB_SD]
        self.scale_prior = np.array(sp, dtype=float)
        self.y_int = self.y * self.k
        self.alpha = 0.5 * self.dof
        self.q = spm_precision(self.y_int)
        self.lik_code = {"gamma": T.LIK_GAMMA_MARGINAL, "spm": T.LIK_GAUSS_SPM}[self.likelihood]
        # base vector (26) of SPM-scale values for fixed entries
        base = np.zeros(T.N_THETA)
        for i, nm in enumerate(FREE_NAMES):
            base[i] = table[nm].prior_mean
        base[T.IDX_H] = SPM_LOG_PRECISION_PRIOR[0]
        for nm, v in self.fixed.items():
            v = float(v)
            if not np.isfinite(v):
                raise ParameterError(f"fixed value of {nm!r} is not finite: {v!r}")
            if nm == "filter_offset":
                v = v + self.log_k   # user units -> internal (scaled) frame
            base[FREE_NAMES.index(nm) if nm in FREE_NAMES else T.IDX_H] = v
        cand = list(self.free) if self.free is not None else list(FREE_NAMES)
        names = []
        for nm in FREE_NAMES:
            if nm not in cand or nm in self.fixed:
                continue
            if nm == "filter_offset" and self.lik_code == T.LIK_GAMMA_MARGINAL:
                continue
            names.append(nm)
        if self.likelihood == "spm" and LOG_PRECISION not in self.fixed:
            names.append(LOG_PRECISION)
        if self.dof_scale == "fit":
            names.append(LOG_DOF_SCALE)
            base[T.IDX_H] = 0.0
        if self.lik_code == T.LIK_GAMMA_MARGINAL:
            base[T.IDX_F1] = 0.0
        if not names:
            raise ParameterError("no free parameters left")
        self.names = names
        self.free_idx = np.array([FREE_NAMES.index(n) if n in FREE_NAMES else T.IDX_H for n in names])
        if LOG_PRECISION in names and LOG_DOF_SCALE in names:   # pragma: no cover - excluded above
            raise ParameterError("log_precision and log_dof_scale cannot both be free")
        mu = np.empty(len(names))
        sd = np.empty(len(names))
        for i, nm in enumerate(names):
            if nm in self.priors:
                mu[i], sd[i] = _prior_tuple(nm, self.priors[nm])
            elif nm == LOG_PRECISION:
                mu[i], sd[i] = SPM_LOG_PRECISION_PRIOR[0], np.sqrt(SPM_LOG_PRECISION_PRIOR[1])
            elif nm == LOG_DOF_SCALE:
                mu[i], sd[i] = DOF_SCALE_PRIOR
            else:
                spec = table[nm]
                if spec.prior_var <= 0:
                    raise ParameterError(f"{nm!r} has zero prior variance in SPM; give it a prior "
                                         "in priors= to make it free")
                mu[i], sd[i] = spec.prior_mean, np.sqrt(spec.prior_var)
        if "filter_offset" in names:   # SPM's Gaussian likelihood: f(1) is sampled
            i = names.index("filter_offset")
            mu[i], sd[i] = self.scale_prior[2], self.scale_prior[3]
        self.mu = mu
        self.sd = sd
        self.prec = 1.0 / sd ** 2
        self.fold = names.index("lfp_gain") if "lfp_gain" in names else -1
        self.base = base
        self.d = len(names)
        # constant of the log-likelihood (internal frame)
        from scipy.special import gammaln

        a = self.alpha
        if self.lik_code == T.LIK_GAMMA_MARGINAL:
            self.const = float(np.sum(a * np.log(a) - gammaln(a) + (a - 1) * np.log(self.y_int)))
        elif self.lik_code == T.LIK_GAMMA:
            self.const = float(np.sum(a * np.log(a) - gammaln(a) + (a - 1) * np.log(self.y_int)))
        else:
            self.const = float(np.sum(0.5 * np.log(self.q / (2 * np.pi))))
        # the log posterior does not depend on the warp components: any will do here
        self._buf = self.buffer(self.mu[None], np.diag(self.scale)[None], [0.0])

    # ------------------------------------------------------------------ coordinates

    @property
    def center(self):
        """A reference point in phi: prior means, the gain coordinate at |L| = max(|mu_L|, sd_L)."""
        c = self.mu.copy()
        if self.fold >= 0:
            c[self.fold] = np.log(max(abs(self.mu[self.fold]), self.sd[self.fold]))
            c = self._logabs_to_u(c[None])[0]
        return c

    @property
    def scale(self):
        """Prior scale in phi (1 for the gain coordinate)."""
        s = self.sd.copy()
        if self.fold >= 0:
            s[self.fold] = 1.0
        return s

    def _logabs_to_u(self, phi):
        """Replace log|L| in column ``fold`` by the gain coordinate ``log|L| + log(N)/2``."""
        phi = np.array(phi, dtype=float)
        N = T.neural_power_many(np.ascontiguousarray(phi), self._buf)
        phi[:, self.fold] = phi[:, self.fold] + 0.5 * np.log(np.where(N > 0, N, np.nan))
        return phi

    def prior_draws(self, n, rng):
        """Draws of phi from the prior (n, d); rows where the gain is undefined are dropped."""
        z = rng.standard_normal((n, self.d))
        out = self.mu + self.sd * z
        if self.fold >= 0:
            out[:, self.fold] = np.log(np.maximum(np.abs(out[:, self.fold]), 0.05 * self.sd[self.fold]))
            out = self._logabs_to_u(out)
            out = out[np.all(np.isfinite(out), axis=1)]
        return out

    def buffer(self, modes=None, chols=None, log_weights=None, lp_max=np.inf):
        """Packed buffer for the numba target (default: one 'mode' at the prior scale)."""
        if modes is None:
            modes = self.center[None]
            chols = np.diag(self.scale)[None]
            log_weights = [0.0]
        return T.pack(hz=self.hz, y=self.y_int, alpha=self.alpha, q=self.q, free_idx=self.free_idx,
                      theta_base=self.base, mu=self.mu, prec=self.prec, lik=self.lik_code,
                      const=self.const, fold=self.fold, reject=self.reject_growing, modes=modes,
                      chols=chols, log_weights=log_weights, scale_prior=self.scale_prior,
                      lp_max=lp_max, dof_scale_free=self.dof_scale == "fit",
                      leakage=self._leak)

    def logp(self, phi, grad=True):
        """Log posterior (up to the data-independent constant of flat priors) and gradient."""
        return T.logpost_buf(np.ascontiguousarray(phi, dtype=float), self._buf, grad)

    # ------------------------------------------------------------------ back to parameters

    def theta_matrix(self, phi, rng):
        """Full 26-vectors (n, 26) in the internal frame, with L's sign and f(1) drawn.

        Returns ``(theta, S)`` where ``S`` (n, n_freqs) are the internal-frame spectra.
        """
        phi = np.atleast_2d(phi)
        n = phi.shape[0]
        th = np.tile(self.base, (n, 1))
        th[:, self.free_idx] = phi
        if self.fold >= 0:
            ell = T.abs_gain_many(np.ascontiguousarray(phi, dtype=float), self._buf)
            mu, v = self.mu[self.fold], self.sd[self.fold] ** 2
            p_pos = 1.0 / (1.0 + np.exp(-2.0 * ell * mu / v))   # N(l;mu)/(N(l;mu)+N(-l;mu))
            sign = np.where(rng.uniform(size=n) < p_pos, 1.0, -1.0)
            th[:, self.free_idx[self.fold]] = sign * ell
        S = T.spectra_many(np.ascontiguousarray(th), np.array(self.hz, dtype=np.float64),
                           self._buf if self._leak is not None else None)
        if self.lik_code == T.LIK_GAMMA_MARGINAL:
            kap = self.kappa(th)
            B = kap * np.sum(self.alpha * self.y_int / S, axis=1)
            f1 = self.draw_filter_offset(B, rng, A=kap * self.alpha.sum())
            th[:, T.IDX_F1] = f1
            S = S * np.exp(f1)[:, None]
        return th, S

    def kappa(self, theta):
        """Factor on the recorded dof per draw (1 unless dof_scale='fit')."""
        theta = np.atleast_2d(theta)
        if self.dof_scale == "fit":
            return np.exp(theta[:, T.IDX_H])
        return np.ones(theta.shape[0])

    def draw_filter_offset(self, B, rng, n_grid=801, A=None):
        """Exact draws of f(1) (internal frame) given ``B = sum(alpha y / S0)`` per draw.

        The conditional density is ``exp(-A f - B e^-f) pi(f)``: a Gamma law for the flat
        prior; otherwise a mixture component is chosen with its exact probability and ``f`` is
        drawn by inverting the CDF on a fine grid (the density is log-concave).
        """
        B = np.asarray(B, float)
        A = np.broadcast_to(np.asarray(float(self.alpha.sum()) if A is None else A, float), B.shape)
        sp = self.scale_prior
        nc = int(sp[0])
        if nc == 0:
            return -np.log(rng.gamma(A, 1.0 / B))
        comps = [(sp[1], sp[2], sp[3])] + ([(sp[4], sp[5], sp[6])] if nc == 2 else [])
        la = np.array([[np.log(w) + T._gauss_scale_integral(a, b, m, s)[0] for a, b in zip(A, B)]
                       for (w, m, s) in comps])
        pc = np.exp(la - la.max(axis=0))
        pc /= pc.sum(axis=0)
        u = rng.uniform(size=B.size)
        which = (u > pc[0]).astype(int) if nc == 2 else np.zeros(B.size, int)
        m = np.array([c[1] for c in comps])[which]
        s = np.array([c[2] for c in comps])[which]
        f = np.log(B / A)
        f = np.clip(f, m - 40 * s, m + 40 * s)
        for _ in range(100):
            e = B * np.exp(-f)
            step = (-A + e - (f - m) / s ** 2) / (-e - 1 / s ** 2)
            f = f - step
            if np.all(np.abs(step) < 1e-12 * (1 + np.abs(f))):
                break
        sig = 1.0 / np.sqrt(B * np.exp(-f) + 1 / s ** 2)
        t = np.linspace(-12, 12, n_grid)
        grid = f[:, None] + sig[:, None] * t[None, :]
        lg = (-A[:, None] * grid - B[:, None] * np.exp(-grid)
              - 0.5 * ((grid - m[:, None]) / s[:, None]) ** 2)
        dens = np.exp(lg - lg.max(axis=1, keepdims=True))
        cdf = np.concatenate([np.zeros((B.size, 1)),
                              np.cumsum(0.5 * (dens[:, 1:] + dens[:, :-1]), axis=1)], axis=1)
        cdf /= cdf[:, -1:]
        v = rng.uniform(size=B.size)
        out = np.empty(B.size)
        for i in range(B.size):
            out[i] = np.interp(v[i], cdf[i], grid[i])
        return out

    def to_named(self, theta):
        """``{name: values}`` on SPM's scale in the user's units (filter_offset shifted by -log k)."""
        out = {}
        for i, nm in enumerate(FREE_NAMES):
            if nm in self.names or nm == "filter_offset" and (
                    self.lik_code == T.LIK_GAMMA_MARGINAL or nm in self.names):
                v = theta[..., i].copy()
                if nm == "filter_offset":
                    v = v - self.log_k
                out[nm] = v
        if LOG_PRECISION in self.names:
            out[LOG_PRECISION] = theta[..., T.IDX_H].copy()
        if LOG_DOF_SCALE in self.names:
            out[LOG_DOF_SCALE] = theta[..., T.IDX_H].copy()
        return out

    def pointwise_loglik(self, theta, S):
        """Per-bin log-likelihood (n, n_freqs) of the data in the user's units."""
        a = self.alpha * self.kappa(theta)[:, None]
        if self.lik_code in (T.LIK_GAMMA_MARGINAL, T.LIK_GAMMA):
            from scipy.special import gammaln

            ll = (a * np.log(a / S) - gammaln(a) + (a - 1) * np.log(self.y_int) - a * self.y_int / S)
        else:
            prec = np.exp(theta[:, T.IDX_H])[:, None] * self.q
            r = self.y_int - S
            ll = 0.5 * np.log(prec / (2 * np.pi)) - 0.5 * prec * r * r
        return ll + self.log_k     # density of y = y_int / k

    def predictive(self, theta, S, rng):
        """Posterior-predictive spectra (n, n_freqs) in the user's units."""
        if self.lik_code in (T.LIK_GAMMA_MARGINAL, T.LIK_GAMMA):
            a = self.alpha * self.kappa(theta)[:, None]
            yrep = rng.gamma(a, S / a)
        else:
            prec = np.exp(theta[:, T.IDX_H])[:, None] * self.q
            yrep = S + rng.standard_normal(S.shape) / np.sqrt(prec)
        return yrep / self.k
