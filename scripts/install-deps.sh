#!/usr/bin/env bash
# Install everything the tests, the demo and the benchmark use, on a fresh Debian machine.
# Idempotent: does nothing that is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_pkgs=(ostree ostree-tests attr umoci skopeo podman debootstrap fuse-overlayfs nginx-light fsverity erofs-utils docker-registry)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "install-deps: apt-get install ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "install-deps: missing Debian packages ${missing[*]} (run as root to install)" >&2
  fi
fi

py=${PYTHON:-python3}
stamp=.cache/deps.stamp
mkdir -p .cache
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || ! command -v pyostree >/dev/null 2>&1; then
  "$py" -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v -i "warning" || true
  touch "$stamp"
fi
