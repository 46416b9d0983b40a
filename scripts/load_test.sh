#!/usr/bin/env bash
# Load test of `promptdex serve` on loopback: starts a server over INDEX, runs
# examples/load_test (CLIENTS concurrent clients mixing prompt searches and generations for
# DURATION seconds), prints throughput, latency, errors and the server's peak memory, and
# stops the server.
#   scripts/load_test.sh [INDEX] [extra serve flags...]
#   CLIENTS=32 DURATION=60 GENERATE_EVERY=4 IMAGES=../shared/data/eval/kaggle_sample/images
set -euo pipefail
cd "$(dirname "$0")/.."
INDEX="${1:-index}"
shift || true
CLIENTS="${CLIENTS:-32}"
DURATION="${DURATION:-60}"
GENERATE_EVERY="${GENERATE_EVERY:-4}"
IMAGES="${IMAGES:-../shared/data/eval/kaggle_sample/images}"
cargo build --release --bin promptdex --example load_test
log="$(mktemp)"
./target/release/promptdex serve --index "$INDEX" --addr 127.0.0.1:0 "$@" >"$log" 2>"$log.err" &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -f "$log" "$log.err"' EXIT
for _ in $(seq 1 360); do
  grep -q '^listening on ' "$log" && break
  kill -0 "$server" 2>/dev/null || { cat "$log.err" >&2; exit 1; }
  sleep 0.5
done
url="$(sed -n 's/^listening on //p' "$log" | head -n1)"
[ -n "$url" ] || { echo "the server did not start" >&2; cat "$log.err" >&2; exit 1; }
echo "server $server at $url; $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
./target/release/examples/load_test --url "$url" --clients "$CLIENTS" --seconds "$DURATION" \
  --generate-every "$GENERATE_EVERY" --images "$IMAGES" --pid "$server" --json
