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


class HalfNormal:
    """exp(-1.1 |x|^2 / 2) in 2-D restricted to x0 < 1 (density 0 beyond: ~16 % of q = N(0, I))."""

    d = 2

    def logp(self, x, grad=True):
        lp = -0.55 * float(x @ x) if x[0] < 1.0 else -np.inf
        return lp, -1.1 * x


def test_laplace_draws_outside_the_support_are_redrawn():
    from nmm_inference.inference.laplace import Mode
    from nmm_inference.inference.samplers import sample_laplace

    m = Mode(phi=np.zeros(2), logp=0.0, cov=np.eye(2), chol=np.eye(2), log_evidence=0.0)
    res = sample_laplace(HalfNormal(), [m], draws=2000, chains=2, random_seed=1)
    x = res.phi.reshape(-1, 2)
    assert np.all(x[:, 0] < 1.0) and np.all(np.isfinite(res.stats["lp"]))
    assert res.info["n_outside_support"] == 0
    # P(x0 > 1) = 0.1587: binomial SD for 4000 draws is 23, so +-5 SD
    assert abs(res.info["n_redrawn_outside_support"] - 0.1587 * 4000) < 5 * 23
    # q restricted to the support is close to p: light-tailed importance ratios
    assert res.info["pareto_k"] < 0.5
    # evidence: (2 pi / 1.1) Phi(sqrt(1.1)); importance-sampling SE ~0.01 (4000 draws, about
    # 16 % of them outside with weight 0), so 0.04 is ~4 SE
    np.testing.assert_allclose(res.log_evidence, np.log(2 * np.pi / 1.1 * 0.85290), atol=0.04)
