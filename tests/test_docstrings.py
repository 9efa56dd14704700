"""Numpydoc docstrings on the public API.

Every function and class named in the ``__all__`` of a public module or subpackage of
``nmm_inference`` must have a docstring with a one-line summary and, when it takes
parameters, a numpydoc ``Parameters`` section that names each of them (``*args`` and
``**kwargs`` included; ``self``/``cls`` excluded).  For classes the class docstring documents
the constructor (``Parameters``, or ``Attributes`` for data classes whose fields are the
constructor's parameters).  numpydoc itself is not a dependency, so the sections are parsed
here (``_sections``), and the parser is tested on its own first.

There is no allowance list: every public object must pass (issue 8 closed the last three,
in ``nmm_inference.group``).
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import pytest

import nmm_inference

_HEADER = re.compile(r"^(?P<indent>[ \t]*)(?P<title>[A-Z][A-Za-z ]+)\n(?P=indent)-{3,}[ \t]*$", re.M)

#: Sections in which each parameter can be documented.
PARAM_SECTIONS = ("Parameters", "Other Parameters", "Attributes")

def _sections(doc: str) -> dict[str, str]:
    """Numpydoc sections of a cleaned docstring: ``{title: body}`` (summary under "")."""
    doc = inspect.cleandoc(doc or "")
    out: dict[str, str] = {}
    matches = list(_HEADER.finditer(doc))
    out[""] = doc[: matches[0].start()] if matches else doc
    for k, m in enumerate(matches):
        end = matches[k + 1].start() if k + 1 < len(matches) else len(doc)
        out[m.group("title").strip()] = doc[m.end():end]
    return out


def _documented_names(body: str) -> set[str]:
    """Parameter names of a Parameters-like section body (``a, b : type`` lines at the left)."""
    names: set[str] = set()
    for line in body.splitlines():
        if not line.strip() or line[:1].isspace():
            continue
        head = line.split(" : ", 1)[0] if " : " in line else line.rstrip(":").strip()
        for part in head.split(","):
            part = part.strip().lstrip("*")
            if part:
                names.add(part)
    return names


def _signature_params(obj) -> list[str] | None:
    target = getattr(obj, "py_func", obj)  # numba dispatchers
    if inspect.isclass(obj):
        target = obj.__init__
        if target is object.__init__:
            return []
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    out = []
    for p in sig.parameters.values():
        if p.name in ("self", "cls"):
            continue
        out.append(p.name)
    return out


def _problems(obj) -> list[str]:
    """Why ``obj``'s docstring is not numpydoc enough (empty list: fine)."""
    doc = obj.__doc__ if inspect.isclass(obj) else getattr(getattr(obj, "py_func", obj), "__doc__", None)
    if inspect.isclass(obj) and issubclass(obj, BaseException):
        return [] if (obj.__doc__ or "").strip() else ["no docstring"]
    if not doc or not doc.strip():
        return ["no docstring"]
    secs = _sections(doc)
    if not secs[""].strip():
        return ["no summary line"]
    params = _signature_params(obj)
    if inspect.isclass(obj) and params and obj.__init__.__doc__ and \
            any(s in _sections(obj.__init__.__doc__) for s in PARAM_SECTIONS):
        secs.update({k: v for k, v in _sections(obj.__init__.__doc__).items() if k})
    if not params:
        return []
    present = [s for s in PARAM_SECTIONS if s in secs]
    if not present:
        return [f"no Parameters section for ({', '.join(params)})"]
    documented = set().union(*(_documented_names(secs[s]) for s in present))
    missing = [p for p in params if p not in documented]
    return [f"parameters not documented: {', '.join(missing)}"] if missing else []


def _public_modules():
    mods = [nmm_inference]
    for info in pkgutil.walk_packages(nmm_inference.__path__, prefix="nmm_inference."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        mods.append(importlib.import_module(info.name))
    return mods


def _public_objects():
    seen = {}
    for mod in _public_modules():
        for name in getattr(mod, "__all__", ()):
            obj = getattr(mod, name)
            if not (inspect.isclass(obj) or callable(obj)):
                continue  # constants
            if getattr(obj, "__module__", "") and not str(obj.__module__).startswith("nmm_inference"):
                continue  # re-exported from elsewhere
            key = f"{getattr(obj, '__module__', mod.__name__)}:{getattr(obj, '__qualname__', name)}"
            seen.setdefault(key, obj)
    return seen


# ----------------------------------------------------------------------------- the checker


def _example(a, b=1, *args, c, **kwargs):
    """Summary.

    Parameters
    ----------
    a, b : int
        Numbers.
    *args
        More.
    c : str
    **kwargs
        Passed on.

    Returns
    -------
    int
    """


def _missing_c(a, c):
    """Summary.

    Parameters
    ----------
    a : int

    Returns
    -------
    int
    """


def _no_section(a):
    """Summary only."""


def test_checker_on_known_cases():
    assert _problems(_example) == []
    assert _problems(_missing_c) == ["parameters not documented: c"]
    assert _problems(_no_section) == ["no Parameters section for (a)"]
    assert _problems(lambda: None) == ["no docstring"]
    assert set(_sections(_example.__doc__)) == {"", "Parameters", "Returns"}


# ----------------------------------------------------------------------------- the package


def test_public_api_has_numpydoc_docstrings():
    objs = _public_objects()
    assert len(objs) > 50  # the walk found the package's API (guards against an empty walk)
    offenders = {}
    for key, obj in sorted(objs.items()):
        probs = _problems(obj)
        if probs:
            offenders[key] = "; ".join(probs)
    assert not offenders, "public objects without a numpydoc docstring:\n" + "\n".join(
        f"{k}: {v}" for k, v in offenders.items())


@pytest.mark.parametrize("module", ["nmm_inference.cli", "nmm_inference.report", "nmm_inference.viz",
                                    "nmm_inference.demo"])
def test_product_modules_fully_documented(module):
    mod = importlib.import_module(module)
    bad = {n: _problems(getattr(mod, n)) for n in mod.__all__
           if callable(getattr(mod, n)) and _problems(getattr(mod, n))}
    assert not bad, bad
