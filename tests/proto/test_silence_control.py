"""Silence on the control port: junk that never makes a TLS handshake draws no byte back
(no alert), while a real client that is refused is still told why."""

from __future__ import annotations

import os

from runtime.proto.events import CloseConnection, HandshakeFailed, SendStream
from tests.proto.conftest import make_server


def test_junk_on_a_new_connection_gets_no_bytes_back(pki, server_cert):
    server = make_server(pki, server_cert)
    for i, junk in enumerate((b"GET / HTTP/1.1\r\n\r\n", os.urandom(512), b"\x16\x03\x01\x00\x05hello")):
        server.connection_made(i, 0.0)
        server.receive_stream(i, junk, 0.0)
        out = server.take_outputs()
        assert not [o for o in out if isinstance(o, SendStream)], out
        assert CloseConnection(i) in out and any(isinstance(o, HandshakeFailed) for o in out)
