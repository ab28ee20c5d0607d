"""Reads kiln's safetensors files, TensorBoard event files and checkpoints with the real Python
tools (safetensors, tensorboard, and torch where importable) and checks the values.
usage: check_interop.py DIR   (DIR written by interop_writer)"""
import json
import os
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

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

try:
    import torch
    from safetensors.torch import load_file as load_torch
except ImportError:
    torch = None
    print("torch not importable: bf16 and the torch model check are skipped")

if torch is not None:
    b = load_torch(os.path.join(d, "bf16.safetensors"))["bf16"]
    assert b.dtype == torch.bfloat16 and b.float().tolist() == [-3.0, -2.0, -1.0, 0.0], b

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

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

if torch is not None:
    import torch.nn as nn
    import torch.nn.functional as F

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
