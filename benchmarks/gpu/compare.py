"""GPU check: CUDA vs CPU features on the same images, and extraction throughput."""
import json, os, sys, time
import numpy as np, torch
from deephash.backbones import create_backbone
from deephash.data import open_dataset
from deephash.features import transform_spec
from deephash.features.extract import TransformedImages, extract_features
ds = open_dataset(".gpu/cifar-mini")
out = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0),
       "tf32_conv": torch.backends.cudnn.allow_tf32, "tf32_matmul": torch.backends.cuda.matmul.allow_tf32}
bb = create_backbone("efficientnet_lite0", "default")
idx = np.arange(0, len(ds), 10)
for size in (128, 224):
    spec = transform_spec(bb, size)
    images = TransformedImages(ds, idx, spec.build(), size)
    cpu = extract_features(bb, images, batch_size=64, device=torch.device("cpu"))
    gpu = extract_features(bb, images, batch_size=64, device=torch.device("cuda"))
    out[f"max_abs_diff_{size}"] = float(np.abs(cpu - gpu).max())
    out[f"max_rel_diff_{size}"] = float((np.linalg.norm(cpu - gpu, axis=1) / np.linalg.norm(cpu, axis=1)).max())
    out[f"cos_min_{size}"] = float(((cpu * gpu).sum(1) / np.linalg.norm(cpu, axis=1) / np.linalg.norm(gpu, axis=1)).min())
    all_images = TransformedImages(ds, np.arange(len(ds)), spec.build(), size)
    for workers in (0, 8):
        extract_features(bb, all_images, batch_size=256, num_workers=workers, device=torch.device("cuda"))  # warm
        torch.cuda.synchronize(); t = time.perf_counter()
        extract_features(bb, all_images, batch_size=256, num_workers=workers, device=torch.device("cuda"))
        torch.cuda.synchronize()
        out[f"img_per_s_{size}_workers{workers}"] = len(ds) / (time.perf_counter() - t)
    # bare forward on pre-decoded batches: the GPU's own rate
    batch = torch.stack([all_images[i][0] for i in range(256)]).cuda()
    with torch.inference_mode():
        for _ in range(3): bb.cuda()(batch)
        torch.cuda.synchronize(); t = time.perf_counter()
        for _ in range(10): bb(batch)
        torch.cuda.synchronize()
    out[f"forward_img_per_s_{size}"] = 2560 / (time.perf_counter() - t)
print(json.dumps(out, indent=1))
json.dump(out, open(os.path.join(os.environ["OUT"], "compare.json"), "w"), indent=1)
