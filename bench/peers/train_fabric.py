#!/usr/bin/env python3
"""Peer of examples/train_cifar10: the reference program written with PyTorch + Lightning Fabric.

The recipe of kiln's DESIGN.md (SimpleCNN, AdamW lr 3e-4 wd 1e-2, cosine over the epochs, batch 128
shuffled, eval batch 256 without augmentation, flip + crop-with-padding) on Debian's real
Fashion-MNIST (padded to 32x32, Normalize(0.2860, 0.3530)) read from its IDX files, so kiln's and
PyTorch's runs see the same data. Prints the program's lines ("Epoch E | Batch B | Loss: L | Acc: A%"
with 0-based epoch and batch every 100 batches, "Epoch E | Val Acc: V%", "  epoch E: S s, R img/s")
and a last JSON line with the accuracy per epoch and the seconds per epoch.

  .venv-peers/bin/python bench/peers/train_fabric.py --data-dir /usr/share/datasets/fashion-mnist \
      --epochs 3 --seed 0 --threads 2 --precision 32-true
"""
import argparse
import gzip
import json
import os
import struct
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from simple_cnn import SimpleCNN  # beside this script

try:
    from lightning.fabric import Fabric
except ImportError:  # older installs ship it as lightning_fabric
    from lightning_fabric import Fabric

MEAN, STD = 0.2860, 0.3530


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    _, _, dtype_code, ndim = struct.unpack(">BBBB", data[:4])
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


class FashionMNIST(Dataset):
    """Images padded 28 -> 32 with black (0) pixels; train adds flip + RandomCrop(32, padding 4)."""

    def __init__(self, root, train):
        prefix = "train" if train else "t10k"
        images = read_idx(os.path.join(root, f"{prefix}-images-idx3-ubyte.gz"))
        self.images = torch.from_numpy(np.pad(images, ((0, 0), (2, 2), (2, 2)))).unsqueeze(1)  # uint8 [N,1,32,32]
        self.labels = torch.from_numpy(read_idx(os.path.join(root, f"{prefix}-labels-idx1-ubyte.gz")).astype(np.int64))
        self.train = train

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        x = self.images[i]
        if self.train:
            if torch.rand(()) < 0.5:
                x = x.flip(-1)
            x = F.pad(x, (4, 4, 4, 4))  # black padding, as torchvision's RandomCrop(padding=4)
            top, left = torch.randint(0, 9, (2,)).tolist()
            x = x[:, top:top + 32, left:left + 32]
        x = (x.float() / 255.0 - MEAN) / STD  # ToTensor + Normalize
        return x, self.labels[i]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--precision", default="32-true")
    ap.add_argument("--accelerator", default="cpu")
    ap.add_argument("--num-workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-train-batches", type=int, default=-1, help="for quick runs")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    fabric = Fabric(accelerator=args.accelerator, devices=1, precision=args.precision)
    fabric.launch()
    fabric.seed_everything(args.seed)
    model = SimpleCNN(in_channels=1, num_classes=10)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-2)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    model, optimizer = fabric.setup(model, optimizer)
    train_loader = fabric.setup_dataloaders(DataLoader(FashionMNIST(args.data_dir, True), batch_size=args.batch_size,
                                                       shuffle=True, num_workers=args.num_workers,
                                                       persistent_workers=args.num_workers > 0))
    test_loader = fabric.setup_dataloaders(DataLoader(FashionMNIST(args.data_dir, False), batch_size=256,
                                                      num_workers=args.num_workers))
    accs, secs = [], []
    for epoch in range(args.epochs):
        model.train()
        t0 = time.perf_counter()
        correct, seen = 0, 0
        for batch_idx, (x, y) in enumerate(train_loader):
            if batch_idx == args.max_train_batches:
                break
            optimizer.zero_grad()
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            fabric.backward(loss)
            optimizer.step()
            correct += (logits.argmax(1) == y).sum().item()
            seen += y.size(0)
            if batch_idx % 100 == 0:
                fabric.print(f"Epoch {epoch} | Batch {batch_idx} | Loss: {loss.item():.4f} | Acc: {100.0 * correct / seen:.1f}%")
        scheduler.step()
        s = time.perf_counter() - t0
        model.eval()
        hit, total = 0, 0
        with torch.no_grad():
            for x, y in test_loader:
                hit += (model(x).argmax(1) == y).sum().item()
                total += y.size(0)
        acc = 100.0 * hit / total
        accs.append(round(acc, 2))
        secs.append(round(s, 1))
        fabric.print(f"Epoch {epoch} | Val Acc: {acc:.1f}%")
        fabric.print(f"  epoch {epoch}: {s:.0f} s, {seen / s:.0f} img/s")
    fabric.print(json.dumps({"test_acc": accs, "train_seconds": secs, "precision": args.precision,
                             "threads": torch.get_num_threads(), "torch": torch.__version__,
                             "seed": args.seed}))


if __name__ == "__main__":
    main()
