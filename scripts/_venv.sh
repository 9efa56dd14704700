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
stamp=".venv/.nmm-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[test,nutpie,jax]"
  touch "$stamp"
fi
# one BLAS thread: small-matrix work is ~100x slower with OpenBLAS threading on 2 cores
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export MPLBACKEND="${MPLBACKEND:-Agg}"
