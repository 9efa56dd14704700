"""PyTensor Op with analytic gradients, and the import boundary."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from .fullsim import T_DEFAULT, example1_gains


def test_import_does_not_load_heavy_modules():
    code = ("import sys, nmm_inference, nmm_inference.adiabatic;"
            "bad=[m for m in ('pymc','mne','matplotlib','pytensor') if m in sys.modules];"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules loaded: {out.stdout}"


def test_op_values_and_gradients_against_finite_differences():
    pytensor = pytest.importorskip("pytensor")
    import pytensor.tensor as pt

    from nmm_inference.adiabatic import reduce_cmc
    from nmm_inference.adiabatic.pytensor_ops import adiabatic_features

    G0 = example1_gains(3.15)
    lg, lt, R, U = pt.dvector("lg"), pt.dvector("lt"), pt.dscalar("R"), pt.dvector("U")
    f = adiabatic_features(pt.as_tensor(G0) * pt.exp(lg), pt.as_tensor(T_DEFAULT) * pt.exp(lt),
                           R, U, n_modes=2, active=(0,))
    w = np.random.default_rng(0).normal(size=4)
    obj = (f["sigma"][0] + 0.3 * f["omega"][1] + f["a"][0, 1] - f["b"][1, 1]
           + 10 * f["amplitudes"][0] + f["frequencies_hz"][0] + pt.dot(f["envelopes"][0], w))
    fn = pytensor.function([lg, lt, R, U], [obj, *pytensor.grad(obj, [lg, lt, R, U])],
                           mode="FAST_COMPILE")
    x = [np.zeros(10), np.zeros(4), 2 / 3, np.array([0.0, 0.0, 0.0, 50.0])]
    val, *grads = fn(*x)
    red = reduce_cmc(G0, T_DEFAULT, 2 / 3, x[3])
    (st,) = red.stable_states(warn=False)
    ref = (red.sigma[0] + 0.3 * red.omega[1] + red.a[0, 1] - red.b[1, 1] + 10 * st.amplitudes[0]
           + st.frequencies_hz[0] + st.envelopes[0] @ w)
    np.testing.assert_allclose(val, ref, rtol=1e-12)  # same numbers as the numpy API
    for i, g in enumerate(grads):
        base = np.atleast_1d(np.asarray(x[i], float))
        fd = np.empty(base.size)
        for j in range(base.size):
            h = 1e-6 if i < 3 else 1e-3
            xp = [np.array(v, float) for v in x]
            xm = [np.array(v, float) for v in x]
            if base.size == 1:
                xp[i], xm[i] = base[0] + h, base[0] - h
            else:
                xp[i] = base.copy()
                xp[i][j] += h
                xm[i] = base.copy()
                xm[i][j] -= h
            fd[j] = (fn(*xp)[0] - fn(*xm)[0]) / (2 * h)
        # central differences on a smooth map: ~1e-8 relative
        np.testing.assert_allclose(np.atleast_1d(g), fd, rtol=1e-5, atol=1e-7 * np.abs(fd).max())


def test_op_nan_for_missing_state_keeps_other_gradients_finite():
    pytensor = pytest.importorskip("pytensor")
    import pytensor.tensor as pt

    from nmm_inference.adiabatic.pytensor_ops import adiabatic_features

    G = pt.dvector("G")
    f = adiabatic_features(G, T_DEFAULT, 2 / 3, np.zeros(4), n_modes=2, active=(1,))
    fn = pytensor.function([G], [f["amplitudes"], pytensor.grad(f["sigma"][0], G)],
                           mode="FAST_COMPILE")
    amp, g = fn(example1_gains(3.15))
    assert np.isnan(amp).all()          # mode 1 (damped gamma) has no single-mode state
    assert np.all(np.isfinite(g))
