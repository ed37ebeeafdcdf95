"""One client's session on the server: handshake, welcome, rekey, roaming.

Rule 1: the session asks its host (the ServerCore) for everything shared: the CRL, the
        address policy, a session id, routing of inner packets; it never sees other sessions.
Rule 2: the endpoint (UDP address) is only ever set from an authenticated, fresh datagram;
        until then the server cannot send datagrams to the client.
Rule 3: on rekey the server installs the new epoch but keeps sealing with the old one until
        the client proves it holds the new keys (a datagram under them, or rekey_confirm).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from cryptography import x509

from runtime.proto import messages
from runtime.proto.config import TunnelAssignment
from runtime.proto.control import ControlChannel
from runtime.proto.events import Address, HandshakeCompleted, KeysRotated, PeerRoamed, SendDatagram, WriteTun
from runtime.proto.faults import ProtocolViolation, Refused
from runtime.proto.identity import PeerIdentity, client_refusal, identity_of
from runtime.proto.keys import Ephemeral
from runtime.proto.peer import ESTABLISHED, WAITING, Peer
from runtime.proto.stats import SessionStats
from runtime.proto.wire import DG_DATA, F_HELLO, F_REKEY, F_REKEY_CONFIRM

if TYPE_CHECKING:
    from runtime.proto.server import ServerCore


class ServerSession(Peer):
    """The server's end of one client's session."""

    def __init__(self, conn: int, host: ServerCore, now: float) -> None:
        channel = ControlChannel(host.context, self._check_client, server_side=True)
        super().__init__(channel, conn, host.out, host.drops)
        self.host = host
        self.takes_partial = host.takes_partial
        self.handshake_until = now + host.config.handshake_timeout
        self.identity: PeerIdentity | None = None
        self.assignment: TunnelAssignment | None = None
        self.addresses: tuple[bytes, ...] = ()
        self.endpoint: Address | None = None
        self._asked_epoch = -1
        self.handlers = {
            (WAITING, F_HELLO): self._on_hello,
            (ESTABLISHED, F_REKEY): self._on_rekey,
            (ESTABLISHED, F_REKEY_CONFIRM): self._on_rekey_confirm,
        }

    def _check_client(self, cert: x509.Certificate) -> str | None:
        return client_refusal(cert, self.host.crl)

    def on_verified(self, now: float) -> None:
        self.identity = identity_of(self.channel.peer_cert)  # type: ignore[arg-type]
        self.name = self.identity.name if self.identity else ""

    # -- handshake ------------------------------------------------------------------------
    def _on_hello(self, hello: messages.Hello, now: float) -> None:
        config = self.host.config
        cipher = self._admit(hello, now)
        ephemeral = Ephemeral()
        client_public = messages.decode_key(hello.public_key) or b""
        c2s, s2c = self.derive(ephemeral.exchange(client_public), 0, client_public, ephemeral.public)
        self.establish(self.session_id, cipher, config.limits, config.keepalive, config.server_dead_after, now)
        self.data.install(0, s2c, c2s, now, active=True)  # type: ignore[union-attr]
        self.keyed_at = now
        self.channel.send(self._welcome(cipher, ephemeral.public))
        self.host.register(self)
        self.out.append(HandshakeCompleted(self.session_id, self.name, self.assignment, self.transport,  # type: ignore[arg-type]
                                           config.mtu, config.data_port, self.conn))

    def _admit(self, hello: messages.Hello, now: float) -> str:
        """The cipher chosen; takes a session id and an assignment, or raises Refused."""
        cipher = next((c for c in self.host.config.ciphers if c in hello.ciphers), None)
        if cipher is None:
            raise Refused("no-common-cipher")
        admitted = self.host.admit(self, now)
        if admitted is None:
            raise Refused("no-address")
        self.session_id, self.assignment = admitted
        self.addresses = self.assignment.packed_addresses()
        self.transport = hello.transport
        return cipher

    def _welcome(self, cipher: str, public: bytes) -> messages.Welcome:
        config, limits = self.host.config, self.host.config.limits
        return messages.Welcome(
            session_id=self.session_id, public_key=messages.encode_key(public), cipher=cipher,
            **messages.Welcome.assignment_fields(self.assignment),  # type: ignore[arg-type]
            mtu=config.mtu, keepalive=config.keepalive, dead_peer=config.dead_peer,
            data_port=config.data_port, rekey_seconds=max(1, math.ceil(limits.rekey_seconds)),
            rekey_packets=limits.rekey_packets,
        )

    # -- rekey ----------------------------------------------------------------------------
    def _on_rekey(self, rekey: messages.Rekey, now: float) -> None:
        data = self.data
        if data.pending is not None or rekey.epoch != data.epoch + 1:  # type: ignore[union-attr]
            raise ProtocolViolation("bad-rekey-epoch")
        client_public = messages.decode_key(rekey.public_key) or b""
        ephemeral = Ephemeral()
        c2s, s2c = self.derive(ephemeral.exchange(client_public), rekey.epoch, client_public, ephemeral.public)
        data.install(rekey.epoch, s2c, c2s, now, active=False)  # type: ignore[union-attr]
        self.keyed_at = now
        self.channel.send(messages.RekeyAck(rekey.epoch, messages.encode_key(ephemeral.public)))

    def _on_rekey_confirm(self, confirm: messages.RekeyConfirm, now: float) -> None:
        data = self.data
        pending = data.pending  # type: ignore[union-attr]
        if pending is not None and pending.number == confirm.epoch:
            data.activate(now)  # type: ignore[union-attr]
        elif confirm.epoch != data.epoch:  # type: ignore[union-attr]
            raise ProtocolViolation("bad-rekey-epoch")
        self.out.append(KeysRotated(self.session_id, confirm.epoch))

    def on_volume_limit(self, now: float) -> None:
        """Ask the client for a rekey, once per epoch."""
        if self._asked_epoch != self.data.epoch:  # type: ignore[union-attr]
            self._asked_epoch = self.data.epoch  # type: ignore[union-attr]
            self.channel.send(messages.RekeyRequest("volume"))

    # -- data path ------------------------------------------------------------------------
    def open_from(self, datagrams: list[bytes], start: int, addr: Address,
                  now: float) -> tuple[list[tuple[bytes, int]], int]:
        """(inner packets with FL_INNER flags, where it stopped) for this session's datagrams
        from `start` on (Peer.open_run), following the client to `addr` if one of them is
        authentic."""
        opened, stop, authentic = self.open_run(datagrams, start, now)
        if authentic and addr != self.endpoint:
            self.endpoint = addr
            self.changed()
            self.out.append(PeerRoamed(self.session_id, addr))
            self.keepalive(now)  # the client learns at once that this path works
        return opened, stop

    def on_stream_packet(self, packet: bytes, now: float) -> None:
        inner = self.host.deliver(self, packet, now, 0)
        if inner is not None:
            self.out.append(WriteTun(inner))

    def send_datagram(self, datagram: bytes) -> None:
        self.out.append(SendDatagram(datagram, self.endpoint))

    def can_send(self) -> bool:
        return self.transport == "tcp" or self.endpoint is not None

    def on_closed(self, now: float) -> None:
        self.host.session_closed(self)

    def stats(self, now: float) -> SessionStats:
        a = self.assignment
        addresses = tuple(str(x) for x in (a.address4, a.address6) if x is not None) if a else ()
        return self.snapshot(now, self.endpoint, addresses)
