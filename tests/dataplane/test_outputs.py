"""The loops' batch I/O (runtime/iobase.py) against a pipe standing in for the TUN and a
socket pair standing in for the network: what reaches the TUN and the wire, in order."""

from __future__ import annotations

import logging
import os
import select
import socket
from dataclasses import dataclass

from runtime import vnet
from runtime.iobase import Outputs, Receiver, inner_packets
from runtime.proto.wire import FL_CONTINUES, FL_CSUM_PARTIAL
from tests.dataplane.packets import ACK, ipv4, payload, tcp_header, tso_frame

MSS = 1368


@dataclass
class PipeTun:
    fd: int
    vnet_hdr: bool

    def fileno(self) -> int:
        return self.fd

    def write(self, packet: bytes) -> int:
        return os.write(self.fd, packet)


def written(vnet_hdr: bool, items) -> bytes:
    r, w = os.pipe()
    Outputs(None, PipeTun(w, vnet_hdr), {}, logging.getLogger("test")).write_tun_many(items)
    os.close(w)
    data = os.read(r, 1 << 20)
    os.close(r)
    return data


def test_a_vnet_tun_gets_one_gso_write_per_run_and_a_plain_one_gets_packets():
    frame, original = tso_frame(4, 0, payload(4 * MSS), MSS)
    segments = inner_packets(frame, True)
    assert [f for _, f in segments] == [FL_CSUM_PARTIAL] + [FL_CSUM_PARTIAL | FL_CONTINUES] * 3
    data = written(True, segments)
    assert vnet.HEADER.unpack_from(data)[1] == vnet.GSO_TCPV4 and data[vnet.SIZE:] == original
    plain = ipv4(tcp_header(1, ACK) + b"x")
    assert written(False, [(plain, 0), (plain, 0)]) == plain + plain
    assert inner_packets(plain, False) == [(plain, 0)]


def udp_pair() -> tuple[socket.socket, socket.socket]:
    """(receiving socket, sending socket connected to it) on loopback."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.connect(rx.getsockname())
    return rx, tx


def test_datagrams_leave_in_order_and_arrive_split_again():
    rx, tx = udp_pair()
    out = Outputs(tx, None, {}, logging.getLogger("test"))
    sent = [bytes([i]) * 1400 for i in range(70)] + [b"short", b"x" * 1400]
    out.send_groups([(None, sent[:40]), (None, sent[40:])])
    receiver, got = Receiver(rx), []
    while len(got) < len(sent) and select.select([rx], [], [], 2)[0]:
        got += [d for _, run in receiver.receive() for d in run]
    assert got == sent and not out.errors


@dataclass
class ReadTun:
    """Frames to read, then nothing (a drained non-blocking TUN)."""

    frames: list[bytes]
    vnet_hdr: bool = False

    def read(self) -> bytes | None:
        return self.frames.pop(0) if self.frames else None


def test_tun_reads_are_sealed_a_group_each_and_leave_in_order_in_gso_sends():
    rx, tx = udp_pair()
    frames = [bytes([i]) * 700 for i in range(100)]  # more reads than one drain takes
    tun = ReadTun(list(frames))
    out = Outputs(tx, tun, {}, logging.getLogger("test"))
    out.seal_tun_reads(lambda segments: None if segments[0][0][0] % 7 == 0 else (None, [p for p, _ in segments] * 2))
    sent = [f for f in frames[:64] if f[0] % 7]  # BATCH reads; each 7th sealed to nothing
    receiver, got = Receiver(rx), []
    while select.select([rx], [], [], 0.5)[0]:
        got += [d for _, run in receiver.receive() for d in run]
    assert got == [f for f in sent for _ in range(2)] and len(tun.frames) == 36 and not out.errors
