"""The HTML report: every section present, rendered by headless Chromium with its figures loaded."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import xarray as xr

from nmm_inference.cmc.kernel import FREE_NAMES, spectrum
from nmm_inference.params import parameter_table
from nmm_inference.report import SECTIONS, build_report, convergence_table

CHECK_JS = """
<script>
window.addEventListener('load', function () {
  setTimeout(function () {
    var imgs = Array.from(document.querySelectorAll('img'));
    var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
    var titles = Array.from(document.querySelectorAll('h2, h3, h4, .accordion-button'))
                   .map(function (e) { return e.textContent.trim(); }).join('|');
    var d = document.createElement('pre'); d.id = 'nmm-check';
    d.textContent = 'IMAGES ' + ok + '/' + imgs.length + ' TITLES ' + titles;
    document.body.appendChild(d);
  }, 500);
});
</script>
"""


def _fit_like_tree(rng, *, converged=True):
    """A result in the fit layout: draws around a known parameter point, with real spectra."""
    specs = [s for s in parameter_table(1) if s.free]
    mu = np.array([s.prior_mean for s in specs])
    sd = np.sqrt([s.prior_var for s in specs])
    hz = np.arange(2.0, 41.0)
    truth = mu + 0.5 * sd * rng.standard_normal(mu.size)
    y_true, _, _ = spectrum(truth, hz)
    obs = y_true * rng.chisquare(32, hz.size) / 32
    n_chain, n_draw = 4, 250
    th = truth + 0.2 * sd * rng.standard_normal((n_chain, n_draw, mu.size))
    if not converged:
        th[0] += 3 * sd  # one chain stuck elsewhere
    post = xr.Dataset({n: (("chain", "draw"), th[..., i]) for i, n in enumerate(FREE_NAMES)})
    pp = np.array([[spectrum(th[c, d], hz)[0] for d in range(0, n_draw, 5)] for c in range(n_chain)])
    pp = pp * rng.chisquare(32, pp.shape) / 32
    tree = xr.DataTree.from_dict({
        "posterior": post,
        "posterior_predictive": xr.Dataset({"psd": (("chain", "draw", "freq"), pp)}, coords={"freq": hz}),
        "observed_data": xr.Dataset({"psd": (("freq",), obs)}, coords={"freq": hz}),
        "sample_stats": xr.Dataset({"diverging": (("chain", "draw"), np.zeros((n_chain, n_draw), bool))}),
    })
    return tree


def _with_time_sections(tree, rng):
    """Add a switching model's state probabilities and a windowed fit's trajectories."""
    t = np.linspace(0, 20, 201)
    p_burst = 0.5 + 0.45 * np.sin(2 * np.pi * t / 5)
    probs = xr.Dataset({"probability": (("time", "state"), np.column_stack([1 - p_burst, p_burst]))},
                       coords={"time": t, "state": ["quiet", "burst"]})
    centers = np.arange(1.0, 20.0, 2.0)
    traj = xr.Dataset({"g_ii_ii": (("window", "sample"), -0.05 * centers[:, None]
                                   + 0.1 * rng.standard_normal((centers.size, 50)))},
                      coords={"window_center": ("window", centers)})
    tree = tree.copy()
    tree["state_probability"] = xr.DataTree(probs)
    tree["trajectories"] = xr.DataTree(traj)
    return tree


def test_convergence_verdict(rng):
    _, _, ok = convergence_table(_fit_like_tree(rng))
    assert ok
    _, _, bad = convergence_table(_fit_like_tree(rng, converged=False))
    assert not bad  # a stuck chain must be reported


def test_report_renders_in_chromium(tmp_path, rng):
    out = tmp_path / "report.html"
    info = build_report(_with_time_sections(_fit_like_tree(rng), rng), out, title="test report")
    assert info["ppc_coverage"] > 0.8  # observed spectrum was drawn from the same model
    assert list(info["sections"]) == list(SECTIONS)  # every section, in order
    with pytest.raises(FileExistsError):
        build_report(_fit_like_tree(rng), out)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("NMM_REQUIRE_ALL_DEPS"):
            pytest.fail("Debian's chromium is required for the report test (.ci/run installs it)")
        pytest.skip("chromium not installed")
    page = tmp_path / "checked.html"
    text = out.read_text()
    page.write_text(text.replace("</body>", CHECK_JS + "</body>"))
    res = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'chrome'}", "--virtual-time-budget=8000", "--dump-dom",
         page.as_uri()], capture_output=True, text=True, timeout=120)
    m = re.search(r"IMAGES (\d+)/(\d+) TITLES (.*?)</pre>", res.stdout, re.S)
    assert m, f"no check output from chromium: {res.stderr[-2000:]}"
    n_ok, n_img = int(m.group(1)), int(m.group(2))
    assert n_img >= 6 and n_ok == n_img, f"{n_ok} of {n_img} figures loaded"  # 6 figure sections
    titles = m.group(3)
    for s in SECTIONS:
        assert s in titles, f"section {s!r} missing from the rendered page"
