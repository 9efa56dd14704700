"""Bifurcation scans along a connection."""
from __future__ import annotations

import numpy as np
import pytest

from nmm_inference.adiabatic import reduce_cmc, scan_parameter
from nmm_inference.errors import ParameterError

from .fullsim import T_DEFAULT, example1_gains


def test_scan_finds_hopf_point_and_state_change():
    G = example1_gains(1.0, 8.7)
    G[8] *= 3.15                           # G9 fixed, scan G6 (dp -> ii)
    res = scan_parameter(G, T_DEFAULT, parameter="G6", values=np.linspace(400, 2000, 17))
    (hopf,) = res.hopf_points
    assert hopf["direction"] == 1 and hopf["criticality"] == "supercritical"
    # at the refined Hopf point the beta growth rate vanishes (secant to 1e-6 relative)
    G_h = G.copy()
    G_h[5] = hopf["value"]
    red = reduce_cmc(G_h, T_DEFAULT)
    k = int(np.argmin(np.abs(red.omega - 2 * np.pi * hopf["frequency_hz"])))
    np.testing.assert_allclose(red.sigma[k], 0.0, atol=1e-4)
    (tr,) = res.transitions
    assert tr["before"] == ((0,),) and tr["after"] == ((0, 1),)
    # the stable-state set changes where beta invades the gamma state (transverse exponent 0),
    # after the Hopf point of the rest state
    assert tr["value"] > hopf["value"]
    G_t = G.copy()
    G_t[5] = tr["value"]
    red = reduce_cmc(G_t, T_DEFAULT)
    (gamma,) = [s for s in red.stationary_states() if s.active == (0,)]
    np.testing.assert_allclose(gamma.transverse_exponents[1], 0.0, atol=1e-3)
    br = res.envelope_branches(population=1)
    assert len(br) > res.values.size and all(e > 0 for *_, e in br)


def test_scan_bad_parameter():
    with pytest.raises(ParameterError, match="unknown parameter"):
        scan_parameter(example1_gains(3.0), T_DEFAULT, parameter="G11", values=[1.0, 2.0])
    with pytest.raises(ParameterError, match="increasing"):
        scan_parameter(example1_gains(3.0), T_DEFAULT, parameter="G6", values=[2.0, 1.0])
