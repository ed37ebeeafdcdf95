"""Damaged and foreign bundles: each gets one line naming the file, the key and the fault."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from runtime.bundle import dump_bundle, load_bundle
from runtime.errors import ConfigError

from tests.bundle.bundle_helpers import Material, make_bundle
from tests.config.yaml_bombs import with_bomb

Raw = dict[str, Any]


def valid_raw(material: Material) -> Raw:
    return yaml.safe_load(dump_bundle(make_bundle(material)))


def failure(path: Path, text: str | bytes) -> ConfigError:
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    with pytest.raises(ConfigError) as err:
        load_bundle(path)
    assert "\n" not in err.value.line()
    return err.value


def damaged(material: Material, path: Path, change: Callable[[Raw], object]) -> ConfigError:
    raw = valid_raw(material)
    change(raw)
    return failure(path, yaml.safe_dump(raw))


def test_bad_port_message_has_file_key_expected_and_found(material: Material, bundle_path: Path) -> None:
    err = damaged(material, bundle_path, lambda r: r["servers"][0].update(port="auto"))
    assert err.message == "alice.bundle: servers[0].port: expected 1-65535, got 'auto'"
    assert err.hint


CASES: list[tuple[str, Callable[[Raw], object], str]] = [
    ("data port 0", lambda r: r["servers"][1].update(data_port=0), r"servers\[1\]\.data_port: expected 1-65535, got int 0"),
    ("bool port", lambda r: r["servers"][0].update(port=True), r"servers\[0\]\.port: expected 1-65535, got bool True"),
    ("short pin", lambda r: r["servers"][0].update(pin="abc"), r"servers\[0\]\.pin: expected 64 lowercase hex"),
    ("bad host", lambda r: r["servers"][0].update(host="no such host!"), r"servers\[0\]\.host: expected an IP address or a DNS name"),
    ("bad server name", lambda r: r["servers"][0].update(name="-x"), r"servers\[0\]\.name: expected a DNS name"),
    ("server key typo", lambda r: r["servers"][0].update(dataport=1), r"servers\[0\]\.dataport: unknown key"),
    ("server key missing", lambda r: r["servers"][0].pop("pin"), r"servers\[0\]\.pin: missing"),
    ("servers not list", lambda r: r.update(servers="vps1"), r"servers: expected a list, got 'vps1'"),
    ("no servers", lambda r: r.update(servers=[]), r"servers: expected at least one server"),
    ("top typo", lambda r: r.update(sevrers=r.pop("servers")), r"sevrers: unknown key"),
    ("no name", lambda r: r.pop("name"), r"name: missing"),
    ("bad name", lambda r: r.update(name="Alice!"), r"name: expected a name of a-z"),
    ("bad time", lambda r: r.update(issued="yesterday"), r"issued: expected a time"),
    ("expires first", lambda r: r.update(expires=r["issued"]), r"expires: expected a time after issued"),
    ("truncated cert", lambda r: r.update(cert=r["cert"][:120]), r"cert: PEM certificate does not parse"),
    ("cert not PEM", lambda r: r.update(cert=42), r"cert: expected a PEM certificate, got int 42"),
    ("truncated ca", lambda r: r.update(ca=r["ca"][:-60]), r"ca: PEM certificate does not parse"),
    ("ca not a CA", lambda r: r.update(ca=r["cert"]), r"ca: expected a CA certificate"),
    ("truncated key", lambda r: r.update(key=r["key"][:100]), r"key: PEM private key does not parse"),
    ("key not PEM", lambda r: r.update(key="hello"), r"key: expected a PEM private key, got other text"),
    ("key and key_file", lambda r: r.update(key_file="x.key"), r"alice.bundle: expected exactly one of `key` and `key_file`"),
    ("neither key", lambda r: r.pop("key"), r"alice.bundle: expected exactly one of `key` and `key_file`"),
    ("cipher", lambda r: r["tunnel"].update(cipher="rc4"), r"tunnel.cipher: expected aes-256-gcm or chacha20-poly1305, got 'rc4'"),
    ("transport", lambda r: r["tunnel"].update(transport="icmp"), r"tunnel.transport: expected udp or tcp"),
    ("route", lambda r: r["tunnel"].update(routes=["10.0.0.1/8"]), r"tunnel.routes\[0\]: expected a network"),
    ("split without routes", lambda r: r["tunnel"].update(routes=[]), r"tunnel.routes: expected at least one CIDR"),
    ("kill switch", lambda r: r["tunnel"].update(kill_switch="yes please"), r"tunnel.kill_switch: expected true or false"),
    ("tunnel typo", lambda r: r["tunnel"].update(killswitch=True), r"tunnel.killswitch: unknown key \(did you mean `kill_switch`\?\)"),
    ("newer version", lambda r: r.update(version=2), r"version: bundle version 2 is newer"),
    ("version string", lambda r: r.update(version="1"), r"version: expected 1, got '1'"),
]


@pytest.mark.parametrize("change, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_damaged_field_is_named(
    material: Material, bundle_path: Path, change: Callable[[Raw], object], expected: str
) -> None:
    err = damaged(material, bundle_path, change)
    assert err.line().startswith("alice.bundle: ")
    assert re.search(expected, err.line()), err.line()


def test_cert_of_another_ca_is_named(material: Material, other_material: Material, bundle_path: Path) -> None:
    err = damaged(material, bundle_path, lambda r: r.update(cert=other_material.cert, key=other_material.key))
    assert err.message == "alice.bundle: cert: certificate is not signed by the bundle's CA"


def test_key_of_another_client_is_a_mismatch(material: Material, other_material: Material, bundle_path: Path) -> None:
    err = damaged(material, bundle_path, lambda r: r.update(key=other_material.key))
    assert err.message == "alice.bundle: key: private key does not match the certificate (cert)"
    assert "PRIVATE" not in err.line()


def test_cert_issued_to_someone_else(material: Material, bundle_path: Path) -> None:
    err = damaged(material, bundle_path, lambda r: r.update(name="bob"))
    assert "cert: expected a certificate issued to 'bob', got one for 'alice'" in err.message


@pytest.mark.parametrize(
    "text",
    [
        "name: vps1\nlisten: 0.0.0.0\ncontrol_port: 443\n",  # a server config
        "- just\n- a list\n",
        "hello",
        "",
        "kind: openvpn-profile\nversion: 1\n",
    ],
    ids=["server config", "list", "scalar", "empty", "other kind"],
)
def test_foreign_file_is_not_a_selfvpn_bundle(bundle_path: Path, text: str) -> None:
    err = failure(bundle_path, text)
    assert err.message.startswith("alice.bundle: not a selfvpn bundle")
    assert "right file" in err.hint


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"kind: selfvpn-bundle\nservers: [\n", "not a selfvpn bundle: not valid YAML at line"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\xff", "not a selfvpn bundle: not UTF-8 text"),
        (b"a: b: c: :\n\t- x", "not valid YAML"),
        (b"!!int", "not a selfvpn bundle: not valid YAML at line 1: !!int expects an integer, got ''"),
        (b"kind: selfvpn-bundle\nversion: !!float\n", "at line 2: !!float expects a number like 1.5, got ''"),
    ],
    ids=["truncated yaml", "binary", "garbage", "empty int", "empty float"],
)
def test_unparseable_file_is_named(bundle_path: Path, data: bytes, expected: str) -> None:
    err = failure(bundle_path, data)
    assert err.message.startswith("alice.bundle: ") and expected in err.message


def test_a_yaml_alias_bomb_is_refused_at_once(bundle_path: Path) -> None:
    started = time.monotonic()
    err = failure(bundle_path, with_bomb("ca: BOMB\nversion: 1\nkind: selfvpn-bundle\nname: LAST\n"))
    assert err.message == "alice.bundle: not a selfvpn bundle: more than 100000 values once YAML aliases are expanded"
    assert time.monotonic() - started < 1


def test_a_bundle_sharing_a_value_through_an_alias_loads(material: Material, bundle_path: Path) -> None:
    text = dump_bundle(make_bundle(material))
    pin = material.server_pin
    assert text.count(f"pin: {pin}") == 2
    bundle_path.write_text(text.replace(f"pin: {pin}", f"pin: &pin {pin}", 1).replace(f"pin: {pin}", "pin: *pin"))
    assert [s.pin for s in load_bundle(bundle_path).servers] == [pin, pin]


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.bundle: cannot read selfvpn bundle: No such file"):
        load_bundle(tmp_path / "nope.bundle")


def test_huge_file_is_refused_before_parsing(bundle_path: Path) -> None:
    err = failure(bundle_path, b"#" * (2 << 20))
    assert "too large" in err.message
