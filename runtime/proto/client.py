"""The client core: one session to one server, without I/O.

Rule 1: the loop calls `connect(now)`, feeds stream bytes (`receive_stream`), datagrams
        (`open_datagram`) and TUN packets (`seal_packet`), calls `handle_timer(now)` at
        `next_deadline()`, and performs `take_outputs()` after each call, in order.
Rule 2: one core per connection attempt: after HandshakeFailed, SessionClosed or PeerDead
        the loop makes a new core (with backoff) to reconnect.
Rule 3: the client initiates every rekey: on time, on volume, or when the server asks. It
        seals with the new epoch as soon as the server's rekey_ack arrives, and confirms.
"""

from __future__ import annotations

import ssl
from collections import Counter
from dataclasses import replace

from cryptography import x509

from runtime.proto import messages
from runtime.proto.config import ClientConfig, Limits
from runtime.proto.control import ControlChannel
from runtime.proto.events import HandshakeCompleted, KeysRotated, Output, SendDatagram, WriteTun
from runtime.proto.faults import ProtocolViolation
from runtime.proto.identity import server_refusal
from runtime.proto.keys import Ephemeral
from runtime.proto.peer import ESTABLISHED, WAITING, Peer
from runtime.proto.stats import SessionStats
from runtime.proto.wire import DG_DATA, F_REKEY_ACK, F_REKEY_REQUEST, F_WELCOME


class ClientCore(Peer):
    """The client side of the protocol; see the module rules."""

    def __init__(self, config: ClientConfig, context: ssl.SSLContext) -> None:
        channel = ControlChannel(context, self._check_server, server_side=False,
                                 server_hostname=config.server_name)
        super().__init__(channel, 0, [], Counter())
        self.config = config
        self.name = config.server_name
        self.transport = config.transport
        self._ephemeral: Ephemeral | None = None
        self._rekey: Ephemeral | None = None
        self._rekey_epoch = 0
        self.last_flags = 0
        self.handlers = {
            (WAITING, F_WELCOME): self._on_welcome,
            (ESTABLISHED, F_REKEY_ACK): self._on_rekey_ack,
            (ESTABLISHED, F_REKEY_REQUEST): self._on_rekey_request,
        }

    def _check_server(self, cert: x509.Certificate) -> str | None:
        return server_refusal(cert, self.config.server_pin)

    # -- the loop's API -------------------------------------------------------------------
    def connect(self, now: float) -> None:
        """Start the TLS handshake (the ClientHello goes out in a SendStream)."""
        self.handshake_until = now + self.config.handshake_timeout
        self.channel.start()
        self.flush()

    def connection_lost(self, now: float) -> None:
        self.close("connection-lost", now, tell_peer=False)

    def seal_packet(self, packet: bytes, now: float, flags: int = 0) -> bytes | None:
        """The datagram carrying a TUN packet; None when not up, on TCP transport (the
        packet then leaves in a SendStream) or when the key is used up (a rekey starts).
        `flags`: the packet's FL_INNER bits (runtime/segment.py)."""
        sealed = self.seal_segments([(packet, flags)], now)
        return sealed[0] if sealed else None

    def seal_segments(self, segments: list[tuple[bytes, int]], now: float) -> list[bytes]:
        """seal_packet for the (packet, flags) segments of one TUN read, in order."""
        if self.state != ESTABLISHED:
            return []
        if self.transport == "tcp":
            for packet, flags in segments:
                self.send_stream_packet(packet, now, flags)
            return []
        return self.seal_many(segments, now)

    def open_datagram(self, data: bytes, now: float) -> bytes | None:
        """The packet to write to the TUN, or None (keepalive, or dropped and counted);
        its FL_INNER bits are in `last_flags`."""
        opened = self.open_datagrams([data], now)
        if not opened:
            return None
        self.last_flags = opened[0][1]
        return opened[0][0]

    def open_datagrams(self, datagrams: list[bytes], now: float) -> list[tuple[bytes, int]]:
        """open_datagram for the datagrams of one read, as (packet, FL_INNER flags) pairs."""
        if self.state != ESTABLISHED:
            self.drops["not-established"] += len(datagrams)
            return []
        return self.open_many(datagrams, now)[0]

    def handle_timer(self, now: float) -> None:
        self.on_timer(now)

    def next_deadline(self) -> float | None:
        return self.deadline()

    def take_outputs(self) -> list[Output]:
        out, self.out[:] = list(self.out), []
        return out

    def stats(self, now: float) -> SessionStats | None:
        if self.state != ESTABLISHED:
            return None
        return self.snapshot(now)

    # -- handshake ------------------------------------------------------------------------
    def on_verified(self, now: float) -> None:
        self._ephemeral = Ephemeral()
        key = messages.encode_key(self._ephemeral.public)
        self.channel.send(messages.Hello(messages.VERSION, key, self.config.ciphers, self.config.transport))

    def _on_welcome(self, welcome: messages.Welcome, now: float) -> None:
        server_public = messages.decode_key(welcome.public_key)
        if welcome.cipher not in self.config.ciphers or self._ephemeral is None or server_public is None:
            raise ProtocolViolation("bad-welcome:cipher")
        shared = self._ephemeral.exchange(server_public)
        self.session_id = welcome.session_id
        c2s, s2c = self.derive(shared, 0, self._ephemeral.public, server_public)
        self._ephemeral = None
        self.establish(welcome.session_id, welcome.cipher, self._limits(welcome),
                       welcome.keepalive, welcome.dead_peer, now)
        self.data.install(0, c2s, s2c, now, active=True)  # type: ignore[union-attr]
        self.keyed_at = now
        self.out.append(HandshakeCompleted(welcome.session_id, self.name, welcome.assignment(),
                                           self.transport, welcome.mtu, welcome.data_port))
        if self.transport == "udp":
            self.keepalive(now)  # tells the server our UDP endpoint

    def _limits(self, welcome: messages.Welcome) -> Limits:
        """Our limits, lowered to the server's rekey schedule (the lower value wins)."""
        own = self.config.limits
        return replace(own, rekey_seconds=min(own.rekey_seconds, welcome.rekey_seconds),
                       rekey_packets=min(own.rekey_packets, welcome.rekey_packets))

    # -- rekey ----------------------------------------------------------------------------
    def _start_rekey(self, now: float) -> None:
        if self._rekey is not None or self.transport == "tcp" or self.state != ESTABLISHED:
            return
        self._rekey = Ephemeral()
        self._rekey_epoch = self.data.epoch + 1  # type: ignore[union-attr]
        self.channel.send(messages.Rekey(self._rekey_epoch, messages.encode_key(self._rekey.public)))

    def _on_rekey_ack(self, ack: messages.RekeyAck, now: float) -> None:
        server_public = messages.decode_key(ack.public_key)
        if self._rekey is None or ack.epoch != self._rekey_epoch or server_public is None:
            raise ProtocolViolation("unexpected-rekeyack")
        c2s, s2c = self.derive(self._rekey.exchange(server_public), ack.epoch, self._rekey.public, server_public)
        self._rekey = None
        self.data.install(ack.epoch, c2s, s2c, now, active=True)  # type: ignore[union-attr]
        self.keyed_at = now
        self.channel.send(messages.RekeyConfirm(ack.epoch))
        self.out.append(KeysRotated(self.session_id, ack.epoch))

    def _on_rekey_request(self, _request: messages.RekeyRequest, now: float) -> None:
        self._start_rekey(now)

    def on_volume_limit(self, now: float) -> None:
        self._start_rekey(now)

    def on_tick(self, now: float) -> None:
        if self.data.rekey_due(now):  # type: ignore[union-attr]
            self._start_rekey(now)

    def tick_deadline(self) -> float | None:
        if self._rekey is not None or self.transport == "tcp":
            return None
        return self.data.current.installed_at + self.data.limits.rekey_seconds  # type: ignore[union-attr]

    # -- peer hooks -----------------------------------------------------------------------
    def send_datagram(self, datagram: bytes) -> None:
        self.out.append(SendDatagram(datagram))

    def on_stream_packet(self, packet: bytes, now: float) -> None:
        self.out.append(WriteTun(packet))

