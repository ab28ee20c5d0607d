#!/usr/bin/env python3
"""PyTorch peer of `kiln_bench --mode attention|gpt|resnet` (bench/models.cpp): the same workloads,
steps and thread counts; warm-up excluded; medians; one JSON line, with the same keys.
  attention  F.scaled_dot_product_attention forward + backward on random [B, H, T, D], timed with
             the fused kernels PyTorch picks and with the math path (sdpa_kernel(SDPBackend.MATH))
  gpt        the character GPT of examples/char_gpt.h (nanoGPT's model) training step
  resnet     ResNet-20's training step (examples/resnet_cifar.h)
--compete N runs N busy processes alongside the timed steps, as kiln_bench's flag does.
Needs PyTorch 2 (bench/peers/setup.sh makes the venv):
  .venv-peers/bin/python bench/peers/models_torch.py --mode gpt --threads 1 --batch-size 32 --seq 64
"""
import argparse
import json
import multiprocessing as mp
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def spin():
    x = 1.0
    while True:
        x = x * 1.0000001 + 1e-9


class Competing:
    def __init__(self, n):
        self.procs = [mp.Process(target=spin, daemon=True) for _ in range(n)]

    def __enter__(self):
        for p in self.procs:
            p.start()

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
            p.join()


def time_steps(a, device, step):
    times = []
    for s in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if s >= a.warmup:
            times.append(time.perf_counter() - t0)
    return times


# ---- the models, as in examples/char_gpt.h and examples/resnet_cifar.h
class Attn(nn.Module):
    def __init__(self, c, h):
        super().__init__()
        self.c_attn, self.c_proj, self.h = nn.Linear(c, 3 * c), nn.Linear(c, c), h

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.h, C // self.h).transpose(1, 2) for t in self.c_attn(x).split(C, 2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class GPTBlock(nn.Module):
    def __init__(self, c, h):
        super().__init__()
        self.ln_1, self.attn, self.ln_2 = nn.LayerNorm(c), Attn(c, h), nn.LayerNorm(c)
        self.mlp = nn.Sequential(nn.Linear(c, 4 * c), nn.GELU(), nn.Linear(4 * c, c))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, vocab, block, n_layer, n_head, n_embd):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, n_embd), nn.Embedding(block, n_embd)
        self.h = nn.ModuleList([GPTBlock(n_embd, n_head) for _ in range(n_layer)])
        self.ln_f, self.lm_head = nn.LayerNorm(n_embd), nn.Linear(n_embd, vocab, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for b in self.h:
            x = b(x)
        return self.lm_head(self.ln_f(x))


class BasicBlock(nn.Module):
    def __init__(self, inp, out, stride):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(inp, out, 3, stride, 1, bias=False), nn.BatchNorm2d(out)
        self.conv2, self.bn2 = nn.Conv2d(out, out, 3, 1, 1, bias=False), nn.BatchNorm2d(out)
        self.shortcut = nn.Sequential()
        if stride != 1 or inp != out:
            self.shortcut = nn.Sequential(nn.Conv2d(inp, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.shortcut(x))


def resnet20():
    layers, inp = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()], 16
    for s, w in enumerate((16, 32, 64)):
        for b in range(3):
            layers.append(BasicBlock(inp, w, 2 if s > 0 and b == 0 else 1))
            inp = w
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


def groups(model, wd):
    return [{"params": [p for p in model.parameters() if p.dim() >= 2], "weight_decay": wd},
            {"params": [p for p in model.parameters() if p.dim() < 2], "weight_decay": 0.0}]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["attention", "gpt", "resnet"], required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--causal", type=int, default=1)
    ap.add_argument("--n-layer", type=int, default=2)
    ap.add_argument("--n-embd", type=int, default=128)
    ap.add_argument("--compete", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    common = {"peer": "torch " + torch.__version__, "device": a.device, "threads": a.threads,
              "batch_size": a.batch_size, "compete": a.compete}
    if a.mode == "attention":
        from torch.nn.attention import SDPBackend, sdpa_kernel
        shape = (a.batch_size, a.heads, a.seq, a.head_dim)
        q, k, v = (torch.randn(shape, device=dev, requires_grad=True) for _ in range(3))
        go = torch.randn(shape, device=dev)

        def step():
            for t in (q, k, v):
                t.grad = None
            F.scaled_dot_product_attention(q, k, v, is_causal=bool(a.causal)).backward(go)

        with Competing(a.compete):
            fused = statistics.median(time_steps(a, dev, step))
            with sdpa_kernel(SDPBackend.MATH):
                math = statistics.median(time_steps(a, dev, step))
        print(json.dumps({"bench": "sdpa_forward_backward", **common, "dtype": "float32", "heads": a.heads,
                          "seq": a.seq, "head_dim": a.head_dim, "causal": bool(a.causal),
                          "fused_ms": 1e3 * fused, "math_ms": 1e3 * math, "speedup": math / fused}))
    elif a.mode == "gpt":
        model = GPT(65, a.seq, a.n_layer, a.heads, a.n_embd).to(dev)
        opt = torch.optim.AdamW(groups(model, 0.1), lr=1e-3, betas=(0.9, 0.99))
        x = torch.randint(0, 65, (a.batch_size, a.seq), device=dev)
        y = torch.randint(0, 65, (a.batch_size, a.seq), device=dev)

        def step():
            loss = F.cross_entropy(model(x).view(-1, 65), y.view(-1))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

        with Competing(a.compete):
            t = statistics.median(time_steps(a, dev, step))
        print(json.dumps({"bench": "gpt_train_step", **common, "seq": a.seq, "n_layer": a.n_layer,
                          "n_head": a.heads, "n_embd": a.n_embd, "step_ms": 1e3 * t,
                          "tokens_per_second": a.batch_size * a.seq / t}))
    else:
        model = resnet20().to(dev).train()
        opt = torch.optim.SGD(groups(model, 5e-4), lr=0.1, momentum=0.9, nesterov=True)
        x = torch.randn(a.batch_size, 3, 32, 32, device=dev)
        y = torch.randint(0, 10, (a.batch_size,), device=dev)

        def step():
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

        with Competing(a.compete):
            times = time_steps(a, dev, step)
        t = statistics.median(times)
        print(json.dumps({"bench": "resnet20_train_step", **common, "step_ms": 1e3 * t, "min_ms": 1e3 * min(times),
                          "max_ms": 1e3 * max(times), "images_per_second": a.batch_size / t}))


if __name__ == "__main__":
    main()
