"""Stochastic amplitude dynamics (``shared/docs/adiabatic.md`` §5, §7.2).

White noise of standard deviation ``s_i`` on the input of population i (``u_i -> u_i + s_i xi_i``)
projects onto mode k with diffusion ``D_k = sum_i |conj(mu_ki) kappa_i s_i|^2 / 2``.  After phase
averaging the amplitudes obey::

    dr_k = [r_k (sigma_k + sum_j a_kj r_j^2) + D_k / (2 r_k)] dt + sqrt(D_k) dW_k .

This module gives the one-mode stationary density and its moments, exact one-dimensional mean
first-passage times, the Kramers-Langer rate where detailed balance holds, a seeded ensemble
simulator of the amplitude SDE, and the features a sensor sees per frequency band.

Pure numerics: numpy and scipy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from ..errors import ParameterError, ReductionError

__all__ = ["noise_diffusion", "stationary_density", "stationary_moments",
           "mean_first_passage_time", "envelope_correlation_time", "AmplitudeSDE",
           "kramers_langer_rate", "BandFeatures", "band_features"]


def _noise_vector(noise_std):
    s = np.asarray(noise_std, dtype=float)
    if s.ndim == 0:
        s = np.full(4, float(s))
    if s.shape != (4,) or not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ParameterError(f"noise_std must be a non-negative scalar or shape (4,) (ss, sp, ii, "
                             f"dp), got {np.asarray(noise_std).tolist()}")
    return s


def noise_diffusion(reduction, noise_std):
    """Diffusion coefficients D_k of the mode amplitudes for input noise of std ``noise_std``.

    Parameters
    ----------
    reduction : Reduction
        Result of :func:`~nmm_inference.adiabatic.reduce_cmc`.
    noise_std : float or array-like, shape (4,)
        Standard deviation of white noise on the inputs of ss, sp, ii, dp (SPM input units
        per sqrt(s)).

    Returns
    -------
    ndarray, shape (m,)
        ``D_k`` (1/s, in units of r^2).
    """
    s = _noise_vector(noise_std)
    beta = np.conj(reduction._core["mu"]) * (reduction._core["K"] * s)[None, :]
    return 0.5 * np.sum(np.abs(beta) ** 2, axis=1)


def _check_1d(sigma, a, D):
    if not (np.isfinite(sigma) and np.isfinite(a) and np.isfinite(D)) or D <= 0:
        raise ParameterError(f"need finite sigma, a and D > 0, got {sigma}, {a}, {D}")
    if a >= 0:
        raise ReductionError(f"Re g_kk = {a:.4g} >= 0 (subcritical Hopf): the cubic amplitude "
                             "SDE has no normalisable stationary density")


def _log_norm(sigma, a, D):
    """log of Z = int_0^inf r exp((sigma r^2 + a r^4 / 2) / D) dr (a < 0)."""
    c = -a / (2.0 * D)
    m = sigma / (-a)
    x = -m * np.sqrt(c)
    # Z = 1/4 sqrt(pi/c) exp(c m^2) erfc(x)
    log_erfc = np.log(2.0) + special.log_ndtr(-x * np.sqrt(2.0))
    return np.log(0.25 * np.sqrt(np.pi / c)) + c * m * m + log_erfc


def stationary_density(r, sigma, a, D):
    """Normalised stationary density of one mode's amplitude.

    ``p(r) = r exp((sigma r^2 + a r^4 / 2) / D) / Z`` (Rayleigh for small a, peaked near
    ``sqrt(-sigma/a)`` above threshold).

    Parameters
    ----------
    r : array-like
        Amplitudes (>= 0).
    sigma : float
        Growth rate (1/s).
    a : float
        ``Re g_kk`` (< 0).
    D : float
        Diffusion coefficient (1/s).

    Returns
    -------
    ndarray
        Density at r (per unit r).

    Raises
    ------
    ReductionError
        If ``a >= 0`` (no normalisable density without higher-order terms).
    """
    _check_1d(sigma, a, D)
    r = np.asarray(r, dtype=float)
    with np.errstate(divide="ignore"):
        logp = np.log(r) + (sigma * r ** 2 + 0.5 * a * r ** 4) / D - _log_norm(sigma, a, D)
    return np.where(r > 0, np.exp(logp), 0.0)


def stationary_moments(sigma, a, D, *, n_nodes=200):
    """Mean amplitude, mean intensity and related moments of the one-mode stationary density.

    In ``I = r^2`` the density is a Gaussian truncated at 0 (mean ``-sigma/a``, variance
    ``-D/a``), so ``E[I]`` and ``Var[I]`` are closed-form; ``E[r]`` uses Gauss-Legendre
    quadrature over the support.

    Parameters
    ----------
    sigma, a, D : float
        See :func:`stationary_density`.
    n_nodes : int, optional
        Quadrature nodes for ``E[r]``.

    Returns
    -------
    dict
        ``mean_r``, ``mean_r2`` (= E[I]), ``var_r``, ``var_I``.
    """
    _check_1d(sigma, a, D)
    mI = sigma / (-a)
    sI = np.sqrt(D / (-a))
    alpha = -mI / sI
    # inverse Mills ratio phi(alpha) / (1 - Phi(alpha)), stably
    lam = np.sqrt(2.0 / np.pi) / special.erfcx(alpha / np.sqrt(2.0))
    EI = mI + sI * lam
    varI = sI ** 2 * (1.0 + alpha * lam - lam ** 2)
    lo = max(0.0, mI - 12.0 * sI)
    # below threshold the truncated Gaussian decays like exp(-|sigma| I / D) at the origin
    hi = mI + 12.0 * sI if mI > 0 else 40.0 * min(sI, sI ** 2 / -mI)
    x, w = np.polynomial.legendre.leggauss(n_nodes)
    # substitute I = lo + (hi - lo) t^2 on t in [0, 1] to resolve the sqrt at I = 0
    t = 0.5 * (x + 1.0)
    wt = 0.5 * w
    I = lo + (hi - lo) * t ** 2
    jac = 2.0 * (hi - lo) * t
    logw = (sigma * I + 0.5 * a * I ** 2) / D
    wts = np.exp(logw - logw.max()) * jac * wt
    Er = np.sum(np.sqrt(I) * wts) / np.sum(wts)
    return {"mean_r": float(Er), "mean_r2": float(EI), "var_r": float(EI - Er ** 2),
            "var_I": float(varI)}


def _grid_density(sigma, a, D, n=4000, r_max=None):
    _check_1d(sigma, a, D)
    mI = sigma / (-a)
    sI = np.sqrt(D / (-a))
    if r_max is None:
        r_max = np.sqrt(mI + 14.0 * sI if mI > 0 else 40.0 * min(sI, sI ** 2 / -mI))
    r = np.linspace(0.0, r_max, n + 1)[1:]
    logrho = np.log(r) + (sigma * r ** 2 + 0.5 * a * r ** 4) / D
    return r, logrho


def mean_first_passage_time(r_from, r_to, sigma, a, D, *, n_grid=6000):
    """Exact mean first-passage time of the one-mode amplitude from ``r_from`` to ``r_to``.

    ``T = (2/D) int_{r_from}^{r_to} exp(2U(y)/D) int_0^y exp(-2U(z)/D) dz dy`` with
    ``U(r) = -sigma r^2/2 - a r^4/4 - (D/2) ln r`` (reflecting at 0) for upward passages, and the
    mirror formula (reflecting at infinity) for downward ones.

    Parameters
    ----------
    r_from, r_to : float
        Start and target amplitudes (>= 0).
    sigma, a, D : float
        See :func:`stationary_density`.
    n_grid : int, optional
        Grid points of the trapezoidal quadrature.

    Returns
    -------
    float
        Mean first-passage time (s).
    """
    _check_1d(sigma, a, D)
    r_hi = max(r_from, r_to)
    mI = sigma / (-a)
    sI = np.sqrt(D / (-a))
    r_max = max(np.sqrt(mI + 14.0 * sI if mI > 0 else 40.0 * min(sI, sI ** 2 / -mI)), 1.2 * r_hi)
    r, logrho = _grid_density(sigma, a, D, n=n_grid, r_max=r_max)
    ref = logrho.max()
    rho = np.exp(logrho - ref)
    dr = r[1] - r[0]
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (rho[1:] + rho[:-1]) * dr)])
    cum += 0.5 * rho[0] * r[0]  # the first cell [0, r_0], rho ~ r there
    if r_to >= r_from:
        integrand = cum / rho
        mask = (r >= r_from) & (r <= r_to)
    else:
        tail = cum[-1] - cum
        integrand = tail / rho
        mask = (r >= r_to) & (r <= r_from)
    if mask.sum() < 2:
        return 0.0
    y = integrand[mask]
    return float(2.0 / D * np.sum(0.5 * (y[1:] + y[:-1]) * dr))


def envelope_correlation_time(sigma, a, D, *, observable="amplitude", n_grid=6000):
    """Integrated autocorrelation time of one mode's envelope (exact for the 1-D SDE).

    ``tau = (1/Var f) int F(r)^2 / (d(r) p(r)) dr`` with ``F(r) = int_0^r (f(x) - E f) p(x) dx``,
    ``f = r`` (amplitude) or ``r^2`` (intensity) and diffusion coefficient ``d = D/2``.  For the
    intensity near a noisy fixed point this is ``1/(2|sigma|)`` (Rayleigh regime); about a limit
    cycle it is about ``1/(2 sigma)``.

    Parameters
    ----------
    sigma, a, D : float
        See :func:`stationary_density`.
    observable : {"amplitude", "intensity"}, optional
        Envelope r or intensity r^2.
    n_grid : int, optional
        Grid points.

    Returns
    -------
    float
        Correlation time (s).
    """
    if observable not in ("amplitude", "intensity"):
        raise ParameterError(f"observable must be 'amplitude' or 'intensity', got {observable!r}")
    r, logrho = _grid_density(sigma, a, D, n=n_grid)
    p = np.exp(logrho - logrho.max())
    dr = r[1] - r[0]
    p /= np.sum(p) * dr
    f = r if observable == "amplitude" else r ** 2
    Ef = np.sum(f * p) * dr
    var = np.sum((f - Ef) ** 2 * p) * dr
    h = (f - Ef) * p * dr
    # F from the left below the median and from the right above it (F vanishes at both ends;
    # this keeps rounding out of the F^2 / p quotient in the tails)
    F_left = np.cumsum(h)
    F_right = -(np.cumsum(h[::-1])[::-1] - h)
    cdf = np.cumsum(p) * dr
    F = np.where(cdf < 0.5, F_left, F_right)
    ok = p > 1e-14 * p.max()
    return float(np.sum(F[ok] ** 2 / (0.5 * D * p[ok])) * dr / var)


def kramers_langer_rate(energy, hessian, x_min, x_saddle, diffusion):
    """Kramers-Langer escape rate over a saddle for ``dx = -Dm grad E dt + sqrt(2 Dm) dW``.

    Parameters
    ----------
    energy : callable
        ``E(x)`` (dimensionless; the stationary density is ``exp(-E)``).
    hessian : callable
        Hessian of E.
    x_min, x_saddle : ndarray
        The well and the saddle.
    diffusion : ndarray
        Diagonal of Dm.

    Returns
    -------
    float
        Rate (1/s).
    """
    Hm = hessian(x_min)
    Hs = hessian(x_saddle)
    Dm = np.diag(diffusion)
    kap_u = np.max(np.linalg.eigvals(-Dm @ Hs).real)
    pref = kap_u / (2 * np.pi) * np.sqrt(np.linalg.det(Hm) / abs(np.linalg.det(Hs)))
    return float(pref * np.exp(-(energy(x_saddle) - energy(x_min))))


class AmplitudeSDE:
    """The phase-averaged amplitude SDE of a set of modes.

    Parameters
    ----------
    reduction : Reduction
        Result of :func:`~nmm_inference.adiabatic.reduce_cmc`.
    noise_std : float or array-like, shape (4,)
        Input noise standard deviation per population.
    modes : sequence of int, optional
        Modes to include (default: the least damped two, or all if fewer).
    """

    def __init__(self, reduction, noise_std, *, modes=None):
        m = reduction.n_modes
        if m == 0:
            raise ReductionError("the circuit has no oscillatory mode")
        self.modes = tuple(range(min(2, m))) if modes is None else tuple(int(k) for k in modes)
        idx = list(self.modes)
        self.sigma = reduction.sigma[idx]
        self.omega = reduction.omega[idx]
        self.a = reduction.a[np.ix_(idx, idx)]
        self.b = reduction.b[np.ix_(idx, idx)]
        self.D = noise_diffusion(reduction, noise_std)[idx]

    def drift(self, r):
        """Drift of r (..., n): ``r (sigma + a r^2) + D / (2 r)`` (1/s)."""
        r = np.asarray(r, dtype=float)
        return r * (self.sigma + (r ** 2) @ self.a.T) + self.D / (2.0 * r)

    def detailed_balance(self, *, rtol=1e-6):
        """True when ``a_kj / D_k`` is symmetric (then the density is a Boltzmann law)."""
        Q = self.a / self.D[:, None]
        return bool(np.allclose(Q, Q.T, rtol=rtol, atol=0.0))

    def boltzmann_energy(self):
        """Energy ``E(r) = -log p(r)`` (up to a constant) and its Hessian, under detailed balance.

        ``p ~ prod_k r_k exp(-2 Phi)``, ``Phi = -sum sigma_k r_k^2/(2 D_k) - 1/4 sum (a_kj/D_k)
        r_k^2 r_j^2`` (``shared/docs/adiabatic.md`` §5.1); use with :func:`kramers_langer_rate`
        and ``diffusion = D / 2``.

        Returns
        -------
        energy, hessian : callable

        Raises
        ------
        ReductionError
            Without detailed balance (no closed-form density; simulate instead).
        """
        if not self.detailed_balance():
            raise ReductionError("a_kj / D_k is not symmetric: the amplitude process is out of "
                                 "equilibrium and has no closed-form density (use simulate)")
        Q = self.a / self.D[:, None]
        sD = self.sigma / self.D

        def energy(r):
            r = np.asarray(r, dtype=float)
            I = r ** 2
            return float(-np.sum(sD * I) - 0.5 * I @ Q @ I - np.sum(np.log(r)))

        def hessian(r):
            r = np.asarray(r, dtype=float)
            I = r ** 2
            H = -4.0 * Q * np.outer(r, r)
            H[np.diag_indices_from(H)] += -2.0 * sD - 2.0 * (Q @ I) + 1.0 / I
            return H

        return energy, hessian

    def simulate(self, duration, *, dt=1e-3, n_trials=1, r0=None, random_seed=None,
                 record_every=1):
        """Euler-Maruyama simulation of the complex amplitudes (phases included).

        Parameters
        ----------
        duration : float
            Length (s).
        dt : float, optional
            Step (s); should be small against ``1/|sigma|`` and ``1/(|a| r^2)``.
        n_trials : int, optional
            Independent realisations, simulated together.
        r0 : array-like, shape (n,), optional
            Initial amplitudes (default: a small value).
        random_seed : None, int or numpy.random.Generator, optional
            Seed for :func:`numpy.random.default_rng`.
        record_every : int, optional
            Keep every this many steps.

        Returns
        -------
        t : ndarray, shape (n_samples,)
            Times (s).
        z : ndarray, shape (n_trials, n_samples, n), complex
            Mode amplitudes ``z_k = r_k exp(i theta_k)`` in the rotating frame (the linear
            frequency ``omega_k`` removed; the amplitude-dependent shift kept).
        """
        rng = np.random.default_rng(random_seed)
        n = len(self.modes)
        n_steps = int(round(duration / dt))
        z = np.full((n_trials, n), 1e-3, dtype=complex) if r0 is None else \
            np.tile(np.asarray(r0, dtype=complex), (n_trials, 1))
        n_out = n_steps // record_every + 1
        out = np.empty((n_trials, n_out, n), dtype=complex)
        out[:, 0] = z
        g = self.a + 1j * self.b
        amp = np.sqrt(self.D * dt)
        o = 1
        for i in range(1, n_steps + 1):
            I = np.abs(z) ** 2
            xi = rng.standard_normal((n_trials, n, 2))
            z = z + z * (self.sigma + I @ g.T) * dt + amp * (xi[..., 0] + 1j * xi[..., 1])
            if i % record_every == 0:
                out[:, o] = z
                o += 1
        return np.arange(n_out) * dt * record_every, out[:, :o]


@dataclass(frozen=True)
class BandFeatures:
    """What a sensor sees in the band of one mode.

    Attributes
    ----------
    mode : int
        Mode index.
    frequency_hz : float
        Spectral peak frequency (Hz), including the amplitude-dependent shift.
    frequency_shift_hz : float
        Shift from the linear frequency (Hz).
    linewidth_hz : float
        Half width at half maximum of the (Lorentzian) peak (Hz).
    above_threshold : bool
        True when the mode oscillates (sigma > 0 or active in a stable state).
    mean_envelope : float
        Mean envelope of the readout channel in this band (readout units).
    envelope_correlation_time : float
        Integrated autocorrelation time of the envelope (s).
    occupancy : dict
        Fraction of time spent in each stable state (keyed by its active-mode tuple).
    switching_rate : float
        Rate of transitions between stable states (1/s); 0 with a single stable state.
    """

    mode: int
    frequency_hz: float
    frequency_shift_hz: float
    linewidth_hz: float
    above_threshold: bool
    mean_envelope: float
    envelope_correlation_time: float
    occupancy: dict
    switching_rate: float


def _moving_average(x, win):
    """Centred moving average along axis 1 (trials, samples, ...)."""
    c = np.cumsum(np.concatenate([np.zeros_like(x[:, :1]), x], axis=1), axis=1)
    n = x.shape[1]
    lo = np.clip(np.arange(n) - win // 2, 0, n)
    hi = np.clip(np.arange(n) + (win - win // 2), 0, n)
    return (c[:, hi] - c[:, lo]) / (hi - lo)[None, :, *([None] * (x.ndim - 2))]


def _autocorrelation(x):
    """Normalised autocorrelation along axis 1, averaged over axis 0 (FFT, biased)."""
    x = x - x.mean(axis=1, keepdims=True)
    n = x.shape[1]
    f = np.fft.rfft(x, 2 * n, axis=1)
    ac = np.fft.irfft(np.abs(f) ** 2, 2 * n, axis=1)[:, :n].mean(axis=0)
    return ac / ac[0]


def band_features(reduction, noise_std, *, readout=(0.0, 1.0, 0.0, 0.0), modes=None,
                  duration=200.0, dt=None, n_trials=8, random_seed=None):
    """Sensor-level features per band: envelope, correlation time, occupancy, switching, peak.

    With one relevant mode (the others damped and inactive in every stable state) everything is
    exact for the one-dimensional amplitude SDE.  With several stable states the occupancies,
    switching rate and envelope statistics come from a seeded simulation of the amplitude SDE
    (:class:`AmplitudeSDE`).

    Parameters
    ----------
    reduction : Reduction
        Result of :func:`~nmm_inference.adiabatic.reduce_cmc`.
    noise_std : float or array-like, shape (4,)
        Input noise standard deviation per population.
    readout : array-like, shape (4,), optional
        Weights of the population voltages in the sensor (default: SPM's LFP, sp voltage).
    modes : sequence of int, optional
        Bands to report (default: modes active in some stable state, else the least damped).
    duration, dt, n_trials : optional
        Simulation settings for the multistable case (s, s, count).
    random_seed : None, int or numpy.random.Generator, optional
        Seed of the simulation.

    Returns
    -------
    list of BandFeatures
    """
    L = np.asarray(readout, dtype=float)
    if L.shape != (4,) or not np.all(np.isfinite(L)):
        raise ParameterError(f"readout must be 4 finite weights (ss, sp, ii, dp), got {readout!r}")
    states = reduction.stable_states(warn=False)
    active = sorted({k for s in states for k in s.active})
    if modes is None:
        modes = active or [0]
    D = noise_diffusion(reduction, noise_std)
    gain = np.abs(reduction._core["nu"] @ L)      # |L . nu_k|
    sig, a, b, om = reduction.sigma, reduction.a, reduction.b, reduction.omega
    out = []
    oscillating = [s for s in states if not s.is_rest]
    if len(states) <= 1:
        st = states[0]
        for k in modes:
            I_other = np.zeros(sig.size)
            for kk, Ik in zip(st.active, st.intensities):
                I_other[kk] = Ik
            I_other[k] = 0.0
            sig_eff = sig[k] + a[k] @ I_other          # other active modes shift the growth rate
            mom = stationary_moments(sig_eff, a[k, k], D[k])
            tau = envelope_correlation_time(sig_eff, a[k, k], D[k])
            shift = (b[k, k] * mom["mean_r2"] + b[k] @ I_other) / (2 * np.pi)
            above = k in st.active
            if above:
                Ik = mom["mean_r2"]
                hw = D[k] / (2.0 * Ik) * (1.0 + (b[k, k] / a[k, k]) ** 2)
            else:
                hw = abs(sig_eff)
            out.append(BandFeatures(k, float((om[k]) / (2 * np.pi) + shift), float(shift),
                                    float(hw / (2 * np.pi)), bool(above),
                                    float(2.0 * gain[k] * mom["mean_r"]), tau,
                                    {st.active: 1.0}, 0.0))
        return out
    # several stable states: simulate the amplitude SDE of the involved modes
    sde_modes = sorted(set(active) | set(modes))
    sde = AmplitudeSDE(reduction, noise_std, modes=sde_modes)
    rate_scale = max(np.max(np.abs(sig[sde_modes])), 1e-3)
    dt = dt or min(1e-3, 0.02 / rate_scale)
    rec = max(1, int(round(2e-3 / dt)))
    r0 = np.full(len(sde_modes), 1e-3)
    for kk, rk in zip(oscillating[0].active, oscillating[0].amplitudes):
        r0[sde_modes.index(kk)] = rk
    t, z = sde.simulate(duration, dt=dt, n_trials=n_trials, r0=r0, random_seed=random_seed,
                        record_every=rec)
    burn = t > min(0.1 * duration, 5.0 / rate_scale)
    r = np.abs(z[:, burn])                                 # (trials, samples, n)
    # classify each sample to the nearest stable state in intensity space (smoothed)
    centres = []
    for s in oscillating:
        c = np.zeros(len(sde_modes))
        for kk, Ik in zip(s.active, s.intensities):
            if kk in sde_modes:
                c[sde_modes.index(kk)] = Ik
        centres.append(c)
    if any(s.is_rest for s in states):
        centres.append(np.zeros(len(sde_modes)))
    keys = [s.active for s in oscillating] + ([()] if any(s.is_rest for s in states) else [])
    C = np.array(centres)
    win = max(1, int(round(0.5 / rate_scale / (t[1] - t[0]))))
    I_s = _moving_average(r ** 2, win)                     # smoothed intensities
    dist = np.sqrt(((I_s[..., None, :] - C) ** 2).sum(-1))  # (trials, samples, states)
    sep = min(np.linalg.norm(C[i] - C[j]) for i in range(len(C)) for j in range(i + 1, len(C)))
    near = np.argmin(dist, axis=-1)
    core = np.min(dist, axis=-1) < 0.35 * sep              # committed to a state (hysteresis)
    lab = np.empty_like(near)
    for tr in range(lab.shape[0]):
        cur = near[tr, 0]
        for i in range(lab.shape[1]):
            if core[tr, i]:
                cur = near[tr, i]
            lab[tr, i] = cur
    occ = {keys[i]: float(np.mean(lab == i)) for i in range(len(keys))}
    n_switch = np.sum(lab[:, 1:] != lab[:, :-1])
    T_tot = lab.shape[0] * (t[burn][-1] - t[burn][0])
    rate = float(n_switch / T_tot)
    for k in modes:
        j = sde_modes.index(k)
        rk = r[..., j]
        mean_r = float(rk.mean())
        Ik = float((rk ** 2).mean())
        ac = _autocorrelation(rk)
        cut = np.argmax(ac < 0) if np.any(ac < 0) else ac.size
        tau = float(np.sum(ac[:cut]) * (t[1] - t[0]))
        shift = float((b[k, sde_modes] @ (r ** 2).mean(axis=(0, 1))) / (2 * np.pi))
        above = k in active
        hw = D[k] / (2.0 * Ik) * (1.0 + (b[k, k] / a[k, k]) ** 2) if above else abs(sig[k])
        out.append(BandFeatures(k, float(om[k] / (2 * np.pi) + shift), shift,
                                float(hw / (2 * np.pi)), bool(above), 2.0 * gain[k] * mean_r, tau,
                                occ, rate))
    return out
