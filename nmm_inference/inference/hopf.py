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

Beyond the cubic line
---------------------
Fitted to simulations of the full stochastic CMC (``bench/hopf_crossing.py``), the cubic line
alone biases the inferred growth rate and noise near and above the Hopf point.  Projecting
simulated states on the mode (``z = p^H x``, 2000 s per growth rate, S = 0.5, noise 0.02) and
fitting the line's (sigma, log D, omega) to the spectrum of ``z`` showed why: the line is
narrower than the cubic one (log D biased by -0.06, -0.07, -0.11, -0.18, -0.25 at
sigma = -5, -2.5, 0, 2.5, 5), shifted in frequency, and ``E|z|^2`` is 4-8 % below the cubic
``E[I]`` at every sigma.  Welch leakage is not the cause (the Hann window is already in the
prediction).  Four terms of the next order, derived here for the zero operating point (no
constant input, so ``S2(0) = 0``, writing ``Sk`` for the k-th derivative of the sigmoid:
``S3(0) = -R^3 / 8``, ``S5(0) = R^5 / 4``), are selected with ``corrections``:

``"quintic"``
    The fifth-order normal-form coefficient ``g_2`` (``dz/dt = lambda z + g_kk |z|^2 z +
    g_2 |z|^4 z``).  With ``x = q w + phi_30 w^3 + phi_21 w^2 conj(w) + ... + c.c.``,
    ``(3 lambda - J) phi_30 = C(q,q,q) / 6``, ``(2 lambda + conj(lambda) - J) phi_21 =
    C(q,q,conj q) / 2 - g_kk q`` (no component along ``q``) and, matching the
    ``w^3 conj(w)^2`` terms, ``g_2 = p^H [C(q,q,conj phi_21) + 2 C(q,conj q,phi_21) +
    C(conj q,conj q,phi_30)] / 2 + p^H E(q,q,q,conj q,conj q) / 12`` (``C``, ``E`` the third
    and fifth derivatives of the vector field); this is Kuznetsov's ``G_32 / 12`` for a vector
    field without even terms (``h_21 = 2 phi_21``, ``h_30 = 6 phi_30``).  Its imaginary part
    (about +2.5 against ``b`` = -23) slows the amplitude-dependent frequency pull: in
    noise-free simulations at sigma = 2.5 and 5 the limit cycle's frequency shift is -7.56 and
    -14.33 rad/s; the cubic predicts -7.86 and -15.31, with ``g_2`` -7.54 and -14.19.
``"noise"``
    Multiplicative noise made by the sigmoid.  The input noise also reaches the other
    modes (response ``Y(+-i omega) = (+-i omega - J)^-1 Pi B`` at the mode's frequency, ``Pi``
    the projector off the mode), whose feedback onto the mode passes through the sigmoid's
    slope along the oscillation: its mean ``<S1(v)> - S1(0)`` changes the noise amplitude
    isotropically (``r1``), its second harmonic adds noise from the mirror frequency (``r2``),
    both per population as Fourier coefficients of ``S1(2 r |nu_l| cos theta)`` (so valid
    beyond ``O(I)``); the near-identity transformation adds ``-2 p^H conj(phi_21) conj(beta) /
    beta I`` to ``r1`` and ``conj(-3 p^H phi_30 beta) / beta I`` to ``r2`` (``beta = p^H B``).
    Radial and tangential diffusions are ``D |1 + r1 + r2|^2`` and ``D |1 + r1 - r2|^2``: at
    ``I`` = 0.65 (sigma = 5) about 0.73 D and 0.27 D.
``"shift"``
    Noise-induced shift of the linear rate: fluctuations of the other components lower the
    mean slope of the sigmoid seen by the mode, ``delta S1_l = S3(0) (E[y_l^2] + 2 E[a_l y_l])
    / 2`` (``a``: the mode's own part, correlated with ``y`` through the shared noise), acting
    through ``d lambda / d log S1_l`` and scaled by the first harmonic of ``S2`` along the
    oscillation relative to its small-amplitude value; plus the Ito term of the near-identity
    transformation, ``-(3 p^H phi_30 beta^2 + p^H conj(phi_21) conj(beta)^2)``.  About
    -0.13 - 0.47i 1/s at small amplitude, about half of it at ``I`` = 0.65.
``"readout"``
    The LFP's gain for the line, ``C (q + phi_21 I)`` instead of ``C q`` (checked on
    noise-free limit cycles: 0.82 of the linear power gain at sigma = 5).

With ``"quintic"``, ``"noise"`` and ``"shift"`` the fitted (sigma, log D, omega) of the
spectrum of ``z`` agree with the model to 0.12 1/s, 0.06 and 0.2 rad/s at every sigma
(likelihood deficit of the truth 2-10 units over 2000 s, against 114-2000 for the cubic line).
On the LFP the line's interference with the other modes matters as much (``interference``).
Fitting ``g_ii_ss`` and ``log_noise_std`` to LFP spectra (2000-s simulations cut into ten 200-s
records; likelihood deficit of the truth below the maximum, median over the records, at
sigma = -5, -2.5, 0, 2.5, 5): cubic line 4.2, 22, 79, 263, 641; ``"quintic"`` + ``"noise"``
with ``interference="pulled"`` 4.8, 1.0, 1.1, 7.6, 9.9; adding ``"shift"`` 3.8, 1.7, 2.9, 11,
13; all four with ``"linear"`` interference 1.6, 1.2, 3.0, 13, 46.  The readout term, right on
noise-free cycles, worsens the fit of the noisy LFP spectra: an LFP-level term is still
missing (at sigma = 5 the simulated spectrum has 12-19 % more power at 35-45 Hz, relative to
20-60 Hz, than the corrected model at the truth).

Two opt-in terms of :class:`HopfModel` address the over-confidence above threshold:
``line_gain_sd`` (an unknown readout gain ``g`` of the line's power, ``log g ~ N(0, s^2)``,
integrated out on a grid inside the likelihood; the interference with the other modes is kept,
:func:`hopf_spectrum` ``return_parts``) and ``residual_lags`` (the composite-likelihood scale
estimated per record from the residual correlation across bins, capped at the Hann value).
Measured with ``bench/hopf_crossing.py --records 10`` (``bench/out/
hopf_crossing_records_linegain*``): at the truth the data ask for ``log g`` of +0.05 to +0.12
at sigma = 5 (+0.00 to +0.07 at 2.5 and -5; conditional sd 0.03-0.05), but at the MAP ``g``
is 0.99-1.05, and the gain alone (``s = 0.25``) leaves the bias of ``g_ii_ss`` above
threshold (mean z +1.73 / +2.08 at sigma = 5 / 2.5, joint 94 % HPD coverage 0.3 / 0.3).  With
the residual scale as well (lags 1-8: scale 0.11-0.20 at sigma = 5, Hann 0.514 at -5) the
coverage at sigma = 5 is 0.8 (mean z +0.89, scatter 0.80), but not at 2.5 (0.4; mean z +1.83:
there the misfit is smaller at the MAP than at the truth and the residual scale at the MAP is
0.19-0.51, against 0.18-0.25 at the truth) nor at -2.5 (0.6, as without either term); at
-5 and 0 it is 1.0 with both: a line-shape term is still missing.

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
from dataclasses import dataclass, replace

import numba
import numpy as np

from ..errors import DataError, ParameterError, ReductionError

__all__ = ["SPECTRA", "CORRECTIONS", "INTERFERENCE", "LeadingLine", "leading_line",
           "hopf_spectrum", "HopfModel", "NOISE_NAME", "hann_bin_correlation"]

#: Spectral predictions: ``"adiabatic"`` (leading mode from the amplitude reduction) and
#: ``"spm"`` (linear transfer function with SPM's eigenvalue conditioning).
SPECTRA = ("adiabatic", "spm")
#: Name of the free log noise amplitude ``log(sigma_u)`` (white endogenous input).
NOISE_NAME = "log_noise_std"
#: Terms beyond the cubic line (module docstring, "Beyond the cubic line").
CORRECTIONS = ("quintic", "noise", "shift", "readout")
#: How the leading line interferes with the other modes in the LFP (:func:`hopf_spectrum`).
INTERFERENCE = ("linear", "pulled", "incoherent")
_NEURAL_FIELDS = ("T", "G", "S")


@dataclass(frozen=True, eq=False)
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
        Stationary mean and variance of the intensity ``r^2`` (of the line's own SDE, the
        corrections included).
    width : float
        ``D E[I^2] / (2 E[I]^3)`` (1/s): ``|sigma|`` below threshold, the phase-diffusion
        half-width ``D / (2 I*)`` far above it (without the amplitude-to-frequency broadening).
    centre : float
        Centre of the line, ``omega + b mean_I`` (rad/s) for the cubic line; the mean
        instantaneous frequency ``E[Omega(I)]`` with the corrections.
    a2, b2 : float
        Real and imaginary parts of the quintic coefficient ``g_2`` (``"quintic"`` correction;
        0 otherwise): ``dz/dt = lambda z + g_kk |z|^2 z + g_2 |z|^4 z``.
    table_I : ndarray or None
        Intensities at which the amplitude-dependent corrections below are tabulated.
    shift : ndarray or None, complex
        Noise-induced change of the linear rate at these intensities (``"shift"``): real part
        added to the growth rate, imaginary part to the angular frequency.
    diff_r, diff_t : ndarray or None
        Radial and tangential diffusion relative to ``D`` at these intensities (``"noise"``:
        the multiplicative noise made by the sigmoid).
    readout : complex
        ``h1`` of the amplitude-dependent readout gain ``1 + h1 I`` of the line (``"readout"``).
    i_max : float or None
        Upper end of the intensity range of the radial discretisation (default: from
        ``mean_I`` and ``var_I``).
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
    a2: float = 0.0
    b2: float = 0.0
    table_I: np.ndarray | None = None
    shift: np.ndarray | None = None
    diff_r: np.ndarray | None = None
    diff_t: np.ndarray | None = None
    readout: complex = 0.0
    i_max: float | None = None

    @property
    def frequency_hz(self) -> float:
        """Centre of the line in Hz."""
        return self.centre / (2.0 * math.pi)

    @property
    def corrected(self) -> bool:
        """Whether any correction beyond the cubic line is present."""
        return (self.a2 != 0.0 or self.b2 != 0.0 or self.table_I is not None
                or self.readout != 0.0)

    def density(self, domega, *, n_r=120):
        """Spectral density of the mode amplitude ``z`` at angular detunings ``domega`` from
        ``omega`` (the linear frequency), exact for the averaged amplitude-phase SDE.

        Parameters
        ----------
        domega : array-like
            Angular detunings (rad/s).
        n_r : int
            Radial nodes of the discretisation.

        Returns
        -------
        ndarray
            ``L(Delta)``, same shape as ``domega``.

        Notes
        -----
        ``L(Delta) = 2 Re int p(r) conj(h(r)) r [(i Delta - L_1)^-1 h r](r) dr``, where ``L_1`` is
        the generator of the SDE restricted to the first angular harmonic ``f(r) e^{i theta}``
        and ``h = 1 + readout r^2`` the readout gain.  For the cubic line::

            L_1 f = (D/2) (1/p) (p f')' - D / (2 r^2) f + i b r^2 f,

        ``p(r) ~ r exp((sigma r^2 + a r^4 / 2) / D)`` the stationary density (the radial part is
        self-adjoint in ``L^2(p)``), discretised conservatively on ``n_r`` nodes with
        ``f(0) = 0`` and no flux at the far end.  With the corrections (module docstring)::

            L_1 f = (1/(2p)) (p D_r f')' - D_t / (2 r^2) f + i Omega(r^2) f,

        ``D_r``, ``D_t`` the radial and tangential diffusion, ``Omega(I) = b I + b2 I^2 +
        Im shift(I)`` and ``p`` the stationary density of the radial Ito SDE
        ``dr = [r s(r^2) + D_t / (2 r)] dt + sqrt(D_r) dW``, ``s(I) = sigma + a I + a2 I^2 +
        Re shift(I)``.  ``L`` integrates to ``2 pi E[|h|^2 I]``; it is the Lorentzian
        ``2 D / (Delta^2 + sigma^2)`` of the linear mode when ``a = b = 0`` and there are no
        corrections.
        """
        dom = np.asarray(domega, dtype=float)
        r, w, lo, dg, up, g = self._operator(n_r)
        out = _line_resolvent(np.ascontiguousarray(dom.reshape(-1)), g, w, lo, dg, up)
        return out.reshape(dom.shape)

    def moments(self, *, n_r=400):
        """``(E[I], Var[I])`` of the discretised stationary density (corrections included).

        Parameters
        ----------
        n_r : int
            Radial nodes.

        Returns
        -------
        tuple of float
        """
        r, w, *_ = self._operator(n_r)
        I = r * r
        m = float(w @ I)
        return m, float(w @ (I - m) ** 2)

    def _operator(self, n_r):
        """Nodes, probability weights, the tridiagonal ``(lower, diagonal, upper)`` of L_1 and
        the readout vector ``h r``."""
        sig, a, D = self.sigma, self.a, self.D
        if self.i_max is not None:
            I_hi = float(self.i_max)
        else:
            I_hi = max(self.mean_I, 0.0) + 14.0 * math.sqrt(self.var_I) + 1e-300
        rmax = math.sqrt(I_hi)
        h = rmax / n_r
        r = h * np.arange(1, n_r + 1)
        rh = h * (np.arange(1, n_r + 2) - 0.5)            # half nodes r_{i-1/2}, i = 1..n_r+1
        c = 0.5 * D / (h * h)
        if self.table_I is None and self.a2 == 0.0:
            def logp(x):
                return np.log(x) + (sig * x * x + 0.5 * a * x ** 4) / D

            lp = logp(r)
            lph = logp(rh)
            lo = c * np.exp(lph[:-1] - lp)               # p_{i-1/2} / p_i
            upf = c * np.exp(lph[1:] - lp)               # p_{i+1/2} / p_i
            Dt = np.ones_like(r)
            sh_im = 0.0
        else:
            # log(p D_r / D) = log r + Q(r^2), Q' = s(u) / (D D_r(u)) + (D_t/D_r - 1) / (2 u)
            u = np.linspace(0.0, rh[-1] ** 2, 8 * n_r + 1)
            Dr_u, Dt_u, sh_u = self._tables(u)
            corr = np.empty_like(u)
            corr[1:] = (Dt_u[1:] / Dr_u[1:] - 1.0) / (2.0 * u[1:])
            corr[0] = corr[1]
            q = (sig + a * u + self.a2 * u * u + sh_u.real) / (D * Dr_u) + corr
            Q = np.concatenate([[0.0], np.cumsum(0.5 * (q[1:] + q[:-1]) * np.diff(u))])
            lpD = np.log(r) + np.interp(r * r, u, Q)
            lphD = np.log(rh) + np.interp(rh * rh, u, Q)
            lp = lpD - np.log(np.interp(r * r, u, Dr_u))
            lo = c * np.exp(lphD[:-1] - lp)              # (p D_r)_{i-1/2} / (D p_i)
            upf = c * np.exp(lphD[1:] - lp)
            Dt = np.interp(r * r, u, Dt_u)
            sh_im = np.interp(r * r, u, sh_u.imag)
        w = np.exp(lp - lp.max())
        w /= w.sum()
        up = upf.copy()
        up[-1] = 0.0                                     # no flux through r_max
        Om = self.b * r * r + self.b2 * r ** 4 + sh_im
        dg = (-(lo + upf) - 0.5 * D * Dt / (r * r) + 1j * Om).astype(complex)
        dg[-1] = -lo[-1] - 0.5 * D * Dt[-1] / r[-1] ** 2 + 1j * Om[-1]
        g = (r * (1.0 + self.readout * r * r)).astype(complex)
        return r, w, lo, dg, up, g

    def _tables(self, u):
        """``D_r / D``, ``D_t / D`` and the complex rate shift at intensities ``u``."""
        one = np.ones_like(u)
        if self.table_I is None:
            return one, one, np.zeros_like(u, dtype=complex)
        tI = self.table_I
        Dr = one if self.diff_r is None else np.interp(u, tI, self.diff_r)
        Dt = one if self.diff_t is None else np.interp(u, tI, self.diff_t)
        if self.shift is None:
            sh = np.zeros_like(u, dtype=complex)
        else:
            sh = np.interp(u, tI, self.shift.real) + 1j * np.interp(u, tI, self.shift.imag)
        return Dr, Dt, sh


@numba.njit(cache=True)
def _line_resolvent(dom, g, w, lo, dg, up):
    """``2 Re sum_i w_i conj(g_i) u_i`` with ``(i D - L) u = g`` (tridiagonal L), for each
    detuning D."""
    n = g.size
    out = np.empty(dom.size)
    cp = np.empty(n, dtype=np.complex128)
    dp = np.empty(n, dtype=np.complex128)
    for k in range(dom.size):
        x = 1j * dom[k]
        b0 = x - dg[0]
        cp[0] = -up[0] / b0
        dp[0] = g[0] / b0
        for i in range(1, n):
            den = x - dg[i] + lo[i] * cp[i - 1]
            cp[i] = -up[i] / den
            dp[i] = (g[i] + lo[i] * dp[i - 1]) / den
        u = dp[n - 1]
        acc = w[n - 1] * np.conj(g[n - 1]) * u
        for i in range(n - 2, -1, -1):
            u = dp[i] - cp[i] * u
            acc += w[i] * np.conj(g[i]) * u
        out[k] = 2.0 * acc.real
    return out


def _neural(P):
    from ..cmc.equations import neural_from_spm
    from ..params import canonical_spm

    Pc = canonical_spm(P, 1)
    return Pc, neural_from_spm(Pc)


def _check_corrections(corrections):
    if corrections is None:
        return ()
    if isinstance(corrections, str):
        corrections = CORRECTIONS if corrections == "all" else (corrections,)
    corrections = tuple(corrections)
    bad = [c for c in corrections if c not in CORRECTIONS]
    if bad:
        raise ParameterError(f"unknown corrections {bad}: use any of {CORRECTIONS} or 'all'")
    return corrections


def leading_line(P, noise_std, *, corrections=(), lfp=None, _nm=None):
    """Line of the least-damped mode of a one-source CMC from the adiabatic reduction.

    Parameters
    ----------
    P : dict
        SPM parameters (fields ``T``, ``G``, ``S`` are used, ``J`` and ``L`` for the
        ``"readout"`` correction; missing ones take SPM's prior mean).
    noise_std : float
        Amplitude ``sigma_u`` of the white endogenous input (enters the spiny stellate cells
        as ``512 u``; :func:`nmm_inference.cmc.simulate.simulate_cmc` convention).
    corrections : sequence of str or "all"
        Terms beyond the cubic line (module docstring, "Beyond the cubic line"): any of
        ``"quintic"``, ``"noise"``, ``"shift"``, ``"readout"``.  Default: none (the cubic line).
    lfp : array-like, shape (8,), optional
        LFP readout vector (SPM state order) for ``"readout"``; default: from ``P``.
    _nm : CMCNeural, optional
        Internal: the neural parameters of ``P`` when the caller has built them already;
        ``P`` is then not read (except for the readout vector when ``lfp`` is not given).

    Returns
    -------
    LeadingLine

    Raises
    ------
    ParameterError
        For a non-positive ``noise_std`` or an unknown correction.
    ReductionError
        If the leading mode's Hopf point is subcritical (``Re g_kk >= 0``: the cubic
        amplitude equation has no stationary density) or the reduction fails.
    """
    from ..adiabatic import noise_diffusion, reduce_cmc
    from ..cmc.equations import ENDOGENOUS_INPUT_GAIN

    noise_std = float(noise_std)
    if not (np.isfinite(noise_std) and noise_std > 0):
        raise ParameterError(f"noise_std must be positive and finite, got {noise_std}")
    corrections = _check_corrections(corrections)
    if _nm is None:
        Pc, nm = _neural(P)
    else:
        Pc, nm = None, _nm
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
    line = LeadingLine(sigma=sigma, omega=omega, a=a, b=b, D=D, mean_I=EI, var_I=varI,
                       width=width, centre=omega + b * EI)
    if not corrections:
        return line
    if "readout" in corrections and lfp is None:
        Pc = canonical_spm_(P) if Pc is None else Pc
        lfp = np.kron(Pc["J"].reshape(8), Pc["L"].ravel())
    i_max = max(EI, 0.0) + 14.0 * math.sqrt(varI)
    terms = _line_terms(nm, noise_std, complex(sigma, omega), corrections, lfp, i_max)
    line = replace(line, i_max=i_max, **terms)
    m, v = line.moments()
    r, w, _, dg, _, _ = line._operator(400)
    Om = dg.imag                                        # b I + b2 I^2 + Im shift(I)
    I = r * r
    width = D * float(w @ (line._tables(I)[1] * I * I)) / (2.0 * m ** 3)
    return replace(line, mean_I=m, var_I=v, width=width, centre=omega + float(w @ Om))


def canonical_spm_(P):
    from ..params import canonical_spm

    return canonical_spm(P, 1)


def _describing(I, nu_abs, R, n_theta=64):
    """Harmonics of the sigmoid's derivatives along the oscillation ``v_l = A_l cos(theta)``,
    ``A_l = 2 sqrt(I) |nu_l|``: ``<S'> - S'(0)``, the second harmonic ``2 <S' cos 2 theta>`` and
    ``2 <S^(2) cos theta> / (S^(3)(0) A_l)`` (-> 1 as ``A_l -> 0``); arrays (n_I, 4)."""
    th = (np.arange(n_theta) + 0.5) * (2.0 * np.pi / n_theta)
    A = 2.0 * np.sqrt(np.asarray(I, float))[:, None, None] * nu_abs[None, :, None]
    v = A * np.cos(th)[None, None, :]
    e = 1.0 / (1.0 + np.exp(-R * v))
    S1 = R * e * (1.0 - e)
    S2 = R * R * e * (1.0 - e) * (1.0 - 2.0 * e)
    s0 = S1.mean(axis=2) - 0.25 * R
    s2 = 2.0 * np.mean(S1 * np.cos(2.0 * th), axis=2)
    num = 2.0 * np.mean(S2 * np.cos(th), axis=2)
    A2 = A[..., 0]
    S3 = -R ** 3 / 8.0
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(A2 > 1e-6, num / (S3 * np.where(A2 > 1e-6, A2, 1.0)), 1.0)
    return s0, s2, rho


def _line_terms(nm, noise_std, lam0, corrections, lfp, i_max, n_table=49):
    """Coefficients of the corrections beyond the cubic line (module docstring).

    The operating point is 0 (no constant input), so the sigmoid's even derivatives vanish
    there: ``n(v) = S^(3)(0) v^3 / 6 + S^(5)(0) v^5 / 120 + ...`` with ``S^(3)(0) = -R^3 / 8``,
    ``S^(5)(0) = R^5 / 4``.
    """
    from ..cmc.equations import input_jacobian, jacobian

    J = jacobian(nm)
    B = input_jacobian(nm)[:, 0] * noise_std
    s, V = np.linalg.eig(J)
    Vi = np.linalg.inv(V)
    k = int(np.argmin(np.abs(s - lam0)))
    kb = int(np.argmin(np.abs(s - np.conj(lam0))))
    if abs(s[k] - lam0) > 1e-6 * abs(lam0) or k == kb:
        raise ReductionError("the reduction's leading mode does not match an eigenvalue of the "
                             f"Jacobian ({lam0} vs {s[k]})")
    lam = s[k]
    vi = np.arange(0, 8, 2)
    ci = vi + 1
    q = V[:, k].copy()
    sc = q[vi][int(np.argmax(np.abs(q[vi])))]
    q = q / sc                                     # largest voltage component 1 (g_kk's scale)
    p = np.conj(Vi[k]) * np.conj(sc)               # p^H q = 1, p^H J = lam p^H
    qb = np.conj(q)
    kap = 1.0 / nm.T[0]
    KW = kap[:, None] * nm.W
    R = nm.R
    S3 = -R ** 3 / 8.0
    S5 = R ** 5 / 4.0
    wv = KW.T @ np.conj(p[ci])                    # p^H (0, KW x) = wv . x

    def C3(x, y, z):
        out = np.zeros(8, complex)
        out[ci] = KW @ (S3 * x[vi] * y[vi] * z[vi])
        return out

    def modal(mu, rhs, drop):
        c = Vi @ rhs
        d = mu - s
        if drop:
            d[k] = 1.0
            c[k] = 0.0
        return V @ (c / d)

    ph30 = modal(3.0 * lam, C3(q, q, q) / 6.0, False)
    ph21 = modal(2.0 * lam + np.conj(lam), C3(q, q, qb) / 2.0, True)
    ph12 = np.conj(ph21)
    out = {}
    if "quintic" in corrections:
        e5 = np.zeros(8, complex)
        e5[ci] = KW @ (S5 * q[vi] ** 3 * qb[vi] ** 2)
        g2 = np.conj(p) @ (0.5 * (C3(q, q, ph12) + 2.0 * C3(q, qb, ph21) + C3(qb, qb, ph30))
                           + e5 / 12.0)
        out["a2"], out["b2"] = float(g2.real), float(g2.imag)
    if "readout" in corrections:
        lfp = np.asarray(lfp, dtype=float).reshape(8)
        den = lfp @ q
        out["readout"] = complex((lfp @ ph21) / den) if abs(den) > 0 else 0.0
    if "noise" in corrections or "shift" in corrections:
        I = np.linspace(0.0, 1.05 * i_max, n_table)
        nu_abs = np.abs(q[vi])
        s0, s2, rho = _describing(I, nu_abs, R)
        beta = np.conj(p) @ B
        c12 = np.conj(p) @ ph12
        c30 = np.conj(p) @ ph30
        out["table_I"] = I
        if "noise" in corrections:
            Pi = np.eye(8) - np.outer(q, np.conj(p)) - np.outer(qb, p)
            om = lam.imag
            Yp = np.linalg.solve(1j * om * np.eye(8) - J, Pi @ B)
            Ym = np.linalg.solve(-1j * om * np.eye(8) - J, Pi @ B)
            G1 = (s0 * Yp[vi][None, :]) @ wv
            G2 = ((0.5 * s2) * np.exp(2j * np.angle(q[vi]))[None, :] * Ym[vi][None, :]) @ wv
            r1 = G1 / beta - 2.0 * c12 * np.conj(beta) / beta * I
            r2 = np.conj(G2) / beta + np.conj(-3.0 * c30 * beta) / beta * I
            out["diff_r"] = np.abs(1.0 + r1 + r2) ** 2
            out["diff_t"] = np.abs(1.0 + r1 - r2) ** 2
        if "shift" in corrections:
            c = Vi @ B.astype(complex)
            lead = np.array([k, kb])
            rest = np.array([i for i in range(8) if i not in (k, kb)])
            M = -np.outer(c, np.conj(c)) / (s[:, None] + np.conj(s)[None, :] + 1e-300)
            Vr = V[:, rest]
            Syy = (Vr @ M[np.ix_(rest, rest)] @ Vr.conj().T).real
            Say = (V[:, lead] @ M[np.ix_(lead, rest)] @ Vr.conj().T).real
            var = np.diag(Syy)[vi] + 2.0 * np.diag(Say)[vi]
            sens = wv * (0.25 * R) * q[vi]              # d lambda / d log S'_l
            ito = -(3.0 * c30 * beta ** 2 + c12 * np.conj(beta) ** 2)
            out["shift"] = (rho * (sens * (-0.25 * R * R) * var)[None, :]).sum(axis=1) + ito
    return out


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
                  return_line=False, corrections=(), interference="linear",
                  return_parts=False):
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
    corrections : sequence of str or "all"
        ``"adiabatic"`` only: terms beyond the cubic line (:func:`leading_line`; module
        docstring).  Default: none.
    interference : {"linear", "pulled", "incoherent"}
        ``"adiabatic"`` only: how the leading pair's terms of the transfer function, rescaled
        to the line by ``sqrt(L / L_ref)``, add to the other modes'.  ``"linear"``: with the
        phase of the linear resonance (poles ``sigma +- i omega``, ``L_ref`` its Lorentzian);
        ``"pulled"``: with the phase of a resonance at the line's centre and half-width (poles
        ``-width +- i centre``), the frequency the oscillation is pulled to by its amplitude;
        ``"incoherent"``: powers added without interference.  All three agree in the linear
        limit except ``"incoherent"``.
    return_parts : bool
        Return, instead of the spectrum, its decomposition by the leading line's readout gain
        ``g``: three arrays ``(S_other, S_line, S_cross)`` with ``S(g) = S_other + g S_line +
        sqrt(g) S_cross`` the spectrum when the leading pair's (rescaled) terms ``A`` of the
        transfer function are multiplied by ``sqrt(g)``, ``B`` the other modes' terms:
        ``2 sigma_u^2 |B|^2``, ``2 sigma_u^2 |A|^2`` and ``4 sigma_u^2 Re(B conj A)``, each
        convolved with the taper's window when ``taper_seconds`` is given.  ``S(1)`` is the
        spectrum (up to rounding).  ``S_cross`` is 0 for ``interference="incoherent"``;
        ``S_line`` and ``S_cross`` are 0 for ``spectrum="spm"``.

    Returns
    -------
    ndarray, shape (n_freqs,)
        In (LFP units)^2 / Hz; ``2 sigma_u^2 |H(f)|^2`` in the linear regime.  With
        ``return_parts`` the tuple ``(S_other, S_line, S_cross)`` of such arrays instead; with
        ``return_line`` a pair ``(spectrum or parts, line)``.
    """
    from ..cmc.equations import input_jacobian, jacobian
    from ..cmc.spectra import check_freqs, condition_eigenvalues

    if spectrum not in SPECTRA:
        raise ParameterError(f"spectrum must be one of {SPECTRA}, got {spectrum!r}")
    if interference not in INTERFERENCE:
        raise ParameterError(f"interference must be one of {INTERFERENCE}, got {interference!r}")
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
        line = leading_line(Pc, noise_std, corrections=corrections, lfp=C, _nm=nm)
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
        om = 2.0 * np.pi * f
        if interference == "pulled":
            sp = np.array([-line.width + 1j * line.centre, -line.width - 1j * line.centre])
            sp = sp if s[pair[0]].imag > 0 else sp[::-1]
            Hp = np.sum(res[pair][None, None, :] / (w[..., None] - sp[None, None, :]), axis=-1)
            L_lin = 2.0 * line.D / ((om - line.centre) ** 2 + line.width ** 2)
        else:
            Hp = np.sum(res[pair][None, None, :] / (w[..., None] - s[pair][None, None, :]), axis=-1)
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
        if return_parts:
            c2 = 2.0 * float(noise_std) ** 2
            Hl = Hp * np.sqrt(np.maximum(ratio, 0.0))
            So = (c2 * np.abs(H) ** 2) @ wts
            if interference == "incoherent":
                Sl = (c2 * (np.abs(Hp) ** 2 * np.maximum(ratio, 0.0))) @ wts
                Sx = np.zeros_like(So)
            else:
                Sl = (c2 * np.abs(Hl) ** 2) @ wts
                Sx = (2.0 * c2 * (H * np.conj(Hl)).real) @ wts
            return ((So, Sl, Sx), line) if return_line else (So, Sl, Sx)
        if interference == "incoherent":
            S = 2.0 * float(noise_std) ** 2 * (np.abs(H) ** 2 + np.abs(Hp) ** 2 * np.maximum(ratio, 0.0))
            S = S @ wts
            return (S, line) if return_line else S
        H = H + Hp * np.sqrt(np.maximum(ratio, 0.0))
    S = 2.0 * float(noise_std) ** 2 * np.abs(H) ** 2
    S = S @ wts
    if return_parts:
        parts = (S, np.zeros_like(S), np.zeros_like(S))
        return (parts, line) if return_line else parts
    return (S, line) if return_line else S


def hann_bin_correlation(offsets):
    """Correlation of Welch estimates (Hann taper) of a locally flat spectrum at frequencies
    ``offsets`` apart, in units of the inverse taper length (``1 / T``).

    For a taper ``w`` the periodogram ordinates at frequencies ``x / T`` apart have correlation
    ``|W2(x)|^2 / W2(0)^2``, ``W2`` the Fourier transform of ``w^2`` (large-sample, locally
    flat spectrum); averaging overlapping segments does not change it.  For the Hann taper
    ``w^2 = (3/2 - 2 cos 2 pi t + 1/2 cos 4 pi t) / 4`` on ``0 <= t <= 1``, so
    ``W2(x) / W2(0) = sinc(x) - (2/3) [sinc(x - 1) + sinc(x + 1)] + (1/6) [sinc(x - 2) + sinc(x + 2)]``:
    4/9 at ``x = 1``, 1/36 at ``x = 2``, 0 at larger integers.

    Parameters
    ----------
    offsets : array-like
        Frequency offsets times the taper length.

    Returns
    -------
    ndarray
        Correlations, same shape as ``offsets``.
    """
    x = np.asarray(offsets, dtype=float)
    r = (np.sinc(x) - (2.0 / 3.0) * (np.sinc(x - 1) + np.sinc(x + 1))
         + (1.0 / 6.0) * (np.sinc(x - 2) + np.sinc(x + 2)))
    return r * r


def _composite_scale(hz, taper_seconds):
    """``1 / (1 + 2 sum_k rho_k)`` for Hann-Welch bins on the grid ``hz`` (uniform spacing)."""
    d = np.diff(hz)
    if d.size == 0 or not np.allclose(d, d[0], rtol=1e-6):
        raise ParameterError("bin_correlation needs uniformly spaced frequencies")
    x = d[0] * float(taper_seconds) * np.arange(1, 64)
    return float(1.0 / (1.0 + 2.0 * np.sum(hann_bin_correlation(x))))


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
    corrections : sequence of str or "all"
        Terms beyond the cubic line for ``spectrum="adiabatic"`` (:func:`hopf_spectrum`).
    interference : {"linear", "pulled", "incoherent"}
        How the leading line interferes with the other modes (:func:`hopf_spectrum`).
    bin_correlation : bool
        Scale the log-likelihood by ``1 / (1 + 2 sum_k rho_k)``, ``rho_k`` the correlation of
        Hann-Welch bins ``k`` spacings apart (:func:`hann_bin_correlation`; needs
        ``taper_seconds``): the Whittle likelihood treats the bins as independent, but
        neighbouring bins of a Hann-tapered estimate on the ``1 / T`` grid are correlated
        (``rho_1 = 4/9``, ``rho_2 = 1/36``: scale 0.514), which makes the unscaled posterior
        too narrow.  This is the curvature adjustment of a composite likelihood.
    dof_scale : {"recorded", "fit"}
        ``"fit"``: a model-error term -- the Gamma shape is ``kappa dof / 2`` with
        ``log kappa ~ N(0, 1.5^2)`` (as :class:`~nmm_inference.inference.CMCModel`'s
        ``dof_scale="fit"``), integrated out by 32-node Gauss-Hermite quadrature inside the
        likelihood; the data may then deviate from the model more than their sampling error.
    line_gain_sd : float, optional
        ``spectrum="adiabatic"`` only.  If given, an unknown readout gain ``g`` of the leading
        line: its power is multiplied by ``g`` (the leading pair's terms of the transfer
        function by ``sqrt(g)``, so its interference with the other modes is kept; the
        decomposition of :func:`hopf_spectrum` with ``return_parts``), ``log g ~ N(0,
        line_gain_sd^2)`` integrated out inside the likelihood on a uniform grid of
        ``log g`` (spacing ``line_gain_step``, +-5 prior sds, weights renormalised), jointly
        with ``log kappa`` for ``dof_scale="fit"``.  It stands for the LFP-level readout of the
        line that the model misses above threshold (module docstring: 12-19 % excess power at
        35-45 Hz on simulated spectra; the ``"readout"`` term, 0.82 on noise-free cycles,
        does not describe the noisy LFP).  Default ``None``: no gain (``g = 1``).
    line_gain_step : float
        Spacing of the ``log g`` grid (default 0.01, a third or less of the conditional
        posterior sd of ``log g``, 0.03-0.1, on 20-60 Hz Welch spectra of 200 s).
    residual_lags : int, optional
        Needs ``bin_correlation=True``.  If given, :meth:`fit` replaces the Hann composite
        scale by one estimated from the data: at a preliminary MAP (Hann scale) the lag-1 to
        ``residual_lags`` autocorrelations ``r_k`` of the relative residuals
        ``y / (c S) - 1`` across bins give ``1 / (1 + 2 sum_k r_k)``, used when below the
        Hann scale (:meth:`residual_scale`).  It covers correlation beyond the Hann lags
        (above threshold the bins are correlated over several lags) and smooth model error.
        Default ``None``: the Hann scale.
    """

    def __init__(self, y, *, freqs, dof, free, priors, base=None, noise_std=0.01,
                 spectrum="adiabatic", taper_seconds=None, dof_scale="recorded",
                 corrections=(), interference="linear",
                 bin_correlation=False, line_gain_sd=None, line_gain_step=0.01,
                 residual_lags=None):
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
        self.corrections = _check_corrections(corrections)
        if interference not in INTERFERENCE:
            raise ParameterError(f"interference must be one of {INTERFERENCE}, got {interference!r}")
        self.interference = interference
        self.bin_correlation = bool(bin_correlation)
        if self.bin_correlation:
            if taper_seconds is None:
                raise ParameterError("bin_correlation needs taper_seconds (Hann taper length)")
            self.loglik_scale = _composite_scale(self.hz, taper_seconds)
        else:
            self.loglik_scale = 1.0
        self._hann_scale = self.loglik_scale
        self.residual_lags = None
        if residual_lags is not None:
            if not self.bin_correlation:
                raise ParameterError("residual_lags needs bin_correlation=True")
            if int(residual_lags) < 1 or int(residual_lags) >= self.hz.size // 2:
                raise ParameterError(f"residual_lags must be in 1..{self.hz.size // 2 - 1}")
            self.residual_lags = int(residual_lags)
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
        # Gamma shapes on the kappa grid and their data-only terms, fixed for the model
        from scipy.special import gammaln

        self._h = 0.5 * self.dof * np.ones_like(self.y)
        ly = np.log(self.y)
        self._ka = np.exp(self._logk)[:, None] * (0.5 * self.dof)[None, :]
        self._kA = self._ka.sum(axis=1)
        self._kconst = np.sum(self._ka * np.log(self._ka) - gammaln(self._ka) + (self._ka - 1) * ly,
                              axis=1)
        self._kgA = gammaln(self._kA)
        self.line_gain_sd = None
        if line_gain_sd is not None:
            sg, hg = float(line_gain_sd), float(line_gain_step)
            if not (np.isfinite(sg) and sg > 0 and np.isfinite(hg) and hg > 0):
                raise ParameterError("line_gain_sd and line_gain_step must be positive and finite")
            if spectrum != "adiabatic":
                raise ParameterError("line_gain_sd needs spectrum='adiabatic' (the 'spm' spectrum "
                                     "has no separate leading line)")
            self.line_gain_sd = sg
            self.line_gain_step = hg
            n = int(math.ceil(5.0 * sg / hg))
            self._logg = hg * np.arange(-n, n + 1)
            lg = -0.5 * (self._logg / sg) ** 2
            self._loggw = lg - np.log(np.sum(np.exp(lg)))
            h = self._h
            if dof_scale == "fit":
                self._gc = self._kconst + self._kgA - self._kA * self._logk
                self._gA = self._kA
            else:
                H = h.sum()
                self._gc = float(np.sum(h * np.log(h) - gammaln(h) + (h - 1) * ly) + gammaln(H))
                self._gA = H

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
        if self.spectrum == "spm":
            return hopf_spectrum(P, self.hz, noise_std=noise, spectrum="spm",
                                 taper_seconds=self.taper_seconds)
        return hopf_spectrum(P, self.hz, noise_std=noise, spectrum=self.spectrum,
                             taper_seconds=self.taper_seconds, corrections=self.corrections,
                             interference=self.interference)

    def predict_parts(self, x):
        """``(S_other, S_line, S_cross)`` at free-parameter values ``x``: the spectrum (unit
        overall scale) is ``S_other + g S_line + sqrt(g) S_cross`` for a line gain ``g``
        (:func:`hopf_spectrum`, ``return_parts``)."""
        P, noise = self.params(x)
        return hopf_spectrum(P, self.hz, noise_std=noise, spectrum=self.spectrum,
                             taper_seconds=self.taper_seconds, corrections=self.corrections,
                             interference=self.interference, return_parts=True)

    def _gain_grid(self, parts):
        """Scaled log-likelihood on the ``log g`` grid (and the ``log kappa`` grid for
        ``dof_scale="fit"``: shape ``(n_kappa, n_g)``), prior weights not included; ``None`` if
        a spectrum is not positive and finite."""
        So, Sl, Sx = parts
        g = np.exp(self._logg)[:, None]
        Sg = So[None, :] + g * Sl[None, :] + np.sqrt(g) * Sx[None, :]
        if not np.all(np.isfinite(Sg) & (Sg > 0)):
            return None
        u = np.log(Sg) @ self._h
        lv = np.log((self.y[None, :] / Sg) @ self._h)
        if self.dof_scale == "recorded":
            ll = self._gc - u - self._gA * lv
        else:
            ll = (self._gc[:, None] - np.exp(self._logk)[:, None] * u[None, :]
                  - self._gA[:, None] * lv[None, :])
        return self.loglik_scale * ll

    def _gain_log_weights(self, parts):
        """:meth:`_gain_grid` plus the nuisance priors' log weights (``None`` as there)."""
        ll = self._gain_grid(parts)
        if ll is None:
            return None
        return ll + (self._loggw if self.dof_scale == "recorded"
                     else self._logw[:, None] + self._loggw[None, :])

    def _gain_posterior_grid(self, x):
        """Normalised conditional posterior weights of the nuisance grid at ``x`` (shape as
        :meth:`_gain_grid`) and the parts of the spectrum."""
        parts = self.predict_parts(x)
        ll = self._gain_log_weights(parts)
        if ll is None:
            raise ReductionError("the spectrum is not positive and finite at these parameters")
        w = np.exp(ll - ll.max())
        return w / w.sum(), parts

    def _log_gain_moments(self, w):
        """Mean and sd of ``log g`` under grid weights ``w`` (``log kappa`` summed out)."""
        wg = w if w.ndim == 1 else w.sum(axis=0)
        m = float(np.sum(wg * self._logg))
        return m, float(np.sqrt(np.sum(wg * (self._logg - m) ** 2)))

    def line_gain_posterior(self, x):
        """Conditional posterior mean and sd of ``log g`` (the line gain, ``line_gain_sd``) at
        free-parameter values ``x``, ``log kappa`` integrated out."""
        if self.line_gain_sd is None:
            raise ParameterError("the model has no line gain (line_gain_sd=None)")
        w, _ = self._gain_posterior_grid(np.asarray(x, float))
        return self._log_gain_moments(w)

    def log_likelihood(self, x):
        """Gamma log-likelihood with the overall scale (and, when present, ``log kappa`` and the
        line gain) integrated out (``-inf`` if invalid)."""
        from .likelihoods import whittle_gamma_marginal_loglik

        if self.line_gain_sd is not None:
            try:
                parts = self.predict_parts(x)
            except (ReductionError, np.linalg.LinAlgError, ParameterError, FloatingPointError):
                return -np.inf
            ll = self._gain_log_weights(parts)
            if ll is None:
                return -np.inf
            m = ll.max()
            return float(m + np.log(np.sum(np.exp(ll - m))))
        try:
            S = self.predict(x)
        except (ReductionError, np.linalg.LinAlgError, ParameterError, FloatingPointError):
            return -np.inf
        if not np.all(np.isfinite(S) & (S > 0)):
            return -np.inf
        if self.dof_scale == "recorded":
            return self.loglik_scale * float(whittle_gamma_marginal_loglik(self.y, S, self.dof))
        ll = self._logw + self.loglik_scale * self._ll_kappa(S)
        m = ll.max()
        return float(m + np.log(np.sum(np.exp(ll - m))))

    def _ll_kappa(self, S0):
        """Scale-marginal Gamma log-likelihood for every ``kappa`` of the grid (vectorised
        :func:`~nmm_inference.inference.whittle_gamma_marginal_loglik`)."""
        a = self._ka
        return (self._kconst - a @ np.log(S0) + self._kgA
                - self._kA * np.log(a @ (self.y / S0)))

    def dof_scale_posterior(self, x):
        """Conditional posterior mean and sd of ``log kappa`` at free-parameter values ``x``
        (the line gain, when present, integrated out)."""
        if self.line_gain_sd is not None:
            if self.dof_scale == "recorded":
                raise ParameterError("dof_scale='recorded' has no kappa")
            w, _ = self._gain_posterior_grid(np.asarray(x, float))
            wk = w.sum(axis=1)
            m = float(np.sum(wk * self._logk))
            return m, float(np.sqrt(np.sum(wk * (self._logk - m) ** 2)))
        ll = self._logw + self.loglik_scale * self._ll_kappa(self.predict(x))
        w = np.exp(ll - ll.max())
        w /= w.sum()
        m = float(np.sum(w * self._logk))
        return m, float(np.sqrt(np.sum(w * (self._logk - m) ** 2)))

    def residual_scale(self, x, lags=None):
        """Composite-likelihood scale estimated from the residual correlation at ``x``.

        Parameters
        ----------
        x : array-like
            Free-parameter values (typically a MAP).
        lags : int, optional
            Largest bin lag (default ``residual_lags``).

        Returns
        -------
        float
            ``min(Hann scale, 1 / (1 + 2 sum_{k=1}^{lags} r_k))``, ``r_k`` the lag-``k``
            autocorrelation over bins of ``u = y / (c S) - 1``, ``S`` the model spectrum at
            ``x`` (with the line gain at its conditional posterior mean when the model has
            one) and ``c`` the maximum-likelihood overall scale.
        """
        lags = self.residual_lags if lags is None else int(lags)
        if lags is None:
            raise ParameterError("give lags (the model has no residual_lags)")
        x = np.asarray(x, float)
        if self.line_gain_sd is not None:
            w, (So, Sl, Sx) = self._gain_posterior_grid(x)
            mg, _ = self._log_gain_moments(w)
            S = So + math.exp(mg) * Sl + math.exp(0.5 * mg) * Sx
        else:
            S = self.predict(x)
        h = self._h
        c = np.sum(h * self.y / S) / h.sum()
        u = self.y / (c * S) - 1.0
        u = u - u.mean()
        v = float(u @ u)
        r = np.array([float(u[:-k] @ u[k:]) / v for k in range(1, lags + 1)])
        est = 1.0 / max(1.0 + 2.0 * r.sum(), 1e-12)
        return float(min(self._hann_scale, est))

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
        if self.residual_lags is not None:
            self.loglik_scale = self._hann_scale
            x_pre, _ = self._map(rng, n_starts)
            self.loglik_scale = self.residual_scale(x_pre)
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
            "corrections": json.dumps(list(self.corrections) if self.spectrum == "adiabatic" else []),
            "interference": self.interference,
            "loglik_scale": self.loglik_scale,
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
        if self.residual_lags is not None:
            dt_.attrs["residual_lags"] = self.residual_lags
            dt_.attrs["hann_loglik_scale"] = self._hann_scale
        if self.line_gain_sd is not None:
            dt_.attrs["line_gain_sd"] = self.line_gain_sd
            dt_.attrs["line_gain_step"] = self.line_gain_step
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
