"""Issuing: server certs from CSRs, client certs with or without a CSR, names checked."""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from provision.errors import PkiError
from provision.pki import Ca, init_ca, issue_client, list_certs, sign_server_csr
from runtime.pin import pin_of_pem

from tests.pki.pki_helpers import make_csr


def load(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def private_keys_in(directory: Path) -> list[str]:
    return sorted(
        p.name for p in directory.rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes()
    )


def test_server_cert_from_csr_has_names_purpose_and_ca_signature(ca: Ca) -> None:
    csr, key = make_csr()
    cert = load(sign_server_csr(ca, csr, "vps1.example.net", ["203.0.113.7", "vpn.example.net"]))
    cert.verify_directly_issued_by(ca.cert)
    assert cert.public_key() == key.public_key()
    assert cert.subject.rfc4514_string() == "CN=vps1.example.net"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["vps1.example.net", "vpn.example.net"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("203.0.113.7")]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_server_csr_leaves_no_private_key_but_the_cas(ca: Ca) -> None:
    csr, _ = make_csr()
    sign_server_csr(ca, csr, "vps1")
    assert private_keys_in(ca.directory) == ["ca.key"]


def test_roster_records_the_server_pin_that_bundles_carry(ca: Ca) -> None:
    csr, _ = make_csr()
    pem = sign_server_csr(ca, csr, "vps1")
    [entry] = list_certs(ca)
    assert (entry.name, entry.kind, entry.serial) == ("vps1", "server", load(pem).serial_number)
    assert entry.pin == pin_of_pem(pem)


def test_renewing_a_server_keeps_its_pin(ca: Ca) -> None:
    csr, key = make_csr()
    first = sign_server_csr(ca, csr, "vps1")
    second = sign_server_csr(ca, make_csr(key)[0], "vps1")
    assert load(first).serial_number != load(second).serial_number
    assert pin_of_pem(first) == pin_of_pem(second)


def test_client_without_csr_gets_a_key_made_here_and_not_kept(ca: Ca) -> None:
    cert_pem, key_pem = issue_client(ca, "alice")
    assert key_pem is not None
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    cert = load(cert_pem)
    assert cert.public_key() == key.public_key()
    cert.verify_directly_issued_by(ca.cert)
    assert cert.subject.rfc4514_string() == "CN=alice"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert private_keys_in(ca.directory) == ["ca.key"]


def test_client_with_csr_gets_no_key_and_its_own_public_key(ca: Ca) -> None:
    csr, key = make_csr()
    cert_pem, key_pem = issue_client(ca, "bob", csr_pem=csr.decode())
    assert key_pem is None
    assert load(cert_pem).public_key() == key.public_key()
    assert load(cert_pem).subject.rfc4514_string() == "CN=bob"
    assert private_keys_in(ca.directory) == ["ca.key"]


def test_ed25519_ca_issues_ed25519_client_keys(pki_dir: Path) -> None:
    ca = init_ca(pki_dir, key_type="ed25519")
    cert_pem, key_pem = issue_client(ca, "alice")
    load(cert_pem).verify_directly_issued_by(ca.cert)
    assert key_pem is not None and "PRIVATE KEY" in key_pem


def test_second_live_certificate_for_a_client_is_refused(ca: Ca) -> None:
    issue_client(ca, "alice")
    with pytest.raises(PkiError, match="already has a live certificate") as err:
        issue_client(ca, "alice")
    assert "revoke" in err.value.hint
    assert len(list_certs(ca)) == 1


@pytest.mark.parametrize("name", ["", "Alice", "-alice", "al ice", "a/b", "x" * 64, "ali\nce"])
def test_bad_client_names_are_refused(ca: Ca, name: str) -> None:
    with pytest.raises(PkiError, match="client name"):
        issue_client(ca, name)


@pytest.mark.parametrize("name", ["a", "alice", "bob.laptop", "c_3-x", "0" * 63])
def test_good_client_names_are_accepted(ca: Ca, name: str) -> None:
    issue_client(ca, name)


def test_damaged_csr_is_a_pki_error(ca: Ca) -> None:
    csr, _ = make_csr()
    with pytest.raises(PkiError, match="does not parse"):
        sign_server_csr(ca, csr[:80], "vps1")
    with pytest.raises(PkiError, match="does not parse"):
        issue_client(ca, "carol", csr_pem="not a csr")


def test_bad_server_name_and_san_are_refused(ca: Ca) -> None:
    csr, _ = make_csr()
    with pytest.raises(PkiError, match="not a DNS name"):
        sign_server_csr(ca, csr, "vps 1")
    with pytest.raises(PkiError, match="neither an IP"):
        sign_server_csr(ca, csr, "vps1", ["not a name!"])


def test_certificates_never_outlive_the_ca(pki_dir: Path) -> None:
    ca = init_ca(pki_dir, days=30)
    cert = load(issue_client(ca, "alice", days=365)[0])
    assert cert.not_valid_after_utc <= ca.cert.not_valid_after_utc


def test_client_expiry_follows_days(ca: Ca) -> None:
    now = datetime(2031, 1, 1, tzinfo=timezone.utc)
    cert = load(issue_client(ca, "alice", days=10, now=now)[0])
    assert cert.not_valid_after_utc == now + timedelta(days=10)
