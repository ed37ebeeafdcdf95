"""Writing and loading a bundle: same data back, private file, readable by a person."""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from runtime.bundle import TunnelSettings, load_bundle, write_bundle
from runtime.errors import ConfigError

from tests.bundle.bundle_helpers import NOW, Material, make_bundle


def test_round_trip_gives_the_same_bundle(material: Material, bundle_path: Path) -> None:
    bundle = make_bundle(material)
    write_bundle(bundle_path, bundle)
    assert load_bundle(bundle_path) == bundle


def test_written_with_mode_0600_even_under_umask_0(material: Material, bundle_path: Path) -> None:
    old = os.umask(0)
    try:
        write_bundle(bundle_path, make_bundle(material))
    finally:
        os.umask(old)
    assert stat.S_IMODE(bundle_path.stat().st_mode) == 0o600
    assert [p.name for p in bundle_path.parent.iterdir()] == ["alice.bundle"]  # no temp left


def test_file_is_readable_yaml_in_documented_order(material: Material, bundle_path: Path) -> None:
    write_bundle(bundle_path, make_bundle(material))
    text = bundle_path.read_text()
    assert text.startswith("# selfvpn client bundle for alice")
    assert "\nca: |\n  -----BEGIN CERTIFICATE-----\n" in text
    raw = yaml.safe_load(text)
    assert list(raw)[:5] == ["version", "kind", "name", "issued", "expires"]
    assert raw["servers"][0] == {
        "name": "vps1.example.net", "host": "203.0.113.7", "port": 443, "data_port": 51820,
        "pin": material.server_pin,
    }
    assert raw["tunnel"]["routes"] == ["192.168.50.0/24", "fd00::/64"]


def test_rewrite_replaces_atomically(material: Material, bundle_path: Path) -> None:
    write_bundle(bundle_path, make_bundle(material))
    newer = replace(make_bundle(material), tunnel=TunnelSettings())
    write_bundle(bundle_path, newer)
    assert load_bundle(bundle_path).tunnel == TunnelSettings()


def test_key_file_bundle_holds_no_key_and_resolves_next_to_it(
    material: Material, tmp_path: Path
) -> None:
    (tmp_path / "alice.key").write_text(material.key)
    bundle = replace(make_bundle(material), key=None, key_file=Path("alice.key"))
    write_bundle(tmp_path / "alice.bundle", bundle)
    assert "PRIVATE KEY" not in (tmp_path / "alice.bundle").read_text()
    loaded = load_bundle(tmp_path / "alice.bundle")
    assert loaded.key is None and loaded.key_file == tmp_path / "alice.key"


def test_missing_key_file_is_named(material: Material, tmp_path: Path) -> None:
    (tmp_path / "alice.key").write_text(material.key)
    write_bundle(tmp_path / "a.bundle", replace(make_bundle(material), key=None, key_file=Path("alice.key")))
    (tmp_path / "alice.key").unlink()
    with pytest.raises(ConfigError, match=r"a.bundle: key_file: cannot read key file .*alice.key"):
        load_bundle(tmp_path / "a.bundle")


def test_tunnel_settings_default_when_absent(material: Material, bundle_path: Path) -> None:
    write_bundle(bundle_path, make_bundle(material))
    raw = yaml.safe_load(bundle_path.read_text())
    del raw["tunnel"]
    bundle_path.write_text(yaml.safe_dump(raw))
    assert load_bundle(bundle_path).tunnel == TunnelSettings()


def test_expired_bundle_is_refused_with_what_to_do(material: Material, bundle_path: Path) -> None:
    bundle = make_bundle(material, days=30)
    write_bundle(bundle_path, bundle)
    assert load_bundle(bundle_path, now=NOW + timedelta(days=29)) == bundle
    with pytest.raises(ConfigError, match="alice.bundle: expires: expired on") as err:
        load_bundle(bundle_path, now=NOW + timedelta(days=31))
    assert "invoke add-client alice" in err.value.hint


def test_expired_certificate_wins_over_a_later_expires(material: Material, bundle_path: Path) -> None:
    write_bundle(bundle_path, make_bundle(material, days=3000))
    with pytest.raises(ConfigError, match="expired on"):
        load_bundle(bundle_path, now=NOW + timedelta(days=400))


def test_writing_an_invalid_bundle_is_refused_and_writes_nothing(
    material: Material, other_material: Material, bundle_path: Path
) -> None:
    bad = replace(make_bundle(material), cert=other_material.cert)
    with pytest.raises(ConfigError, match="not signed by the bundle's CA"):
        write_bundle(bundle_path, bad)
    assert not bundle_path.exists()


def test_bundle_needs_exactly_one_of_key_and_key_file(material: Material) -> None:
    with pytest.raises(ValueError):
        replace(make_bundle(material), key=None)
