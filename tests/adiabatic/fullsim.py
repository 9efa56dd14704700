"""Full nonlinear simulation of one CMC source, for testing the adiabatic reduction.

Independent of the reduction: fixed-step RK4 (deterministic), stochastic Heun (additive noise),
and Newton shooting for periodic orbits with their Floquet exponents.  The vector field is
checked against ``nmm_inference.cmc.equations.vector_field`` in ``test_fullsim.py``.

State order is SPM's: (v_ss, c_ss, v_sp, c_sp, v_ii, c_ii, v_dp, c_dp).
"""

from __future__ import annotations

import numba
import numpy as np

from nmm_inference.adiabatic._core import coupling_matrix

_NJIT = dict(cache=True, error_model="numpy", fastmath=False)


@numba.njit(**_NJIT)
def _rhs(x, W, kap, R, U, out):
    for i in range(4):
        acc = U[i]
        for j in range(4):
            if W[i, j] != 0.0:
                acc += W[i, j] * (0.5 * np.tanh(0.5 * R * x[2 * j]))
        out[2 * i] = x[2 * i + 1]
        out[2 * i + 1] = kap[i] * (acc - 2.0 * x[2 * i + 1] - kap[i] * x[2 * i])


@numba.njit(**_NJIT)
def _jac(x, W, kap, R, J):
    J[:, :] = 0.0
    for i in range(4):
        J[2 * i, 2 * i + 1] = 1.0
        for j in range(4):
            if W[i, j] != 0.0:
                s = 0.5 * (1.0 + np.tanh(0.5 * R * x[2 * j]))
                J[2 * i + 1, 2 * j] += kap[i] * W[i, j] * R * s * (1.0 - s)
        J[2 * i + 1, 2 * i] -= kap[i] * kap[i]
        J[2 * i + 1, 2 * i + 1] = -2.0 * kap[i]


@numba.njit(**_NJIT)
def _rk4(x0, W, kap, R, U, dt, n_steps, every):
    n_out = n_steps // every + 1
    traj = np.empty((n_out, 8))
    x = x0.copy()
    k1 = np.empty(8)
    k2 = np.empty(8)
    k3 = np.empty(8)
    k4 = np.empty(8)
    y = np.empty(8)
    traj[0] = x
    o = 1
    for n in range(1, n_steps + 1):
        _rhs(x, W, kap, R, U, k1)
        for i in range(8):
            y[i] = x[i] + 0.5 * dt * k1[i]
        _rhs(y, W, kap, R, U, k2)
        for i in range(8):
            y[i] = x[i] + 0.5 * dt * k2[i]
        _rhs(y, W, kap, R, U, k3)
        for i in range(8):
            y[i] = x[i] + dt * k3[i]
        _rhs(y, W, kap, R, U, k4)
        for i in range(8):
            x[i] += dt / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i])
        if n % every == 0 and o < n_out:
            traj[o] = x
            o += 1
    return traj


@numba.njit(**_NJIT)
def _rk4_var(x0, W, kap, R, U, T, n_steps):
    """Integrate x and the monodromy matrix Phi over time T; returns (x(T), Phi, traj)."""
    dt = T / n_steps
    x = x0.copy()
    Phi = np.eye(8)
    traj = np.empty((n_steps, 8))
    k = np.empty((4, 8))
    K = np.empty((4, 8, 8))
    y = np.empty(8)
    P = np.empty((8, 8))
    J = np.empty((8, 8))
    for n in range(n_steps):
        traj[n] = x
        for st in range(4):
            c = 0.0 if st == 0 else (0.5 if st < 3 else 1.0)
            for i in range(8):
                y[i] = x[i] + (c * dt * k[st - 1, i] if st > 0 else 0.0)
                for j in range(8):
                    P[i, j] = Phi[i, j] + (c * dt * K[st - 1, i, j] if st > 0 else 0.0)
            _rhs(y, W, kap, R, U, k[st])
            _jac(y, W, kap, R, J)
            K[st] = J @ P
        for i in range(8):
            x[i] += dt / 6.0 * (k[0, i] + 2 * k[1, i] + 2 * k[2, i] + k[3, i])
            for j in range(8):
                Phi[i, j] += dt / 6.0 * (K[0, i, j] + 2 * K[1, i, j] + 2 * K[2, i, j] + K[3, i, j])
    return x, Phi, traj


@numba.njit(**_NJIT)
def _heun_chunk(X, W, kap, R, U, s, dt, xi, every, phase, pvec, Z, o_start):
    """Advance ensemble X (n_ens, 8) by xi.shape[1] stochastic Heun steps (additive noise).

    ``xi`` (n_ens, n_steps, 4) are standard normals; every ``every`` steps (counted from
    ``phase``) the mode amplitudes ``p^H x`` are written to ``Z[:, :, o]``.  Returns next o.
    """
    n_ens, n_steps = xi.shape[0], xi.shape[1]
    n_modes = pvec.shape[0]
    f1 = np.empty(8)
    f2 = np.empty(8)
    y = np.empty(8)
    dW = np.zeros(8)
    sq = np.sqrt(dt)
    o_end = o_start
    for e in range(n_ens):
        x = X[e]
        o = o_start
        for n in range(n_steps):
            for i in range(4):
                dW[2 * i + 1] = kap[i] * s[i] * sq * xi[e, n, i]
            _rhs(x, W, kap, R, U, f1)
            for i in range(8):
                y[i] = x[i] + dt * f1[i] + dW[i]
            _rhs(y, W, kap, R, U, f2)
            for i in range(8):
                x[i] += 0.5 * dt * (f1[i] + f2[i]) + dW[i]
            if (phase + n + 1) % every == 0 and o >= 0 and o < Z.shape[2]:
                for k in range(n_modes):
                    acc = 0.0 + 0.0j
                    for i in range(8):
                        acc += np.conj(pvec[k, i]) * x[i]
                    Z[k, e, o] = acc
                o += 1
            elif (phase + n + 1) % every == 0:
                o += 1
        o_end = o
    return o_end


class FullCMC:
    """Full 8-state single-source CMC with constant input (SPM state order).

    Parameters
    ----------
    G, T, R, U
        Gains (1/s), time constants (s), slope and constant input, as for ``reduce_cmc``.
    """

    def __init__(self, G, T, R, U):
        self.W = coupling_matrix(np.asarray(G, float))
        self.kap = 1.0 / np.asarray(T, float)
        self.R = float(R)
        self.U = np.asarray(U, float)

    def rhs(self, x):
        out = np.empty(8)
        _rhs(np.asarray(x, float), self.W, self.kap, self.R, self.U, out)
        return out

    def simulate(self, x0, duration, *, dt=2e-5, every=1):
        """RK4 trajectory (n, 8) sampled every ``every`` steps."""
        n = int(round(duration / dt))
        return _rk4(np.asarray(x0, float), self.W, self.kap, self.R, self.U, dt, n, every)

    def periodic_orbit(self, x0, period, *, section, n_steps=4000, tol=1e-11, max_iter=30):
        """Newton shooting for a periodic orbit through the section ``x[section] = x0[section]``.

        Returns
        -------
        x0 : ndarray (8,)
        period : float (s)
        traj : ndarray (n_steps, 8), one period, uniform in time
        floquet : ndarray (8,) complex Floquet exponents (1/s), sorted by real part
        """
        x = np.asarray(x0, float).copy()
        T = float(period)
        free = [i for i in range(8) if i != section]
        for _ in range(max_iter):
            xT, Phi, traj = _rk4_var(x, self.W, self.kap, self.R, self.U, T, n_steps)
            F = xT - x
            if np.max(np.abs(F)) < tol * max(1.0, np.max(np.abs(x))):
                break
            A = np.zeros((8, 8))
            A[:, :7] = (Phi - np.eye(8))[:, free]
            A[:, 7] = self.rhs(xT)
            step = np.linalg.solve(A, -F)
            x[free] += step[:7]
            T += step[7]
        else:
            raise RuntimeError("shooting did not converge")
        mult = np.linalg.eigvals(Phi)
        flo = np.log(mult.astype(complex)) / T
        return x, T, traj, flo[np.argsort(-flo.real)]

    def stochastic_amplitudes(self, x_star, s, pvecs, *, n_ens, duration, burn, dt=1e-4,
                              every=10, random_seed=0, chunk=2000):
        """Ensemble stochastic-Heun simulation with input noise std ``s`` on every population.

        Returns the complex mode amplitudes ``p^H (x - x*)`` (n_modes, n_ens, n_samples),
        sampled every ``every`` steps after a burn-in of ``burn`` seconds.
        """
        rng = np.random.default_rng(random_seed)
        n_steps = int(round((duration + burn) / dt))
        n_burn = int(round(burn / dt))
        pv = np.atleast_2d(pvecs).astype(complex)
        n_out = (n_steps - n_burn) // every
        Z = np.zeros((pv.shape[0], n_ens, n_out), complex)
        X = np.tile(np.asarray(x_star, float), (n_ens, 1))
        done = 0
        o = -(n_burn // every)
        while done < n_steps:
            n = min(chunk, n_steps - done)
            xi = rng.standard_normal((n_ens, n, 4))
            o = _heun_chunk(X, self.W, self.kap, self.R, self.U, np.asarray(s, float), dt, xi,
                            every, done, pv, Z, o)
            done += n
        shift = pv @ np.asarray(x_star, float)
        return Z - shift[:, None, None]


def cycle_fundamental(traj, x_star):
    """Complex Fourier fundamental c of each state over exactly one period (traj uniform)."""
    n = traj.shape[0]
    ph = np.exp(-2j * np.pi * np.arange(n) / n)
    return (traj - x_star).T @ ph / n


def windowed_fundamental(t, y, freq_hz):
    """Hann-windowed complex amplitude c of y(t) at freq_hz: y ~ 2 Re(c e^{i 2 pi f t})."""
    w = np.hanning(t.size)
    return np.sum(w * (y - np.sum(w * y) / w.sum()) * np.exp(-2j * np.pi * freq_hz * t)) / w.sum()


# ----------------------------------------------------------------------------- test helpers
G_DEFAULT = np.array([4, 4, 8, 4, 4, 2, 4, 4, 2, 1]) * 200.0
T_DEFAULT = np.array([2.0, 2.0, 16.0, 28.0]) / 1000.0


def example1_gains(a, c=8.2):
    """Spec Example 1 family: G6, G9 x a and G2, G8 x c."""
    G = G_DEFAULT.copy()
    G[[5, 8]] *= a
    G[[1, 7]] *= c
    return G


def tune_growth_rate(target, *, gains, index, mode=0, x0, T=T_DEFAULT, U=np.zeros(4), R=2 / 3):
    """Newton on a common multiplier x of the gains ``index`` so that sigma_mode = target.

    ``gains(x)`` builds G; the derivative comes from the reduction's analytic sensitivities.
    """
    from nmm_inference.adiabatic import reduce_cmc

    x = float(x0)
    for _ in range(40):
        G = gains(x)
        red = reduce_cmc(G, T, R, U, gradients=True)
        s = red.sigma[mode]
        dsig = red.jacobian()["sigma"][mode]
        ds_dx = sum(dsig[i] * G[i] / x for i in index)
        if abs(s - target) < 1e-11:
            return x, red
        x -= (s - target) / ds_dx
    raise RuntimeError("tuning did not converge")


def shoot_state(full, red, state, *, n_steps=3000):
    """Full-model periodic orbit started on the predicted single-mode cycle of ``state``."""
    k = state.active[0]
    md = red.modes[k]
    r = state.amplitudes[0]
    ic = int(np.argmax(np.abs(md.nu)))
    z = r * np.exp(1j * (np.pi / 2 - np.angle(md.eigenvalue * md.nu[ic])))
    x0 = red.operating_state + 2 * np.real(z * md.right_vector)
    x, period, traj, flo = full.periodic_orbit(x0, 1 / state.frequencies_hz[0],
                                               section=2 * ic + 1, n_steps=n_steps)
    zt = md.amplitude(traj, red.operating_state)
    r_full = np.abs(np.mean(zt * np.exp(-2j * np.pi * np.arange(zt.size) / zt.size)))
    env_full = 2 * np.abs(cycle_fundamental(traj, red.operating_state)[0::2])
    return {"r": r_full, "freq": 1 / period, "envelopes": env_full, "floquet": flo}
