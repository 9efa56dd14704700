"""Switching rates between semi-stable states from the amplitude SDE (first-passage times).

Two modes competing winner-take-all (``shared/docs/adiabatic.md`` §4.2) have two stable
single-mode states.  In action variables ``I_k = r_k^2`` the reduced amplitude SDE is::

    dI_k = [2 I_k (sigma_k + sum_j a_kj I_j) + 2 D_k] dt + 2 sqrt(D_k I_k) dW_k ,

whose generator, in divergence form, is
``L u = sum_k d/dI_k (2 D_k I_k du/dI_k) + 2 I_k (sigma_k + sum_j a_kj I_j) du/dI_k``.  The mean
first-passage time ``T(I)`` from a point to a target set solves ``L T = -1`` with ``T = 0`` on
the target.  There is no detailed balance in general (``a_kj / D_k`` is not symmetric), so no
closed-form (Kramers) answer exists; this module solves the backward Kolmogorov equation on a
grid instead, which is exact for the reduced SDE up to discretisation.

Scaled coordinates.  With ``J_k = I_k / I_k*`` (``I_k* = -sigma_k / a_kk`` the intensity of the
single-mode state k) the equation depends on six numbers only::

    drift_k = 2 J_k (sigma_k (1 - J_k) + c_kj J_j),   c_kj = a_kj I_j*,
    diffusion_k = 2 eps_k J_k,                        eps_k = D_k / I_k*,

so a fixed grid in J serves every parameter value, and the solution is a smooth function of
the parameters.  The drift-diffusion fluxes are discretised with exponential fitting
(Scharfetter-Gummel / Il'in-Allen-Southwell), which is monotone and exact for locally constant
coefficients at any cell Peclet number; its derivatives with respect to the six numbers are
analytic, and the gradient of the passage time uses one adjoint solve with the same LU factors.

States and switches use the same hysteresis rule as the state labels of the simulations:
the circuit is *in* state k (its core) when ``J_k - J_j > core`` (default 0.5), and a switch
from state 0 to state 1 is complete on entering the core of state 1.  A dwell in state 0 starts
where the previous switch into it completed: the mean dwell time is the passage time from the
entry point of the core (where the segment from the saddle to the state's fixed point crosses
the core boundary, the typical end of a switch) to the other core.  Starting at the fixed point
instead would overestimate dwell times in shallow wells, where many dwells end by a quick
recrossing (by ~25 % in the bistable example).  The rate is the inverse mean dwell time.

Pure numerics: numpy and scipy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import splu

from ..errors import ParameterError, ReductionError

__all__ = ["PassageGrid", "two_mode_passage_times", "scaled_coefficients"]


def _bernoulli(x):
    """``B(x) = x / (e^x - 1)`` and ``B'(x)``, vectorised and stable."""
    x = np.asarray(x, dtype=float)
    B = np.empty_like(x)
    dB = np.empty_like(x)
    small = np.abs(x) < 1e-3
    xs = x[small]
    B[small] = 1.0 - xs / 2.0 + xs ** 2 / 12.0 - xs ** 4 / 720.0
    dB[small] = -0.5 + xs / 6.0 - xs ** 3 / 180.0
    big = x > 50.0
    xb = x[big]
    B[big] = xb * np.exp(-xb)
    dB[big] = (1.0 - xb) * np.exp(-xb)
    neg = x < -50.0
    B[neg] = -x[neg]
    dB[neg] = -1.0
    mid = ~(small | big | neg)
    xm = x[mid]
    e = np.expm1(xm)
    B[mid] = xm / e
    dB[mid] = (e - xm * (e + 1.0)) / (e * e)
    return B, dB


def scaled_coefficients(sigma, a, D):
    """The six numbers that define the two-mode passage problem, and their Jacobian.

    Parameters
    ----------
    sigma : array-like, shape (2,)
        Growth rates of the two modes (1/s, both > 0 for two single-mode states).
    a : array-like, shape (2, 2)
        Real cubic coefficients (``a_kk < 0``).
    D : array-like, shape (2,)
        Diffusion coefficients (1/s, > 0).

    Returns
    -------
    theta : ndarray, shape (6,)
        ``(sigma_0, sigma_1, c_01, c_10, eps_0, eps_1)``.
    jac : ndarray, shape (6, 8)
        Derivatives with respect to ``(sigma_0, sigma_1, a_00, a_01, a_10, a_11, D_0, D_1)``.
    """
    s = np.asarray(sigma, dtype=float)
    A = np.asarray(a, dtype=float)
    d = np.asarray(D, dtype=float)
    s0, s1 = s
    a00, a01, a10, a11 = A.ravel()
    I0, I1 = -s0 / a00, -s1 / a11
    th = np.array([s0, s1, a01 * I1, a10 * I0, d[0] / I0, d[1] / I1])
    J = np.zeros((6, 8))
    J[0, 0] = 1.0
    J[1, 1] = 1.0
    # c01 = -a01 s1 / a11
    J[2, 1] = -a01 / a11
    J[2, 3] = -s1 / a11
    J[2, 5] = a01 * s1 / a11 ** 2
    # c10 = -a10 s0 / a00
    J[3, 0] = -a10 / a00
    J[3, 4] = -s0 / a00
    J[3, 2] = a10 * s0 / a00 ** 2
    # eps0 = -D0 a00 / s0
    J[4, 6] = -a00 / s0
    J[4, 2] = -d[0] / s0
    J[4, 0] = d[0] * a00 / s0 ** 2
    J[5, 7] = -a11 / s1
    J[5, 5] = -d[1] / s1
    J[5, 1] = d[1] * a11 / s1 ** 2
    return th, J


@dataclass(frozen=True)
class PassageGrid:
    """Grid settings of the backward Kolmogorov solve.

    Attributes
    ----------
    n_cells : int
        Cells per scaled intensity axis.
    j_max : float
        Extent of each axis in units of the state intensity (``J = I / I*``); must cover the
        fluctuations about both states (about ``1 + 6 sqrt(eps / sigma)``).
    core : float
        Hysteresis threshold: state k's core is ``J_k - J_j > core``.
    """

    n_cells: int = 40
    j_max: float = 3.0
    core: float = 0.5

    def __post_init__(self):
        if int(self.n_cells) < 8:
            raise ParameterError(f"n_cells must be >= 8, got {self.n_cells}")
        if not (self.j_max > 1.0 + self.core):
            raise ParameterError(f"j_max must exceed 1 + core = {1 + self.core}, got {self.j_max}")
        if not (0.0 < self.core < 1.0):
            raise ParameterError(f"core must be in (0, 1), got {self.core}")

    @staticmethod
    def for_parameters(sigma, a, D, *, n_cells=40, core=0.5, n_sd=6.0):
        """A grid wide enough for the fluctuations at these parameters."""
        th, _ = scaled_coefficients(sigma, a, D)
        sd = np.sqrt(th[4:] / np.asarray(th[:2]))
        return PassageGrid(n_cells=n_cells, j_max=float(np.clip(1.0 + n_sd * sd.max(), 2.0, 8.0)),
                           core=core)


def _faces(grid):
    """Interior faces: (P, Q, direction, J_face_along, J_other_at_centre)."""
    n = int(grid.n_cells)
    h = grid.j_max / n
    centres = (np.arange(n) + 0.5) * h
    idx = np.arange(n * n).reshape(n, n)        # idx[i0, i1]
    out = []
    # direction 0: between (i, j) and (i + 1, j)
    P = idx[:-1, :].ravel()
    Q = idx[1:, :].ravel()
    Jf = np.repeat((np.arange(1, n) * h), n)
    Jo = np.tile(centres, n - 1)
    out.append((P, Q, 0, Jf, Jo))
    P = idx[:, :-1].ravel()
    Q = idx[:, 1:].ravel()
    Jf = np.tile(np.arange(1, n) * h, n)
    Jo = np.repeat(centres, n - 1)
    out.append((P, Q, 1, Jf, Jo))
    return out, centres, h


def _solve_passage(theta, grid, src, want_grad=True):
    """Mean passage time from state ``src``'s fixed point to the other state's core."""
    s = theta[:2]
    c = np.array([theta[2], theta[3]])      # c_01 (drift of 0 by J1), c_10
    eps = theta[4:]
    faces, centres, h = _faces(grid)
    n = int(grid.n_cells)
    J0 = np.repeat(centres, n)
    J1 = np.tile(centres, n)
    qdiff = J0 - J1 if src == 1 else J1 - J0
    target = qdiff > grid.core                  # core of the destination state
    free = ~target
    rows, cols, vals = [], [], []
    store = []
    for P, Q, k, Jf, Jo in faces:
        d = 2.0 * eps[k] * Jf
        g = 2.0 * Jf * (s[k] * (1.0 - Jf) + c[k] * Jo)
        pe = g * h / d
        Bm, dBm = _bernoulli(-pe)    # for w+ (P -> Q)
        Bp, dBp = _bernoulli(pe)     # for w- (Q -> P)
        wp = d * Bm / h ** 2
        wm = d * Bp / h ** 2
        rows += [P, P, Q, Q]
        cols += [Q, P, P, Q]
        vals += [wp, -wp, wm, -wm]
        store.append((P, Q, k, Jf, Jo, d, pe, Bm, dBm, Bp, dBp))
    N = n * n
    A = sparse.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(N, N)).tocsc()
    fi = np.flatnonzero(free)
    Af = A[fi][:, fi].tocsc()
    lu = splu(Af)
    Tf = lu.solve(-np.ones(fi.size))
    T = np.zeros(N)
    T[fi] = Tf
    # start: where a switch into the source state becomes complete (see _entry_point)
    entry, d_entry = _entry_point(theta, grid, src)
    cells, wts, dw = _bilinear(entry, centres, h, n)
    if not np.all(free[cells][wts > 0]):
        raise ReductionError("the entry point of the source state lies in the target core: "
                             "grid core too wide")
    t_start = float(np.dot(wts, T[cells]))
    if not want_grad:
        return t_start, None
    e = np.zeros(N)
    np.add.at(e, cells, wts)
    lam_f = lu.solve(e[fi], trans="T")
    lam = np.zeros(N)
    lam[fi] = lam_f
    grad = np.zeros(6)
    for P, Q, k, Jf, Jo, d, pe, Bm, dBm, Bp, dBp in store:
        dT = T[Q] - T[P]
        # d(w+)/d(g) = -h B'(-pe) / h^2 ; d(w+)/d(d) = (B(-pe) + pe B'(-pe)) / h^2
        wp_g = -dBm / h
        wp_d = (Bm + pe * dBm) / h ** 2
        wm_g = dBp / h
        wm_d = (Bp - pe * dBp) / h ** 2
        # lambda^T (dA) T for this face = lam_P dw+ (T_Q - T_P) + lam_Q dw- (T_P - T_Q)
        cg = lam[P] * wp_g * dT - lam[Q] * wm_g * dT
        cd = lam[P] * wp_d * dT - lam[Q] * wm_d * dT
        gs = 2.0 * Jf * (1.0 - Jf)
        gc = 2.0 * Jf * Jo
        ge = 2.0 * Jf
        grad[k] += np.sum(cg * gs)
        grad[2 + k] += np.sum(cg * gc)
        grad[4 + k] += np.sum(cd * ge)
    # spatial gradient of the interpolated T at the (parameter-dependent) entry point
    gradT = np.array([np.dot(dw[0], T[cells]), np.dot(dw[1], T[cells])])
    return t_start, -grad + gradT @ d_entry


def _entry_point(theta, grid, src):
    """Entry into the source state's core on the way from the saddle, and d/dtheta (2, 6).

    A switch into state ``src`` completes where the segment from the mixed (saddle) state to
    ``src``'s fixed point crosses the core boundary ``J_src - J_other = core``; dwell times are
    measured from there (a start at the fixed point would miss the quick recrossings that end
    many dwells in shallow wells).  Without an interior saddle the fixed point is used.
    """
    s0, s1, c01, c10 = theta[:4]
    M = np.array([[s0, -c01], [-c10, s1]])
    fp = np.array([1.0, 0.0]) if src == 0 else np.array([0.0, 1.0])
    sgn = 1.0 if src == 0 else -1.0
    try:
        Js = np.linalg.solve(M, np.array([s0, s1]))
    except np.linalg.LinAlgError:
        Js = None
    if Js is None or np.any(Js <= 0) or sgn * (Js[0] - Js[1]) >= grid.core:
        return fp, np.zeros((2, 6))
    Mi = np.linalg.inv(M)
    dJs = np.zeros((2, 6))
    dJs[:, 0] = Mi @ np.array([1.0 - Js[0], 0.0])
    dJs[:, 1] = Mi @ np.array([0.0, 1.0 - Js[1]])
    dJs[:, 2] = Mi @ np.array([Js[1], 0.0])
    dJs[:, 3] = Mi @ np.array([0.0, Js[0]])
    ds = sgn * (Js[0] - Js[1])
    t = (grid.core - ds) / (1.0 - ds)
    d_ds = sgn * (dJs[0] - dJs[1])
    dt = d_ds * (grid.core - 1.0) / (1.0 - ds) ** 2
    entry = (1.0 - t) * Js + t * fp
    d_entry = (1.0 - t) * dJs + np.outer(fp - Js, dt)
    return entry, d_entry


def _bilinear(point, centres, h, n):
    """Cells, weights and weight derivatives (2, 4) of bilinear interpolation at ``point``."""
    f = np.clip(np.asarray(point) / h - 0.5, 0.0, n - 1.000001)
    i = np.floor(f).astype(int)
    i = np.minimum(i, n - 2)
    fr = f - i
    cells = np.array([i[0] * n + i[1], (i[0] + 1) * n + i[1], i[0] * n + i[1] + 1,
                      (i[0] + 1) * n + i[1] + 1])
    wts = np.array([(1 - fr[0]) * (1 - fr[1]), fr[0] * (1 - fr[1]), (1 - fr[0]) * fr[1],
                    fr[0] * fr[1]])
    dw = np.array([[-(1 - fr[1]), (1 - fr[1]), -fr[1], fr[1]],
                   [-(1 - fr[0]), -fr[0], (1 - fr[0]), fr[0]]]) / h
    return cells, wts, dw





def two_mode_passage_times(sigma, a, D, *, grid=None, gradient=False):
    """Mean dwell times of two winner-take-all states of the reduced amplitude SDE.

    Parameters
    ----------
    sigma : array-like, shape (2,)
        Growth rates of the two competing modes (1/s; both > 0).
    a : array-like, shape (2, 2)
        Real cubic coefficients of the two modes (``a_kk < 0``; ``a_kj < 0`` across).
    D : array-like, shape (2,)
        Diffusion coefficients of the two mode amplitudes (1/s).
    grid : PassageGrid, optional
        Grid settings (default: :meth:`PassageGrid.for_parameters`).
    gradient : bool, optional
        Also return the derivatives of the two times with respect to
        ``(sigma_0, sigma_1, a_00, a_01, a_10, a_11, D_0, D_1)``.

    Returns
    -------
    times : ndarray, shape (2,)
        ``T_01`` (in state 0 until the core of state 1 is reached) and ``T_10`` (s).
    jac : ndarray, shape (2, 8)
        Only with ``gradient=True``.

    Raises
    ------
    ReductionError
        If the two single-mode states do not both exist (``sigma_k > 0``, ``a_kk < 0``).
    ParameterError
        For ill-shaped or non-finite input.
    """
    s = np.asarray(sigma, dtype=float)
    A = np.asarray(a, dtype=float)
    d = np.asarray(D, dtype=float)
    if s.shape != (2,) or A.shape != (2, 2) or d.shape != (2,):
        raise ParameterError(f"need sigma (2,), a (2, 2), D (2,); got {s.shape}, {A.shape}, "
                             f"{d.shape}")
    if not (np.all(np.isfinite(s)) and np.all(np.isfinite(A)) and np.all(np.isfinite(d))):
        raise ParameterError("non-finite sigma, a or D")
    if np.any(s <= 0) or np.any(np.diag(A) >= 0) or np.any(d <= 0):
        raise ReductionError(f"two single-mode states need sigma > 0, a_kk < 0 and D > 0; got "
                             f"sigma = {s.tolist()}, diag(a) = {np.diag(A).tolist()}, "
                             f"D = {d.tolist()}")
    if grid is None:
        grid = PassageGrid.for_parameters(s, A, d)
    th, J = scaled_coefficients(s, A, d)
    t01, g01 = _solve_passage(th, grid, 0, gradient)
    t10, g10 = _solve_passage(th, grid, 1, gradient)
    times = np.array([t01, t10])
    if not gradient:
        return times
    return times, np.vstack([g01 @ J, g10 @ J])
