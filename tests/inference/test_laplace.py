"""Mode search: continuation starts for a free dof factor (``find_modes(continuation=...)``)."""

import numpy as np
import pytest

from nmm_inference.errors import ParameterError
from nmm_inference.inference.laplace import _continuation, find_modes


class TwoBumps:
    """A Gaussian mixture in (a, log_dof_scale) with the interface ``find_modes`` uses.

    From the start (0, 0) the gradient leads into bump A at (0, -3); bump B at (2.5, 1.5)
    holds 80 % of the mass but is reached only when ``log_dof_scale`` is first held high:
    the situation of a spectrum whose misfit the optimiser prefers to call noise.
    """

    names = ["a", "log_dof_scale"]
    d = 2
    center = np.zeros(2)
    scale = np.ones(2)
    m = np.array([[0.0, -3.0], [2.5, 1.5]])
    sd = np.array([[1.0, 1.0], [0.5, 0.5]])
    lw = np.log([0.2, 0.8])

    def prior_draws(self, n, rng):
        return np.zeros((0, 2))

    def logp(self, x, grad=True):
        z = (x - self.m) / self.sd
        lc = self.lw - 0.5 * np.sum(z ** 2, axis=1) - np.sum(np.log(self.sd), axis=1)
        mx = lc.max()
        w = np.exp(lc - mx)
        lp = mx + np.log(w.sum())
        w /= w.sum()
        return lp, -(w[:, None] * z / self.sd).sum(axis=0)


def test_continuation_finds_the_mode_a_plain_start_misses():
    plain = find_modes(TwoBumps(), n_starts=1, continuation=None)
    assert len(plain) == 1
    np.testing.assert_allclose(plain[0].phi, [0.0, -3.0], atol=1e-4)   # optimiser tolerance
    both = find_modes(TwoBumps(), n_starts=1, continuation={"log_dof_scale": 1.5})
    assert len(both) == 2
    np.testing.assert_allclose(both[0].phi, [2.5, 1.5], atol=1e-4)     # optimiser tolerance
    # well-separated Gaussian bumps: Laplace weights are the mixture weights (overlap ~1e-7)
    np.testing.assert_allclose([m.weight for m in both], [0.8, 0.2], atol=1e-3)


def test_continuation_auto_holds_log_dof_scale_at_zero_only_when_free():
    assert _continuation(TwoBumps(), "auto") == {1: 0.0}
    other = TwoBumps()
    other.names = ["a", "b"]
    assert _continuation(other, "auto") == {}
    assert _continuation(TwoBumps(), None) == {}


@pytest.mark.parametrize("bad, match", [({"tau_ss": 0.0}, "not a free parameter"),
                                        ({"log_dof_scale": np.nan}, "not finite"),
                                        ("always", "must be 'auto'")])
def test_continuation_bad_input(bad, match):
    with pytest.raises(ParameterError, match=match):
        _continuation(TwoBumps(), bad)
