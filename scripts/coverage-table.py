#!/usr/bin/env python3
"""Per-module line coverage from `cargo llvm-cov report --lcov`.

Counted from the merged per-line counts (`DA:` records): a line with code is covered when any
test ran it — what genhtml, Codecov and `cargo llvm-cov report --text` show. (llvm-cov's own
summary counts the crate's library build and its unit-test build separately, so a line run
by the integration tests alone reads as half missed there.)

A module is a file under src/ (src/node/fetch.rs) or a folder of files (src/network/chunks/).
Modules that decode input from the network or the disk are marked; below 80% they fail.
"""
import sys
from collections import defaultdict

# What takes bytes from a peer, a file on disk or the user and must refuse bad ones.
INPUT = [
    "src/network/chunks/", "src/network/replicate/", "src/network/announce/",
    "src/network/framing.rs", "src/network/records.rs", "src/network/identity.rs",
    "src/network/mod.rs",
    "src/content/manifest.rs", "src/content/chunk.rs", "src/content/content_id.rs",
    "src/content/address.rs", "src/content/crypto.rs",
    "src/store/blocks.rs", "src/store/packs.rs", "src/store/index.rs", "src/store/lock.rs",
    "src/store/maintenance.rs", "src/store/session.rs", "src/store/mod.rs",
    "src/files/read.rs", "src/files/add.rs",
    "src/node/serving.rs", "src/node/record_intake.rs", "src/node/walk.rs",
    "src/node/transfer.rs", "src/node/reputation.rs",
]


def module(path):
    rel = path[path.index("src/"):] if "src/" in path else path
    parts = rel.split("/")
    if len(parts) > 3:  # src/network/chunks/codec.rs -> the protocol's folder
        return "/".join(parts[:3]) + "/"
    return rel


def main():
    lines = defaultdict(lambda: [0, 0])
    name = None
    for row in open(sys.argv[1]):
        if row.startswith("SF:"):
            name = row[3:].strip()
        elif row.startswith("DA:") and name and "/src/" in name and "/fuzz/" not in name:
            count = int(row[3:].split(",")[1])
            m = module(name)
            lines[m][0] += count > 0
            lines[m][1] += 1
    total = [sum(v[0] for v in lines.values()), sum(v[1] for v in lines.values())]
    failed = []
    print("| module | lines | covered | input from network/disk |")
    print("|---|---:|---:|---|")
    for m in sorted(lines):
        cov, cnt = lines[m]
        pct = 100.0 * cov / cnt if cnt else 100.0
        is_input = m in INPUT
        mark = ("yes" + (" — below 80%" if pct < 80 else "")) if is_input else ""
        if is_input and pct < 80:
            failed.append(m)
        print(f"| `{m}` | {cnt} | {pct:.1f}% | {mark} |")
    print(f"| **all** | {total[1]} | {100.0 * total[0] / total[1]:.1f}% | |")
    if failed:
        print("below 80%: " + ", ".join(failed), file=sys.stderr)
        sys.exit(1)


main()
