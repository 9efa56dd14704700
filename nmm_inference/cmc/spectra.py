"""Predicted cross-spectral densities of the CMC, exactly as SPM computes them.

Reference (numpy) implementation of ``spm_dcm_mtf``, ``spm_csd_mtf_gu`` and ``spm_csd_mtf``
for any number of sources (``../shared/docs/spm-cmc.md`` §3).  The fast single-source
kernel with gradients lives in :mod:`nmm_inference.cmc.kernel` and is tested against this
module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError
from ..params import canonical_spm
from .equations import (
    delay_matrix,
    delayed_jacobian,
    input_jacobian,
    jacobian,
    neural_from_spm,
)

__all__ = [
    "check_freqs",
    "condition_eigenvalues",
    "dct_basis",
    "noise_spectra",
    "transfer_function",
    "predict_csd_full",
    "CSDPrediction",
]


def check_freqs(hz):
    """Validate a frequency vector (Hz): 1-D, finite, strictly positive.

    Parameters
    ----------
    hz : array-like
        Frequencies in Hz.

    Returns
    -------
    ndarray, shape (nf,)
        ``hz`` as a float array.

    Raises
    ------
    ParameterError
        If ``hz`` is not a non-empty 1-D array of finite, positive values.
    """
    hz = np.asarray(hz, dtype=float)
    if hz.ndim != 1 or hz.size == 0:
        raise ParameterError(f"frequencies must be a non-empty 1-D array, got shape {hz.shape}")
    if not np.all(np.isfinite(hz)):
        raise ParameterError("frequencies must be finite")
    if np.any(hz <= 0):
        raise ParameterError(f"frequencies must be positive (Hz); smallest given is {hz.min()}")
    return hz


def condition_eigenvalues(s, max_hz):
    """SPM's eigenvalue 'conditioning' in ``spm_dcm_mtf``.

    For ``max(Hz) > 1``: ``Re s -> Re s - exp(Re s)``, which leaves stable modes unchanged
    (to exp(Re s)) and pushes growing modes far into the left half-plane.  Otherwise
    ``Re s -> min(Re s, -1/32)``.

    Parameters
    ----------
    s : array-like
        Eigenvalues (1/s), any shape; cast to complex.
    max_hz : float
        Highest frequency of the grid (Hz); selects the rule.

    Returns
    -------
    ndarray
        Conditioned eigenvalues, same shape as ``s``; imaginary parts unchanged.  ``exp(Re
        s)`` is evaluated with ``Re s`` capped at 700 to avoid overflow.
    """
    s = np.asarray(s, dtype=complex)
    if max_hz > 1:
        re = s.real - np.exp(np.minimum(s.real, 700.0))
    else:
        re = np.minimum(s.real, -1.0 / 32.0)
    return re + 1j * s.imag


def dct_basis(nf):
    """Columns 2..5 of SPM's ``spm_dctmtx(nf, 5)``, shape (nf, 4).

    Parameters
    ----------
    nf : int
        Number of frequencies.

    Returns
    -------
    ndarray, shape (nf, 4)
        ``sqrt(2/nf) cos(pi (2k+1) m / (2 nf))`` for rows ``k = 0..nf-1`` and ``m = 1..4``
        (the constant column 1 of ``spm_dctmtx`` is left out).
    """
    k = np.arange(nf)[:, None]
    m = np.arange(1, 5)[None, :]
    return np.sqrt(2.0 / nf) * np.cos(np.pi * (2 * k + 1) * m / (2 * nf))


def noise_spectra(Pc, hz):
    """Innovations Gu (nf, n), channel-specific noise Gs (nf, nc), common noise Gn (nf,).

    ``spm_csd_mtf_gu``: ``Gu = exp(a1) f^-exp(a2) exp(X d)``, ``Gn = exp(b1 - 2) f^-exp(b2)``,
    ``Gs_i = exp(c1_i - 2) f^-exp(c2_1)`` (channel 1's exponent for every channel, as SPM).

    Parameters
    ----------
    Pc : dict
        Canonical SPM parameters (:func:`~nmm_inference.params.canonical_spm`); the fields
        ``a`` (2, n), ``b`` (2, 1), ``c`` (2, nc) and ``d`` (4, n) are used.
    hz : array-like, shape (nf,)
        Frequencies in Hz.

    Returns
    -------
    Gu : ndarray, shape (nf, n)
        Spectrum of the neural innovations of each source.
    Gs : ndarray, shape (nf, nc)
        Channel-specific noise spectra.
    Gn : ndarray, shape (nf,)
        Spectrum of the noise common to all channels.

    Raises
    ------
    ParameterError
        If ``hz`` is invalid (:func:`check_freqs`).
    """
    hz = check_freqs(hz)
    a, b, c, d = Pc["a"], Pc["b"], Pc["c"], Pc["d"]
    X = dct_basis(hz.size)
    Gu = np.exp(a[0][None, :]) * hz[:, None] ** (-np.exp(a[1][None, :])) * np.exp(X @ d)
    Gn = np.exp(b[0, 0] - 2.0) * hz ** (-np.exp(b[1, 0]))
    Gs = np.exp(c[0][None, :] - 2.0) * hz[:, None] ** (-np.exp(c[1, 0]))
    return Gu, Gs, Gn


@dataclass(frozen=True)
class CSDPrediction:
    """Everything ``spm_csd_mtf`` computes on the way to the predicted CSD.

    Returned by :func:`predict_csd_full`.  When the delay operator did not converge
    (``delay_converged`` False), ``csd`` is ``+inf``, ``transfer`` and both eigenvalue
    arrays are NaN and ``jacobian`` is the last iterate.

    Attributes
    ----------
    hz : ndarray, shape (nf,)
        Frequencies in Hz.
    csd : ndarray, shape (nf, nc, nc), complex
        The full predicted cross-spectral density: neural part, common and
        channel-specific noise, times the spectral filter.
    transfer : ndarray, shape (nf, nc, n), complex
        Transfer function from the endogenous input of each source to each channel.
    eigenvalues : ndarray, shape (8n,), complex
        Raw eigenvalues of the Jacobian used (1/s).
    eigenvalues_conditioned : ndarray, shape (8n,), complex
        The same after :func:`condition_eigenvalues`.
    jacobian : ndarray, shape (8n, 8n)
        The Jacobian used: the delayed one when delays are on.
    delay_converged : bool
        Whether the delayed-Jacobian iteration converged (True when delays are off).
    """

    hz: np.ndarray
    csd: np.ndarray              # (nf, nc, nc) complex, the full prediction
    transfer: np.ndarray         # (nf, nc, n) complex, channel x input transfer function
    eigenvalues: np.ndarray      # raw eigenvalues of the (delayed) Jacobian
    eigenvalues_conditioned: np.ndarray
    jacobian: np.ndarray         # the Jacobian used (delayed if delays are on)
    delay_converged: bool

    @property
    def max_growth_rate(self) -> float:
        """Largest real part of the raw eigenvalues (1/s); > 0 means a growing mode."""
        return float(np.max(self.eigenvalues.real))


def transfer_function(Jd, B, C, hz):
    """SPM's modal transfer function with eigenvalue conditioning.

    ``H(f) = sum_k (C v)_k (v^-1 B)_k / (i 2 pi f - s_k)`` for eigenpairs (s_k, v_k) of Jd.

    Returns ``H`` (nf, nc, nu), raw and conditioned eigenvalues.

    Parameters
    ----------
    Jd : array-like, shape (N, N)
        (Delayed) Jacobian of the states (1/s).
    B : array-like, shape (N, nu)
        Input Jacobian (states x inputs).
    C : array-like, shape (nc, N)
        Observation matrix (channels x states).
    hz : array-like, shape (nf,)
        Frequencies in Hz; ``max(hz)`` selects the conditioning rule.

    Returns
    -------
    H : ndarray, shape (nf, nc, nu), complex
        Transfer function, with the conditioned eigenvalues in the denominators (terms with
        a non-finite ``1 / (i 2 pi f - s_k)`` are dropped).
    s : ndarray, shape (N,), complex
        Raw eigenvalues of ``Jd``.
    sc : ndarray, shape (N,), complex
        Conditioned eigenvalues (:func:`condition_eigenvalues`).

    Raises
    ------
    ParameterError
        If ``hz`` is invalid (:func:`check_freqs`).
    numpy.linalg.LinAlgError
        If the eigenvector matrix of ``Jd`` is singular.
    """
    hz = check_freqs(hz)
    s, V = np.linalg.eig(Jd)
    sc = condition_eigenvalues(s, hz.max())
    CV = C @ V
    ViB = np.linalg.solve(V, B.astype(complex))
    w = 2j * np.pi * hz
    with np.errstate(over="ignore", invalid="ignore"):
        den = 1.0 / (w[:, None] - sc[None, :])
    den[~np.isfinite(den)] = 0.0
    H = np.einsum("ck,fk,ku->fcu", CV, den, ViB)
    return H, s, sc


def _observer(Pc, n):
    """dg/dx for LFP channels, (n, 8n): row i has L_i * J_s at column s*n + i."""
    L = Pc["L"].ravel()
    Jw = Pc["J"].ravel()
    return np.kron(Jw[None, :], np.diag(L))


def predict_csd_full(P, hz, *, delays=True, n_sources=None, observation="channels"):
    """Predicted CSD for an n-source LFP CMC, SPM's ``spm_csd_mtf`` (reference implementation).

    Parameters
    ----------
    P : dict
        SPM parameter dict (see :func:`nmm_inference.params.canonical_spm`).
    hz : array-like, shape (nf,)
        Frequencies in Hz.
    delays : bool
        Apply SPM's delay operator (SPM's default).  ``False`` reproduces ``M.D = 1``.
    n_sources : int, optional
        Number of sources; default: inferred from ``P["G"]`` (see
        :func:`~nmm_inference.params.canonical_spm`).
    observation : {"channels", "sources"}
        ``"channels"``: the LFP channels with channel noise (``spm_csd_mtf``'s ``Hc``);
        ``"sources"``: SPM's source-space prediction ``Hs`` (L = 1, channel noise off by
        ``b1, c1 - 32``, as in ``spm_dcm_csd``).

    Returns
    -------
    CSDPrediction
    """
    hz = check_freqs(hz)
    Pc = canonical_spm(P, n_sources)
    if observation == "sources":
        Pc["L"] = np.ones_like(Pc["L"])
        Pc["b"][0] -= 32.0
        Pc["c"][0] -= 32.0
    elif observation != "channels":
        raise ParameterError(f"observation must be 'channels' or 'sources', got {observation!r}")
    nm = neural_from_spm(Pc)
    n = nm.n_sources
    J = jacobian(nm)
    B = input_jacobian(nm)
    converged = True
    if delays:
        Jd, converged = delayed_jacobian(J, delay_matrix(nm))
        Bd = Jd @ np.linalg.solve(J, B)
    else:
        Jd, Bd = J, B
    C = _observer(Pc, n)
    if not converged:
        # no delayed Jacobian: the documented signal is an infinite spectrum
        nc = C.shape[0]
        inf = np.full((hz.size, nc, nc), np.inf + 0j)
        nanv = np.full(8 * n, np.nan + 0j)
        return CSDPrediction(hz=hz, csd=inf, transfer=np.full((hz.size, nc, n), np.nan + 0j),
                             eigenvalues=nanv, eigenvalues_conditioned=nanv, jacobian=Jd,
                             delay_converged=False)
    H, s, sc = transfer_function(Jd, Bd, C, hz)
    Gu, Gs, Gn = noise_spectra(Pc, hz)
    G = np.einsum("fis,fs,fjs->fij", H, Gu, H.conj())
    nc = G.shape[1]
    G = G + Gn[:, None, None]
    G[:, np.arange(nc), np.arange(nc)] += Gs
    k = np.arange(1, hz.size + 1)
    filt = np.exp(Pc["f"][0, 0] + Pc["f"][1, 0] * k / hz.size)
    G = G * filt[:, None, None]
    return CSDPrediction(hz=hz, csd=G, transfer=H, eigenvalues=s, eigenvalues_conditioned=sc,
                         jacobian=Jd, delay_converged=bool(converged))
