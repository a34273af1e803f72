#!/usr/bin/env python3
"""Writes fuzz/corpus/<target>/ seed files from the test vectors in protocols/*.md, so that
every fuzz target starts from valid inputs (`just fuzz` runs this first; the output is
committed). Usage: scripts/fuzz-seeds.py"""
import glob, os, re

here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
vectors = {}
for spec in glob.glob(os.path.join(here, "protocols", "*.md")):
    text = open(spec).read()
    for name, body in re.findall(r"```vector ([a-z0-9-]+)\n(.*?)```", text, re.S):
        vectors[name] = dict(l.split(": ", 1) for l in body.strip().splitlines() if ": " in l)

def seed(target, name, data):
    d = os.path.join(here, "fuzz", "corpus", target)
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, name), "wb").write(data)

for name, f in vectors.items():
    h = lambda k: bytes.fromhex(f[k])
    if name.startswith("chunks-request"):
        seed("chunk_request", name, h("frame"))
    elif name.startswith("chunks-response"):
        seed("chunk_response", name, h("frame"))
    elif name.startswith("replicate-"):
        seed("replicate_message", name, h("frame"))
    elif name.startswith("announce-"):
        seed("announce_message", name, h("frame"))
    elif name.startswith("manifest-"):
        for k in ("block", "sealed", "body-cbor", "body"):
            if k in f:
                seed("manifest", f"{name}-{k}", h(k))
    elif name.startswith("chunk-") and "plaintext" in f:
        plain = h("plaintext")
        seed("chunk_block", name + "-raw", len(plain).to_bytes(3, "little") + b"\x00" + plain)
    elif name.startswith("content-id"):
        for k in ("text", "binary"):
            if k in f:
                seed("content_id", f"{name}-{k}", f[k].encode() if k == "text" else h(k))
    if "frame" in f and name.startswith("announce-"):
        pass
seed("swarm_key", "valid", b"/key/swarm/psk/1.0.0/\n/base16/\n" + b"ab" * 32 + b"\n")
seed("dht_record", "root-key", bytes([0x12, 0x20]) + bytes(range(32)))
print("seeds written to fuzz/corpus/")
