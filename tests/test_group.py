"""Group-level inference: two-stage model, joint model, hypothesis comparison."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from nmm_inference.errors import DataError, ParameterError
from nmm_inference.group import (_evidence_given_tau, compare_group_hypotheses, fit_group,
                                 group_effects_table, group_log_evidence, marginal_loglik,
                                 plot_group_effects, remove_first_level_prior,
                                 summarize_posteriors)
from nmm_inference.group_joint import (_initial_values, build_joint_model, fit_joint,
                                       marginal_scale_loglik, simulate_cohort)


def _cohort(rng, n_per_group=20, effect=0.3):
    names = ["g_ii_ss", "tau_ii", "sigmoid_slope"]
    n = 2 * n_per_group
    X = np.column_stack([np.ones(n), np.r_[np.zeros(n_per_group), np.ones(n_per_group)]])
    beta = np.array([[0.0, 0.05, 0.0], [effect, 0.0, 0.0]])  # patients differ in g_ii_ss only
    tau = np.array([0.1, 0.08, 0.05])
    theta = X @ beta + tau * rng.standard_normal((n, 3))
    # first-level posteriors: draws around the truth with recording-specific uncertainty
    posts = []
    for r in range(n):
        sd = np.array([0.08, 0.1, 0.05]) * rng.uniform(0.7, 1.3)
        center = theta[r] + sd * rng.standard_normal(3)
        draws = center + sd * rng.standard_normal((2000, 3))
        posts.append({k: draws[:, i] for i, k in enumerate(names)})
    return names, X, beta, posts


def test_group_difference_recovered():
    # A 94 % HDI excludes a null effect by chance in ~6 % of cohorts; this cohort (data seed 0,
    # the first tried) has raw group differences of the null parameters within 1 SE (checked
    # below), so the check is about the model, not about a chance realisation.
    names, X, beta, posts = _cohort(np.random.default_rng(0))
    m, C = summarize_posteriors(posts, names)
    g = X[:, 1] == 1
    z = (m[g].mean(0) - m[~g].mean(0)) / np.sqrt(m[g].var(0, ddof=1) / g.sum() + m[~g].var(0, ddof=1) / (~g).sum())
    assert np.all(np.abs(z[1:]) < 1.0)
    dt = fit_group(m, C, X, names=names, covariates=["mean", "patient"], draws=500, tune=500,
                   chains=2, random_seed=1)
    rows = {(r["covariate"], r["param"]): r for r in group_effects_table(dt)}
    eff = rows[("patient", "g_ii_ss")]
    assert eff["hdi_low"] <= beta[1, 0] <= eff["hdi_high"]  # truth inside the 94 % HDI
    assert eff["excludes_zero"]                              # and the difference is detected
    for p in ("tau_ii", "sigmoid_slope"):                    # null effects are not reported
        assert not rows[("patient", p)]["excludes_zero"]
    assert dt["posterior"]["theta"].dims[-2:] == ("recording", "param")
    assert dt["constant_data"]["design"].dims == ("recording", "covariate")
    # LOO log-likelihood: one value per recording, theta_r integrated out (closed form)
    ll = dt["log_likelihood"]["m"]
    assert ll.dims == ("chain", "draw", "recording")
    b = dt["posterior"]["beta"].isel(chain=0, draw=3).values
    t = dt["posterior"]["tau"].isel(chain=0, draw=3).values
    ref = stats.multivariate_normal(X[5] @ b, C[5] + np.diag(t ** 2)).logpdf(m[5])
    assert ll.isel(chain=0, draw=3, recording=5).item() == pytest.approx(ref, rel=1e-10)  # same formula, rounding only
    import arviz as az

    loo = az.loo(dt, var_name="m")                           # LOO over recordings
    assert np.isfinite(loo.elpd) and np.asarray(loo.pareto_k).size == X.shape[0]
    fig = plot_group_effects(dt, truth={("patient", "g_ii_ss"): 0.3})
    assert len(fig.axes[0].get_yticklabels()) == 3          # one row per parameter of 'patient'


def test_remove_first_level_prior(rng):
    # Gaussian likelihood x Gaussian prior -> posterior; dividing the prior out must return
    # the likelihood exactly (closed form)
    p = 3
    A = rng.standard_normal((p, p))
    C_lik = A @ A.T * 0.01 + np.eye(p) * 0.005
    m_lik = rng.standard_normal(p) * 0.2
    mu0, sd0 = np.array([0.0, 0.1, -0.2]), np.array([0.2, 0.3, 0.25])
    P0 = np.diag(1 / sd0 ** 2)
    C_post = np.linalg.inv(np.linalg.inv(C_lik) + P0)
    m_post = C_post @ (np.linalg.solve(C_lik, m_lik) + P0 @ mu0)
    m, C = remove_first_level_prior(m_post[None], C_post[None], mu0, sd0)
    np.testing.assert_allclose(m[0], m_lik, atol=1e-10)     # exact algebra, float rounding only
    np.testing.assert_allclose(C[0], C_lik, rtol=1e-8, atol=1e-12)
    with pytest.raises(DataError, match="not narrower"):
        remove_first_level_prior(m_post[None], np.diag(sd0 ** 2)[None] * 1.5, mu0, sd0)


def test_marginal_loglik_matches_scipy(rng):
    m = rng.standard_normal((4, 2))
    C = np.array([np.diag(rng.uniform(0.01, 0.05, 2)) for _ in range(4)])
    X = np.column_stack([np.ones(4), [0, 0, 1, 1]])
    beta = rng.standard_normal((2, 2))
    tau = np.array([0.2, 0.3])
    ll = marginal_loglik(m, C, X, beta, tau)
    ref = [stats.multivariate_normal(X[r] @ beta, C[r] + np.diag(tau ** 2)).logpdf(m[r]) for r in range(4)]
    np.testing.assert_allclose(ll, ref, rtol=1e-12)          # same density, rounding only


def test_evidence_given_tau_matches_dense_gaussian(rng):
    # beta integrated out analytically (Woodbury) against the dense joint Gaussian of vec(m)
    n, p = 5, 2
    X = np.column_stack([np.ones(n), [0, 0, 1, 1, 1], rng.standard_normal(n)])
    m = rng.standard_normal((n, p)) * 0.3
    C = np.array([np.diag(rng.uniform(0.01, 0.04, p)) + 0.005 for _ in range(n)])
    mu = rng.standard_normal((3, p)) * 0.1
    sd = rng.uniform(0.3, 1.0, (3, p))
    mask = np.array([[True, True], [True, False], [False, True]])
    tau = np.array([0.15, 0.25])
    Z = np.zeros((n * p, 3 * p))
    for r in range(n):
        for c in range(3):
            for j in range(p):
                Z[r * p + j, c * p + j] = X[r, c]
    keep = mask.ravel()
    mean = Z[:, keep] @ mu.ravel()[keep]
    cov = np.zeros((n * p, n * p))
    for r in range(n):
        cov[r * p:(r + 1) * p, r * p:(r + 1) * p] = C[r] + np.diag(tau ** 2)
    cov += Z[:, keep] @ np.diag(sd.ravel()[keep] ** 2) @ Z[:, keep].T
    ref = stats.multivariate_normal(mean, cov).logpdf(m.ravel())
    got = _evidence_given_tau(m, C, X, mu, sd, mask, tau)
    assert got == pytest.approx(ref, rel=1e-10)               # exact identity, rounding only


def test_group_log_evidence_against_quadrature(rng):
    # one parameter: integrate p(m | tau) p(tau) over tau by adaptive quadrature
    n = 8
    X = np.column_stack([np.ones(n), np.r_[np.zeros(4), np.ones(4)]])
    m = (X @ np.array([[0.0], [0.3]]) + 0.1 * rng.standard_normal((n, 1))
         + 0.05 * rng.standard_normal((n, 1)))
    C = np.full((n, 1, 1), 0.05 ** 2)
    tau_sd = 0.5
    mu, sd, mask = np.zeros((2, 1)), np.ones((2, 1)), np.ones((2, 1), bool)

    def f(t):
        return np.exp(_evidence_given_tau(m, C, X, mu, sd, mask, np.array([t]))) * 2 * stats.norm(0, tau_sd).pdf(t)

    ref = np.log(integrate.quad(f, 0, 5 * tau_sd, points=[0.05, 0.1, 0.2], limit=200, epsabs=0)[0])
    lz, se, ess = group_log_evidence(m, C, X, tau_sd=tau_sd, n_draws=2000, random_seed=0)
    assert ess > 500                                         # the t proposal covers the posterior of log tau
    assert abs(lz - ref) < 4 * se + 1e-3                     # Monte Carlo error only


def _two_param_cohort(rng, n=24):
    X = np.column_stack([np.ones(n), np.r_[np.zeros(n // 2), np.ones(n // 2)]])
    theta = X @ np.array([[0.0, 0.0], [0.4, 0.0]]) + np.array([0.1, 0.1]) * rng.standard_normal((n, 2))
    C = np.tile(np.diag([0.1, 0.1]) ** 2, (n, 1, 1))
    return theta + 0.1 * rng.standard_normal((n, 2)), C, X


def test_compare_hypotheses_by_evidence(rng):
    m, C, X = _two_param_cohort(rng)
    dt = compare_group_hypotheses(m, C, X, names=["a", "b"], covariates=["mean", "patient"],
                                  test_covariate="patient", loo=False, n_evidence_draws=1000,
                                  random_seed=4)
    comp = dt["comparison"].to_dataset()
    assert comp.attrs["best_evidence"] == "a"
    # a 0.4 difference with 12 + 12 recordings (SE ~0.06): decisive against "none" and "b"
    assert comp["posterior_prob"].sel(hypothesis="a") + comp["posterior_prob"].sel(hypothesis="all") > 0.99
    assert comp["posterior_prob"].sel(hypothesis="a") > comp["posterior_prob"].sel(hypothesis="all")  # Occam
    assert bool(comp["differs"].sel(hypothesis="a", param="a")) and not bool(comp["differs"].sel(hypothesis="a", param="b"))
    assert np.all(comp["log_evidence_se"] < 0.1)            # 1000 importance draws, ESS > 500
    with pytest.raises(ParameterError, match="unknown parameters"):
        compare_group_hypotheses(m, C, X, names=["a", "b"], covariates=["mean", "patient"],
                                 test_covariate="patient", hypotheses={"x": ["c"]}, loo=False)


@pytest.mark.slow
def test_compare_hypotheses_by_loo(rng):
    m, C, X = _two_param_cohort(rng)
    dt = compare_group_hypotheses(m, C, X, names=["a", "b"], covariates=["mean", "patient"],
                                  test_covariate="patient", hypotheses={"none": [], "a": ["a"], "b": ["b"]},
                                  draws=300, tune=300, chains=2, random_seed=4)
    comp = dt["comparison"].to_dataset()
    assert comp.attrs["best_evidence"] == "a" and comp.attrs["best_loo"] == "a"
    assert dt["a/posterior"]["beta"].sel(covariate="patient", param="b").values.max() == 0.0  # held at zero
    assert dt["a/log_likelihood"]["m"].dims == ("chain", "draw", "recording")


def test_marginal_scale_loglik_against_quadrature(rng):
    hz_n = 12
    S = rng.uniform(0.5, 2.0, hz_n)
    dof = rng.uniform(10, 30, hz_n)
    y = S * 3.0 * rng.gamma(dof / 2, 2 / dof)

    def integrand(f):
        return np.exp(np.sum(stats.gamma(dof / 2, scale=S * np.exp(f) * 2 / dof).logpdf(y)) + 40.0)

    ref = np.log(integrate.quad(integrand, -5, 8, points=[np.log(3.0)], limit=200)[0]) - 40.0
    assert marginal_scale_loglik(y, S, dof) == pytest.approx(ref, abs=1e-7)   # quadrature error


def test_joint_model_logp_matches_numpy(rng):
    from nmm_inference.cmc.kernel import FREE_NAMES, spectrum

    hz = np.arange(4.0, 30.0)
    X = np.column_stack([np.ones(4), [0, 0, 1, 1]])
    names = ["g_ii_ss", "tau_ss"]
    sim = simulate_cohort(X, np.array([[0.0, 0.0], [0.3, 0.0]]), np.array([0.1, 0.1]), names=names,
                          freqs=hz, dof=60, fixed={"lfp_gain": 6.0}, random_seed=3)
    model = build_joint_model(sim["spectra"], hz, 60, X, names=names, covariates=["mean", "patient"],
                              fixed={"lfp_gain": 6.0}, tau_sd=0.5, parameterization="noncentred")
    pt_ = model.initial_point()
    pt_["beta"] = np.array([[0.05, -0.1], [0.2, 0.1]])
    pt_["tau_log__"] = np.log([0.2, 0.1])
    pt_["eps"] = rng.standard_normal((4, 2))
    lp = model.compile_logp(mode="FAST_COMPILE")(pt_)      # one evaluation: no C/numba compile
    tau = np.exp(pt_["tau_log__"])
    theta = X @ pt_["beta"] + tau * pt_["eps"]
    ll = 0.0
    for r in range(4):
        th = np.zeros(25)
        th[FREE_NAMES.index("lfp_gain")] = 6.0
        th[[FREE_NAMES.index(n) for n in names]] = theta[r]
        ll += marginal_scale_loglik(sim["spectra"][r], spectrum(th, hz)[0], 60)
    prior = (stats.norm(0, 1).logpdf(pt_["beta"]).sum() + stats.halfnorm(scale=0.5).logpdf(tau).sum()
             + np.log(tau).sum() + stats.norm.logpdf(pt_["eps"]).sum())
    assert lp == pytest.approx(ll + prior, rel=1e-9)          # same model, rounding only
    from pymc.blocking import DictToArrayBijection

    logp_f = model.compile_logp(mode="FAST_COMPILE")
    dlogp = model.compile_dlogp(mode="FAST_COMPILE")(pt_)
    rv = DictToArrayBijection.map({v.name: pt_[v.name] for v in model.value_vars})
    h = 1e-5
    for k in (0, 5, rv.data.size - 1):                       # a beta, the last tau, an eps entry
        e = np.zeros(rv.data.size)
        e[k] = h
        up = DictToArrayBijection.rmap(rv._replace(data=rv.data + e))
        dn = DictToArrayBijection.rmap(rv._replace(data=rv.data - e))
        fd = (logp_f(up) - logp_f(dn)) / (2 * h)
        assert dlogp[k] == pytest.approx(fd, rel=1e-5, abs=1e-5)   # central-difference error O(h^2)
    with pytest.raises(ParameterError, match="unknown CMC"):
        build_joint_model(sim["spectra"], hz, 60, X, names=["g_xx"], covariates=["mean", "patient"])
    with pytest.raises(DataError, match="positive"):
        build_joint_model(-sim["spectra"], hz, 60, X, names=names, covariates=["mean", "patient"])


def test_joint_model_centred_logp(rng):
    """Centred and per-parameter forms: the non-centred density with the Jacobian of eps -> theta."""
    hz = np.arange(4.0, 30.0)
    X = np.column_stack([np.ones(4), [0, 0, 1, 1]])
    names = ["g_ii_ss", "tau_ii"]
    sim = simulate_cohort(X, np.array([[0.0, 0.0], [0.3, 0.0]]), np.array([0.1, 0.1]), names=names,
                          freqs=hz, dof=60, fixed={"lfp_gain": 6.0}, random_seed=3)
    beta, tau, eps = np.array([[0.05, -0.1], [0.2, 0.1]]), np.array([0.2, 0.1]), rng.standard_normal((4, 2))
    theta = X @ beta + tau * eps
    lp = {}
    for par in ("noncentred", "centred", {"g_ii_ss": "centred", "tau_ii": "noncentred"}):
        m = build_joint_model(sim["spectra"], hz, 60, X, names=names, covariates=["mean", "patient"],
                              fixed={"lfp_gain": 6.0}, parameterization=par)
        pt_ = {"beta": beta, "tau_log__": np.log(tau)}
        if par == "noncentred":
            pt_["eps"] = eps
        elif par == "centred":
            pt_["theta"] = theta
        else:
            pt_["theta_centred"], pt_["eps"] = theta[:, :1], eps[:, 1:]
        lp[str(par)] = m.compile_logp(mode="FAST_COMPILE")(pt_)
        init = _initial_values(m._nmm_joint, theta, 0.5)
        b0 = np.linalg.lstsq(X, theta, rcond=None)[0]
        assert np.allclose(init["beta"], b0, atol=1e-12)                         # rounding only
        th0 = init.get("theta", X @ b0 + init["tau"] * init.get("eps", np.zeros((4, 2))))
        if isinstance(par, dict):
            th0 = np.column_stack([init["theta_centred"], (X @ b0)[:, 1:] + init["tau"][1] * init["eps"]])
        assert np.allclose(th0, theta, atol=1e-12)           # the start reproduces init_theta exactly
    # theta = loc + tau * eps: density N(theta; loc, tau) = N(eps; 0, 1) / tau per recording
    ref = lp["noncentred"]
    assert lp["centred"] == pytest.approx(ref - 4 * np.log(tau).sum(), rel=1e-9)   # rounding only
    assert lp[str({"g_ii_ss": "centred", "tau_ii": "noncentred"})] == pytest.approx(
        ref - 4 * np.log(tau[0]), rel=1e-9)                                          # rounding only
    with pytest.raises(ParameterError, match="parameterization"):
        build_joint_model(sim["spectra"], hz, 60, X, names=names, covariates=["mean", "patient"],
                          parameterization="centered")
    with pytest.raises(ParameterError, match="parameterization"):
        build_joint_model(sim["spectra"], hz, 60, X, names=names, covariates=["mean", "patient"],
                          parameterization={"tau_ss": "centred"})


@pytest.mark.slow
def test_two_stage_and_joint_agree():
    """Small simulated cohort (4 + 4): both routes give the same group effect within its SD."""
    from nmm_inference.group import first_level_unit

    hz = np.arange(2.0, 41.0)
    X = np.column_stack([np.ones(8), np.r_[np.zeros(4), np.ones(4)]])
    names, fixed = ["g_ii_ss"], {"lfp_gain": 6.0}
    sim = simulate_cohort(X, np.array([[0.0], [0.4]]), np.array([0.1]), names=names, freqs=hz, dof=100,
                          fixed=fixed, random_seed=1)
    posts = [first_level_unit({"spectrum": y, "freqs": hz, "dof": 100,
                               "model": {"free": names, "fixed": fixed, "data_scale": "free"},
                               "fit": {"sampler": "laplace", "draws": 500, "chains": 2, "n_starts": 8}},
                              random_seed=r) for r, y in enumerate(sim["spectra"])]
    m, C = summarize_posteriors(posts, names)
    ml, Cl = remove_first_level_prior(m, C, [0.0], [np.sqrt(1 / 32)])
    d2 = fit_group(ml, Cl, X, names=names, covariates=["mean", "patient"], draws=500, tune=500,
                   chains=2, random_seed=1)
    dj = fit_joint(sim["spectra"], hz, 100, X, names=names, covariates=["mean", "patient"], fixed=fixed,
                   draws=500, tune=500, chains=2, random_seed=2)
    r2 = {(r["covariate"], r["param"]): r for r in group_effects_table(d2)}
    rj = {(r["covariate"], r["param"]): r for r in group_effects_table(dj)}
    for k in r2:
        # agreement within their uncertainty: the difference of the means is < 1 combined SD
        assert abs(r2[k]["mean"] - rj[k]["mean"]) < np.hypot(r2[k]["sd"], rj[k]["sd"])
    assert rj[("patient", "g_ii_ss")]["excludes_zero"] and r2[("patient", "g_ii_ss")]["excludes_zero"]
    assert dj["log_likelihood"]["y"].dims == ("chain", "draw", "recording")


def test_bad_input():
    with pytest.raises(ParameterError, match="shapes"):
        fit_group(np.zeros((3, 2)), np.zeros((3, 2, 2)), np.ones((4, 1)), names=["a", "b"], covariates=["m"])
    with pytest.raises(ParameterError, match="rank"):
        fit_group(np.zeros((3, 1)), np.ones((3, 1, 1)), np.ones((3, 2)), names=["a"], covariates=["m", "m2"])
    with pytest.raises(ParameterError, match="beta_mask"):
        fit_group(np.zeros((3, 1)), np.ones((3, 1, 1)), np.ones((3, 1)), names=["a"], covariates=["m"],
                  beta_mask=np.ones((2, 2), bool))
    with pytest.raises(ParameterError, match="filter_offset"):
        simulate_cohort(np.ones((2, 1)), np.zeros((1, 1)), np.ones(1), names=["filter_offset"],
                        freqs=np.arange(2.0, 10.0), dof=10)


def test_group_log_evidence_non_finite_is_a_clear_error(monkeypatch):
    import nmm_inference.group as G

    n = 6
    X = np.column_stack([np.ones(n), np.r_[np.zeros(3), np.ones(3)]])
    m = np.zeros((n, 1))
    C = np.full((n, 1, 1), 0.05 ** 2)
    monkeypatch.setattr(G, "_evidence_given_tau", lambda *a: np.nan)
    with pytest.raises(RuntimeError, match="not finite around its maximum"):
        group_log_evidence(m, C, X, tau_sd=0.5, n_draws=100, random_seed=0)


def test_remove_first_level_prior_clip_keeps_the_mean_of_flat_directions():
    # dimension 0: posterior = prior (no information); dimension 1: informative
    mu0, sd0 = np.zeros(2), np.ones(2)
    m_post = np.array([0.7, 0.3])
    C_post = np.diag([1.0, 0.25])
    ml, Cl = remove_first_level_prior(m_post[None], C_post[None], mu0, sd0, on_uninformative="clip")
    # flat direction: centred on the posterior mean (before: 0.7 / floor = 70), precision floor 0.01
    np.testing.assert_allclose(ml[0, 0], 0.7, atol=1e-12)            # rounding only
    np.testing.assert_allclose(Cl[0, 0, 0], 100.0, rtol=1e-12)
    # informative direction: the closed form, likelihood precision 4 - 1 = 3, mean 0.3 * 4 / 3
    np.testing.assert_allclose(ml[0, 1], 0.4, atol=1e-12)
    np.testing.assert_allclose(Cl[0, 1, 1], 1 / 3, rtol=1e-12)


def test_group_conditional_weights_gaussian_closed_form():
    # First-level posterior of (c, n): prior on the carried c N(0, 2^2), the likelihood
    # Gaussian with mean (1, -0.5) and covariance [[0.25, 0.15], [0.15, 0.36]] (n has a flat
    # prior).  Re-weighting to the group prior N(0.5, 0.8^2) must give the closed-form
    # product of Gaussians for c, and E[n | c] at the new mean of c for n (correlations kept).
    from nmm_inference.group import group_conditional_weights

    rng = np.random.default_rng(5)
    L_cov = np.array([[0.25, 0.15], [0.15, 0.36]])
    L_mu = np.array([1.0, -0.5])
    P = np.linalg.inv(L_cov) + np.diag([1 / 4.0, 0.0])
    post_cov = np.linalg.inv(P)
    post_mu = post_cov @ np.linalg.solve(L_cov, L_mu)
    n = 40000
    draws = rng.multivariate_normal(post_mu, post_cov, size=(2, n))       # two recordings
    c = draws[..., :1]
    log_p1 = -0.5 * (c[..., 0] / 2.0) ** 2
    mean = np.array([[0.5], [0.5]])
    w, ess = group_conditional_weights(c, log_p1, mean, np.array([0.8]))
    P2 = np.linalg.inv(L_cov) + np.diag([1 / 0.64, 0.0])
    cov2 = np.linalg.inv(P2)
    mu2 = cov2 @ (np.linalg.solve(L_cov, L_mu) + np.array([0.5 / 0.64, 0.0]))
    for r in range(2):
        m = w[r] @ draws[r]
        v = w[r] @ (draws[r] - m) ** 2
        # Monte-Carlo SE of a weighted mean ~ sqrt(var / ess) ~ 0.003; 0.015 is 5 SE
        np.testing.assert_allclose(m, mu2, atol=0.015)
        np.testing.assert_allclose(v, np.diag(cov2), rtol=0.05)      # variance: MC error ~1-2 %
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-12)        # rows normalised
    assert np.all((ess > 0.3 * n) & (ess <= n))                           # mild re-weighting


def test_group_conditional_weights_bad_input():
    from nmm_inference.errors import ParameterError
    from nmm_inference.group import group_conditional_weights

    th = np.zeros((2, 5, 1))
    with pytest.raises(ParameterError, match="sd must be"):
        group_conditional_weights(th, np.zeros((2, 5)), np.zeros((2, 1)), np.array([0.0]))
    with pytest.raises(ParameterError, match="log_prior must be"):
        group_conditional_weights(th, np.zeros((2, 4)), np.zeros((2, 1)), np.array([1.0]))
    th[0, 0, 0] = np.nan
    with pytest.raises(ParameterError, match="theta has non-finite"):
        group_conditional_weights(th, np.zeros((2, 5)), np.zeros((2, 1)), np.array([1.0]))
