"""Fast single-source CMC spectrum with its exact gradient (numba).

This is the forward model used inside samplers.  For SPM's one-source LFP CMC with its 25
free parameters (:data:`FREE_NAMES`, SPM's ``spm_vec`` order), it returns the predicted
auto-spectrum of ``spm_csd_mtf`` -- delays, eigenvalue conditioning, innovations, channel
noise and filter included -- and the Jacobian of the spectrum with respect to the 25
parameters, in one pass.

How it works
------------
* The delayed Jacobian ``X`` solves ``X = J0 + J1 expm(-d X)`` (within one source SPM's
  delay matrix takes only the values 0 and the intrinsic delay ``d``).  Newton's method on
  this equation, with the Frechet derivative of ``expm`` written in the eigenbasis of ``X``,
  splits into 8 column solves of size 8 and converges quadratically from SPM's first-order
  operator ``(I + D*J)^-1 J``.
* Derivatives of ``X`` follow from the implicit function theorem with the same (converged)
  Newton operator, so they are exact and cost 8 small solves with 10 right-hand sides.
* The spectrum is SPM's modal sum ``H(f) = sum_k r_k / (i 2 pi f - g(lambda_k))`` with SPM's
  conditioning ``g``; residues and eigenvalues are differentiated by first-order
  eigenvector perturbation theory (distinct eigenvalues).
* Everything is forward-mode over the 10 neural parameters; the 15 observation and noise
  parameters have closed-form derivatives.

Status codes returned by the kernel (see :func:`spectrum_and_jacobian`):

``0``
    success, every delayed mode decays;
``1``
    success, but the delayed Jacobian has growing modes: the spectrum is SPM's
    conditioned one (SPM removes such modes), which does not describe a system past its
    Hopf point;
``2``
    the delay fixed point failed to converge or produced non-finite numbers: the
    spectrum is ``+inf`` everywhere and the Jacobian zero, so a Gamma/Gaussian likelihood
    evaluates to ``-inf`` and samplers reject the point (NUTS records a divergence).
"""

from __future__ import annotations

import llvmlite.binding as llvm
import numba
import numpy as np
from numba.extending import get_cython_function_address

from ..params import parameter_table

__all__ = ["FREE_NAMES", "N_FREE", "spectrum_and_jacobian", "spectrum", "theta_from_spm"]

#: The 25 free parameters of the one-source LFP CMC, SPM's spm_vec order.
FREE_NAMES = tuple(s.name for s in parameter_table(1) if s.free)
N_FREE = len(FREE_NAMES)
assert N_FREE == 25

_T0 = np.array([2.0, 2.0, 16.0, 28.0]) / 1000.0
_GDEF = np.array([4, 4, 8, 4, 4, 2, 4, 4, 2, 1], dtype=np.float64) * 200.0


# ----------------------------------------------------------------------------------------
# LAPACK's dgeev, called directly: numba's np.linalg.eig needs complex input (zgeev, ~2x
# slower) and allocates a workspace query on every call.
# Bound by symbol name (not as a ctypes object) so that numba can cache the compiled kernel.
llvm.add_symbol("nmm_inference_dgeev",
                get_cython_function_address("scipy.linalg.cython_lapack", "dgeev"))
_dgeev = numba.types.ExternalFunction("nmm_inference_dgeev",
                                      numba.types.void(*([numba.types.voidptr] * 14)))


# Explicit signatures for the large compiled functions: each is compiled exactly once (at
# import, or loaded from numba's cache), whatever its callers pass -- literal flags such as
# ``True`` from other jitted code, Python ints or ``np.int64`` for ``max_iter``.  Without them
# numba compiled up to four copies of the whole kernel (``Literal[bool]`` vs ``bool`` flags,
# ``Literal[int]`` vs ``int64`` iteration limits), which dominated a fresh installation's
# first run.
_F1 = numba.types.float64[::1]
_F2 = numba.types.float64[:, ::1]
_F3 = numba.types.float64[:, :, ::1]
_B = numba.types.boolean
_I = numba.types.int64
_F = numba.types.float64
_SIG_INPUT = [(_F1, _F2, _F3, _B)]
_SIG_NEP = [(_F1, _F2, _F3, _F2, _F, _F1, _B)]
_SIG_MATRIX = [(_F1, _F2, _F3, _F, _F1, _B, _I, _F)]
_SIG_KERNEL_GRID = [(_F1, _F1, _F1, _F2, _B, _I, _F)]


@numba.njit(cache=True, error_model="numpy")
def _eigvals_real(A):
    """Eigenvalues of a real square matrix (dgeev, no eigenvectors)."""
    n = A.shape[0]
    a = np.ascontiguousarray(A.T)
    wr = np.empty(n)
    wi = np.empty(n)
    vl = np.empty(1)
    vr = np.empty(1)
    lw = 8 * n
    work = np.empty(lw)
    jobv = np.array([ord("N")], dtype=np.uint8)
    nn = np.array([n], dtype=np.int32)
    one = np.array([1], dtype=np.int32)
    lwork = np.array([lw], dtype=np.int32)
    info = np.zeros(1, dtype=np.int32)
    _dgeev(jobv.ctypes, jobv.ctypes, nn.ctypes, a.ctypes, nn.ctypes, wr.ctypes, wi.ctypes,
           vl.ctypes, one.ctypes, vr.ctypes, one.ctypes, work.ctypes, lwork.ctypes, info.ctypes)
    return wr, wi, info[0]


@numba.njit(cache=True, error_model="numpy", inline="always")
def _crecip(z):
    """1/z as conj(z)/|z|^2 (no Smith scaling: magnitudes here are far from over/underflow)."""
    a = z.real
    b = z.imag
    m = 1.0 / (a * a + b * b)
    return complex(a * m, -b * m)


@numba.njit(cache=True, error_model="numpy")
def _lu(A, piv):
    """In-place LU with partial pivoting of a small complex matrix; False if singular.

    Pivots are chosen by |Re| + |Im| (as LAPACK's izamax), which avoids a hypot per entry.
    """
    n = A.shape[0]
    for k in range(n):
        m = k
        best = abs(A[k, k].real) + abs(A[k, k].imag)
        for i in range(k + 1, n):
            v = abs(A[i, k].real) + abs(A[i, k].imag)
            if v > best:
                best = v
                m = i
        piv[k] = m
        if best == 0.0 or not np.isfinite(best):
            return False
        if m != k:
            for j in range(n):
                t = A[k, j]
                A[k, j] = A[m, j]
                A[m, j] = t
        inv = _crecip(A[k, k])
        for i in range(k + 1, n):
            A[i, k] *= inv
            f = A[i, k]
            for j in range(k + 1, n):
                A[i, j] -= f * A[k, j]
    return True


@numba.njit(cache=True, error_model="numpy")
def _lu_solve(LU, piv, b):
    """Solve in place with an LU from :func:`_lu`; b is (n,)."""
    n = LU.shape[0]
    for k in range(n):
        m = piv[k]
        if m != k:
            t = b[k]
            b[k] = b[m]
            b[m] = t
    for i in range(n):
        acc = b[i]
        for k in range(i):
            acc -= LU[i, k] * b[k]
        b[i] = acc
    for i in range(n - 1, -1, -1):
        acc = b[i]
        for k in range(i + 1, n):
            acc -= LU[i, k] * b[k]
        b[i] = acc * _crecip(LU[i, i])


@numba.njit(cache=True, error_model="numpy")
def _lu_solve_mat(LU, piv, B):
    """Solve in place with an LU from :func:`_lu` for several right-hand sides B (n, m)."""
    n = LU.shape[0]
    m_ = B.shape[1]
    for k in range(n):
        m = piv[k]
        if m != k:
            for j in range(m_):
                t = B[k, j]
                B[k, j] = B[m, j]
                B[m, j] = t
    dinv = np.empty(n, dtype=np.complex128)
    for i in range(n):
        dinv[i] = _crecip(LU[i, i])
    for j in range(m_):
        for i in range(n):
            acc = B[i, j]
            for k in range(i):
                acc -= LU[i, k] * B[k, j]
            B[i, j] = acc
        for i in range(n - 1, -1, -1):
            acc = B[i, j]
            for k in range(i + 1, n):
                acc -= LU[i, k] * B[k, j]
            B[i, j] = acc * dinv[i]


@numba.njit(cache=True, error_model="numpy")
def _physical(theta):
    kap = np.empty(4)
    for p in range(4):
        kap[p] = np.exp(-theta[p]) / _T0[p]
    G = _GDEF.copy()
    G[6] *= np.exp(theta[4])
    G[1] *= np.exp(theta[5])
    G[2] *= np.exp(theta[6])
    G[3] *= np.exp(theta[7])
    d = 1e-3 * np.exp(theta[8])
    s = 2.0 / 3.0 * np.exp(theta[9]) / 4.0
    W = np.zeros((4, 4))
    W[0, 0] = -G[0]
    W[0, 1] = -G[1]
    W[0, 2] = -G[2]
    W[2, 2] = -G[3]
    W[2, 0] = G[4]
    W[2, 3] = G[5]
    W[1, 1] = -G[6]
    W[1, 0] = G[7]
    W[3, 2] = -G[8]
    W[3, 3] = -G[9]
    # K: delayed voltage-to-current coefficients, J[c_p, v_q] = K[p, q]
    K = np.empty((4, 4))
    for p in range(4):
        for q in range(4):
            K[p, q] = kap[p] * W[p, q] * s
        K[p, p] -= kap[p] * kap[p]
    # dK and dkappa for the 10 neural parameters (T1..4, G7, G2, G3, G4, D, S)
    dK = np.zeros((10, 4, 4))
    dkap = np.zeros((10, 4))
    for p in range(4):
        for q in range(4):
            dK[p, p, q] = -kap[p] * W[p, q] * s
        dK[p, p, p] += 2.0 * kap[p] * kap[p]
        dkap[p, p] = -kap[p]
    dK[4, 1, 1] = kap[1] * W[1, 1] * s
    dK[5, 0, 1] = kap[0] * W[0, 1] * s
    dK[6, 0, 2] = kap[0] * W[0, 2] * s
    dK[7, 2, 2] = kap[2] * W[2, 2] * s
    for p in range(4):
        for q in range(4):
            dK[9, p, q] = kap[p] * W[p, q] * s
    return kap, K, dK, dkap, d


@numba.njit(cache=True, error_model="numpy")
def _full_jacobian(kap, K):
    """8x8 Jacobian in SPM order (v_p at 2p, c_p at 2p+1) and the delay mask."""
    J = np.zeros((8, 8))
    Dm = np.ones((8, 8))
    for p in range(4):
        J[2 * p, 2 * p + 1] = 1.0
        J[2 * p + 1, 2 * p + 1] = -2.0 * kap[p]
        for q in range(4):
            J[2 * p + 1, 2 * q] = K[p, q]
        Dm[2 * p, 2 * p] = 0.0
        Dm[2 * p + 1, 2 * p + 1] = 0.0
        Dm[2 * p, 2 * p + 1] = 0.0
    return J, Dm


@numba.njit(_SIG_INPUT, cache=True, error_model="numpy")
def _input_solution(kap, K, dK, want_grad):
    """z = J^-1 b for b = 512 kappa_ss e_{c_ss}: z_v = K^-1 b_c, z_c = 0, and dz_v."""
    Kc = K.astype(np.complex128)
    piv = np.empty(4, dtype=np.int64)
    ok = _lu(Kc, piv)
    zv = np.zeros(4, dtype=np.complex128)
    dzv = np.zeros((4, 10), dtype=np.complex128)
    if not ok:   # singular K: no operating-point solution (and piv is incomplete)
        return ok, zv, dzv
    zv[0] = 512.0 * kap[0]
    _lu_solve(Kc, piv, zv)
    if not want_grad:
        return ok, zv, dzv
    for pp in range(10):
        for a in range(4):
            acc = 0.0
            for b in range(4):
                acc -= dK[pp, a, b] * zv[b].real
            dzv[a, pp] = acc
    dzv[0, 0] -= 512.0 * kap[0]      # d b_c / d theta_T1
    _lu_solve_mat(Kc, piv, dzv)
    return ok, zv, dzv


@numba.njit(cache=True, error_model="numpy")
def _nep_T(lam, kap, K, d, T, Tp):
    """T(lam) = lam^2 I + 2 lam diag(kappa) - e^{-d lam} K and its derivative."""
    e = np.exp(-d * lam)
    for p in range(4):
        for q in range(4):
            T[p, q] = -e * K[p, q]
            Tp[p, q] = d * e * K[p, q]
        T[p, p] += lam * lam + 2.0 * lam * kap[p]
        Tp[p, p] += 2.0 * lam + 2.0 * kap[p]


@numba.njit(cache=True, error_model="numpy")
def _nep_root(lam, kap, K, d, tol, max_iter, T, Tp, piv):
    """Newton-trace iteration for det T(lam) = 0; returns (lam, converged).

    Stops when the step is below ``tol`` (relative) or when the a-posteriori estimate of
    the remaining error under quadratic convergence, |s_k|^3 / |s_{k-1}|^2, is below 1e-15
    (relative).  ``T``, ``Tp``, ``piv`` are work arrays.
    """
    prev = 0.0   # no previous step yet: the error estimate is not available
    for it in range(max_iter):
        _nep_T(lam, kap, K, d, T, Tp)
        if not _lu(T, piv):
            return lam, True   # exactly singular: lam is a root
        _lu_solve_mat(T, piv, Tp)
        tr = Tp[0, 0] + Tp[1, 1] + Tp[2, 2] + Tp[3, 3]
        if tr == 0:
            return lam, False
        step = _crecip(tr)
        lam = lam - step
        scale = 1.0 + abs(lam)
        s = abs(step)
        if s <= tol * scale or s * s * s <= 1e-15 * scale * prev * prev:
            return lam, True
        prev = s
    return lam, False


@numba.njit(_SIG_NEP, cache=True, error_model="numpy")
def _modes_nep(kap, K, dK, dkap, d, obs_w, want_grad):
    """Eigenpairs of SPM's delayed Jacobian from the 4x4 nonlinear eigenproblem.

    Returns ok, lam (8,), r (8,), rs (3, 8), dlam (10, 8), dr (10, 8).
    """
    lam = np.zeros(8, dtype=np.complex128)
    r = np.zeros(8, dtype=np.complex128)
    rs = np.zeros((3, 8), dtype=np.complex128)
    dlam = np.zeros((10, 8), dtype=np.complex128)
    dr = np.zeros((10, 8), dtype=np.complex128)
    # initial guesses: eigenvalues of SPM's first-order operator (I + D*J)^-1 J
    # (I + d Dm*J) is I + d N with N nilpotent (K in the current rows, voltage columns), so
    # the first-order operator is, in (v, c) block order, [[0, I], [K, -2 kappa - d K]]
    X0 = np.zeros((8, 8))
    for p in range(4):
        X0[p, 4 + p] = 1.0
        X0[4 + p, 4 + p] = -2.0 * kap[p]
        for q in range(4):
            X0[4 + p, q] = K[p, q]
            X0[4 + p, 4 + q] -= d * K[p, q]
    wr, wi, info = _eigvals_real(X0)
    if info != 0:
        return False, lam, r, rs, dlam, dr
    nu = np.zeros((8, 4), dtype=np.complex128)     # voltage profiles, normalised nu[m] = 1
    dnu = np.zeros((10, 8, 4), dtype=np.complex128)
    k = 0
    T = np.empty((4, 4), dtype=np.complex128)
    Tp = np.empty((4, 4), dtype=np.complex128)
    piv4 = np.empty(4, dtype=np.int64)
    B = np.empty((5, 5), dtype=np.complex128)
    piv5 = np.empty(5, dtype=np.int64)
    while k < 8:
        conj_pair = wi[k] > 0.0
        l0 = complex(wr[k], wi[k] if conj_pair else 0.0)
        lk, conv = _nep_root(l0, kap, K, d, 1e-12, 60, T, Tp, piv4)
        if not conv or not np.isfinite(lk.real) or not np.isfinite(lk.imag):
            return False, lam, r, rs, dlam, dr
        if not conj_pair:
            lk = complex(lk.real, 0.0)
        # null vector by inverse iteration at a point 1e-9 (relative) off the root, where T
        # is safely invertible yet T^-1 amplifies the null direction ~1e9-fold
        ls = lk + 1e-9 * abs(lk) + 1e-12
        _nep_T(ls, kap, K, d, T, Tp)
        if not _lu(T, piv4):
            return False, lam, r, rs, dlam, dr
        v = np.array([1.0 + 0.3j, 0.7 - 0.2j, 0.5 + 0.9j, 0.2 + 0.1j])
        for _ in range(2):
            _lu_solve(T, piv4, v)
            mx = 0.0
            for a in range(4):
                mx = max(mx, abs(v[a]))
            v = v / mx
        _nep_T(lk, kap, K, d, T, Tp)
        m = 0
        for a in range(1, 4):
            if abs(v[a]) > abs(v[m]):
                m = a
        v = v / v[m]
        lam[k] = lk
        nu[k] = v
        if want_grad:
            # bordered system [T, T'nu; e_m^T, 0] [dnu; dlam] = [-dT nu; 0]
            Tpv = Tp @ v
            for a in range(4):
                for b in range(4):
                    B[a, b] = T[a, b]
                B[a, 4] = Tpv[a]
                B[4, a] = 0.0
            B[4, m] = 1.0
            B[4, 4] = 0.0
            if not _lu(B, piv5):
                return False, lam, r, rs, dlam, dr
            rhs = np.zeros((5, 10), dtype=np.complex128)
            e = np.exp(-d * lk)
            for pp in range(10):
                for a in range(4):
                    acc = 2.0 * lk * dkap[pp, a] * v[a]
                    for b in range(4):
                        acc -= e * dK[pp, a, b] * v[b]
                        if pp == 8:
                            acc += d * lk * e * K[a, b] * v[b]
                    rhs[a, pp] = -acc
            _lu_solve_mat(B, piv5, rhs)
            for pp in range(10):
                dlam[pp, k] = rhs[4, pp]
                for a in range(4):
                    dnu[pp, k, a] = rhs[a, pp]
        if conj_pair:
            lam[k + 1] = np.conj(lk)
            nu[k + 1] = np.conj(nu[k])
            if want_grad:
                for pp in range(10):
                    dlam[pp, k + 1] = np.conj(dlam[pp, k])
                    for a in range(4):
                        dnu[pp, k + 1, a] = np.conj(dnu[pp, k, a])
            k += 2
        else:
            k += 1
    # distinct roots, else fall back to the matrix iteration
    for i in range(8):
        for j in range(i + 1, 8):
            if abs(lam[i] - lam[j]) <= 1e-9 * (1.0 + abs(lam[i])):
                return False, lam, r, rs, dlam, dr
    # right eigenvectors of the delayed Jacobian: v = (nu, lam nu) interleaved
    V = np.empty((8, 8), dtype=np.complex128)
    for kk in range(8):
        for a in range(4):
            V[2 * a, kk] = nu[kk, a]
            V[2 * a + 1, kk] = lam[kk] * nu[kk, a]
    piv8 = np.empty(8, dtype=np.int64)
    if not _lu(V, piv8):
        return False, lam, r, rs, dlam, dr
    okz, zv, dzv = _input_solution(kap, K, dK, want_grad)
    if not okz:
        return False, lam, r, rs, dlam, dr
    z = np.zeros(8, dtype=np.complex128)
    for a in range(4):
        z[2 * a] = zv[a]
    w = z.copy()
    _lu_solve(V, piv8, w)
    obs_pop = (0, 1, 3)
    beta = lam * w
    for kk in range(8):
        for si in range(3):
            rs[si, kk] = nu[kk, obs_pop[si]] * beta[kk]
            r[kk] += obs_w[si] * rs[si, kk]
    if not want_grad:
        return True, lam, r, rs, dlam, dr
    # dw = V^-1 (dz - dV w)
    rhs8 = np.zeros((8, 10), dtype=np.complex128)
    for pp in range(10):
        for a in range(4):
            acc_v = dzv[a, pp]
            acc_c = 0j
            for kk in range(8):
                acc_v -= dnu[pp, kk, a] * w[kk]
                acc_c -= (dlam[pp, kk] * nu[kk, a] + lam[kk] * dnu[pp, kk, a]) * w[kk]
            rhs8[2 * a, pp] = acc_v
            rhs8[2 * a + 1, pp] = acc_c
    _lu_solve_mat(V, piv8, rhs8)
    for pp in range(10):
        for kk in range(8):
            dbeta = dlam[pp, kk] * w[kk] + lam[kk] * rhs8[kk, pp]
            acc = 0j
            for si in range(3):
                acc += obs_w[si] * (dnu[pp, kk, obs_pop[si]] * beta[kk] + nu[kk, obs_pop[si]] * dbeta)
            dr[pp, kk] = acc
    return True, lam, r, rs, dlam, dr


@numba.njit(cache=True, error_model="numpy")
def _cinv(A):
    return np.linalg.inv(A)


@numba.njit(cache=True, error_model="numpy")
def _newton_block(Jt, Psi, j):
    M = np.empty((8, 8), dtype=np.complex128)
    for i in range(8):
        for k in range(8):
            M[i, k] = Jt[i, k] * Psi[k, j]
        M[i, i] += 1.0
    return M


@numba.njit(_SIG_MATRIX, cache=True, error_model="numpy")
def _modes_matrix(kap, K, dK, d, obs_w, want_grad, max_iter, tol):
    """Eigenpairs of the delayed Jacobian by Newton's method on the 8x8 matrix equation.

    Slower but robust; used when the nonlinear-eigenproblem route fails (repeated roots,
    non-convergence).  Returns the same as :func:`_modes_nep` plus the iteration status.
    """
    lam = np.zeros(8, dtype=np.complex128)
    r = np.zeros(8, dtype=np.complex128)
    rs = np.zeros((3, 8), dtype=np.complex128)
    dlam = np.zeros((10, 8), dtype=np.complex128)
    dr = np.zeros((10, 8), dtype=np.complex128)
    J, Dm = _full_jacobian(kap, K)
    J0 = J * (1.0 - Dm)
    J1 = J * Dm
    X = np.linalg.solve(np.eye(8) + d * Dm * J, J)
    scale = np.max(np.abs(J))
    converged = False
    V = np.zeros((8, 8), dtype=np.complex128)
    Vi = np.zeros((8, 8), dtype=np.complex128)
    ee = np.zeros(8, dtype=np.complex128)
    Jt = np.zeros((8, 8), dtype=np.complex128)
    Psi = np.zeros((8, 8), dtype=np.complex128)
    for it in range(max_iter):
        if not np.all(np.isfinite(X)):
            break
        lam0, V0 = np.linalg.eig(X.astype(np.complex128))
        lam = np.ascontiguousarray(lam0)
        V = np.ascontiguousarray(V0)
        Vi = np.ascontiguousarray(_cinv(V))
        for k in range(8):
            ee[k] = np.exp(-d * lam[k])
        E = np.ascontiguousarray(((V * ee) @ Vi).real)
        F = X - J0 - J1 @ E
        err = np.max(np.abs(F))
        if not np.isfinite(err):
            break
        Jt = Vi @ J1.astype(np.complex128) @ V
        for i in range(8):
            for j in range(8):
                dl = lam[j] - lam[i]
                if abs(dl) <= 1e-12 * (1.0 + abs(lam[i])):
                    Psi[i, j] = d * ee[i]
                else:
                    Psi[i, j] = (ee[i] - ee[j]) / dl
        if err < tol * scale:
            converged = True
            break
        Rt = Vi @ F.astype(np.complex128) @ V
        Zt = np.empty((8, 8), dtype=np.complex128)
        for j in range(8):
            Mj = _newton_block(Jt, Psi, j)
            Zt[:, j] = np.linalg.solve(Mj, np.ascontiguousarray(Rt[:, j]))
        X = X - (V @ Zt @ Vi).real
    if not converged:
        return False, lam, r, rs, dlam, dr
    okz, zv, dzv = _input_solution(kap, K, dK, True)
    if not okz:
        return False, lam, r, rs, dlam, dr
    z = np.zeros(8)
    for a in range(4):
        z[2 * a] = zv[a].real
    bd = X @ z
    beta = Vi @ bd.astype(np.complex128)
    obs_idx = (0, 2, 6)
    for kk in range(8):
        for si in range(3):
            rs[si, kk] = V[obs_idx[si], kk] * beta[kk]
            r[kk] += obs_w[si] * rs[si, kk]
    if not want_grad:
        return True, lam, r, rs, dlam, dr
    # implicit derivatives of X through the converged Newton operator
    E = np.ascontiguousarray(((V * ee) @ Vi).real)
    J1XE = J1 @ X @ E
    Rt_all = np.empty((10, 8, 8), dtype=np.complex128)
    for pp in range(10):
        dJp = np.zeros((8, 8))
        for p in range(4):
            for q in range(4):
                dJp[2 * p + 1, 2 * q] = dK[pp, p, q]
            if pp == p:
                dJp[2 * p + 1, 2 * p + 1] = 2.0 * kap[p]
        Rp = dJp * (1.0 - Dm) + (dJp * Dm) @ E
        if pp == 8:
            Rp = Rp - d * J1XE
        Rt_all[pp] = Vi @ Rp.astype(np.complex128) @ V
    Et = np.empty((10, 8, 8), dtype=np.complex128)
    for j in range(8):
        Mj = _newton_block(Jt, Psi, j)
        rhs = np.empty((8, 10), dtype=np.complex128)
        for pp in range(10):
            rhs[:, pp] = Rt_all[pp, :, j]
        sol = np.linalg.solve(Mj, rhs)
        for pp in range(10):
            Et[pp, :, j] = sol[:, pp]
    wz = Vi @ z.astype(np.complex128)
    for pp in range(10):
        Ep = Et[pp]
        dXz = (V @ (Ep @ wz)).real
        dz = np.zeros(8)
        for a in range(4):
            dz[2 * a] = dzv[a, pp].real
        dbd = dXz + X @ dz
        vdb = Vi @ dbd.astype(np.complex128)
        C = np.zeros((8, 8), dtype=np.complex128)
        for i in range(8):
            for k in range(8):
                if i != k:
                    C[i, k] = Ep[i, k] / (lam[k] - lam[i])
        dbeta = vdb - C @ beta
        for si in range(3):
            dalpha = np.ascontiguousarray(V[obs_idx[si], :]) @ C
            for k in range(8):
                dr[pp, k] += obs_w[si] * (dalpha[k] * beta[k] + V[obs_idx[si], k] * dbeta[k])
        for k in range(8):
            dlam[pp, k] = Ep[k, k]
    return True, lam, r, rs, dlam, dr


@numba.njit(cache=True, error_model="numpy")
def _grid(hz):
    """Parameter-free quantities of a frequency grid: log f and SPM's DCT basis (nf, 4)."""
    nf = hz.shape[0]
    lnf = np.empty(nf)
    Xd = np.empty((nf, 4))
    for f in range(nf):
        lnf[f] = np.log(hz[f])
        for m in range(4):
            Xd[f, m] = np.sqrt(2.0 / nf) * np.cos(np.pi * (2 * f + 1) * (m + 1) / (2 * nf))
    return lnf, Xd


def _kernel(theta, hz, want_grad, max_iter, tol):
    """:func:`_kernel_grid` on the grid of ``hz`` (Python-level convenience; jitted callers
    call ``_grid`` and ``_kernel_grid`` themselves so that no further copy of the kernel is
    compiled)."""
    lnf, Xd = _grid(hz)
    return _kernel_grid(theta, hz, lnf, Xd, bool(want_grad), int(max_iter), float(tol))


@numba.njit(_SIG_KERNEL_GRID, cache=True, error_model="numpy")
def _kernel_grid(theta, hz, lnf, Xd, want_grad, max_iter, tol):
    nf = hz.shape[0]
    y = np.empty(nf)
    dy = np.zeros((nf, 25))
    kap, K, dK, dkap, d = _physical(theta)
    # far outside the prior (e.g. an unbounded optimiser step) rates under- or overflow: no
    # spectrum there (status 2) rather than iterations on a degenerate system
    degenerate = not (d > 0.0 and np.isfinite(d))
    for p in range(4):
        if not (kap[p] > 0.0 and np.isfinite(kap[p])):
            degenerate = True
    for p in range(4):
        for q in range(4):
            if not np.isfinite(K[p, q]):
                degenerate = True
    if degenerate:
        for f in range(nf):
            y[f] = np.inf
        return y, dy, 2, np.nan
    L = theta[10]
    J1w = theta[11]
    J7w = theta[12]
    obs_w = np.array([L * J1w, L, L * J7w])
    ok = False
    if max_iter > 1:
        ok, lam, r, rs, dlam, dr = _modes_nep(kap, K, dK, dkap, d, obs_w, want_grad)
    if not ok:
        ok, lam, r, rs, dlam, dr = _modes_matrix(kap, K, dK, d, obs_w, want_grad, max_iter, tol)
    maxre = -np.inf
    for k in range(8):
        maxre = max(maxre, lam[k].real)
    if not ok:
        for f in range(nf):
            y[f] = np.inf
        return y, dy, 2, maxre
    # ---------------- conditioned eigenvalues (spm_dcm_mtf)
    hzmax = 0.0
    for f in range(nf):
        hzmax = max(hzmax, hz[f])
    g = np.empty(8, dtype=np.complex128)
    gfac = np.empty(8)   # d Re g / d Re lambda
    for k in range(8):
        re = lam[k].real
        if hzmax > 1.0:
            ex = np.exp(min(re, 700.0))
            g[k] = complex(re - ex, lam[k].imag)
            gfac[k] = 1.0 - ex
        else:
            if re < -1.0 / 32.0:
                g[k] = lam[k]
                gfac[k] = 1.0
            else:
                g[k] = complex(-1.0 / 32.0, lam[k].imag)
                gfac[k] = 0.0
    # ---------------- noise spectra
    a1 = theta[13]
    a2 = np.exp(theta[14])
    b1 = theta[15]
    b2 = np.exp(theta[16])
    c1 = theta[17]
    c2 = np.exp(theta[18])
    f1 = theta[23]
    f2 = theta[24]
    Gu = np.empty(nf)
    Gn = np.empty(nf)
    Gs = np.empty(nf)
    Fl = np.empty(nf)
    for f in range(nf):
        acc = 0.0
        for m in range(4):
            acc += theta[19 + m] * Xd[f, m]
        Gu[f] = np.exp(a1 - a2 * lnf[f] + acc)
        Gn[f] = np.exp(b1 - 2.0 - b2 * lnf[f])
        Gs[f] = np.exp(c1 - 2.0 - c2 * lnf[f])
        Fl[f] = np.exp(f1 + f2 * (f + 1) / nf)
    # ---------------- spectrum
    inv = np.empty((nf, 8), dtype=np.complex128)
    H = np.empty(nf, dtype=np.complex128)
    Hs = np.zeros((nf, 3), dtype=np.complex128)
    for f in range(nf):
        w = complex(0.0, 2.0 * np.pi * hz[f])
        acc = 0j
        for k in range(8):
            q = _crecip(w - g[k])
            if not np.isfinite(q.real) or not np.isfinite(q.imag):
                q = 0j
            inv[f, k] = q
            acc += r[k] * q
            for si in range(3):
                Hs[f, si] += rs[si, k] * q
        H[f] = acc
        P2 = H[f].real ** 2 + H[f].imag ** 2
        y[f] = (P2 * Gu[f] + Gs[f] + Gn[f]) * Fl[f]
    status = 1 if maxre > 0.0 else 0
    for f in range(nf):
        if not np.isfinite(y[f]):   # e.g. a defective (repeated) eigenvalue
            for f2_ in range(nf):
                y[f2_] = np.inf
            return y, dy, 2, maxre
    if not want_grad:
        return y, dy, status, maxre
    # d y_f / d theta_p = 2 Gu F Re(conj(H_f) dH_fp), dH_fp = sum_k q_fk (dr_pk + r_k dg_pk q_fk):
    # a real (nf x 32) @ (32 x 10) product
    Dmat = np.empty((32, 10))
    for pp in range(10):
        for k in range(8):
            dl = dlam[pp, k]
            dgk = complex(gfac[k] * dl.real, dl.imag)
            c = r[k] * dgk
            Dmat[k, pp] = dr[pp, k].real
            Dmat[8 + k, pp] = dr[pp, k].imag
            Dmat[16 + k, pp] = c.real
            Dmat[24 + k, pp] = c.imag
    Umat = np.empty((nf, 32))
    for f in range(nf):
        Hc = np.conj(H[f])
        for k in range(8):
            u = Hc * inv[f, k]
            u2 = u * inv[f, k]
            Umat[f, k] = u.real
            Umat[f, 8 + k] = -u.imag
            Umat[f, 16 + k] = u2.real
            Umat[f, 24 + k] = -u2.imag
    dyn = Umat @ Dmat
    for f in range(nf):
        sc = 2.0 * Gu[f] * Fl[f]
        Hc = np.conj(H[f])
        for pp in range(10):
            dy[f, pp] = sc * dyn[f, pp]
        P2 = H[f].real ** 2 + H[f].imag ** 2
        Hobs = J1w * Hs[f, 0] + Hs[f, 1] + J7w * Hs[f, 2]
        dy[f, 10] = sc * (Hc * Hobs).real
        dy[f, 11] = sc * L * (Hc * Hs[f, 0]).real
        dy[f, 12] = sc * L * (Hc * Hs[f, 2]).real
        nu = P2 * Gu[f] * Fl[f]
        dy[f, 13] = nu
        dy[f, 14] = -nu * a2 * lnf[f]
        dy[f, 15] = Gn[f] * Fl[f]
        dy[f, 16] = -Gn[f] * Fl[f] * b2 * lnf[f]
        dy[f, 17] = Gs[f] * Fl[f]
        dy[f, 18] = -Gs[f] * Fl[f] * c2 * lnf[f]
        for m in range(4):
            dy[f, 19 + m] = nu * Xd[f, m]
        dy[f, 23] = y[f]
        dy[f, 24] = y[f] * (f + 1) / nf
    return y, dy, status, maxre


def _check_theta(theta, hz):
    from ..errors import ParameterError
    from .spectra import check_freqs

    theta = np.ascontiguousarray(theta, dtype=np.float64)
    if theta.shape != (N_FREE,):
        raise ParameterError(f"theta must have shape ({N_FREE},) (see FREE_NAMES), got {theta.shape}")
    if not np.all(np.isfinite(theta)):
        bad = [FREE_NAMES[i] for i in np.flatnonzero(~np.isfinite(theta))]
        raise ParameterError(f"non-finite parameter values for {bad}")
    return theta, np.ascontiguousarray(check_freqs(hz))


def spectrum_and_jacobian(theta, hz, *, max_iter=50, tol=1e-13):
    """Predicted LFP auto-spectrum and its Jacobian for the one-source CMC.

    Parameters
    ----------
    theta : array-like, shape (25,)
        Free parameters on SPM's scale, in the order of :data:`FREE_NAMES`.
    hz : array-like, shape (n_freqs,)
        Frequencies in Hz (positive).
    max_iter : int
        Newton iterations allowed for the delay fixed point.
    tol : float
        Convergence tolerance of the delay fixed point, relative to max |J|.

    Returns
    -------
    y : ndarray, shape (n_freqs,)
        Spectrum (``spm_csd_mtf``); ``+inf`` when ``status == 2``.
    jac : ndarray, shape (n_freqs, 25)
        d y / d theta.
    status : int
        0, 1 or 2; see the module docstring.
    max_growth_rate : float
        Largest real part of the delayed Jacobian's eigenvalues (1/s).
    """
    theta, hz = _check_theta(theta, hz)
    try:
        return _kernel(theta, hz, True, max_iter, tol)
    except np.linalg.LinAlgError:  # a singular Jacobian: no spectrum at this point
        return np.full(hz.size, np.inf), np.zeros((hz.size, N_FREE)), 2, np.nan


def spectrum(theta, hz, *, max_iter=50, tol=1e-13):
    """Predicted LFP auto-spectrum for the one-source CMC, without its Jacobian.

    The same computation as :func:`spectrum_and_jacobian` with the forward-mode derivatives
    switched off (cheaper; use it where no gradient is needed).

    Parameters
    ----------
    theta : array-like, shape (25,)
        Free parameters on SPM's scale, in the order of :data:`FREE_NAMES`.
    hz : array-like, shape (n_freqs,)
        Frequencies in Hz (positive).
    max_iter : int
        Newton iterations allowed for the delay fixed point.
    tol : float
        Convergence tolerance of the delay fixed point, relative to max |J|.

    Returns
    -------
    y : ndarray, shape (n_freqs,)
        Spectrum (``spm_csd_mtf``); ``+inf`` when ``status == 2``.
    status : int
        0, 1 or 2; see the module docstring.
    max_growth_rate : float
        Largest real part of the delayed Jacobian's eigenvalues (1/s); NaN when the
        parameters are degenerate or the Jacobian is singular.

    Raises
    ------
    ParameterError
        If ``theta`` does not have shape (25,) or has non-finite values, or ``hz`` is not a
        non-empty 1-D array of finite, positive frequencies.
    """
    theta, hz = _check_theta(theta, hz)
    try:
        y, _, status, maxre = _kernel(theta, hz, False, max_iter, tol)
    except np.linalg.LinAlgError:  # a singular Jacobian: no spectrum at this point
        return np.full(hz.size, np.inf), 2, np.nan
    return y, status, maxre


def theta_from_spm(P):
    """The 25 free parameters (in :data:`FREE_NAMES` order) of a one-source SPM dict.

    Parameters
    ----------
    P : mapping
        SPM fields to SPM-scale values for one source, as accepted by
        :func:`~nmm_inference.params.canonical_spm`; missing fields take SPM's prior mean.

    Returns
    -------
    ndarray, shape (25,)
        The free parameters on SPM's scale, in :data:`FREE_NAMES` order: the ``theta``
        argument of :func:`spectrum` and :func:`spectrum_and_jacobian`.

    Raises
    ------
    ParameterError
        As :func:`~nmm_inference.params.spm_to_named` (unknown fields, wrong sizes,
        non-finite values).
    """
    from ..params import spm_to_named

    named = spm_to_named(P, 1)
    return np.array([named[n] for n in FREE_NAMES])
