"""Operating point, oscillatory modes and cubic normal-form coefficients of one CMC source.

This module implements ``shared/docs/adiabatic.md`` §3 with 4 x 4 complex algebra only (the
voltage block of the 8 x 8 Jacobian) and, optionally, forward-mode sensitivities (tangents)
of every quantity with respect to the 19 physical parameters
``theta = (G1..G10, T_ss, T_sp, T_ii, T_dp, R, U_ss, U_sp, U_ii, U_dp)``.

Notation (block state order (v_1..v_4, c_1..c_4), populations ss, sp, ii, dp):

* ``K = diag(1/T)``, ``M = W diag(S'(v*))``; the Jacobian is ``[[0, I], [K M - K^2, -2K]]``.
* ``Tm(lam) = (lam I + K)^2 - K M`` (the 4 x 4 nonlinear eigenproblem); ``Tm'(lam) = 2 (lam I + K)``.
* Right eigenvector ``q = (nu, lam nu)``; ``nu`` is scaled so that its largest-modulus entry is 1.
* Left eigenvector ``p^H = (mu^H (lam I + 2K), mu^H)`` with ``mu^H Tm(lam) = 0`` and
  ``mu^H Tm'(lam) nu = 1`` (so ``p^H q = 1``).
* ``H(s) = Tm(s)^-1 K W`` maps a quadratic forcing ``S'' o a o b`` to the slaved voltages.

Pure numerics: numpy only.
"""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError, ReductionError

__all__ = ["PARAM_NAMES", "N_PARAMS", "check_inputs", "coupling_matrix", "sigmoid_derivatives",
           "operating_point", "core_reduction"]

#: Names of the physical parameters, in the order of every sensitivity axis.
PARAM_NAMES = ("G1", "G2", "G3", "G4", "G5", "G6", "G7", "G8", "G9", "G10",
               "T_ss", "T_sp", "T_ii", "T_dp", "R", "U_ss", "U_sp", "U_ii", "U_dp")
N_PARAMS = len(PARAM_NAMES)
_SL_G = slice(0, 10)
_SL_T = slice(10, 14)
_IR = 14
_SL_U = slice(15, 19)

# (target, source, sign) of gain G1..G10 in W (rows: targets ss, sp, ii, dp).
_G_ENTRIES = ((0, 0, -1.0), (0, 1, -1.0), (0, 2, -1.0), (2, 2, -1.0), (2, 0, 1.0),
              (2, 3, 1.0), (1, 1, -1.0), (1, 0, 1.0), (3, 2, -1.0), (3, 3, -1.0))
#: dW/dG_i, shape (10, 4, 4).
_DW_DG = np.zeros((10, 4, 4))
for _i, (_r, _c, _s) in enumerate(_G_ENTRIES):
    _DW_DG[_i, _r, _c] = _s
_EYE4 = np.eye(4)


def check_inputs(G, T, R, U):
    """Validate and convert the physical parameters of one source.

    Parameters
    ----------
    G : array-like, shape (10,)
        Intrinsic gains G1..G10 in 1/s (SPM order, positive).
    T : array-like, shape (4,)
        Time constants of ss, sp, ii, dp in seconds (positive).
    R : float
        Sigmoid slope (positive, 1/mV in SPM's units).
    U : array-like, shape (4,)
        Constant input to ss, sp, ii, dp, SPM units.

    Returns
    -------
    G, T : ndarray
    R : float
    U : ndarray

    Raises
    ------
    ParameterError
        For wrong shapes, non-finite values or non-positive time constants or slope.
    """
    out = []
    for name, val, n in (("G", G, 10), ("T", T, 4), ("U", U, 4)):
        try:
            arr = np.asarray(val, dtype=float)
        except (TypeError, ValueError) as exc:
            raise ParameterError(f"{name} must be numeric: {exc}") from None
        if arr.shape != (n,):
            raise ParameterError(f"{name} must have shape ({n},), got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ParameterError(f"{name} has non-finite values: {arr.tolist()}")
        out.append(arr.copy())
    G, T, U = out
    try:
        R = float(np.asarray(R, dtype=float).reshape(()))
    except (TypeError, ValueError):
        raise ParameterError(f"R must be a finite scalar, got {R!r}") from None
    if not np.isfinite(R) or R <= 0:
        raise ParameterError(f"R (sigmoid slope) must be finite and positive, got {R}")
    if np.any(T <= 0):
        raise ParameterError(f"T (time constants, s) must be positive, got {T.tolist()}")
    if np.any(T > 10.0):
        raise ParameterError(f"T must be given in seconds (got {T.tolist()}; e.g. 0.002, not 2)")
    return G, T, R, U


def coupling_matrix(G):
    """Signed intrinsic coupling W (4 x 4, rows targets ss, sp, ii, dp) from G1..G10 (1/s)."""
    return np.tensordot(np.asarray(G, dtype=float), _DW_DG, axes=1)


def sigmoid_derivatives(v, R):
    """Derivatives of SPM's sigmoid ``S(v) = 1/(1+exp(-R v)) - 1/2``.

    Parameters
    ----------
    v : ndarray
        Voltages (mV).
    R : float
        Slope.

    Returns
    -------
    ndarray, shape (5,) + v.shape
        ``S, S', S'', S''', S''''`` at v.
    """
    v = np.asarray(v, dtype=float)
    s = 0.5 * (1.0 + np.tanh(0.5 * R * v))
    q = s * (1.0 - s)
    return np.stack([s - 0.5,
                     R * q,
                     R ** 2 * q * (1.0 - 2.0 * s),
                     R ** 3 * q * (1.0 - 6.0 * q),
                     R ** 4 * q * (1.0 - 2.0 * s) * (1.0 - 12.0 * q)])


def operating_point(G, T, R, U, *, tol=1e-13, max_iter=60):
    """Fixed point voltages ``v* = T o (W S(v*) + U)`` by damped Newton iteration.

    Parameters
    ----------
    G, T, R, U
        See :func:`check_inputs` (already validated arrays).
    tol : float, optional
        Convergence tolerance on the voltage update (mV).
    max_iter : int, optional
        Iteration limit.

    Returns
    -------
    ndarray, shape (4,)
        Operating-point voltages (mV); the currents are zero there.

    Raises
    ------
    ReductionError
        If Newton's method does not converge.
    """
    if not np.any(U):
        return np.zeros(4)
    W = coupling_matrix(G)
    TW = T[:, None] * W
    TU = T * U
    half_R = 0.5 * R
    # start from the linearised fixed point (exact for small inputs)
    v = np.linalg.solve(_EYE4 - TW * (0.25 * R), TU)

    def resid(x):
        th = np.tanh(half_R * x)
        return x - TW @ (0.5 * th) - TU, th

    F, th = resid(v)
    nF = np.sqrt(F @ F)
    for _ in range(max_iter):
        J = _EYE4 - TW * (0.25 * R * (1.0 - th * th))[None, :]
        step = np.linalg.solve(J, F)
        lam = 1.0
        while True:
            vn = v - lam * step
            Fn, thn = resid(vn)
            nFn = np.sqrt(Fn @ Fn)
            if nFn < nF or lam < 1e-3:
                break
            lam *= 0.5
        v, F, th, nF = vn, Fn, thn, nFn
        if np.max(np.abs(lam * step)) < tol * max(1.0, np.max(np.abs(v))):
            return v
    raise ReductionError("the operating point (fixed point for the constant input U) was not "
                         "found by Newton's method; the input may be outside the model's range")


def _bordered(Tm, col, row):
    """Bordered 5 x 5 matrices [[Tm, col], [row, 0]] for a batch of modes."""
    m = Tm.shape[0]
    B = np.zeros((m, 5, 5), dtype=complex)
    B[:, :4, :4] = Tm
    B[:, :4, 4] = col
    B[:, 4, :4] = row
    return B


def core_reduction(G, T, R, U, *, tangents=False, v_star=None, engine="numba"):
    """Modes and cubic coefficients of one CMC source at its operating point.

    Parameters
    ----------
    G, T, R, U
        Validated physical parameters (see :func:`check_inputs`).
    tangents : bool, optional
        Also return the derivatives of every quantity with respect to the 19 parameters
        :data:`PARAM_NAMES` (forward mode).
    v_star : ndarray, shape (4,), optional
        Operating point, if already known.
    engine : {"numba", "numpy"}, optional
        Without ``tangents``, the compiled path (``_fast``) is used by default; with
        ``tangents`` the numpy path always is (both give the same numbers to rounding).

    Returns
    -------
    dict
        ``v`` (4,) operating point (mV); ``S`` (5, 4) sigmoid derivatives there; ``W``, ``K``;
        ``lam`` (m,) complex eigenvalues with Im > 0, sorted by decreasing real part (1/s);
        ``real_eigenvalues`` (r,) (1/s); ``nu`` (m, 4) voltage profiles; ``mu`` (m, 4) left
        vectors; ``g`` (m, m) cubic coefficients (1/s per unit amplitude squared);
        ``argmax`` (m,) the entry of each nu fixed to 1.  With ``tangents``: ``d_v`` (19, 4),
        ``d_lam`` (19, m), ``d_nu`` (19, m, 4), ``d_g`` (19, m, m).
    """
    if engine not in ("numba", "numpy"):
        raise ParameterError(f"engine must be 'numba' or 'numpy', got {engine!r}")
    if not tangents and engine == "numba" and v_star is None:
        from ._fast import core_fast

        ok, v, S, lam, nu, mu, g, eta3, reals = core_fast(G, T, float(R), U)
        if not ok:
            raise ReductionError("the operating point (fixed point for the constant input U) was "
                                 "not found by Newton's method; the input may be outside the "
                                 "model's range")
        am = np.argmax(np.abs(nu), axis=1) if lam.size else np.zeros(0, int)
        return {"v": v, "S": S, "W": coupling_matrix(G), "K": 1.0 / T, "real_eigenvalues": reals,
                "lam": lam, "nu": nu, "mu": mu, "g": g, "argmax": am, "eta3": eta3}
    W = coupling_matrix(G)
    kap = 1.0 / T
    v = operating_point(G, T, R, U) if v_star is None else v_star
    S = sigmoid_derivatives(v, R)
    S1, S2, S3 = S[1], S[2], S[3]
    KW = kap[:, None] * W
    M = W * S1[None, :]
    KM = kap[:, None] * M
    # --- eigenvalues of the 8 x 8 Jacobian (block form) --------------------------------
    A = np.zeros((8, 8))
    A[:4, 4:] = _EYE4
    A[4:, :4] = KM - np.diag(kap ** 2)
    A[4:, 4:] = -2.0 * np.diag(kap)
    ev, evec = np.linalg.eig(A)
    scale = np.abs(ev) + 1.0
    osc = ev.imag > 1e-9 * scale
    realmask = np.abs(ev.imag) <= 1e-9 * scale
    real_eigs = np.sort(ev[realmask].real)[::-1]
    lam = ev[osc]
    nu = evec[:4, osc].T
    order = np.argsort(-lam.real, kind="stable")
    lam = lam[order]
    nu = nu[order]
    m = lam.size
    out = {"v": v, "S": S, "W": W, "K": kap, "real_eigenvalues": real_eigs}
    if m == 0:
        out.update(lam=lam, nu=np.zeros((0, 4), complex), mu=np.zeros((0, 4), complex),
                   g=np.zeros((0, 0), complex), argmax=np.zeros(0, int),
                   eta3=np.zeros((0, 0, 4), complex))
        if tangents:
            out.update(d_v=np.zeros((N_PARAMS, 4)), d_lam=np.zeros((N_PARAMS, 0), complex),
                       d_nu=np.zeros((N_PARAMS, 0, 4), complex),
                       d_g=np.zeros((N_PARAMS, 0, 0), complex),
                       d_mu=np.zeros((N_PARAMS, 0, 4), complex),
                       d_eta3=np.zeros((N_PARAMS, 0, 0, 4), complex))
        return out
    am = np.argmax(np.abs(nu), axis=1)
    nu = nu / nu[np.arange(m), am][:, None]
    E_am = np.zeros((m, 4))
    E_am[np.arange(m), am] = 1.0
    # one Newton step on the bordered system polishes (lam, nu) to machine precision
    LK = lam[:, None] + kap[None, :]                        # (m, 4) diagonal of lam I + K
    Tm = LK[:, :, None] ** 2 * _EYE4 - KM[None]             # (m, 4, 4)
    Tp_nu = 2.0 * LK * nu                                   # Tm'(lam) nu
    Bd = _bordered(Tm, Tp_nu, E_am)
    rhs = np.zeros((m, 5), complex)
    rhs[:, :4] = -np.einsum("mij,mj->mi", Tm, nu)
    upd = np.linalg.solve(Bd, rhs[..., None])[..., 0]
    nu = nu + upd[:, :4]
    lam = lam + upd[:, 4]
    LK = lam[:, None] + kap[None, :]
    Tm = LK[:, :, None] ** 2 * _EYE4 - KM[None]
    Tp_nu = 2.0 * LK * nu
    Bd = _bordered(Tm, Tp_nu, E_am)
    # left vectors: [[Tm^H, nu], [(Tm' nu)^H, 0]] [mu; alpha] = [0; 1]
    BdL = _bordered(np.conj(np.swapaxes(Tm, 1, 2)), nu, np.conj(Tp_nu))
    rhs = np.zeros((m, 5, 1), complex)
    rhs[:, 4, 0] = 1.0
    mu = np.linalg.solve(BdL, rhs)[:, :4, 0]
    # --- slaved (quadratic) voltages and cubic coefficients ------------------------------
    # pair (k, j): s1 = lam_k + lam_j  -> eta_kj  (coefficient of z_k z_j; k = j: z_k^2 / 2)
    #              s2 = lam_k + conj(lam_j) -> eta_kjb (coefficient of z_k conj(z_j))
    s1 = lam[:, None] + lam[None, :]
    s2 = lam[:, None] + np.conj(lam)[None, :]
    svals = np.concatenate([s1.ravel(), s2.ravel()])        # (2 m^2,)
    SK = svals[:, None] + kap[None, :]
    Ts = SK[:, :, None] ** 2 * _EYE4 - KM[None]
    Tinv = np.linalg.inv(Ts)                                # (2m^2, 4, 4)
    THKW = Tinv @ KW                                        # H(s)
    nn = nu[:, None, :] * nu[None, :, :]                    # nu_k nu_j  (m, m, 4)
    nnb = nu[:, None, :] * np.conj(nu)[None, :, :]          # nu_k conj(nu_j)
    y = np.concatenate([(S2 * nn).reshape(-1, 4), (S2 * nnb).reshape(-1, 4)])
    eta_all = np.einsum("bij,bj->bi", THKW, y)
    eta = eta_all[: m * m].reshape(m, m, 4)                 # eta_kj
    etab = eta_all[m * m:].reshape(m, m, 4)                 # eta_kjb
    etajj = etab[np.arange(m), np.arange(m)]                # (m, 4): eta_{j jbar}
    # bracket for g_kj (general j != k form; g_kk = half of it at j = k)
    nub = np.conj(nu)
    absn2 = np.abs(nu) ** 2
    br = (S3 * nu[:, None, :] * absn2[None, :, :]
          + S2 * nu[:, None, :] * etajj[None, :, :]
          + S2 * nu[None, :, :] * etab
          + S2 * nub[None, :, :] * eta)                     # (m, m, 4)
    half = np.where(np.eye(m, dtype=bool), 0.5, 1.0)
    muKW = np.conj(mu) @ KW                                 # (m, 4): mu_k^H K W
    g = half * np.einsum("ki,kji->kj", muKW, br)
    # cubic slaved voltages at the mode's own frequency: the coefficient eta3_kj of
    # z_k |z_j|^2 in v (normal-form gauge p_k^H h = 0).  With Lam = lam_k + 2 sigma_j:
    # Tm(Lam) eta3 = K W br~ - g_kj (lam_k + Lam + 2K) nu_k,  br~ = half * br.
    Lam = lam[:, None] + 2.0 * lam.real[None, :]
    tiny = 1e-9 * np.abs(lam)[:, None]
    Lam = np.where(np.abs(Lam - lam[:, None]) < tiny, lam[:, None] + tiny, Lam)
    LamK = Lam[..., None] + kap                                     # (m, m, 4)
    T3 = LamK[..., None] ** 2 * _EYE4 - KM                          # (m, m, 4, 4)
    T3inv = np.linalg.inv(T3)
    cvec = lam[:, None, None] + LamK + kap                          # lam_k + Lam + 2K
    rhs3 = half[..., None] * (br @ KW.T) - g[..., None] * cvec * nu[:, None, :]
    eta3 = np.einsum("kjab,kjb->kja", T3inv, rhs3)
    out.update(lam=lam, nu=nu, mu=mu, g=g, argmax=am, eta3=eta3)
    if not tangents:
        return out

    # ================= forward-mode sensitivities (19 directions) ==========================
    P = N_PARAMS
    dW = np.zeros((P, 4, 4))
    dW[_SL_G] = _DW_DG
    dkap = np.zeros((P, 4))
    dkap[_SL_T] = np.diag(-kap ** 2)
    # operating point: F = v - T o (W S(v) + U) = 0
    Jv = _EYE4 - T[:, None] * W * S1[None, :]
    dF = np.zeros((P, 4))
    dF[_SL_G] = -T[None, :] * (_DW_DG @ S[0])
    dF[_SL_T] = -np.diag(W @ S[0] + U)
    dS0_dR = v * S1 / R
    dF[_IR] = -T * (W @ dS0_dR)
    dF[_SL_U] = -np.diag(T)
    d_v = -np.linalg.solve(Jv, dF.T).T

    def dSn(n):
        d = S[n + 1][None, :] * d_v
        d[_IR] += (n * S[n] + v * S[n + 1]) / R
        return d

    dS1, dS2, dS3 = dSn(1), dSn(2), dSn(3)
    dKW = dkap[:, :, None] * W[None] + kap[None, :, None] * dW
    dM = dW * S1[None, None, :] + W[None] * dS1[:, None, :]
    dKM = dkap[:, :, None] * M[None] + kap[None, :, None] * dM          # (P, 4, 4)
    # eigenpairs: Tm(lam) nu = 0 with nu[am] = 1
    # dTm at fixed lam (P, m, 4, 4) = 2 (lam+K) dK - dKM
    dTm = (2.0 * LK[None, :, :] * dkap[:, None, :])[..., None] * _EYE4 - dKM[:, None]
    rhs = np.zeros((m, 5, P), complex)
    rhs[:, :4, :] = -np.moveaxis((dTm @ nu[None, :, :, None])[..., 0], 0, -1)
    sol = np.linalg.solve(Bd, rhs)                                      # (m, 5, P)
    d_nu = np.moveaxis(sol[:, :4, :], 2, 0)                             # (P, m, 4)
    d_lam = sol[:, 4, :].T                                              # (P, m)
    # left vectors
    dT_tot = dTm + (2.0 * LK[None] * d_lam[:, :, None])[..., None] * _EYE4
    r1 = -np.moveaxis((np.conj(np.swapaxes(dT_tot, 2, 3)) @ mu[None, :, :, None])[..., 0], 0, -1)
    dTp_nu = 2.0 * (d_lam[:, :, None] + dkap[:, None, :]) * nu[None] + 2.0 * LK[None] * d_nu
    r2 = -np.conj(np.sum(np.conj(mu)[None] * dTp_nu, axis=-1)).T
    rhs = np.concatenate([r1, r2[:, None, :]], axis=1)
    sol = np.linalg.solve(BdL, rhs)
    d_mu = np.moveaxis(sol[:, :4, :], 2, 0)                             # (P, m, 4)
    # slaved voltages: eta = Ts^-1 (KW y); d eta = Ts^-1 [dKW y + KW dy - dTs eta]
    ds1 = d_lam[:, :, None] + d_lam[:, None, :]
    ds2 = d_lam[:, :, None] + np.conj(d_lam)[:, None, :]
    dsv = np.concatenate([ds1.reshape(P, -1), ds2.reshape(P, -1)], axis=1)   # (P, B)
    dnn = d_nu[:, :, None, :] * nu[None, None] + nu[None, :, None, :] * d_nu[:, None, :, :]
    dnnb = (d_nu[:, :, None, :] * nub[None, None]
            + nu[None, :, None, :] * np.conj(d_nu)[:, None, :, :])
    dy = np.concatenate([(S2 * dnn + dS2[:, None, None, :] * nn[None]).reshape(P, -1, 4),
                         (S2 * dnnb + dS2[:, None, None, :] * nnb[None]).reshape(P, -1, 4)],
                        axis=1)                                          # (P, B, 4)
    # dTs eta = 2 (s+K)(ds + dK) o eta - dKM eta
    dTs_eta = (2.0 * SK[None] * (dsv[:, :, None] + dkap[:, None, :]) * eta_all[None]
               - eta_all @ np.swapaxes(dKM, 1, 2))
    rhs = y @ np.swapaxes(dKW, 1, 2) + dy @ KW.T - dTs_eta
    d_eta_all = (Tinv[None] @ rhs[..., None])[..., 0]
    d_eta = d_eta_all[:, : m * m].reshape(P, m, m, 4)
    d_etab = d_eta_all[:, m * m:].reshape(P, m, m, 4)
    d_etajj = d_etab[:, np.arange(m), np.arange(m)]
    d_absn2 = 2.0 * np.real(nub[None] * d_nu)
    d_br = (dS3[:, None, None, :] * nu[None, :, None, :] * absn2[None, None]
            + S3 * d_nu[:, :, None, :] * absn2[None, None]
            + S3 * nu[None, :, None, :] * d_absn2[:, None, :, :]
            + dS2[:, None, None, :] * (nu[:, None, :] * etajj[None, :, :] + nu[None, :, :] * etab
                                       + nub[None, :, :] * eta)[None]
            + S2 * (d_nu[:, :, None, :] * etajj[None, None] + nu[None, :, None, :] * d_etajj[:, None]
                    + d_nu[:, None, :, :] * etab[None] + nu[None, None] * d_etab
                    + np.conj(d_nu)[:, None, :, :] * eta[None] + nub[None, None] * d_eta))
    d_muKW = np.conj(d_mu) @ KW + np.conj(mu)[None] @ dKW
    d_g = half[None] * ((br[None] @ d_muKW[..., None])[..., 0]
                        + (d_br @ muKW[None, :, :, None])[..., 0])
    # cubic slaved voltages
    d_Lam = d_lam[:, :, None] + 2.0 * d_lam.real[:, None, :]                    # (P, m, m)
    d_cvec = d_lam[:, :, None, None] + d_Lam[..., None] + 2.0 * dkap[:, None, None, :]
    dT3_eta = (2.0 * LamK[None] * (d_Lam[..., None] + dkap[:, None, None, :]) * eta3[None]
               - eta3[None] @ np.swapaxes(dKM, 1, 2)[:, None])
    d_rhs3 = (half[None, ..., None] * (d_br @ KW.T + br[None] @ np.swapaxes(dKW, 1, 2)[:, None])
              - d_g[..., None] * cvec[None] * nu[None, :, None, :]
              - g[None, ..., None] * d_cvec * nu[None, :, None, :]
              - g[None, ..., None] * cvec[None] * d_nu[:, :, None, :])
    d_eta3 = (T3inv[None] @ (d_rhs3 - dT3_eta)[..., None])[..., 0]
    out.update(d_v=d_v, d_lam=d_lam, d_nu=d_nu, d_mu=d_mu, d_g=d_g, d_eta3=d_eta3)
    return out
