"""What the server and client loops share: performing the core's outputs, and sockets.

Rule 1: outputs are performed in the order the core returned them; a failed send on the
data path is counted and dropped (UDP is lossy anyway), never raised into the loop.
Rule 2: events are logged once each, with the peer and the reason; nothing secret is in
them (no keys, no certificates, only names, addresses and reasons).
Rule 3: the data path moves batches: datagrams leave in UDP GSO runs (runtime/gso.py),
arrive through UDP GRO, and packets reach a TUN with a vnet header as coalesced TCP
super-packets (runtime/coalesce.py); a TUN without one gets one complete packet per write.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from runtime import gso, vnet
from runtime.coalesce import plan
from runtime.segment import Segment, split
from runtime.proto.events import (
    CloseConnection, HandshakeCompleted, HandshakeFailed, KeysRotated, PeerDead, PeerRoamed,
    SendDatagram, SendStream, SessionClosed, WriteTun,
)

BATCH = 64  # reads drained per wakeup, from the TUN and from the UDP socket
MAX_DATAGRAMS = 256  # datagrams received per wakeup (GRO gives up to 64 per read)
MAX_DRAIN_BYTES = 512 << 10  # bytes received per wakeup (a GRO read holds up to 64 KiB)
SOCKET_BUFFER = 4 << 20


def inner_packets(frame: bytes, vnet_hdr: bool) -> list[Segment]:
    """The (packet, FL_INNER flags) pairs of one TUN read: TSO super-packets are cut."""
    return split(frame) if vnet_hdr else [(frame, 0)]


class Receiver:
    """Drains a non-blocking UDP socket, through UDP GRO where the kernel has it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.gro = gso.enable_gro(sock)
        self.view = memoryview(bytearray(65535))  # one receive buffer, reused: each datagram is
        # then one bytes object of its own size, never a 64 KiB one cut down

    def receive(self) -> list[tuple[object, list[bytes]]]:
        """(sender address, datagrams) per read: up to BATCH reads, MAX_DATAGRAMS datagrams or
        MAX_DRAIN_BYTES bytes (what one drain may hold: a flood of large junk datagrams then
        costs at most that much memory at once).  Errors end the drain (an ICMP error on a
        connected socket: the dead-peer timer decides)."""
        out: list[tuple[object, list[bytes]]] = []
        sock, view, count, size = self.sock, self.view, 0, 0
        for _ in range(BATCH):
            try:
                if self.gro:
                    n, anc, _flags, addr = sock.recvmsg_into([view], gso.ANC_SPACE)
                    datagrams = gso.split(view, n, anc)
                else:
                    n, addr = sock.recvfrom_into(view)
                    datagrams = [bytes(view[:n])]
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            out.append((addr, datagrams))
            count += len(datagrams)
            size += n
            if count >= MAX_DATAGRAMS or size >= MAX_DRAIN_BYTES:
                break
        return out


def set_buffers(sock: socket.socket) -> None:
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
        except OSError:
            pass


@dataclass
class StreamConn:
    writer: asyncio.StreamWriter
    peer: str = ""

    def __post_init__(self) -> None:
        name = self.writer.get_extra_info("peername")
        self.peer = f"{name[0]}:{name[1]}" if name else "?"


@dataclass
class Outputs:
    """Performs actions and logs events for one loop."""

    udp: socket.socket | None
    tun: object
    conns: dict[int, StreamConn]
    log: logging.Logger
    errors: Counter = field(default_factory=Counter)
    sender: gso.Sender | None = None

    def __post_init__(self) -> None:
        if self.udp is not None:
            self.sender = gso.Sender(self.udp, self.errors)

    def send_groups(self, groups: list) -> None:
        """Send (address or None, datagrams) groups, each what one seal call gave, in GSO runs."""
        if groups:
            self.sender.send_groups(groups)  # type: ignore[union-attr]

    def seal_tun_reads(self, seal: Callable[[list[Segment]], gso.Group | None]) -> None:
        """Drain up to BATCH reads from the TUN: `seal` makes each read's packets one group (None:
        nothing to send), and the groups leave in GSO sends of about MAX_SEGMENTS datagrams."""
        tun, groups, count = self.tun, [], 0
        vnet_hdr = tun.vnet_hdr  # type: ignore[attr-defined]
        for _ in range(BATCH):
            frame = tun.read()  # type: ignore[attr-defined]
            if frame is None:
                break
            segments = inner_packets(frame, vnet_hdr)
            group = seal(segments) if segments else None
            if group is not None:
                groups.append(group)
                count += len(group[1])
                if count >= gso.MAX_SEGMENTS:
                    self.send_groups(groups)
                    groups, count = [], 0
        self.send_groups(groups)

    def write_tun_many(self, items: list[tuple[bytes, int]]) -> None:
        """Write received (packet, FL_INNER flags) pairs to the TUN, in order (Rule 3)."""
        if not getattr(self.tun, "vnet_hdr", False):
            for packet, _ in items:
                self.write_tun(packet)
            return
        fd = self.tun.fileno()  # type: ignore[attr-defined]
        for iov in plan(items):
            try:
                os.writev(fd, iov)
            except OSError as e:
                self.errors[f"tun-write-{e.errno}"] += 1

    def sendto(self, data: bytes, addr) -> None:
        try:
            if addr is None:
                self.udp.send(data)  # type: ignore[union-attr]
            else:
                self.udp.sendto(data, addr)  # type: ignore[union-attr]
        except OSError as e:
            self.errors[f"udp-send-{e.errno}"] += 1

    def write_tun(self, packet: bytes) -> None:
        """Write one complete packet (with a plain vnet header if the TUN has them)."""
        try:
            if getattr(self.tun, "vnet_hdr", False):
                os.writev(self.tun.fileno(), [vnet.PLAIN, packet])  # type: ignore[attr-defined]
            else:
                self.tun.write(packet)  # type: ignore[attr-defined]
        except OSError as e:
            self.errors[f"tun-write-{e.errno}"] += 1

    def perform(self, outputs: list) -> None:
        for out in outputs:
            kind = type(out)
            if kind is SendDatagram:
                self.sendto(out.data, out.addr)
            elif kind is WriteTun:
                self.write_tun(out.packet)
            elif kind is SendStream:
                conn = self.conns.get(out.conn)
                if conn is not None and not conn.writer.is_closing():
                    conn.writer.write(out.data)
            elif kind is CloseConnection:
                conn = self.conns.get(out.conn)
                if conn is not None:
                    conn.writer.close()
            else:
                self.event(out)

    def peer(self, conn: int) -> str:
        c = self.conns.get(conn)
        return c.peer if c else "?"

    def event(self, ev: object) -> None:
        log, kind = self.log, type(ev)
        if kind is HandshakeCompleted:
            a = ev.assignment
            log.info("session %08x up: %s from %s, tunnel %s, transport %s", ev.session_id, ev.name,
                     self.peer(ev.conn), a.address4, ev.transport)
        elif kind is HandshakeFailed:
            log.warning("handshake refused from %s: %s", self.peer(ev.conn), ev.reason)
        elif kind is SessionClosed:
            log.info("session %08x of %s closed: %s", ev.session_id, ev.name, ev.reason)
        elif kind is PeerDead:
            log.warning("session %08x: peer silent for %.0f s", ev.session_id, ev.silent_for)
        elif kind is PeerRoamed:
            log.info("session %08x roamed to %s:%s", ev.session_id, ev.endpoint[0], ev.endpoint[1])
        elif kind is KeysRotated:
            log.debug("session %08x: keys rotated to epoch %d", ev.session_id, ev.epoch)
