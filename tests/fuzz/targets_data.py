"""Fuzz targets for the per-packet parsers: data datagrams, the replay window, stream frames
and control messages.

Rule 1: datagrams never raise; `DataChannel.open` accepts only datagrams the real sender
        sealed, each at most once, and counts every other one in `drops`.
Rule 2: the replay window agrees with a plain reference model (a set and a maximum) on
        every counter, including counters near 2**64 and jumps past the ring.
Rule 3: stream bytes and frame bodies raise only ProtocolViolation with a reason; a message
        that decodes re-encodes to a frame that decodes to the same message.
"""

from __future__ import annotations

import struct
from collections import Counter
from functools import cache

from runtime.proto import Limits, messages, wire
from runtime.proto.datachannel import DataChannel
from runtime.proto.faults import ProtocolViolation
from runtime.proto.replay import RECEIVE_LIMIT, WINDOW, ReplayWindow
from tests.fuzz.engine import Target
from tests.fuzz.mutate import record, records

SESSION = 0x0A0B0C0D
KEYS = (bytes(range(32)), bytes(range(32, 64)), bytes(range(64, 96)), bytes(range(96, 128)))
LIMITS = Limits(rekey_seconds=60, rekey_packets=50, reject_packets=80, old_key_grace=5)


# ---- datagrams ------------------------------------------------------------------------


def _channel(seal: bytes, open_: bytes, seal1: bytes, open1: bytes) -> DataChannel:
    channel = DataChannel(SESSION, "chacha20-poly1305", LIMITS, Counter())
    channel.install(0, seal, open_, 0.0, active=True)
    channel.install(1, seal1, open1, 0.0, active=False)
    return channel


@cache
def sealed() -> tuple[bytes, ...]:
    """Real datagrams from the peer: 12 under epoch 0 (data and keepalive), 4 under epoch 1."""
    sender = _channel(KEYS[1], KEYS[0], KEYS[3], KEYS[2])
    out = [sender.seal(wire.DG_DATA if i % 3 else wire.DG_KEEPALIVE, b"packet %d" % i) for i in range(12)]
    sender.activate(0.0)
    out += [sender.seal(wire.DG_DATA, b"epoch1 %d" % i) for i in range(4)]
    return tuple(d for d in out if d is not None)


def _datagram(op: int, payload: bytes) -> bytes:
    real = sealed()
    if op % 3 == 0 or not payload:
        return payload
    base = real[payload[0] % len(real)]
    if op % 3 == 1:
        return base
    patch = payload[1:]
    at = patch[0] % len(base) if patch else 0
    return base[:at] + bytes(a ^ b for a, b in zip(base[at:], patch[1:])) + base[at + max(0, len(patch) - 1):]


def run_datagram(data: bytes) -> None:
    receiver = _channel(KEYS[0], KEYS[1], KEYS[2], KEYS[3])
    real, accepted, refused = set(sealed()), [], 0
    for op, payload in records(data) or [(0, data)]:
        datagram = _datagram(op, payload)
        opened = receiver.open(datagram, 1.0)
        if opened is None:
            refused += 1
            continue
        assert datagram in real, f"accepted a datagram the sender never sealed: {datagram.hex()}"
        assert datagram not in accepted, f"accepted a replay: {datagram.hex()}"
        assert opened[0] in (wire.DG_DATA, wire.DG_KEEPALIVE)
        accepted.append(datagram)
    assert sum(receiver.drops.values()) == refused, f"drops {dict(receiver.drops)} != {refused} refused"


def datagram_seeds() -> list[bytes]:
    every = b"".join(record(1, bytes([i])) for i in range(len(sealed())))
    return [every, every + every, record(2, b"\x00\x05\xff"), record(0, sealed()[0][:20]), sealed()[3]]


# ---- replay window --------------------------------------------------------------------


def run_replay(data: bytes) -> None:
    limit = RECEIVE_LIMIT if not data or data[0] & 1 else 200 + data[0]
    window, seen, top = ReplayWindow(limit), set(), -1
    base = 0
    for at in range(1, len(data) - 7, 8):
        raw = struct.unpack_from("!Q", data, at)[0]
        counter = raw if raw >> 63 else (base + (raw & 0xFFFF)) % 2**64  # mostly near the top
        base = counter if raw & 0x10000 else base
        expected = counter < limit and counter not in seen and counter >= top - WINDOW
        got = window.accept(counter)
        assert got == expected, f"counter {counter} after top {top}: window says {got}, model {expected}"
        if got:
            seen.add(counter)
            top = max(top, counter)


def replay_seeds() -> list[bytes]:
    steps = [0, 1, 1, 0x10000 | 9000, 5, 8200, 0x10000 | 8128, 0, 2**64 - WINDOW - 2, 2**64 - 1]
    return [b"\x01" + b"".join(struct.pack("!Q", s) for s in steps), b"\x00" + struct.pack("!Q", 199) * 3]


# ---- frames and messages --------------------------------------------------------------


def _roundtrip(ftype: int, body: bytes) -> None:
    try:
        message = messages.decode(ftype, body)
    except ProtocolViolation as fault:
        assert fault.reason and isinstance(fault.reason, str)
        return
    (again,) = wire.FrameReader().feed(messages.encode(message))
    assert messages.decode(*again) == message, f"{message} does not survive encode/decode"


def run_frames(data: bytes) -> None:
    size = (data[0] if data else 1) or 1
    reader = wire.FrameReader()
    try:
        for at in range(1, len(data), size):
            for ftype, body in reader.feed(data[at : at + size]):
                assert len(body) <= wire.MAX_BODY
                if ftype not in (wire.F_DATA, wire.F_KEEPALIVE):
                    _roundtrip(ftype, body)
    except ProtocolViolation as fault:
        assert fault.reason


def run_message(data: bytes) -> None:
    if data:
        _roundtrip(data[0], data[1:])


def valid_messages() -> list[messages.Message]:
    key = messages.encode_key(bytes(range(32)))
    return [
        messages.Hello(messages.VERSION, key, ("aes-256-gcm", "chacha20-poly1305"), "udp"),
        messages.Welcome(7, key, "aes-256-gcm", "10.8.0.2/24", "fd00:8::2/64", "10.8.0.1", "fd00:8::1",
                         ("0.0.0.0/0", "::/0"), ("10.8.0.1",), 1420, 10, 60, 51820, 120, 2**28),
        messages.Rekey(1, key), messages.RekeyAck(2, key), messages.RekeyConfirm(3),
        messages.RekeyRequest("volume"), messages.Bye("revoked"),
    ]


def frame_seeds() -> list[bytes]:
    frames = [messages.encode(m) for m in valid_messages()]
    data = wire.encode_frame(wire.F_DATA, b"\x45" + bytes(19)) + wire.encode_frame(wire.F_KEEPALIVE, b"")
    return [b"\x07" + b"".join(frames), b"\x40" + frames[0] + data, b"\x01" + frames[1]]


def message_seeds() -> list[bytes]:
    return [m.FRAME.to_bytes(1, "big") + messages.encode(m)[wire.FRAME_HEADER_LEN:] for m in valid_messages()]


JSON_TOKENS = tuple(t.encode() for t in (
    '"version":', '"public_key":', '"ciphers":', '"transport":', '"session_id":', '"cipher":', '"address4":',
    '"address6":', '"routes":', '"dns":', '"mtu":', '"keepalive":', '"dead_peer":', '"data_port":',
    '"rekey_seconds":', '"rekey_packets":', '"epoch":', '"reason":', "null", "true", "1e999", "-0", "[]",
    "{}", '""', "\\u0000", "\\ud800", "4294967296", "9223372036854775808", '"::"', '"10.8.0.1/33"', "[" * 40,
))
FRAME_TOKENS = JSON_TOKENS + (b"\x01\x00\x00\x10", b"\x10\xff\xff\xff", b"\x10\x00\xff\xff", b"\x07\x00\x00\x00",
                              b"\x11\x00\x00\x00", b"\x99\x00\x00\x00")

TARGETS = (
    Target("datagram", run_datagram, datagram_seeds, (b"\x01\x00\x00", b"\x02\x00\x10"), max_len=2048),
    Target("replay", run_replay, replay_seeds, (b"\xff" * 8, b"\x00" * 8, b"\x00\x00\x00\x00\x00\x01\x00\x00")),
    Target("frames", run_frames, frame_seeds, FRAME_TOKENS, max_len=8192),
    Target("message", run_message, message_seeds, JSON_TOKENS),
)
