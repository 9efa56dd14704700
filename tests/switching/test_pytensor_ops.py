"""PyTensor Ops: gradients, NUMBA backend, and agreement with the numpy kernels."""
from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.gradient import verify_grad

from nmm_inference.switching.hmm import envelope_hmm_logp as np_envelope_hmm_logp
from nmm_inference.switching.hmm import hmm_logp as np_hmm_logp
from nmm_inference.switching.pytensor_ops import envelope_hmm_logp, hmm_logp


def _data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    x = 0.2 + np.abs(rng.normal(1.0, 0.4, size=(n, 1)))
    st = np.zeros(n, bool)
    st[0] = True
    return x, st


def test_hmm_op_gradient():
    rng = np.random.default_rng(1)
    lb = rng.normal(size=(30, 3))
    P = rng.dirichlet(np.ones(3), size=3)
    st = np.r_[True, np.zeros(29, bool)]
    verify_grad(lambda b, p: hmm_logp(b, p, np.log(np.ones(3) / 3), st), [lb, np.log(P)],
                rng=np.random.default_rng(2))


def test_envelope_op_value_gradient_and_numba_backend():
    x, st = _data()
    s, a, D, k = pt.dmatrix(), pt.dmatrix(), pt.dmatrix(), pt.dvector()
    dt = 0.02
    K = k.sum()
    e = pt.exp(-K * dt)
    P = pt.stack([pt.stack([1 - k[0] / K * (1 - e), k[0] / K * (1 - e)]),
                  pt.stack([k[1] / K * (1 - e), 1 - k[1] / K * (1 - e)])])
    lpi = pt.log(pt.stack([k[1], k[0]]) / K)
    lp = envelope_hmm_logp(x, s, a, D, pt.log(P), lpi, st, dt=dt)
    vals = [np.array([[-3.0], [2.0]]), np.array([[-1.0], [-1.5]]), np.array([[0.5], [0.4]]),
            np.array([1.0, 2.0])]
    outs = {}
    for mode in ("FAST_RUN", "NUMBA"):
        f = pytensor.function([s, a, D, k], [lp] + pytensor.grad(lp, [s, a, D, k]), mode=mode)
        outs[mode] = f(*vals)
    for u, v in zip(outs["FAST_RUN"], outs["NUMBA"]):
        np.testing.assert_allclose(u, v, rtol=1e-12)        # same kernel, two backends
    Pn = np.array([[1 - 1 / 3 * (1 - np.exp(-3 * dt)), 1 / 3 * (1 - np.exp(-3 * dt))],
                   [2 / 3 * (1 - np.exp(-3 * dt)), 1 - 2 / 3 * (1 - np.exp(-3 * dt))]])
    ref = np_envelope_hmm_logp(x, sigma=vals[0], a=vals[1], D=vals[2], log_P=np.log(Pn),
                               log_pi=np.log([2 / 3, 1 / 3]), sfreq=1 / dt)
    np.testing.assert_allclose(outs["NUMBA"][0], ref, rtol=1e-12)
    verify_grad(lambda s_, a_, D_: envelope_hmm_logp(x, s_, a_, D_, np.log(Pn),
                                                     np.log([2 / 3, 1 / 3]), st, dt=dt),
                vals[:3], rng=np.random.default_rng(3), abs_tol=1e-5, rel_tol=1e-5)


def test_envelope_op_stationary_kind_matches_numpy_kernel():
    """The stationary emission kind through the Op (Python perform path): value and gradient
    as the numpy-level function (whose gradient test_hmm checks by finite differences)."""
    x, st = _data(200, seed=4)
    s, a, D = pt.dmatrix(), pt.dmatrix(), pt.dmatrix()
    P = np.array([[0.95, 0.05], [0.1, 0.9]])
    lp = envelope_hmm_logp(x, s, a, D, np.log(P), np.log([2 / 3, 1 / 3]), st, dt=0.05,
                           kind="stationary")
    f = pytensor.function([s, a, D], [lp] + pytensor.grad(lp, [s, a, D]), mode="FAST_COMPILE")
    vals = [np.array([[-3.0], [2.0]]), np.array([[-1.0], [-1.5]]), np.array([[0.5], [0.4]])]
    got = f(*vals)
    ref, g = np_envelope_hmm_logp(x, sigma=vals[0], a=vals[1], D=vals[2], log_P=np.log(P),
                                  log_pi=np.log([2 / 3, 1 / 3]), sfreq=20.0, kind="stationary",
                                  gradient=True)
    np.testing.assert_allclose(got[0], ref, rtol=1e-12)          # same kernel
    for u, name in zip(got[1:], ("sigma", "a", "D")):
        np.testing.assert_allclose(u, g[name], rtol=1e-12)


def test_invalid_parameters_give_minus_inf_not_errors():
    x, st = _data(50)
    f = pytensor.function([], envelope_hmm_logp(x, np.array([[1.0]]), np.array([[5.0]]),
                                                np.array([[0.1]]), np.zeros((1, 1)), np.zeros(1),
                                                st, dt=1.0), mode="NUMBA")
    assert f() == -np.inf     # a > 0: the noise-free flow blows up within the step
    lb = np.full((5, 2), -np.inf)
    g = pytensor.function([], hmm_logp(lb, np.log(np.full((2, 2), 0.5)), np.log([0.5, 0.5]),
                                       np.r_[True, False, False, False, False]))
    assert g() == -np.inf
    assert np.isfinite(np_hmm_logp(np.zeros((5, 2)), np.log(np.full((2, 2), 0.5))))
