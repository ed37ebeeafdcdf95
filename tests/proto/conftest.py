"""Fixtures of the protocol tests: one PKI per test session, a server, clients, a network."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from runtime.proto import ClientConfig, ClientCore, Limits, ServerConfig, ServerCore, client_context, load_crl, server_context
from tests.proto.certs import SERVER_NAME, Issued, Pki
from tests.proto.link import ClientEnd, Net, Pool


@pytest.fixture(scope="session")
def pki() -> Pki:
    return Pki()


@pytest.fixture(scope="session")
def server_cert(pki: Pki) -> Issued:
    return pki.server()


@pytest.fixture(scope="session")
def alice(pki: Pki) -> Issued:
    return pki.client("alice")


@pytest.fixture(scope="session")
def bob(pki: Pki) -> Issued:
    return pki.client("bob")


def make_server(pki: Pki, cert: Issued, config: ServerConfig | None = None, crl_pem: bytes | None = None,
                policy: Pool | None = None) -> ServerCore:
    crl = load_crl(crl_pem, pki.ca_pem) if crl_pem else None
    return ServerCore(config or ServerConfig(), server_context(pki.creds(cert)), policy or Pool(), crl)


def make_client(pki: Pki, cert: Issued, pin: str, **kw: Any) -> ClientCore:
    kw.setdefault("server_name", SERVER_NAME)
    return ClientCore(ClientConfig(server_pin=pin, **kw), client_context(pki.creds(cert)))


@pytest.fixture
def net(pki: Pki, server_cert: Issued) -> Net:
    return Net(make_server(pki, server_cert))


@pytest.fixture
def connect(pki: Pki, server_cert: Issued, alice: Issued) -> Callable[..., ClientEnd]:
    """connect(net, cert=alice, addr=..., **client config) -> ClientEnd, handshake done."""

    def run(net: Net, cert: Issued = alice, addr: tuple[str, int] = ("198.51.100.7", 40000), **kw: Any) -> ClientEnd:
        return net.connect(make_client(pki, cert, server_cert.pin, **kw), addr)

    return run


TINY = Limits(rekey_seconds=60, rekey_packets=50, reject_packets=80, old_key_grace=5)
