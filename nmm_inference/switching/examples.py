"""A bistable CMC source for tests, benchmarks and tutorials.

:func:`bistable_example` returns a one-source CMC (zero input, so ``v* = 0`` as in SPM's CSD
model) with two winner-take-all oscillatory states: a ~60 Hz and a ~26 Hz state.  It was found by
a log-uniform random scan of the ten gains (x [1/4, 16]) for two stable single-mode states
without validity issues, then a Nelder-Mead adjustment of the gains and of the ss/sp time
constants towards small growth rates (so that the cubic reduction is accurate: amplitudes ~0.47),
frequencies away from 2:1 and 3:1 resonance, and comparable barriers in both directions.  Unlike
``adiabatic.md`` Example 2 it has no near resonance: the reduction reports no validity issue.

Facts at these parameters (``reduce_cmc``): modes 60.93 Hz (sigma = 2.50 1/s) and 25.99 Hz
(sigma = 0.70 1/s); states r = 0.464 at 59.98 Hz and r = 0.468 at 25.98 Hz; the rest state is
unstable.  With white noise of std 0.35 on every population input the full nonlinear CMC
switches every ~8-10 s in both directions.  Its mean dwell times (basins with hysteresis,
:func:`nmm_inference.switching.validation.true_basins`; three 600 s runs) are 9.0-12.8 s in the
gamma and 6.7-8.9 s in the beta state, against 8.3 s and 9.8 s from the reduced amplitude SDE's
backward Kolmogorov equation: the reduction gets the time scale but not the asymmetry (a log
dwell-ratio error of ~0.5), which is why the mechanistic rates enter the switching model with a
discrepancy term.  Both states
persist when ss self-inhibition G1 is scaled within [0.94, 1.10] (G7 and G10: at least +-10 %);
the loop gains G2, G3, G5, G6, G8, G9 allow about +-0.5 %.  G1 tilts the double well: it moves
the ratio of the two mean dwell times.
"""

from __future__ import annotations

import numpy as np

from ..params import G_DEFAULT, G_FREE_INDEX, T_DEFAULT_MS

__all__ = ["bistable_example", "BISTABLE_MULTIPLIERS", "BISTABLE_T_FACTOR"]

#: Multipliers of SPM's default gains G1..G10.
BISTABLE_MULTIPLIERS = np.array([0.322257, 4.32337, 10.715757, 3.531534, 1.867732, 16.564897,
                                 0.796184, 6.918909, 7.126898, 4.847865])
#: Multiplier of the ss and sp time constants.
BISTABLE_T_FACTOR = 1.1522409935779607


def bistable_example():
    """Parameters of the bistable example source.

    Returns
    -------
    dict
        ``G`` (10,) 1/s, ``T`` (4,) s, ``R``, ``U`` (4,) (zero), ``spm`` (an SPM parameter dict
        for :func:`nmm_inference.cmc.simulate.simulate_cmc_states`), ``bands`` (the two bands
        around the modes, Hz), ``state_names`` and ``noise_std`` (input noise std that gives
        switches every ~10 s).

    Examples
    --------
    >>> from nmm_inference.adiabatic import reduce_cmc
    >>> p = bistable_example()
    >>> states = [s for s in reduce_cmc(p["G"], p["T"]).stable_states() if not s.is_rest]
    >>> [round(float(s.frequencies_hz[0]), 1) for s in states]
    [60.0, 26.0]
    """
    G = G_DEFAULT * BISTABLE_MULTIPLIERS
    T = T_DEFAULT_MS / 1000.0
    T = T * np.array([BISTABLE_T_FACTOR, BISTABLE_T_FACTOR, 1.0, 1.0])
    logT = np.log(BISTABLE_T_FACTOR)
    spm = {"G": np.log(BISTABLE_MULTIPLIERS[G_FREE_INDEX])[None, :],
           "T": np.array([[logT, logT, 0.0, 0.0]])}
    return {"G": G, "T": T, "R": 2.0 / 3.0, "U": np.zeros(4), "spm": spm,
            "bands": ((50.0, 72.0), (20.0, 32.0)), "state_names": ["gamma", "beta"],
            "noise_std": 0.35}
