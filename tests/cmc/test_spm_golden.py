"""The CMC forward model against SPM's own outputs (../shared/reference/spm_golden)."""
from __future__ import annotations

import numpy as np
import pytest

from nmm_inference.cmc.equations import delay_matrix, delayed_jacobian, jacobian, neural_from_spm
from nmm_inference.cmc.spectra import noise_spectra, predict_csd_full
from nmm_inference.params import canonical_spm
from nmm_inference.spm import predict_csd

from ..conftest import cplx, golden_cases

CASES = golden_cases()


def test_all_twenty_cases_present():
    assert len(CASES) == 20


@pytest.mark.parametrize("case", CASES)
def test_predict_csd_contract(golden, case):
    g = golden(case)
    for hzkey, ykey in (("Hz", "csd_predicted"), ("Hz_4_48", "csd_predicted_4_48")):
        hz = np.asarray(g[hzkey], dtype=float)
        y = predict_csd(g["params"], hz)
        assert y.shape == (hz.size,)
        # the contract: 1e-5 relative on both grids
        np.testing.assert_allclose(y, cplx(g[ykey]).real, rtol=1e-5, atol=0)


@pytest.mark.parametrize("case", CASES)
def test_nodelay_spectrum(golden, case):
    g = golden(case)
    pred = predict_csd_full(g["params"], g["Hz"], delays=False)
    # M.D = 1 path of SPM: no delay operator; SPM's only error is its FD Jacobian (~1e-8)
    np.testing.assert_allclose(pred.csd[:, 0, 0].real, cplx(g["csd_predicted_nodelay"]).real, rtol=1e-6)


@pytest.mark.parametrize("case", CASES)
def test_jacobians_and_noise(golden, case):
    g = golden(case)
    nm = neural_from_spm(g["params"])
    J = jacobian(nm)
    Jg = np.asarray(g["jacobian_undelayed"])
    # SPM's Jacobian is a forward difference with step exp(-8): ~4e-9 relative to the largest entry
    np.testing.assert_allclose(J, Jg, rtol=0, atol=1e-6 * np.abs(Jg).max())
    Jd, ok = delayed_jacobian(J, delay_matrix(nm))
    assert ok
    Jdg = np.asarray(g["jacobian_delayed"])
    # SPM stops its Robbins-Monro series at 1e-6 of ||Jd0||: agreement to a few 1e-6 of the scale
    np.testing.assert_allclose(Jd, Jdg, rtol=0, atol=5e-6 * np.abs(Jdg).max())
    eig = np.sort_complex(np.linalg.eigvals(Jd))
    eg = np.sort_complex(cplx(g["eig_delayed_raw"]))
    np.testing.assert_allclose(eig, eg, rtol=1e-5)  # follows from the Jacobian tolerance above
    Gu, Gs, Gn = noise_spectra(canonical_spm(g["params"]), np.asarray(g["Hz"], float))
    np.testing.assert_allclose(Gu[:, 0], g["Gu"], rtol=1e-12)  # closed forms: rounding only
    np.testing.assert_allclose(Gs[:, 0], g["Gs"], rtol=1e-12)
    np.testing.assert_allclose(Gn, g["Gn"], rtol=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_transfer_function(golden, case):
    g = golden(case)
    pred = predict_csd_full(g["params"], g["Hz"])
    H = pred.transfer[:, 0, 0]
    Hg = cplx(g["transfer_function"])
    # complex transfer function incl. phase; same tolerance budget as the spectra
    np.testing.assert_allclose(H, Hg, rtol=5e-6, atol=1e-7 * np.abs(Hg).max())


def test_unstable_delayed_case_reports_growth(golden):
    g = golden("c15_S2_delayed_unstable")
    pred = predict_csd_full(g["params"], g["Hz"])
    assert pred.max_growth_rate > 80  # SPM's raw delayed eigenvalues reach Re = +87.8
    # SPM stops its delay series at 1e-6 relative: eigenvalues agree to a few 1e-6
    np.testing.assert_allclose(pred.max_growth_rate, max(g["eig_delayed_raw"]["re"]), rtol=1e-5)
    sc = np.sort_complex(pred.eigenvalues_conditioned)
    scg = np.sort_complex(cplx(g["eig_conditioned_used_in_mtf"]))
    # finite conditioned eigenvalues agree; the two pushed to -1e38 agree in order of magnitude
    fin = np.abs(scg.real) < 1e10
    # conditioning re - exp(re) at re = 9.97 magnifies SPM's ~2e-6 eigenvalue error 2e4-fold
    np.testing.assert_allclose(sc[fin], scg[fin], rtol=1e-4)
    assert np.all(sc.real[~fin] < -1e30)
