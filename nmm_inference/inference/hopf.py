"""Spectra on both sides of a Hopf point: the leading mode's line from the adiabatic reduction.

Below its Hopf point (growth rate ``sigma < 0``) a noise-driven CMC mode is a damped linear
resonance: a Lorentzian line of half-width ``|sigma|`` centred on its frequency ``omega``.
Above it the linear transfer function no longer describes the spectrum (SPM merely damps the
unstable eigenvalue, ``Re s -> Re s - exp(Re s)``, which removes the line).  The amplitude
reduction (:mod:`nmm_inference.adiabatic`, ``shared/docs/adiabatic.md`` §3-§5) gives, for the
leading mode's complex amplitude ``z = r exp(i theta)``::

    dr = [r (sigma + a r^2) + D / (2 r)] dt + sqrt(D) dW_r,
    dtheta = (omega + b r^2) dt + sqrt(D) / r dW_theta,

with ``a + i b`` the cubic coefficient ``g_kk`` and ``D`` the noise diffusion.  The intensity
``I = r^2`` has the stationary density ``p(I) ~ exp((sigma I + a I^2 / 2) / D)`` on ``I >= 0``
(a Gaussian truncated at 0), with closed-form ``E[I]`` and ``Var[I]``, continuous through
``sigma = 0``.  The line is the spectrum of ``z`` under this SDE, computed exactly (up to
the discretisation of ``r``): ``E[z(t) conj z(0)]`` evolves with the generator restricted to
the first angular harmonic ``f(r) e^{i theta}``,

    L_1 f = (D/2) (1/p) (p f')' - D / (2 r^2) f + i (omega + b r^2) f,

``p(r) ~ r exp((sigma r^2 + a r^4 / 2) / D)`` the stationary density, so the line is
``2 Re int p(r) r [(i nu - L_1)^-1 r](r) dr`` (:meth:`LeadingLine.density`).  It carries the
power ``E[I]``, is centred near ``omega + b E[I]``, and contains phase diffusion,
amplitude fluctuations and their conversion into frequency noise through ``b`` (the
linewidth enhancement of lasers).  Below threshold (``a E[I] << |sigma|``) it is the linear
Lorentzian ``2 D / ((nu - omega)^2 + sigma^2)`` exactly; far above, a line of half-width
about ``(1 + (b/a)^2) D / (2 I*)``, ``I* = -sigma / a``.  The other modes keep their linear
contributions; the leading pair's terms of the transfer function are multiplied by
``sqrt(L(f) / L_lin(f))``, the ratio of this line to the linear mode's Lorentzian (1 in the
linear limit), which keeps their interference with the other modes.

The forward model here is the **undelayed** one-source CMC driven by white noise on the
spiny-stellate input (the time-domain counterpart of :func:`nmm_inference.cmc.simulate.simulate_cmc`
with ``delays=False``): one-sided LFP spectrum ``2 sigma_u^2 |H(f)|^2``.  The adiabatic
reduction ignores delays (``adiabatic.md`` §8), so this model does not use SPM's delay operator.

:class:`HopfModel` inverts such a spectrum for a few parameters (at most 3): the MAP is found,
the posterior is then integrated exactly on a grid aligned with its Laplace axes (so the
answer does not depend on the Laplace approximation, only on the grid covering the mass; the
mass on the grid's edge is reported), and draws are taken from the grid.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numba
import numpy as np

from ..errors import DataError, ParameterError, ReductionError

__all__ = ["SPECTRA", "LeadingLine", "leading_line", "hopf_spectrum", "HopfModel",
           "NOISE_NAME"]

#: Spectral predictions: ``"adiabatic"`` (leading mode from the amplitude reduction) and
#: ``"spm"`` (linear transfer function with SPM's eigenvalue conditioning).
SPECTRA = ("adiabatic", "spm")
#: Name of the free log noise amplitude ``log(sigma_u)`` (white endogenous input).
NOISE_NAME = "log_noise_std"
_NEURAL_FIELDS = ("T", "G", "S")


@dataclass(frozen=True)
class LeadingLine:
    """The leading mode's line (all rates in 1/s, angular frequencies in rad/s).

    Attributes
    ----------
    sigma, omega : float
        Linear growth rate and angular frequency of the leading mode.
    a, b : float
        Real and imaginary parts of its cubic coefficient ``g_kk``.
    D : float
        Noise diffusion of its amplitude.
    mean_I, var_I : float
        Stationary mean and variance of the intensity ``r^2``.
    width : float
        ``D E[I^2] / (2 E[I]^3)`` (1/s): ``|sigma|`` below threshold, the phase-diffusion
        half-width ``D / (2 I*)`` far above it (without the amplitude-to-frequency broadening).
    centre : float
        Centre of the line, ``omega + b mean_I`` (rad/s).
    """

    sigma: float
    omega: float
    a: float
    b: float
    D: float
    mean_I: float
    var_I: float
    width: float
    centre: float

    @property
    def frequency_hz(self) -> float:
        """Centre of the line in Hz."""
        return self.centre / (2.0 * math.pi)

    def density(self, domega, *, n_r=120):
        """Spectral density of the mode amplitude ``z`` at angular detunings ``domega`` from
        ``omega`` (the linear frequency), exact for the averaged amplitude-phase SDE.

        ``L(Delta) = 2 Re int p(r) r [(i Delta - L_1)^-1 r](r) dr``, where ``L_1`` is the generator of
        the SDE restricted to the first angular harmonic ``f(r) e^{i theta}``::

            L_1 f = (D/2) (1/p) (p f')' - D / (2 r^2) f + i b r^2 f,

        ``p(r) ~ r exp((sigma r^2 + a r^4 / 2) / D)`` the stationary density (the radial part is
        self-adjoint in ``L^2(p)``), discretised conservatively on ``n_r`` nodes with
        ``f(0) = 0`` and no flux at the far end.  ``L`` integrates to ``2 pi E[I]``; it is the
        Lorentzian ``2 D / (Delta^2 + sigma^2)`` of the linear mode when ``a = b = 0``.
        """
        dom = np.asarray(domega, dtype=float)
        r, w, lo, dg, up = self._operator(n_r)
        out = _line_resolvent(np.ascontiguousarray(dom.reshape(-1)), r, w, lo, dg, up)
        return out.reshape(dom.shape)

    def _operator(self, n_r):
        """Nodes, probability weights and the tridiagonal ``(lower, diagonal, upper)`` of L_1."""
        sig, a, D = self.sigma, self.a, self.D
        I_hi = max(self.mean_I, 0.0) + 14.0 * math.sqrt(self.var_I) + 1e-300
        rmax = math.sqrt(I_hi)
        h = rmax / n_r
        r = h * np.arange(1, n_r + 1)
        rh = h * (np.arange(1, n_r + 2) - 0.5)            # half nodes r_{i-1/2}, i = 1..n_r+1

        def logp(x):
            return np.log(x) + (sig * x * x + 0.5 * a * x ** 4) / D

        lp = logp(r)
        lph = logp(rh)
        w = np.exp(lp - lp.max())
        w /= w.sum()
        c = 0.5 * D / (h * h)
        lo = c * np.exp(lph[:-1] - lp)                   # p_{i-1/2} / p_i
        up = c * np.exp(lph[1:] - lp)                    # p_{i+1/2} / p_i
        up[-1] = 0.0                                     # no flux through r_max
        dg = (-(lo + c * np.exp(lph[1:] - lp)) - 0.5 * D / (r * r) + 1j * self.b * r * r).astype(complex)
        dg[-1] = -lo[-1] - 0.5 * D / r[-1] ** 2 + 1j * self.b * r[-1] ** 2
        return r, w, lo, dg, up


@numba.njit(cache=True)
def _line_resolvent(dom, r, w, lo, dg, up):
    """``2 Re sum_i w_i r_i u_i`` with ``(i D - L) u = r`` (tridiagonal L), for each detuning D."""
    n = r.size
    out = np.empty(dom.size)
    cp = np.empty(n, dtype=np.complex128)
    dp = np.empty(n, dtype=np.complex128)
    for k in range(dom.size):
        x = 1j * dom[k]
        b0 = x - dg[0]
        cp[0] = -up[0] / b0
        dp[0] = r[0] / b0
        for i in range(1, n):
            den = x - dg[i] + lo[i] * cp[i - 1]
            cp[i] = -up[i] / den
            dp[i] = (r[i] + lo[i] * dp[i - 1]) / den
        u = dp[n - 1]
        acc = w[n - 1] * r[n - 1] * u
        for i in range(n - 2, -1, -1):
            u = dp[i] - cp[i] * u
            acc += w[i] * r[i] * u
        out[k] = 2.0 * acc.real
    return out


def _neural(P):
    from ..cmc.equations import neural_from_spm
    from ..params import canonical_spm

    Pc = canonical_spm(P, 1)
    return Pc, neural_from_spm(Pc)


def leading_line(P, noise_std, *, _nm=None):
    """Line of the least-damped mode of a one-source CMC from the adiabatic reduction.

    Parameters
    ----------
    P : dict
        SPM parameters (fields ``T``, ``G``, ``S`` are used; missing ones take SPM's prior
        mean).
    noise_std : float
        Amplitude ``sigma_u`` of the white endogenous input (enters the spiny stellate cells
        as ``512 u``; :func:`nmm_inference.cmc.simulate.simulate_cmc` convention).
    _nm : CMCNeural, optional
        Internal: the neural parameters of ``P`` when the caller has built them already;
        ``P`` is then not read.

    Returns
    -------
    LeadingLine

    Raises
    ------
    ParameterError
        For a non-positive ``noise_std``.
    ReductionError
        If the leading mode's Hopf point is subcritical (``Re g_kk >= 0``: the cubic
        amplitude equation has no stationary density) or the reduction fails.
    """
    from ..adiabatic import noise_diffusion, reduce_cmc
    from ..cmc.equations import ENDOGENOUS_INPUT_GAIN

    noise_std = float(noise_std)
    if not (np.isfinite(noise_std) and noise_std > 0):
        raise ParameterError(f"noise_std must be positive and finite, got {noise_std}")
    nm = _neural(P)[1] if _nm is None else _nm
    red = reduce_cmc(nm.G[0], nm.T[0], nm.R)
    if red.n_modes == 0:
        raise ReductionError("the CMC has no oscillatory mode at these parameters")
    k = int(np.argmax(red.sigma))
    sigma, omega = float(red.sigma[k]), float(red.omega[k])
    a, b = float(red.a[k, k]), float(red.b[k, k])
    if not a < 0:
        raise ReductionError(f"the leading mode's Hopf point is subcritical (Re g = {a:.3g} >= 0): "
                             "the cubic amplitude reduction has no stationary state")
    D = float(noise_diffusion(red, [ENDOGENOUS_INPUT_GAIN * noise_std, 0.0, 0.0, 0.0])[k])
    EI, varI = _intensity_moments(sigma, a, D)
    width = D * (varI + EI * EI) / (2.0 * EI ** 3)
    return LeadingLine(sigma=sigma, omega=omega, a=a, b=b, D=D, mean_I=EI, var_I=varI,
                       width=width, centre=omega + b * EI)


def _intensity_moments(sigma, a, D):
    """Mean and variance of ``I`` with density ``~ exp((sigma I + a I^2 / 2) / D)`` on ``I >= 0``.

    A normal ``N(m, s^2)``, ``m = -sigma / a``, ``s^2 = -D / a``, truncated at 0: with
    ``x = -m / s`` and the inverse Mills ratio ``l = phi(x) / (1 - Phi(x))``,
    ``E[I] = m + s l`` and ``Var[I] = s^2 (1 + x l - l^2)``.
    """
    from scipy.special import erfcx

    m = sigma / (-a)
    sd = math.sqrt(D / (-a))
    x = -m / sd
    if x > 12.0:
        # deep truncation (Rayleigh regime): Mills-ratio series, R(x) = q(y) / x, y = 1/x^2,
        # q = 1 - y + 3y^2 - 15y^3 + ...; lambda = x / q, E[I] - m = sd x (1 - q) / q,
        # Var / sd^2 = 1 - x^2 (1 - q) / q^2 = (q^2 - (1 - q) / y) / q^2, with the constant
        # terms cancelled symbolically (no rounding loss)
        y = 1.0 / (x * x)
        qc = np.array([1.0, -1.0, 3.0, -15.0, 105.0, -945.0, 10395.0])
        pc = -qc[1:]                      # (1 - q) / y
        num = np.polynomial.polynomial.polymul(qc, qc)[:qc.size]
        num[:pc.size] -= pc
        q = np.polynomial.polynomial.polyval(y, qc)
        EI = sd * x * y * np.polynomial.polynomial.polyval(y, pc) / q
        var = sd * sd * np.polynomial.polynomial.polyval(y, num) / (q * q)
        return float(EI), float(var)
    lam = math.sqrt(2.0 / math.pi) / float(erfcx(x / math.sqrt(2.0)))
    return m + sd * lam, sd * sd * (1.0 + x * lam - lam * lam)


def _hann_kernel(taper_seconds, n=81):
    """Offsets (Hz) and weights of the spectral window of a continuous Hann taper (sum 1)."""
    Tw = float(taper_seconds)
    df = np.linspace(-4.0 / Tw, 4.0 / Tw, n)
    x = df * Tw
    with np.errstate(divide="ignore", invalid="ignore"):
        W = np.sinc(x) / (1.0 - x * x)
    W[np.isclose(np.abs(x), 1.0)] = 0.5
    k = W * W
    return df, k / k.sum()


def hopf_spectrum(P, hz, *, noise_std, spectrum="adiabatic", taper_seconds=None,
                  return_line=False):
    """One-sided LFP spectrum of the noise-driven one-source CMC (undelayed).

    Parameters
    ----------
    P : dict
        SPM parameters (``T``, ``G``, ``S`` for the dynamics, ``L``, ``J`` for the LFP).
    hz : array-like
        Frequencies (Hz, > 0).
    noise_std : float
        White endogenous input amplitude ``sigma_u`` (see :func:`leading_line`).
    spectrum : {"adiabatic", "spm"}
        ``"adiabatic"``: the leading mode's line from the amplitude reduction (valid on both
        sides of its Hopf point); ``"spm"``: the linear transfer function with SPM's
        eigenvalue conditioning (``spm_dcm_mtf``).
    taper_seconds : float, optional
        If given, the expected Welch estimate with a Hann taper of this length (the spectrum
        convolved with the taper's spectral window) instead of the spectrum itself.
    return_line : bool
        Also return the :class:`LeadingLine` (``None`` for ``"spm"``).

    Returns
    -------
    ndarray, shape (n_freqs,)
        In (LFP units)^2 / Hz; ``2 sigma_u^2 |H(f)|^2`` in the linear regime.
    """
    from ..cmc.equations import input_jacobian, jacobian
    from ..cmc.spectra import check_freqs, condition_eigenvalues

    if spectrum not in SPECTRA:
        raise ParameterError(f"spectrum must be one of {SPECTRA}, got {spectrum!r}")
    hz = check_freqs(hz)
    Pc, nm = _neural(P)
    J = jacobian(nm)
    B = input_jacobian(nm)[:, 0]
    C = np.kron(Pc["J"].reshape(8), Pc["L"].ravel())
    s, V = np.linalg.eig(J)
    res = (C @ V) * np.linalg.solve(V, B.astype(complex))
    line = None
    pair = []
    if spectrum == "adiabatic":
        line = leading_line(Pc, noise_std, _nm=nm)
        lam = line.sigma + 1j * line.omega
        k = int(np.argmin(np.abs(s - lam)))
        kb = int(np.argmin(np.abs(s - np.conj(lam))))
        if abs(s[k] - lam) > 1e-6 * abs(lam) or k == kb:
            raise ReductionError("the reduction's leading mode does not match an eigenvalue of "
                                 f"the Jacobian ({lam} vs {s[k]})")
        pair = [k, kb]
    sc = condition_eigenvalues(s, hz.max())
    if taper_seconds is not None:
        off, wts = _hann_kernel(taper_seconds)
        f = hz[:, None] - off[None, :]
    else:
        f = hz[:, None]
        wts = np.ones(1)
    w = 2j * np.pi * f
    others = np.ones(s.size, dtype=bool)
    others[pair] = False
    H = np.sum(res[others][None, None, :] / (w[..., None] - sc[others][None, None, :]), axis=-1)
    if pair:
        Hp = np.sum(res[pair][None, None, :] / (w[..., None] - s[pair][None, None, :]), axis=-1)
        om = 2.0 * np.pi * f
        L_lin = 2.0 * line.D / ((om - line.omega) ** 2 + max(line.sigma ** 2, 1e-300))
        dom = om - line.omega
        lo_, hi_ = float(dom.min()), float(dom.max())
        step = min(2 * np.pi * 0.01, 0.25 * line.width)
        if dom.size > 2000 and (hi_ - lo_) / step < dom.size:
            grid = np.arange(lo_, hi_ + step, step)
            dens = np.interp(dom, grid, line.density(grid))
        else:
            dens = line.density(dom)
        ratio = dens / L_lin
        H = H + Hp * np.sqrt(np.maximum(ratio, 0.0))
    S = 2.0 * float(noise_std) ** 2 * np.abs(H) ** 2
    S = S @ wts
    return (S, line) if return_line else S


class HopfModel:
    """Posterior of a few CMC parameters from one spectrum, across a Hopf point.

    The spectrum is :func:`hopf_spectrum` (undelayed one-source CMC, white input noise), the
    likelihood Whittle/Gamma with the recorded dof and the overall scale (LFP gain squared)
    integrated out under a flat prior on its logarithm
    (:func:`nmm_inference.inference.whittle_gamma_marginal_loglik`).  The posterior of the free
    parameters (at most 3) is integrated on a grid aligned with the Laplace axes at the MAP.

    Parameters
    ----------
    y : array-like, shape (n_freqs,)
        Observed one-sided spectrum (any units).
    freqs : array-like, shape (n_freqs,)
        Frequencies (Hz).
    dof : float | array-like
        Degrees of freedom per bin.
    free : sequence of str
        Free parameters: names from :func:`nmm_inference.params.parameter_table` of the
        fields T, G and S, and ``"log_noise_std"``.
    priors : dict
        ``{name: (mean, sd)}`` for every free parameter (on SPM's scale; natural log of
        ``sigma_u`` for ``log_noise_std``); required, the Hopf region is far from SPM's
        priors.
    base : dict, optional
        SPM parameters of everything not free.
    noise_std : float
        ``sigma_u`` when ``log_noise_std`` is not free.
    spectrum : {"adiabatic", "spm"}
    taper_seconds : float, optional
        Hann taper length of the Welch estimate (see :func:`hopf_spectrum`).
    dof_scale : {"recorded", "fit"}
        ``"fit"``: a model-error term -- the Gamma shape is ``kappa dof / 2`` with
        ``log kappa ~ N(0, 1.5^2)`` (as :class:`~nmm_inference.inference.CMCModel`'s
        ``dof_scale="fit"``), integrated out by 32-node Gauss-Hermite quadrature inside the
        likelihood; the data may then deviate from the model more than their sampling error.
    """

    def __init__(self, y, *, freqs, dof, free, priors, base=None, noise_std=0.01,
                 spectrum="adiabatic", taper_seconds=None, dof_scale="recorded"):
        from ..params import parameter_table
        from .likelihoods import check_spectrum

        self.hz, self.y, self.dof = check_spectrum(freqs, y, dof)
        if self.dof is None:
            raise DataError("give dof")
        if spectrum not in SPECTRA:
            raise ParameterError(f"spectrum must be one of {SPECTRA}, got {spectrum!r}")
        table = {s.name: s for s in parameter_table(1) if s.spm_field in _NEURAL_FIELDS}
        free = list(free)
        if not 1 <= len(free) <= 3:
            raise ParameterError(f"HopfModel integrates 1 to 3 free parameters on a grid, got {len(free)}")
        for nm in free:
            if nm != NOISE_NAME and nm not in table:
                raise ParameterError(f"unknown free parameter {nm!r}: use {NOISE_NAME!r} or one of "
                                     f"{sorted(table)}")
            if nm not in priors:
                raise ParameterError(f"give a prior (mean, sd) for {nm!r} in priors=")
        self.free = free
        self.mu = np.array([float(priors[n][0]) for n in free])
        self.sd = np.array([float(priors[n][1]) for n in free])
        if not np.all(np.isfinite(self.mu)) or not np.all(self.sd > 0):
            raise ParameterError("priors need finite means and positive sds")
        self._table = table
        self.base = dict(base or {})
        self.noise_std = float(noise_std)
        self.spectrum = spectrum
        self.taper_seconds = taper_seconds
        if dof_scale not in ("recorded", "fit"):
            raise ParameterError(f"dof_scale must be 'recorded' or 'fit', got {dof_scale!r}")
        self.dof_scale = dof_scale
        from ._problem import DOF_SCALE_PRIOR

        # log kappa on a uniform grid (spacing 0.03: the conditional posterior of log kappa
        # has sd ~ sqrt(2 / n_bins), >= 0.1 for up to 200 bins), prior weights
        m0, s0 = DOF_SCALE_PRIOR
        self._logk = np.arange(m0 - 5 * s0, m0 + 3 * s0 + 1e-9, 0.03)
        lw = -0.5 * ((self._logk - m0) / s0) ** 2
        self._logw = lw - np.log(np.sum(np.exp(lw)))

    # ------------------------------------------------------------------ density

    def params(self, x):
        """``(P, noise_std)`` for a vector of free-parameter values."""
        from ..params import canonical_spm

        P = {k: np.array(v, dtype=float, copy=True) for k, v in canonical_spm(self.base, 1).items()}
        noise = self.noise_std
        for nm, v in zip(self.free, x):
            if nm == NOISE_NAME:
                noise = float(np.exp(v))
            else:
                spec = self._table[nm]
                P[spec.spm_field][spec.spm_index] = v
        return P, noise

    def predict(self, x):
        """Spectrum (unit overall scale) at free-parameter values ``x``."""
        P, noise = self.params(x)
        return hopf_spectrum(P, self.hz, noise_std=noise, spectrum=self.spectrum,
                             taper_seconds=self.taper_seconds)

    def log_likelihood(self, x):
        """Gamma log-likelihood with the overall scale integrated out (``-inf`` if invalid)."""
        from .likelihoods import whittle_gamma_marginal_loglik

        try:
            S = self.predict(x)
        except (ReductionError, np.linalg.LinAlgError, ParameterError, FloatingPointError):
            return -np.inf
        if not np.all(np.isfinite(S) & (S > 0)):
            return -np.inf
        if self.dof_scale == "recorded":
            return float(whittle_gamma_marginal_loglik(self.y, S, self.dof))
        ll = self._logw + self._ll_kappa(S)
        m = ll.max()
        return float(m + np.log(np.sum(np.exp(ll - m))))

    def _ll_kappa(self, S0):
        """Scale-marginal Gamma log-likelihood for every ``kappa`` of the grid (vectorised
        :func:`~nmm_inference.inference.whittle_gamma_marginal_loglik`)."""
        from scipy.special import gammaln

        a = np.exp(self._logk)[:, None] * (0.5 * self.dof)[None, :]
        ly = np.log(self.y)
        A = a.sum(axis=1)
        B = a @ (self.y / S0)
        return (np.sum(a * np.log(a) - gammaln(a) + (a - 1) * ly, axis=1) - a @ np.log(S0)
                + gammaln(A) - A * np.log(B))

    def dof_scale_posterior(self, x):
        """Conditional posterior mean and sd of ``log kappa`` at free-parameter values ``x``."""
        ll = self._logw + self._ll_kappa(self.predict(x))
        w = np.exp(ll - ll.max())
        w /= w.sum()
        m = float(np.sum(w * self._logk))
        return m, float(np.sqrt(np.sum(w * (self._logk - m) ** 2)))

    def log_posterior(self, x):
        """Log likelihood plus the normal log prior."""
        x = np.asarray(x, float)
        lp = -0.5 * np.sum(((x - self.mu) / self.sd) ** 2)
        return lp + self.log_likelihood(x)

    # ------------------------------------------------------------------ fit

    def _map(self, rng, n_starts):
        from scipy.optimize import minimize

        d = len(self.free)
        # coarse scan of the prior box for starting points
        starts = self.mu + self.sd * rng.uniform(-3.0, 3.0, size=(max(n_starts * 8, 32), d))
        vals = np.array([self.log_posterior(x) for x in starts])
        order = np.argsort(-vals)[:n_starts]
        best = None
        for i in order:
            if not np.isfinite(vals[i]):
                continue
            r = minimize(lambda z: -self.log_posterior(self.mu + self.sd * z),
                         (starts[i] - self.mu) / self.sd, method="Nelder-Mead",
                         options=dict(xatol=1e-7, fatol=1e-9, maxiter=4000))
            if best is None or r.fun < best.fun:
                best = r
        if best is None or not np.isfinite(best.fun):
            raise ReductionError("no finite posterior density found in the prior box")
        return self.mu + self.sd * best.x, -best.fun

    def _hessian(self, x0, f0):
        d = x0.size
        h = 1e-3 * self.sd
        H = np.empty((d, d))
        f = self.log_posterior
        for i in range(d):
            ei = np.zeros(d)
            ei[i] = h[i]
            H[i, i] = (f(x0 + ei) - 2 * f0 + f(x0 - ei)) / h[i] ** 2
            for j in range(i):
                ej = np.zeros(d)
                ej[j] = h[j]
                H[i, j] = H[j, i] = (f(x0 + ei + ej) - f(x0 + ei - ej) - f(x0 - ei + ej)
                                     + f(x0 - ei - ej)) / (4 * h[i] * h[j])
        return H

    def fit(self, *, n_grid=41, half_width=6.0, draws=4000, n_starts=4, random_seed=None):
        """Integrate the posterior on a grid and draw from it.

        Parameters
        ----------
        n_grid : int
            Grid points per axis (odd).
        half_width : float
            Half-width of the grid in Laplace standard deviations along each axis (widened
            automatically, up to 3 times, while more than 1e-4 of the mass is on the edge).
        draws : int
            Posterior draws returned.
        n_starts : int
            Optimiser starts for the MAP.
        random_seed : int | numpy.random.Generator | None

        Returns
        -------
        xarray.DataTree
            ``posterior`` (chain 0, ``draws`` draws of every free parameter),
            ``observed_data``; attributes: MAP, Laplace SDs, edge mass, log evidence (grid
            quadrature), settings.
        """
        import xarray as xr

        rng = np.random.default_rng(random_seed)
        d = len(self.free)
        x0, f0 = self._map(rng, n_starts)
        H = self._hessian(x0, f0)
        w, U = np.linalg.eigh(-H)
        if not np.all(np.isfinite(w)):
            raise ReductionError("the posterior curvature at the MAP is not finite")
        w = np.maximum(w, 1e-8 / np.min(self.sd) ** 2)
        A = U / np.sqrt(w)[None, :]             # x = x0 + A t, t ~ N(0, I) under Laplace
        hw = float(half_width)
        for _ in range(4):
            t1 = np.linspace(-hw, hw, n_grid)
            T = np.stack(np.meshgrid(*([t1] * d), indexing="ij"), axis=-1).reshape(-1, d)
            X = x0 + T @ A.T
            lp = np.array([self.log_posterior(x) for x in X])
            m = np.max(lp)
            p = np.exp(lp - m)
            p /= p.sum()
            edge = np.any(np.abs(T) >= hw - 1e-12, axis=1)
            edge_mass = float(p[edge].sum())
            if edge_mass < 1e-4:
                break
            hw *= 1.6
        dt = t1[1] - t1[0]
        log_ev = float(m + np.log(np.sum(np.exp(lp - m))) + d * np.log(dt)
                       + np.sum(np.log(np.abs(np.linalg.eigvals(A))))
                       - np.sum(np.log(self.sd)) - 0.5 * d * np.log(2 * np.pi))
        idx = rng.choice(p.size, size=draws, p=p)
        Tj = T[idx] + rng.uniform(-0.5 * dt, 0.5 * dt, size=(draws, d))
        Xd = x0 + Tj @ A.T
        post = xr.Dataset({nm: (("chain", "draw"), Xd[:, i][None]) for i, nm in enumerate(self.free)},
                          coords={"chain": [0], "draw": np.arange(draws)})
        obs = xr.Dataset({"y": (("freq",), self.y)}, coords={"freq": self.hz})
        dt_ = xr.DataTree.from_dict({"posterior": post, "observed_data": obs})
        dt_.attrs.update({
            "forward_model": "one-source CMC, undelayed, white endogenous input; "
                             + ("leading mode from the adiabatic reduction" if self.spectrum == "adiabatic"
                                else "linear transfer function with SPM's eigenvalue conditioning"),
            "spectrum": self.spectrum,
            "likelihood": "Whittle/Gamma, overall scale integrated out, dof "
                          + ("as recorded" if self.dof_scale == "recorded"
                             else "times kappa, log kappa ~ N(0, 1.5^2) integrated out"),
            "dof_scale": self.dof_scale,
            "sampler": "grid quadrature on the Laplace axes at the MAP",
            "map": json.dumps(dict(zip(self.free, x0.tolist()))),
            "log_posterior_map": float(f0),
            "laplace_sd": json.dumps(dict(zip(self.free, np.sqrt(np.diag(A @ A.T)).tolist()))),
            "grid_half_width_sd": hw,
            "grid_edge_mass": edge_mass,
            "log_evidence": log_ev,
            "priors": json.dumps({n: [float(a), float(b)] for n, a, b in zip(self.free, self.mu, self.sd)}),
        })
        self.map_ = x0
        self.grid_ = (X, p, lp)
        self.idata_ = dt_
        return dt_

    def joint_hpd_contains(self, x, prob=0.94):
        """Whether ``x`` lies in the joint highest-posterior-density region of mass ``prob``
        (the grid points of highest density that together hold ``prob`` of the mass)."""
        if getattr(self, "grid_", None) is None:
            from ..errors import NotFittedError

            raise NotFittedError("fit() first")
        X, p, lp = self.grid_
        order = np.argsort(-p)
        cum = np.cumsum(p[order])
        thr = lp[order[min(int(np.searchsorted(cum, prob)), p.size - 1)]]
        return bool(self.log_posterior(np.asarray(x, float)) >= thr)
