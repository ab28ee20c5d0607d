"""Writes the seed corpus of fuzz/store_framing.cpp (fuzz/corpus/store_framing/): well-formed
sessions in both PyTorch protocols, with and without a job token, and a few hostile openings.
  python3 fuzz/make_store_corpus.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "store_framing")
MAGIC = struct.pack("<I", 0x3C85F7CE)
# PyTorch >= 2.2 command bytes; kiln's AUTH.
VALIDATE, SET, CAS, GET, ADD, CHECK, WAIT, NUMKEYS, DELETE, APPEND, MGET, MSET, CANCEL, PING = range(14)
AUTH = 0x4B
# PyTorch <= 2.1.
L_SET, L_CAS, L_GET, L_ADD, L_CHECK, L_WAIT, L_NUMKEYS, L_WATCH, L_DELETE = range(9)


def s(b):
    b = b.encode() if isinstance(b, str) else b
    return struct.pack("<Q", len(b)) + b


def u64(v):
    return struct.pack("<Q", v)


def q(code, *fields):
    return bytes([code]) + b"".join(fields)


def session(mode, streams):
    """streams: [(connection, bytes)], cut into records of at most 200 bytes."""
    out = bytes([mode])
    for conn, data in streams:
        for i in range(0, len(data), 200):
            part = data[i:i + 200]
            out += bytes([conn, len(part)]) + part
    return out


validate = bytes([VALIDATE]) + MAGIC
seeds = {
    "current_basic": session(0, [(0, validate + q(SET, s("/a"), s("1")) + q(GET, s("/a")) +
                                 q(ADD, s("/n"), u64(5)) + q(CHECK, u64(2), s("/a"), s("/zz")) +
                                 q(NUMKEYS) + q(PING, struct.pack("<I", 7)) + q(DELETE, s("/a")))]),
    "wait_wake": session(2, [(0, validate + q(WAIT, u64(2), s("/k"), s("/j"))),
                             (1, validate + q(SET, s("/k"), s("v")) + q(APPEND, s("/j"), s("x"))),
                             (0, q(WAIT, u64(1), s("/never")) + q(CANCEL))]),
    "token_session": session(1, [(0, validate + q(AUTH, s("job")) + q(MSET, u64(2), s("/a"), s("1"), s("/b"), s("2")) +
                                  q(MGET, u64(2), s("/a"), s("/b")) + q(CAS, s("/c"), s(""), s("x")) +
                                  q(CAS, s("/c"), s("x"), s("y")) + q(APPEND, s("/c"), s("z")))]),
    "token_refused": session(1, [(0, validate + q(AUTH, s("other")) + q(SET, s("/a"), s("1")))]),
    "legacy": session(0, [(0, q(L_ADD, s("init/"), u64(1)) + q(L_SET, s("/a"), s("1")) +
                           q(L_WAIT, u64(1), s("/a")) + q(L_GET, s("/a")) + q(L_DELETE, s("/a")) +
                           q(L_NUMKEYS))]),
    "hostile": session(4, [(0, b"\xff\xff\xff\xff"), (1, bytes([SET]) + u64(4 << 30)),
                           (2, validate + q(SET, s("/k"), u64(4 << 30)))]),
}
os.makedirs(OUT, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
print(f"{len(seeds)} seeds in {OUT}")
