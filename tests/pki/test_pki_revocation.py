"""Revocation, the CRL and expiry: what list-clients shows and what deploy renews."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509

from provision.errors import PkiError
from provision.pki import (
    CRL_DAYS,
    Ca,
    crl,
    crl_next_update,
    crl_renewal_reason,
    expiring,
    issue_client,
    list_certs,
    load_roster,
    revoke,
    sign_server_csr,
)
from provision.pki.ca import utcnow

from tests.pki.pki_helpers import make_csr


def serial(pem: str) -> int:
    return x509.load_pem_x509_certificate(pem.encode()).serial_number


def parse_crl(pem: str) -> x509.CertificateRevocationList:
    return x509.load_pem_x509_crl(pem.encode())


def crl_number(found: x509.CertificateRevocationList) -> int:
    return found.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def test_revoked_serial_is_in_a_crl_that_verifies_under_the_ca(ca: Ca) -> None:
    alice = serial(issue_client(ca, "alice")[0])
    bob = serial(issue_client(ca, "bob")[0])
    found = parse_crl(revoke(ca, "alice"))
    assert found.is_signature_valid(ca.cert.public_key())
    assert found.get_revoked_certificate_by_serial_number(alice) is not None
    assert found.get_revoked_certificate_by_serial_number(bob) is None
    on_disk = x509.load_pem_x509_crl((ca.directory / "crl.pem").read_bytes())
    assert on_disk.get_revoked_certificate_by_serial_number(alice) is not None


def test_reissue_after_revoke_gets_a_new_serial_that_is_not_revoked(ca: Ca) -> None:
    old = serial(issue_client(ca, "alice")[0])
    revoke(ca, "alice")
    new = serial(issue_client(ca, "alice")[0])
    assert new != old
    found = parse_crl(crl(ca))
    assert found.get_revoked_certificate_by_serial_number(old) is not None
    assert found.get_revoked_certificate_by_serial_number(new) is None


def test_revoke_covers_every_live_certificate_of_the_name(ca: Ca) -> None:
    first = serial(sign_server_csr(ca, make_csr()[0], "vps1"))
    second = serial(sign_server_csr(ca, make_csr()[0], "vps1"))
    found = parse_crl(revoke(ca, "vps1", kind="server"))
    assert {r.serial_number for r in found} == {first, second}


def test_revoking_again_is_a_no_op_that_still_answers_the_crl(ca: Ca) -> None:
    alice = serial(issue_client(ca, "alice")[0])
    first = revoke(ca, "alice")
    again = revoke(ca, "alice")
    assert again == first
    assert parse_crl(again).get_revoked_certificate_by_serial_number(alice) is not None


def test_revoking_an_unknown_name_is_a_clear_error(ca: Ca) -> None:
    with pytest.raises(PkiError, match="no client certificate named 'mallory'"):
        revoke(ca, "mallory")


def test_crl_that_missed_a_revocation_is_repaired(ca: Ca) -> None:
    before = (ca.directory / "crl.pem").read_text()
    alice = serial(issue_client(ca, "alice")[0])
    revoke(ca, "alice")
    (ca.directory / "crl.pem").write_text(before)  # as if the run died before writing it
    assert crl_renewal_reason(ca, load_roster(ca.directory), utcnow()) is not None
    assert parse_crl(crl(ca)).get_revoked_certificate_by_serial_number(alice) is not None


def test_damaged_crl_is_remade(ca: Ca) -> None:
    (ca.directory / "crl.pem").write_text("-----BEGIN X509 CRL-----\ngarbage\n")
    assert parse_crl(crl(ca)).is_signature_valid(ca.cert.public_key())


def test_fresh_crl_is_kept_and_one_near_its_next_update_is_renewed(ca: Ca) -> None:
    now = utcnow()
    first = crl(ca, now)
    assert crl(ca, now + timedelta(days=1)) == first
    later = now + timedelta(days=CRL_DAYS - 10)
    renewed = parse_crl(crl(ca, later))
    assert crl_number(renewed) > crl_number(parse_crl(first))
    assert renewed.next_update_utc is not None and renewed.next_update_utc > later + timedelta(days=90)
    assert crl_next_update(ca) == renewed.next_update_utc


def test_expiring_lists_live_certs_close_to_expiry(ca: Ca) -> None:
    now = datetime.now(timezone.utc)
    issue_client(ca, "soon", days=10, now=now)
    issue_client(ca, "later", days=365, now=now)
    issue_client(ca, "gone", days=5, now=now)
    revoke(ca, "gone", now=now)
    roster = load_roster(ca.directory)
    assert [c.name for c in expiring(roster, now)] == ["soon"]
    assert [c.name for c in expiring(roster, now, timedelta(days=400))] == ["soon", "later"]
    assert expiring(roster, now + timedelta(days=11)) == ()


def test_list_certs_gives_names_kinds_expiry_and_revocation(ca: Ca) -> None:
    now = datetime(2030, 6, 1, tzinfo=timezone.utc)
    issue_client(ca, "alice", days=30, now=now)
    revoke(ca, "alice", now=now + timedelta(days=1))
    [entry] = list_certs(ca)
    assert (entry.name, entry.kind) == ("alice", "client")
    assert entry.not_after == now + timedelta(days=30)
    assert entry.revoked_at == now + timedelta(days=1)
    assert not entry.live(now + timedelta(days=2))


def test_damaged_roster_is_a_pki_error_naming_the_file(ca: Ca) -> None:
    (ca.directory / "index.yml").write_text("version: 1\ncrl_number: 1\ncerts: [{serial: zz}]\n")
    with pytest.raises(PkiError, match=r"index.yml: certs\[0\]"):
        issue_client(ca, "alice")
