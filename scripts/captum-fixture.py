#!/usr/bin/env python3
"""Make test/fixtures/captum/: a small torch CNN, a few images and the REAL Captum's Occlusion
attributions of them, for test/captum-real.test.ts (occmap's captum preset must equal Captum).

Needs: PyTorch (tested with Debian bookworm's python3-torch 1.13.1, `apt-get install
python3-torch`), numpy, and Captum's source on PYTHONPATH (Captum is pure Python over torch;
its `captum.attr` imports matplotlib, tqdm and packaging: Debian's python3-matplotlib,
python3-tqdm, python3-packaging). Captum v0.8.0 (commit fc17d5070c5447593749ce28f9602c7ae58d54ac,
requires torch >= 1.10) was used; no install needed, its `captum/` folder is enough:

    git clone --branch v0.8.0 https://github.com/pytorch/captum /tmp/captum    # or git archive
    PYTHONPATH=/tmp/captum python3 scripts/captum-fixture.py [--commit <captum commit>]

Run from anywhere; writes into test/fixtures/captum/ next to this script's repository:
  model.onnx        the CNN (opset 13, input "input" NCHW [batch, 4, 21, 21] with a dynamic
                    batch axis, output "probs" [batch, 2] softmax probabilities)
  images.npy        float32 [N, 4, 21, 21], NCHW: the exact tensor given to Captum
  probs.npy         float32 [N, 2]: torch's probabilities of the images (checks the ONNX export)
  <case>.npy        float32 [N, 4, 21, 21]: Captum's attributions of one case (NCHW; the window
                    spans all 4 channels, so the 4 channels of a pixel hold the same value)
  <case>.targets.npy  int64 [N]: the class each map explains
  meta.json         versions, the model, and the exact Captum call of every case
The outputs are committed; the test needs neither Python nor torch. Same seed, same torch
build -> the same files (float32 on CPU, deterministic kernels).
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch
from torch import nn

import captum
from captum.attr import Occlusion

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "test", "fixtures", "captum")
SEED = 12
N, C, H, W = 2, 4, 21, 21

# (name, window height, window width, stride, target). target "predicted" = torch's argmax of
# each image, else a fixed class for every image. "p2s2" has a stride that does not divide
# 21 - 2 = 19: Captum adds a last window cut off at the border (see the test).
CASES = [
    ("p3s1_pred", 3, 3, 1, "predicted"),
    ("p3s1_class1", 3, 3, 1, 1),
    ("p5s1_pred", 5, 5, 1, "predicted"),
    ("p2s1_class0", 2, 2, 1, 0),
    ("p2x3s1_pred", 2, 3, 1, "predicted"),
    ("p3s2_pred", 3, 3, 2, "predicted"),
    ("p5s4_class1", 5, 5, 4, 1),
    ("p2s2_pred", 2, 2, 2, "predicted"),
]


class SmallCnn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(C, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 21 -> 10
            nn.Conv2d(8, 8, 3, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(8 * 10 * 10, 2),
            nn.Softmax(dim=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_model() -> nn.Module:
    torch.manual_seed(SEED)
    model = SmallCnn().eval()
    with torch.no_grad():
        # Default init gives logits near 0 (probabilities ~0.5, occlusion drops ~1e-3): scale
        # the last layer so the maps have values well above float32 noise.
        model.net[6].weight.mul_(16.0)
    return model


def torch_package() -> str:
    """The distribution package that provided torch, when dpkg knows it (Debian's python3-torch)."""
    try:
        out = subprocess.run(["dpkg-query", "-S", torch.__file__], capture_output=True, text=True, check=True).stdout
        pkg = out.split(":")[0]
        ver = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True, check=True).stdout
        return f"{pkg} {ver}"
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a Debian package)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--commit", default="fc17d5070c5447593749ce28f9602c7ae58d54ac", help="the Captum commit on PYTHONPATH (recorded in meta.json)")
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)

    model = build_model()
    g = np.random.default_rng(SEED)
    images = g.uniform(0.0, 1.0, size=(N, C, H, W)).astype(np.float32)
    # A bright blob per image at different places, so the maps have structure to place.
    yy, xx = np.mgrid[0:H, 0:W]
    for i, (cy, cx) in enumerate([(14, 14), (10, 2)]):  # placed so the two images get different classes
        images[i] += (2.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)).astype(np.float32)
    x = torch.from_numpy(images)

    with torch.no_grad():
        probs = model(x)
    predicted = probs.argmax(dim=1)
    np.save(os.path.join(OUT, "images.npy"), images)
    np.save(os.path.join(OUT, "probs.npy"), probs.numpy().astype(np.float32))

    torch.onnx.export(
        model, x[:1], os.path.join(OUT, "model.onnx"), opset_version=13,
        input_names=["input"], output_names=["probs"],
        dynamic_axes={"input": {0: "batch"}, "probs": {0: "batch"}},
    )

    occ = Occlusion(model)
    cases = []
    for name, ph, pw, stride, target in CASES:
        t = predicted if target == "predicted" else torch.full((N,), target, dtype=torch.int64)
        with torch.no_grad():
            attr = occ.attribute(x, sliding_window_shapes=(C, ph, pw), strides=(1, stride, stride), baselines=0, target=t)
        a = attr.numpy().astype(np.float32)
        np.save(os.path.join(OUT, f"{name}.npy"), a)
        np.save(os.path.join(OUT, f"{name}.targets.npy"), t.numpy().astype(np.int64))
        cases.append({
            "name": name, "patch": [ph, pw], "stride": stride, "target": target,
            "targets": t.tolist(),
            "call": f"Occlusion(model).attribute(x, sliding_window_shapes=({C}, {ph}, {pw}), strides=(1, {stride}, {stride}), baselines=0, target={'predicted' if target == 'predicted' else target})",
            "absMax": float(np.abs(a).max()),
        })

    meta = {
        "what": "Captum Occlusion attributions of a small torch CNN, for test/captum-real.test.ts",
        "generatedBy": "scripts/captum-fixture.py",
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchPackage": torch_package(),
        "numpy": np.__version__,
        "captum": {"version": captum.__version__, "commit": args.commit, "source": "https://github.com/pytorch/captum"},
        "seed": SEED,
        "model": "Conv2d(4,8,3,pad 1) ReLU MaxPool2d(2) Conv2d(8,8,3,pad 1) ReLU Flatten Linear(800,2) (weight x16) Softmax",
        "onnx": {"file": "model.onnx", "opset": 13, "input": "input", "layout": "NCHW", "output": "probs (softmax)"},
        "images": {"file": "images.npy", "shape": [N, C, H, W], "layout": "NCHW", "dtype": "float32"},
        "probs": {"file": "probs.npy", "predicted": predicted.tolist(), "values": probs.tolist()},
        "attributions": "<case>.npy float32 [N, C, H, W] NCHW, <case>.targets.npy int64 [N]",
        "cases": cases,
    }
    with open(os.path.join(OUT, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(f"wrote {OUT}: {len(cases)} cases, predicted {predicted.tolist()}, probs {np.round(probs.numpy(), 4).tolist()}")


if __name__ == "__main__":
    main()
