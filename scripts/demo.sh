#!/usr/bin/env bash
# `make demo`: the main job end to end on a local repository.
#
#  1. commit a small OS-like tree (with overlayfs whiteout markers) into a
#     bare repo with pyostree, and the same tree with the real ostree;
#  2. show that both got the same commit checksum, and cross-fsck;
#  3. check it out with --process-passthrough-whiteouts: .ostree-wh.NAME
#     files become char 0:0 whiteout devices;
#  4. stack the checkout over a lower layer with a real overlayfs mount (root
#     only) and show that the whited-out names are hidden;
#  5. show `log` and `ls`.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${DEMO_DIR:-$PWD/.cache/demo}
rm -rf "$work"
mkdir -p "$work"
cd "$work"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "A tree with two whiteout markers (layer 'upper' deletes etc/motd and usr/bin/old-tool)"
mkdir -p tree/etc tree/usr/bin
echo "Welcome to DemoOS" > tree/etc/os-release
echo '#!/bin/sh' > tree/usr/bin/tool && chmod 0755 tree/usr/bin/tool
ln -s tool tree/usr/bin/tool-link
: > tree/etc/.ostree-wh.motd
: > tree/usr/bin/.ostree-wh.old-tool && chmod 0400 tree/usr/bin/.ostree-wh.old-tool
find tree | sort

say "pyostree init + commit (bare), and the real ostree on the same tree"
pyostree --repo=repo init --mode=bare
py=$(pyostree --repo=repo commit -b demo/upper -s "Demo layer" --timestamp="2024-01-01 00:00:00 +0000" tree)
echo "pyostree commit: $py"
if command -v ostree >/dev/null; then
  ostree --repo=repo-c init --mode=bare
  c=$(ostree --repo=repo-c commit -b demo/upper -s "Demo layer" --timestamp="2024-01-01 00:00:00 +0000" tree)
  echo "ostree   commit: $c"
  [ "$py" = "$c" ] && echo "=> identical checksums" || { echo "=> checksums DIFFER"; exit 1; }
  ostree --repo=repo fsck
fi

say "pyostree log / ls"
pyostree --repo=repo log demo/upper
pyostree --repo=repo ls -R demo/upper

say "checkout --process-passthrough-whiteouts"
pyostree --repo=repo checkout --process-passthrough-whiteouts demo/upper upper
find upper -exec stat -c '%A %t:%T %U %n' {} + | sort -k4

if [ "$(id -u)" = 0 ]; then
  say "overlayfs: lower layer + the checked-out upper layer"
  mkdir -p lower/etc lower/usr/bin merged
  echo "old message of the day" > lower/etc/motd
  echo "old tool" > lower/usr/bin/old-tool
  echo "kept" > lower/usr/bin/kept
  if mount -t overlay overlay -o "lowerdir=upper:lower" merged 2>/dev/null; then
    find merged | sort
    test ! -e merged/etc/motd && test ! -e merged/usr/bin/old-tool && test -e merged/usr/bin/kept \
      && echo "=> whited-out files are hidden, the rest shows through"
    umount merged
  else
    echo "(overlayfs mount not available here)"
  fi
fi

say "done: repo at $work/repo"
