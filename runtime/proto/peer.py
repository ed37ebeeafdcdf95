"""One end of one session, shared by the client core and the server's sessions.

Rule 1: every entry point catches ProtocolViolation (and Refused) and closes the session with
        its reason; nothing raised inside the core escapes it.
Rule 2: a session closes once: a bye{reason} if TLS is up and the peer did not end it, a
        close_notify, then CloseConnection and one event (HandshakeFailed before the tunnel
        was up, SessionClosed after).
Rule 3: which control message is allowed in which state is the subclass's handler table;
        anything else is a violation ("unexpected-<message>").
Rule 4: with transport "udp" only authenticated datagrams count as life from the peer; with
        "tcp" the data rides in DATA frames and any frame counts.
Rule 5: a packet with a partial checksum (FL_CSUM_PARTIAL) is sealed as such only to a peer
        that said it takes them; otherwise (and on transport "tcp") its checksum is completed
        first.  One received partial while we do not take them (`takes_partial` False) is
        completed before it leaves the core.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from operator import itemgetter
from typing import Any

from runtime.proto import checksum, messages
from runtime.proto.config import Limits
from runtime.proto.control import ControlChannel
from runtime.proto.datachannel import DataChannel
from runtime.proto.events import Address, CloseConnection, HandshakeFailed, Output, PeerDead, SendStream, SessionClosed
from runtime.proto.faults import ProtocolViolation
from runtime.proto.keys import derive
from runtime.proto.timers import Liveness, earliest
from runtime.proto.stats import SessionStats, Traffic
from runtime.proto.wire import (DG_KEEPALIVE, F_BYE, F_DATA, F_KEEPALIVE, FL_CSUM_PARTIAL, HEADER_LEN, MAX_BODY, TAG_LEN,
                                 stray_reason)

HANDSHAKING = "handshaking"  # TLS running
WAITING = "waiting"  # TLS up and peer accepted; hello/welcome not yet done
ESTABLISHED = "established"
CLOSED = "closed"

Handler = Callable[[Any, float], None]
SEAL_OVERHEAD = HEADER_LEN + TAG_LEN  # a datagram's bytes beyond the packet it carries
_first = itemgetter(0)


class Peer:
    """State, control channel, data channel, timers and counters of one session."""

    def __init__(self, channel: ControlChannel, conn: int, out: list[Output], drops: Counter[str]) -> None:
        self.channel = channel
        self.conn = conn
        self.out = out
        self.drops = drops
        self.state = HANDSHAKING
        self.handshake_until = float("inf")
        self.session_id = 0
        self.name = ""
        self.transport = "udp"
        self.data: DataChannel | None = None
        self.live = Liveness(1.0, 1.0, 0.0)
        self.traffic = Traffic()
        self.keyed_at = 0.0
        self.rekey_after = 0
        self.handlers: dict[tuple[str, int], Handler] = {}
        self.takes_partial = False  # our TUN takes partial checksums (set before establish)
        self.on_change: Callable[[Peer], None] | None = None  # what a C Path copies changed

    def changed(self) -> None:
        """Tell the loop that what a C Path holds of this session changed (runtime/fastpath.py):
        state, epochs, endpoint."""
        if self.on_change is not None:
            self.on_change(self)

    def absorb(self, rx_bytes: int, rx_packets: int, tx_bytes: int, tx_packets: int,
               last_rx: float, last_tx: float) -> None:
        """Take the counters and times a C Path gathered (Path.drain)."""
        t = self.traffic
        t.rx_bytes += rx_bytes
        t.rx_packets += rx_packets
        t.tx_bytes += tx_bytes
        t.tx_packets += tx_packets
        live = self.live
        if last_rx > live.last_received:
            live.last_received = last_rx
        if last_tx > live.last_sent:
            live.last_sent = last_tx

    # -- control stream ------------------------------------------------------------------
    def receive_stream(self, data: bytes, now: float) -> None:
        if self.state == CLOSED:
            return
        try:
            self._receive(data, now)
        except ProtocolViolation as fault:
            self.close(fault.reason, now)
            return
        if self.channel.ended is not None:
            self.close(self.channel.ended, now, tell_peer=False)
        self.flush()

    def _receive(self, data: bytes, now: float) -> None:
        frames = self.channel.receive(data)
        if self.state == HANDSHAKING and self.channel.established:
            self.state = WAITING
            self.on_verified(now)
        for ftype, body in frames:
            if self.state == CLOSED:
                return
            self._on_frame(ftype, body, now)

    def _on_frame(self, ftype: int, body: bytes, now: float) -> None:
        if ftype in (F_DATA, F_KEEPALIVE):
            self._on_stream_data(ftype, body, now)
            return
        message = messages.decode(ftype, body)
        handler = self.handlers.get((self.state, ftype))
        if handler is None and ftype == F_BYE:
            handler = self._on_bye
        if handler is None:
            raise ProtocolViolation(f"unexpected-{type(message).__name__.lower()}")
        handler(message, now)

    def _on_stream_data(self, ftype: int, body: bytes, now: float) -> None:
        if self.state != ESTABLISHED or self.transport != "tcp":
            raise ProtocolViolation("unexpected-data-frame")
        self.live.last_received = now
        if ftype == F_DATA:
            self.traffic.received(len(body))
            self.on_stream_packet(body, now)

    def _on_bye(self, message: messages.Bye, now: float) -> None:
        self.close(message.reason or "bye", now, tell_peer=False)

    def flush(self) -> None:
        data = self.channel.take_output()
        if data:
            self.out.append(SendStream(data, self.conn))

    def close(self, reason: str, now: float, *, tell_peer: bool = True) -> None:
        """End the session (idempotent); see Rule 2."""
        if self.state == CLOSED:
            return
        was_up, self.state = self.state == ESTABLISHED, CLOSED
        if tell_peer and self.channel.tls_up and self.channel.ended is None:
            self.channel.send(messages.Bye(reason[:64]))
        self.channel.close()
        if not was_up and not self.channel.spoke:
            self.channel.discard_output()  # silence: junk on the control port draws no alert
        self.flush()
        self.out.append(CloseConnection(self.conn))
        if was_up:
            self.out.append(SessionClosed(self.session_id, self.name, reason, self.conn))
        else:
            self.out.append(HandshakeFailed(reason, self.conn))
        self.on_closed(now)
        self.changed()

    # -- keys -----------------------------------------------------------------------------
    def establish(self, session_id: int, cipher: str, limits: Limits, keepalive: float, dead_after: float,
                  now: float) -> None:
        self.session_id = session_id
        self.data = DataChannel(session_id, cipher, limits, self.drops, self.takes_partial)
        self.data.on_change = self.changed
        self.live = Liveness(keepalive, dead_after, now)
        self.rekey_after = limits.rekey_packets
        self.state = ESTABLISHED

    def derive(self, shared: bytes, epoch: int, client_public: bytes, server_public: bytes) -> tuple[bytes, bytes]:
        """(client-to-server, server-to-client) keys of `epoch` in this session."""
        return derive(shared, session_id=self.session_id, epoch=epoch,
                      client_public=client_public, server_public=server_public)

    # -- data path ------------------------------------------------------------------------
    def seal(self, packet: bytes, now: float, flags: int = 0) -> bytes | None:
        """The datagram for `packet` (UDP transport), or None if the key is used up."""
        sealed = self.seal_many([(packet, flags)], now)
        return sealed[0] if sealed else None

    def seal_many(self, packets: list[tuple[bytes, int]], now: float) -> list[bytes]:
        """The datagrams for (packet, FL_INNER flags) pairs, in order (UDP transport); it
        stops at the first the key cannot seal.  The hard limit holds per datagram (in
        DataChannel.seal_batch); the soft limit and the counters are looked at once per call."""
        data = self.data
        if not data.peer_takes_partial:  # type: ignore[union-attr]
            packets = self.complete_partials(packets)
        out = data.seal_batch(packets)  # type: ignore[union-attr]
        if len(out) < len(packets) or data.current.counter >= self.rekey_after:  # type: ignore[union-attr]
            self.on_volume_limit(now)
            self.flush()
        if out:
            self.live.last_sent = now
            self.traffic.sent(sum(map(len, out)) - SEAL_OVERHEAD * len(out), len(out))
        return out

    def complete_partials(self, packets: list[tuple[bytes, int]]) -> list[tuple[bytes, int]]:
        """`packets` with every partial checksum completed (Rule 5); those that cannot be are
        dropped (counted)."""
        out: list[tuple[bytes, int]] = []
        for packet, flags in packets:
            if flags & FL_CSUM_PARTIAL:
                done = self.completed(packet)
                if done is None:
                    continue
                packet, flags = done, 0
            out.append((packet, flags))
        return out

    def open_many(self, datagrams: list[bytes], now: float) -> tuple[list[tuple[bytes, int]], bool]:
        """(the DATA packets with their FL_INNER flags, whether any datagram authenticated)
        for datagrams of this session, in order; the others are counted in drops."""
        out: list[tuple[bytes, int]] = []
        authentic, i, end = False, 0, len(datagrams)
        while i < end:
            opened, i, live = self.open_run(datagrams, i, now)
            out += opened
            authentic = authentic or live
            if i < end:
                self.drops[stray_reason(datagrams[i])] += 1
                i += 1
        return out, authentic

    def open_run(self, datagrams: list[bytes], start: int, now: float) -> tuple[list[tuple[bytes, int]], int, bool]:
        """(DATA packets with their FL_INNER flags, where it stopped, whether any datagram
        authenticated) for the datagrams of this session from `start` on: it stops at one
        that is short or of another session (the caller counts it)."""
        out, stop, authentic = self.data.open_batch(datagrams, start, now)  # type: ignore[union-attr]
        if authentic:
            self.live.last_received = now
        if out:
            if not self.takes_partial:
                out = self.complete_partials(out)
            self.traffic.received(sum(map(len, map(_first, out))), len(out))
        return out, stop, authentic > 0

    def completed(self, packet: bytes) -> bytes | None:
        """`packet` with its partial checksum completed; None (counted) if it has no TCP/UDP
        layout a partial checksum can have."""
        done = checksum.complete(packet)
        if done is None:
            self.drops["bad-partial"] += 1
        return done

    def send_stream_packet(self, packet: bytes, now: float, flags: int = 0) -> None:
        """Send `packet` in a DATA frame (TCP transport); a packet over MAX_BODY is dropped."""
        if flags & FL_CSUM_PARTIAL:
            completed = self.completed(packet)
            if completed is None:
                return
            packet = completed
        if len(packet) > MAX_BODY:
            self.drops["too-big"] += 1
            return
        self.channel.send_frame(F_DATA, packet)
        self.live.last_sent = now
        self.traffic.sent(len(packet))
        self.flush()

    def keepalive(self, now: float) -> None:
        self.live.last_sent = now
        if self.transport == "tcp":
            self.channel.send_frame(F_KEEPALIVE, b"")
            return
        datagram = self.data.seal(DG_KEEPALIVE, b"")  # type: ignore[union-attr]
        if datagram is None:
            self.on_volume_limit(now)
        else:
            self.send_datagram(datagram)

    # -- timers ---------------------------------------------------------------------------
    def on_timer(self, now: float) -> None:
        if self.state in (HANDSHAKING, WAITING) and now >= self.handshake_until:
            self.close("handshake-timeout", now)
        if self.state != ESTABLISHED:
            return
        if self.live.dead(now):
            self.out.append(PeerDead(self.session_id, self.live.silent_for(now)))
            self.close("dead-peer", now)
            return
        if self.can_send() and self.live.keepalive_due(now):
            self.keepalive(now)
        self.data.expire(now)  # type: ignore[union-attr]
        self.on_tick(now)
        self.flush()

    def deadline(self) -> float | None:
        if self.state in (HANDSHAKING, WAITING):
            return self.handshake_until
        if self.state != ESTABLISHED:
            return None
        keepalive = self.live.keepalive_at() if self.can_send() else None
        return earliest(self.live.dead_at(), keepalive, self.data.deadline(), self.tick_deadline())  # type: ignore[union-attr]

    def snapshot(self, now: float, endpoint: Address | None = None, addresses: tuple[str, ...] = ()) -> SessionStats:
        data, t = self.data, self.traffic
        return SessionStats(self.session_id, self.name, addresses, endpoint, self.transport,
                            t.rx_bytes, t.rx_packets, t.tx_bytes, t.tx_packets, self.keyed_at,
                            data.epoch if data else -1, now - self.keyed_at)

    # -- for subclasses -------------------------------------------------------------------
    def on_verified(self, now: float) -> None:
        """TLS is up and the peer passed our checks."""

    def on_stream_packet(self, packet: bytes, now: float) -> None:
        """A DATA frame arrived (TCP transport)."""

    def on_volume_limit(self, now: float) -> None:
        """The sealing key reached its soft or hard packet limit."""

    def send_datagram(self, datagram: bytes) -> None:
        """Queue a datagram (a keepalive) to the peer."""

    def can_send(self) -> bool:
        return True

    def on_tick(self, now: float) -> None:
        """Timer work of the subclass."""

    def tick_deadline(self) -> float | None:
        return None

    def on_closed(self, now: float) -> None:
        """The session just closed."""
