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

import numpy as np
import numba

from ..params import parameter_table

__all__ = ["FREE_NAMES", "N_FREE", "spectrum_and_jacobian", "spectrum", "theta_from_spm"]

#: The 25 free parameters of the one-source LFP CMC, SPM's spm_vec order.
FREE_NAMES = tuple(s.name for s in parameter_table(1) if s.free)
N_FREE = len(FREE_NAMES)
assert N_FREE == 25

_T0 = np.array([2.0, 2.0, 16.0, 28.0]) / 1000.0
_GDEF = np.array([4, 4, 8, 4, 4, 2, 4, 4, 2, 1], dtype=np.float64) * 200.0


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


@numba.njit(cache=True, error_model="numpy")
def _kernel(theta, hz, want_grad, max_iter, tol):
    nf = hz.shape[0]
    y = np.empty(nf)
    dy = np.zeros((nf, 25))
    # ---------------- physical parameters
    kap = np.empty(4)
    for p in range(4):
        kap[p] = np.exp(-theta[p]) / _T0[p]
    G = _GDEF.copy()
    G[6] *= np.exp(theta[4])
    G[1] *= np.exp(theta[5])
    G[2] *= np.exp(theta[6])
    G[3] *= np.exp(theta[7])
    d = 1e-3 * np.exp(theta[8])
    R = 2.0 / 3.0 * np.exp(theta[9])
    s = R / 4.0
    L = theta[10]
    J1w = theta[11]
    J7w = theta[12]
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
    # ---------------- Jacobian (SPM order: v_p at 2p, c_p at 2p+1) and its derivatives
    J = np.zeros((8, 8))
    for p in range(4):
        J[2 * p, 2 * p + 1] = 1.0
        J[2 * p + 1, 2 * p + 1] = -2.0 * kap[p]
        for q in range(4):
            J[2 * p + 1, 2 * q] = kap[p] * W[p, q] * s
        J[2 * p + 1, 2 * p] -= kap[p] * kap[p]
    nneu = 10
    dJ = np.zeros((nneu, 8, 8))
    if want_grad:
        for p in range(4):
            r = 2 * p + 1
            for q in range(4):
                dJ[p, r, 2 * q] = -kap[p] * W[p, q] * s
            dJ[p, r, 2 * p] += 2.0 * kap[p] * kap[p]
            dJ[p, r, r] = 2.0 * kap[p]
        dJ[4, 3, 2] = kap[1] * W[1, 1] * s   # G7 (sp self)
        dJ[5, 1, 2] = kap[0] * W[0, 1] * s   # G2 (sp->ss)
        dJ[6, 1, 4] = kap[0] * W[0, 2] * s   # G3 (ii->ss)
        dJ[7, 5, 4] = kap[2] * W[2, 2] * s   # G4 (ii self)
        for p in range(4):
            for q in range(4):
                dJ[9, 2 * p + 1, 2 * q] = kap[p] * W[p, q] * s
    # delay mask: delayed entries are off-diagonal and not the dv/dt = c identities
    Dm = np.ones((8, 8))
    for i in range(8):
        Dm[i, i] = 0.0
    for p in range(4):
        Dm[2 * p, 2 * p + 1] = 0.0
    J0 = J * (1.0 - Dm)
    J1 = J * Dm
    # ---------------- Newton on X = J0 + J1 expm(-d X)
    A0 = np.eye(8) + d * Dm * J
    X = np.linalg.solve(A0, J)
    scale = 0.0
    for i in range(8):
        for j in range(8):
            scale = max(scale, abs(J[i, j]))
    converged = False
    lam = np.zeros(8, dtype=np.complex128)
    V = np.zeros((8, 8), dtype=np.complex128)
    Vi = np.zeros((8, 8), dtype=np.complex128)
    ee = np.zeros(8, dtype=np.complex128)
    Jt = np.zeros((8, 8), dtype=np.complex128)
    Psi = np.zeros((8, 8), dtype=np.complex128)
    for it in range(max_iter):
        lam, V0 = np.linalg.eig(X.astype(np.complex128))
        V = np.ascontiguousarray(V0)
        Vi = np.ascontiguousarray(_cinv(V))
        for k in range(8):
            ee[k] = np.exp(-d * lam[k])
        E = np.ascontiguousarray(((V * ee) @ Vi).real)
        F = X - J0 - J1 @ np.ascontiguousarray(E)
        err = 0.0
        for i in range(8):
            for j in range(8):
                err = max(err, abs(F[i, j]))
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
    maxre = -np.inf
    for k in range(8):
        maxre = max(maxre, lam[k].real)
    if not converged:
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
    # ---------------- input and residues
    b = np.zeros(8)
    b[1] = 512.0 * kap[0]
    z = np.linalg.solve(J, b)
    bd = X @ z
    beta = Vi @ bd.astype(np.complex128)
    obs_idx = np.array([0, 2, 6])
    wobs = np.array([L * J1w, L, L * J7w])
    r = np.zeros(8, dtype=np.complex128)
    rs = np.zeros((3, 8), dtype=np.complex128)
    for si in range(3):
        for k in range(8):
            rs[si, k] = V[obs_idx[si], k] * beta[k]
            r[k] += wobs[si] * rs[si, k]
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
    Xd = np.empty((nf, 4))
    lnf = np.empty(nf)
    for f in range(nf):
        lnf[f] = np.log(hz[f])
        acc = 0.0
        for m in range(4):
            Xd[f, m] = np.sqrt(2.0 / nf) * np.cos(np.pi * (2 * f + 1) * (m + 1) / (2 * nf))
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
            q = 1.0 / (w - g[k])
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
    # ---------------- implicit derivatives of X: solve (I + J1 L) dX = RHS in eigenbasis
    E = np.ascontiguousarray(((V * ee) @ Vi).real)
    J1XE = J1 @ X @ E
    Rt_all = np.empty((nneu, 8, 8), dtype=np.complex128)
    for pp in range(nneu):
        dJp = dJ[pp]
        Rp = dJp * (1.0 - Dm) + (dJp * Dm) @ E
        if pp == 8:
            Rp = Rp - d * J1XE
        Rt_all[pp] = Vi @ Rp.astype(np.complex128) @ V
    Et = np.empty((nneu, 8, 8), dtype=np.complex128)
    for j in range(8):
        Mj = _newton_block(Jt, Psi, j)
        rhs = np.empty((8, nneu), dtype=np.complex128)
        for pp in range(nneu):
            rhs[:, pp] = Rt_all[pp, :, j]
        sol = np.linalg.solve(Mj, rhs)
        for pp in range(nneu):
            Et[pp, :, j] = sol[:, pp]
    # derivative of bd = X J^-1 b:  dX z + X J^-1 (db - dJ z)
    wz = Vi @ z.astype(np.complex128)
    rhsJ = np.zeros((8, nneu))
    for pp in range(nneu):
        rhsJ[:, pp] = -(dJ[pp] @ z)
    rhsJ[:, 0] -= b          # d b / d theta_T1 = -b
    solJ = np.linalg.solve(J, rhsJ)
    Xsol = X @ solJ
    for pp in range(nneu):
        Ep = Et[pp]
        dXz = (V @ (Ep @ wz)).real
        dbd = dXz + Xsol[:, pp]
        vdb = Vi @ dbd.astype(np.complex128)
        # eigen perturbation
        C = np.zeros((8, 8), dtype=np.complex128)
        for i in range(8):
            for k in range(8):
                if i != k:
                    dl = lam[k] - lam[i]
                    C[i, k] = Ep[i, k] / dl
        dbeta = vdb - C @ beta
        dr = np.zeros(8, dtype=np.complex128)
        for si in range(3):
            dalpha = np.ascontiguousarray(V[obs_idx[si], :]) @ C
            for k in range(8):
                dr[k] += wobs[si] * (dalpha[k] * beta[k] + V[obs_idx[si], k] * dbeta[k])
        dg = np.empty(8, dtype=np.complex128)
        for k in range(8):
            dlk = Ep[k, k]
            dg[k] = complex(gfac[k] * dlk.real, dlk.imag)
        for f in range(nf):
            dH = 0j
            for k in range(8):
                q = inv[f, k]
                dH += (dr[k] + r[k] * dg[k] * q) * q
            dy[f, pp] = 2.0 * (H[f].real * dH.real + H[f].imag * dH.imag) * Gu[f] * Fl[f]
    for f in range(nf):
        P2 = H[f].real ** 2 + H[f].imag ** 2
        Hobs = J1w * Hs[f, 0] + Hs[f, 1] + J7w * Hs[f, 2]
        dy[f, 10] = 2.0 * (H[f].real * Hobs.real + H[f].imag * Hobs.imag) * Gu[f] * Fl[f]
        dy[f, 11] = 2.0 * L * (H[f].real * Hs[f, 0].real + H[f].imag * Hs[f, 0].imag) * Gu[f] * Fl[f]
        dy[f, 12] = 2.0 * L * (H[f].real * Hs[f, 2].real + H[f].imag * Hs[f, 2].imag) * Gu[f] * Fl[f]
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
    return _kernel(theta, hz, True, max_iter, tol)


def spectrum(theta, hz, *, max_iter=50, tol=1e-13):
    """Predicted spectrum only; see :func:`spectrum_and_jacobian`."""
    theta, hz = _check_theta(theta, hz)
    y, _, status, maxre = _kernel(theta, hz, False, max_iter, tol)
    return y, status, maxre


def theta_from_spm(P):
    """The 25 free parameters (in :data:`FREE_NAMES` order) of a one-source SPM dict."""
    from ..params import spm_to_named

    named = spm_to_named(P, 1)
    return np.array([named[n] for n in FREE_NAMES])
