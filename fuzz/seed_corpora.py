#!/usr/bin/env python3
"""Seed corpora of the fuzz targets from the conformance vectors.

Reads ../shared/vectors/*.json (from the checkout's root; another directory
with --vectors) and writes one file per seed into corpus/<target>/ beside
this script, named after the vector. Only the standard library is used, and
the result is deterministic, so it can be rerun at will: existing files of
the same name are overwritten, other corpus files are left alone.

    python3 fuzz/seed_corpora.py                 # all targets
    python3 fuzz/seed_corpora.py stream chunk    # some of them

The `stream` seeds use that target's input format (see
fuzz_targets/stream.rs): two configuration bytes, then operations: `0x40`
`u16 len` `bytes` is one plaintext piece sealed into one chunk, `0x80 p m`
flips a byte of the next chunk, `0xc0|n` `n bytes` puts raw bytes on the
wire.
"""

import argparse
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_VECTORS = os.path.join(HERE, "..", "..", "shared", "vectors")

MAX_CHUNK_PLAINTEXT = 65517
# Seeds of the stream target over this size are left out: they would raise
# libFuzzer's default max_len (the largest seed) and slow every run.
STREAM_MAX_SEED = 20000


def load(vectors, name):
    path = os.path.join(vectors, name)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return json.load(f)["vectors"]


def unhex(s):
    return bytes.fromhex(s)


class Seeds:
    def __init__(self, root):
        self.root = root
        self.counts = {}

    def put(self, target, name, data):
        d = os.path.join(self.root, target)
        os.makedirs(d, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        with open(os.path.join(d, safe), "wb") as f:
            f.write(data)
        self.counts[target] = self.counts.get(target, 0) + 1


def u32_string(s):
    b = s.encode()
    return struct.pack(">I", len(b)) + b


# ---------------------------------------------------------------------------
# The stream target's input format.


def stream_piece(pt):
    assert len(pt) <= 0xFFFF
    return b"\x40" + struct.pack(">H", len(pt)) + pt


def stream_input(plaintext, piece_size, cfg=b"\x00\x00", corrupt=None):
    """`plaintext` cut into pieces of `piece_size` (the last one shorter),
    each sealed into a chunk; `corrupt` = (piece index, position, mask)."""
    out = bytearray(cfg)
    pieces = [plaintext[i:i + piece_size] for i in range(0, len(plaintext), piece_size)]
    for i, p in enumerate(pieces):
        if corrupt is not None and corrupt[0] == i:
            pos, mask = corrupt[1], corrupt[2]
            out += bytes([0x80 | ((pos >> 8) & 0x3F), pos & 0xFF, mask])
        out += stream_piece(p)
    return bytes(out)


# ---------------------------------------------------------------------------


def seed_all(vectors, seeds, targets):
    want = lambda t: not targets or t in targets

    messages = load(vectors, "messages.json")
    conn = load(vectors, "connection_messages.json")
    chunks = load(vectors, "chunks.json") + load(vectors, "chunks_max_size.json")
    identities = load(vectors, "identities.json")
    sessions = load(vectors, "sessions.json")
    shell = load(vectors, "shell_messages.json") + load(vectors, "shell_messages_large.json")

    # connection_message: the framed form and the bare body.
    framed_conn = []
    for v in conn:
        framed = unhex(v["expected"]["framed"])
        framed_conn.append((v["name"], framed))
        if want("connection_message"):
            seeds.put("connection_message", v["name"] + ".framed", framed)
            seeds.put("connection_message", v["name"] + ".body", framed[2:])

    # metadata, ack, network_version, p2p_message: the bytes as they are.
    kinds = {"metadata": "metadata", "ack": "ack", "network_version": "network_version",
             "p2p_message": "p2p_message"}
    p2p_messages = []
    for v in messages:
        target = kinds.get(v["kind"])
        data = unhex(v["inputs"]["bytes"])
        if v["kind"] == "p2p_message":
            p2p_messages.append((v["name"], data))
        if target and want(target):
            seeds.put(target, v["name"], data)

    # Shell messages: framed for p2p_message, as given for shell_message.
    framed_shell = []
    for v in shell:
        name = v["name"]
        if "hex" in v["inputs"]:
            body = unhex(v["inputs"]["hex"])
            framed = unhex(v["inputs"]["size_prefix"]) + body
            framed_shell.append((name, framed, v["kind"] == "shell_message"))
            data = body
        else:
            framed = unhex(v["inputs"]["framed_prefix_hex"])
            framed_shell.append((name, framed, False))
            data = framed
        if want("shell_message"):
            seeds.put("shell_message", name, data)
        if want("p2p_message") and len(framed) <= STREAM_MAX_SEED:
            seeds.put("p2p_message", "shell-" + name, framed)

    # point: the texts and binary forms of advertised points, and the
    # advertise bodies themselves (a points-to-end list).
    if want("point"):
        n = 0
        for v in messages:
            dec = v["expected"].get("decoded", {})
            if v["kind"] == "p2p_message" and dec.get("tag") == 3:
                seeds.put("point", v["name"] + ".list", unhex(v["inputs"]["bytes"])[6:])
            for p in dec.get("points", []) + dec.get("potential_peers_to_connect", []) + (
                    [dec["point"]] if "point" in dec else []):
                seeds.put("point", "text-%d" % n, p.encode())
                seeds.put("point", "bin-%d" % n, u32_string(p))
                n += 1

    # chunk: every chunk's plaintext (sealed and opened by the target) and
    # its body (which must not open under the target's key).
    if want("chunk"):
        for v in chunks:
            if v["kind"] == "chunk":
                seeds.put("chunk", v["name"] + ".plaintext", unhex(v["inputs"]["plaintext"]))
                seeds.put("chunk", v["name"] + ".body", unhex(v["expected"]["chunk"])[2:])
            elif v["kind"] == "box":
                seeds.put("chunk", v["name"] + ".plaintext", unhex(v["inputs"]["plaintext"]))
                seeds.put("chunk", v["name"] + ".body", unhex(v["expected"]["ciphertext"]))

    # identity_json: each identity as Octez's identity.json.
    if want("identity_json"):
        for v in identities:
            i = v["inputs"]
            doc = {
                "peer_id": v["expected"]["peer_id_b58"],
                "public_key": i["public_key"],
                "secret_key": i["secret_key"],
                "proof_of_work_stamp": i["proof_of_work_stamp"],
            }
            seeds.put("identity_json", v["name"], json.dumps(doc, indent=2).encode())

    # handshake: flags 0x00 (raw bytes, outgoing, PoW 0) or 0x04 (incoming)
    # followed by a real connection message, then the session's metadata
    # and ack chunks where there are some; and honest pairs (flags 0x03..).
    if want("handshake"):
        for name, framed in framed_conn:
            seeds.put("handshake", name + ".out", b"\x00" + framed)
            seeds.put("handshake", name + ".in", b"\x04" + framed)
        for v in sessions:
            recv = unhex(v["inputs"]["recv_msg"])
            rest = b"".join(unhex(c["chunk"]) for c in v["expected"]["chunks"]
                            if c["direction"] == "received")
            flags = b"\x04" if v["inputs"]["incoming"] in (True, "True", "true") else b"\x00"
            seeds.put("handshake", v["name"], flags + recv + rest)
        for flags in (0x03, 0x07, 0x0B, 0x13, 0x23, 0x87):
            seeds.put("handshake", "pair-%02x" % flags, bytes([flags, 1, 2, 40]) + bytes(range(3, 64)))

    # stream: whole message streams cut into pieces as a sender would, with
    # and without a flipped byte.
    if want("stream"):
        for name, framed, _ in framed_shell:
            if len(framed) > STREAM_MAX_SEED:
                continue
            seeds.put("stream", "shell-" + name, stream_input(framed, MAX_CHUNK_PLAINTEXT))
            if len(framed) > 40:
                seeds.put("stream", "shell-" + name + ".cut", stream_input(framed, 1 + len(framed) // 3))
        for name, framed in p2p_messages:
            seeds.put("stream", "p2p-" + name, stream_input(framed, MAX_CHUNK_PLAINTEXT))
        # Several messages in a row, as a connection carries them.
        good = [f for _, f, ok in framed_shell if ok and len(f) <= 2000]
        conv = b"".join(f for _, f in p2p_messages) + b"".join(good[:40])
        for size in (17, 100, 1000, 8000):
            seeds.put("stream", "conversation-%d" % size, stream_input(conv, size))
        seeds.put("stream", "conversation-corrupt", stream_input(conv, 300, corrupt=(2, 40, 0x01)))
        seeds.put("stream", "conversation-limit64", stream_input(conv, 100, cfg=b"\x02\x00"))
        # The chunked messages of chunks.json, cut as the vector cuts them.
        for v in chunks:
            if v["kind"] == "chunked_message":
                msg = unhex(v["inputs"]["message"])
                size = int(v["inputs"].get("binary_chunks_size", 65535)) - 18
                if len(msg) <= STREAM_MAX_SEED:
                    seeds.put("stream", "chunked-" + v["name"], stream_input(msg, size))
        # The captured and generated sessions: the plaintexts after the
        # metadata and the ack, chunk by chunk, in each direction.
        for v in sessions:
            for direction in ("sent", "received"):
                pts = [unhex(c["plaintext"]) for c in v["expected"]["chunks"]
                       if c["direction"] == direction][2:]
                if pts:
                    seeds.put("stream", "session-%s-%s" % (v["name"], direction),
                              b"\x00\x00" + b"".join(stream_piece(p) for p in pts))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("targets", nargs="*", help="only these targets (default: all)")
    ap.add_argument("--vectors", default=DEFAULT_VECTORS, help="the vectors directory")
    ap.add_argument("--corpus", default=os.path.join(HERE, "corpus"), help="the corpus directory")
    args = ap.parse_args()
    if not os.path.isdir(args.vectors):
        sys.exit("no vectors at %s (use --vectors)" % args.vectors)
    seeds = Seeds(args.corpus)
    seed_all(args.vectors, seeds, set(args.targets))
    for t in sorted(seeds.counts):
        print("%-20s %4d seeds" % (t, seeds.counts[t]))


if __name__ == "__main__":
    main()
