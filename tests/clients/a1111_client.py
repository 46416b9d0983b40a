"""AUTOMATIC1111's API through its PyPI client, `webuiapi` (0.9.17), against a promptdex server.

    python a1111_client.py BASE_URL INTERROGATE_IMAGE PNG_INFO_IMAGE...

Prints one JSON object: for the first image, the captions of `interrogate` with the models
`clip` and `clip-classic` and the error an unknown model gets; for each other image, what
`png_info` answers and the `parameters` text Pillow itself reads from the file.
"""

import json
import sys

import webuiapi
from PIL import Image


def error_of(call):
    """The (status, body) of the RuntimeError webuiapi raises for a non-200 answer."""
    try:
        call()
    except RuntimeError as e:
        status, body = e.args
        return {"status": status, "body": json.loads(body)}
    return None


def main():
    base, first, *others = sys.argv[1:]
    api = webuiapi.WebUIApi(baseurl=base + "/sdapi/v1")
    image = Image.open(first)
    out = {
        "interrogate": {
            "clip": api.interrogate(image).info,
            "clip-classic": api.interrogate(image, model="clip-classic").info,
            "unknown": error_of(lambda: api.interrogate(image, model="deepdanbooru")),
        },
        "png_info": {},
    }
    for path in others:
        image = Image.open(path)
        answer = api.png_info(image)
        out["png_info"][path] = {
            "info": answer.info,
            "parameters": answer.parameters,
            "pillow": image.info.get("parameters"),
        }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
