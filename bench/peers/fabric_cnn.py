#!/usr/bin/env python3
"""Peer benchmark: the reference SimpleCNN training step under Lightning Fabric (PyTorch).

Same model, loss, optimizer (AdamW lr 3e-4, wd 1e-2) and batch as kiln_bench --mode train; random
CIFAR-shaped data already on the device, so the step itself is compared. Warm-up excluded; prints
one JSON line per configuration with the median images/second over repeats and peak memory.

  python3 bench/peers/fabric_cnn.py --accelerator cuda --precision 32-true bf16-mixed 16-mixed \
      --batch-size 128 512 --steps 50
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from simple_cnn import SimpleCNN  # beside this script

try:
    from lightning.fabric import Fabric
except ImportError:  # older installs ship it as lightning_fabric
    from lightning_fabric import Fabric


def run(accelerator, precision, batch, steps, warmup, repeats, threads):
    if threads:
        torch.set_num_threads(threads)
    fabric = Fabric(accelerator=accelerator, devices=1, precision=precision)
    torch.manual_seed(0)
    model = SimpleCNN()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=1e-2)
    model, optimizer = fabric.setup(model, optimizer)
    x = torch.randn(batch, 3, 32, 32, device=fabric.device)
    y = torch.randint(0, 10, (batch,), device=fabric.device)
    cuda = fabric.device.type == "cuda"

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        fabric.backward(loss)
        optimizer.step()

    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        if cuda:
            torch.cuda.synchronize()
        rates.append(batch * steps / (time.perf_counter() - t0))
    out = {"bench": "train_step", "peer": "lightning-fabric", "torch": torch.__version__,
           "device": fabric.device.type, "precision": precision, "batch_size": batch,
           "threads": torch.get_num_threads(), "images_per_s": round(statistics.median(rates), 1),
           "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
           "repeats": [round(r, 1) for r in rates]}
    if cuda:
        out["gpu"] = torch.cuda.get_device_name()
        out["peak_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    print(json.dumps(out), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--precision", nargs="+", default=["32-true"])
    p.add_argument("--batch-size", nargs="+", type=int, default=[128])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    for prec in a.precision:
        for b in a.batch_size:
            run(a.accelerator, prec, b, a.steps, a.warmup, a.repeats, a.threads)


if __name__ == "__main__":
    main()
