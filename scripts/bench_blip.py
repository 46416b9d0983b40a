#!/usr/bin/env python3
"""PyTorch side of scripts/bench_blip.sh: BLIP captioning with random weights of the real shapes.

Writes the random checkpoint (HF BlipForConditionalGeneration layout, the config of
Salesforce/blip-image-captioning-base or -large) and a tokenizer.json with the real vocabulary
size and special-token ids (the words are placeholders: only ids matter), so that promptdex loads
the same weights; then times captioning of the given images as CLIP Interrogator does it
(BlipImageProcessor + generate, greedy), with exactly --tokens new tokens per image
(min_new_tokens = max_new_tokens, so both sides do the same work whatever the random weights).
Usage: bench_blip.py {base,large} OUT_DIR IMAGE... [--tokens 32] [--threads 2] [--runs 1]
Needs: pip install torch transformers tokenizers pillow
"""
import argparse, os, time

import torch
from PIL import Image
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import BlipConfig, BlipForConditionalGeneration
from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

SHAPES = {
    # Salesforce/blip-image-captioning-base and -large (text decoders alike, vision differs).
    "base": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
    "large": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16),
}
TEXT = dict(vocab_size=30524, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
            num_attention_heads=12, max_position_embeddings=512, bos_token_id=30522,
            sep_token_id=102, pad_token_id=0, eos_token_id=2)


def write_tokenizer(path):
    # bert-base-uncased's special ids ([PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103)
    # plus BLIP's [DEC] 30522 and [ENC] 30523; the other tokens are placeholders.
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += [f"w{i}" for i in range(30522 - len(vocab))] + ["[DEC]", "[ENC]"]
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tok.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]"])
    tok.save(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("arch", choices=SHAPES)
    ap.add_argument("out")
    ap.add_argument("images", nargs="+")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if not os.path.exists(os.path.join(a.out, "model.safetensors")):
        config = BlipConfig(text_config=TEXT, vision_config=dict(SHAPES[a.arch], image_size=384, patch_size=16))
        BlipForConditionalGeneration(config).save_pretrained(a.out, safe_serialization=True)
        write_tokenizer(os.path.join(a.out, "tokenizer.json"))
    model = BlipForConditionalGeneration.from_pretrained(a.out).eval()
    processor = BlipImageProcessorPil()
    images = [Image.open(p).convert("RGB") for p in a.images]

    def run(batch):
        inputs = processor(images=batch, return_tensors="pt")
        return model.generate(**inputs, max_new_tokens=a.tokens, min_new_tokens=a.tokens)

    with torch.inference_mode():
        run(images[:1])  # warm-up
        t = time.perf_counter()
        for _ in range(a.runs):
            out = run(images)
        dt = time.perf_counter() - t
        t = time.perf_counter()
        model.vision_model(**processor(images=images, return_tensors="pt"))
        dv = time.perf_counter() - t
    assert out.shape[1] == a.tokens + 1, out.shape
    n = len(images) * a.runs
    print(f"transformers blip-{a.arch}: {n} images in {dt:.2f} s = {n / dt:.3f} images/s "
          f"({a.tokens} tokens each, batch {len(images)}, threads {a.threads}); "
          f"preprocess + vision alone {len(images) / dv:.3f} images/s")


if __name__ == "__main__":
    main()
