"""The CA: created once, loaded after, key private from creation, passphrase enforced."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from provision.errors import PkiError
from provision.pki import init_ca, load_ca


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_creates_ca_files_with_private_modes_even_under_umask_0(pki_dir: Path) -> None:
    old = os.umask(0)
    try:
        init_ca(pki_dir)
    finally:
        os.umask(old)
    assert mode(pki_dir / "ca.key") == 0o600
    assert mode(pki_dir) == 0o700
    assert (pki_dir / "ca.crt").read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert (pki_dir / "crl.pem").read_text().startswith("-----BEGIN X509 CRL-----")
    assert b"BEGIN PRIVATE KEY" in (pki_dir / "ca.key").read_bytes()


def test_init_twice_loads_and_never_overwrites(pki_dir: Path) -> None:
    first = init_ca(pki_dir, "pw")
    files = {p.name: p.read_bytes() for p in pki_dir.iterdir() if p.is_file()}
    second = init_ca(pki_dir, "pw", key_type="ed25519", common_name="another")
    assert second.cert == first.cert
    assert {p.name: p.read_bytes() for p in pki_dir.iterdir() if p.is_file()} == files


def test_encrypted_ca_key_needs_its_passphrase(pki_dir: Path) -> None:
    init_ca(pki_dir, "correct horse")
    assert b"ENCRYPTED PRIVATE KEY" in (pki_dir / "ca.key").read_bytes()
    assert mode(pki_dir / "ca.key") == 0o600
    assert load_ca(pki_dir, "correct horse").cert.subject.rfc4514_string() == "CN=selfvpn CA"
    with pytest.raises(PkiError, match="wrong passphrase"):
        load_ca(pki_dir, "battery staple")
    with pytest.raises(PkiError, match="encrypted") as no_pass:
        load_ca(pki_dir)
    assert "passphrase" in no_pass.value.hint


def test_passphrase_for_an_unencrypted_key_is_refused(pki_dir: Path) -> None:
    init_ca(pki_dir)
    with pytest.raises(PkiError, match="not encrypted"):
        load_ca(pki_dir, "pw")


def test_half_done_init_is_repaired_with_the_same_key(pki_dir: Path) -> None:
    first = init_ca(pki_dir, "pw")
    (pki_dir / "ca.crt").unlink()
    again = init_ca(pki_dir, "pw")
    assert again.cert.public_key() == first.cert.public_key()


def test_certificate_without_its_key_is_a_clear_error(pki_dir: Path) -> None:
    init_ca(pki_dir)
    (pki_dir / "ca.key").unlink()
    with pytest.raises(PkiError, match="ca.key: missing") as err:
        init_ca(pki_dir)
    assert "backup" in err.value.hint


def test_key_and_certificate_of_different_cas_are_refused(tmp_path: Path) -> None:
    init_ca(tmp_path / "a")
    init_ca(tmp_path / "b")
    (tmp_path / "a" / "ca.key").write_bytes((tmp_path / "b" / "ca.key").read_bytes())
    with pytest.raises(PkiError, match="does not match"):
        load_ca(tmp_path / "a")


def test_ed25519_ca_can_be_chosen(pki_dir: Path) -> None:
    ca = init_ca(pki_dir, key_type="ed25519")
    assert isinstance(ca.key, ed25519.Ed25519PrivateKey)
    assert load_ca(pki_dir).cert == ca.cert


def test_unknown_key_type_is_refused(pki_dir: Path) -> None:
    with pytest.raises(PkiError, match="key type"):
        init_ca(pki_dir, key_type="rsa-1024")  # type: ignore[arg-type]


def test_ca_key_is_not_in_its_repr(pki_dir: Path) -> None:
    ca = init_ca(pki_dir)
    assert "key=" not in repr(ca)
