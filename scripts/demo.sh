#!/usr/bin/env bash
# Set up .venv (if needed) and run the package's main job on the bundled default:
# fit the bundled demo recording and write the HTML report (nmm_demo/demo_report.html).
# Extra arguments go to `nmm demo` (e.g. --out DIR, --overwrite, --no-fit).
SECONDS=0
NMM_EXTRAS="${NMM_EXTRAS:-nutpie}" source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
echo "nmm: environment ready after ${SECONDS} s" >&2
rc=0
.venv/bin/nmm demo "$@" || rc=$?
echo "nmm: demo finished with exit code ${rc} after ${SECONDS} s in all" >&2
exit "$rc"
