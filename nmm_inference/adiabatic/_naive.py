"""Independent 8 x 8 formulation of the cubic coefficients (reference and benchmark baseline).

Uses the full Jacobian A (8 x 8), right/left eigenvectors from ``scipy.linalg.eig`` and the
multilinear forms B and C of ``shared/docs/adiabatic.md`` §3.2 directly:

    g_kk = 1/2 p^H [C(q,q,qb) + B(qb, (2 lam - A)^-1 B(q,q)) + 2 B(q, (2 sigma - A)^-1 B(q,qb))]

and the analogous cross terms.  It shares no code with ``_core`` beyond the sigmoid derivatives
and W, and is slower (8 x 8 solves, no structure); tests compare the two to rounding.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from ._core import coupling_matrix, operating_point, sigmoid_derivatives

__all__ = ["naive_reduction"]


def naive_reduction(G, T, R, U):
    """Eigenvalues (Im > 0, decreasing real part), nu and g by the 8 x 8 formulas.

    Parameters
    ----------
    G, T, R, U
        Validated physical parameters.

    Returns
    -------
    lam : ndarray (m,)
    nu : ndarray (m, 4)
        Voltage parts of q, largest-modulus entry scaled to 1.
    g : ndarray (m, m)
    """
    W = coupling_matrix(G)
    kap = 1.0 / T
    v = operating_point(G, T, R, U)
    S = sigmoid_derivatives(v, R)
    K = np.diag(kap)
    A = np.zeros((8, 8))
    A[:4, 4:] = np.eye(4)
    A[4:, :4] = K @ W @ np.diag(S[1]) - K @ K
    A[4:, 4:] = -2.0 * K
    w, VL, VR = sla.eig(A, left=True, right=True)
    sel = np.where(w.imag > 1e-9 * (np.abs(w) + 1))[0]
    sel = sel[np.argsort(-w[sel].real)]
    lam = w[sel]
    Q = VR[:, sel]
    P = VL[:, sel]
    am = np.argmax(np.abs(Q[:4]), axis=0)
    Q = Q / Q[am, np.arange(sel.size)][None, :]
    P = P / np.conj(np.sum(np.conj(P) * Q, axis=0))[None, :]   # p^H q = 1

    def B(a, b):
        out = np.zeros(8, dtype=complex)
        out[4:] = K @ W @ (S[2] * a[:4] * b[:4])
        return out

    def C(a, b, c):
        out = np.zeros(8, dtype=complex)
        out[4:] = K @ W @ (S[3] * a[:4] * b[:4] * c[:4])
        return out

    def h(s, rhs):
        return np.linalg.solve(s * np.eye(8) - A, rhs)

    m = sel.size
    g = np.zeros((m, m), dtype=complex)
    for k in range(m):
        q, qb, p = Q[:, k], np.conj(Q[:, k]), P[:, k]
        h20 = h(2 * lam[k], B(q, q))
        h11 = h(2 * lam[k].real, B(q, qb))
        g[k, k] = 0.5 * np.conj(p) @ (C(q, q, qb) + B(qb, h20) + 2 * B(q, h11))
        for j in range(m):
            if j == k:
                continue
            r, rb = Q[:, j], np.conj(Q[:, j])
            hjj = h(2 * lam[j].real, B(r, rb))
            hkjb = h(lam[k] + np.conj(lam[j]), B(q, rb))
            hkj = h(lam[k] + lam[j], B(q, r))
            g[k, j] = np.conj(p) @ (C(q, r, rb) + B(q, hjj) + B(r, hkjb) + B(rb, hkj))
    return lam, Q[:4].T, g
