#!/usr/bin/env bash
# Sets promptdex up on a fresh clone and runs the main job on the sample that ships here:
# build, fetch the models (sha256-checked), import 10k real DiffusionDB prompts, index the
# example SD images (reading the prompts embedded in them), search by text and by image, and
# generate the prompt for an image that carries none.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo is needed: https://rustup.rs" >&2; exit 1; }
cargo build --release --quiet
bin=target/release/promptdex
"$bin" models fetch
"$bin" import examples/data/diffusiondb_prompts_10k.tsv --index index
"$bin" index examples/images --index index
"$bin" search "a cute cat wearing a space suit, digital art" --index index -k 5
"$bin" search --image examples/images/with_lcm.png --index index -k 3
"$bin" generate examples/images/astronaut_riding_a_dragon.png --index index
