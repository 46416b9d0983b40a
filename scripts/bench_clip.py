#!/usr/bin/env python3
"""PyTorch side of scripts/bench_clip.sh: CLIP image tower with random weights of the real shapes.

Writes the random checkpoint (HF CLIPModel layout) for promptdex to load the same weights, then
times `get_image_features` on seeded pixel batches.
Usage: bench_clip.py {b32,l14} OUT_DIR [--batch 8] [--runs 3] [--threads 2]
Needs: pip install torch transformers
"""
import argparse, os, time

import torch
from transformers import CLIPConfig, CLIPModel

SHAPES = {
    # openai/clip-vit-base-patch32 and openai/clip-vit-large-patch14
    "b32": dict(text=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8),
                vision=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                            patch_size=32, image_size=224), projection_dim=512),
    "l14": dict(text=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
                vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                            patch_size=14, image_size=224), projection_dim=768),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("arch", choices=SHAPES)
    ap.add_argument("out")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    s = SHAPES[a.arch]
    config = CLIPConfig(text_config=dict(s["text"], hidden_act="quick_gelu"),
                        vision_config=dict(s["vision"], hidden_act="quick_gelu"),
                        projection_dim=s["projection_dim"])
    model = CLIPModel(config).eval()
    if not os.path.exists(os.path.join(a.out, "model.safetensors")):
        model.save_pretrained(a.out, safe_serialization=True)
    size = s["vision"]["image_size"]
    x = torch.randn(a.batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        model.get_image_features(pixel_values=x)  # warm-up
        t = time.perf_counter()
        for _ in range(a.runs):
            model.get_image_features(pixel_values=x)
        dt = time.perf_counter() - t
    n = a.batch * a.runs
    print(f"transformers {a.arch}: {n} images in {dt:.2f} s = {n / dt:.2f} images/s (batch {a.batch}, threads {a.threads})")


if __name__ == "__main__":
    main()
