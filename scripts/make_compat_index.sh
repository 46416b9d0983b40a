#!/usr/bin/env bash
# Builds tests/fixtures/compat/index-REV.tar.gz: a small embedded index (the first 40 prompts
# of the DiffusionDB sample and the three example images, EfficientNet-Lite0) written by the
# promptdex binary of commit REV, for the test that later builds still open it unchanged:
#   scripts/make_compat_index.sh REV   (d45ff02 made the checked-in one)
set -euo pipefail
rev=${1:?revision}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/src" && git -C "$work/src" checkout -q "$rev"
(cd "$work/src" && cargo build --release --quiet)
bin=$work/src/target/release/promptdex
mkdir -p "$work/compat/imgs"
head -41 "$repo/examples/data/diffusiondb_prompts_10k.tsv" >"$work/compat/c.tsv"
cp "$repo"/examples/images/*.png "$work/compat/imgs/"
cd "$work/compat"
"$bin" import c.tsv --index idx
"$bin" index imgs --index idx
tar czf "$repo/tests/fixtures/compat/index-$rev.tar.gz" idx
