#!/usr/bin/env python3
"""Builds tiny random BLIP captioning checkpoints and their reference outputs for tests/integration/blip.rs.

Requires: pip install torch transformers tokenizers numpy pillow

Each fixture is a seeded, randomly initialised `transformers.BlipForConditionalGeneration`
saved with `save_pretrained` (the layout and config keys of the real checkpoints), at a tiny size:

- `base`: shaped like Salesforce/blip-image-captioning-base (vision width = text width, so the
  cross-attention keys and values are square);
- `large`: shaped like Salesforce/blip-image-captioning-large (vision wider and deeper than the
  text decoder, more heads).

Both have a tiny WordPiece `tokenizer.json` (BERT-style, lower case, with `[DEC]` as the start
token and `[SEP]` as the end token, like BLIP's), so a fixture folder is exactly what
`Blip::load` reads for a real model. Every parameter (layer norms and position tables included)
is perturbed with seeded noise, and the `[SEP]` bias is raised so that some captions end before
the token limit. References come from the checkpoint as reloaded with `from_pretrained` (what
is on disk, tied weights as `transformers` ties them). `reference.json` holds:

- `pixel_values`: 2 input images (2, 3, S, S), already preprocessed (seeded normal noise);
- `image_embeds`: `vision_model(...).last_hidden_state`, (2, tokens, width);
- `first_logits`: decoder logits after the start token alone, (2, vocab);
- `cases`: `generate` per image (batch 1) for greedy and beam search (3 beams), with and
  without `min_new_tokens`: the token ids (start token first), the text
  (`decode(skip_special_tokens=True).strip()`), the score (greedy: mean log-softmax of the
  chosen tokens; beam: `sequences_scores`), and for greedy the teacher-forced logits over the
  whole sequence, (len, vocab).

Preprocessing reference (`tests/fixtures/blip/preprocess/`): `examples/images/astronaut_riding_a_
dragon.png` cropped to 512x320 (so both down- and up-sampling happen, and the aspect changes) and
run through transformers' BLIP image processor at 384x384 (the Pillow backend,
`BlipImageProcessorPil`; torchvision is not needed). Its output is turned back into the 8-bit
levels Pillow produced (exact, checked here) and saved as `photo_384.png`.

Run from the repository root: python3 scripts/make_blip_fixtures.py
"""

import json
import os

import numpy as np
import torch
from PIL import Image
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import BlipConfig, BlipForConditionalGeneration, PreTrainedTokenizerFast

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "blip")

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = (
    "a an the of on in with and at by to is are two three man woman dog cat horse dragon "
    "astronaut space city street painting photo picture portrait landscape mountain river sky "
    "sunset night forest house car red blue green white black golden dark bright small large "
    "old young sitting standing riding flying walking holding art style digital oil detailed "
    ", . ' - ##s ##ing ##ed ##er ##ly"
).split()
VOCAB = SPECIAL + WORDS + ["[DEC]", "[ENC]"]
PAD, SEP = 0, 3
BOS = VOCAB.index("[DEC]")

FIXTURES = {
    "base": dict(
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=40),
        vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=4, image_size=32, patch_size=8),
        seed=11,
    ),
    "large": dict(
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=40),
        vision=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=3,
                    num_attention_heads=4, image_size=48, patch_size=8),
        seed=12,
    ),
}
# (decoding, beams, max_new_tokens, min_new_tokens)
CASES = [("greedy", 1, 12, 0), ("greedy", 1, 12, 8), ("beam", 3, 12, 0), ("beam", 3, 12, 5)]


def make_tokenizer(path):
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(VOCAB)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tok.add_special_tokens(SPECIAL + ["[DEC]", "[ENC]"])
    tok.save(path)
    return PreTrainedTokenizerFast(
        tokenizer_file=path, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
        cls_token="[CLS]", mask_token="[MASK]", bos_token="[DEC]",
        clean_up_tokenization_spaces=True)


def r(x):
    return np.round(np.asarray(x, dtype=np.float64), 7).tolist()


def build(name, spec):
    out = os.path.join(OUT, name)
    os.makedirs(out, exist_ok=True)
    tokenizer = make_tokenizer(os.path.join(out, "tokenizer.json"))
    torch.manual_seed(spec["seed"])
    config = BlipConfig(
        text_config=dict(spec["text"], vocab_size=len(VOCAB), bos_token_id=BOS,
                         sep_token_id=SEP, pad_token_id=PAD, eos_token_id=2),
        vision_config=spec["vision"])
    model = BlipForConditionalGeneration(config).eval()
    g = torch.Generator().manual_seed(spec["seed"] + 100)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "LayerNorm" in pname or "layer_norm" in pname or "layernorm" in pname:
                p.copy_((1.0 if pname.endswith("weight") else 0.0) + 0.2 * noise)
            else:
                scale = 1.0 if "position_embeddings" in pname else 0.15
                p.add_(scale * noise)
        # Raise the [SEP] bias until a greedy caption ends early (between 3 and 10 tokens).
        size = spec["vision"]["image_size"]
        pixels = np.round(np.random.default_rng(spec["seed"]).standard_normal((2, 3, size, size)), 3)
        probe = torch.tensor(pixels, dtype=torch.float32)
        bias = model.text_decoder.cls.predictions.bias
        base_sep = bias[SEP].item()

        def lengths(boost):
            bias[SEP] = base_sep + boost
            return [model.generate(pixel_values=probe[i:i + 1], max_new_tokens=12).shape[1] - 1
                    for i in range(2)]

        # Bisect between a boost where no caption ends early and one where they end at once.
        lo, hi = -8.0, 16.0
        boost = lo
        for _ in range(40):
            boost = (lo + hi) / 2
            n = lengths(boost)
            if any(3 <= x <= 10 for x in n):
                break
            if min(n) <= 2:
                hi = boost
            else:
                lo = boost
        print(f"{name}: [SEP] bias raised by {boost}")
    model.save_pretrained(out, safe_serialization=True)
    for extra in ("generation_config.json",):
        if os.path.exists(os.path.join(out, extra)):
            os.remove(os.path.join(out, extra))
    model = BlipForConditionalGeneration.from_pretrained(out).eval()

    size = spec["vision"]["image_size"]
    pixel_values = torch.tensor(pixels, dtype=torch.float32)
    ref = dict(pixel_values=pixels.tolist(), bos_token_id=BOS, sep_token_id=SEP, cases=[])
    with torch.no_grad():
        embeds = model.vision_model(pixel_values=pixel_values).last_hidden_state
        ref["image_embeds"] = r(embeds)
        first = model.text_decoder(input_ids=torch.full((2, 1), BOS),
                                   encoder_hidden_states=embeds).logits[:, -1]
        ref["first_logits"] = r(first)
        for decoding, beams, max_new, min_new in CASES:
            case = dict(decoding=decoding, beams=beams, max_new_tokens=max_new,
                        min_new_tokens=min_new, ids=[], texts=[], scores=[], sequence_logits=[])
            for i in range(2):
                outp = model.generate(
                    pixel_values=pixel_values[i:i + 1], max_new_tokens=max_new,
                    min_new_tokens=min_new, num_beams=beams, do_sample=False,
                    return_dict_in_generate=True, output_logits=True, output_scores=True)
                ids = outp.sequences[0].tolist()
                if beams == 1:
                    logp = [torch.log_softmax(step[0].float(), -1)[t].item()
                            for step, t in zip(outp.logits, ids[1:])]
                    score = sum(logp) / len(logp)
                if beams == 1 and min_new == 0:
                    seq_logits = model.text_decoder(
                        input_ids=torch.tensor([ids]),
                        encoder_hidden_states=embeds[i:i + 1]).logits[0]
                    case["sequence_logits"].append(r(seq_logits))
                if beams > 1:
                    score = outp.sequences_scores[0].item()
                case["ids"].append(ids)
                case["texts"].append(tokenizer.decode(ids, skip_special_tokens=True).strip())
                case["scores"].append(score)
            print(f"{name} {decoding}/{beams} min {min_new}: lengths "
                  f"{[len(x) - 1 for x in case['ids']]}, texts {case['texts']}")
            ref["cases"].append(case)
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(ref, f, separators=(",", ":"))


def preprocessing_reference():
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    out = os.path.join(OUT, "preprocess")
    os.makedirs(out, exist_ok=True)
    image = Image.open(os.path.join(ROOT, "examples/images/astronaut_riding_a_dragon.png"))
    image = image.convert("RGB").crop((0, 0, 512, 320))
    pv = BlipImageProcessorPil()(images=image, return_tensors="np")["pixel_values"][0]
    mean = np.array([0.48145466, 0.4578275, 0.40821073]).reshape(3, 1, 1)
    std = np.array([0.26862954, 0.26130258, 0.27577711]).reshape(3, 1, 1)
    levels = (pv.astype(np.float64) * std + mean) * 255.0
    rounded = np.round(levels)
    err = np.abs(levels - rounded).max()
    assert err < 1e-3, f"processor output is not 8-bit levels (off by {err})"
    Image.fromarray(rounded.transpose(1, 2, 0).astype(np.uint8)).save(
        os.path.join(out, "photo_384.png"), optimize=True)
    print(f"preprocess: {pv.shape}, levels exact to {err:.1e}")


def main():
    for name, spec in FIXTURES.items():
        build(name, spec)
    preprocessing_reference()


if __name__ == "__main__":
    main()
