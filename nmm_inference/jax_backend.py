"""JAX backend: the one-source CMC spectrum in JAX, and batched NUTS over many windows.

For time-resolved analyses (sliding windows over a seizure, say) every window is its own
spectral inversion.  This backend runs them all at once: each window gets its own NUTS chain
(numpyro's functional HMC kernel, with its own step-size and mass-matrix adaptation), and
``jax.vmap`` runs the chains side by side on whatever device JAX uses -- the CPU here, a GPU
where there is one.

The spectrum is an independent implementation of SPM's ``spm_csd_mtf`` for one LFP source
(the 25 free parameters of :data:`nmm_inference.cmc.kernel.FREE_NAMES`):

* the delayed Jacobian solves ``X = J0 + J1 expm(-d X)`` by Newton's method with the dense
  64 x 64 Jacobian of the residual (``jax.jacfwd`` through ``expm``), differentiated
  implicitly with :func:`jax.lax.custom_root`;
* the transfer function is the resolvent ``c (i 2 pi f I - X)^-1 Q b`` at every frequency.

It does **not** apply SPM's eigenvalue conditioning (JAX has no differentiable
non-symmetric eigensolver, and none on GPUs): for a stable delayed system the two agree to
within ``exp(max Re lambda)`` relative (below 1e-9 when the least damped mode decays faster
than 20/s, as everywhere in SPM's prior); near or past a Hopf point they differ, and the
numba kernel (:mod:`nmm_inference.cmc.kernel`) is the reference.

Importing this module enables JAX's 64-bit mode (``jax_enable_x64``): the CMC Jacobian has
entries up to ~1e6 and single precision cannot resolve its spectrum.
"""

from __future__ import annotations

import numpy as np

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
from jax.scipy.linalg import expm  # noqa: E402
from jax.scipy.special import gammaln  # noqa: E402

from .cmc.kernel import FREE_NAMES  # noqa: E402
from .errors import DataError  # noqa: E402
from .params import parameter_table  # noqa: E402

__all__ = ["cmc_spectrum_jax", "fit_windows_jax", "prior_moments"]

_T0 = jnp.array([2.0, 2.0, 16.0, 28.0]) / 1000.0
_GDEF = jnp.array([4, 4, 8, 4, 4, 2, 4, 4, 2, 1], dtype=jnp.float64) * 200.0
_N_NEWTON = 6   # quadratic convergence: 4 steps reach 1e-15 on all golden cases

# delay mask in SPM order (v_p at 2p, c_p at 2p+1): off-diagonal, not the dv/dt = c identities
_DM = np.ones((8, 8))
np.fill_diagonal(_DM, 0.0)
for _p in range(4):
    _DM[2 * _p, 2 * _p + 1] = 0.0
_DM = jnp.asarray(_DM)


def prior_moments():
    """SPM prior means and standard deviations of the 25 free parameters."""
    specs = [s for s in parameter_table(1) if s.free]
    return (np.array([s.prior_mean for s in specs]), np.sqrt([s.prior_var for s in specs]))


def _jacobian(theta):
    kap = jnp.exp(-theta[0:4]) / _T0
    G = _GDEF.at[6].multiply(jnp.exp(theta[4])).at[1].multiply(jnp.exp(theta[5]))
    G = G.at[2].multiply(jnp.exp(theta[6])).at[3].multiply(jnp.exp(theta[7]))
    s = 2.0 / 3.0 * jnp.exp(theta[9]) / 4.0
    W = jnp.zeros((4, 4))
    W = W.at[0, 0].set(-G[0]).at[0, 1].set(-G[1]).at[0, 2].set(-G[2]).at[2, 2].set(-G[3])
    W = W.at[2, 0].set(G[4]).at[2, 3].set(G[5]).at[1, 1].set(-G[6]).at[1, 0].set(G[7])
    W = W.at[3, 2].set(-G[8]).at[3, 3].set(-G[9])
    K = kap[:, None] * W * s - jnp.diag(kap**2)
    J = jnp.zeros((8, 8))
    v = jnp.arange(4) * 2
    J = J.at[v, v + 1].set(1.0)
    J = J.at[v + 1, v + 1].set(-2.0 * kap)
    J = J.at[(v + 1)[:, None], v[None, :]].set(K)
    return J, kap


# similarity scaling of the current states: the fixed-point equation is invariant under a
# diagonal similarity (the masks are), and balanced entries keep expm's scaling-and-squaring
# short
_SC = jnp.where(jnp.arange(8) % 2 == 1, 1000.0, 1.0)


def _delayed_jacobian(J, d):
    Js = J * _SC[None, :] / _SC[:, None]
    J0 = Js * (1.0 - _DM)
    J1 = Js * _DM

    def resid(x):
        X = x.reshape(8, 8)
        return (X - J0 - J1 @ expm(-d * X)).ravel()

    def newton(f, x0):
        def step(_, x):
            A = jax.jacfwd(f)(x)
            return x - jnp.linalg.solve(A, f(x))
        return jax.lax.fori_loop(0, _N_NEWTON, step, x0)

    def tangent_solve(g, y):
        A = jax.jacfwd(g)(y)
        return jnp.linalg.solve(A, y)

    x0 = jnp.linalg.solve(jnp.eye(8) + d * _DM * Js, Js).ravel()
    x = jax.lax.custom_root(resid, x0, newton, tangent_solve)
    return x.reshape(8, 8) * _SC[:, None] / _SC[None, :]


def cmc_spectrum_jax(theta, hz):
    """Predicted LFP auto-spectrum of the one-source CMC (JAX; differentiable).

    Parameters
    ----------
    theta : array, shape (25,)
        Free parameters on SPM's scale, :data:`nmm_inference.cmc.kernel.FREE_NAMES` order.
    hz : array, shape (n_freqs,)
        Frequencies in Hz.

    Returns
    -------
    jax.Array, shape (n_freqs,)
        ``spm_csd_mtf``'s prediction without eigenvalue conditioning (see the module notes).
    """
    theta = jnp.asarray(theta, dtype=jnp.float64)
    hz = jnp.asarray(hz, dtype=jnp.float64)
    nf = hz.shape[0]
    J, kap = _jacobian(theta)
    d = 1e-3 * jnp.exp(theta[8])
    X = _delayed_jacobian(J, d)
    b = jnp.zeros(8).at[1].set(512.0 * kap[0])
    bd = X @ jnp.linalg.solve(J, b)
    L, J1w, J7w = theta[10], theta[11], theta[12]
    c = jnp.zeros(8).at[0].set(L * J1w).at[2].set(L).at[6].set(L * J7w)
    w = 2j * jnp.pi * hz
    A = w[:, None, None] * jnp.eye(8)[None] - X[None].astype(jnp.complex128)
    H = jnp.linalg.solve(A, jnp.broadcast_to(bd.astype(jnp.complex128), (nf, 8))[..., None])[..., 0] @ c
    lnf = jnp.log(hz)
    k = jnp.arange(nf)
    Xd = jnp.sqrt(2.0 / nf) * jnp.cos(jnp.pi * (2 * k[:, None] + 1) * jnp.arange(1, 5)[None, :] / (2 * nf))
    Gu = jnp.exp(theta[13] - jnp.exp(theta[14]) * lnf + Xd @ theta[19:23])
    Gn = jnp.exp(theta[15] - 2.0 - jnp.exp(theta[16]) * lnf)
    Gs = jnp.exp(theta[17] - 2.0 - jnp.exp(theta[18]) * lnf)
    Fl = jnp.exp(theta[23] + theta[24] * (k + 1) / nf)
    return (jnp.abs(H) ** 2 * Gu + Gs + Gn) * Fl


def _log_density(z, y, dof, hz, mu, sd):
    theta = mu + sd * z
    S = cmc_spectrum_jax(theta, hz)
    a = dof / 2.0
    ll = jnp.sum(a * jnp.log(a / S) - gammaln(a) + (a - 1.0) * jnp.log(y) - a * y / S)
    ll = jnp.where(jnp.all(jnp.isfinite(S)) & jnp.all(S > 0), ll, -jnp.inf)
    return ll - 0.5 * jnp.sum(z**2)


def fit_windows_jax(hz, Y, dof, *, num_warmup=500, num_samples=500, random_seed=0,
                    target_accept_prob=0.8, max_tree_depth=8, init=None):
    """Independent spectral posteriors of many windows, sampled side by side with NUTS.

    Parameters
    ----------
    hz : array, shape (n_freqs,)
        Frequencies (Hz).
    Y : array, shape (n_windows, n_freqs)
        Observed auto-spectra, one row per window (on SPM's scale: see
        :mod:`nmm_inference.inference` for scaling).
    dof : array, shape (n_freqs,) or (n_windows, n_freqs)
        Degrees of freedom of every bin (Gamma/Whittle likelihood).
    num_warmup, num_samples : int
        NUTS warm-up (adaptation) and kept iterations per window.
    random_seed : int
    target_accept_prob : float
    max_tree_depth : int
    init : array, shape (n_windows, 25), optional
        Starting points on SPM's scale (default: the prior mean).

    Returns
    -------
    dict
        ``theta``: (n_windows, num_samples, 25) draws on SPM's scale; ``diverging``:
        (n_windows, num_samples) bool; ``accept_prob``: (n_windows, num_samples);
        ``names``: the parameter names.
    """
    from numpyro.infer.hmc import hmc

    hz = jnp.asarray(hz, dtype=jnp.float64)
    Y = jnp.asarray(Y, dtype=jnp.float64)
    if Y.ndim != 2 or Y.shape[1] != hz.shape[0]:
        raise DataError(f"Y must have shape (n_windows, {hz.shape[0]}), got {Y.shape}")
    if not bool(jnp.all(jnp.isfinite(Y))) or not bool(jnp.all(Y > 0)):
        raise DataError("spectra must be finite and positive")
    dof = jnp.broadcast_to(jnp.asarray(dof, dtype=jnp.float64), Y.shape)
    if not bool(jnp.all(dof > 0)):
        raise DataError("degrees of freedom must be positive")
    mu, sd = (jnp.asarray(a) for a in prior_moments())
    n_win = Y.shape[0]
    z0 = jnp.zeros((n_win, mu.shape[0])) if init is None else (jnp.asarray(init) - mu) / sd

    def potential_gen(y, dof_w):
        return lambda z: -_log_density(z, y, dof_w, hz, mu, sd)

    init_kernel, sample_kernel = hmc(potential_fn_gen=potential_gen, algo="NUTS")
    keys = jax.random.split(jax.random.PRNGKey(random_seed), n_win)

    def init_one(z, key, y, dof_w):
        return init_kernel(z, num_warmup, target_accept_prob=target_accept_prob,
                           max_tree_depth=max_tree_depth, model_args=(y, dof_w), rng_key=key)

    state = jax.vmap(init_one)(z0, keys, Y, dof)

    def one_step(st, y, dof_w):
        return sample_kernel(st, model_args=(y, dof_w))

    vstep = jax.vmap(one_step)

    @jax.jit
    def run(state):
        def body(st, _):
            st = vstep(st, Y, dof)
            return st, (st.z, st.diverging, st.mean_accept_prob)
        return jax.lax.scan(body, state, None, length=num_warmup + num_samples)

    _, (zs, div, acc) = run(state)
    zs = np.asarray(zs[num_warmup:])           # (num_samples, n_win, 25)
    theta = np.asarray(mu) + np.asarray(sd) * np.transpose(zs, (1, 0, 2))
    return {"theta": theta, "diverging": np.asarray(div[num_warmup:]).T,
            "accept_prob": np.asarray(acc[num_warmup:]).T, "names": FREE_NAMES}
