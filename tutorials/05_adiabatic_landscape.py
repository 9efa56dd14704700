"""
.. _tut-adiabatic-landscape:

Oscillation amplitudes on a landscape: the adiabatic reduction of the CMC
=========================================================================

A canonical microcircuit (CMC) source near an oscillatory instability behaves, on slow time
scales, like a handful of complex amplitudes ``z_k = r_k exp(i theta_k)`` following

    dr_k/dt = r_k (sigma_k + sum_j a_kj r_j^2),   dtheta_k/dt = omega_k + sum_j b_kj r_j^2,

where ``sigma_k + i omega_k`` are the eigenvalues of the linearised CMC and ``g_kj = a_kj + i b_kj``
are cubic normal-form coefficients that depend on the intrinsic connectivity.  When the
cross-coupling can be symmetrised the amplitude flow descends a potential V, whose minima are the
(semi-)stable oscillatory states; noise makes the amplitudes hop between them.

This tutorial (runs in well under a minute):

1. reduces the SPM default circuit and a circuit with a beta instability;
2. checks the predicted limit cycle against a direct simulation of the 8-state CMC;
3. scans the dp -> ii gain through a Hopf point (a small bifurcation diagram);
4. draws the potential landscape of a bistable circuit and simulates noise-driven switching.

See ``shared/docs/adiabatic.md`` for the mathematics.
"""

# %%
# Setup
# -----
import os
import tempfile
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402

from nmm_inference.adiabatic import (AmplitudeSDE, band_features, reduce_cmc,  # noqa: E402
                                     scan_parameter)
from nmm_inference.cmc.equations import CMCNeural, vector_field  # noqa: E402
from nmm_inference.errors import ReductionValidityWarning  # noqa: E402

t_start = time.perf_counter()
G_DEF = np.array([4, 4, 8, 4, 4, 2, 4, 4, 2, 1]) * 200.0   # G1..G10, 1/s
T_DEF = np.array([2.0, 2.0, 16.0, 28.0]) / 1000.0          # ss, sp, ii, dp, s

# %%
# 1. Modes of the SPM default circuit and of a beta-unstable circuit
# ------------------------------------------------------------------
# At SPM's prior every mode is damped: the rest state is the only stable state.
red0 = reduce_cmc(G_DEF, T_DEF)
print(red0)
print("stable states:", red0.stable_states())

# Strengthening the dp <-> ii loop (G6, G9 x 3.1) and the ss <-> sp loop (G2, G8 x 8.2) makes a
# ~12.5 Hz "beta" mode grow; its Hopf bifurcation is supercritical (Re g_11 < 0).
G1 = G_DEF.copy()
G1[[5, 8]] *= 3.1
G1[[1, 7]] *= 8.2
red1 = reduce_cmc(G1, T_DEF)
(beta,) = red1.stable_states()
print(red1.modes[0], " g_11 =", np.round(red1.g[0, 0], 3))
print("predicted cycle:", beta, "\nenvelopes (ss, sp, ii, dp) in mV:", np.round(beta.envelopes[0], 3))

# %%
# 2. Check against the full 8-state model
# ---------------------------------------
# Start on the predicted cycle and integrate the CMC equations of ``nmm_inference.cmc``; the
# envelope of the dp voltage should match the prediction to about sigma/omega (a few %).
nm = CMCNeural(G=G1[None], T=T_DEF[None], R=2 / 3, A=np.zeros((4, 1, 1)), M=np.zeros((1, 1)),
               d_intrinsic=np.array([1e-3]), d_extrinsic=np.zeros((1, 1)))
mode = red1.modes[0]
x0 = red1.operating_state + 2 * np.real(beta.amplitudes[0] * mode.right_vector)
t_eval = np.linspace(0.0, 0.6, 3001)
sol = solve_ivp(lambda t, x: vector_field(x, nm), (0.0, 0.6), x0, method="DOP853",
                rtol=1e-8, atol=1e-10, t_eval=t_eval)
v_dp = sol.y[6]
late = t_eval > 0.3
print(f"dp envelope: predicted {beta.envelopes[0, 3]:.3f} mV, "
      f"simulated {(v_dp[late].max() - v_dp[late].min()) / 2:.3f} mV (half peak-to-peak)")

# %%
# 3. A bifurcation diagram along the dp -> ii gain (G6)
# -----------------------------------------------------
# ``scan_parameter`` continues the modes, refines the Hopf point and reports where the set of
# stable states changes.
G_scan = G_DEF.copy()
G_scan[[1, 7]] *= 8.7
G_scan[8] *= 3.15
scan = scan_parameter(G_scan, T_DEF, parameter="G6", values=np.linspace(400.0, 2000.0, 33))
for h in scan.hopf_points:
    print(f"Hopf point at G6 = {h['value']:.1f} 1/s ({h['frequency_hz']:.1f} Hz, {h['criticality']})")
for tr in scan.transitions:
    print(f"stable states change at G6 = {tr['value']:.1f}: {tr['before']} -> {tr['after']}")

# %%
# 4. A bistable circuit: potential landscape and noise-driven switching
# ----------------------------------------------------------------------
# Spec Example 2: a 25.8 Hz and a 79.6 Hz mode compete strongly; both single-mode states are
# stable.  The reduction warns that the 25.8 Hz state sits near a 3:1 resonance (its transverse
# stability is less reliable).
mult = np.array([0.3465, 4.8826, 5.0168, 5.7718, 3.4665, 9.2504, 0.8544, 11.3061, 14.1587, 2.8329])
U2 = np.array([-202.30, 31.34, -22.13, -46.27])
red2 = reduce_cmc(G_DEF * mult, T_DEF, U=U2)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", ReductionValidityWarning)
    states2 = red2.stable_states()
for w in caught:
    print("warning:", str(w.message)[:120], "...")
for s in states2:
    print(s, " V =", round(s.potential, 4))
pot = red2.potential()
assert pot.modes == (0, 1)          # mode 0: 79.6 Hz, mode 1: 25.8 Hz
RA, RB = np.meshgrid(np.linspace(0.0, 0.7, 141), np.linspace(0.0, 0.7, 141))  # x: 25.8, y: 79.6
V = pot(np.stack([RB, RA], axis=-1))

feats = band_features(red2, 1.5, duration=60.0, random_seed=1)
for f in feats:
    print(f"band {red2.modes[f.mode].frequency_hz:5.1f} Hz: peak {f.frequency_hz:.2f} Hz, "
          f"HWHM {f.linewidth_hz:.2f} Hz, mean LFP envelope {f.mean_envelope:.3f}, "
          f"switching {f.switching_rate:.2f} 1/s, occupancy {f.occupancy}")
sde = AmplitudeSDE(red2, 1.5, modes=[0, 1])
t_sde, z = sde.simulate(30.0, dt=1e-3, n_trials=1, r0=[0.5, 0.05], random_seed=2, record_every=5)

# %%
# Figure
# ------
fig, ax = plt.subplots(2, 2, figsize=(10, 7.5), constrained_layout=True)
ax[0, 0].plot(t_eval, v_dp, lw=0.8, label="full CMC (dp voltage)")
for sgn in (1, -1):
    ax[0, 0].axhline(red1.operating_point[3] + sgn * beta.envelopes[0, 3], color="C3", ls="--",
                     label="reduction: v* +- envelope" if sgn == 1 else None)
ax[0, 0].set(xlabel="time (s)", ylabel="v_dp (mV)", title="beta limit cycle")
ax[0, 0].legend(loc="lower right", fontsize=8)
f_col = np.nanmean(scan.eigenvalues.imag, axis=0) / (2 * np.pi)
for c in range(min(2, scan.eigenvalues.shape[1])):
    ax[0, 1].plot(scan.values, scan.eigenvalues[:, c].real, label=f"sigma, {f_col[c]:.0f} Hz mode")
br = np.array([(v, col, e) for v, col, _, e in scan.envelope_branches(population=1)])
ax01 = ax[0, 1].twinx()
for col in np.unique(br[:, 1]):
    sel = br[:, 1] == col
    ax01.plot(br[sel, 0], br[sel, 2], "o", ms=3, color=f"C{int(col) + 2}",
              label=f"sp envelope, {f_col[int(col)]:.0f} Hz mode")
for h in scan.hopf_points:
    ax[0, 1].axvline(h["value"], color="k", lw=0.8, ls=":")
ax[0, 1].axhline(0, color="grey", lw=0.5)
ax[0, 1].set(xlabel="G6 (1/s)", ylabel="growth rate (1/s)", ylim=(-40, 15),
             title="scan of the dp -> ii gain")
ax01.set_ylabel("envelope (mV)")
ax[0, 1].legend(loc="upper left", fontsize=8)
ax01.legend(loc="lower right", fontsize=8)
cs = ax[1, 0].contourf(RA, RB, V, levels=np.linspace(V.min(), V.min() + 0.2, 21),
                       cmap="viridis", extend="max")
fig.colorbar(cs, ax=ax[1, 0], label="V (1/s)")
for s in red2.stationary_states():
    if s.is_rest:
        continue
    r = np.zeros(2)
    for k, rk in zip(s.active, s.amplitudes):
        r[k] = rk
    ax[1, 0].plot(r[1], r[0], "w*" if s.stable else "rx", ms=10)
ax[1, 0].set(xlabel="r, 25.8 Hz mode", ylabel="r, 79.6 Hz mode",
             title="potential landscape (stars: stable, x: saddle)")
ax[1, 1].plot(t_sde, np.abs(z[0, :, 1]), lw=0.6, label="25.8 Hz amplitude")
ax[1, 1].plot(t_sde, np.abs(z[0, :, 0]), lw=0.6, label="79.6 Hz amplitude")
ax[1, 1].set(xlabel="time (s)", ylabel="amplitude r", title="noise-driven switching (std 1.5)")
ax[1, 1].legend(fontsize=8)
out = Path(os.environ.get("NMM_TUTORIAL_OUT", tempfile.gettempdir())) / "05_adiabatic_landscape.png"
fig.savefig(out, dpi=100)
print(f"figure saved to {out}; tutorial ran in {time.perf_counter() - t_start:.1f} s")
