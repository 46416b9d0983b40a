#!/usr/bin/env bash
# Times scripts/quickstart.sh, then `cargo test --release --locked --no-run`, on fresh clones of
# two commits of this repository, one after the other, in the same run:
#   scripts/time_quickstart.sh OLD_REV NEW_REV [WORKDIR]
# Each clone is placed in WORKDIR (default: the folder above the repository, so ../shared
# resolves) as qs-old / qs-new. Prints one line per step; the clean build's share of the
# quickstart is the time from the clone to the first model folder (the build ends just before
# `models fetch` writes it).
set -u
old=${1:?old revision} new=${2:?new revision}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${3:-$(dirname "$repo")}
unset PROMPTDEX_MODELS
for pair in "old:$old" "new:$new"; do
  name=${pair%%:*} rev=${pair#*:}
  dir=$work/qs-$name
  rm -rf "$dir"
  git clone -q "$repo" "$dir" && git -C "$dir" checkout -q "$rev"
  cd "$dir" || exit 1
  start=$(date +%s)
  bash scripts/quickstart.sh >"$dir.quickstart.log" 2>&1
  rc=$? end=$(date +%s)
  built=$(stat -c %Y "$(ls -d models/*/ | head -1)" 2>/dev/null || echo "$end")
  echo "$name $rev quickstart rc=$rc wall=$((end - start)) s (build about $((built - start)) s)"
  start=$(date +%s)
  cargo test --release --locked --no-run >"$dir.test-build.log" 2>&1
  rc=$? end=$(date +%s)
  echo "$name $rev test build rc=$rc wall=$((end - start)) s," \
    "$(grep -c Executable "$dir.test-build.log") test binaries"
done
