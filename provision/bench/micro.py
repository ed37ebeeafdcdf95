"""Microbenchmark of our data channel: `DataChannel.seal` and `.open` per packet, no I/O.

Measures the per-packet cost of runtime/proto/datachannel.py alone, for AES-256-GCM and
ChaCha20-Poly1305, on a full-size inner packet (1420 B) and an ACK-size one (52 B), through
the batch calls the data path makes (`seal_batch`, `open_batch`) in batches of BATCH, the
datagrams of one UDP GRO read; on the native path (runtime/native/fastseal.c) where it was
built and on the pure-Python one, side by side (`python -m provision.bench.micro`).

Rule 1: each repeat seals `packets` fresh payloads, BATCH at a time, and opens each batch's
datagrams in order on a second channel holding the mirrored keys (as the peer would), so the
replay window sees each counter once; every open must succeed or the figure is refused. A
batch is dropped once opened, as the data path drops it once sent or written.
Rule 2: times are wall-clock per packet (perf_counter around each batch call, summed, divided
by the packets); repeats give median [min–max]; no root, no namespaces.
Rule 3: a record's `path` says which data channel it timed: "native" or "python".
"""

from __future__ import annotations

import os
import statistics
import time
from collections import Counter
from typing import Any

from runtime.proto.config import Limits
from runtime.proto.datachannel import DataChannel
from runtime.proto.keys import CIPHERS, NATIVE

SIZES = (1420, 52)
BATCH = 44
PATHS = ("native", "python") if NATIVE else ("python",)


def channel_pair(cipher: str, path: str = "python") -> tuple[DataChannel, DataChannel]:
    """A sender and a receiver of one session under mirrored fresh keys, on `path`."""
    a, b = os.urandom(32), os.urandom(32)
    native = path == "native"
    sender = DataChannel(7, cipher, Limits(), Counter(), native=native)
    receiver = DataChannel(7, cipher, Limits(), Counter(), native=native)
    sender.install(0, a, b, 0.0, active=True)
    receiver.install(0, b, a, 0.0, active=True)
    return sender, receiver


def one_repeat(cipher: str, size: int, packets: int, path: str = "python") -> tuple[float, float]:
    """(seal µs, open µs) per packet over `packets`, sealed and opened BATCH at a time."""
    sender, receiver = channel_pair(cipher, path)
    payloads = [os.urandom(size) for _ in range(packets)]
    sealing = opening = 0.0
    for i in range(0, packets, BATCH):
        batch = [(p, 0) for p in payloads[i:i + BATCH]]
        t0 = time.perf_counter()
        sealed = sender.seal_batch(batch)
        t1 = time.perf_counter()
        opened = receiver.open_batch(sealed, 0, 1.0)[0]
        sealing, opening = sealing + t1 - t0, opening + time.perf_counter() - t1
        if opened != batch:
            raise RuntimeError(f"micro: {cipher} {size} B ({path}): a datagram did not round-trip ({receiver.drops})")
    return sealing / packets * 1e6, opening / packets * 1e6


def run_micro(packets: int = 20000, repeats: int = 5) -> list[dict[str, Any]]:
    """One record per cipher, size and path, with every repeat's figure."""
    records = []
    for cipher in CIPHERS:
        for size in SIZES:
            for path in PATHS:
                one_repeat(cipher, size, min(packets, 1000), path)  # warm-up
                figures = [one_repeat(cipher, size, packets, path) for _ in range(repeats)]
                records.append({"kind": "micro", "cipher": cipher, "size": size, "path": path, "packets": packets,
                                "seal_us": [round(s, 3) for s, _ in figures],
                                "open_us": [round(o, 3) for _, o in figures]})
    return records


def side_by_side(records: list[dict[str, Any]]) -> list[str]:
    """A table: per cipher and size, median seal and open µs per packet of each path."""
    median = {(r["cipher"], r["size"], r["path"]): (statistics.median(r["seal_us"]), statistics.median(r["open_us"]))
              for r in records}
    head = " | ".join(f"{p} seal | {p} open" for p in PATHS)
    lines = [f"| cipher | bytes | {head} |", "|---|---|" + "---|---|" * len(PATHS)]
    for cipher in CIPHERS:
        for size in SIZES:
            cells = " | ".join(f"{median[cipher, size, p][0]:.2f} | {median[cipher, size, p][1]:.2f}" for p in PATHS)
            lines.append(f"| {cipher} | {size} | {cells} |")
    return lines


if __name__ == "__main__":
    print("\n".join(side_by_side(run_micro())))
