#!/usr/bin/env python3
"""Writes the seed corpora of fuzz/corpus/<target>: small valid inputs of each reader (and a few
near misses), built with tests/hostile/make_hostile.py's writers so that they follow kiln's
formats. Rerun after changing a format:  python3 fuzz/make_corpus.py
"""
import json
import os
import shutil
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(HERE, "..", "tests", "hostile"))
import make_hostile as h  # noqa: E402

OUT = os.path.join(HERE, "corpus")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    ckpt = h.checkpoint()
    shard0, shard1 = h.shard(0), h.shard(1)
    index_json = json.dumps(h.index())
    index = h.safetensors([], {"format": "pt", "kiln.format_version": "1", "kiln.version": "0.1.0",
                               "kiln.sharded": index_json})

    put("safetensors", "checkpoint", ckpt)
    put("safetensors", "shard0", shard0)
    put("safetensors", "index", index)
    put("safetensors", "dtypes", h.safetensors([
        ("a", "BF16", [2], b"\x80\x3f\x00\x40"), ("b", "BOOL", [3], b"\x01\x00\x01"),
        ("c", "F16", [1], b"\x00\x3c"), ("d", "F64", [1], struct.pack("<d", 2.5)),
        ("e", "I32", [2, 1], struct.pack("<2i", 7, -7)), ("f", "I64", [], struct.pack("<q", 9)),
        ("g", "U8", [0, 4], b"")], {"k": "v"}))

    sep = b"\nKILN-FILE\n"
    put("checkpoint", "full", b"\x00" + ckpt)
    put("checkpoint", "sharded", b"\x00" + index + sep + shard0 + sep + shard1)
    put("checkpoint", "state_json", b"\x01" + json.dumps(h.STATE).encode())
    put("checkpoint", "index_json", b"\x02" + json.dumps(
        dict(h.index(), save_id="0123456789ab")).encode())
    put("checkpoint", "layout_json", b"\x03" + json.dumps(h.LAYOUT).encode())

    pixels = bytes((i * 37) % 256 for i in range(2 * 3 * 4))
    put("idx", "images", h.idx_file([2, 3, 4], pixels))
    put("idx", "labels.gz", h.gz(h.idx_file([5], bytes([1, 2, 3, 4, 9]))))
    put("idx", "empty_dim", h.idx_file([0, 28, 28], b""))

    record = bytes([7]) + bytes((i * 11) % 256 for i in range(3072))
    put("cifar", "one_record", record)
    put("cifar", "two_records", record + bytes([2]) + bytes(3072))

    tar = h.tar_of((h.tar_header("d/", 0, b"5"), b""), (h.tar_header("d/one.txt", 5), b"hello"),
                   (h.tar_header("d/two.bin", 700), b"\3" * 700))
    put("archive", "tar.gz", h.gz(tar))
    put("archive", "plain.tar", tar)
    longname = "x" * 150
    put("archive", "longname.tar.gz", h.gz(h.tar_of(
        (h.tar_header("././@LongLink", len(longname) + 1, b"L"), longname.encode() + b"\0"),
        (h.tar_header("short", 3), b"abc"))))
    put("archive", "text.gz", h.gz(b"just some text\n" * 10))

    flags = [
        ["--epochs", "3", "--batch-size", "64", "--lr", "3e-4"],
        ["--dataset", "fashion-mnist", "--devices", "2", "--strategy", "zero", "--num-workers", "0"],
        ["--resume", "ck/last.safetensors", "--max-steps", "12", "--max-train-batches", "-1"],
        ["--download", "--data-dir", "data", "--seed", "9223372036854775807", "--help"],
    ]
    for i, f in enumerate(flags):
        put("flags", "cmd%d" % i, "\0".join(f))
    print("wrote the corpora under", OUT)


if __name__ == "__main__":
    main()
