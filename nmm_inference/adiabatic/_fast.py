"""Compiled (numba) value-only path of :func:`._core.core_reduction`.

The same formulas as ``_core`` written as loops over 4 x 4 complex systems, for the forward
model inside samplers and scans.  ``tests/adiabatic/test_core.py`` checks it against the numpy
implementation to machine precision; derivatives always come from the numpy path.
"""

from __future__ import annotations

import numba
import numpy as np

_NJIT = dict(cache=True, error_model="numpy", nogil=True)

# (target, source, sign) of G1..G10
_GT = np.array([0, 0, 0, 2, 2, 2, 1, 1, 3, 3], dtype=np.int64)
_GS = np.array([0, 1, 2, 2, 0, 3, 1, 0, 2, 3], dtype=np.int64)
_GSIGN = np.array([-1.0, -1.0, -1.0, -1.0, 1.0, 1.0, -1.0, 1.0, -1.0, -1.0])


@numba.njit(**_NJIT)
def _coupling(G):
    W = np.zeros((4, 4))
    for i in range(10):
        W[_GT[i], _GS[i]] += _GSIGN[i] * G[i]
    return W


@numba.njit(**_NJIT)
def _op_point(W, T, R, U, tol, max_iter):
    v = np.zeros(4)
    nz = False
    for i in range(4):
        if U[i] != 0.0:
            nz = True
    if not nz:
        return v, True
    TW = np.empty((4, 4))
    for i in range(4):
        for j in range(4):
            TW[i, j] = T[i] * W[i, j]
    J = np.eye(4) - TW * (0.25 * R)
    TU = T * U
    v = np.linalg.solve(J, TU)
    th = np.tanh(0.5 * R * v)
    F = v - TW @ (0.5 * th) - TU
    nF = np.sqrt(np.sum(F * F))
    for _ in range(max_iter):
        for j in range(4):
            d = 0.25 * R * (1.0 - th[j] * th[j])
            for i in range(4):
                J[i, j] = (1.0 if i == j else 0.0) - TW[i, j] * d
        step = np.linalg.solve(J, F)
        lam = 1.0
        while True:
            vn = v - lam * step
            thn = np.tanh(0.5 * R * vn)
            Fn = vn - TW @ (0.5 * thn) - TU
            nFn = np.sqrt(np.sum(Fn * Fn))
            if nFn < nF or lam < 1e-3:
                break
            lam *= 0.5
        v = vn
        th = thn
        F = Fn
        nF = nFn
        if np.max(np.abs(lam * step)) < tol * max(1.0, np.max(np.abs(v))):
            return v, True
    return v, False


@numba.njit(**_NJIT)
def _sig_derivs(v, R):
    S = np.empty((5, 4))
    for i in range(4):
        s = 0.5 * (1.0 + np.tanh(0.5 * R * v[i]))
        q = s * (1.0 - s)
        S[0, i] = s - 0.5
        S[1, i] = R * q
        S[2, i] = R ** 2 * q * (1.0 - 2.0 * s)
        S[3, i] = R ** 3 * q * (1.0 - 6.0 * q)
        S[4, i] = R ** 4 * q * (1.0 - 2.0 * s) * (1.0 - 12.0 * q)
    return S


@numba.njit(**_NJIT)
def _tmat(s, kap, KM):
    Tm = np.empty((4, 4), dtype=np.complex128)
    for i in range(4):
        for j in range(4):
            Tm[i, j] = -KM[i, j]
        Tm[i, i] += (s + kap[i]) ** 2
    return Tm


@numba.njit(**_NJIT)
def core_fast(G, T, R, U):
    """Value-only reduction; returns (ok, v, S, lam, nu, mu, g, eta3, real_eigs)."""
    W = _coupling(G)
    kap = 1.0 / T
    v, ok = _op_point(W, T, R, U, 1e-13, 60)
    S = _sig_derivs(v, R)
    KW = np.empty((4, 4))
    KM = np.empty((4, 4))
    for i in range(4):
        for j in range(4):
            KW[i, j] = kap[i] * W[i, j]
            KM[i, j] = KW[i, j] * S[1, j]
    A = np.zeros((8, 8), dtype=np.complex128)
    for i in range(4):
        A[i, 4 + i] = 1.0
        A[4 + i, 4 + i] = -2.0 * kap[i]
        for j in range(4):
            A[4 + i, j] = KM[i, j]
        A[4 + i, i] -= kap[i] ** 2
    ev, evec = np.linalg.eig(A)
    m = 0
    nr = 0
    for i in range(8):
        sc = 1e-9 * (np.abs(ev[i]) + 1.0)
        if ev[i].imag > sc:
            m += 1
        elif abs(ev[i].imag) <= sc:
            nr += 1
    lam = np.empty(m, dtype=np.complex128)
    nu = np.empty((m, 4), dtype=np.complex128)
    reals = np.empty(nr)
    k = 0
    r = 0
    for i in range(8):
        sc = 1e-9 * (np.abs(ev[i]) + 1.0)
        if ev[i].imag > sc:
            lam[k] = ev[i]
            for j in range(4):
                nu[k, j] = evec[j, i]
            k += 1
        elif abs(ev[i].imag) <= sc:
            reals[r] = ev[i].real
            r += 1
    order = np.argsort(-lam.real)
    lam = lam[order]
    nu = nu[order]
    reals = -np.sort(-reals)
    mu = np.empty((m, 4), dtype=np.complex128)
    for k in range(m):
        am = 0
        best = 0.0
        for j in range(4):
            if np.abs(nu[k, j]) > best:
                best = np.abs(nu[k, j])
                am = j
        piv = nu[k, am]
        for j in range(4):
            nu[k, j] = nu[k, j] / piv
        # Newton polish on the bordered system
        for it in range(2):
            Tm = _tmat(lam[k], kap, KM)
            B = np.zeros((5, 5), dtype=np.complex128)
            rhs = np.zeros(5, dtype=np.complex128)
            for i in range(4):
                for j in range(4):
                    B[i, j] = Tm[i, j]
                    rhs[i] -= Tm[i, j] * nu[k, j]
                B[i, 4] = 2.0 * (lam[k] + kap[i]) * nu[k, i]
            B[4, am] = 1.0
            if it == 0:
                upd = np.linalg.solve(B, rhs)
                for j in range(4):
                    nu[k, j] += upd[j]
                lam[k] += upd[4]
            else:
                BL = np.zeros((5, 5), dtype=np.complex128)
                for i in range(4):
                    for j in range(4):
                        BL[i, j] = np.conj(Tm[j, i])
                    BL[i, 4] = nu[k, i]
                    BL[4, i] = np.conj(B[i, 4])
                e = np.zeros(5, dtype=np.complex128)
                e[4] = 1.0
                sol = np.linalg.solve(BL, e)
                for j in range(4):
                    mu[k, j] = sol[j]
    # slaved quadratic voltages
    eta = np.empty((m, m, 4), dtype=np.complex128)     # coefficient of z_k z_j
    etab = np.empty((m, m, 4), dtype=np.complex128)    # coefficient of z_k conj(z_j)
    y = np.empty(4, dtype=np.complex128)
    for k in range(m):
        for j in range(m):
            for w in range(2):
                if w == 0:
                    s = lam[k] + lam[j]
                    for i in range(4):
                        y[i] = S[2, i] * nu[k, i] * nu[j, i]
                else:
                    s = lam[k] + np.conj(lam[j])
                    for i in range(4):
                        y[i] = S[2, i] * nu[k, i] * np.conj(nu[j, i])
                rhs = KW.astype(np.complex128) @ y
                sol = np.linalg.solve(_tmat(s, kap, KM), rhs)
                for i in range(4):
                    if w == 0:
                        eta[k, j, i] = sol[i]
                    else:
                        etab[k, j, i] = sol[i]
    g = np.empty((m, m), dtype=np.complex128)
    eta3 = np.empty((m, m, 4), dtype=np.complex128)
    br = np.empty(4, dtype=np.complex128)
    for k in range(m):
        for j in range(m):
            half = 0.5 if k == j else 1.0
            for i in range(4):
                br[i] = half * (S[3, i] * nu[k, i] * np.abs(nu[j, i]) ** 2
                                + S[2, i] * nu[k, i] * etab[j, j, i]
                                + S[2, i] * nu[j, i] * etab[k, j, i]
                                + S[2, i] * np.conj(nu[j, i]) * eta[k, j, i])
            KWbr = KW.astype(np.complex128) @ br
            acc = 0.0 + 0.0j
            for i in range(4):
                acc += np.conj(mu[k, i]) * KWbr[i]
            g[k, j] = acc
            Lam = lam[k] + 2.0 * lam[j].real
            tiny = 1e-9 * np.abs(lam[k])
            if np.abs(Lam - lam[k]) < tiny:
                Lam = lam[k] + tiny
            rhs = np.empty(4, dtype=np.complex128)
            for i in range(4):
                rhs[i] = KWbr[i] - acc * (lam[k] + Lam + 2.0 * kap[i]) * nu[k, i]
            sol = np.linalg.solve(_tmat(Lam, kap, KM), rhs)
            for i in range(4):
                eta3[k, j, i] = sol[i]
    return ok, v, S, lam, nu, mu, g, eta3, reals


@numba.njit(**_NJIT)
def _subset_solve(sigma, a, mask, m):
    """Intensities of the active set ``mask`` (bits); returns (I (m,), exists)."""
    idx = np.empty(m, dtype=np.int64)
    n = 0
    for k in range(m):
        if (mask >> k) & 1:
            idx[n] = k
            n += 1
    A = np.empty((n, n))
    rhs = np.empty(n)
    for i in range(n):
        rhs[i] = -sigma[idx[i]]
        for j in range(n):
            A[i, j] = a[idx[i], idx[j]]
    I = np.zeros(m)
    if abs(np.linalg.det(A)) < 1e-300:
        return I, False
    sol = np.linalg.solve(A, rhs)
    ok = True
    for i in range(n):
        if not (sol[i] > 0.0 and np.isfinite(sol[i])):
            ok = False
        I[idx[i]] = sol[i]
    return I, ok


@numba.njit(**_NJIT)
def candidates_fast(sigma, a):
    """Bit mask of modes that can be active: growing modes, closed under transverse growth."""
    m = sigma.size
    cand = 0
    for k in range(m):
        if sigma[k] > 0:
            cand |= 1 << k
    changed = True
    while changed:
        changed = False
        sub = cand
        while sub > 0:
            I, ok = _subset_solve(sigma, a, sub, m)
            if ok:
                for j in range(m):
                    if not (cand >> j) & 1:
                        t = sigma[j]
                        for k in range(m):
                            t += a[j, k] * I[k]
                        if t > 0:
                            cand |= 1 << j
                            changed = True
            sub = (sub - 1) & cand
    return cand


@numba.njit(**_NJIT)
def states_fast(sigma, a, cand):
    """All existing stationary states built from the candidate mask.

    Returns (masks (n,), I (n, m), radial (n, m) complex, transverse (n, m), stable (n,)) for the
    existing non-rest states, in increasing mask order.
    """
    m = sigma.size
    n_max = 1 << m
    masks = np.empty(n_max, dtype=np.int64)
    Is = np.zeros((n_max, m))
    rad = np.zeros((n_max, m), dtype=np.complex128)
    trans = np.zeros((n_max, m))
    stable = np.zeros(n_max, dtype=np.bool_)
    cnt = 0
    for mask in range(1, n_max):
        if mask & ~cand:
            continue
        I, ok = _subset_solve(sigma, a, mask, m)
        if not ok:
            continue
        idx = np.empty(m, dtype=np.int64)
        n = 0
        for k in range(m):
            if (mask >> k) & 1:
                idx[n] = k
                n += 1
        J = np.empty((n, n), dtype=np.complex128)
        for i in range(n):
            for j in range(n):
                J[i, j] = 2.0 * I[idx[i]] * a[idx[i], idx[j]]
        ev = np.linalg.eigvals(J)
        st = True
        for i in range(n):
            rad[cnt, i] = ev[i]
            if ev[i].real >= 0:
                st = False
        for j in range(m):
            if (mask >> j) & 1:
                continue
            t = sigma[j]
            for k in range(m):
                t += a[j, k] * I[k]
            trans[cnt, j] = t
            if t >= 0:
                st = False
        masks[cnt] = mask
        Is[cnt] = I
        stable[cnt] = st
        cnt += 1
    return masks[:cnt], Is[:cnt], rad[:cnt], trans[:cnt], stable[:cnt]


@numba.njit(**_NJIT)
def not_copositive_fast(B, cand, tol):
    """First principal submatrix (bit mask over cand) violating strict copositivity, or 0."""
    m = B.shape[0]
    sub = cand
    best = 0
    # iterate over all non-empty subsets of cand, smallest first
    for size in range(1, m + 1):
        sub = cand
        while sub > 0:
            cnt = 0
            for k in range(m):
                if (sub >> k) & 1:
                    cnt += 1
            if cnt == size:
                idx = np.empty(cnt, dtype=np.int64)
                n = 0
                for k in range(m):
                    if (sub >> k) & 1:
                        idx[n] = k
                        n += 1
                S = np.empty((cnt, cnt))
                scale = 1.0
                for i in range(cnt):
                    for j in range(cnt):
                        S[i, j] = B[idx[i], idx[j]]
                        scale = max(scale, abs(S[i, j]))
                w, V = np.linalg.eigh(S)
                for e in range(cnt):
                    if w[e] <= tol * scale:
                        pos = True
                        neg = True
                        for i in range(cnt):
                            if V[i, e] <= 0:
                                pos = False
                            if V[i, e] >= 0:
                                neg = False
                        if pos or neg:
                            return sub
            sub = (sub - 1) & cand
    return best
