#!/usr/bin/env python3
"""Writes the small image fixtures of tests/integration/metadata.rs into tests/fixtures/metadata/.

Standard library only: PNG chunks, a baseline 1x1 JPEG, a lossless 1x1 WebP and the EXIF
(TIFF) blocks are assembled byte by byte. Each file carries the prompt the way one Stable
Diffusion front-end stores it. Run from the repository root:

    python3 scripts/make_metadata_fixtures.py
"""

import gzip
import json
import math
import os
import struct
import zlib

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "metadata")


# --- PNG -------------------------------------------------------------------------------------

def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def text_chunk(keyword, text):
    return chunk(b"tEXt", keyword.encode("latin-1") + b"\0" + text.encode("latin-1"))


def ztxt_chunk(keyword, text):
    return chunk(b"zTXt", keyword.encode("latin-1") + b"\0\0" + zlib.compress(text.encode("latin-1")))


def itxt_chunk(keyword, text, compressed, language="en"):
    body = text.encode("utf-8")
    if compressed:
        body = zlib.compress(body)
    head = (keyword.encode("latin-1") + b"\0" + bytes([1 if compressed else 0, 0])
            + language.encode("ascii") + b"\0\0")
    return chunk(b"iTXt", head + body)


def png(*meta, after_idat=()):
    """A 1x1 RGB PNG with the given chunks before (and optionally after) IDAT."""
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    idat = chunk(b"IDAT", zlib.compress(b"\x00\xff\x80\x00"))
    return (b"\x89PNG\r\n\x1a\n" + ihdr + b"".join(meta) + idat + b"".join(after_idat)
            + chunk(b"IEND", b""))


def png_rgba_itxt_first(keyword, text):
    """A 1x1 RGBA PNG with an uncompressed iTXt chunk (no language tag) right after IHDR, the
    way Krita AI Diffusion's `save_png_w_itxt` writes `parameters`."""
    body = keyword.encode("latin-1") + b"\0\0\0\0\0" + text.encode("utf-8")
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0))
    idat = chunk(b"IDAT", zlib.compress(b"\x00\x20\x40\x60\xff"))
    return b"\x89PNG\r\n\x1a\n" + ihdr + chunk(b"iTXt", body) + idat + chunk(b"IEND", b"")


# --- stealth metadata in the pixels ----------------------------------------------------------

def stealth_png(payload, lanes, compressed):
    """A square 8-bit PNG (RGBA for `alpha`, RGB for `rgb`) hiding `payload` in the least
    significant bits, as NovelAI's nai_meta and sd-webui-stealth-pnginfo lay it out: bits
    column by column (x outer, y inner), alpha LSB or R, G, B LSBs, most significant bit of
    each byte first; the signature, the payload length in bits (32-bit big-endian), the payload
    (gzip when `compressed`)."""
    data = gzip.compress(payload, mtime=0) if compressed else payload
    kind = ("png" if lanes == "alpha" else "rgb") + ("comp" if compressed else "info")
    stream = ("stealth_" + kind).encode("ascii") + struct.pack(">I", 8 * len(data)) + data
    bits = [(byte >> (7 - i)) & 1 for byte in stream for i in range(8)]
    per_pixel = 1 if lanes == "alpha" else 3
    side = max(8, math.ceil(math.sqrt(len(bits) / per_pixel)))
    channels = 4 if lanes == "alpha" else 3
    # A smooth picture, so the hidden bits are all that is odd about it.
    pixels = bytearray()
    for y in range(side):
        for x in range(side):
            pixels += bytes([(x * 4) % 256, (y * 4) % 256, 128, 255][:channels])
    for i, bit in enumerate(bits):
        pixel, lane = divmod(i, per_pixel)
        x, y = divmod(pixel, side)
        at = (y * side + x) * channels + (3 if lanes == "alpha" else lane)
        pixels[at] = (pixels[at] & 0xFE) | bit
    rows = b"".join(b"\0" + bytes(pixels[y * side * channels:(y + 1) * side * channels])
                    for y in range(side))
    color_type = 6 if lanes == "alpha" else 2
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, color_type, 0, 0, 0))
    return (b"\x89PNG\r\n\x1a\n" + ihdr + chunk(b"IDAT", zlib.compress(rows, 9))
            + chunk(b"IEND", b""))


# --- EXIF (TIFF) -----------------------------------------------------------------------------

def tiff(ifd0, exif_ifd, little):
    """A TIFF block: IFD0 entries, plus an Exif IFD linked from IFD0 when given.

    Entries are (tag, type, count, payload bytes); payloads over 4 bytes go after the IFDs.
    """
    e = "<" if little else ">"
    ifd0 = list(ifd0)
    if exif_ifd:
        ifd0.append((0x8769, 4, 1, None))  # offset filled in below
    ifd0_size = 2 + 12 * len(ifd0) + 4
    exif_at = 8 + ifd0_size
    exif_size = 2 + 12 * len(exif_ifd) + 4 if exif_ifd else 0
    data_at = exif_at + exif_size
    data = b""

    def ifd(entries):
        nonlocal data
        out = struct.pack(e + "H", len(entries))
        for tag, typ, count, payload in sorted(entries, key=lambda t: t[0]):
            if payload is None:
                value = struct.pack(e + "I", exif_at)
            elif len(payload) <= 4:
                value = payload.ljust(4, b"\0")
            else:
                value = struct.pack(e + "I", data_at + len(data))
                data += payload + (b"\0" if len(payload) % 2 else b"")
            out += struct.pack(e + "HHI", tag, typ, count) + value
        return out + struct.pack(e + "I", 0)

    head = (b"II*\0" if little else b"MM\0*") + struct.pack(e + "I", 8)
    body = ifd(ifd0) + (ifd(exif_ifd) if exif_ifd else b"")
    return head + body + data


def user_comment(text, encoding):
    """UserComment (0x9286, UNDEFINED): 8-byte character code, then the text."""
    if encoding == "ascii":
        payload = b"ASCII\0\0\0" + text.encode("ascii")
    else:
        payload = b"UNICODE\0" + text.encode(encoding)
    return (0x9286, 7, len(payload), payload)


def undefined_tag(tag, text):
    """An UNDEFINED tag holding bare text, as Pillow writes a `str` given for UserComment or
    MakerNote (Fooocus's `get_exif`): ASCII, no character-code prefix."""
    payload = text.encode("ascii", "replace")
    return (tag, 7, len(payload), payload)


def ascii_tag(tag, text):
    payload = text.encode("utf-8") + b"\0"
    return (tag, 2, len(payload), payload)


# --- JPEG and WebP ---------------------------------------------------------------------------

def jpeg(exif=None):
    """A baseline 1x1 grey JPEG; its one block is DC 0 and end-of-block."""
    def segment(marker, body):
        return b"\xff" + bytes([marker]) + struct.pack(">H", len(body) + 2) + body

    out = b"\xff\xd8" + segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0")
    if exif is not None:
        out += segment(0xE1, b"Exif\0\0" + exif)
    out += segment(0xDB, b"\x00" + b"\x01" * 64)
    out += segment(0xC0, b"\x08\x00\x01\x00\x01\x01\x01\x11\x00")
    one_code = bytes([1] + [0] * 15) + b"\x00"
    out += segment(0xC4, b"\x00" + one_code) + segment(0xC4, b"\x10" + one_code)
    out += segment(0xDA, b"\x01\x01\x00\x00\x3f\x00") + b"\x3f"
    return out + b"\xff\xd9"


def webp(exif=None):
    """A lossless 1x1 WebP (VP8X + VP8L), with an EXIF chunk when given."""
    def riff_chunk(kind, data):
        return kind + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")

    vp8l = bytes.fromhex("2f000000100710111188 88fe07".replace(" ", ""))
    flags = 0x08 if exif is not None else 0
    body = riff_chunk(b"VP8X", bytes([flags, 0, 0, 0]) + b"\0\0\0" + b"\0\0\0")
    body += riff_chunk(b"VP8L", vp8l)
    if exif is not None:
        body += riff_chunk(b"EXIF", exif)
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


# --- the prompts -----------------------------------------------------------------------------

A1111 = (
    "masterpiece, a lovely cat\n"
    "sitting on a windowsill, <lora:catstyle:0.8>\n"
    "Negative prompt: blurry, lowres,\n"
    "bad anatomy\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3141592653, "
    "Size: 768x512, Model hash: 0123abcd, Model: sd_xl_base_1.0, "
    'Lora hashes: "catstyle: 9f8e7d6c5b4a, other: 0011", Version: v1.10.1'
)
A1111_UNICODE = (
    "un café, 猫 au soleil — ünïcode\n"
    "Negative prompt: 低品質\n"
    "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 512x512"
)
A1111_SHORT = "a red fox in snow\nSteps: 12, Sampler: Euler, CFG scale: 5, Seed: 7, Size: 64x64"

INVOKE = {
    "generation_mode": "txt2img",
    "positive_prompt": "a castle on a hill, golden hour",
    "negative_prompt": "fog, people",
    "width": 512, "height": 768, "seed": 1234567, "rand_device": "cpu",
    "cfg_scale": 7.5, "steps": 30, "scheduler": "dpmpp_2m_k",
    "model": {"key": "abc", "hash": "blake3:ff00", "name": "dreamshaper-8", "base": "sd-1", "type": "main"},
    "loras": [],
}
SD_METADATA = {
    "model": "stable diffusion", "model_weights": "stable-diffusion-1.5", "model_hash": "cc6cb27103",
    "app_id": "invoke-ai/InvokeAI", "app_version": "2.3.0",
    "image": {
        "prompt": [{"prompt": "a lighthouse at dusk [rain, fog]", "weight": 1.0}],
        "steps": 50, "cfg_scale": 7.5, "threshold": 0, "perlin": 0, "height": 512, "width": 512,
        "seed": 42, "seamless": False, "type": "txt2img", "postprocessing": None, "sampler": "k_lms",
        "variations": [],
    },
}
DREAM = '"a watercolor \\"otter\\" [ugly, blurry]" -s 50 -S 42 -W 512 -H 576 -C 7.5 -A k_lms'

# ComfyUI API graph: sampler 3 is fed positive through a ConditioningCombine (10) of an
# encoder whose text is a link to a string node (11) and of an encoder behind an area node;
# negative goes through a ControlNet node that has its own positive/negative inputs.
COMFY_PROMPT = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 768, "batch_size": 1}},
    "11": {"class_type": "PrimitiveStringMultiline", "inputs": {"value": "a fluffy orange cat"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": ["11", 0], "clip": ["4", 1]}},
    "12": {"class_type": "CLIPTextEncode", "inputs": {"text": "sitting in a sunbeam", "clip": ["4", 1]}},
    "13": {"class_type": "ConditioningSetArea",
           "inputs": {"conditioning": ["12", 0], "width": 512, "height": 512, "x": 0, "y": 0, "strength": 1.0}},
    "10": {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["6", 0], "conditioning_2": ["13", 0]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "watermark, text", "clip": ["4", 1]}},
    "14": {"class_type": "ControlNetApplyAdvanced",
           "inputs": {"positive": ["10", 0], "negative": ["7", 0], "control_net": ["15", 0], "image": ["16", 0],
                      "strength": 0.8, "start_percent": 0.0, "end_percent": 1.0}},
    "3": {"class_type": "KSampler",
          "inputs": {"seed": 156680208700286, "steps": 25, "cfg": 6.0, "sampler_name": "dpmpp_2m",
                     "scheduler": "karras", "denoise": 1.0, "model": ["4", 0],
                     "positive": ["14", 0], "negative": ["14", 1], "latent_image": ["5", 0]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
}


def comfy_workflow(positive, negative):
    """A UI-format workflow: two encoders wired into a KSampler."""
    return {
        "last_node_id": 9, "last_link_id": 9,
        "nodes": [
            {"id": 6, "type": "CLIPTextEncode", "title": "Positive",
             "inputs": [{"name": "clip", "type": "CLIP", "link": 3}],
             "widgets_values": [positive]},
            {"id": 7, "type": "CLIPTextEncode", "title": "Negative",
             "inputs": [{"name": "clip", "type": "CLIP", "link": 5}],
             "widgets_values": [negative]},
            {"id": 3, "type": "KSampler",
             "inputs": [{"name": "model", "type": "MODEL", "link": 1},
                        {"name": "positive", "type": "CONDITIONING", "link": 4},
                        {"name": "negative", "type": "CONDITIONING", "link": 6},
                        {"name": "latent_image", "type": "LATENT", "link": 2}],
             "widgets_values": [8566257, "randomize", 20, 8, "euler", "normal", 1]},
        ],
        "links": [[4, 6, 0, 3, 1, "CONDITIONING"], [6, 7, 0, 3, 2, "CONDITIONING"]],
        "version": 0.4,
    }


NOVELAI_COMMENT = {
    "prompt": "1girl, silver hair, starry sky", "steps": 28, "height": 1216, "width": 832,
    "scale": 5.0, "seed": 2718281828, "sampler": "k_euler_ancestral", "n_samples": 1,
    "uc": "lowres, bad hands", "noise_schedule": "native",
}
FOOOCUS = {
    "prompt": "a cozy cabin in the woods", "negative_prompt": "people", "styles": "['Fooocus V2']",
    "performance": "Speed", "steps": 30, "resolution": "(1152, 896)", "guidance_scale": 4,
    "sharpness": 2, "sampler": "dpmpp_2m_sde_gpu", "scheduler": "karras", "seed": "12345",
    "base_model": "juggernautXL_v8Rundiffusion", "version": "Fooocus v2.1.865",
}
EXIF_TEXT = "a paper boat on a pond\nNegative prompt: dark\nSteps: 15, Sampler: Euler a, CFG scale: 7, Seed: 99, Size: 8x8"

# Fooocus in JPEG (its `fooocus` scheme: the JSON of FooocusMetadataParser.parse_string) and
# in WebP (its `a1111` scheme: A1111MetadataParser.parse_string's text).
FOOOCUS_JPEG = {
    "adm_guidance": "(1.5, 0.8, 0.3)", "base_model": "juggernautXL_v8Rundiffusion",
    "base_model_hash": "aeb7e9e689", "full_negative_prompt": ["(worst quality, low quality:1.4)"],
    "full_prompt": ["a lighthouse on a cliff at dawn, highly detailed"], "guidance_scale": 4.5,
    "loras": [["sd_xl_offset_example-lora_1.0", 0.1, "4852686128"]],
    "negative_prompt": "(worst quality, low quality:1.4)", "performance": "Quality",
    "prompt": "a lighthouse on a cliff at dawn", "refiner_model": "None", "resolution": "(896, 1152)",
    "sampler": "dpmpp_2m_sde_gpu", "scheduler": "karras", "seed": "2085531785", "sharpness": 2.0,
    "steps": 60, "styles": "['Fooocus V2', 'Fooocus Enhance']", "vae": "Default (model)",
    "version": "Fooocus v2.5.5",
}
FOOOCUS_A1111 = (
    "a koi pond in autumn, maple leaves\n"
    "Negative prompt: murky water\n"
    "Steps: 30, Sampler: DPM++ 2M SDE Karras, Seed: 424242, Size: 1152x896, CFG scale: 4, "
    'Sharpness: 2, ADM Guidance: "(1.5, 0.8, 0.3)", Model: juggernautXL_v8Rundiffusion, '
    "Model hash: aeb7e9e689, Performance: Speed, Scheduler: karras, VAE: Default (model), "
    "Version: Fooocus v2.5.5"
)

# SwarmUI (docs/Image Metadata Format.md): numbers as numbers in the PNG, as strings in EXIF.
SWARM_PNG = {
    "sui_image_params": {
        "prompt": "a photo of a red panda in a bamboo forest", "negativeprompt": "blurry, watermark",
        "model": "OfficialStableDiffusion/sd_xl_base_1.0", "seed": 1234567890, "steps": 30,
        "cfgscale": 6.5, "aspectratio": "1:1", "width": 1024, "height": 1024, "sampler": "dpmpp_2m",
        "scheduler": "karras", "automaticvae": True, "swarm_version": "0.9.5.2",
    },
    "sui_extra_data": {"date": "2025-03-01", "prep_time": "0.52 sec", "generation_time": "6.20 sec"},
    "sui_models": [{"name": "OfficialStableDiffusion/sd_xl_base_1.0.safetensors", "param": "model",
                    "hash": "0x" + "d7a9105a900fd52748f20725fe52fe52b507fd36bee4fc107b1550a26e6ee1d7"}],
}
SWARM_EXIF = {
    "sui_image_params": {
        "prompt": "a lantern festival over a river, night", "negativeprompt": "",
        "model": "Flux/flux1-dev-fp8", "seed": "305223794", "steps": "25", "cfgscale": "1.0",
        "width": "832", "height": "1216", "sampler": "euler", "scheduler": "simple",
        "swarm_version": "0.9.1.1",
    },
    "sui_extra_data": {"date": "2024-08-07"},
}

KRITA = (
    "a watercolor fox in a misty forest <lora:watercolor_v2:0.7>\n"
    "Negative prompt: photo, 3d render\n"
    "Steps: 24, Sampler: Euler a, CFG scale: 5.5, Seed: 1847362910, Size: 1024x768, "
    "Model hash: unknown, Model: zavychromaxl_v80.safetensors, Denoising strength: 0.65"
)

# NovelAI's stealth payload: the JSON of its text chunks, `Comment` a JSON string.
NOVELAI_STEALTH_COMMENT = {
    "prompt": "1girl, red kimono, cherry blossoms, night", "steps": 28, "height": 1216, "width": 832,
    "scale": 5.5, "uncond_scale": 0.0, "cfg_rescale": 0.0, "seed": 1618033988, "n_samples": 1,
    "noise_schedule": "karras", "sampler": "k_euler_ancestral", "uc": "lowres, jpeg artifacts",
    "request_type": "PromptGenerateRequest", "signed_hash": "c2lnbmVk",
}
NOVELAI_STEALTH = {
    "Title": "NovelAI generated image", "Description": NOVELAI_STEALTH_COMMENT["prompt"],
    "Software": "NovelAI", "Source": "NovelAI Diffusion V4.5 4BDE2A90", "Generation time": "4.21",
    "Comment": json.dumps(NOVELAI_STEALTH_COMMENT),
}
STEALTH_A1111 = (
    "a glass greenhouse full of ferns\n"
    "Negative prompt: people\n"
    "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 8675309, Size: 512x512, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly"
)


def main():
    os.makedirs(OUT, exist_ok=True)
    files = {
        "a1111_text.png": png(text_chunk("parameters", A1111)),
        "a1111_itxt_compressed.png": png(itxt_chunk("parameters", A1111_UNICODE, compressed=True)),
        "a1111_ztxt.png": png(ztxt_chunk("parameters", A1111_SHORT)),
        # Text after IDAT is still found (IDAT is skipped unread).
        "a1111_after_idat.png": png(after_idat=[itxt_chunk("parameters", A1111_SHORT, compressed=False)]),
        "invokeai.png": png(text_chunk("invokeai_metadata", json.dumps(INVOKE))),
        "invokeai_sd_metadata.png": png(text_chunk("sd-metadata", json.dumps(SD_METADATA)),
                                        text_chunk("Dream", '"something else" -s 1')),
        "invokeai_dream.png": png(text_chunk("Dream", DREAM)),
        "comfyui_prompt.png": png(text_chunk("prompt", json.dumps(COMFY_PROMPT)),
                                  text_chunk("workflow", json.dumps(comfy_workflow("wrong", "wrong")))),
        "comfyui_workflow.png": png(text_chunk("workflow", json.dumps(
            comfy_workflow("a misty forest, volumetric light", "cartoon")))),
        "novelai.png": png(text_chunk("Title", "AI generated image"),
                           text_chunk("Description", NOVELAI_COMMENT["prompt"]),
                           text_chunk("Software", "NovelAI"),
                           text_chunk("Source", "Stable Diffusion XL C1E1DE52"),
                           text_chunk("Comment", json.dumps(NOVELAI_COMMENT))),
        "fooocus.png": png(text_chunk("parameters", json.dumps(FOOOCUS)),
                           text_chunk("fooocus_scheme", "fooocus")),
        "easydiffusion.png": png(text_chunk("prompt", "{red|blue} balloon over a city"),
                                 text_chunk("negative_prompt", "clouds"),
                                 text_chunk("seed", "31337"),
                                 text_chunk("num_inference_steps", "25"),
                                 text_chunk("guidance_scale", "7.5"),
                                 text_chunk("use_stable_diffusion_model", "sd-v1-5")),
        "png_exif.png": png(chunk(b"eXIf", tiff([], [user_comment(EXIF_TEXT, "ascii")], little=False))),
        "a1111_utf16be.jpg": jpeg(tiff([], [user_comment(EXIF_TEXT, "utf-16-be")], little=False)),
        "a1111_utf16le.jpg": jpeg(tiff([], [user_comment(EXIF_TEXT, "utf-16-le")], little=False)),
        "a1111_exif.webp": webp(tiff([], [user_comment(EXIF_TEXT, "utf-16-le")], little=True)),
        "comfyui_exif.webp": webp(tiff([ascii_tag(0x0110, "prompt:" + json.dumps(COMFY_PROMPT))], [], little=True)),
        "fooocus.jpg": jpeg(tiff([ascii_tag(0x0131, "Fooocus v2.5.5"),
                                  undefined_tag(0x9286, json.dumps(dict(sorted(FOOOCUS_JPEG.items())))),
                                  undefined_tag(0x927C, "fooocus")], [], little=True)),
        "fooocus_a1111.webp": webp(tiff([ascii_tag(0x0131, "Fooocus v2.5.5"),
                                         undefined_tag(0x9286, FOOOCUS_A1111),
                                         undefined_tag(0x927C, "a1111")], [], little=True)),
        "swarmui.png": png(itxt_chunk("parameters", json.dumps(SWARM_PNG, indent=2), compressed=False,
                                      language="")),
        "swarmui.jpg": jpeg(tiff([], [user_comment(json.dumps(SWARM_EXIF), "utf-16-le")], little=True)),
        "swarmui.webp": webp(tiff([], [user_comment(json.dumps(SWARM_EXIF), "utf-16-be")], little=False)),
        "krita.png": png_rgba_itxt_first("parameters", KRITA),
        "novelai_stealth.png": stealth_png(json.dumps(NOVELAI_STEALTH).encode("utf-8"), "alpha",
                                           compressed=True),
        "stealth_rgb.png": stealth_png(STEALTH_A1111.encode("utf-8"), "rgb", compressed=False),
        "no_prompt.png": png(text_chunk("Software", "GIMP")),
        "no_prompt.jpg": jpeg(),
        "no_prompt.webp": webp(),
        "sidecar.png": png(),
        "sidecar.txt": "a snowy mountain village at night\nNegative prompt: daylight\n"
                       "Steps: 30, Sampler: Euler, CFG scale: 7, Seed: 5, Size: 512x512\n",
        "caption.png": png(),
        "caption.caption": "1girl, solo, red scarf, winter\n",
        "embedded_wins.png": png(text_chunk("parameters", A1111_SHORT)),
        "embedded_wins.txt": "the sidecar loses\n",
    }
    for name, content in files.items():
        data = content.encode("utf-8") if isinstance(content, str) else content
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in files)
    print(f"wrote {len(files)} fixtures, {total} bytes, to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
