#!/usr/bin/env python3
"""Holds every packet of an NFQUEUE for a fixed delay, then lets it go: `tc netem delay` for
kernels built without netem (this project's VM is one). Run inside a network namespace whose
iptables send the packets to delay to the queue, e.g.

    iptables -t mangle -A POSTROUTING -o wan0 -j NFQUEUE --queue-num 0
    python3 wan_delay.py 0 20      # queue 0, 20 ms

Packets leave in the order they came (a fixed delay keeps it), so one batch verdict lets out
every packet whose time has come. Only metadata crosses into this process (no payload copy),
and GSO packets stay whole. Speaks nfnetlink_queue directly (linux/netfilter/nfnetlink_queue.h):
the standard library has everything it needs.
"""

import os
import select
import socket
import struct
import sys
import time
from collections import deque

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_CONFIG, NFQNL_MSG_VERDICT_BATCH = 0, 2, 3
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN, NFQA_CFG_MASK, NFQA_CFG_FLAGS = 1, 2, 3, 4, 5
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NFQA_CFG_F_FAIL_OPEN, NFQA_CFG_F_GSO = 1, 4
NF_ACCEPT = 1
SOL_NETLINK, NETLINK_NO_ENOBUFS = 270, 5


def attr(kind, payload):
    n = 4 + len(payload)
    return struct.pack("=HH", n, kind) + payload + b"\0" * ((4 - n % 4) % 4)


def message(kind, queue, attrs, flags=NLM_F_REQUEST, seq=0):
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + b"".join(attrs)
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | kind, flags, seq, 0) + body


def configure(sock, queue, attrs, seq):
    sock.send(message(NFQNL_MSG_CONFIG, queue, attrs, NLM_F_REQUEST | NLM_F_ACK, seq))
    reply = sock.recv(65536)
    _, kind, _, _, _ = struct.unpack_from("=IHHII", reply)
    if kind == NLMSG_ERROR:
        (err,) = struct.unpack_from("=i", reply, 16)
        if err != 0:
            sys.exit(f"wan_delay: configuring queue {queue}: {os.strerror(-err)}")


def packet_ids(data):
    """The packet IDs of every queued-packet message in one netlink read."""
    at = 0
    while at + 16 <= len(data):
        n, kind, _, _, _ = struct.unpack_from("=IHHII", data, at)
        if n < 16:
            return
        if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            a = at + 20
            while a + 4 <= at + n:
                alen, akind = struct.unpack_from("=HH", data, a)
                if alen < 4:
                    break
                if akind & 0x7FFF == NFQA_PACKET_HDR:
                    (pid,) = struct.unpack_from("!I", data, a + 4)
                    yield pid
                    break
                a += (alen + 3) & ~3
        at += (n + 3) & ~3


def main():
    queue, delay = int(sys.argv[1]), float(sys.argv[2]) / 1000.0
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
    sock.bind((0, 0))
    configure(sock, queue, [attr(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_BIND, 0, 0))], 1)
    configure(sock, queue, [attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META))], 2)
    configure(sock, queue, [attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", 1 << 17))], 3)
    flags = struct.pack("!I", NFQA_CFG_F_GSO | NFQA_CFG_F_FAIL_OPEN)
    configure(sock, queue, [attr(NFQA_CFG_MASK, flags), attr(NFQA_CFG_FLAGS, flags)], 4)
    print(f"wan_delay: queue {queue}, {delay * 1000:.0f} ms", flush=True)
    held = deque()
    while True:
        wait = max(0.0, held[0][0] - time.monotonic()) if held else None
        ready, _, _ = select.select([sock], [], [], wait)
        if ready:
            now = time.monotonic()
            while True:
                try:
                    data = sock.recv(1 << 20, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                for pid in packet_ids(data):
                    held.append((now + delay, pid))
        now = time.monotonic()
        last = None
        while held and held[0][0] <= now:
            last = held.popleft()[1]
        if last is not None:
            verdict = attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, last))
            sock.send(message(NFQNL_MSG_VERDICT_BATCH, queue, [verdict]))


if __name__ == "__main__":
    main()
