"""Microbenchmark of our data channel: `DataChannel.seal` and `.open` per packet, no I/O.

Measures the per-packet cost of runtime/proto/datachannel.py alone, for AES-256-GCM and
ChaCha20-Poly1305, on a full-size inner packet (1420 B) and an ACK-size one (52 B), through
the batch calls the data path makes (`seal_batch`, `open_batch`) in batches of BATCH, the
datagrams of one UDP GRO read.

Rule 1: each repeat seals `packets` fresh payloads and opens exactly those datagrams in
order on a second channel holding the mirrored keys (as the peer would), so the replay
window sees each counter once; every open must succeed or the figure is refused.
Rule 2: times are wall-clock per packet (perf_counter over the whole batch divided by the
batch size); repeats give median [min–max]; no root, no namespaces.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any

from runtime.proto.config import Limits
from runtime.proto.datachannel import DataChannel
from runtime.proto.keys import CIPHERS

SIZES = (1420, 52)
BATCH = 44


def channel_pair(cipher: str) -> tuple[DataChannel, DataChannel]:
    """A sender and a receiver of one session under mirrored fresh keys."""
    a, b = os.urandom(32), os.urandom(32)
    sender = DataChannel(7, cipher, Limits(), Counter())
    receiver = DataChannel(7, cipher, Limits(), Counter())
    sender.install(0, a, b, 0.0, active=True)
    receiver.install(0, b, a, 0.0, active=True)
    return sender, receiver


def one_repeat(cipher: str, size: int, packets: int) -> tuple[float, float]:
    """(seal µs, open µs) per packet over one batch of `packets`."""
    sender, receiver = channel_pair(cipher)
    payloads = [os.urandom(size) for _ in range(packets)]
    batches = [[(p, 0) for p in payloads[i:i + BATCH]] for i in range(0, packets, BATCH)]
    t0 = time.perf_counter()
    sealed = [sender.seal_batch(batch) for batch in batches]
    t1 = time.perf_counter()
    opened = [item for run in sealed for item in receiver.open_batch(run, 0, 1.0)[0]]
    t2 = time.perf_counter()
    if len(opened) != packets or any(o[0] != p for o, p in zip(opened, payloads)):
        raise RuntimeError(f"micro: {cipher} {size} B: a datagram did not round-trip ({receiver.drops})")
    return (t1 - t0) / packets * 1e6, (t2 - t1) / packets * 1e6


def run_micro(packets: int = 20000, repeats: int = 5) -> list[dict[str, Any]]:
    """One record per cipher and size, with every repeat's figure."""
    records = []
    for cipher in CIPHERS:
        for size in SIZES:
            one_repeat(cipher, size, min(packets, 1000))  # warm-up
            figures = [one_repeat(cipher, size, packets) for _ in range(repeats)]
            records.append({"kind": "micro", "cipher": cipher, "size": size, "packets": packets,
                            "seal_us": [round(s, 3) for s, _ in figures],
                            "open_us": [round(o, 3) for _, o in figures]})
    return records
