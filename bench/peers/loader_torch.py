#!/usr/bin/python3
"""Peer of `kiln_bench --mode loader`: the same reference training pipeline in torchvision.

Images are PIL images in a torch Dataset, transformed per sample by torchvision (Pad for
Fashion-MNIST, RandomHorizontalFlip, RandomCrop(32, padding=4), ToTensor, Normalize) and batched
by torch.utils.data.DataLoader with worker processes; this is how a PyTorch user feeds the model.
Timing matches kiln's: warm-up batches, then `repeats` windows of `steps` batches over one
continuous stream of shuffled epochs; the median window is reported in the last (JSON) line.

  /usr/bin/python3 bench/peers/loader_torch.py --dataset fashion-mnist --num-workers 2
"""
import argparse
import gzip
import json
import os
import statistics
import time

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image

FASHION = "/usr/share/datasets/fashion-mnist"


def idx_images(path):
    with gzip.open(path) as f:
        data = f.read()
    n, h, w = (int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(3))
    return np.frombuffer(data, np.uint8, offset=16).reshape(n, h, w)


def cifar_images(root):
    recs = []
    for k in range(1, 6):
        raw = np.fromfile(os.path.join(root, "cifar-10-batches-bin", f"data_batch_{k}.bin"), np.uint8)
        recs.append(raw.reshape(-1, 3073)[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return np.ascontiguousarray(np.concatenate(recs))


class Images(torch.utils.data.Dataset):
    def __init__(self, images, transform):
        self.images, self.transform = images, transform
        self.mode = "L" if images.ndim == 3 else "RGB"

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i], self.mode)), 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", default="fashion-mnist", choices=["fashion-mnist", "cifar10"])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()

    if a.dataset == "fashion-mnist":
        images, source = idx_images(os.path.join(FASHION, "train-images-idx3-ubyte.gz")), FASHION
        tf = T.Compose([T.Pad(2), T.RandomHorizontalFlip(), T.RandomCrop(32, padding=4), T.ToTensor(),
                        T.Normalize((0.2860,), (0.3530,))])
    else:
        root = os.environ.get("KILN_CIFAR10_ROOT", "datasets")
        if os.path.exists(os.path.join(root, "cifar-10-batches-bin", "data_batch_1.bin")):
            images, source = cifar_images(root), root
        else:
            images, source = np.random.default_rng(1).integers(0, 256, (50000, 32, 32, 3), np.uint8), "generated"
        tf = T.Compose([T.RandomHorizontalFlip(), T.RandomCrop(32, padding=4), T.ToTensor(),
                        T.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))])

    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(Images(images, tf), batch_size=a.batch_size, shuffle=True, drop_last=True,
                                         num_workers=a.num_workers, persistent_workers=a.num_workers > 0)

    def stream():
        while True:
            yield from loader

    batches = stream()
    for _ in range(a.warmup):
        next(batches)
    rates = []
    for r in range(a.repeats):
        t0 = time.perf_counter()
        n = 0
        for _ in range(a.steps):
            x, _ = next(batches)
            n += x.shape[0]
        rates.append(n / (time.perf_counter() - t0))
        print(f"repeat {r}: {rates[-1]:.0f} images/s")
    print(json.dumps({"bench": "loader", "impl": "torchvision", "dataset": a.dataset, "source": source,
                      "batch_size": a.batch_size, "num_workers": a.num_workers, "steps": a.steps,
                      "repeats": a.repeats, "images_per_s": round(statistics.median(rates)),
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
