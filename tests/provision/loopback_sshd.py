"""A real SSH server inside the test's process, on a loopback port: paramiko's Transport
with the host key the test gives it (a test may swap it, as a rebuilt host or a man in the
middle would), and `stdio_sshd`'s server (any public key logs in; exec runs `sh -c`)."""

from __future__ import annotations

import io
import socket
import threading
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from tests.provision.stdio_sshd import Server


def ed25519_pem() -> str:
    """A new Ed25519 private key in OpenSSH's format (paramiko cannot make one)."""
    return Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()).decode()


def host_key(pem: str | None = None, path: Path | None = None) -> paramiko.Ed25519Key:
    """A new Ed25519 host key (or the one in `pem`), also written to `path` when given."""
    pem = pem or ed25519_pem()
    if path is not None:
        path.write_text(pem)
    return paramiko.Ed25519Key(file_obj=io.StringIO(pem))


class LoopbackSshd:
    """Serves each connection to 127.0.0.1:`port` with the current `host_key`."""

    def __init__(self, key: paramiko.PKey) -> None:
        self.host_key = key
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._transports: list[paramiko.Transport] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return  # closed
            transport = paramiko.Transport(sock)
            transport.add_server_key(self.host_key)
            self._transports.append(transport)
            transport.start_server(event=threading.Event(), server=Server())  # negotiates in its thread

    def close(self) -> None:
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept()
        except OSError:
            pass
        self._listener.close()
        for transport in self._transports:
            transport.close()
