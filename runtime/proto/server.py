"""The server core: many client sessions, without I/O.

Rule 1: the loop reports connections (`connection_made`, `receive_stream`,
        `connection_lost`), datagrams (`open_datagram`) and TUN packets (`seal_packet`), calls
        `handle_timer(now)` at `next_deadline()`, and performs `take_outputs()` in order.
Rule 2: silence to strangers: a datagram that is short, names no live session, fails
        authentication or replays is counted in `drops` and dropped; it produces no output
        and no state.
Rule 3: a client's inner packets must come from its own tunnel address ("spoofed" drop);
        packets to another client's address are dropped unless client_to_client is on, in
        which case they are sealed straight to that client.
Rule 4: one live session per client name: a new handshake replaces the old session.
"""

from __future__ import annotations

import secrets
import ssl
from collections import Counter
from collections.abc import Callable

from cryptography import x509

from runtime.proto.config import AddressPolicy, ServerConfig, TunnelAssignment
from runtime.proto.events import Address, Output, SendDatagram
from runtime.proto.packets import destination
from runtime.proto.peer import ESTABLISHED, Peer
from runtime.proto.session import ServerSession
from runtime.proto.stats import SessionStats
from runtime.proto.timers import earliest
from runtime.proto.wire import FL_CSUM_PARTIAL, session_of, stray_reason


class ServerCore:
    """All sessions of one server; see the module rules."""

    def __init__(self, config: ServerConfig, context: ssl.SSLContext, policy: AddressPolicy,
                 crl: x509.CertificateRevocationList | None = None) -> None:
        self.config = config
        self.context = context
        self.policy = policy
        self.crl = crl
        self.drops: Counter[str] = Counter()
        self.out: list[Output] = []
        self._conns: dict[int, ServerSession] = {}
        self._by_id: dict[int, ServerSession] = {}
        self._by_addr: dict[bytes, ServerSession] = {}
        self.takes_partial = False  # the TUN takes partial checksums (vnet header): set before sessions
        self.on_change: Callable[[Peer], None] | None = None  # given to each session (Peer.changed)
        self.last_flags = 0  # FL_INNER bits of the packet open_datagram last returned

    # -- control connections --------------------------------------------------------------
    def connection_made(self, conn: int, now: float) -> None:
        session = self._conns[conn] = ServerSession(conn, self, now)
        session.on_change = self.on_change

    def session(self, session_id: int) -> ServerSession | None:
        """The established session of that id, if any."""
        return self._by_id.get(session_id)

    def receive_stream(self, conn: int, data: bytes, now: float) -> None:
        session = self._conns.get(conn)
        if session is not None:
            session.receive_stream(data, now)

    def connection_lost(self, conn: int, now: float) -> None:
        session = self._conns.get(conn)
        if session is not None:
            session.close("connection-lost", now, tell_peer=False)

    # -- data path ------------------------------------------------------------------------
    def open_datagram(self, data: bytes, addr: Address, now: float) -> bytes | None:
        """The packet to write to the TUN, or None (keepalive, forwarded, or dropped); its
        FL_INNER bits are in `last_flags`."""
        opened = self.open_datagrams([data], addr, now)
        if not opened:
            return None
        self.last_flags = opened[0][1]
        return opened[0][0]

    def open_datagrams(self, datagrams: list[bytes], addr: Address, now: float) -> list[tuple[bytes, int]]:
        """open_datagram for the datagrams of one read from `addr` (a UDP_GRO batch), in
        order, as (packet, FL_INNER flags) pairs; each run of one session is opened at once."""
        out: list[tuple[bytes, int]] = []
        by_id, i, end = self._by_id, 0, len(datagrams)
        while i < end:
            data = datagrams[i]
            session = by_id.get(session_of(data))
            if session is None:
                self.drops[stray_reason(data)] += 1
                i += 1
                continue
            opened, i = session.open_from(datagrams, i, addr, now)
            if opened:
                out += self.deliver_many(session, opened, now)
        return out

    def seal_packet(self, packet: bytes, now: float, flags: int = 0) -> tuple[bytes, Address] | None:
        """(datagram, client endpoint) for a packet read from the TUN, routed by its
        destination; None when dropped or when it left in a SendStream (TCP transport).
        `flags`: the packet's FL_INNER bits (runtime/segment.py)."""
        group = self.seal_group([(packet, flags)], now)
        return (group[1][0], group[0]) if group else None

    def seal_group(self, segments: list[tuple[bytes, int]], now: float) -> tuple[Address, list[bytes]] | None:
        """(client endpoint, datagrams) for the (packet, flags) segments of one TUN read, or
        None when dropped: they share one IP header, so they are routed once, by the first
        one's destination."""
        session = self._by_addr.get(destination(segments[0][0]))  # type: ignore[arg-type]
        if session is None:
            self.drops["no-route"] += len(segments)
            return None
        return self._send_to(session, segments, now)

    def _send_to(self, session: ServerSession, segments: list[tuple[bytes, int]],
                 now: float) -> tuple[Address, list[bytes]] | None:
        if session.transport == "tcp":
            for packet, flags in segments:
                session.send_stream_packet(packet, now, flags)
            return None
        endpoint = session.endpoint
        if endpoint is None:
            self.drops["no-endpoint"] += len(segments)
            return None
        sealed = session.seal_many(segments, now)
        return (endpoint, sealed) if sealed else None

    def deliver(self, session: ServerSession, packet: bytes, now: float, flags: int) -> bytes | None:
        """Where a client's inner packet goes: returned for the TUN, forwarded, or dropped."""
        kept = self.deliver_many(session, [(packet, flags)], now)
        return kept[0][0] if kept else None

    def deliver_many(self, session: ServerSession, packets: list[tuple[bytes, int]],
                     now: float) -> list[tuple[bytes, int]]:
        """The (packet, flags) pairs of one client that go to the TUN (Rule 3); the others
        are forwarded to another client or dropped.  Consecutive packets of one address
        pair (a TCP run) are judged once."""
        out: list[tuple[bytes, int]] = []
        own, by_addr = session.addresses, self._by_addr
        last, verdict = b"", False
        for item in packets:
            packet = item[0]
            version = packet[0] >> 4 if packet else 0
            if version == 4 and len(packet) >= 20:
                pair, cut = packet[12:20], 4
            elif version == 6 and len(packet) >= 40:
                pair, cut = packet[8:40], 16
            else:
                self.drops["spoofed"] += 1
                continue
            if pair != last:
                last, verdict = pair, False
                if pair[:cut] not in own:
                    self.drops["spoofed"] += 1
                    continue
                target = by_addr.get(pair[cut:])
                if target is None:
                    verdict = True
                else:
                    last = b""  # forwarded or refused: judged per packet
                    if not self.config.client_to_client:
                        self.drops["client-to-client"] += 1
                        continue
                    group = self._send_to(target, [(packet, item[1] & FL_CSUM_PARTIAL)], now)
                    if group is not None:
                        self.out += [SendDatagram(datagram, group[0]) for datagram in group[1]]
                    continue
            elif not verdict:
                self.drops["spoofed"] += 1
                continue
            out.append(item)
        return out

    # -- timers and outputs ---------------------------------------------------------------
    def handle_timer(self, now: float) -> float | None:
        """Fire the timers of the sessions whose deadline has come; the next deadline (what
        next_deadline() says now), found in the same pass over the sessions."""
        soonest = None
        for session in list(self._conns.values()):
            deadline = session.deadline()
            if deadline is not None and deadline <= now:
                session.on_timer(now)
                deadline = session.deadline()
            if deadline is not None and (soonest is None or deadline < soonest):
                soonest = deadline
        return soonest

    def next_deadline(self) -> float | None:
        return earliest(*(session.deadline() for session in self._conns.values()))

    def take_outputs(self) -> list[Output]:
        out, self.out[:] = list(self.out), []
        return out

    # -- operator -------------------------------------------------------------------------
    def revoke(self, now: float, *, serial: int | None = None, name: str | None = None) -> int:
        """End every live session of the certificate `serial` or the client `name`."""
        return self._end_where(now, lambda s: s.identity is not None and
                               (s.identity.serial == serial or s.identity.name == name))

    def update_crl(self, crl: x509.CertificateRevocationList, now: float) -> int:
        """Use `crl` from the next handshake on, and end live sessions it revokes."""
        self.crl = crl
        return self._end_where(now, lambda s: s.identity is not None and
                               crl.get_revoked_certificate_by_serial_number(s.identity.serial) is not None)

    def _end_where(self, now: float, match: object) -> int:
        victims = [s for s in self._conns.values() if match(s)]  # type: ignore[operator]
        for session in victims:
            session.close("revoked", now)
        return len(victims)

    def stats(self, now: float) -> list[SessionStats]:
        return [s.stats(now) for s in self._conns.values() if s.state == ESTABLISHED]

    # -- host of the sessions -------------------------------------------------------------
    def admit(self, session: ServerSession, now: float) -> tuple[int, TunnelAssignment] | None:
        """(session id, assignment) for a new session, replacing an older one of its name."""
        for old in [s for s in self._by_id.values() if s.name == session.name]:
            old.close("replaced", now)
        assignment = self.policy.assign(session.name)
        if assignment is None:
            return None
        session_id = 0
        while session_id == 0 or session_id in self._by_id:
            session_id = secrets.randbits(32)
        return session_id, assignment

    def register(self, session: ServerSession) -> None:
        self._by_id[session.session_id] = session
        for packed in session.addresses:
            self._by_addr[packed] = session

    def session_closed(self, session: ServerSession) -> None:
        self._conns.pop(session.conn, None)
        if self._by_id.get(session.session_id) is session:
            del self._by_id[session.session_id]
        for packed in session.addresses:
            if self._by_addr.get(packed) is session:
                del self._by_addr[packed]
        if session.assignment is not None:
            self.policy.release(session.name)

