#!/usr/bin/env bash
# The embedded index against Milvus, side by side in one run (docs/BENCHMARKS.md, "Backends"):
#   scripts/bench_backends.sh N [OLD_PROMPTDEX]
# imports the first N prompts of ../shared/data/prompts/sd_prompts_100k.tsv.gz into a fresh
# index directory and into a fresh Milvus index (milvus-lite started on a free loopback port
# from target/milvus-venv, made if missing), then again with 2 shard workers at once into each,
# then runs examples/bench_backends (200 queries) on the two single-worker indexes. With
# OLD_PROMPTDEX (a promptdex binary of an older commit) the embedded import is also timed with
# it, before and after the current one; with EMBEDDED_ONLY=1 that before/after is all it runs.
# STEPS (default "single sharded search") picks the steps: the one-worker imports, the
# shard-worker imports (each worker's report printed), the search benchmark (needs "single").
# Needs a release build (`cargo build --release --examples`); PROMPTDEX_BIN names another binary.
set -euo pipefail
n=${1:?number of prompts}
old=${2:-}
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${PROMPTDEX_BIN:-$repo/target/release/promptdex}
data=${PROMPTDEX_DATA:-$repo/../shared/data}
work=$(mktemp -d)
venv=$repo/target/milvus-venv
if [ ! -x "$venv/bin/milvus-lite" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet milvus-lite==3.2.2 pymilvus==3.0.2
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$venv/bin/milvus-lite" server --data-dir "$work/milvus" --host 127.0.0.1 --port "$port" \
  >"$work/milvus.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT
until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.2; done
corpus=$work/corpus.tsv
{ echo prompt; gzip -dc "$data/prompts/sd_prompts_100k.tsv.gz" | tail -n +2 | cut -f1 | head -n "$n" || true; } >"$corpus"
timed() { # NAME COMMAND...: runs the command, prints its wall time
  local name=$1 start end
  shift
  start=$(date +%s.%N)
  "$@" >"$work/$name.out" 2>"$work/$name.err" || { cat "$work/$name.err" >&2; exit 1; }
  end=$(date +%s.%N)
  printf '%-34s %7.1f s  %s\n' "$name" "$(echo "$end - $start" | bc)" "$(tail -1 "$work/$name.out" | cut -c1-400)"
}
two() { # INDEX: two shard workers at once
  "$bin" import "$corpus" --index "$1" --shard 1/2 --json >"$work/s1.out" 2>&1 &
  local a=$!
  "$bin" import "$corpus" --index "$1" --shard 2/2 --json >"$work/s2.out" 2>&1
  wait $a
}
sharded() { # NAME INDEX: the two shard workers, each one's report, what the index holds
  timed "$1" two "$2"
  tail -qn1 "$work/s1.out" "$work/s2.out" | cut -c1-300
  "$bin" stats --index "$2" --json | tr -d '\n '; echo
}
steps=" ${STEPS:-single sharded search} "
if [ -n "$old" ]; then timed "embedded, old binary" "$old" import "$corpus" --index "$work/old1" --json; fi
if [[ $steps == *" single "* ]]; then
  timed "embedded" "$bin" import "$corpus" --index "$work/embedded" --json
fi
if [ -n "$old" ]; then timed "embedded, old binary again" "$old" import "$corpus" --index "$work/old2" --json; fi
if [ "${EMBEDDED_ONLY:-0}" = 1 ]; then exit 0; fi
if [[ $steps == *" single "* ]]; then
  timed "milvus-lite" "$bin" import "$corpus" --index "milvus://127.0.0.1:$port/bench" --json
fi
if [[ $steps == *" sharded "* ]]; then
  sharded "embedded, 2 shard workers" "$work/embedded2"
  sharded "milvus-lite, 2 shard workers" "milvus://127.0.0.1:$port/bench2"
fi
if [[ $steps == *" search "* ]]; then
  "$repo/target/release/examples/bench_backends" "$work/embedded" "milvus://127.0.0.1:$port/bench" \
    "$repo/examples/data/diffusiondb_prompts_10k.tsv" 200
fi
