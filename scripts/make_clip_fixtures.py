#!/usr/bin/env python3
"""Builds tiny random CLIP checkpoints and their reference outputs for tests/integration/clip.rs.

Requires: pip install torch transformers numpy pillow

Each fixture is a seeded, randomly initialised `transformers.CLIPModel` shaped like one of the
real checkpoints the Rust loader targets, at a tiny size:

- `vit-b-32`: openai/clip-vit-base-patch32 (patch 32 -> 8, quick_gelu, text and vision widths
  differ, EOS pooled at the highest token id: `eos_token_id` 2, the legacy convention).
- `vit-l-14`: openai/clip-vit-large-patch14 (patch 14, quick_gelu, vision wider than text).
- `vit-h-14`: laion/CLIP-ViT-H-14-laion2B-s32B-b79K (patch 14, exact erf `gelu` in both towers;
  here also a non-legacy `eos_token_id`, so pooling at the first EOS token is exercised).

Every parameter (layer norms included) is perturbed with seeded noise so that no weight is a
trivial 0/1. The folder `tests/fixtures/clip/<name>/` gets `model.safetensors` and
`config.json` from `save_pretrained`, and `reference.json` with:

- `pixel_values`: the 2 input images, (2, 3, S, S), already preprocessed (seeded normal noise);
- `input_ids`: 3 token-id sequences of different lengths;
- `image_embeds`, `text_embeds`: projected and L2-normalised, each text run on its own at its
  own length (so the Rust side's padding of a batch is tested too);
- `logits_per_image`: (2, 3), `exp(logit_scale) * image_embeds @ text_embeds.T`.

Run from the repository root: python3 scripts/make_clip_fixtures.py
"""

import json
import os

import numpy as np
import torch
from transformers import CLIPConfig, CLIPModel

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "clip")

FIXTURES = {
    "vit-b-32": dict(
        text=dict(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, max_position_embeddings=16, hidden_act="quick_gelu",
                  bos_token_id=98, eos_token_id=2, pad_token_id=1),
        vision=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                    num_attention_heads=2, image_size=32, patch_size=8,
                    hidden_act="quick_gelu"),
        projection_dim=16,
    ),
    "vit-l-14": dict(
        text=dict(vocab_size=300, hidden_size=32, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=16, hidden_act="quick_gelu",
                  bos_token_id=298, eos_token_id=2, pad_token_id=1),
        vision=dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                    num_attention_heads=4, image_size=28, patch_size=14,
                    hidden_act="quick_gelu"),
        projection_dim=24,
    ),
    "vit-h-14": dict(
        text=dict(vocab_size=500, hidden_size=48, intermediate_size=192, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=16, hidden_act="gelu",
                  bos_token_id=498, eos_token_id=499, pad_token_id=1),
        vision=dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                    num_attention_heads=4, image_size=42, patch_size=14, hidden_act="gelu"),
        projection_dim=32,
    ),
}


def token_ids(cfg, rng):
    """Three sequences: BOS, random words (below BOS/EOS), EOS, then (one of them) padding."""
    vocab, bos, eos = cfg["vocab_size"], cfg["bos_token_id"], cfg["eos_token_id"]
    # With the legacy eos_token_id (2) the real EOS is the highest id: use vocab - 1.
    end = vocab - 1 if eos == 2 else eos
    out = []
    for words, pad in ((14, 0), (5, 0), (6, 3)):
        seq = [bos] + [int(x) for x in rng.integers(3, bos, size=words)] + [end]
        # Padding after EOS, as a tokenizer padding to a fixed length would add.
        seq += [end if eos != 2 else 0] * pad
        out.append(seq)
    return out


def main():
    for index, (name, spec) in enumerate(FIXTURES.items()):
        torch.manual_seed(1000 + index)
        rng = np.random.default_rng(2000 + index)
        config = CLIPConfig(
            text_config=spec["text"],
            vision_config=spec["vision"],
            projection_dim=spec["projection_dim"],
        )
        config._attn_implementation = "eager"
        model = CLIPModel(config).eval()
        with torch.no_grad():
            for p in model.parameters():
                if p.ndim == 0:
                    continue  # logit_scale keeps its init value (ln(1 / 0.07))
                p.add_(torch.randn_like(p) * 0.05)

        size = spec["vision"]["image_size"]
        pixels = rng.standard_normal((2, 3, size, size)).astype(np.float32)
        ids = token_ids(spec["text"], rng)
        with torch.no_grad():
            pv = torch.from_numpy(pixels)
            image = model.visual_projection(model.vision_model(pixel_values=pv).pooler_output)
            image = image / image.norm(dim=-1, keepdim=True)
            texts = []
            for seq in ids:
                t = torch.tensor([seq], dtype=torch.long)
                out = model.text_projection(model.text_model(input_ids=t).pooler_output)
                texts.append(out / out.norm(dim=-1, keepdim=True))
            text = torch.cat(texts, 0)
            logits = model.logit_scale.exp() * image @ text.T
            # Cross-check with the full model on the equal-length batch of the first text.
            full = model(pixel_values=pv, input_ids=torch.tensor([ids[0]], dtype=torch.long))
            assert torch.allclose(full.logits_per_image[:, 0], logits[:, 0], atol=1e-5)

        folder = os.path.join(OUT, name)
        os.makedirs(folder, exist_ok=True)
        model.save_pretrained(folder, safe_serialization=True)
        reference = {
            "pixel_values": pixels.tolist(),
            "input_ids": ids,
            "image_embeds": image.numpy().tolist(),
            "text_embeds": text.numpy().tolist(),
            "logits_per_image": logits.numpy().tolist(),
        }
        with open(os.path.join(folder, "reference.json"), "w") as f:
            json.dump(reference, f)
        print(name, "written to", folder)


if __name__ == "__main__":
    main()
