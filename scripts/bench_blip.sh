#!/usr/bin/env bash
# BLIP captioning speed with random weights of the real shapes (blip-image-captioning-base and
# -large), one run: PyTorch transformers and promptdex on the same checkpoint and images, greedy,
# exactly TOKENS new tokens per image, same thread count. Checkpoints go to target/bench/.
# Usage: scripts/bench_blip.sh [THREADS=2] [TOKENS=32]
#   BENCH_PYTHON: a Python with torch + transformers (else a venv is made in target/bench-venv
#   with `pip install torch transformers tokenizers pillow`).
#   BENCH_IMAGES: the images to caption (default: the three PNGs in examples/images).
#   OMP_WAIT_POLICY: PASSIVE by default; with OpenMP's spinning threads, torch's two threads ran
#   the decoding steps 5-10x slower on a machine shared with other jobs.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
TOKENS=${2:-32}
PY=${BENCH_PYTHON:-target/bench-venv/bin/python}
if [ ! -x "$PY" ]; then
  python3 -m venv target/bench-venv
  "$PY" -m pip install -q torch transformers tokenizers pillow
fi
# shellcheck disable=SC2206
IMAGES=(${BENCH_IMAGES:-examples/images/*.png})
cargo build --release --quiet --example bench_blip
for arch in base large; do
  dir=target/bench/blip-$arch
  OMP_NUM_THREADS=$THREADS OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} "$PY" scripts/bench_blip.py "$arch" "$dir" "${IMAGES[@]}" \
    --threads "$THREADS" --tokens "$TOKENS"
  RAYON_NUM_THREADS=$THREADS ./target/release/examples/bench_blip "$dir" "$TOKENS" "${IMAGES[@]}"
done
