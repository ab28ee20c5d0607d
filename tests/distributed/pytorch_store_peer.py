"""PyTorch's side of the store interoperability test (test_store_pytorch.cpp).

  pytorch_store_peer.py client PORT   joins kiln's store with torch.distributed.TCPStore
  pytorch_store_peer.py server        serves a TCPStore, prints its port, waits for kiln's client

Each mode checks what the kiln side wrote and prints one line per step; any failure raises.
"""
import datetime
import sys

import torch
import torch.distributed as dist

TIMEOUT = datetime.timedelta(seconds=60)


def client(port):
    store = dist.TCPStore("127.0.0.1", port, None, False, TIMEOUT)
    assert store.get("from_kiln") == b"kiln says hi", store.get("from_kiln")
    store.set("from_torch", "torch says hi")
    assert store.add("counter", 5) == 12  # kiln added 7 first
    if hasattr(store, "check"):  # PyTorch 2.x
        assert store.check(["from_kiln", "counter"])
        assert not store.check(["nobody_set_this"])
    assert store.compare_set("cas", "", "first") == b"first"
    assert store.compare_set("cas", "wrong", "second") == b"first"
    assert store.delete_key("to_delete")
    assert not store.delete_key("to_delete")
    store.wait(["late"])  # kiln sets it after it saw from_torch
    assert store.get("late") == b"1"
    print("torch client: OK", store.num_keys(), flush=True)


def server():
    store = dist.TCPStore("127.0.0.1", 0, None, True, TIMEOUT, wait_for_workers=False)
    print(store.port, torch.__version__, flush=True)
    store.wait(["from_kiln"])
    assert store.get("from_kiln") == b"kiln says hi"
    store.set("from_torch", "torch says hi")
    store.wait(["done"])
    assert store.get("counter") == b"12", store.get("counter")
    print("torch server: OK", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "client":
        client(int(sys.argv[2]))
    else:
        server()
