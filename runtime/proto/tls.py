"""TLS 1.3 in memory: building the SSLContexts and driving an SSLObject over MemoryBIOs.

Rule 1: TLS 1.3 only (minimum and maximum), mutual authentication against our CA only (no
        system trust store), no session tickets and no resumption: every connection runs a
        full handshake, so the certificate and CRL checks run every time.
Rule 2: building a context is the edge (it reads files, raises ConfigError); a TlsChannel
        is pure: bytes in, bytes out, and it never touches a socket or a clock.
Rule 3: private keys reach OpenSSL through an anonymous memory file, never through disk.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import ConfigError
from runtime.proto.faults import Refused
from runtime.proto.identity import handshake_reason

_READ_SIZE = 65536 + 16


@dataclass(frozen=True)
class Credentials:
    """PEM bytes of our CA certificate, our own certificate and our private key."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    @classmethod
    def from_files(cls, ca: Path, cert: Path, key: Path) -> Credentials:
        return cls(_read(ca), _read(cert), _read(key))


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror})", "check the path") from None


def server_context(creds: Credentials) -> ssl.SSLContext:
    """The server's context: requires a client certificate from our CA."""
    ctx = _base(ssl.PROTOCOL_TLS_SERVER, creds)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.num_tickets = 0
    return ctx


def client_context(creds: Credentials) -> ssl.SSLContext:
    """The client's context: verifies the server's chain and name (SAN)."""
    ctx = _base(ssl.PROTOCOL_TLS_CLIENT, creds)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _base(protocol: int, creds: Credentials) -> ssl.SSLContext:
    ctx = ssl.SSLContext(protocol)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.options |= ssl.OP_NO_TICKET
    try:
        ctx.load_verify_locations(cadata=creds.ca_pem.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError):
        raise ConfigError("CA certificate: not a PEM certificate", "copy the CA from the bundle") from None
    _load_chain(ctx, creds.cert_pem, creds.key_pem)
    return ctx


def _load_chain(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    with _memory_file(cert_pem.rstrip() + b"\n" + key_pem) as path:
        try:
            ctx.load_cert_chain(path)
        except ssl.SSLError:
            raise ConfigError(
                "certificate and key: unreadable or not a matching pair", "reissue the bundle"
            ) from None


class _memory_file:
    """A path to `data` that lives in memory (memfd) or, failing that, a private temp dir."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._fd = -1
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> str:
        if hasattr(os, "memfd_create"):
            self._fd = os.memfd_create("vpn-credentials", os.MFD_CLOEXEC)
            os.write(self._fd, self._data)
            return f"/proc/self/fd/{self._fd}"
        self._dir = tempfile.TemporaryDirectory()
        path = Path(self._dir.name) / "credentials.pem"
        path.touch(mode=0o600)
        path.write_bytes(self._data)
        return str(path)

    def __exit__(self, *_exc: object) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        if self._dir is not None:
            self._dir.cleanup()


class TlsChannel:
    """One TLS connection driven in memory: `feed` peer bytes, `take_output` bytes to send."""

    def __init__(self, context: ssl.SSLContext, *, server_side: bool, server_hostname: str | None = None) -> None:
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = context.wrap_bio(self._in, self._out, server_side=server_side, server_hostname=server_hostname)
        self.established = False
        self.ended: str | None = None  # why the peer's side of TLS ended, once it has

    def start(self) -> None:
        """Client side: produce the ClientHello."""
        self._handshake()

    def feed(self, data: bytes) -> bytes:
        """Take peer bytes; return application bytes. Raises Refused if the handshake fails."""
        self._in.write(data)
        if not self.established and not self._handshake():
            return b""
        return self._read_all()

    def _handshake(self) -> bool:
        try:
            self._obj.do_handshake()
        except ssl.SSLWantReadError:
            return False
        except ssl.SSLError as exc:
            raise Refused(handshake_reason(exc)) from None
        self.established = True
        return True

    def _read_all(self) -> bytes:
        chunks: list[bytes] = []
        while self.ended is None:
            try:
                chunk = self._obj.read(_READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.ended = "peer-closed"
            except ssl.SSLError as exc:
                self.ended = handshake_reason(exc)
            else:
                chunks.append(chunk)
                if not chunk:
                    self.ended = "peer-closed"
        return b"".join(chunks)

    def write(self, data: bytes) -> None:
        try:
            self._obj.write(data)
        except ssl.SSLError as exc:
            self.ended = self.ended or handshake_reason(exc)

    def take_output(self) -> bytes:
        return self._out.read()

    def close(self) -> None:
        """Queue a close_notify (best effort)."""
        try:
            self._obj.unwrap()
        except ssl.SSLError:
            pass

    def peer_der(self) -> bytes | None:
        return self._obj.getpeercert(binary_form=True)

    def suite(self) -> str | None:
        cipher = self._obj.cipher()
        return cipher[0] if cipher else None
