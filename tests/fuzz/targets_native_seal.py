"""Fuzz targets for the native data channel (runtime/native/fastseal.c), and the differential
harness tests/proto/test_native_seal.py shares: the C path against the pure-Python one.

Rule 1: the contract of every target is "native and Python agree and nothing raises": the same
        datagrams from seal_batch, and from open_batch the same payloads, stops, authentic
        counts, drops, peer flag and epochs, batch after batch, for any list of datagrams.
Rule 2: datagrams are made from script records (tests/fuzz/mutate.py): real ones under the
        receiver's three epochs (or a fourth it does not hold) at any counter, then replayed,
        forged, truncated, moved to another session or cut into batches.
Rule 3: the replay target runs both windows against the plain model (a set and a maximum)
        and against each other for check, update and accept.
Rule 4: without the native module the targets check the Python path alone (nothing to compare).
"""

from __future__ import annotations

import hashlib
import struct
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from runtime.proto import wire
from runtime.proto.config import Limits
from runtime.proto.datachannel import DataChannel
from runtime.proto.keys import CIPHERS, NATIVE, make_aead
from runtime.proto.replay import RECEIVE_LIMIT, WINDOW, PythonReplayWindow, ReplayWindow
from tests.fuzz.engine import Target
from tests.fuzz.mutate import record, records

SESSION = 0x0A0B0C0D
UNKNOWN_EPOCH = 3  # receivers hold epochs 0 (previous), 1 (current) and 2 (pending)
PATHS = (True, False) if NATIVE else (False,)


def epoch_keys(number: int) -> tuple[bytes, bytes]:
    """(the peer's sealing key, ours) for epoch `number`."""
    return hashlib.sha256(b"peer %d" % number).digest(), hashlib.sha256(b"ours %d" % number).digest()


def receiver(cipher: str, native: bool, limits: Limits | None = None,
             numbers: Sequence[int] = (0, 1, 2)) -> DataChannel:
    """A channel holding epochs `numbers`: previous, current and pending."""
    channel = DataChannel(SESSION, cipher, limits or Limits(), Counter(), takes_partial=True, native=native)
    for n, number in enumerate(numbers):
        peer, ours = epoch_keys(number)
        channel.install(number, ours, peer, 0.0, active=n < 2)
    return channel


@dataclass(frozen=True)
class Spec:
    """One datagram as the peer would seal it (wire.py Rule 1), at any counter."""

    epoch: int  # its number: the key, and the tag on the wire (the low byte)
    kind: int
    flags: int
    counter: int
    payload: bytes
    session: int = SESSION


def forge(cipher: str, spec: Spec) -> bytes:
    """The datagram of `spec`, sealed with cryptography's AEAD under the epoch's peer key."""
    header = wire.HEADER.pack(spec.kind, spec.epoch & 0xFF, spec.flags, 0, spec.session, spec.counter)
    aead = make_aead(cipher, epoch_keys(spec.epoch)[0], native=False)
    return header + aead.encrypt(wire.NONCE_PREFIX + header[8:], spec.payload, header)


def altered(datagrams: Sequence[bytes], how: int, arg: bytes) -> bytes:
    """An earlier datagram replayed (0), XOR-patched (1), truncated (2) or moved to another
    session (3); `arg` picks which and how."""
    base = datagrams[arg[0] % len(datagrams)] if arg and datagrams else b""
    if not base:
        return arg
    rest = arg[1:]
    if how % 4 == 1:
        at, patch = (rest[0] % len(base) if rest else 0), rest[1:] or b"\x01"
        return base[:at] + bytes(a ^ b for a, b in zip(base[at:], patch)) + base[at + len(patch):]
    if how % 4 == 2:
        return base[: rest[0] if rest else 31]
    if how % 4 == 3:
        return base[:4] + struct.pack("!I", SESSION ^ (rest[0] if rest else 1) << 8) + base[8:]
    return base


def open_like_peer(channel: DataChannel, batch: list[bytes]) -> tuple[Any, ...]:
    """What peer.open_many sees of one batch, and the channel's state after it."""
    runs, i = [], 0
    while i < len(batch):
        out, stop, authentic = channel.open_batch(batch, i, 1.0)
        runs.append((out, stop, authentic))
        if stop < len(batch):
            channel.drops[wire.stray_reason(batch[stop])] += 1
        i = stop + 1
    epochs = tuple(e.number if e else None for e in (channel.previous, channel.current, channel.pending))
    return runs, dict(channel.drops), channel.peer_takes_partial, epochs


def assert_open_agrees(cipher: str, batches: Sequence[list[bytes]], numbers: Sequence[int] = (0, 1, 2)) -> None:
    """Native and Python receivers give the same results batch after batch (Rule 1)."""
    channels = [receiver(cipher, native, numbers=numbers) for native in PATHS]
    for n, batch in enumerate(batches):
        seen = [open_like_peer(c, batch) for c in channels]
        assert all(s == seen[0] for s in seen), f"batch {n}: native {seen[0]}\n python {seen[-1]}"


def outcome(run: Callable[[], Any]) -> Any:
    """run()'s result, or the class of what it raised: the paths must agree on either."""
    try:
        return run()
    except Exception as exc:  # noqa: BLE001 - the class is the outcome to compare
        return type(exc)


def assert_seal_agrees(cipher: str, packets: list[tuple[bytes, int]], kind: int, counter: int,
                       reject: int) -> None:
    """DataChannel.seal_batch on both paths, from `counter`, with `reject` as the hard limit."""
    results = []
    for native in PATHS:
        limits = Limits(rekey_seconds=60, rekey_packets=1, reject_packets=reject, old_key_grace=5)
        channel = receiver(cipher, native, limits)
        channel.current.counter = counter
        results.append((outcome(lambda: channel.seal_batch(packets, kind)), channel.current.counter,
                        channel.exhausted, dict(channel.drops)))
    assert all(r == results[0] for r in results), results


def assert_aead_batch_agrees(cipher: str, packets: list[tuple[bytes, int]], kind: int, own: int,
                             counter: int) -> None:
    """Aead.seal_batch at any counter (up to 2**64) against `forge` per packet (wire Rule 1)."""
    def reference() -> list[bytes]:
        return [forge(cipher, Spec(1, kind, flags | own, counter + i, payload)) for i, (payload, flags)
                in enumerate(packets)]
    expected = outcome(reference)
    if NATIVE:
        aead = make_aead(cipher, epoch_keys(1)[0])
        got = outcome(lambda: aead.seal_batch(packets, kind, 1, own, SESSION, counter))
        assert got == expected, (got, expected)


# ---- script inputs ----------------------------------------------------------------------


def counter_of(raw: bytes) -> int:
    """Mostly small counters (the window's ring, its edge), sometimes any u64."""
    value = int.from_bytes(raw[:8].ljust(8, b"\0"), "big")
    return value if value >> 63 else value & 0x3FFFF


def spec_of(payload: bytes) -> Spec:
    head = payload[:3].ljust(3, b"\0")
    return Spec(head[0] % 4, head[1] % 4, head[2], counter_of(payload[3:11]), payload[11:])


def batches_of(data: bytes, cipher: str) -> list[list[bytes]]:
    """Records: op 0 raw bytes, 1 a sealed datagram (spec_of), 2-5 an altered earlier one,
    6 the end of a batch."""
    made: list[bytes] = []
    batches: list[list[bytes]] = [[]]
    for op, payload in records(data) or [(0, data)]:
        kind = op % 7
        if kind == 6:
            batches.append([])
            continue
        datagram = payload if kind == 0 else forge(cipher, spec_of(payload)) if kind == 1 else \
            altered(made, kind - 2, payload)
        made.append(datagram)
        batches[-1].append(datagram)
    return batches


def run_open(data: bytes) -> None:
    cipher = CIPHERS[data[0] & 1] if data else CIPHERS[0]
    assert_open_agrees(cipher, batches_of(data[1:], cipher))


def open_seeds() -> list[bytes]:
    def sealed(epoch: int, kind: int, flags: int, counter: int, body: bytes) -> bytes:
        return record(1, bytes([epoch, kind, flags]) + struct.pack("!Q", counter) + body)
    run = b"".join(sealed(1, 1 + i % 2, i % 8, i, b"payload %d" % i) for i in range(8))
    mixed = run + sealed(2, 1, 4, 0, b"pending") + sealed(0, 1, 0, 3, b"previous") + sealed(3, 1, 0, 0, b"?")
    attacks = (record(2, b"\x00") + record(3, b"\x01\x20\xff") + record(3, b"\x02\x0f\x80") + record(4, b"\x02\x10")
               + record(5, b"\x03\x01"))  # a replay, a forged replay, a forged fresh counter, short, stray
    edges = sealed(1, 1, 0, WINDOW + 5, b"") + sealed(1, 1, 0, 2, b"old") + sealed(1, 1, 0, 2**64 - 1, b"top")
    return [b"\x00" + run + record(6, b"") + mixed + attacks, b"\x01" + mixed + attacks + record(0, b"\x01" * 31),
            b"\x00" + edges + record(6, b"") + edges]


def run_seal(data: bytes) -> None:
    """[cipher/kind byte][reject u16][counter u64] then records (flags, payload)."""
    head = data[:11].ljust(11, b"\0")
    cipher, kind = CIPHERS[head[0] & 1], head[0] >> 1
    packets = [(payload, op) for op, payload in records(data[11:])]
    reject = 2 + struct.unpack_from("!H", head, 1)[0]
    counter = counter_of(head[3:11])
    assert_seal_agrees(cipher, packets, kind, counter % (reject + 2), reject)
    assert_aead_batch_agrees(cipher, packets, kind, head[0] & 4, 2**64 - 1 - counter % 5 if head[0] & 8 else counter)


def seal_seeds() -> list[bytes]:
    packets = b"".join(record(i % 4, bytes(range(i * 7 % 60))) for i in range(12))
    return [b"\x02\x00\x40" + bytes(8) + packets, b"\x0b\x00\x05" + struct.pack("!Q", 3) + packets,
            b"\x05\xff\xff" + bytes(7) + b"\x01" + record(0, b"")]


# ---- replay windows ---------------------------------------------------------------------


class Model:
    """The window's contract as a set and a maximum (replay.py Rules 1-2)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.seen, self.top = limit, set(), -1

    def accept(self, counter: int) -> bool:
        fresh = counter < self.limit and counter not in self.seen and counter >= self.top - WINDOW
        if fresh:
            self.seen.add(counter)
            self.top = max(self.top, counter)
        return fresh


def window_steps(data: bytes) -> tuple[int, list[tuple[int, int]]]:
    """(limit, [(op 0 check / 1 update / 2-3 accept, counter)]) from 9-byte records."""
    limit = RECEIVE_LIMIT if not data or data[0] & 1 else (2**64 - 1 if data[0] & 2 else 300 + data[0])
    steps, base = [], 0
    for at in range(1, len(data) - 8, 9):
        op, raw = data[at] & 3, struct.unpack_from("!Q", data, at + 1)[0]
        counter = raw if raw >> 63 else (base + (raw & 0xFFFF)) % 2**64
        base = counter if raw & 0x10000 else base
        steps.append((op, counter))
    return limit, steps


def run_window(data: bytes) -> None:
    limit, steps = window_steps(data)
    kinds = (ReplayWindow, PythonReplayWindow) if NATIVE else (PythonReplayWindow,)
    accepting = [(k(limit), Model(limit)) for k in kinds]
    mixed = [k(limit) for k in kinds]
    for op, counter in steps:
        for window, model in accepting:
            assert window.accept(counter) == model.accept(counter), f"{type(window)}: counter {counter}"
        if op == 1 and counter == 2**64 - 1:
            continue  # no check admits it; the C window refuses to record it (replay.py Rule 4)
        answers = [getattr(w, ("check", "update", "accept", "accept")[op])(counter) for w in mixed]
        assert all(a == answers[0] for a in answers), f"op {op} counter {counter}: {answers}"


def window_seeds() -> list[bytes]:
    def steps(*pairs: tuple[int, int]) -> bytes:
        return b"".join(bytes([op]) + struct.pack("!Q", c) for op, c in pairs)
    edge = steps((2, 0), (2, 0x10000 | WINDOW), (0, 0), (2, 0), (1, 8200), (0, 5), (2, 2**64 - WINDOW - 2))
    top = steps((2, 2**64 - 2), (0, 2**64 - 1), (1, 2**64 - 3), (2, 2**64 - 3), (2, 1 << 63))
    return [b"\x01" + edge, b"\x02" + top, b"\x00" + steps((2, 299), (2, 300), (1, 301), (0, 301))]


TARGETS = (
    Target("native-open", run_open, open_seeds, (record(6, b""), b"\x01\x00\x0e", b"\xff" * 8), max_len=4096),
    Target("native-seal", run_seal, seal_seeds, (b"\x00\x00\x00", b"\xff" * 8), max_len=4096),
    Target("native-replay", run_window, window_seeds,
           (b"\xff" * 8, b"\x00" * 8, b"\x02\x00\x00\x00\x00\x00\x01\x00\x00")),
)
