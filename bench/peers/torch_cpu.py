#!/usr/bin/python3
"""PyTorch CPU peer of `kiln_bench --mode train|infer`: the same SimpleCNN, step, batch and threads
on random CIFAR-shaped input; warm-up excluded; prints the median rate as one JSON line.
--precision bf16-mixed runs forward and loss under torch.autocast("cpu", dtype=torch.bfloat16),
as Lightning's "bf16-mixed" does (oneDNN's bf16 convolutions and GEMMs on CPUs that have them).
Run with Debian's interpreter (python3-torch 1.13 + libopenblas0-pthread):
  /usr/bin/python3 bench/peers/torch_cpu.py --mode train --batch-size 128 --threads 2
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from simple_cnn import SimpleCNN  # beside this script


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["train", "infer"], default="train")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--precision", choices=["32-true", "bf16-mixed"], default="32-true")
    a = ap.parse_args()
    mixed = a.precision == "bf16-mixed"
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = SimpleCNN()
    x = torch.randn(a.batch_size, 3, 32, 32)
    y = torch.randint(0, 10, (a.batch_size,))
    times = []
    if a.mode == "train":
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=1e-2)
        for s in range(a.warmup + a.steps):
            t0 = time.perf_counter()
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed):
                loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            if s >= a.warmup:
                times.append(time.perf_counter() - t0)
        bench = "train_step"
    else:
        model.eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed):
            for s in range(a.warmup + a.steps):
                t0 = time.perf_counter()
                model(x)
                if s >= a.warmup:
                    times.append(time.perf_counter() - t0)
        bench = "infer"
    step = statistics.median(times)
    print(json.dumps({"bench": bench, "peer": "torch " + torch.__version__, "device": "cpu",
                      "precision": a.precision, "batch_size": a.batch_size,
                      "threads": torch.get_num_threads(), "steps": a.steps,
                      "median_step_ms": round(step * 1e3, 3),
                      "images_per_s": round(a.batch_size / step, 1)}))


if __name__ == "__main__":
    main()
