"""Operating point, modes, cubic coefficients and their sensitivities."""
from __future__ import annotations

import numpy as np
import pytest

from nmm_inference.adiabatic import PARAM_NAMES, reduce_cmc
from nmm_inference.adiabatic._core import check_inputs, core_reduction
from nmm_inference.adiabatic._naive import naive_reduction
from nmm_inference.cmc.equations import CMCNeural, fixed_point, jacobian
from nmm_inference.errors import ParameterError

from .fullsim import G_DEFAULT, T_DEFAULT, example1_gains


def _cplx(pairs):
    return np.array([complex(*p) for p in pairs])


def _neural(G, T, R):
    return CMCNeural(G=np.asarray(G)[None], T=np.asarray(T)[None], R=R, A=np.zeros((4, 1, 1)),
                     M=np.zeros((1, 1)), d_intrinsic=np.array([1e-3]),
                     d_extrinsic=np.zeros((1, 1)))


@pytest.mark.parametrize("case", [0, 1, 2])
def test_golden_modes_and_coefficients(adiabatic_golden, case):
    c = adiabatic_golden[case]
    red = reduce_cmc(c["G"], c["T"], c["R"], c["U"])
    # operating point solved to 1e-13 by Newton; golden printed with full precision
    np.testing.assert_allclose(red.operating_point, c["fixed_point_v"], rtol=0, atol=1e-12)
    # eigenvalues of an 8x8 matrix with entries ~1e5: rounding ~1e-12 relative
    np.testing.assert_allclose(red.eigenvalues, _cplx(c["eigenvalues_upper"]), rtol=1e-11)
    for k, md in enumerate(c["modes"]):
        # nu is normalised the same way (largest entry 1, real): agreement to rounding
        np.testing.assert_allclose(red.modes[k].nu, _cplx(md["nu_voltage"]), rtol=0, atol=1e-12)
        np.testing.assert_allclose(red.modes[k].frequency_hz, md["f_Hz"], rtol=1e-12)
    g_ref = np.array([_cplx(row) for row in c["g"]])
    # g is a few 4x4 solves away from the eigenvectors: rounding-level agreement
    np.testing.assert_allclose(red.g[:2, :2], g_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", [0, 1, 2])
def test_left_right_normalisation(adiabatic_golden, case):
    c = adiabatic_golden[case]
    red = reduce_cmc(c["G"], c["T"], c["R"], c["U"])
    A = jacobian(_neural(c["G"], c["T"], c["R"]), red.operating_state)
    for md in red.modes:
        q, p = md.right_vector, md.left_vector
        # q and p are eigenvectors of the package's own 8x8 Jacobian (SPM order)
        np.testing.assert_allclose(A @ q, md.eigenvalue * q, rtol=0, atol=1e-9 * abs(md.eigenvalue))
        np.testing.assert_allclose(np.conj(p) @ A, md.eigenvalue * np.conj(p), rtol=0,
                                   atol=1e-9 * abs(md.eigenvalue) * np.abs(p).max())
        # p^H q = 1 by construction
        np.testing.assert_allclose(np.conj(p) @ q, 1.0, rtol=0, atol=1e-12)


def test_operating_point_matches_cmc_fixed_point(example2):
    G, T, U = example2
    U2 = U + np.array([0, 0, 0, 200.0])
    red = reduce_cmc(G, T, 2 / 3, U2)
    x = fixed_point(_neural(G, T, 2 / 3), drive=U2)
    # both are Newton solutions of the same equation to ~1e-12
    np.testing.assert_allclose(red.operating_state, x, rtol=0, atol=1e-10)


@pytest.mark.parametrize("case", [0, 1, 2])
def test_numba_path_equals_numpy_path(adiabatic_golden, case):
    c = adiabatic_golden[case]
    args = check_inputs(c["G"], c["T"], c["R"], np.asarray(c["U"]) + [0, 0, 0, 20.0])
    fast = core_reduction(*args)
    ref = core_reduction(*args, engine="numpy")
    for key in ("v", "lam", "nu", "mu", "g", "eta3", "real_eigenvalues"):
        scale = max(np.abs(ref[key]).max(), 1.0) if ref[key].size else 1.0
        # same formulas, different summation order: rounding only
        np.testing.assert_allclose(fast[key], ref[key], rtol=0, atol=1e-12 * scale)


@pytest.mark.parametrize("case", [0, 1, 2])
def test_independent_8x8_formulation(adiabatic_golden, case):
    c = adiabatic_golden[case]
    args = check_inputs(c["G"], c["T"], c["R"], np.asarray(c["U"]) + [0, 30.0, 0, 20.0])
    lam, nu, g = naive_reduction(*args)
    red = reduce_cmc(*args)
    np.testing.assert_allclose(red.eigenvalues, lam, rtol=1e-11)  # eig rounding
    np.testing.assert_allclose(red.nu, nu, rtol=0, atol=1e-11)  # eigenvector rounding
    # 4x4 reduced formulas and 8x8 Lyapunov-type formulas agree to rounding (spec §3.3)
    np.testing.assert_allclose(red.g, g, rtol=0, atol=1e-10 * np.abs(g).max())


@pytest.mark.parametrize("case", [1, 2])
def test_sensitivities_match_finite_differences(adiabatic_golden, case):
    c = adiabatic_golden[case]
    G, T, R, U = check_inputs(c["G"], c["T"], c["R"], np.asarray(c["U"]) + [0, 0, 0, 30.0])
    theta = np.concatenate([G, T, [R], U])
    ref = core_reduction(G, T, R, U, tangents=True)
    for p in range(len(PARAM_NAMES)):
        h = 1e-3 if p >= 15 else 1e-6 * theta[p]
        tp, tm = theta.copy(), theta.copy()
        tp[p] += h
        tm[p] -= h
        op = core_reduction(tp[:10], tp[10:14], tp[14], tp[15:])
        om = core_reduction(tm[:10], tm[10:14], tm[14], tm[15:])
        for key in ("v", "lam", "nu", "mu", "g", "eta3"):
            fd = (op[key] - om[key]) / (2 * h)
            # central differences: truncation ~h^2 and rounding ~1e-16/h -> ~1e-7 relative
            np.testing.assert_allclose(ref["d_" + key][p], fd, rtol=0,
                                       atol=2e-5 * max(np.abs(fd).max(), 1e-8),
                                       err_msg=f"d {key} / d {PARAM_NAMES[p]}")


def test_eigenvalue_sensitivity_formula(adiabatic_golden):
    # spec §3.5: d lambda / d W_il = conj(mu_i) kappa_i S'(v_l) nu_l, exact at a fixed operating
    # point; at zero input v* = 0 for every G, so d lambda / d G3 (W[ss, ii] = -G3) follows it
    c = adiabatic_golden[2]
    red = reduce_cmc(c["G"], c["T"], c["R"], np.zeros(4))
    kap = 1.0 / c["T"]
    expected = -np.conj(red._core["mu"][:, 0]) * kap[0] * (c["R"] / 4) * red._core["nu"][:, 2]
    sens = red.eigenvalue_sensitivities()
    np.testing.assert_allclose(sens["G"][:, 2], expected, rtol=1e-12)  # same algebra, rounding
    # log-sensitivities are G * d lambda / dG
    np.testing.assert_allclose(sens["log_G"], sens["G"] * red.G, rtol=1e-14)
    assert sens["T"].shape == (red.n_modes, 4) and sens["R"].shape == (red.n_modes,)


def test_spm_default_has_only_damped_modes():
    red = reduce_cmc(G_DEFAULT, T_DEFAULT)
    # spec §2.5 table, printed to 0.01 1/s
    np.testing.assert_allclose(red.eigenvalues,
                               [-33.79 + 45.64j, -58.60 + 106.27j, -387.2 + 282.7j,
                                -618.7 + 285.7j], atol=0.06)
    st = red.stable_states()
    assert len(st) == 1 and st[0].is_rest
    assert st[0].frequencies_hz.shape == (0,) and st[0].envelopes.shape == (0, 4)


@pytest.mark.parametrize("bad, match", [
    (dict(G=np.ones(9)), "G must have shape"),
    (dict(G=np.r_[np.ones(9), np.nan]), "non-finite"),
    (dict(T=[2, 2, 16, 28]), "seconds"),
    (dict(T=[0.002, -0.002, 0.016, 0.028]), "positive"),
    (dict(R=np.inf), "R"),
    (dict(R=[1.0, 2.0]), "R"),
    (dict(U=(0, 0, 0)), "U must have shape"),
    (dict(U=(0, 0, np.nan, 0)), "non-finite"),
])
def test_bad_input_raises_parameter_error(bad, match):
    kw = dict(G=G_DEFAULT, T=T_DEFAULT, R=2 / 3, U=np.zeros(4))
    kw.update(bad)
    with pytest.raises(ParameterError, match=match):
        reduce_cmc(kw["G"], kw["T"], kw["R"], kw["U"])


def test_shifted_operating_point_coefficient():
    # spec §3.3/§6.1: with 200 input to dp, Re g_11 ~ -2.59 (the cubic-only value is -2.07)
    G = example1_gains(3.15)
    red = reduce_cmc(G, T_DEFAULT, U=(0, 0, 0, 200.0))
    # v* ~ 0.73 in ii and dp (spec, two digits)
    np.testing.assert_allclose(red.operating_point[2:], 0.73, atol=0.02)
    # spec quotes two decimals at a nearby tuning; the quadratic terms make up the difference
    np.testing.assert_allclose(red.a[0, 0], -2.59, atol=0.08)
