"""The parameter table and the SPM <-> named conversions."""
from __future__ import annotations

import numpy as np
import pytest

from nmm_inference.errors import ParameterError
from nmm_inference.params import (
    canonical_spm,
    named_to_spm,
    parameter_table,
    spm_to_named,
    to_physical,
)


def test_table_matches_spm_vec(golden):
    g = golden("c00_prior_mean")
    table = parameter_table(1)
    assert [s.spm_label for s in table] == g["param_vector_names"]
    np.testing.assert_array_equal([s.prior_var for s in table], g["prior_variance_vector"])  # exact
    np.testing.assert_array_equal([s.prior_mean for s in table], g["prior_mean_vector"])
    assert sum(s.free for s in table) == 25


def test_roundtrip(golden):
    P = golden("c05_T_mixed")["params"]
    named = spm_to_named(P)
    back = named_to_spm(named)
    for k, v in canonical_spm(P).items():
        np.testing.assert_array_equal(back[k], v)
    assert named["tau_sp"] == -0.3


def test_physical_values():
    phys = to_physical({"tau_ii": np.log(2.0), "g_ii_ss": 0.0, "lfp_gain": 3.0})
    assert phys["tau_ii"] == pytest.approx(0.032)  # 16 ms doubled
    assert phys["g_ii_ss"] == 1600.0
    assert phys["lfp_gain"] == 3.0


def test_unknown_name_suggests():
    with pytest.raises(ParameterError, match="did you mean.*tau_ss"):
        named_to_spm({"tau_sss": 0.1})
    with pytest.raises(ParameterError, match="not finite"):
        named_to_spm({"tau_ss": np.nan})


def test_multi_source_table():
    t = parameter_table(2, forward=[[0, 0], [1, 0]])
    names = {s.name: s for s in t}
    assert names["ext_fwd_sp_ss_1_0"].free and not names["ext_fwd_sp_ss_0_1"].free
    assert names["delay_extrinsic_1_0"].free and not names["delay_extrinsic_0_1"].free
    assert names["g_sp_ss_1"].free
