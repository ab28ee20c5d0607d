#!/usr/bin/python3
"""PyTorch CPU peer of `kiln_bench --mode kernels --filter random`: fills a float32 tensor of 2^24
elements in place with uniform_(), normal_() and bernoulli_(0.75) (the dropout mask's draw), each
timed as kiln_bench times its kernels (3 calls of warm-up, then the median of 10), and prints one
JSON line per kernel with kiln_bench's names.
  .venv-peers/bin/python bench/peers/random_torch.py --threads 2
"""
import argparse
import json
import statistics
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--elements", type=int, default=1 << 24)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(7)
    x = torch.empty(a.elements)
    cases = [("random uniform f32", lambda: x.uniform_()), ("random normal f32", lambda: x.normal_()),
             ("random bernoulli f32", lambda: x.bernoulli_(0.75))]
    for name, fill in cases:
        for _ in range(3):
            fill()
        ms = []
        for _ in range(10):
            t0 = time.perf_counter()
            fill()
            ms.append((time.perf_counter() - t0) * 1e3)
        print(json.dumps({"kernel": name, "elements": a.elements, "ms": statistics.median(ms),
                          "torch": torch.__version__, "threads": a.threads}))


if __name__ == "__main__":
    main()
