#!/usr/bin/env python3
"""Writes the ComfyUI fixtures of tests/integration/metadata_comfy.rs into tests/fixtures/metadata/.

Modern ComfyUI workflows, laid out as ComfyUI's front end (Comfy-Org/ComfyUI_frontend) serialises
them: the zod schema in src/platform/workflow/validation/schemas/workflowSchema.ts (a workflow of
version 0.4 with `definitions.subgraphs[]`, each definition a graph of its own with `nodes`, `links`
as objects, ordered `inputs`/`outputs` and the boundary nodes -10 and -20), promoted widgets as in
src/core/schemas/proxyWidget.ts (`properties.proxyWidgets`), and the API `prompt` as graphToPrompt
queues it (subgraphs expanded, inner node ids prefixed with the instance path, `"12:1"`, primitive
node values written into the inputs they feed).

Each case is written as ComfyUI's PNG saver writes it (tEXt `prompt` and `workflow`; the test
also reads each with its `prompt` chunk taken out, so that both readers are tested); three more
carry the graphs in EXIF as the WebP/JPEG savers do (Make `Prompt: {...}` / `prompt:{...}`,
ImageDescription `Workflow: {...}`). Standard library only. Run from the repository root:

    python3 scripts/make_comfy_fixtures.py
"""

import json
import os
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_metadata_fixtures import OUT, ascii_tag, jpeg, png, text_chunk, tiff, webp  # noqa: E402

MAKE, IMAGE_DESCRIPTION = 0x010F, 0x010E


# --- workflow building blocks ----------------------------------------------------------------

def node(id, type, inputs=(), outputs=(), widgets=(), **extra):
    """A serialised node; an input is (name, type, link) or (name, type, link, widget name).

    The members the reader never looks at (pos, size, flags, order, localized names) are left
    out to keep the fixtures small: tests flip every byte of every fixture.
    """
    ins = []
    for spec in inputs:
        name, kind, link = spec[:3]
        entry = {"name": name, "type": kind, "link": link}
        if len(spec) > 3:
            entry["widget"] = {"name": spec[3]}
        ins.append(entry)
    outs = [{"name": n, "type": t, "links": list(l)} for n, t, l in outputs]
    out = {"id": id, "type": type, "mode": 0, "inputs": ins, "outputs": outs,
           "properties": {}, "widgets_values": list(widgets)}
    out.update(extra)
    return out


def link(id, origin, origin_slot, target, target_slot, kind):
    """A link as subgraph definitions store them (an object)."""
    return {"id": id, "origin_id": origin, "origin_slot": origin_slot, "target_id": target,
            "target_slot": target_slot, "type": kind}


def io(name, kind, links):
    return {"id": f"00000000-0000-4000-8000-{zlib.crc32(f'{name}/{kind}'.encode()):012d}",
            "name": name, "type": kind, "linkIds": list(links)}


def definition(id, name, inputs, outputs, nodes, links):
    return {"id": id, "version": 1, "revision": 0, "name": name,
            "inputNode": {"id": -10, "bounding": [0, 0, 120, 60]},
            "outputNode": {"id": -20, "bounding": [900, 0, 120, 60]},
            "inputs": inputs, "outputs": outputs, "widgets": [], "nodes": nodes, "links": links}


def workflow(nodes, links, subgraphs=()):
    out = {"id": "5f0c1e2a-7b3d-4c8e-9a6f-0d1e2f3a4b5c", "revision": 0, "last_node_id": 100,
           "last_link_id": 100, "nodes": nodes, "links": links,
           "extra": {"frontendVersion": "1.28.6"}, "version": 0.4}
    if subgraphs:
        out["definitions"] = {"subgraphs": list(subgraphs)}
    return out


def sampler(id, seed, steps, cfg, name, scheduler, model, positive, negative, latent, out=()):
    return node(id, "KSampler",
                [("model", "MODEL", model), ("positive", "CONDITIONING", positive),
                 ("negative", "CONDITIONING", negative), ("latent_image", "LATENT", latent)],
                [("LATENT", "LATENT", out)], [seed, "fixed", steps, cfg, name, scheduler, 1])


def api_sampler(seed, steps, cfg, name, scheduler, model, positive, negative, latent):
    return {"class_type": "KSampler",
            "inputs": {"seed": seed, "steps": steps, "cfg": cfg, "sampler_name": name,
                       "scheduler": scheduler, "denoise": 1.0, "model": model, "positive": positive,
                       "negative": negative, "latent_image": latent}}


def checkpoint(id, name):
    return node(id, "CheckpointLoaderSimple", [], [("MODEL", "MODEL", [1]), ("CLIP", "CLIP", [3, 5]),
                                                   ("VAE", "VAE", [])], [name])


# --- 1. a flat workflow whose texts come from primitive nodes --------------------------------
# PrimitiveStringMultiline (a backend node: it stays in the API graph) feeds the positive
# encoder's text input; the legacy front-end PrimitiveNode feeds the negative one (in the API
# graph its value is written into the encoder's input). The positive encoder's own widget keeps
# a stale value, which must not be read.

def primitive_case():
    nodes = [
        checkpoint(4, "dreamshaper_8.safetensors"),
        node(10, "PrimitiveStringMultiline", [], [("STRING", "STRING", [20])],
             ["a lighthouse on a cliff at dawn"]),
        node(11, "PrimitiveNode", [], [("STRING", "STRING", [21])], ["blurry, lowres"],
             properties={"Run widget replace on values": False}),
        node(6, "CLIPTextEncode", [("clip", "CLIP", 3), ("text", "STRING", 20, "text")],
             [("CONDITIONING", "CONDITIONING", [4])], ["a stale widget value"]),
        node(7, "CLIPTextEncode", [("clip", "CLIP", 5), ("text", "STRING", 21, "text")],
             [("CONDITIONING", "CONDITIONING", [6])], ["blurry, lowres"]),
        node(5, "EmptyLatentImage", [], [("LATENT", "LATENT", [2])], [768, 512, 1]),
        sampler(3, 424242, 28, 6.5, "dpmpp_2m", "karras", 1, 4, 6, 2),
    ]
    nodes[2]["outputs"][0]["widget"] = {"name": "text"}
    links = [[1, 4, 0, 3, 0, "MODEL"], [2, 5, 0, 3, 3, "LATENT"], [3, 4, 1, 6, 0, "CLIP"],
             [5, 4, 1, 7, 0, "CLIP"], [4, 6, 0, 3, 1, "CONDITIONING"],
             [6, 7, 0, 3, 2, "CONDITIONING"], [20, 10, 0, 6, 1, "STRING"],
             [21, 11, 0, 7, 1, "STRING"]]
    prompt = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "dreamshaper_8.safetensors"}},
        "10": {"class_type": "PrimitiveStringMultiline", "inputs": {"value": "a lighthouse on a cliff at dawn"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": ["10", 0], "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry, lowres", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 768, "height": 512, "batch_size": 1}},
        "3": api_sampler(424242, 28, 6.5, "dpmpp_2m", "karras", ["4", 0], ["6", 0], ["7", 0], ["5", 0]),
    }
    return prompt, workflow(nodes, links)


# --- 2. the two encoders wrapped in a subgraph -----------------------------------------------

PROMPTS_ID = "7c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d5e"


def subgraph_case():
    inner = [
        node(1, "CLIPTextEncode", [("clip", "CLIP", 101)], [("CONDITIONING", "CONDITIONING", [103])],
             ["a red fox in fresh snow, golden hour"]),
        node(2, "CLIPTextEncode", [("clip", "CLIP", 102)], [("CONDITIONING", "CONDITIONING", [104])],
             ["deformed, extra limbs"]),
    ]
    prompts = definition(
        PROMPTS_ID, "Prompts", [io("clip", "CLIP", [101, 102])],
        [io("positive", "CONDITIONING", [103]), io("negative", "CONDITIONING", [104])], inner,
        [link(101, -10, 0, 1, 0, "CLIP"), link(102, -10, 0, 2, 0, "CLIP"),
         link(103, 1, 0, -20, 0, "CONDITIONING"), link(104, 2, 0, -20, 1, "CONDITIONING")])
    nodes = [
        checkpoint(4, "juggernautXL_v9.safetensors"),
        node(12, PROMPTS_ID, [("clip", "CLIP", 3)],
             [("positive", "CONDITIONING", [4]), ("negative", "CONDITIONING", [6])], [],
             properties={}),
        node(5, "EmptyLatentImage", [], [("LATENT", "LATENT", [2])], [1024, 1024, 1]),
        sampler(3, 7777, 30, 5.0, "euler_ancestral", "normal", 1, 4, 6, 2),
    ]
    links = [[1, 4, 0, 3, 0, "MODEL"], [2, 5, 0, 3, 3, "LATENT"], [3, 4, 1, 12, 0, "CLIP"],
             [4, 12, 0, 3, 1, "CONDITIONING"], [6, 12, 1, 3, 2, "CONDITIONING"]]
    prompt = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "juggernautXL_v9.safetensors"}},
        "12:1": {"class_type": "CLIPTextEncode",
                 "inputs": {"text": "a red fox in fresh snow, golden hour", "clip": ["4", 1]}},
        "12:2": {"class_type": "CLIPTextEncode", "inputs": {"text": "deformed, extra limbs", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
        "3": api_sampler(7777, 30, 5.0, "euler_ancestral", "normal", ["4", 0], ["12:1", 0], ["12:2", 0],
                         ["5", 0]),
    }
    return prompt, workflow(nodes, links, [prompts])


# --- 3. a subgraph inside a subgraph ---------------------------------------------------------
# The outer graph holds the loader and an instance (20) of "Generate", which holds the sampler,
# the latent, a string node and an instance (12) of "Encode". The positive text goes from the
# string node into Encode's `text` input; the negative text is a widget on instance 12 (Encode's
# input `negative_text`, unlinked): the modern promoted form, without `proxyWidgets`.

GENERATE_ID = "1a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d"
ENCODE_ID = "9e8d7c6b-5a4f-4e3d-9c2b-1a0f9e8d7c6b"


def nested_case():
    encode = definition(
        ENCODE_ID, "Encode",
        [io("clip", "CLIP", [201, 202]), io("text", "STRING", [203]), io("negative_text", "STRING", [204])],
        [io("positive", "CONDITIONING", [205]), io("negative", "CONDITIONING", [206])],
        [node(1, "CLIPTextEncode", [("clip", "CLIP", 201), ("text", "STRING", 203, "text")],
              [("CONDITIONING", "CONDITIONING", [205])], ["stale inner text"]),
         node(2, "CLIPTextEncode", [("clip", "CLIP", 202), ("text", "STRING", 204, "text")],
              [("CONDITIONING", "CONDITIONING", [206])], ["stale inner negative"])],
        [link(201, -10, 0, 1, 0, "CLIP"), link(202, -10, 0, 2, 0, "CLIP"),
         link(203, -10, 1, 1, 1, "STRING"), link(204, -10, 2, 2, 1, "STRING"),
         link(205, 1, 0, -20, 0, "CONDITIONING"), link(206, 2, 0, -20, 1, "CONDITIONING")])
    generate = definition(
        GENERATE_ID, "Generate", [io("model", "MODEL", [101]), io("clip", "CLIP", [102])],
        [io("LATENT", "LATENT", [107])],
        [node(5, "EmptyLatentImage", [], [("LATENT", "LATENT", [106])], [832, 1216, 1]),
         node(7, "PrimitiveStringMultiline", [], [("STRING", "STRING", [103])],
              ["a cathedral of glass in a desert"]),
         node(12, ENCODE_ID,
              [("clip", "CLIP", 102), ("text", "STRING", 103, "text"),
               ("negative_text", "STRING", None, "negative_text")],
              [("positive", "CONDITIONING", [104]), ("negative", "CONDITIONING", [105])],
              ["a cathedral of glass in a desert", "watermark, signature"], properties={}),
         sampler(3, 31337, 35, 7.5, "dpmpp_2m_sde", "exponential", 101, 104, 105, 106, [107])],
        [link(101, -10, 0, 3, 0, "MODEL"), link(102, -10, 1, 12, 0, "CLIP"),
         link(103, 7, 0, 12, 1, "STRING"), link(104, 12, 0, 3, 1, "CONDITIONING"),
         link(105, 12, 1, 3, 2, "CONDITIONING"), link(106, 5, 0, 3, 3, "LATENT"),
         link(107, 3, 0, -20, 0, "LATENT")])
    nodes = [
        checkpoint(4, "realvisxlV50.safetensors"),
        node(20, GENERATE_ID, [("model", "MODEL", 1), ("clip", "CLIP", 3)], [("LATENT", "LATENT", [8])],
             [], properties={}),
        node(8, "VAEDecode", [("samples", "LATENT", 8)], [("IMAGE", "IMAGE", [9])], []),
        node(9, "SaveImage", [("images", "IMAGE", 9)], [], ["ComfyUI"]),
    ]
    links = [[1, 4, 0, 20, 0, "MODEL"], [3, 4, 1, 20, 1, "CLIP"], [8, 20, 0, 8, 0, "LATENT"],
             [9, 8, 0, 9, 0, "IMAGE"]]
    prompt = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "realvisxlV50.safetensors"}},
        "20:5": {"class_type": "EmptyLatentImage", "inputs": {"width": 832, "height": 1216, "batch_size": 1}},
        "20:7": {"class_type": "PrimitiveStringMultiline", "inputs": {"value": "a cathedral of glass in a desert"}},
        "20:12:1": {"class_type": "CLIPTextEncode", "inputs": {"text": ["20:7", 0], "clip": ["4", 1]}},
        "20:12:2": {"class_type": "CLIPTextEncode", "inputs": {"text": "watermark, signature", "clip": ["4", 1]}},
        "20:3": api_sampler(31337, 35, 7.5, "dpmpp_2m_sde", "exponential", ["4", 0], ["20:12:1", 0],
                            ["20:12:2", 0], ["20:5", 0]),
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["20:3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    }
    return prompt, workflow(nodes, links, [generate, encode])


# --- 4. promoted widgets (proxyWidgets) ------------------------------------------------------
# "Text to Image" takes the text and the seed as widget inputs of the instance (entries
# ["-1", name]) and promotes the inner negative encoder's own text widget (entry ["2", "text"]);
# the instance's widgets_values follow proxyWidgets and replace the stale inner values.

TXT2IMG_ID = "3b4c5d6e-7f80-4a91-8b2c-d3e4f5061728"


def promoted_case():
    txt2img = definition(
        TXT2IMG_ID, "Text to Image",
        [io("model", "MODEL", [101]), io("clip", "CLIP", [102, 103]), io("text", "STRING", [104]),
         io("seed", "INT", [105])],
        [io("LATENT", "LATENT", [109])],
        [node(1, "CLIPTextEncode", [("clip", "CLIP", 102), ("text", "STRING", 104, "text")],
              [("CONDITIONING", "CONDITIONING", [106])], [""]),
         node(2, "CLIPTextEncode", [("clip", "CLIP", 103)], [("CONDITIONING", "CONDITIONING", [107])],
              ["a stale inner negative"]),
         node(5, "EmptyLatentImage", [], [("LATENT", "LATENT", [108])], [640, 896, 1]),
         node(3, "KSampler",
              [("seed", "INT", 105, "seed"), ("model", "MODEL", 101), ("positive", "CONDITIONING", 106),
               ("negative", "CONDITIONING", 107), ("latent_image", "LATENT", 108)],
              [("LATENT", "LATENT", [109])], [1, "randomize", 24, 7.0, "dpmpp_sde", "karras", 1])],
        [link(101, -10, 0, 3, 1, "MODEL"), link(102, -10, 1, 1, 0, "CLIP"),
         link(103, -10, 1, 2, 0, "CLIP"), link(104, -10, 2, 1, 1, "STRING"),
         link(105, -10, 3, 3, 0, "INT"), link(106, 1, 0, 3, 2, "CONDITIONING"),
         link(107, 2, 0, 3, 3, "CONDITIONING"), link(108, 5, 0, 3, 4, "LATENT"),
         link(109, 3, 0, -20, 0, "LATENT")])
    nodes = [
        checkpoint(4, "epicrealism_naturalSin.safetensors"),
        node(30, TXT2IMG_ID,
             [("model", "MODEL", 1), ("clip", "CLIP", 3), ("text", "STRING", None, "text"),
              ("seed", "INT", None, "seed")],
             [("LATENT", "LATENT", [8])],
             ["a koi pond under cherry blossoms", 123456789, "noisy, oversaturated"],
             properties={"proxyWidgets": [["-1", "text"], ["-1", "seed"], ["2", "text"]]}),
        node(8, "VAEDecode", [("samples", "LATENT", 8)], [("IMAGE", "IMAGE", [])], []),
    ]
    links = [[1, 4, 0, 30, 0, "MODEL"], [3, 4, 1, 30, 1, "CLIP"], [8, 30, 0, 8, 0, "LATENT"]]
    prompt = {
        "4": {"class_type": "CheckpointLoaderSimple",
              "inputs": {"ckpt_name": "epicrealism_naturalSin.safetensors"}},
        "30:1": {"class_type": "CLIPTextEncode",
                 "inputs": {"text": "a koi pond under cherry blossoms", "clip": ["4", 1]}},
        "30:2": {"class_type": "CLIPTextEncode", "inputs": {"text": "noisy, oversaturated", "clip": ["4", 1]}},
        "30:5": {"class_type": "EmptyLatentImage", "inputs": {"width": 640, "height": 896, "batch_size": 1}},
        "30:3": api_sampler(123456789, 24, 7.0, "dpmpp_sde", "karras", ["4", 0], ["30:1", 0], ["30:2", 0],
                            ["30:5", 0]),
    }
    return prompt, workflow(nodes, links, [txt2img])


# --- 5. SamplerCustomAdvanced and a guider inside a subgraph ---------------------------------
# A Flux-style graph: noise, sampler select, scheduler and latent feed SamplerCustomAdvanced;
# its guider is a CFGGuider inside the "Guide" subgraph, whose positive goes through
# FluxGuidance to an encoder fed by a "String Literal" node.

GUIDE_ID = "c0ffee00-1234-4abc-9def-00000000beef"


def guider_case():
    guide = definition(
        GUIDE_ID, "Guide", [io("model", "MODEL", [101]), io("clip", "CLIP", [102, 103])],
        [io("GUIDER", "GUIDER", [108])],
        [node(2, "String Literal", [], [("STRING", "STRING", [104])],
              ["an astronaut riding a horse on mars"]),
         node(1, "CLIPTextEncode", [("clip", "CLIP", 102), ("text", "STRING", 104, "text")],
              [("CONDITIONING", "CONDITIONING", [105])], [""]),
         node(3, "FluxGuidance", [("conditioning", "CONDITIONING", 105)],
              [("CONDITIONING", "CONDITIONING", [106])], [3.5]),
         node(6, "CLIPTextEncode", [("clip", "CLIP", 103)], [("CONDITIONING", "CONDITIONING", [107])],
              ["cartoon, painting"]),
         node(7, "CFGGuider", [("model", "MODEL", 101), ("positive", "CONDITIONING", 106),
                               ("negative", "CONDITIONING", 107)], [("GUIDER", "GUIDER", [108])], [4.5])],
        [link(101, -10, 0, 7, 0, "MODEL"), link(102, -10, 1, 1, 0, "CLIP"),
         link(103, -10, 1, 6, 0, "CLIP"), link(104, 2, 0, 1, 1, "STRING"),
         link(105, 1, 0, 3, 0, "CONDITIONING"), link(106, 3, 0, 7, 1, "CONDITIONING"),
         link(107, 6, 0, 7, 2, "CONDITIONING"), link(108, 7, 0, -20, 0, "GUIDER")])
    nodes = [
        node(4, "UNETLoader", [], [("MODEL", "MODEL", [1, 10])], ["flux1-dev.safetensors", "default"]),
        node(11, "DualCLIPLoader", [], [("CLIP", "CLIP", [3])],
             ["clip_l.safetensors", "t5xxl_fp16.safetensors", "flux", "default"]),
        node(40, GUIDE_ID, [("model", "MODEL", 1), ("clip", "CLIP", 3)], [("GUIDER", "GUIDER", [12])], [],
             properties={}),
        node(13, "RandomNoise", [], [("NOISE", "NOISE", [11])], [55555, "fixed"]),
        node(14, "KSamplerSelect", [], [("SAMPLER", "SAMPLER", [13])], ["euler"]),
        node(15, "BasicScheduler", [("model", "MODEL", 10)], [("SIGMAS", "SIGMAS", [14])],
             ["simple", 20, 1.0]),
        node(16, "EmptySD3LatentImage", [], [("LATENT", "LATENT", [15])], [1024, 576, 1]),
        node(17, "SamplerCustomAdvanced",
             [("noise", "NOISE", 11), ("guider", "GUIDER", 12), ("sampler", "SAMPLER", 13),
              ("sigmas", "SIGMAS", 14), ("latent_image", "LATENT", 15)],
             [("output", "LATENT", []), ("denoised_output", "LATENT", [])], []),
    ]
    links = [[1, 4, 0, 40, 0, "MODEL"], [3, 11, 0, 40, 1, "CLIP"], [10, 4, 0, 15, 0, "MODEL"],
             [11, 13, 0, 17, 0, "NOISE"], [12, 40, 0, 17, 1, "GUIDER"], [13, 14, 0, 17, 2, "SAMPLER"],
             [14, 15, 0, 17, 3, "SIGMAS"], [15, 16, 0, 17, 4, "LATENT"]]
    prompt = {
        "4": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"}},
        "11": {"class_type": "DualCLIPLoader",
               "inputs": {"clip_name1": "clip_l.safetensors", "clip_name2": "t5xxl_fp16.safetensors",
                          "type": "flux", "device": "default"}},
        "40:2": {"class_type": "String Literal", "inputs": {"string": "an astronaut riding a horse on mars"}},
        "40:1": {"class_type": "CLIPTextEncode", "inputs": {"text": ["40:2", 0], "clip": ["11", 0]}},
        "40:3": {"class_type": "FluxGuidance", "inputs": {"guidance": 3.5, "conditioning": ["40:1", 0]}},
        "40:6": {"class_type": "CLIPTextEncode", "inputs": {"text": "cartoon, painting", "clip": ["11", 0]}},
        "40:7": {"class_type": "CFGGuider",
                 "inputs": {"cfg": 4.5, "model": ["4", 0], "positive": ["40:3", 0], "negative": ["40:6", 0]}},
        "13": {"class_type": "RandomNoise", "inputs": {"noise_seed": 55555}},
        "14": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "15": {"class_type": "BasicScheduler",
               "inputs": {"scheduler": "simple", "steps": 20, "denoise": 1.0, "model": ["4", 0]}},
        "16": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 1024, "height": 576, "batch_size": 1}},
        "17": {"class_type": "SamplerCustomAdvanced",
               "inputs": {"noise": ["13", 0], "guider": ["40:7", 0], "sampler": ["14", 0],
                          "sigmas": ["15", 0], "latent_image": ["16", 0]}},
    }
    return prompt, workflow(nodes, links, [guide])


def compact(value):
    return json.dumps(value, separators=(",", ":"))


def main():
    cases = {
        "comfyui_primitive": primitive_case(),
        "comfyui_subgraph": subgraph_case(),
        "comfyui_nested_subgraph": nested_case(),
        "comfyui_promoted_widget": promoted_case(),
        "comfyui_guider": guider_case(),
    }
    files = {}
    for name, (prompt, flow) in cases.items():
        files[name + ".png"] = png(text_chunk("prompt", compact(prompt)), text_chunk("workflow", compact(flow)))
    prompt, flow = cases["comfyui_subgraph"]
    files["comfyui_exif_make.webp"] = webp(tiff(
        [ascii_tag(IMAGE_DESCRIPTION, "Workflow: " + compact(flow)),
         ascii_tag(MAKE, "Prompt: " + compact(prompt))], [], little=True))
    prompt, flow = cases["comfyui_guider"]
    files["comfyui_exif_make.jpg"] = jpeg(tiff(
        [ascii_tag(IMAGE_DESCRIPTION, "Workflow: " + compact(flow)),
         ascii_tag(MAKE, "prompt:" + compact(prompt))], [], little=False))
    _, flow = cases["comfyui_promoted_widget"]
    files["comfyui_exif_workflow.webp"] = webp(tiff(
        [ascii_tag(IMAGE_DESCRIPTION, "Workflow: " + compact(flow))], [], little=True))
    os.makedirs(OUT, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    total = sum(len(d) for d in files.values())
    print(f"wrote {len(files)} fixtures, {total} bytes, to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
