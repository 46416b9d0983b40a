#!/usr/bin/env bash
# Real photos for the image-encoder tests (dog.jpg, eagle.jpg, horses.jpg, giraffe.jpg, ...),
# taken from Debian's `darknet` package, which ships them under /usr/share/darknet/data.
# The package is only downloaded and unpacked (never installed) into target/test-photos/;
# the photos are not committed. Idempotent: does nothing when the photos are already there.
# Needs apt-get (Debian/Ubuntu) and a package list (`apt-get update` once, as root).
# Usage: scripts/fetch_test_photos.sh [DEST=target/test-photos]
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-target/test-photos}
PHOTOS=(dog.jpg eagle.jpg horses.jpg giraffe.jpg person.jpg)

have_all() {
  for p in "${PHOTOS[@]}"; do
    [ -s "$DEST/$p" ] || return 1
  done
}

if have_all; then
  exit 0
fi
mkdir -p "$DEST"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# apt-get download writes into the current directory; the _apt sandbox user may not be able
# to write to a mktemp folder, which only costs a warning.
if ! (cd "$WORK" && apt-get download darknet >/dev/null 2>"$WORK/apt.err"); then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null
    (cd "$WORK" && apt-get download darknet >/dev/null 2>"$WORK/apt.err") || {
      cat "$WORK/apt.err" >&2
      exit 1
    }
  else
    cat "$WORK/apt.err" >&2
    echo "apt-get download darknet failed; run 'apt-get update' as root first" >&2
    exit 1
  fi
fi
DEB=$(ls "$WORK"/darknet_*.deb)
dpkg-deb -x "$DEB" "$WORK/x"
for p in "${PHOTOS[@]}"; do
  cp "$WORK/x/usr/share/darknet/data/$p" "$DEST/$p.part"
  mv "$DEST/$p.part" "$DEST/$p"
done
have_all
echo "test photos in $DEST"
