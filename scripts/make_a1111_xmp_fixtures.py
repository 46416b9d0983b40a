#!/usr/bin/env python3
"""Writes the fixtures of tests/integration/metadata_a1111.rs into tests/fixtures/metadata/.

Standard library only, built from the documented layouts (the PNG, TIFF and JPEG helpers are
those of make_metadata_fixtures.py):

- drawthings_xmp.png: Draw Things' XMP packet in an iTXt "XML:com.adobe.xmp" chunk:
  xmp:CreatorTool, dc:description (A1111-like text, "-" before the negative prompt) and
  exif:UserComment holding the JSON {c, uc, size, model, sampler, seed, scale, steps, ...}
  inside rdf:Alt/rdf:li.
- a1111_extras.png: A1111 `parameters` whose prompt has a line starting with "Steps:", and
  whose settings line carries Hashes: {JSON}, Lora hashes, TI hashes and Civitai resources
  (one entry with a junk type).
- a1111_ifd0_byte.jpg: the A1111 text in a UserComment (0x9286) stored in IFD0 with type BYTE
  instead of the Exif IFD's UNDEFINED, as UTF-16LE without a character code.
- a1111_comment.gif: a GIF89a whose comment extension holds the A1111 text, as A1111 saves
  GIFs (Pillow's comment=), after a graphic control extension.

Run from the repository root:

    python3 scripts/make_a1111_xmp_fixtures.py
"""

import json
import os
import struct
import sys
from xml.sax.saxutils import escape

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_metadata_fixtures import OUT, itxt_chunk, jpeg, png, text_chunk, tiff  # noqa: E402

# --- Draw Things -----------------------------------------------------------------------------

DRAW_THINGS = {
    "c": "a lighthouse on a cliff, <storm> & spray,\nlong exposure",
    "uc": "blurry, text",
    "size": "768x1152",
    "model": "sd_xl_base_1.0_f16.ckpt",
    "sampler": "DPM++ 2M Karras",
    "seed": 2441935286,
    "scale": 5.5,
    "steps": 30,
    "strength": 1,
    "seed_mode": "Scale Alike",
    "shift": 1,
    "v2": {"loras": [{"file": "detail.ckpt", "weight": 0.8}]},
}


def xml_text(text):
    """XML character data as Draw Things writes it: entities, newlines as &#xA;."""
    return escape(text).replace("\n", "&#xA;")


def draw_things_xmp(config):
    description = (
        f"{config['c']}\n-{config['uc']}\n"
        f"Steps: {config['steps']}, Sampler: {config['sampler']}, Guidance Scale: {config['scale']}, "
        f"Seed: {config['seed']}, Size: {config['size']}, Model: {config['model']}, "
        f"Strength: {config['strength']}, Seed Mode: {config['seed_mode']}, Shift: {config['shift']}"
    )
    comment = json.dumps(config, separators=(",", ":"))
    return f"""<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 6.0.0">
   <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
      <rdf:Description rdf:about=""
            xmlns:dc="http://purl.org/dc/elements/1.1/"
            xmlns:xmp="http://ns.adobe.com/xap/1.0/"
            xmlns:exif="http://ns.adobe.com/exif/1.0/">
         <dc:description>
            <rdf:Alt>
               <rdf:li xml:lang="x-default">{xml_text(description)}</rdf:li>
            </rdf:Alt>
         </dc:description>
         <xmp:CreatorTool>Draw Things</xmp:CreatorTool>
         <exif:UserComment>
            <rdf:Alt>
               <rdf:li xml:lang="x-default">{xml_text(comment)}</rdf:li>
            </rdf:Alt>
         </exif:UserComment>
      </rdf:Description>
   </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"""


# --- A1111 extras ----------------------------------------------------------------------------

A1111_EXTRAS = (
    "castle interior, grand staircase\n"
    "Steps: carved in marble, lit by torches\n"
    "Negative prompt: lowres, watermark\n"
    "Steps: 25, Sampler: DPM++ SDE, Schedule type: Karras, CFG scale: 7, Seed: 1234567890, "
    "Size: 832x1216, Model hash: 4199bcdd14, Model: juggernautXL_v9, "
    'Lora hashes: "add_detail: 7c6bad76eb54, epi_noise: 0aa4b2d5b2a0", '
    'TI hashes: "easynegative: c74b4e810b03", '
    'Hashes: {"vae": "235745af8d", "model": "4199bcdd14", "lora:add_detail": "7c6bad76eb54"}, '
    'Civitai resources: [{"type":"checkpoint","modelVersionId":290640},'
    '{"type":"lora","weight":0.6,"modelVersionId":62833},{"type":7,"modelVersionId":"9208"}], '
    "Version: v1.9.3"
)

# --- EXIF UserComment in IFD0 as BYTE --------------------------------------------------------

IFD0_TEXT = (
    "a koi pond in autumn, maple leaves\n"
    "Negative prompt: people\n"
    "Steps: 18, Sampler: Euler a, CFG scale: 6, Seed: 77, Size: 640x640, Model: dreamshaper_8"
)


def ifd0_byte_user_comment(text):
    """UserComment in IFD0, type BYTE, UTF-16LE without the 8-byte character code (what the
    readers that handle this case decode: raw UTF-16)."""
    payload = text.encode("utf-16-le")
    return (0x9286, 1, len(payload), payload)  # type 1: BYTE


# --- GIF -------------------------------------------------------------------------------------

GIF_TEXT = (
    "pixel art, a tiny dragon — 竜, idle animation\n"
    "Negative prompt: photo\n"
    "Steps: 12, Sampler: Euler, CFG scale: 4.5, Seed: 9001, Size: 64x64, Model: pixelart_v2"
)


def gif(comment):
    """A 1x1 GIF89a: global table of two colours, a graphic control extension, the comment
    extension (sub-blocks of at most 255 bytes), one image, the trailer."""
    out = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    out += b"\x21\xf9\x04\x00\x00\x00\x00\x00"
    data = comment.encode("utf-8")
    out += b"\x21\xfe"
    for at in range(0, len(data), 255):
        piece = data[at:at + 255]
        out += bytes([len(piece)]) + piece
    out += b"\x00"
    out += b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return out + b"\x3b"


def main():
    os.makedirs(OUT, exist_ok=True)
    files = {
        "drawthings_xmp.png": png(itxt_chunk("XML:com.adobe.xmp", draw_things_xmp(DRAW_THINGS),
                                             compressed=False)),
        "a1111_extras.png": png(text_chunk("parameters", A1111_EXTRAS)),
        "a1111_ifd0_byte.jpg": jpeg(tiff([ifd0_byte_user_comment(IFD0_TEXT)], [], little=True)),
        "a1111_comment.gif": gif(GIF_TEXT),
    }
    for name, data in files.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    total = sum(len(d) for d in files.values())
    print(f"wrote {len(files)} fixtures, {total} bytes, to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
