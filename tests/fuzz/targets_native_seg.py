"""Fuzz targets for cutting and joining TCP segments: runtime/segment.py `py_split` and
runtime/coalesce.py `py_plan` against their native twins (runtime/native/fastseg.c).

Rule 1: the Python reference never raises, whatever the frame or the packets; where the
        native module is built it gives the same segments and the same writes (each write's
        bytes joined), and raises nothing either.
Rule 2: a `segment` input is one TUN read (vnet header + packet); a `coalesce` input is a
        script of records (tests/fuzz/mutate.py `records`), one per received packet: the op's
        low two bits are its FL_INNER flags, the payload is the packet.
"""

from __future__ import annotations

from runtime import coalesce, segment, vnet
from runtime.proto.wire import FL_CONTINUES, FL_CSUM_PARTIAL
from tests.dataplane.packets import ACK, CWR, FIN, PSH, ipv4, payload, tcp_header, tso_frame, udp_packet
from tests.fuzz.engine import Target
from tests.fuzz.mutate import record, records

NATIVE = segment.NATIVE


def run_segment(data: bytes) -> None:
    expected = segment.py_split(data)
    if NATIVE is not None:
        got = NATIVE.split(data)
        assert got == expected, f"native split differs: {got!r:.300} != {expected!r:.300}"


def run_coalesce(data: bytes) -> None:
    items = [(packet, op & 3) for op, packet in records(data)]
    expected = [b"".join(w) for w in coalesce.py_plan(items)]
    if NATIVE is not None:
        got = [b"".join(w) for w in NATIVE.plan(items)]
        assert got == expected, f"native plan differs: {len(got)} writes != {len(expected)}"


def segment_seeds() -> list[bytes]:
    frames = [tso_frame(4, 1, payload(3 * 500 + 7), 500, ACK | PSH | FIN | CWR)[0],
              tso_frame(6, 2**32 - 600, payload(2 * 400), 400)[0], tso_frame(4, 9, payload(100), 1368)[0]]
    plain = ipv4(tcp_header(5, ACK) + b"data")
    return frames + [vnet.PLAIN + plain, vnet.partial(20, 6) + udp_packet(b"query"), vnet.partial(20, 16) + plain]


def coalesce_seeds() -> list[bytes]:
    runs = [segment.py_split(tso_frame(v, 1000, payload(5 * 300 + 11), 300)[0]) for v in (4, 6)]
    tail = segment.py_split(tso_frame(4, 1000 + 5 * 300 + 11, payload(600), 300)[0])
    tail[0] = (tail[0][0], tail[0][1] | FL_CONTINUES)
    odd = [(udp_packet(b"q"), FL_CSUM_PARTIAL), (ipv4(tcp_header(1, ACK) + b"x"), 0)]
    return [b"".join(record(f, p) for p, f in items) for items in (runs[0] + tail, runs[1] + odd, odd + runs[0][:2])]


TCP_TOKENS = (b"\x45\x00", b"\x46\x00", b"\x60\x00\x00\x00", b"\x50\x10", b"\x80\x18", b"\x50\x02", b"\x00\x06",
              b"\x00\x11", b"\xff\xff", b"\x00\x00")
TARGETS = (
    Target("segment", run_segment, segment_seeds, TCP_TOKENS + (vnet.PLAIN, vnet.partial(20, 16)), max_len=8192),
    Target("coalesce", run_coalesce, coalesce_seeds, TCP_TOKENS + (b"\x03\x01\x58", b"\x01\x00\x28"), max_len=8192),
)
