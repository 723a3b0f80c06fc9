#!/usr/bin/env bash
# Write .cache/bin/pyostree: a launcher that runs the real interpreter directly.
# Version-manager shims (pyenv) cost ~0.4 s per call, and PYTHONDONTWRITEBYTECODE
# (set on some machines) makes every call recompile, and site .pth hooks can
# import heavy modules at every start-up; the upstream suite runs the
# command thousands of times, so the tests use this launcher.
set -euo pipefail
cd "$(dirname "$0")/.."
py=$(${PYTHON:-python3} -c 'import sys; print(sys.executable)')
mkdir -p .cache/bin
site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
plat=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')
# -S: skip site's .pth processing (machines may carry start-up hooks there that
# import heavy modules); the source tree and site-packages are put on the path
# directly instead.
cat > .cache/bin/pyostree <<EOF2
#!$py -ES
import sys
sys.path[:0] = ["$PWD/src"]
sys.path += ["$site", "$plat"]
from pyostree.cli.main import main
raise SystemExit(main())
EOF2
chmod +x .cache/bin/pyostree
"$py" -E -m compileall -q src/pyostree >/dev/null
echo "$PWD/.cache/bin/pyostree"
