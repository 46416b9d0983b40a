#!/usr/bin/env bash
# EfficientNet-Lite0 throughput, one run, same machine and thread count: onnxruntime (PyPI) on
# the same weights (the independent PyTorch reference in scripts/efficientnet_reference.py,
# exported to ONNX) against `promptdex index`, both end to end over the 464 artist tiles
# (decode + preprocess + forward; promptdex also hashes, stores and builds its graph).
# Usage: scripts/bench_lite0.sh [THREADS=2]
# BENCH_PYTHON may name a Python with torch, onnx, onnxruntime, numpy and pillow.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
DATA=${PROMPTDEX_DATA:-../shared/data}
TILES=$DATA/styles/sd14_artist_tiles/images
PY=${BENCH_PYTHON:-}
if [ -z "$PY" ]; then
  PY=target/bench-venv/bin/python
  [ -x "$PY" ] || python3 -m venv target/bench-venv
  "$PY" -m pip install -q torch onnx onnxruntime numpy pillow
fi
cargo build --release --quiet
./target/release/promptdex models fetch efficientnet-lite0 >/dev/null
mkdir -p target/bench
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), threads $THREADS"
"$PY" scripts/bench_lite0_ort.py "$TILES" --threads "$THREADS" --onnx target/bench/lite0.onnx
rm -rf target/bench/lite0-index
RAYON_NUM_THREADS=$THREADS ./target/release/promptdex index "$TILES" --index target/bench/lite0-index
# promptdex forward alone (preprocessed batches of 16, like onnxruntime's second line):
EFFNET_BENCH_BATCH=16 cargo test --release --quiet --test integration -- --ignored lite0_throughput --nocapture 2>&1 | grep -i "images/s"
