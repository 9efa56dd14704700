"""The CMC parameter table: one place where every parameter is named.

Every neural and observation parameter of SPM's canonical microcircuit (CMC) for
cross-spectral densities is listed once, with its SPM field and index, a readable name,
its unit, its physical default, SPM's prior mean and variance and the transform from the
SPM value to the physical quantity.  The readable name is used unchanged as PyMC variable
name and as xarray coordinate elsewhere in the package.

Values of parameters are always held on **SPM's scale**: for a ``"log"`` parameter the
SPM value ``x`` is a log-multiplier and the physical quantity is ``default * exp(x)``; for a
``"linear"`` parameter the physical quantity is ``x`` itself.  See
``../shared/docs/spm-cmc.md`` §2 for the priors.

This module imports numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from .errors import ParameterError

__all__ = [
    "ParamSpec",
    "parameter_table",
    "prior_mean_spm",
    "spm_to_named",
    "named_to_spm",
    "canonical_spm",
    "to_physical",
    "SPM_FIELDS",
    "POPULATIONS",
    "G_DEFAULT",
    "T_DEFAULT_MS",
    "E_DEFAULT",
    "G_FREE_INDEX",
]

#: Populations of one CMC source, in SPM's order.
POPULATIONS = ("ss", "sp", "ii", "dp")

#: SPM's fixed intrinsic gains G1..G10 (``spm_fx_cmc``), in 1/s.
G_DEFAULT = np.array([4, 4, 8, 4, 4, 2, 4, 4, 2, 1], dtype=float) * 200.0
#: Gain names G1..G10 as (source population, target population).
G_CONNECTIONS = (
    ("ss", "ss"), ("sp", "ss"), ("ii", "ss"), ("ii", "ii"), ("ss", "ii"),
    ("dp", "ii"), ("sp", "sp"), ("ss", "sp"), ("ii", "dp"), ("dp", "dp"),
)
#: Which G (0-based) column i of P.G scales: SPM's ``j = [7 2 3 4 1 5 6 8 9 10]``.
G_FREE_INDEX = np.array([7, 2, 3, 4, 1, 5, 6, 8, 9, 10]) - 1
#: Time constants of ss, sp, ii, dp, in ms.
T_DEFAULT_MS = np.array([2.0, 2.0, 16.0, 28.0])
#: Extrinsic strengths: fwd sp->ss, fwd sp->dp, bwd dp->sp, bwd dp->ii (1/s).
E_DEFAULT = np.array([1.0, 0.5, 1.0, 0.5]) * 200.0
#: Intrinsic and extrinsic delay defaults, seconds.
D_DEFAULT = (1e-3, 8e-3)

#: SPM fields in ``spm_vec`` order.
SPM_FIELDS = ("M", "A", "C", "T", "G", "D", "S", "R", "Lpos", "L", "J", "a", "b", "c", "d", "f")


@dataclass(frozen=True)
class ParamSpec:
    """One scalar parameter of the CMC-CSD model.

    Attributes
    ----------
    name : str
        Readable name; used as PyMC variable name and xarray coordinate.
    spm_field : str
        SPM field name (``"T"``, ``"G"``, ...).
    spm_index : tuple of int
        0-based index into the field's canonical array (see :func:`canonical_spm`).
    spm_label : str
        SPM's own label, 1-based, as in ``spm_vec`` names (``"G(1,2)"``, ``"A{1}(2,1)"``).
    description : str
        What the parameter does.
    unit : str
        Unit of the physical quantity.
    default : float
        Physical value at SPM value 0 (``"log"``) or the physical value itself at the prior
        mean (``"linear"``).
    prior_mean, prior_var : float
        SPM's Gaussian prior on the SPM-scale value.
    transform : {"log", "linear"}
        ``"log"``: physical = default * exp(value); ``"linear"``: physical = value.
    """

    name: str
    spm_field: str
    spm_index: tuple
    spm_label: str
    description: str
    unit: str
    default: float
    prior_mean: float
    prior_var: float
    transform: str

    @property
    def free(self) -> bool:
        """True when SPM's prior variance is non-zero."""
        return self.prior_var > 0

    def physical(self, value):
        """Map an SPM-scale value to the physical quantity."""
        value = np.asarray(value, dtype=float)
        if self.transform == "log":
            return self.default * np.exp(value)
        return value


def _shapes(n_sources: int) -> dict:
    n = n_sources
    return {
        "M": (n, n), "A": (4, n, n), "C": (n, 0), "T": (1, 4), "G": (n, 4), "D": (n, n),
        "S": (1, 1), "R": (0, 2), "Lpos": (3, 0), "L": (1, n), "J": (1, 8),
        "a": (2, n), "b": (2, 1), "c": (2, n), "d": (4, n), "f": (2, 1),
    }


def _check_n(n_sources):
    if not isinstance(n_sources, (int, np.integer)) or n_sources < 1:
        raise ParameterError(f"n_sources must be a positive integer, got {n_sources!r}")
    return int(n_sources)


def parameter_table(n_sources: int = 1, *, forward=None, backward=None, lateral=None):
    """Return the parameter table of an n-source LFP CMC-CSD model.

    Parameters
    ----------
    n_sources : int
        Number of sources (one LFP channel per source).
    forward, backward, lateral : array-like of bool, shape (n_sources, n_sources), optional
        DCM's ``A{1}``, ``A{2}`` and ``A{3}`` connectivity (row = target, column = source).
        They decide which extrinsic strengths and delays are free, as in
        ``spm_cmc_priors``.  Default: no extrinsic connections.

    Returns
    -------
    list of ParamSpec
        In SPM's ``spm_vec`` order.
    """
    n = _check_n(n_sources)
    z = np.zeros((n, n), dtype=bool)
    fwd = z if forward is None else np.asarray(forward, dtype=bool)
    bwd = z if backward is None else np.asarray(backward, dtype=bool)
    lat = z if lateral is None else np.asarray(lateral, dtype=bool)
    for nm, m in (("forward", fwd), ("backward", bwd), ("lateral", lat)):
        if m.shape != (n, n):
            raise ParameterError(f"{nm} connectivity must have shape ({n}, {n}), got {m.shape}")
    fwd = fwd & ~np.eye(n, dtype=bool)
    bwd = bwd & ~np.eye(n, dtype=bool)
    connected = fwd | bwd | lat | np.eye(n, dtype=bool)

    def sfx(*idx):
        if n == 1:
            return ""
        return "_" + "_".join(str(i) for i in idx)

    rows: list[ParamSpec] = []
    add = rows.append
    # M: modulation of sp self-inhibition by dp firing
    for j in range(n):
        for i in range(n):
            add(ParamSpec(f"mod_dp_sp{sfx(i, j)}", "M", (i, j), f"M({i+1},{j+1})",
                          "modulation of sp self-inhibition by dp firing (P.M)", "1",
                          0.0, 0.0, 1 / 32 if lat[i, j] else 0.0, "linear"))
    ext_names = ("ext_fwd_sp_ss", "ext_fwd_sp_dp", "ext_bwd_dp_sp", "ext_bwd_dp_ii")
    ext_desc = ("forward sp->ss", "forward sp->dp", "backward dp->sp", "backward dp->ii")
    for k in range(4):
        mask = fwd if k < 2 else bwd
        for j in range(n):
            for i in range(n):
                on = bool(mask[i, j])
                add(ParamSpec(f"{ext_names[k]}{sfx(i, j) if n > 1 else ''}", "A", (k, i, j),
                              f"A{{{k+1}}}({i+1},{j+1})",
                              f"extrinsic {ext_desc[k]} strength, source {j} -> target {i}",
                              "1/s", E_DEFAULT[k], 0.0 if on else -32.0,
                              1 / 16 if on else 0.0, "log"))
    for k, pop in enumerate(POPULATIONS):
        add(ParamSpec(f"tau_{pop}", "T", (0, k), f"T(1,{k+1})",
                      f"time constant of the {pop} population", "s",
                      T_DEFAULT_MS[k] / 1000, 0.0, 1 / 32, "log"))
    free_names = ("g_sp_sp", "g_sp_ss", "g_ii_ss", "g_ii_ii")
    for k in range(4):
        gi = G_FREE_INDEX[k]
        src, tgt = G_CONNECTIONS[gi]
        for i in range(n):
            add(ParamSpec(f"{free_names[k]}{sfx(i)}", "G", (i, k), f"G({i+1},{k+1})",
                          f"intrinsic gain G{gi+1} ({src}->{tgt})", "1/s",
                          G_DEFAULT[gi], 0.0, 1 / 32, "log"))
    for j in range(n):
        for i in range(n):
            intrinsic = i == j
            add(ParamSpec(("delay_intrinsic" + sfx(i)) if intrinsic else f"delay_extrinsic{sfx(i, j)}",
                          "D", (i, j), f"D({i+1},{j+1})",
                          "intrinsic conduction delay" if intrinsic
                          else f"extrinsic delay, source {j} -> target {i}", "s",
                          D_DEFAULT[0] if intrinsic else D_DEFAULT[1], 0.0,
                          1 / 64 if connected[i, j] else 0.0, "log"))
    add(ParamSpec("sigmoid_slope", "S", (0, 0), "S(1,1)", "slope R of the firing sigmoid",
                  "1/mV", 2 / 3, 0.0, 1 / 64, "log"))
    for i in range(n):
        add(ParamSpec(f"lfp_gain{sfx(i)}", "L", (0, i), f"L(1,{i+1})", "LFP gain", "1",
                      1.0, 1.0, 64.0, "linear"))
    for k in range(8):
        pop = POPULATIONS[k // 2]
        kind = "voltage" if k % 2 == 0 else "current"
        default = 1.0 if k == 2 else 0.0
        var = 1 / 32 if k in (0, 6) else 0.0
        add(ParamSpec(f"contrib_{pop}" if k % 2 == 0 else f"contrib_{pop}_current", "J", (0, k),
                      f"J(1,{k+1})", f"LFP contribution of the {pop} {kind}", "1",
                      default, default, var, "linear"))
    for i in range(n):
        add(ParamSpec(f"innov_amp{sfx(i)}", "a", (0, i), f"a(1,{i+1})",
                      "amplitude of the neural innovations (exp(a1))", "1", 1.0, 0.0, 1 / 128, "log"))
        add(ParamSpec(f"innov_exponent{sfx(i)}", "a", (1, i), f"a(2,{i+1})",
                      "1/f exponent of the neural innovations (exp(a2))", "1", 1.0, 0.0, 1 / 128, "log"))
    add(ParamSpec("noise_common_amp", "b", (0, 0), "b(1,1)",
                  "amplitude of channel noise common to all channels (exp(b1-2))", "1",
                  float(np.exp(-2.0)), 0.0, 1 / 128, "log"))
    add(ParamSpec("noise_common_exponent", "b", (1, 0), "b(2,1)",
                  "1/f exponent of the common channel noise", "1", 1.0, 0.0, 1 / 128, "log"))
    for i in range(n):
        add(ParamSpec(f"noise_channel_amp{sfx(i)}", "c", (0, i), f"c(1,{i+1})",
                      "amplitude of channel-specific noise (exp(c1-2))", "1",
                      float(np.exp(-2.0)), 0.0, 1 / 128, "log"))
        add(ParamSpec(f"noise_channel_exponent{sfx(i)}", "c", (1, i), f"c(2,{i+1})",
                      "1/f exponent of channel-specific noise (SPM uses channel 1's for all)",
                      "1", 1.0, 0.0, 1 / 128, "log"))
    for i in range(n):
        for m in range(4):
            add(ParamSpec(f"innov_dct_{m+1}{sfx(i)}", "d", (m, i), f"d({m+1},{i+1})",
                          f"DCT coefficient {m+1} of the log innovations spectrum", "1",
                          0.0, 0.0, 1 / 128, "linear"))
    add(ParamSpec("filter_offset", "f", (0, 0), "f(1,1)", "log gain of the spectral filter",
                  "1", 0.0, 0.0, 1 / 64, "linear"))
    add(ParamSpec("filter_slope", "f", (1, 0), "f(2,1)",
                  "log slope of the spectral filter over bin index", "1", 0.0, 0.0, 1 / 64, "linear"))
    names = [r.name for r in rows]
    if len(set(names)) != len(names):  # pragma: no cover - guards the table itself
        raise RuntimeError("duplicate parameter names in the table")
    return rows


def canonical_spm(P: Mapping, n_sources: int | None = None) -> dict:
    """Return SPM parameters as float arrays of their canonical shapes.

    Accepts dicts like the ``params`` field of the golden files: scalars, flat lists or
    nested lists.  Missing fields take SPM's prior mean.  For one source any shape with the
    right number of elements is accepted; for several sources the canonical shape is
    required (``A``: (4, n, n); ``G``: (n, 4); ``a``: (2, n); ...).

    Parameters
    ----------
    P : mapping
        SPM fields (a subset of :data:`SPM_FIELDS`) to SPM-scale values.  ``C``, ``R`` and
        ``Lpos`` must be empty (no exogenous inputs).  Besides the canonical shapes, ``T`` may
        be (n, 4) (source-specific time constants) and ``G`` may have 1 to 10 columns (the
        gains freed in the order of :data:`G_FREE_INDEX`).
    n_sources : int, optional
        Number of sources; default: the rows of ``P["G"]`` when it is 2-D, else 1.

    Returns
    -------
    dict
        Every field of :data:`SPM_FIELDS` -> float ndarray (a copy of the input), fields
        missing from ``P`` at SPM's prior mean with no extrinsic connections
        (:func:`prior_mean_spm`).

    Raises
    ------
    ParameterError
        For unknown field names, wrong sizes or non-finite values.
    """
    if not isinstance(P, Mapping):
        raise ParameterError(f"SPM parameters must be a dict of SPM fields, got {type(P).__name__}")
    unknown = sorted(set(P) - set(SPM_FIELDS))
    if unknown:
        raise ParameterError(
            f"unknown SPM parameter field(s) {unknown}; expected some of {list(SPM_FIELDS)}")
    if n_sources is None:
        G = np.asarray(P.get("G", np.zeros(4)), dtype=float)
        n_sources = G.shape[0] if G.ndim == 2 else 1
    n = _check_n(n_sources)
    shapes = _shapes(n)
    out = prior_mean_spm(n)
    for key, val in P.items():
        if key in ("C", "R", "Lpos"):
            arr = np.asarray(val, dtype=float)
            if arr.size:
                raise ParameterError(
                    f"field {key!r} must be empty for the CSD model (no exogenous inputs), got size {arr.size}")
            continue
        try:
            arr = np.asarray(val, dtype=float)
        except (TypeError, ValueError) as exc:
            raise ParameterError(f"field {key!r} is not numeric: {exc}") from None
        shape = shapes[key]
        size = int(np.prod(shape))
        if arr.shape == shape:
            pass
        elif arr.size == size and (n == 1 or arr.ndim <= 1 and size == max(shape)):
            arr = arr.reshape(shape)
        elif key == "T" and arr.shape == (n, 4):
            pass  # source-specific time constants
        elif key == "G" and arr.ndim <= 2 and arr.size % n == 0 and 1 <= arr.size // n <= 10:
            # SPM frees 4 gains by default; P.G may free up to all 10 (spm_fx_cmc's map j)
            arr = arr.reshape(n, arr.size // n)
        else:
            raise ParameterError(
                f"field {key!r} has shape {arr.shape}; expected {shape} for {n} source(s)")
        if not np.all(np.isfinite(arr)):
            raise ParameterError(f"field {key!r} has non-finite values: {arr.ravel().tolist()}")
        out[key] = arr.copy()
    return out


def prior_mean_spm(n_sources: int = 1, **connectivity) -> dict:
    """SPM's prior mean ``pE`` as canonical arrays (see :func:`canonical_spm`).

    Parameters
    ----------
    n_sources : int, optional
        Number of sources.
    **connectivity
        ``forward``, ``backward``, ``lateral`` connectivity of :func:`parameter_table`; they
        decide which extrinsic strengths are on (prior mean 0) or off (-32).

    Returns
    -------
    dict
        Every field of :data:`SPM_FIELDS` -> float ndarray of its canonical shape, holding
        the ``prior_mean`` of each :class:`ParamSpec` (zeros elsewhere).

    Raises
    ------
    ParameterError
        If ``n_sources`` is not a positive integer or a connectivity matrix is mis-shaped.
    """
    n = _check_n(n_sources)
    out = {k: np.zeros(s) for k, s in _shapes(n).items()}
    for spec in parameter_table(n, **connectivity):
        out[spec.spm_field][spec.spm_index] = spec.prior_mean
    return out


def spm_to_named(P: Mapping, n_sources: int | None = None, *, free_only: bool = False,
                 **connectivity) -> dict:
    """Convert an SPM parameter dict to ``{readable name: SPM-scale value}``.

    Parameters
    ----------
    P : mapping
        SPM fields to SPM-scale values, as accepted by :func:`canonical_spm`.
    n_sources : int, optional
        Number of sources; default: inferred from ``P["G"]`` (see :func:`canonical_spm`).
    free_only : bool, optional
        Keep only the parameters with a non-zero prior variance (:attr:`ParamSpec.free`).
    **connectivity
        ``forward``, ``backward``, ``lateral`` connectivity of :func:`parameter_table`; it
        decides which parameters are free.

    Returns
    -------
    dict
        Readable name -> float SPM-scale value, in the table's ``spm_vec`` order.

    Raises
    ------
    ParameterError
        As :func:`canonical_spm` and :func:`parameter_table`.
    """
    Pc = canonical_spm(P, n_sources)
    n = Pc["G"].shape[0]
    out = {}
    for spec in parameter_table(n, **connectivity):
        if free_only and not spec.free:
            continue
        out[spec.name] = float(Pc[spec.spm_field][spec.spm_index])
    return out


def named_to_spm(named: Mapping, n_sources: int = 1, *, base: Mapping | None = None,
                 **connectivity) -> dict:
    """Convert ``{readable name: SPM-scale value}`` to canonical SPM arrays.

    Parameters not named take their value from ``base`` (default: SPM's prior mean).

    Parameters
    ----------
    named : mapping
        Readable name (see :func:`parameter_table`) -> SPM-scale value (a real scalar).
    n_sources : int, optional
        Number of sources.
    base : mapping, optional
        SPM fields giving the values of the parameters not named (passed through
        :func:`canonical_spm`); default: :func:`prior_mean_spm` with ``connectivity``.
    **connectivity
        ``forward``, ``backward``, ``lateral`` connectivity of :func:`parameter_table`.

    Returns
    -------
    dict
        Every field of :data:`SPM_FIELDS` -> float ndarray of its canonical shape.

    Raises
    ------
    ParameterError
        For names not in the table (with the closest valid names) or non-finite values.
    """
    table = {s.name: s for s in parameter_table(n_sources, **connectivity)}
    out = prior_mean_spm(n_sources, **connectivity) if base is None else canonical_spm(base, n_sources)
    for name, value in named.items():
        spec = table.get(name)
        if spec is None:
            import difflib

            close = difflib.get_close_matches(str(name), list(table), n=3)
            hint = f"; did you mean {close}?" if close else ""
            raise ParameterError(f"unknown parameter name {name!r}{hint} "
                                 f"(valid names: see nmm_inference.params.parameter_table)")
        v = float(value)
        if not np.isfinite(v):
            raise ParameterError(f"parameter {name!r} is not finite: {value!r}")
        out[spec.spm_field][spec.spm_index] = v
    return out


def to_physical(named: Mapping, n_sources: int = 1, **connectivity) -> dict:
    """Map ``{name: SPM-scale value}`` to ``{name: physical value}`` (units in the table).

    Parameters
    ----------
    named : mapping
        Readable name -> SPM-scale value (a real scalar).
    n_sources : int, optional
        Number of sources (fixes the valid names).
    **connectivity
        ``forward``, ``backward``, ``lateral`` connectivity of :func:`parameter_table`.

    Returns
    -------
    dict
        Name -> float physical value: ``default * exp(value)`` for ``"log"`` parameters, the
        value itself for ``"linear"`` ones (:meth:`ParamSpec.physical`).

    Raises
    ------
    ParameterError
        For a name not in the table.
    """
    table = {s.name: s for s in parameter_table(n_sources, **connectivity)}
    out = {}
    for name, value in named.items():
        if name not in table:
            raise ParameterError(f"unknown parameter name {name!r}")
        out[name] = float(table[name].physical(value))
    return out
