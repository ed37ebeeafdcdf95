"""The control channel: framed messages inside one in-memory TLS connection.

Rule 1: right after the TLS handshake, before any frame is read, the peer certificate and
        the negotiated suite are checked; a refusal raises Refused with its reason.
Rule 2: frames are cut by FrameReader; control frames are decoded by `messages.decode`;
        DATA and KEEPALIVE frames pass through raw. Any violation raises ProtocolViolation.
Rule 3: the owner drains `take_output()` after every call and sends it on the stream.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

from cryptography import x509

from runtime.proto import messages, wire
from runtime.proto.faults import Refused
from runtime.proto.identity import cipher_refusal
from runtime.proto.tls import TlsChannel

PeerCheck = Callable[[x509.Certificate], "str | None"]
Frame = tuple[int, bytes]


class ControlChannel:
    """TLS + framing + peer checks for one connection (client or server side)."""

    def __init__(
        self, context: ssl.SSLContext, check: PeerCheck, *, server_side: bool, server_hostname: str | None = None
    ) -> None:
        self._tls = TlsChannel(context, server_side=server_side, server_hostname=server_hostname)
        self._check = check
        self._frames = wire.FrameReader()
        self.peer_cert: x509.Certificate | None = None
        self.spoke = False  # any byte left us yet (a stranger's junk gets no TLS alert back)

    @property
    def established(self) -> bool:
        """TLS is up and the peer passed our checks."""
        return self.peer_cert is not None

    @property
    def tls_up(self) -> bool:
        """TLS is up (the peer may still be refused): a bye can reach it."""
        return self._tls.established

    @property
    def ended(self) -> str | None:
        return self._tls.ended

    def start(self) -> None:
        self._tls.start()

    def receive(self, data: bytes) -> list[Frame]:
        """The frames completed by `data`; raises Refused or ProtocolViolation."""
        plain = self._tls.feed(data)
        if self._tls.established and self.peer_cert is None:
            self._verify_peer()
        return self._frames.feed(plain) if plain else []

    def _verify_peer(self) -> None:
        der = self._tls.peer_der()
        if der is None:
            raise Refused("no-certificate")
        cert = x509.load_der_x509_certificate(der)
        reason = cipher_refusal(self._tls.suite()) or self._check(cert)
        if reason is not None:
            raise Refused(reason)
        self.peer_cert = cert

    def send(self, message: messages.Message) -> None:
        self._tls.write(messages.encode(message))

    def send_frame(self, ftype: int, body: bytes) -> None:
        self._tls.write(wire.encode_frame(ftype, body))

    def close(self) -> None:
        self._tls.close()

    def take_output(self) -> bytes:
        data = self._tls.take_output()
        self.spoke = self.spoke or bool(data)
        return data

    def discard_output(self) -> None:
        """Drop what TLS wants to send (an alert to someone we never answered)."""
        self._tls.take_output()
