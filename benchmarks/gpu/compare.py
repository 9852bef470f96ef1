"""GPU check: CUDA features against CPU features of the same images, and the extraction
rate on the GPU (with and without decoding workers) against the bare forward pass.

Run from the repository root on a CUDA machine after ``benchmarks/gpu/prepare.sh``;
writes ``gpu_compare.json`` into ``$OUT`` (the device tool) or ``benchmarks/results``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from deephash.backbones import create_backbone
from deephash.data import open_dataset
from deephash.features import transform_spec
from deephash.features.extract import PixelImages, extract_features


def agreement(cpu: np.ndarray, gpu: np.ndarray) -> dict[str, float]:
    norms = np.linalg.norm(cpu, axis=1)
    return {"max_abs_diff": float(np.abs(cpu - gpu).max()),
            "max_rel_diff": float((np.linalg.norm(cpu - gpu, axis=1) / norms).max()),
            "cos_min": float(((cpu * gpu).sum(1) / norms / np.linalg.norm(gpu, axis=1)).min())}


def rate(backbone: torch.nn.Module, images: PixelImages, workers: int) -> float:
    cuda = torch.device("cuda")
    extract_features(backbone, images, batch_size=256, num_workers=workers, device=cuda)  # warm
    torch.cuda.synchronize()
    start = time.perf_counter()
    extract_features(backbone, images, batch_size=256, num_workers=workers, device=cuda)
    torch.cuda.synchronize()
    return len(images) / (time.perf_counter() - start)


@torch.inference_mode()
def forward_rate(backbone: torch.nn.Module, batch: torch.Tensor, rounds: int = 10) -> float:
    for _ in range(3):
        backbone(batch)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(rounds):
        backbone(batch)
    torch.cuda.synchronize()
    return rounds * len(batch) / (time.perf_counter() - start)


def main() -> None:
    dataset = open_dataset(".gpu/cifar-mini")
    backbone = create_backbone("efficientnet_lite0", "default")
    out: dict[str, object] = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0)}
    sample = np.arange(0, len(dataset), 10)
    for size in (128, 224):
        spec = transform_spec(backbone, size)
        images = PixelImages(dataset, sample, spec)
        cpu = extract_features(backbone, images, batch_size=64, device=torch.device("cpu"))
        gpu = extract_features(backbone, images, batch_size=64, device=torch.device("cuda"))
        out.update({f"{key}_{size}": value for key, value in agreement(cpu, gpu).items()})
        everything = PixelImages(dataset, np.arange(len(dataset)), spec)
        for workers in (0, 8):
            out[f"img_per_s_{size}_workers{workers}"] = rate(backbone, everything, workers)
        batch = spec.normalise(everything.collate([everything[i] for i in range(256)])[0]).cuda()
        out[f"forward_img_per_s_{size}"] = forward_rate(backbone.cuda(), batch)
    print(json.dumps(out, indent=1))
    folder = Path(os.environ.get("OUT", "benchmarks/results"))
    (folder / "gpu_compare.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
