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


class WalledBumps:
    """Two Gaussian bumps (sd 0.3 in x) at x = 0 and x = 1.2, weights 0.4 / 0.6, with a deep,
    narrow wall at x = 0.6 between them: an optimiser started at the prior mean (-0.3, 0) ends in
    the first bump, and the straight segment between the two crosses the wall.  The second
    coordinate is a standard normal (not informed, prior SD 1)."""

    names = ["x", "y"]
    d = 2
    center = np.array([-0.3, 0.0])
    scale = np.ones(2)
    mx = np.array([0.0, 1.2])
    lw = np.log([0.4, 0.6])

    def prior_draws(self, n, rng):
        return np.zeros((0, 2))

    def logp(self, v, grad=True):
        x, y = v
        z = (x - self.mx) / 0.3
        lc = self.lw - 0.5 * z ** 2
        m = lc.max()
        w = np.exp(lc - m)
        lp = m + np.log(w.sum()) - 0.5 * y ** 2
        w /= w.sum()
        gx = -(w * z / 0.3).sum()
        e = np.exp(-0.5 * ((x - 0.6) / 0.04) ** 2)
        lp -= 200.0 * e
        gx += 200.0 * e * (x - 0.6) / 0.04 ** 2
        return lp, np.array([gx, -y])


def test_exploration_finds_a_mode_behind_a_wall():
    plain = find_modes(WalledBumps(), n_starts=1, explore=False)
    assert len(plain) == 1
    # the other bump's tail moves the maximum by ~6e-4
    np.testing.assert_allclose(plain[0].phi, [0.0, 0.0], atol=2e-3)
    both = find_modes(WalledBumps(), n_starts=1)          # default: excursions of 3 Laplace SDs
    assert len(both) == 2
    np.testing.assert_allclose(both[0].phi, [1.2, 0.0], atol=2e-3)     # as above
    # Laplace weights are the bump weights up to the mass the wall removes and the bumps'
    # overlap (each < 1 % here)
    np.testing.assert_allclose([m.weight for m in both], [0.6, 0.4], atol=0.02)
    assert both[0].n_hits >= 1 and both[1].n_hits >= 2       # the start, and excursions back


def test_exploration_bad_lengths():
    with pytest.raises(ParameterError, match="explore_sd"):
        find_modes(WalledBumps(), n_starts=1, explore_sd=(3.0, -1.0))


def test_exploration_warns_when_rounds_run_out():
    from nmm_inference.errors import ConvergenceWarning

    # round 1 finds the second bump, which is then left unexplored
    with pytest.warns(ConvergenceWarning, match="still finding modes"):
        modes = find_modes(WalledBumps(), n_starts=1, explore_rounds=1)
    assert len(modes) == 2
