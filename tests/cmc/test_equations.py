"""Closed forms and invariants of the CMC equations (independent of SPM's numbers)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import expm

from nmm_inference.cmc.equations import (
    delay_matrix,
    delayed_jacobian,
    fixed_point,
    jacobian,
    neural_from_spm,
    vector_field,
)
from nmm_inference.cmc.spectra import predict_csd_full, transfer_function
from nmm_inference.errors import ParameterError
from nmm_inference.params import prior_mean_spm


def test_single_population_closed_form():
    # only self-inhibition left (G1, G4, G7, G10): ss is a damped oscillator fed by 512 u,
    # H = 512 k / ((i w)^2 + 2 k i w + k^2 + k G1 R/4)
    G = np.full(10, -60.0)
    G[[0, 3, 6, 9]] = 0.0
    P = {"G": G[[6, 1, 2, 3, 0, 4, 5, 7, 8, 9]], "T": [0.3, 0, 0, 0]}  # SPM's column map j
    nm = neural_from_spm(P)
    k = 1 / nm.T[0, 0]
    assert nm.G[0, 0] == 800 and nm.G[0, 1] < 1e-20
    hz = np.linspace(1, 100, 50)
    C = np.zeros((1, 8))
    C[0, 0] = 1.0
    B = np.zeros((8, 1))
    B[1, 0] = 512 / nm.T[0, 0]
    H, _, _ = transfer_function(jacobian(nm), B, C, hz)
    w = 2j * np.pi * hz
    np.testing.assert_allclose(H[:, 0, 0], 512 * k / (w**2 + 2 * k * w + k**2 + k * 800 * nm.R / 4),
                               rtol=1e-9)  # exact algebra; eigenvector rounding only


def test_analytic_jacobian_matches_finite_differences(rng):
    P = {"G": rng.normal(0, 0.3, 4), "T": rng.normal(0, 0.2, 4), "S": 0.2}
    nm = neural_from_spm(P)
    drive = np.array([[20.0, -10.0, 5.0, 40.0]])
    x0 = fixed_point(nm, drive=drive)
    np.testing.assert_allclose(vector_field(x0, nm, drive=drive), 0, atol=1e-8)  # a fixed point
    J = jacobian(nm, x0)
    h = 1e-6
    fd = np.column_stack([(vector_field(x0 + h * e, nm, drive=drive) - vector_field(x0 - h * e, nm, drive=drive)) / (2 * h)
                          for e in np.eye(8)])
    np.testing.assert_allclose(J, fd, rtol=1e-6, atol=1e-6 * np.abs(fd).max())  # central FD accuracy


def _two_sources(connected=True):
    P = prior_mean_spm(2, forward=[[0, 0], [1, 0]] if connected else None,
                       backward=[[0, 1], [0, 0]] if connected else None)
    P["G"][1] = [0.2, -0.1, 0.1, 0.0]
    P["D"][:] = [[0.1, 0.2], [-0.2, 0.0]]
    P["M"][:] = [[0, 0.01], [0.02, 0]]
    return P


def test_multi_source_jacobian_fd_and_delay_fixed_point(rng):
    P = _two_sources()
    nm = neural_from_spm(P, 2)
    drive = np.array([[10.0, 0, 0, 30.0], [0, 5.0, 0, 0]])
    x0 = fixed_point(nm, drive=drive)
    J = jacobian(nm, x0)
    h = 1e-6
    fd = np.column_stack([(vector_field(x0 + h * e, nm, drive=drive) - vector_field(x0 - h * e, nm, drive=drive)) / (2 * h)
                          for e in np.eye(16)])
    np.testing.assert_allclose(J, fd, rtol=1e-6, atol=1e-6 * np.abs(fd).max())  # central FD accuracy
    D = delay_matrix(nm)
    assert len(np.unique(D[J != 0])) >= 4  # zero, two intrinsic and extrinsic delays
    Jd, ok = delayed_jacobian(J, D)
    assert ok
    # the defining equation, row by row, with scipy's expm as independent reference
    rhs = np.array([[sum(J[i, j] * expm(-D[i, j] * Jd)[j, m] for j in range(16)) for m in range(16)]
                    for i in range(16)])
    np.testing.assert_allclose(Jd, rhs, rtol=0, atol=1e-9 * np.abs(J).max())


def test_disconnected_sources_are_independent():
    P = _two_sources(connected=False)
    hz = np.arange(2.0, 60.0)
    G = predict_csd_full(P, hz, n_sources=2).csd
    for i in range(2):
        Pi = {k: v for k, v in P.items()}
        Pi = {"G": P["G"][i], "T": P["T"], "D": P["D"][i, i], "S": P["S"]}
        yi = predict_csd_full(Pi, hz).csd[:, 0, 0]
        np.testing.assert_allclose(G[:, i, i], yi, rtol=1e-9)  # identical equations per source
    from nmm_inference.cmc.spectra import noise_spectra
    from nmm_inference.params import canonical_spm

    _, _, Gn = noise_spectra(canonical_spm(P, 2), hz)
    np.testing.assert_allclose(G[:, 0, 1], Gn, rtol=1e-9)  # off-diagonal: common noise only


def test_csd_is_hermitian_with_connections():
    G = predict_csd_full(_two_sources(), np.arange(1.0, 40.0), n_sources=2).csd
    np.testing.assert_allclose(G, np.conj(np.swapaxes(G, 1, 2)), rtol=1e-12, atol=1e-15)


def test_bad_parameters():
    with pytest.raises(ParameterError, match="unknown SPM parameter field"):
        neural_from_spm({"Q": 1})
    with pytest.raises(ParameterError, match="non-finite"):
        neural_from_spm({"T": [0, np.inf, 0, 0]})
    with pytest.raises(ParameterError, match="shape"):
        neural_from_spm({"T": [0, 0, 0]})
    with pytest.raises(ParameterError, match="positive"):
        predict_csd_full({}, [-1.0, 2.0])


def test_source_space_prediction_is_neural_part(golden):
    g = golden("c12_J_L")  # L = 2: the source prediction uses L = 1 and no channel noise
    hz = np.asarray(g["Hz"], float)
    src = predict_csd_full(g["params"], hz, observation="sources").csd[:, 0, 0].real
    # SPM's csd_neural = |H|^2 Gu with the fitted L; the source prediction divides L out
    np.testing.assert_allclose(src * 2.0**2, g["csd_neural"], rtol=1e-5)
    with pytest.raises(ParameterError, match="observation"):
        predict_csd_full(g["params"], hz, observation="sensor")
