#!/usr/bin/env bash
# Write a direct launcher for pyostree: `scripts/make-launcher.sh [DEST]`
# (default .cache/bin/pyostree); prints its path.
#
# The launcher runs the real interpreter with -ES and the source tree and
# site-packages put on sys.path directly.  The pip console script cannot skip
# site: version-manager shims (pyenv: ~0.1-0.4 s a call), PYTHONDONTWRITEBYTECODE
# (every call recompiles) and site .pth hooks (some machines import heavy
# modules there at every start-up) all land before pyostree's first line.
# The upstream suite runs the command thousands of times, so the tests use
# this launcher, and `make launcher PREFIX=/usr/local` installs one.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-.cache/bin/pyostree}
py=$(${PYTHON:-python3} -c 'import sys; print(sys.executable)')
mkdir -p "$(dirname "$dest")"
site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
plat=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')
tmp="$dest.tmp.$$"
cat > "$tmp" <<EOF2
#!$py -ES
import sys
sys.path[:0] = ["$PWD/src"]
sys.path += ["$site", "$plat"]
from pyostree.cli.main import main
raise SystemExit(main())
EOF2
chmod 755 "$tmp"
mv -f "$tmp" "$dest"
"$py" -E -m compileall -q src/pyostree >/dev/null
echo "$(cd "$(dirname "$dest")" && pwd)/$(basename "$dest")"
