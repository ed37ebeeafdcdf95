"""What the server and client loops share: performing the core's outputs, and sockets.

Rule 1: outputs are performed in the order the core returned them; a failed send on the
data path is counted and dropped (UDP is lossy anyway), never raised into the loop.
Rule 2: events are logged once each, with the peer and the reason; nothing secret is in
them (no keys, no certificates, only names, addresses and reasons).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import socket
from collections import Counter
from dataclasses import dataclass, field

from runtime.proto.events import (
    CloseConnection, HandshakeCompleted, HandshakeFailed, KeysRotated, PeerDead, PeerRoamed,
    SendDatagram, SendStream, SessionClosed, WriteTun,
)

BATCH = 64  # packets drained per wakeup, from the TUN and from the UDP socket
SOCKET_BUFFER = 4 << 20


def outside_loop(fn, *args):
    """Run `fn` in a thread of its own and wait for it: pyroute2's synchronous API runs an
    event loop of its own, which cannot nest inside ours (system setup only, never per packet)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()


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

    def sendto(self, data: bytes, addr) -> None:
        try:
            if addr is None:
                self.udp.send(data)  # type: ignore[union-attr]
            else:
                self.udp.sendto(data, addr)  # type: ignore[union-attr]
        except OSError as e:
            self.errors[f"udp-send-{e.errno}"] += 1

    def write_tun(self, packet: bytes) -> None:
        try:
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
