#!/usr/bin/env bash
# CLIP image tower speed with random weights of the real shapes (ViT-B/32, ViT-L/14), one run:
# PyTorch transformers and promptdex on the same checkpoint, same thread count.
# Usage: scripts/bench_clip.sh [THREADS=2]   (BENCH_PYTHON: a Python with torch + transformers)
#   OMP_WAIT_POLICY: PASSIVE by default; with OpenMP's spinning threads, torch ran this tower 2-2.5x
#   slower on a machine shared with other jobs.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
PY=${BENCH_PYTHON:-target/bench-venv/bin/python}
if [ ! -x "$PY" ]; then
  python3 -m venv target/bench-venv
  "$PY" -m pip install -q torch transformers
fi
cargo build --release --quiet --example bench_clip
for arch in b32 l14; do
  dir=target/bench/clip-$arch
  OMP_NUM_THREADS=$THREADS OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} \
    "$PY" scripts/bench_clip.py "$arch" "$dir" --threads "$THREADS"
  RAYON_NUM_THREADS=$THREADS ./target/release/examples/bench_clip "$dir"
done
