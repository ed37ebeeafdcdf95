"""Every certificate failure is refused, with its own reason, on the side that must refuse it."""

from __future__ import annotations

import pytest

from runtime.errors import ConfigError
from runtime.proto import (
    ClientConfig,
    ClientCore,
    Credentials,
    HandshakeCompleted,
    HandshakeFailed,
    client_context,
    load_crl,
)
from runtime.proto.identity import cipher_refusal
from tests.proto.certs import CLIENT_AUTH, SERVER_AUTH, SERVER_NAME, Pki
from tests.proto.conftest import make_client, make_server
from tests.proto.link import Net


def handshake(pki, server_cert, client_cert, *, pin=None, crl_pem=None, **kw):
    """Run a handshake; return (client reasons, server reasons, client completed?)."""
    net = Net(make_server(pki, server_cert, crl_pem=crl_pem))
    client = make_client(pki, client_cert, pin or server_cert.pin, **kw)
    end = net.connect(client)
    server_reasons = [e.reason for e in net.server_events if isinstance(e, HandshakeFailed)]
    client_reasons = [e.reason for e in end.of(HandshakeFailed)]
    return client_reasons, server_reasons, bool(end.of(HandshakeCompleted))


def test_good_pair_completes(pki, server_cert, alice):
    assert handshake(pki, server_cert, alice) == ([], [], True)


def test_ed25519_certificates_work():
    pki = Pki(kind="ed25519")
    assert handshake(pki, pki.server(kind="ed25519"), pki.client(kind="ed25519")) == ([], [], True)


def test_client_from_a_foreign_ca_is_refused(pki, server_cert):
    other = Pki("Someone Else CA")
    mallory = other.client("mallory")
    creds = Credentials(pki.ca_pem, mallory.cert_pem, other.creds(mallory).key_pem)  # trusts our CA
    net = Net(make_server(pki, server_cert))
    end = net.connect(ClientCore(ClientConfig(SERVER_NAME, server_cert.pin), client_context(creds)))
    assert [e.reason for e in net.server_events if isinstance(e, HandshakeFailed)] == ["foreign-ca"]
    assert [e.reason for e in end.of(HandshakeFailed)] == ["peer-refused:tlsv1-alert-unknown-ca"]
    assert not end.of(HandshakeCompleted)


def test_server_from_a_foreign_ca_is_refused(pki, alice):
    other = Pki("Someone Else CA")
    rogue = other.server()
    net = Net(make_server(other, rogue))
    end = net.connect(make_client(pki, alice, rogue.pin))
    assert [e.reason for e in end.of(HandshakeFailed)] == ["foreign-ca"]


@pytest.mark.parametrize("valid, reason", [((-30, -1), "expired"), ((1, 30), "not-yet-valid")])
def test_client_outside_its_validity_is_refused(pki, server_cert, valid, reason):
    assert handshake(pki, server_cert, pki.client("carol", valid=valid))[1] == [reason]


@pytest.mark.parametrize("valid, reason", [((-30, -1), "expired"), ((1, 30), "not-yet-valid")])
def test_server_outside_its_validity_is_refused(pki, alice, valid, reason):
    server = pki.server(valid=valid)
    assert handshake(pki, server, alice)[0] == [reason]


def test_server_certificate_used_as_client_is_refused(pki, server_cert):
    assert handshake(pki, server_cert, server_cert)[1] == ["wrong-eku"]


def test_client_certificate_without_eku_is_refused(pki, server_cert):
    bare = pki.issue("dave", eku=None)  # OpenSSL accepts any purpose without EKU; we do not
    assert handshake(pki, server_cert, bare)[1] == ["wrong-eku"]


def test_client_certificate_used_as_server_is_refused(pki, alice):
    as_server = pki.issue(SERVER_NAME, eku=(CLIENT_AUTH,), san=SERVER_NAME)
    assert handshake(pki, as_server, alice)[0] == ["wrong-eku"]


def test_server_without_server_auth_eku_is_refused(pki, alice):
    bare = pki.issue(SERVER_NAME, eku=None, san=SERVER_NAME)
    assert handshake(pki, bare, alice)[0] == ["wrong-eku"]


def test_wrong_server_name_is_refused(pki, alice):
    server = pki.issue("other.example.test", eku=(SERVER_AUTH,), san="other.example.test")
    assert handshake(pki, server, alice)[0] == ["wrong-name"]


def test_wrong_pin_is_refused(pki, server_cert, alice):
    client_reasons, server_reasons, up = handshake(pki, server_cert, alice, pin="0" * 64)
    assert client_reasons == ["wrong-pin"] and not up
    assert server_reasons == ["wrong-pin"]  # the client said why in its bye


def test_revoked_client_is_refused_and_told(pki, server_cert):
    carol = pki.client("carol")
    crl = pki.crl(carol.serial)
    client_reasons, server_reasons, up = handshake(pki, server_cert, carol, crl_pem=crl)
    assert server_reasons == ["revoked"] and client_reasons == ["revoked"] and not up


def test_unrevoked_client_passes_a_crl(pki, server_cert, alice):
    crl = pki.crl(12345)
    assert handshake(pki, server_cert, alice, crl_pem=crl) == ([], [], True)


def test_crl_not_signed_by_our_ca_is_rejected_at_load(pki):
    other = Pki("Someone Else CA")
    with pytest.raises(ConfigError, match="not signed by our CA"):
        load_crl(pki.crl(1, signer=other.key), pki.ca_pem)
    with pytest.raises(ConfigError, match="cannot parse"):
        load_crl(b"garbage", pki.ca_pem)


def test_only_strong_tls13_suites_pass():
    assert cipher_refusal("TLS_AES_256_GCM_SHA384") is None
    assert cipher_refusal("TLS_CHACHA20_POLY1305_SHA256") is None
    assert cipher_refusal("TLS_AES_128_GCM_SHA256") == "weak-cipher"
