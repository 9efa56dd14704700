"""Time-resolved inversion (nmm_inference.onset): per-window fits, linked change-point model."""
from __future__ import annotations

import numpy as np
import pytest

from nmm_inference.errors import DataError, ParameterError
from nmm_inference.onset import _mix_quantiles, _rts, kalman_changepoint


def _dense_reference(m, R, mu0, P0, Q, J, tau):
    """log p(m | tau) and the jump posterior by one dense Gaussian (no recursion)."""
    from scipy.stats import multivariate_normal

    T, p = m.shape
    s = (np.arange(T) >= tau).astype(float)
    cov = np.zeros((T * p, T * p))
    for t in range(T):
        for u in range(T):
            blk = P0 + min(t, u) * Q + s[t] * s[u] * J
            if t == u:
                blk = blk + R[t]
            cov[t * p:(t + 1) * p, u * p:(u + 1) * p] = blk
    mean = np.tile(mu0, T)
    ll = multivariate_normal(mean, cov).logpdf(m.ravel())
    cross = np.hstack([s[t] * J for t in range(T)])            # Cov(delta, m)
    gain = np.linalg.solve(cov, cross.T).T
    dmean = gain @ (m.ravel() - mean)
    dcov = J - gain @ cross.T
    return ll, dmean, dcov


def _toy(T=12, p=2, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((T, p, p))
    R = 0.1 * np.eye(p) + 0.05 * A @ np.swapaxes(A, 1, 2)
    m = rng.standard_normal((T, p)) + (np.arange(T) >= 7)[:, None] * np.array([2.0, -1.0])
    mu0 = np.array([0.3, -0.2])[:p]
    P0 = np.diag([1.0, 2.0])[:p, :p]
    Q = np.array([[0.02, 0.005], [0.005, 0.01]])[:p, :p]
    J = np.diag([1.5, 0.7])[:p, :p]
    return m, R, mu0, P0, Q, J


def test_kalman_changepoint_matches_dense_gaussian():
    m, R, mu0, P0, Q, J = _toy()
    taus = np.array([1, 4, 7, 11, 12])     # 12 = T: no change
    out = kalman_changepoint(m, R, mu0=mu0, P0=P0, Q=Q, J=J, taus=taus)
    for k, tau in enumerate(taus):
        ll, dm, dc = _dense_reference(m, R, mu0, P0, Q, J, tau)
        # both exact; differences are floating-point rounding of 24x24 solves
        np.testing.assert_allclose(out["loglik"][k], ll, rtol=0, atol=1e-8)
        np.testing.assert_allclose(out["delta_mean"][k], dm, rtol=0, atol=1e-8)
        np.testing.assert_allclose(out["delta_cov"][k], dc, rtol=0, atol=1e-8)


def test_rts_smoother_matches_dense_gaussian():
    m, R, mu0, P0, Q, J = _toy(T=8)
    tau = 5
    kf = kalman_changepoint(m, R, mu0=mu0, P0=P0, Q=Q, J=J, taus=[tau], keep=True)
    ms, Ps = _rts(kf["mf"], kf["Pf"], kf["Pp"])
    T, p = m.shape
    s = (np.arange(T) >= tau).astype(float)
    # dense posterior of theta_t = x_t + s_t delta given all m
    cov = np.zeros((T * p, T * p))
    for t in range(T):
        for u in range(T):
            cov[t * p:(t + 1) * p, u * p:(u + 1) * p] = P0 + min(t, u) * Q + s[t] * s[u] * J
    covm = cov + np.kron(np.eye(T), np.ones((p, p))) * 0
    for t in range(T):
        covm[t * p:(t + 1) * p, t * p:(t + 1) * p] += R[t]
    gain = np.linalg.solve(covm, cov).T
    post_mean = np.tile(mu0, T) + gain @ (m.ravel() - np.tile(mu0, T))
    post_cov = cov - gain @ cov
    mu = ms[:, 0, :p] + s[:, None] * ms[:, 0, p:]
    var = (np.diagonal(Ps[:, 0, :p, :p], axis1=1, axis2=2)
           + s[:, None] ** 2 * np.diagonal(Ps[:, 0, p:, p:], axis1=1, axis2=2)
           + 2 * s[:, None] * np.diagonal(Ps[:, 0, :p, p:], axis1=1, axis2=2))
    # exact in both; floating-point rounding only
    np.testing.assert_allclose(mu.ravel(), post_mean, atol=1e-8)
    np.testing.assert_allclose(var.ravel(), np.diag(post_cov), atol=1e-8)


def test_mixture_quantiles_against_sampling():
    from scipy.stats import norm

    w = np.array([0.3, 0.7])
    mu = np.array([[-1.0], [2.0]])
    sd = np.array([[0.5], [1.0]])
    q = _mix_quantiles(w, mu, sd, [0.03, 0.5, 0.97])[:, 0]
    F = [np.sum(w * norm.cdf((x - mu[:, 0]) / sd[:, 0])) for x in q]
    # bisection to 60 halvings of a ~30-wide bracket: CDF exact to ~1e-12
    np.testing.assert_allclose(F, [0.03, 0.5, 0.97], atol=1e-9)


def test_two_filter_matches_batched_kalman():
    from nmm_inference.onset import changepoint_two_filter

    m, R, mu0, P0, Q, J = _toy(T=15, seed=3)
    taus = np.arange(1, 16)
    ref = kalman_changepoint(m, R, mu0=mu0, P0=P0, Q=Q, J=J, taus=taus)
    out = changepoint_two_filter(m, R, mu0=mu0, P0=P0, Q=Q, J=J, taus=taus)
    # both exact for the same model (validated against the dense Gaussian above): rounding only
    np.testing.assert_allclose(out["loglik"], ref["loglik"], rtol=0, atol=1e-8)
    np.testing.assert_allclose(out["delta_mean"][:-1], ref["delta_mean"][:-1], atol=1e-8)
    np.testing.assert_allclose(out["delta_cov"][:-1], ref["delta_cov"][:-1], atol=1e-8)


# ----------------------------------------------------------------------------- linked model


def _fake_fits(m, C, prior_mean, prior_sd, names, step=1.0):
    """A Dataset shaped like fit_windows' output (one channel)."""
    import xarray as xr

    T = m.shape[0]
    return xr.Dataset(
        {"map": (("channel", "window", "param"), m[None]),
         "cov": (("channel", "window", "param", "param_"), C[None]),
         "logp": (("channel", "window"), np.zeros((1, T))),
         "prior_mean": (("param",), prior_mean), "prior_sd": (("param",), prior_sd)},
        coords={"channel": ["x"], "window": np.arange(T), "param": names, "param_": names,
                "time": ("window", step * np.arange(T) + 1.0)})


def _simulate_posteriors(T, tau, jump, seed, sd_post=0.08):
    """Per-window Gaussian posteriors of a random walk with a jump (prior N(0, 0.25^2))."""
    rng = np.random.default_rng(seed)
    names = ["a", "b", "filter_offset"]
    prior_sd = np.array([0.25, 0.25, np.nan])
    p = 3
    theta = np.cumsum(0.002 * rng.standard_normal((T, p)), axis=0) + np.array([0.1, -0.1, -20.0])
    theta[tau:] += jump
    # likelihood N(theta; obs, s^2) and prior N(0, 0.25^2) -> posterior; filter_offset flat
    s2 = sd_post ** 2
    obs = theta + sd_post * rng.standard_normal((T, p))
    post_prec = 1 / s2 + np.where(np.isfinite(prior_sd), 1 / np.nan_to_num(prior_sd, nan=1.0) ** 2, 0)
    post_var = 1 / post_prec
    m = post_var * obs / s2
    C = np.zeros((T, p, p))
    C[:, np.arange(p), np.arange(p)] = post_var
    return _fake_fits(m, C, np.array([0.0, 0.0, np.nan]), prior_sd, names)


def test_link_recovers_a_known_change_and_which_parameters_move():
    from nmm_inference.onset import link_windows

    fits = _simulate_posteriors(T=80, tau=50, jump=np.array([0.5, 0.0, 1.0]), seed=2)
    # the window posteriors are exactly Gaussian here: dividing out the prior is exact
    tree = link_windows(fits, params=["a", "b", "filter_offset"], kappa_grid=(1.0, 2.0),
                        measurement="likelihood")
    a = tree.attrs
    truth = 50.5      # midpoint between window centres 50 and 51
    # a 6-SD jump in two parameters: the onset is known to within a window or two
    assert a["onset_lower"] <= truth <= a["onset_upper"]
    assert abs(a["onset_median"] - truth) <= 1.0
    assert a["p_change"] > 0.999
    chg = tree["change"].to_dataset().isel(channel=0)
    assert bool(chg["moves"].sel(param="a")) and bool(chg["moves"].sel(param="filter_offset"))
    assert not bool(chg["moves"].sel(param="b"))
    # the jump intervals cover the truth (94 % intervals; fixed seed)
    for nm, true in (("a", 0.5), ("b", 0.0), ("filter_offset", 1.0)):
        assert float(chg["lower"].sel(param=nm)) <= true <= float(chg["upper"].sel(param=nm))
    traj = tree["trajectory"].to_dataset().isel(channel=0)
    assert traj["mean"].dims == ("window", "param") and "time" in traj.coords
    assert np.all(traj["lower"] <= traj["mean"]) and np.all(traj["mean"] <= traj["upper"])


def test_link_without_change_prefers_no_change():
    from nmm_inference.onset import link_windows

    fits = _simulate_posteriors(T=80, tau=80, jump=np.zeros(3), seed=4)
    for meas in ("likelihood", "posterior"):
        tree = link_windows(fits, params=["a", "b", "filter_offset"], kappa_grid=(1.0, 2.0),
                            measurement=meas)
        # stationary data: the Bayes factor favours the no-change model (prior 1/2)
        assert tree.attrs["p_change"] < 0.5


def test_link_posterior_measurements_find_the_change_and_shrink_the_jump():
    from nmm_inference.onset import link_windows

    fits = _simulate_posteriors(T=80, tau=50, jump=np.array([0.5, 0.0, 1.0]), seed=2)
    tree = link_windows(fits, params=["a", "b", "filter_offset"], kappa_grid=(1.0, 2.0))
    a = tree.attrs
    assert a["onset_lower"] <= 50.5 <= a["onset_upper"] and abs(a["onset_median"] - 50.5) <= 1
    chg = tree["change"].to_dataset().isel(channel=0)
    # each window's posterior shrinks 'a' by s^2/(s^2 + prior^2) = 0.093 towards 0: the jump
    # is about 0.5 * (1 - 0.093) = 0.45; the flat-prior filter_offset is not shrunk
    assert 0.35 < float(chg["mean"].sel(param="a")) < 0.5
    assert float(chg["lower"].sel(param="filter_offset")) <= 1.0 <= float(chg["upper"].sel(param="filter_offset"))


def test_link_bad_input():
    from nmm_inference.onset import GAIN_COORD, link_windows

    fits = _simulate_posteriors(T=30, tau=15, jump=np.zeros(3), seed=0)
    with pytest.raises(ParameterError, match="not in the window fits"):
        link_windows(fits, params=["nope"])
    with pytest.raises(ParameterError, match="p_change"):
        link_windows(fits, params=["a"], p_change=1.0)
    with pytest.raises(ParameterError, match="min_segment"):
        link_windows(fits, params=["a"], min_segment=0)
    with pytest.raises(DataError, match="too few"):
        link_windows(fits, params=["a"], min_segment=20)
    fits2 = fits.assign_coords(param=["a", GAIN_COORD, "filter_offset"],
                               param_=["a", GAIN_COORD, "filter_offset"])
    with pytest.raises(ParameterError, match="cannot be linked"):
        link_windows(fits2, params=[GAIN_COORD])


# ------------------------------------------------------------------------- per-window fits

HZ = np.arange(1.0, 45.5, 0.5)
DOF = np.full(HZ.size, 14.0)


def _model_spectra(T, tau, seed, d_gii=-0.6, d_offset=1.0):
    """Spectra drawn exactly from the Whittle/Gamma model, parameters stepping at ``tau``."""
    from nmm_inference.cmc.kernel import FREE_NAMES, spectrum, theta_from_spm

    th0 = theta_from_spm({})
    th0[FREE_NAMES.index("lfp_gain")] = 4.0
    th1 = th0.copy()
    th1[FREE_NAMES.index("g_ii_ii")] += d_gii
    th1[FREE_NAMES.index("filter_offset")] += d_offset
    S0, S1 = spectrum(th0, HZ)[0], spectrum(th1, HZ)[0]
    rng = np.random.default_rng(seed)
    return np.array([(S1 if t >= tau else S0) * rng.gamma(7.0, 1 / 7.0, HZ.size)
                     for t in range(T)])


def _psd(Y, step=1.0):
    import xarray as xr

    T = Y.shape[0]
    return xr.DataArray(Y[:, None, :], dims=("window", "channel", "freq"),
                        coords={"freq": HZ, "dof": ("freq", DOF), "channel": ["x"],
                                "window_center": ("window", step * np.arange(T) + 1.0)},
                        attrs={"window_length": 2.0, "step": step})


def test_offset_summary_matches_exact_conditional_draws():
    from nmm_inference.onset import _problem, fit_window

    y = _model_spectra(1, 1, seed=5)[0]
    r = fit_window(y, HZ, DOF, n_starts=2, random_seed=0)
    prob = _problem(y, HZ, DOF, None)
    d = prob.d
    rng = np.random.default_rng(1)
    phi = rng.multivariate_normal(r["phi"], r["cov"][:d, :d], size=1500)
    theta, _ = prob.theta_matrix(phi, rng)
    f = prob.to_named(theta)["filter_offset"]
    j = r["names"].index("tau_ii")
    # delta method vs exact conditional draws over the same Gaussian: agree to the Monte-Carlo
    # error (sd/sqrt(1500) ~ 2.6 % of the sd) plus the linearisation error (a few %)
    sd = np.sqrt(r["cov"][-1, -1])
    assert abs(f.mean() - r["map"][-1]) < 0.1 * sd
    assert abs(f.std() / sd - 1) < 0.1
    cov_mc = np.cov(phi[:, j], f)[0, 1]
    assert abs(cov_mc - r["cov"][j, -1]) < 0.1 * sd * np.sqrt(r["cov"][j, j])


def test_fit_window_bad_input():
    from nmm_inference.onset import fit_window

    y = _model_spectra(1, 1, seed=0)[0]
    with pytest.raises(ParameterError, match="n_starts"):
        fit_window(y, HZ, DOF, n_starts=0)
    with pytest.raises(ParameterError, match="init"):
        fit_window(y, HZ, DOF, init=np.zeros(3))
    with pytest.raises(ParameterError, match="data_scale"):
        fit_window(y, HZ, DOF, problem_kwargs={"data_scale": "spm"})


def test_fit_windows_store_matches_in_process_and_refuses_other_settings(tmp_path):
    from nmm_inference.onset import fit_windows

    psd = _psd(_model_spectra(6, 3, seed=1))
    a = fit_windows(psd, chunk_size=3, n_starts=1, n_starts_cold=2, random_seed=3)
    b = fit_windows(psd, chunk_size=3, n_starts=1, n_starts_cold=2, random_seed=3,
                    store=tmp_path / "s", scheduler="sync")
    # the same seeds per unit key: identical optima (deterministic L-BFGS-B)
    np.testing.assert_allclose(a["map"].values, b["map"].values, rtol=0, atol=1e-10)
    assert len(list((tmp_path / "s" / "units").glob("*.nc"))) == 2
    with pytest.raises(DataError, match="other data or settings"):
        fit_windows(psd, chunk_size=2, n_starts=1, n_starts_cold=2, random_seed=3,
                    store=tmp_path / "s", scheduler="sync")
    with pytest.raises(DataError, match="dof"):
        fit_windows(psd.drop_vars("dof"))
    with pytest.raises(DataError, match="not in"):
        fit_windows(psd, channels=["nope"])


def test_end_to_end_onset_on_model_spectra():
    """Spectra drawn from the model with a step in g_ii_ii and the overall scale."""
    from nmm_inference.onset import fit_windows, link_windows

    T, tau = 30, 16
    fits = fit_windows(_psd(_model_spectra(T, tau, seed=1, d_offset=2.0)), chunk_size=30,
                       n_starts=2, n_starts_cold=4, random_seed=0)
    assert np.all(np.isfinite(fits["logp"].values))
    tree = link_windows(fits)
    a = tree.attrs
    truth = tau + 0.5      # window centres are t + 1 s: between window 15 (16 s) and 16 (17 s)
    # a step of two e-folds in power plus a gain change: located to within a few windows
    assert a["onset_lower"] <= truth <= a["onset_upper"]
    assert abs(a["onset_median"] - truth) <= 2.0
    assert a["p_change"] > 0.5       # measured 0.86 (seed fixed)
    chg = tree["change"].to_dataset().isel(channel=0)
    # the scale moves up; with posterior measurements its jump is shrunk below the true 2.0
    # (measured 1.26 [0.71, 1.81], P(move) = 1.00; the per-window g_ii_ii posterior is close
    # to its prior in single 2-s windows, so its jump is not asserted)
    assert float(chg["prob_move"].sel(param="filter_offset")) > 0.99
    assert 0.5 < float(chg["mean"].sel(param="filter_offset")) < 2.5


def test_fit_windows_failed_unit_becomes_nan(tmp_path, monkeypatch):
    import nmm_inference.onset as onset

    psd = _psd(_model_spectra(4, 2, seed=1))
    real = onset._fit_chunk

    def flaky(payload, *, random_seed=None):
        if payload["window"][0] == 2:
            raise RuntimeError("worker lost")
        return real(payload, random_seed=random_seed)

    monkeypatch.setattr(onset, "_fit_chunk", flaky)
    out = onset.fit_windows(psd, chunk_size=2, n_starts=1, n_starts_cold=1, random_seed=0,
                            store=tmp_path / "s", scheduler="sync")
    logp = out["logp"].values[0]
    assert np.all(np.isfinite(logp[:2])) and np.all(np.isnan(logp[2:]))
    assert "c000-w00002" in out.attrs["failed_units"]
    assert list(out["time"].values) == [1.0, 2.0, 3.0, 4.0]


def test_link_robust_weights_downweight_mode_switches():
    from nmm_inference.onset import link_windows

    fits = _simulate_posteriors(T=80, tau=80, jump=np.zeros(3), seed=6)
    m = fits["map"].values.copy()
    m[0, 30:33, 0] += 1.5          # three windows in 'another mode' of parameter a (~19 SD)
    fits["map"] = (fits["map"].dims, m)
    tree = link_windows(fits, params=["a", "b", "filter_offset"], kappa_grid=(1.0, 2.0))
    w = tree["windows"].to_dataset()["weight"].values[0]
    # Student-t (4 dof) EM weights: (nu + 1) / (nu + z^2) ~ 5 / 350 for the outliers, ~1 else
    assert np.all(w[30:33, 0] < 0.1)
    assert np.median(w[:, 0]) > 0.8 and np.all(w[30:33, 1:] > 0.2)
    # the outliers do not pose as a change: a persistent jump would need all later windows
    assert tree.attrs["p_change"] < 0.5


def test_scalar_changepoint_matches_matrix_filter():
    from nmm_inference.onset import changepoint_scalar, changepoint_two_filter

    m, R, mu0, P0, Q, J = _toy(T=15, seed=5)
    # two independent scalar series = the matrix filter with diagonal matrices
    Rd = np.diagonal(R, axis1=1, axis2=2)
    taus = np.arange(1, 16)
    sc = changepoint_scalar(m, Rd, mu0=mu0, P0=np.diag(P0), Q=np.diag(Q), J=np.diag(J), taus=taus)
    for j in range(2):
        ref = changepoint_two_filter(m[:, [j]], Rd[:, j, None, None], mu0=mu0[[j]],
                                     P0=P0[j:j + 1, j:j + 1], Q=Q[j:j + 1, j:j + 1],
                                     J=J[j:j + 1, j:j + 1], taus=taus)
        # same exact recursions, scalar vs matrix code: rounding only
        np.testing.assert_allclose(sc["loglik"][:, j], ref["loglik"], atol=1e-9)
        np.testing.assert_allclose(sc["delta_mean"][:-1, j], ref["delta_mean"][:-1, 0], atol=1e-9)
        np.testing.assert_allclose(sc["delta_var"][:-1, j], ref["delta_cov"][:-1, 0, 0], atol=1e-9)


def test_stitch_repairs_a_window_left_in_a_worse_optimum():
    from nmm_inference.onset import _stitch, fit_window

    Y = _model_spectra(4, 10, seed=2)
    fits = __import__("nmm_inference.onset", fromlist=["fit_windows"]).fit_windows(
        _psd(Y), chunk_size=4, n_starts=1, n_starts_cold=2, random_seed=0).isel(channel=0)
    bad = fits.copy(deep=True)
    lp = bad["logp"].values
    lp[2] = lp[2] - 50.0          # pretend window 2 (first of a unit) sits in a worse optimum
    bad["logp"] = (bad["logp"].dims, lp)
    out, k = _stitch(bad, Y, HZ, DOF, [2], None)
    ref = fit_window(Y[2], HZ, DOF, init=fits["map"].values[1, :-1], n_starts=1)
    # window 2 is restarted from window 1's optimum and takes it (deterministic L-BFGS-B)
    assert k >= 1
    np.testing.assert_allclose(out["logp"].values[2], ref["logp"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(out["logp"].values[:2], fits["logp"].values[:2], rtol=0, atol=1e-9)
