"""The daemon's config: defaults, every key checked, errors naming file and key."""

from __future__ import annotations

import time
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface, ip_network
from pathlib import Path
from typing import Any

import pytest
import yaml

from runtime.config import DaemonConfig, Paths, load_config
from runtime.errors import ConfigError
from tests.config.yaml_bombs import with_bomb

MINIMAL = {"name": "vps1.example.net", "network": "10.8.0.0/24"}


def write(tmp_path: Path, raw: Any) -> Path:
    path = tmp_path / "server.yml"
    path.write_text(yaml.safe_dump(raw))
    return path


def load(tmp_path: Path, **changes: Any) -> DaemonConfig:
    return load_config(write(tmp_path, {**MINIMAL, **changes}))


def error(tmp_path: Path, **changes: Any) -> str:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, **changes)
    assert "\n" not in err.value.line() and err.value.hint
    return err.value.message


def test_minimal_config_gets_documented_defaults(tmp_path: Path) -> None:
    config = load(tmp_path)
    assert config.server_address == IPv4Interface("10.8.0.1/24")
    assert config.dns == (IPv4Address("10.8.0.1"),)
    assert (config.control_port, config.data_port, config.mtu) == (8443, 51820, 1420)
    assert (config.keepalive, config.dead_peer, config.rekey_seconds) == (10, 60, 120)
    assert config.rekey_packets == 2**28
    assert config.ciphers == ("aes-256-gcm", "chacha20-poly1305")
    assert config.client_to_client is False and config.tcp_transport is True
    assert config.paths == Paths()
    assert config.paths.control_socket == Path("/run/vpn-runtime/control.sock")
    assert config.network6 is None and config.server_address6 is None


def test_full_config_is_read(tmp_path: Path) -> None:
    config = load(
        tmp_path, network6="fd42:8::/64", pool="10.8.0.128/25", listen="::", control_port=443,
        data_port=443, dns=["10.8.0.1", "fd42:8::1"], routes=["192.168.1.0/24"],
        client_to_client=True, ciphers=["chacha20-poly1305"], keepalive=5, dead_peer=30,
        rekey_seconds=60, rekey_packets=1000, interface="vpn-main", mtu=1400, tcp_transport=False,
        paths={"crl": "/srv/crl.pem", "leases": "/srv/leases.json"},
    )
    assert config.server_address6 == IPv6Interface("fd42:8::1/64")
    assert config.routes == (ip_network("192.168.1.0/24"),)
    assert config.paths.crl == Path("/srv/crl.pem") and config.paths.ca == Paths().ca
    protocol = config.protocol()
    assert (protocol.keepalive, protocol.dead_peer, protocol.ciphers) == (5, 30, ("chacha20-poly1305",))
    assert protocol.limits.rekey_packets == 1000 and protocol.client_to_client


def test_unknown_key_is_an_error_with_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, data_prot=51820)
    assert err.value.message == "server.yml: data_prot: unknown key"
    assert err.value.hint == "did you mean `data_port`?"


def test_unknown_path_key_is_an_error(tmp_path: Path) -> None:
    assert error(tmp_path, paths={"crl_file": "/x"}) == "server.yml: paths.crl_file: unknown key"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"data_port": "auto"}, "data_port: expected 1-65535, got 'auto'"),
        ({"control_port": 0}, "control_port: expected 1-65535, got int 0"),
        ({"control_port": 70000}, "control_port: expected 1-65535, got int 70000"),
        ({"network": "10.8.0.0/33"}, "network: expected an IPv4 network like 10.8.0.0/24, got '10.8.0.0/33'"),
        ({"network": "10.8.0.1/24"}, "network: expected an IPv4 network"),
        ({"network": "fd00::/64"}, "network: expected an IPv4 network"),
        ({"network": "10.8.0.0/31"}, "network: expected a network of /30 or wider"),
        ({"network6": "10.9.0.0/24"}, "network6: expected an IPv6 network"),
        ({"network6": "fd00::/124"}, "network6: expected an IPv6 network of /120 or wider"),
        ({"pool": "10.9.0.0/25"}, "pool: expected a network inside 10.8.0.0/24"),
        ({"pool": "10.8.0.0/31"}, "pool: expected a pool with room for a client"),
        ({"listen": "everywhere"}, "listen: expected an IP address, got 'everywhere'"),
        ({"dns": ["10.8.0.1", "dns.google"]}, "dns[1]: expected an IP address, got 'dns.google'"),
        ({"routes": "0.0.0.0/0"}, "routes: expected a list, got '0.0.0.0/0'"),
        ({"routes": ["10.0.0.0/33"]}, "routes[0]: expected a network"),
        ({"client_to_client": "no"}, "client_to_client: expected true or false, got 'no'"),
        ({"ciphers": ["aes-128-cbc"]}, "ciphers[0]: expected aes-256-gcm or chacha20-poly1305"),
        ({"ciphers": []}, "ciphers: expected a non-empty list of distinct ciphers"),
        ({"ciphers": ["aes-256-gcm", "aes-256-gcm"]}, "ciphers: expected a non-empty list"),
        ({"keepalive": 0}, "keepalive: expected 1-3600, got int 0"),
        ({"keepalive": 10, "dead_peer": 15}, "dead_peer: expected at least twice keepalive (20), got int 15"),
        ({"rekey_seconds": 1}, "rekey_seconds: expected 10-86400"),
        ({"rekey_packets": 2**31}, "rekey_packets: expected 1-2147483647"),
        ({"interface": "a-very-long-interface-name"}, "interface: expected an interface name"),
        ({"interface": "../eth0"}, "interface: expected an interface name"),
        ({"mtu": 100}, "mtu: expected 576-9000, got int 100"),
        ({"mtu": 1000, "network6": "fd00::/64"}, "mtu: expected 1280-9000, got int 1000"),
        ({"name": "not a name"}, "name: expected a DNS name, got 'not a name'"),
        ({"paths": {"key": "server.key"}}, "paths.key: expected an absolute path, got 'server.key'"),
        ({"paths": "/etc"}, "paths: expected a mapping of keys, got '/etc'"),
    ],
)
def test_bad_value_is_named(tmp_path: Path, changes: dict[str, Any], message: str) -> None:
    assert error(tmp_path, **changes).startswith(f"server.yml: {message}")


def test_missing_required_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="server.yml: network: missing"):
        load_config(write(tmp_path, {"name": "vps1"}))


@pytest.mark.parametrize("raw", [["a", "list"], "text", None, 42])
def test_not_a_mapping_is_refused(tmp_path: Path, raw: Any) -> None:
    with pytest.raises(ConfigError, match="server.yml: expected a mapping of keys"):
        load_config(write(tmp_path, raw))


def test_a_bundle_given_as_server_config_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="this is a client bundle, not a server config"):
        load_config(write(tmp_path, {"version": 1, "kind": "selfvpn-bundle", "name": "alice"}))


def test_broken_yaml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "server.yml"
    path.write_text("name: vps1\nnetwork: [10.8.0.0/24\n")
    with pytest.raises(ConfigError, match=r"server.yml: not a server config: not valid YAML at line 3"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a: !!float\n", "line 1: !!float expects a number like 1.5, got ''"),
        ("!!int\n", "line 1: !!int expects an integer, got ''"),
        ("name: !!bool maybe\n", "line 1: !!bool expects true or false, got 'maybe'"),
        ("name: !!timestamp soon\n", "line 1: !!timestamp expects a date like 2030-01-31, got 'soon'"),
        ("name: vps1\nroutes: &r [10.0.0.0/8, *r]\n", "line 2: a YAML alias refers to a value that contains it"),
        ("name: vps1\nroutes: " + "[" * 100 + "]" * 100 + "\n", "line 2: nested deeper than 64 levels"),
    ],
    ids=["empty float", "empty int", "bad bool", "bad timestamp", "alias loop", "deep nesting"],
)
def test_yaml_the_loader_cannot_build_is_a_config_error(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "server.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.message == f"server.yml: not a server config: not valid YAML at {problem}"


def test_a_yaml_alias_bomb_under_a_checked_key_is_refused_at_once(tmp_path: Path) -> None:
    path = tmp_path / "server.yml"
    path.write_text(with_bomb("routes: BOMB\nname: LAST\nnetwork: 10.8.0.0/24\n"))
    started = time.monotonic()
    with pytest.raises(ConfigError, match="^server.yml: not a server config: more than 100000 values once YAML"):
        load_config(path)
    assert time.monotonic() - started < 1


def test_a_small_alias_is_read_and_a_long_bad_value_is_shown_short(tmp_path: Path) -> None:
    path = tmp_path / "server.yml"
    path.write_text(with_bomb("routes: BOMB\nname: LAST\nnetwork: 10.8.0.0/24\n", levels=3))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.message == "server.yml: name: expected a DNS name, got list [[[[...], [...], [...], [...], [...], [...], [...], ..."


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load(tmp_path)
    with pytest.raises(AttributeError):
        config.mtu = 9000  # type: ignore[misc]
