"""The address pool: stable per name, unique, never the server's, saved across restarts."""

from __future__ import annotations

import json
import stat
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface, ip_network
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.config import load_config
from runtime.errors import ConfigError
from runtime.pool import AddressPool, LeaseBook, PoolExhausted, load_leases

NET = ip_network("10.8.0.0/24")


def test_same_name_gets_the_same_address_every_time() -> None:
    pool = AddressPool(NET)
    first = pool.allocate("alice")
    pool.allocate("bob")
    assert pool.allocate("alice") == first
    assert first.address4.network == NET


def test_address_is_stable_across_processes_even_without_the_file() -> None:
    assert AddressPool(NET).allocate("alice") == AddressPool(NET).allocate("alice")


def test_server_network_and_broadcast_are_never_leased() -> None:
    pool = AddressPool(ip_network("10.8.0.0/29"))
    got = {pool.allocate(f"c{i}").address4.ip for i in range(5)}
    assert got == {IPv4Address(f"10.8.0.{i}") for i in range(2, 7)}
    assert pool.server4 == IPv4Interface("10.8.0.1/29")


def test_exhaustion_is_a_clear_error_and_release_makes_room() -> None:
    pool = AddressPool(ip_network("10.8.0.0/30"))
    assert pool.allocate("alice").address4 == IPv4Interface("10.8.0.2/30")
    with pytest.raises(PoolExhausted, match="all 1 addresses are leased") as err:
        pool.allocate("bob")
    assert "widen" in err.value.hint
    pool.release("alice")
    assert pool.allocate("bob").address4 == IPv4Interface("10.8.0.2/30")


def test_pool_can_be_a_part_of_the_network() -> None:
    pool = AddressPool(NET, ip_network("10.8.0.0/30"))  # .0 is the network's, .1 the server's
    assert pool.size == 2
    got = {pool.allocate("alice").address4, pool.allocate("bob").address4}
    assert got == {IPv4Interface("10.8.0.2/24"), IPv4Interface("10.8.0.3/24")}
    with pytest.raises(PoolExhausted):
        pool.allocate("carol")


def test_ipv6_address_sits_at_the_same_offset() -> None:
    pool = AddressPool(NET, network6=ip_network("fd42:8::/64"))
    lease = pool.allocate("alice")
    offset = int(lease.address4.ip) - int(NET.network_address)
    assert lease.address6 == IPv6Interface(f"fd42:8::{offset:x}/64")
    assert pool.server6 == IPv6Interface("fd42:8::1/64")


def test_saved_leases_are_restored_and_bad_ones_dropped() -> None:
    leases = {
        "alice": IPv4Address("10.8.0.77"),
        "mallory": IPv4Address("10.8.0.1"),  # the server's
        "eve": IPv4Address("10.9.0.5"),  # outside the network
        "bob": IPv4Address("10.8.0.77"),  # taken by alice
    }
    pool = AddressPool(NET, leases=leases)
    assert pool.leases() == {"alice": IPv4Address("10.8.0.77")}
    assert pool.allocate("alice").address4.ip == IPv4Address("10.8.0.77")


@given(st.lists(st.text(alphabet="abcdefgh", min_size=1, max_size=4), max_size=40))
def test_leases_are_unique_inside_the_pool_and_stable(names: list[str]) -> None:
    pool = AddressPool(ip_network("10.8.0.0/27"))
    given_out: dict[str, IPv4Address] = {}
    for name in names:
        try:
            lease = pool.allocate(name)
        except PoolExhausted:
            assert len(given_out) == pool.size == 29 and name not in given_out
            continue
        assert given_out.setdefault(name, lease.address4.ip) == lease.address4.ip
    assert len(set(given_out.values())) == len(given_out)
    assert all(IPv4Address("10.8.0.2") <= a <= IPv4Address("10.8.0.30") for a in given_out.values())


def test_lease_book_saves_and_a_restart_gives_the_same_addresses(tmp_path: Path) -> None:
    path = tmp_path / "state" / "leases.json"
    book = LeaseBook(AddressPool(NET), path)
    alice, bob = book.allocate("alice"), book.allocate("bob")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["leases"] == {"alice": str(alice.address4.ip), "bob": str(bob.address4.ip)}
    again = LeaseBook(AddressPool(NET, leases=load_leases(path)), path)
    assert again.allocate("bob") == bob and again.allocate("alice") == alice
    again.release("alice")
    assert load_leases(path) == {"bob": bob.address4.ip}


def test_missing_leases_file_means_no_leases(tmp_path: Path) -> None:
    assert load_leases(tmp_path / "leases.json") == {}


@pytest.mark.parametrize("text", ["{", "[]", '{"version": 2, "leases": {}}', '{"version": 1, "leases": {"a": "x"}}', '{"version": 1}'])
def test_damaged_leases_file_is_a_config_error(tmp_path: Path, text: str) -> None:
    (tmp_path / "leases.json").write_text(text)
    with pytest.raises(ConfigError, match="leases.json: leases file is damaged") as err:
        load_leases(tmp_path / "leases.json")
    assert "delete it" in err.value.hint


def test_policy_gives_the_core_an_assignment_and_keeps_the_lease_on_release(tmp_path: Path) -> None:
    path = tmp_path / "server.yml"
    leases = tmp_path / "leases.json"
    path.write_text(
        f"name: vps1\nnetwork: 10.8.0.0/30\nnetwork6: fd42::/64\nroutes: [192.168.0.0/16]\n"
        f"paths: {{leases: {leases}}}\n"
    )
    policy = load_config(path).address_policy()
    assignment = policy.assign("alice")
    assert assignment is not None
    assert assignment.address4 == IPv4Interface("10.8.0.2/30")
    assert str(assignment.server_address4) == "10.8.0.1" and str(assignment.server_address6) == "fd42::1"
    assert assignment.routes == (ip_network("192.168.0.0/16"),)
    assert [str(a) for a in assignment.dns] == ["10.8.0.1"]
    policy.release("alice")
    assert policy.assign("bob") is None  # alice keeps her address; the /30 has one
    assert load_leases(leases) == {"alice": IPv4Address("10.8.0.2")}
