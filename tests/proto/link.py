"""An in-memory network for the protocol cores (h11's ConnectionPair, grown to many clients).

Rule 1: streams are delivered in order; datagrams are delivered at once unless `hold` is set,
        in which case they wait in `held` for the test to deliver, drop, reorder or replay.
Rule 2: time moves only by `advance`, which fires each core's timer at its deadline.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from runtime.proto import (
    ClientCore,
    CloseConnection,
    SendDatagram,
    SendStream,
    ServerCore,
    TunnelAssignment,
    WriteTun,
)


def ipv4(src: str, dst: str, payload: bytes = b"hello") -> bytes:
    """A minimal IPv4/UDP-ish packet (no checksums: the core never looks at them)."""
    size = (20 + len(payload)).to_bytes(2, "big")
    return (b"\x45\x00" + size + bytes(4) + b"\x40\x11\x00\x00" + ipaddress.IPv4Address(src).packed
            + ipaddress.IPv4Address(dst).packed + payload)


def ipv6(src: str, dst: str, payload: bytes = b"hello") -> bytes:
    return (b"\x60" + bytes(3) + len(payload).to_bytes(2, "big") + b"\x11\x40"
            + ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed + payload)


class Pool:
    """A test address policy: 10.8.0.N/24 and fd00:8::N/64 by order of arrival."""

    def __init__(self, *, refuse: tuple[str, ...] = ()) -> None:
        self.refuse = refuse
        self.given: dict[str, TunnelAssignment] = {}
        self.released: list[str] = []
        self._next = 2

    def assign(self, name: str) -> TunnelAssignment | None:
        if name in self.refuse:
            return None
        if name not in self.given:
            n, self._next = self._next, self._next + 1
            self.given[name] = TunnelAssignment(
                address4=ipaddress.IPv4Interface(f"10.8.0.{n}/24"),
                server_address4=ipaddress.IPv4Address("10.8.0.1"),
                address6=ipaddress.IPv6Interface(f"fd00:8::{n}/64"),
                server_address6=ipaddress.IPv6Address("fd00:8::1"),
                routes=(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")),
                dns=(ipaddress.ip_address("10.8.0.1"),),
            )
        return self.given[name]

    def release(self, name: str) -> None:
        self.released.append(name)


@dataclass
class ClientEnd:
    core: ClientCore
    conn: int
    addr: tuple[str, int]
    tun: list[bytes] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)
    connected: bool = True

    @property
    def address(self) -> str:
        return str(self.core_assignment.address4.ip)

    @property
    def core_assignment(self) -> TunnelAssignment:
        from runtime.proto import HandshakeCompleted
        return next(e for e in self.events if isinstance(e, HandshakeCompleted)).assignment

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


class Net:
    """One server core, any number of client cores, in-memory streams and datagrams."""

    def __init__(self, server: ServerCore) -> None:
        self.server = server
        self.now = 1000.0
        self.ends: dict[int, ClientEnd] = {}
        self.server_tun: list[bytes] = []
        self.server_events: list[Any] = []
        self.hold = False
        self.held: list[tuple[str, bytes, Any]] = []  # (direction "c2s"/"s2c", data, addr)
        self.replies_to: list[tuple[bytes, Any]] = []  # server datagrams to unknown addresses
        self.hold_streams = False
        self.held_streams: list[tuple[str, int, bytes]] = []  # ("c2s"/"s2c", conn, data)

    def connect(self, client: ClientCore, addr: tuple[str, int] = ("198.51.100.7", 40000)) -> ClientEnd:
        conn = len(self.ends) + 1
        end = self.ends[conn] = ClientEnd(client, conn, addr)
        self.server.connection_made(conn, self.now)
        client.connect(self.now)
        self.pump()
        return end

    def pump(self) -> None:
        moved = True
        while moved:
            moved = False
            for end in list(self.ends.values()):
                for out in end.core.take_outputs():
                    moved = True
                    self._from_client(end, out)
            for out in self.server.take_outputs():
                moved = True
                self._from_server(out)

    def _from_client(self, end: ClientEnd, out: Any) -> None:
        if isinstance(out, SendStream):
            self._stream("c2s", end.conn, out.data)
        elif isinstance(out, SendDatagram):
            self.datagram_to_server(out.data, end.addr)
        elif isinstance(out, WriteTun):
            end.tun.append(out.packet)
        elif isinstance(out, CloseConnection):
            if end.connected:
                end.connected = False
                self.server.connection_lost(end.conn, self.now)
        else:
            end.events.append(out)

    def _from_server(self, out: Any) -> None:
        if isinstance(out, SendStream):
            self._stream("s2c", out.conn, out.data)
        elif isinstance(out, SendDatagram):
            self.datagram_to_client(out.data, out.addr)
        elif isinstance(out, WriteTun):
            self.server_tun.append(out.packet)
        elif isinstance(out, CloseConnection):
            end = self.ends[out.conn]
            if end.connected:
                end.connected = False
                end.core.connection_lost(self.now)
        else:
            self.server_events.append(out)

    def _stream(self, direction: str, conn: int, data: bytes, *, force: bool = False) -> None:
        if self.hold_streams and not force:
            self.held_streams.append((direction, conn, data))
            return
        end = self.ends[conn]
        if not end.connected:
            return
        if direction == "c2s":
            self.server.receive_stream(conn, data, self.now)
        else:
            end.core.receive_stream(data, self.now)

    def release_stream(self) -> str:
        """Deliver the oldest held stream chunk; return its direction."""
        direction, conn, data = self.held_streams.pop(0)
        self._stream(direction, conn, data, force=True)
        self.pump()
        return direction

    def datagram_to_server(self, data: bytes, addr: Any, *, force: bool = False) -> None:
        if self.hold and not force:
            self.held.append(("c2s", data, addr))
            return
        packet = self.server.open_datagram(data, addr, self.now)
        if packet is not None:
            self.server_tun.append(packet)

    def datagram_to_client(self, data: bytes, addr: Any, *, force: bool = False) -> None:
        if self.hold and not force:
            self.held.append(("s2c", data, addr))
            return
        end = next((e for e in self.ends.values() if e.addr == addr), None)
        if end is None:
            self.replies_to.append((data, addr))
            return
        packet = end.core.open_datagram(data, self.now)
        if packet is not None:
            end.tun.append(packet)

    def deliver(self, item: tuple[str, bytes, Any]) -> None:
        direction, data, addr = item
        if direction == "c2s":
            self.datagram_to_server(data, addr, force=True)
        else:
            self.datagram_to_client(data, addr, force=True)
        self.pump()

    # -- traffic --------------------------------------------------------------------------
    def client_sends(self, end: ClientEnd, packet: bytes) -> bytes | None:
        datagram = end.core.seal_packet(packet, self.now)
        if datagram is not None:
            self.datagram_to_server(datagram, end.addr)
        self.pump()
        return datagram

    def server_sends(self, packet: bytes) -> bytes | None:
        sealed = self.server.seal_packet(packet, self.now)
        if sealed is not None:
            self.datagram_to_client(*sealed)
        self.pump()
        return sealed[0] if sealed else None

    def advance(self, seconds: float) -> None:
        """Move time forward, firing every timer that falls due on the way."""
        target = self.now + seconds
        while True:
            due = [d for d in self._deadlines() if d <= target]
            self.now = max(self.now, min(due)) if due else target
            for end in self.ends.values():
                end.core.handle_timer(self.now)
            self.server.handle_timer(self.now)
            self.pump()
            if not due:
                return

    def _deadlines(self) -> list[float]:
        found = [self.server.next_deadline()] + [e.core.next_deadline() for e in self.ends.values()]
        return [d for d in found if d is not None]
