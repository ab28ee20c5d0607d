#!/usr/bin/env python3
"""Writes random CIFAR-shaped data in CIFAR-10's binary format, so kiln (train_cifar10 --dataset
cifar10) and the PyTorch peer (seed_cifar10.py) time the same recipe on the same bytes where the
real CIFAR-10 cannot be downloaded. Labels and pixels are uniform random: accuracy on it means
nothing, the timing does.

  python3 bench/peers/make_synthetic_cifar10.py /tmp/cifar-synth   # -> cifar-10-batches-bin/*.bin
"""
import os
import sys

import numpy as np


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "cifar-synth"
    out = os.path.join(root, "cifar-10-batches-bin")
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for name in names:
        # 10,000 records of <1 label byte><3072 pixel bytes: R, G, B planes of 32x32, row-major.
        records = rng.integers(0, 256, size=(10000, 3073), dtype=np.uint8)
        records[:, 0] = rng.integers(0, 10, size=10000, dtype=np.uint8)
        records.tofile(os.path.join(out, name))
    print(out)


if __name__ == "__main__":
    main()
