#!/usr/bin/env python3
"""The reference program as a PyTorch + Lightning Fabric user writes it: the recipe of kiln's
DESIGN.md on CIFAR-10 read by torchvision-style code (PIL images, torchvision transforms, a
DataLoader with workers), the training loop with per-batch metrics read back to the host, a
validation pass and fabric.save every epoch. It reads CIFAR-10's binary files (real ones, or the
random ones of make_synthetic_cifar10.py), so kiln's train_cifar10 and this program see the same
bytes. The last line is JSON: seconds for the whole run, per epoch, and the accuracy.

  python3 bench/peers/seed_cifar10.py --data-dir /tmp/cifar-synth --epochs 20 --accelerator cuda
"""
import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms as transforms
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from simple_cnn import SimpleCNN  # beside this script

try:
    from lightning.fabric import Fabric
except ImportError:
    from lightning_fabric import Fabric


class CIFAR10Bin(Dataset):
    """torchvision.datasets.CIFAR10's behaviour (HWC uint8 array -> PIL image -> transform) over
    the binary distribution of the data."""

    def __init__(self, root, train, transform):
        names = [f"data_batch_{i}.bin" for i in range(1, 6)] if train else ["test_batch.bin"]
        raw = np.concatenate([np.fromfile(os.path.join(root, "cifar-10-batches-bin", n), dtype=np.uint8)
                              .reshape(-1, 3073) for n in names])
        self.targets = raw[:, 0].astype(np.int64).tolist()
        self.data = raw[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()
        self.transform = transform

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.data[i])), self.targets[i]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--accelerator", default="auto")
    ap.add_argument("--precision", default="32-true")
    ap.add_argument("--num-workers", type=int, default=4)
    ap.add_argument("--checkpoint-dir", default="checkpoints")
    args = ap.parse_args()
    t_start = time.perf_counter()
    os.makedirs(args.checkpoint_dir, exist_ok=True)

    fabric = Fabric(accelerator=args.accelerator, devices=1, precision=args.precision)
    fabric.launch()
    fabric.seed_everything(42)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    train_tf = transforms.Compose([transforms.RandomHorizontalFlip(), transforms.RandomCrop(32, padding=4),
                                   transforms.ToTensor(), transforms.Normalize(mean, std)])
    test_tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
    train_loader = DataLoader(CIFAR10Bin(args.data_dir, True, train_tf), batch_size=128, shuffle=True,
                              num_workers=args.num_workers, persistent_workers=args.num_workers > 0)
    test_loader = DataLoader(CIFAR10Bin(args.data_dir, False, test_tf), batch_size=256,
                             num_workers=args.num_workers, persistent_workers=args.num_workers > 0)
    model = SimpleCNN(in_channels=3, num_classes=10)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=1e-2)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    model, optimizer = fabric.setup(model, optimizer)
    train_loader, test_loader = fabric.setup_dataloaders(train_loader, test_loader)

    epoch_secs, acc = [], 0.0
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        model.train()
        correct, total = 0, 0
        for batch_idx, (x, y) in enumerate(train_loader):
            optimizer.zero_grad()
            out = model(x)
            loss = F.cross_entropy(out, y)
            fabric.backward(loss)
            optimizer.step()
            total += y.size(0)
            correct += out.argmax(1).eq(y).sum().item()
            if batch_idx % 100 == 0:
                fabric.print(f"Epoch {epoch} | Batch {batch_idx} | Loss: {loss.item():.4f} | "
                             f"Acc: {100.0 * correct / total:.1f}%")
        scheduler.step()
        model.eval()
        hit, seen = 0, 0
        with torch.no_grad():
            for x, y in test_loader:
                hit += model(x).argmax(1).eq(y).sum().item()
                seen += y.size(0)
        acc = 100.0 * hit / seen
        fabric.print(f"Epoch {epoch} | Val Acc: {acc:.1f}%")
        fabric.save(os.path.join(args.checkpoint_dir, "last.ckpt"),
                    {"model": model, "optimizer": optimizer, "epoch": epoch})
        epoch_secs.append(round(time.perf_counter() - t0, 2))
    fabric.print(json.dumps({"program": "seed_cifar10.py", "epochs": args.epochs, "precision": args.precision,
                             "wall_seconds": round(time.perf_counter() - t_start, 2), "epoch_seconds": epoch_secs,
                             "test_acc": round(acc, 2), "num_workers": args.num_workers,
                             "torch": torch.__version__}))


if __name__ == "__main__":
    main()
