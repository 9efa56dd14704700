#!/usr/bin/env bash
# Set up .venv (if needed) and run the default test suite.  Extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
export NMM_REQUIRE_ALL_DEPS=1
exec .venv/bin/python -m pytest "$@"
