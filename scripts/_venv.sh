# Sourced by the other scripts: make .venv at the repository root and install the package.
# Idempotent: a second run only checks that the install is current.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# .python-version makes pyenv's python3 resolve to 3.12.1; fall back to python3.12 on PATH.
PY="${NMM_PYTHON:-}"
if [ -z "$PY" ]; then
  if command -v python3.12 >/dev/null 2>&1; then PY=python3.12; else PY=python3; fi
fi
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)'; then
  echo "error: Python >= 3.12 is required (found $("$PY" --version 2>&1)); set NMM_PYTHON" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# NMM_EXTRAS: the optional dependencies to install (scripts/demo.sh needs only nutpie; the
# tests also need pytest and the JAX backend).  One stamp per set, so that running the demo
# first and the tests later installs what the tests add.
extras="${NMM_EXTRAS:-test,nutpie,jax}"
stamp=".venv/.nmm-installed-${extras//,/-}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  # uv installs the same packages as pip from the same index, in parallel and without
  # pip's bytecode pass: 18 s here against 4 min for pip.  pip if uv cannot be had.
  if .venv/bin/python -m pip install -q uv; then
    .venv/bin/python -m uv pip install -q --python .venv/bin/python -e ".[${extras}]"
  else
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[${extras}]"
  fi
  touch "$stamp"
fi
# one BLAS thread: small-matrix work is ~100x slower with OpenBLAS threading on 2 cores
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export MPLBACKEND="${MPLBACKEND:-Agg}"
