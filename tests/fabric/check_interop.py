"""Reads kiln's safetensors files, TensorBoard event files and checkpoints with the real Python
tools (safetensors, tensorboard and torch) and checks the values.
usage: check_interop.py DIR   (DIR written by interop_writer; run_interop.sh picks the Python)"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.numpy import load_file
from safetensors.torch import load_file as load_torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

d = sys.argv[1]
base = np.arange(6) - 3.0

t = load_file(os.path.join(d, "numpy.safetensors"))
expect = {"f32": (np.float32, (2, 3)), "f64": (np.float64, (4,)), "f16": (np.float16, (2, 2)),
          "i32": (np.int32, (4,)), "i64": (np.int64, (4,))}
for key, (dt, shape) in expect.items():
    a = t[key]
    assert a.dtype == dt and a.shape == shape, (key, a.dtype, a.shape)
    n = int(np.prod(shape))
    assert np.array_equal(a.reshape(-1), base[:n].astype(dt)), (key, a)
assert t["u8"].dtype == np.uint8 and list(t["u8"]) == [0, 1, 2, 3]
assert t["bool"].dtype == np.bool_ and list(t["bool"]) == [False, True, False, True], t["bool"]
with safe_open(os.path.join(d, "numpy.safetensors"), framework="np") as f:
    assert f.metadata() == {"origin": "kiln"}, f.metadata()
print("safetensors numpy: 7 dtypes and metadata match")

tt = load_torch(os.path.join(d, "numpy.safetensors"))
tt.update(load_torch(os.path.join(d, "bf16.safetensors")))
expect_torch = {"f32": torch.float32, "f64": torch.float64, "f16": torch.float16, "bf16": torch.bfloat16,
                "i32": torch.int32, "i64": torch.int64, "u8": torch.uint8, "bool": torch.bool}
assert sorted(tt) == sorted(expect_torch), sorted(tt)
for key, dt in expect_torch.items():
    a = tt[key]
    assert a.dtype == dt, (key, a.dtype)
    want = [float(v) for v in (t[key].reshape(-1) if key != "bf16" else base[:4])]
    assert a.double().reshape(-1).tolist() == want, (key, a)
print(f"safetensors torch {torch.__version__}: 8 dtypes match")

acc = EventAccumulator(os.path.join(d, "tb", "version_0"))
acc.Reload()
tags = sorted(acc.Tags()["scalars"])
assert tags == ["acc", "loss"], tags
loss = acc.Scalars("loss")
assert [e.step for e in loss] == [0, 1, 2, 3, 4]
assert np.allclose([e.value for e in loss], [1.0 / (s + 1) for s in range(5)], rtol=1e-6)
assert np.allclose([e.value for e in acc.Scalars("acc")], [0.1 * s for s in range(5)], rtol=1e-6)
print("tensorboard EventAccumulator: tags, steps and values match")

ck = os.path.join(d, "checkpoint.safetensors")
with safe_open(ck, framework="np") as f:
    meta = f.metadata()
    keys = set(f.keys())
state = json.loads(meta["kiln.state"])
assert state["epoch"] == {"kind": "int", "value": 4}, state["epoch"]
assert state["optimizer"]["hyper_params"]["optimizer"] == "AdamW"
model_keys = sorted(k[len("model."):] for k in keys if k.startswith("model."))
assert model_keys == sorted(f"{l}.{p}" for l in ["conv1", "conv2", "conv3", "fc1", "fc2"]
                            for p in ["weight", "bias"]), model_keys

class SimpleCNN(nn.Module):
    def __init__(self, in_channels=3, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(128 * 4 * 4, 256)
        self.fc2 = nn.Linear(256, num_classes)
        self.dropout = nn.Dropout(0.25)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = self.pool(F.relu(self.conv3(x)))
        x = torch.flatten(x, 1)
        return self.fc2(self.dropout(F.relu(self.fc1(x))))


sd = load_torch(ck)
net = SimpleCNN(1, 10)
net.load_state_dict({k[len("model."):]: v for k, v in sd.items() if k.startswith("model.")}, strict=True)
net.eval()
with torch.no_grad():
    y = net(sd["input"])
err = (y - sd["output"]).abs().max().item()
assert err < 1e-4, err
print(f"torch SimpleCNN loads the model part (strict) and matches kiln's output (max err {err:.2e})")
print("interop: OK")
