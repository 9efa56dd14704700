"""CMC equations of motion, fixed point, analytic Jacobian and SPM's delay operator.

Reference (numpy/scipy) implementation of ``spm_fx_cmc`` and ``spm_dcm_delay`` for any
number of sources; ``../shared/docs/spm-cmc.md`` §1 gives the equations.

State order is SPM's: the n x 8 state matrix vectorised column-major, so state ``s`` of
source ``i`` sits at index ``s * n + i`` with ``s`` in (v_ss, c_ss, v_sp, c_sp, v_ii, c_ii,
v_dp, c_dp).  Population inputs ``u`` are indexed ``p * n + i`` with ``p`` in (ss, sp, ii, dp).

Pure numerics: numpy and scipy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError, UnstableSystemError
from ..params import D_DEFAULT, E_DEFAULT, G_DEFAULT, G_FREE_INDEX, T_DEFAULT_MS, canonical_spm

__all__ = [
    "CMCNeural",
    "neural_from_spm",
    "sigmoid",
    "vector_field",
    "fixed_point",
    "jacobian",
    "input_jacobian",
    "delay_matrix",
    "delayed_jacobian",
    "ENDOGENOUS_INPUT_GAIN",
]

#: SPM's scaling of endogenous (CSD) input to the spiny stellate cells: ``U = 512 u``.
ENDOGENOUS_INPUT_GAIN = 512.0


@dataclass(frozen=True)
class CMCNeural:
    """Physical neural parameters of an n-source CMC.

    Attributes
    ----------
    G : ndarray, shape (n, 10)
        Intrinsic gains G1..G10 in 1/s (positive; signs are in the equations).
    T : ndarray, shape (n, 4)
        Time constants of ss, sp, ii, dp in seconds.
    R : float
        Sigmoid slope.
    A : ndarray, shape (4, n, n)
        Effective extrinsic strengths (after SPM's reciprocal-pair reduction), 1/s;
        ``A[k, i, j]`` goes from source j to source i.
    M : ndarray, shape (n, n)
        Modulation of sp self-inhibition by dp firing.
    d_intrinsic : ndarray, shape (n,)
        Intrinsic delays in seconds.
    d_extrinsic : ndarray, shape (n, n)
        Extrinsic delays in seconds (diagonal unused).
    """

    G: np.ndarray
    T: np.ndarray
    R: float
    A: np.ndarray
    M: np.ndarray
    d_intrinsic: np.ndarray
    d_extrinsic: np.ndarray

    @property
    def n_sources(self) -> int:
        return self.G.shape[0]

    @property
    def W(self) -> np.ndarray:
        """Population coupling matrix, shape (4n, 4n): ``u = W S(v)`` (without M modulation).

        Rows are target populations, columns source populations, both indexed
        ``p * n + i``.
        """
        n = self.n_sources
        G = self.G
        W = np.zeros((4 * n, 4 * n))
        idx = np.arange(n)
        ss, sp, ii, dp = (p * n + idx for p in range(4))
        # intrinsic, per source (G1..G10 -> columns 0..9)
        W[ss, ss] = -G[:, 0]
        W[ss, sp] = -G[:, 1]
        W[ss, ii] = -G[:, 2]
        W[ii, ii] = -G[:, 3]
        W[ii, ss] = G[:, 4]
        W[ii, dp] = G[:, 5]
        W[sp, sp] = -G[:, 6]
        W[sp, ss] = G[:, 7]
        W[dp, ii] = -G[:, 8]
        W[dp, dp] = -G[:, 9]
        # extrinsic: fwd sp->ss (+), fwd sp->dp (+), bwd dp->sp (-), bwd dp->ii (-)
        sl = lambda p: slice(p * n, (p + 1) * n)  # noqa: E731
        W[sl(0), sl(1)] += self.A[0]
        W[sl(3), sl(1)] += self.A[1]
        W[sl(1), sl(3)] -= self.A[2]
        W[sl(2), sl(3)] -= self.A[3]
        return W


def neural_from_spm(P, n_sources: int | None = None) -> CMCNeural:
    """Physical neural parameters from an SPM parameter dict (``spm_fx_cmc``'s mapping).

    Parameters
    ----------
    P : mapping
        SPM fields to SPM-scale values (see :func:`~nmm_inference.params.canonical_spm`);
        missing fields take SPM's prior mean.
    n_sources : int, optional
        Number of sources; default: inferred from ``P["G"]``.

    Returns
    -------
    CMCNeural
        Gains ``G1..G10 * exp(P.G)`` for the free ones, time constants, sigmoid slope
        ``2/3 exp(P.S)``, extrinsic strengths (divided by 5 for reciprocal pairs, as SPM;
        zero for one source), ``M`` and the delays ``1 ms exp(P.D_ii)`` (intrinsic) and
        ``8 ms exp(P.D_ij)`` (extrinsic).

    Raises
    ------
    ParameterError
        For invalid SPM fields (see :func:`~nmm_inference.params.canonical_spm`).
    """
    Pc = canonical_spm(P, n_sources)
    n = Pc["G"].shape[0]
    G = np.tile(G_DEFAULT, (n, 1))
    nfree = Pc["G"].shape[1]
    G[:, G_FREE_INDEX[:nfree]] = G[:, G_FREE_INDEX[:nfree]] * np.exp(Pc["G"])
    T = np.broadcast_to(T_DEFAULT_MS / 1000.0 * np.exp(Pc["T"]), (n, 4)).copy()
    R = float(2.0 / 3.0 * np.exp(Pc["S"].ravel()[0]))
    if n == 1:
        A = np.zeros((4, 1, 1))
    else:
        A = np.exp(Pc["A"]) * E_DEFAULT[:, None, None]
        for k in range(4):
            recip = (A[k] > np.exp(-8)) & (A[k].T > np.exp(-8))
            A[k] = A[k] / (1 + 4 * recip)
    Dlog = Pc["D"]
    d_in = D_DEFAULT[0] * np.exp(np.diag(Dlog))
    d_ex = D_DEFAULT[1] * np.exp(Dlog)
    np.fill_diagonal(d_ex, 0.0)
    return CMCNeural(G=G, T=T, R=R, A=A, M=Pc["M"].copy(), d_intrinsic=d_in, d_extrinsic=d_ex)


def sigmoid(v, R):
    """SPM's firing function ``S(v) = 1/(1+exp(-R v)) - 1/2`` and its first derivative.

    Parameters
    ----------
    v : array-like
        Voltages (mV), any shape.
    R : float
        Sigmoid slope (1/mV).

    Returns
    -------
    S : ndarray
        ``S(v)``, same shape as ``v``, in (-1/2, 1/2).
    dS : ndarray
        ``dS/dv = R s (1 - s)`` with ``s = S(v) + 1/2``, same shape as ``v``.
    """
    v = np.asarray(v, dtype=float)
    s = 0.5 * (1.0 + np.tanh(0.5 * R * v))
    return s - 0.5, R * s * (1.0 - s)


def _population_input(v, nm: CMCNeural, drive):
    """Population inputs u (4n,) and dependencies for given voltages v (4n,)."""
    n = nm.n_sources
    Sv, dSv = sigmoid(v, nm.R)
    W = nm.W
    u = W @ Sv
    # modulation of G7 by dp firing: G7_eff = G7 exp(-32 M S(v_dp))
    Sdp = Sv[3 * n:4 * n]
    mod = np.exp(-32.0 * nm.M @ Sdp)
    g7_eff = nm.G[:, 6] * mod
    Ssp = Sv[n:2 * n]
    u[n:2 * n] += (nm.G[:, 6] - g7_eff) * Ssp  # replace -G7 S(sp) by -G7_eff S(sp)
    if drive is not None:
        u = u + drive
    return u, Sv, dSv, g7_eff


def _check_state(x, n):
    x = np.asarray(x, dtype=float)
    if x.shape != (8 * n,):
        raise ParameterError(f"state must have shape ({8 * n},) for {n} source(s), got {x.shape}")
    return x


def _drive_vector(drive, n, u_endo=None):
    """Constant population input (4n,) in SPM units, plus 512*u to ss."""
    out = np.zeros(4 * n)
    if drive is not None:
        d = np.asarray(drive, dtype=float)
        if d.shape == (4,) and n == 1:
            d = d.reshape(1, 4)
        if d.shape != (n, 4):
            raise ParameterError(f"drive must have shape ({n}, 4) (ss, sp, ii, dp per source), got {d.shape}")
        if not np.all(np.isfinite(d)):
            raise ParameterError("drive has non-finite values")
        out += d.T.ravel()
    if u_endo is not None:
        out[:n] += ENDOGENOUS_INPUT_GAIN * np.asarray(u_endo, dtype=float)
    return out


def vector_field(x, nm: CMCNeural, *, drive=None, u=None):
    """dx/dt of the CMC (``spm_fx_cmc``).

    Parameters
    ----------
    x : ndarray, shape (8n,)
        State in SPM order.
    nm : CMCNeural
    drive : array-like, shape (n, 4), optional
        Constant input added to the inputs of ss, sp, ii, dp (SPM units).
    u : array-like, shape (n,), optional
        Endogenous input; enters ss as ``512 u`` (SPM's CSD convention).
    """
    n = nm.n_sources
    x = _check_state(x, n)
    X = x.reshape(8, n)
    v = X[0::2].ravel()  # (4n,) pop-major
    c = X[1::2].ravel()
    uu, *_ = _population_input(v, nm, _drive_vector(drive, n, u))
    kappa = (1.0 / nm.T).T.ravel()  # (4n,) pop-major
    dc = kappa * (uu - 2.0 * c - kappa * v)
    out = np.empty((8, n))
    out[0::2] = c.reshape(4, n)
    out[1::2] = dc.reshape(4, n)
    return out.ravel()


def fixed_point(nm: CMCNeural, *, drive=None, tol=1e-12, max_iter=100):
    """Fixed point x* (8n,) for constant input, by Newton's method on the voltages.

    With no drive x* = 0 exactly (S(0) = 0).

    Parameters
    ----------
    nm : CMCNeural
        Neural parameters.
    drive : array-like, shape (n, 4), optional
        Constant input to ss, sp, ii, dp of each source (SPM units); shape (4,) is accepted
        for one source.
    tol : float, optional
        Relative tolerance on the damped Newton step of the voltages.
    max_iter : int, optional
        Maximum number of Newton iterations.

    Returns
    -------
    ndarray, shape (8n,)
        Fixed point in SPM state order; the currents are zero.

    Raises
    ------
    ParameterError
        If ``drive`` is mis-shaped or not finite.
    UnstableSystemError
        If Newton's method does not converge.
    """
    n = nm.n_sources
    dvec = _drive_vector(drive, n)
    if not np.any(dvec) :
        return np.zeros(8 * n)
    Tvec = nm.T.T.ravel()
    v = Tvec * dvec
    for _ in range(max_iter):
        uu, Sv, dSv, _ = _population_input(v, nm, dvec)
        F = v - Tvec * uu
        Jv = np.eye(4 * n) - Tvec[:, None] * _coupling_jacobian(v, nm)
        step = np.linalg.solve(Jv, F)
        # damped step for robustness far from the solution
        lam = 1.0
        while lam > 1e-4:
            vn = v - lam * step
            Fn = vn - Tvec * _population_input(vn, nm, dvec)[0]
            if np.linalg.norm(Fn) < np.linalg.norm(F) or lam < 2e-4:
                break
            lam *= 0.5
        v = vn
        if np.max(np.abs(lam * step)) < tol * max(1.0, np.max(np.abs(v))):
            break
    else:
        raise UnstableSystemError("fixed-point iteration did not converge for this constant input")
    X = np.zeros((8, n))
    X[0::2] = v.reshape(4, n)
    return X.ravel()


def _coupling_jacobian(v, nm: CMCNeural):
    """d u / d v (4n x 4n) at voltages v."""
    n = nm.n_sources
    Sv, dSv = sigmoid(v, nm.R)
    W = nm.W.copy()
    Sdp = Sv[3 * n:4 * n]
    mod = np.exp(-32.0 * nm.M @ Sdp)
    g7_eff = nm.G[:, 6] * mod
    idx = np.arange(n)
    W[n + idx, n + idx] = -g7_eff
    dU = W * dSv[None, :]
    # derivative of -G7_eff(v_dp) S(v_sp) wrt v_dp_j: + G7_eff_i * 32 M_ij S'(v_dp_j) S(v_sp_i)
    Ssp = Sv[n:2 * n]
    dU[n:2 * n, 3 * n:4 * n] += (g7_eff * Ssp)[:, None] * 32.0 * nm.M * dSv[3 * n:4 * n][None, :]
    return dU


def jacobian(nm: CMCNeural, x=None):
    """Analytic Jacobian df/dx (8n x 8n, SPM order) at state x (default: 0).

    Parameters
    ----------
    nm : CMCNeural
        Neural parameters.
    x : array-like, shape (8n,), optional
        State in SPM order (only the voltages matter); default: the zero state, which is the
        fixed point without drive.

    Returns
    -------
    ndarray, shape (8n, 8n)
        Jacobian of :func:`vector_field`, including the ``M`` modulation of sp
        self-inhibition.

    Raises
    ------
    ParameterError
        If ``x`` has the wrong shape.
    """
    n = nm.n_sources
    x = np.zeros(8 * n) if x is None else _check_state(x, n)
    v = x.reshape(8, n)[0::2].ravel()
    dU = _coupling_jacobian(v, nm)
    kappa = (1.0 / nm.T).T.ravel()
    Jfull = np.zeros((8 * n, 8 * n))
    # index helpers: voltage of pop p, source i -> (2p) * n + i ; current -> (2p+1) * n + i
    pop = np.repeat(np.arange(4), n)
    src = np.tile(np.arange(n), 4)
    vi = 2 * pop * n + src
    ci = (2 * pop + 1) * n + src
    Jfull[vi, ci] = 1.0
    Jfull[np.ix_(ci, vi)] = kappa[:, None] * dU
    Jfull[ci, vi] -= kappa ** 2
    Jfull[ci, ci] = -2.0 * kappa
    return Jfull


def input_jacobian(nm: CMCNeural):
    """df/du (8n x n): endogenous input enters ss current as 512/T_ss.

    Parameters
    ----------
    nm : CMCNeural
        Neural parameters.

    Returns
    -------
    ndarray, shape (8n, n)
        Zero except at the ss current of each source: ``512 / T_ss`` (1/s).
    """
    n = nm.n_sources
    B = np.zeros((8 * n, n))
    B[n + np.arange(n), np.arange(n)] = ENDOGENOUS_INPUT_GAIN / nm.T[:, 0]
    return B


def delay_matrix(nm: CMCNeural):
    """SPM's delay matrix D (8n x 8n, seconds), with no delay on the dv/dt = c identities.

    Parameters
    ----------
    nm : CMCNeural
        Neural parameters (``d_intrinsic``, ``d_extrinsic`` are used).

    Returns
    -------
    ndarray, shape (8n, 8n)
        ``D[i, j]``: delay (s) of state j's effect on state i, in SPM state order: the
        intrinsic delay between different states of one source, the extrinsic delay between
        sources, zero on the diagonal and on each ``dv/dt = c`` entry.
    """
    n = nm.n_sources
    Di = np.kron(np.ones((8, 8)) - np.eye(8), np.diag(nm.d_intrinsic))
    De = np.kron(np.ones((8, 8)), nm.d_extrinsic * (1 - np.eye(n)))
    D = Di + De
    pop = np.repeat(np.arange(4), n)
    src = np.tile(np.arange(n), 4)
    D[2 * pop * n + src, (2 * pop + 1) * n + src] = 0.0
    return D


def delayed_jacobian(J, D, *, tol=1e-13, max_iter=60):
    """Solve SPM's delayed-Jacobian fixed point exactly.

    Finds ``Jd`` with ``Jd[i, :] = sum_j J[i, j] * expm(-D[i, j] * Jd)[j, :]``, the equation
    that ``spm_dcm_delay`` approximates with a Taylor series and Robbins-Monro relaxation.
    Grouping the entries of D by value gives ``Jd = sum_m J_m expm(-d_m Jd)``; Newton's method
    on this equation uses the Frechet derivative of ``expm`` in the eigenbasis of Jd, which
    splits the Newton system into one small linear solve per column.  It starts from SPM's
    first-order operator ``(I + D*J)^-1 J`` and converges quadratically.

    Parameters
    ----------
    J : array-like, shape (N, N)
        Undelayed Jacobian (e.g. :func:`jacobian`).
    D : array-like, shape (N, N)
        Delays in seconds (e.g. :func:`delay_matrix`); only entries where ``J != 0`` matter.
    tol : float, optional
        Convergence threshold on the largest residual entry, relative to
        ``max(max|J|, 1)``.
    max_iter : int, optional
        Maximum number of Newton iterations.

    Returns
    -------
    Jd : ndarray
        Delayed Jacobian.
    converged : bool
        False when the iteration did not reach ``tol``; the last iterate is returned.
    """
    J = np.asarray(J, dtype=float)
    D = np.asarray(D, dtype=float)
    N = J.shape[0]
    vals = np.unique(D[J != 0])
    parts = [(d, np.where((D == d) & (J != 0), J, 0.0)) for d in vals]
    X = np.linalg.solve(np.eye(N) + D * J, J)
    scale = max(np.max(np.abs(J)), 1.0)
    converged = False
    for _ in range(max_iter):
        if not np.all(np.isfinite(X)):
            break
        lam, V = np.linalg.eig(X)
        Vi = np.linalg.inv(V)
        F = X.astype(complex)
        expms = []
        for d, Jm in parts:
            E = (V * np.exp(-d * lam)) @ Vi
            expms.append(E)
            F = F - Jm @ E
        F = F.real
        if np.max(np.abs(F)) < tol * scale:
            converged = True
            break
        # Newton: Z + sum_m Jm L(-d_m X, Z) * d_m ... in eigenbasis
        Rt = Vi @ F @ V
        lt_i = lam[:, None]
        lt_j = lam[None, :]
        diff = lt_j - lt_i
        same = np.abs(diff) < 1e-12 * (1 + np.abs(lt_i))
        Zt = np.empty((N, N), dtype=complex)
        Jts = []
        Psis = []
        for d, Jm in parts:
            ei = np.exp(-d * lt_i)
            ej = np.exp(-d * lt_j)
            with np.errstate(divide="ignore", invalid="ignore"):
                Psi = np.where(same, d * ei, (ei - ej) / np.where(same, 1.0, diff))
            Jts.append(Vi @ Jm @ V)
            Psis.append(Psi)
        for j in range(N):
            Mj = np.eye(N, dtype=complex)
            for Jt, Psi in zip(Jts, Psis):
                Mj = Mj + Jt * Psi[:, j][None, :]
            Zt[:, j] = np.linalg.solve(Mj, Rt[:, j])
        X = X - (V @ Zt @ Vi).real
    if not np.all(np.isfinite(X)):
        converged = False
    return X, converged
