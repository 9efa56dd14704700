#!/usr/bin/env bash
# Set up .venv (if needed) and run the package's main job on the bundled default.
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
exec .venv/bin/nmm demo "$@"
