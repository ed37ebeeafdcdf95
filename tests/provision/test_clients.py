"""Client bundles from the operator's side: add-client writes a bundle the runtime loads,
naming every server with its pin; revoke-client revokes, retires the bundle and pushes the
CRL to every server in parallel, reporting the ones it could not reach; list-clients and
status show what a user checks. All against a real PKI in a temp folder and fake hosts."""

from __future__ import annotations

import json
import stat
import threading
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from provision.clients import (
    ClientExists,
    CrlNotPushed,
    NotDeployed,
    add_client,
    check_pushed,
    list_clients,
    push_crl,
    render_clients,
    render_pushes,
    render_status,
    revoke_client,
    server_status,
)
from provision.clients.revoke import CRL_DIR, CRL_PATH, CRL_TEMP, RELOAD
from provision.clients.status import parse_runtime
from provision.errors import HostFailed, InventoryError, PkiError, UsageError
from provision.pki import load_roster
from runtime.bundle import TunnelSettings, load_bundle
from tests.pki.pki_helpers import make_csr
from tests.provision.fakes import FakeRemote
from tests.provision.clients_world import (
    INVENTORY,
    NOW,
    Hosts,
    World,
    make_world,
    push_remote,
    spki_pin,
    status_remote,
)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def serial_of(bundle_path: Path) -> int:
    return x509.load_pem_x509_certificate(load_bundle(bundle_path, NOW).cert.encode()).serial_number


def snapshot(world: World) -> dict[str, bytes]:
    """Every file of the PKI and of clients/, to show that a refusal changed nothing."""
    files = [*world.pki.rglob("*"), *world.clients.rglob("*")]
    return {str(p): p.read_bytes() for p in files if p.is_file() and p.name != ".lock"}


# ---- add-client -----------------------------------------------------------------------


def test_add_client_writes_a_private_bundle_naming_every_server_with_its_pin(world: World) -> None:
    path = add_client(world.inventory, "alice", now=NOW)

    assert path == world.clients / "alice.bundle"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(world.clients.stat().st_mode) == 0o700
    bundle = load_bundle(path, NOW)  # the runtime's own full check: CA, cert, key, expiry
    assert bundle.name == "alice" and bundle.key is not None and bundle.key_file is None
    assert [(s.name, s.host, s.port, s.data_port, s.pin) for s in bundle.servers] == [
        ("vps1.vpn", "198.51.100.10", 8443, 51820, spki_pin(world.server_keys["vps1"])),
        ("vpn2.example.test", "198.51.100.20", 443, 4500, spki_pin(world.server_keys["vps2"])),
    ]
    assert bundle.tunnel == TunnelSettings()  # full tunnel, kill switch, dns, aes-256-gcm, udp
    assert bundle.ca == (world.pki / "ca.crt").read_text()


def test_bundle_expires_with_its_certificate_after_the_given_days(world: World) -> None:
    default = load_bundle(add_client(world.inventory, "alice", now=NOW), NOW)
    short = load_bundle(add_client(world.inventory, "bob", expires_days=30, now=NOW), NOW)

    assert default.expires == NOW + timedelta(days=365)
    assert short.expires == NOW + timedelta(days=30)
    cert = x509.load_pem_x509_certificate(short.cert.encode())
    assert cert.not_valid_after_utc == short.expires


@pytest.mark.parametrize("days", [0, -3, 100000, "30", True])
def test_bad_expiry_is_a_usage_error_and_changes_nothing(world: World, days: object) -> None:
    before = snapshot(world)
    with pytest.raises(UsageError, match="--expires"):
        add_client(world.inventory, "alice", expires_days=days, now=NOW)  # type: ignore[arg-type]
    assert snapshot(world) == before


def test_with_a_csr_the_bundle_holds_no_key_but_names_the_laptops_key(world: World, tmp_path: Path) -> None:
    csr, laptop_key = make_csr()
    (tmp_path / "alice.csr").write_bytes(csr)

    path = add_client(world.inventory, "alice", csr_path=tmp_path / "alice.csr", now=NOW)

    text = path.read_text()
    assert "PRIVATE KEY" not in text
    assert yaml.safe_load(text)["key_file"] == "alice.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # on the laptop: the key beside the bundle, and the runtime accepts the pair
    key_pem = laptop_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    (path.parent / "alice.key").write_bytes(key_pem)
    assert load_bundle(path, NOW).key_file == path.parent / "alice.key"


def test_a_csr_that_is_missing_or_garbage_is_refused_before_anything_is_issued(world: World, tmp_path: Path) -> None:
    before = snapshot(world)
    with pytest.raises(UsageError, match="cannot read") as missing:
        add_client(world.inventory, "alice", csr_path=tmp_path / "nope.csr", now=NOW)
    assert "vpn-runtime csr --key alice.key --name alice" in missing.value.hint
    (tmp_path / "bad.csr").write_text("not a request")
    with pytest.raises(PkiError, match="does not parse"):
        add_client(world.inventory, "alice", csr_path=tmp_path / "bad.csr", now=NOW)
    assert snapshot(world) == before


def test_adding_a_name_twice_is_refused_with_its_serial_and_expiry(world: World) -> None:
    path = add_client(world.inventory, "alice", now=NOW)
    before = snapshot(world)

    with pytest.raises(ClientExists) as refused:
        add_client(world.inventory, "alice", now=NOW)

    serial = serial_of(path)
    expires = (NOW + timedelta(days=365)).date().isoformat()
    assert refused.value.message == (
        f"add-client: 'alice' already has a live certificate (serial {serial:x}, expires {expires})"
    )
    assert refused.value.hint == "use --force to reissue, or revoke-client alice"
    assert snapshot(world) == before


def test_force_reissues_with_a_new_serial_and_revokes_the_old_one(world: World) -> None:
    old = serial_of(add_client(world.inventory, "alice", now=NOW))

    path = add_client(world.inventory, "alice", force=True, now=NOW)

    new = serial_of(path)
    assert new != old
    states = {c.serial: c.revoked_at for c in load_roster(world.pki).named("alice", "client")}
    assert states[old] is not None and states[new] is None
    crl = x509.load_pem_x509_crl(world.crl_pem())
    assert crl.get_revoked_certificate_by_serial_number(old) is not None
    assert crl.get_revoked_certificate_by_serial_number(new) is None


def test_a_server_never_deployed_is_refused_with_deploy_first(tmp_path: Path) -> None:
    world = make_world(tmp_path, deployed=["vps1"])
    before = snapshot(world)

    with pytest.raises(NotDeployed) as refused:
        add_client(world.inventory, "alice", now=NOW)

    assert "vps2 (vpn2.example.test) was never deployed" in refused.value.message
    assert refused.value.hint == "deploy it first: invoke deploy --host vps2"
    assert snapshot(world) == before


def test_a_server_whose_certificate_expired_is_refused(tmp_path: Path) -> None:
    world = make_world(tmp_path, deployed=["vps1"])
    world.deploy("vps2", days=1, now=NOW - timedelta(days=2))
    with pytest.raises(NotDeployed, match="vps2 .*expired or was revoked"):
        add_client(world.inventory, "alice", now=NOW)


def test_the_pin_is_the_newest_live_server_certificate(world: World) -> None:
    new_pin = world.deploy("vps1", now=NOW + timedelta(minutes=1), new_key=True)  # a server rebuilt
    bundle = load_bundle(add_client(world.inventory, "alice", now=NOW + timedelta(minutes=2)), NOW)
    assert bundle.servers[0].pin == new_pin


@pytest.mark.parametrize("name", ["Alice", "-x", "a b", "", "x" * 64, "../etc"])
def test_bad_names_are_refused_as_the_pki_refuses_them(world: World, name: str) -> None:
    before = snapshot(world)
    with pytest.raises(PkiError, match="is not valid"):
        add_client(world.inventory, name, now=NOW)
    with pytest.raises(PkiError, match="is not valid"):
        revoke_client(world.inventory, name, Hosts([]), now=NOW)
    assert snapshot(world) == before


def test_tunnel_settings_come_from_the_server_group_vars(tmp_path: Path) -> None:
    extra = (
        "        vpn_full_tunnel: false\n        vpn_routes: [10.20.0.0/16, 'fd00:20::/48']\n"
        "        vpn_kill_switch: 'no'\n        vpn_cipher: chacha20-poly1305\n"
        "        vpn_transport: tcp\n        vpn_allow_lan: yes\n        vpn_client_dns: false\n"
    )
    world = make_world(tmp_path, INVENTORY.replace("        vpn_network: 10.8.0.0/24\n", "        vpn_network: 10.8.0.0/24\n" + extra))

    tunnel = load_bundle(add_client(world.inventory, "alice", now=NOW), NOW).tunnel

    assert (tunnel.full_tunnel, [str(r) for r in tunnel.routes]) == (False, ["10.20.0.0/16", "fd00:20::/48"])
    assert (tunnel.kill_switch, tunnel.cipher, tunnel.transport) == (False, "chacha20-poly1305", "tcp")
    assert (tunnel.allow_lan, tunnel.dns) == (True, False)


@pytest.mark.parametrize(("var", "value", "complaint"), [
    ("vpn_cipher", "rot13", "vps1.vpn_cipher: expected"),
    ("vpn_kill_switch", "maybe", "vps1.vpn_kill_switch: expected true or false"),
    ("vpn_routes", "[10.0.0.1/8]", "vps1.vpn_routes[0]: expected"),
    ("vpn_full_tunnel", "false", "vpn_routes is empty"),
    ("vpn_server_name", "not a name!", "vps1.vpn_server_name: expected a DNS name"),
])
def test_bad_tunnel_vars_name_the_host_and_var(tmp_path: Path, var: str, value: str, complaint: str) -> None:
    inventory = INVENTORY.replace("ansible_host: 198.51.100.10\n", f"ansible_host: 198.51.100.10\n          {var}: {value}\n")
    world = make_world(tmp_path, inventory)
    with pytest.raises(InventoryError, match=complaint.replace("[", r"\[").replace("]", r"\]")):
        add_client(world.inventory, "alice", now=NOW)
    assert not world.clients.exists()


def test_servers_that_disagree_on_tunnel_settings_are_refused(tmp_path: Path) -> None:
    inventory = INVENTORY.replace("ansible_host: 198.51.100.10\n", "ansible_host: 198.51.100.10\n          vpn_transport: tcp\n")
    world = make_world(tmp_path, inventory)
    with pytest.raises(InventoryError, match="vps1 and vps2 ask for different tunnel settings") as refused:
        add_client(world.inventory, "alice", now=NOW)
    assert "vpn_servers group" in refused.value.hint


def test_an_inventory_without_vpn_servers_is_refused(tmp_path: Path) -> None:
    world = make_world(tmp_path, "all:\n  hosts:\n    vps1:\n      ansible_host: 198.51.100.10\n", deployed=[])
    with pytest.raises(InventoryError, match="no hosts in group 'vpn_servers'"):
        add_client(world.inventory, "alice", now=NOW)


def test_out_dir_replaces_the_clients_folder(world: World, tmp_path: Path) -> None:
    path = add_client(world.inventory, "alice", out_dir=tmp_path / "elsewhere", now=NOW)
    assert path == tmp_path / "elsewhere" / "alice.bundle" and path.exists()
    assert not world.clients.exists()


# ---- revoke-client --------------------------------------------------------------------


def test_revoke_pushes_the_new_crl_to_every_server_and_reloads_the_daemon(world: World) -> None:
    serial = serial_of(add_client(world.inventory, "alice", now=NOW))
    hosts = Hosts([push_remote("vps1"), push_remote("vps2")])

    results = revoke_client(world.inventory, "alice", hosts, now=NOW)

    assert [(r.host, r.state) for r in results] == [("vps1", "ok"), ("vps2", "ok")]
    check_pushed(results, "revoke-client")  # raises nothing
    crl = x509.load_pem_x509_crl(world.crl_pem())
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None
    for remote in hosts.remotes.values():
        assert remote.put_files == {CRL_TEMP: (world.crl_pem(), 0o644)}
        assert remote.ran == [f"test -d {CRL_DIR}", f"mv -f {CRL_TEMP} {CRL_PATH}", RELOAD]
        assert remote.closed
    assert "laptop" not in hosts.connected


def test_revoke_retires_the_bundle_so_it_is_not_handed_out_again(world: World) -> None:
    add_client(world.inventory, "alice", now=NOW)
    revoke_client(world.inventory, "alice", Hosts([push_remote("vps1"), push_remote("vps2")]), now=NOW)
    assert not (world.clients / "alice.bundle").exists()
    revoked = world.clients / "alice.bundle.revoked"
    assert stat.S_IMODE(revoked.stat().st_mode) == 0o600


def test_an_unreachable_server_is_reported_and_the_others_still_get_the_crl(world: World) -> None:
    add_client(world.inventory, "alice", now=NOW)
    hosts = Hosts([push_remote("vps1")], unreachable=["vps2"])

    results = revoke_client(world.inventory, "alice", hosts, now=NOW)

    assert [(r.host, r.state) for r in results] == [("vps1", "ok"), ("vps2", "unreachable")]
    assert hosts.remotes["vps1"].ran[-1] == RELOAD
    lines = render_pushes(results)
    assert lines[0] == "vps1 : CRL installed, daemon reloaded"
    assert lines[1].startswith("vps2 : unreachable: vps2 (198.51.100.20:2222): unreachable")
    with pytest.raises(CrlNotPushed) as missed:
        check_pushed(results, "revoke-client")
    assert isinstance(missed.value, HostFailed) and missed.value.exit_code != 0
    assert "did not reach vps2" in missed.value.message and "vps1" not in missed.value.message


def test_a_reload_that_fails_is_reported_as_failed(world: World) -> None:
    add_client(world.inventory, "alice", now=NOW)
    results = revoke_client(world.inventory, "alice", Hosts([push_remote("vps1"), push_remote("vps2", reload_rc=1)]), now=NOW)
    assert [r.state for r in results] == ["ok", "failed"]
    assert RELOAD in (results[1].error or "")


def test_revoke_again_pushes_again_and_changes_nothing_else(world: World) -> None:
    add_client(world.inventory, "alice", now=NOW)
    revoke_client(world.inventory, "alice", Hosts([push_remote("vps1")], unreachable=["vps2"]), now=NOW)
    roster, crl = load_roster(world.pki), world.crl_pem()
    hosts = Hosts([push_remote("vps1"), push_remote("vps2")])

    results = revoke_client(world.inventory, "alice", hosts, now=NOW + timedelta(minutes=5))

    assert all(r.ok for r in results)
    assert hosts.remotes["vps2"].put_files[CRL_TEMP][0] == crl
    assert load_roster(world.pki) == roster and world.crl_pem() == crl


def test_the_crl_reaches_the_servers_in_parallel(world: World) -> None:
    add_client(world.inventory, "alice", now=NOW)
    both_in = threading.Barrier(2, timeout=5)

    class Waiting(FakeRemote):
        def put(self, data: bytes | Path, remote_path: str, mode: int = 0o644) -> None:
            both_in.wait()  # breaks (and fails the push) unless the other host is pushed meanwhile
            super().put(data, remote_path, mode)

    remotes = [Waiting(r.name, r.commands, puts=r.allowed_puts) for r in (push_remote("vps1"), push_remote("vps2"))]
    results = revoke_client(world.inventory, "alice", Hosts(remotes), now=NOW)
    assert all(r.ok for r in results)


def test_revoking_an_unknown_name_contacts_no_server(world: World) -> None:
    hosts = Hosts([])
    with pytest.raises(PkiError, match="no client certificate named 'carol'"):
        revoke_client(world.inventory, "carol", hosts, now=NOW)
    assert hosts.connected == []


def test_a_revoked_name_can_be_issued_again_with_a_new_serial(world: World) -> None:
    old = serial_of(add_client(world.inventory, "alice", now=NOW))
    revoke_client(world.inventory, "alice", Hosts([push_remote("vps1"), push_remote("vps2")]), now=NOW)
    new = serial_of(add_client(world.inventory, "alice", now=NOW))
    assert new != old
    assert (world.clients / "alice.bundle").exists() and (world.clients / "alice.bundle.revoked").exists()


def test_push_crl_after_a_forced_reissue_carries_the_old_serial(world: World) -> None:
    old = serial_of(add_client(world.inventory, "alice", now=NOW))
    add_client(world.inventory, "alice", force=True, now=NOW)
    hosts = Hosts([push_remote("vps1"), push_remote("vps2")])

    results = push_crl(world.inventory, hosts, now=NOW)

    assert all(r.ok for r in results)
    pushed = x509.load_pem_x509_crl(hosts.remotes["vps1"].put_files[CRL_TEMP][0])
    assert pushed.get_revoked_certificate_by_serial_number(old) is not None


# ---- list-clients ---------------------------------------------------------------------


def test_list_clients_shows_state_days_left_and_where_the_key_is(world: World, tmp_path: Path) -> None:
    add_client(world.inventory, "alice", now=NOW)
    csr, _ = make_csr()
    (tmp_path / "bob.csr").write_bytes(csr)
    add_client(world.inventory, "bob", csr_path=tmp_path / "bob.csr", expires_days=10, now=NOW)
    add_client(world.inventory, "carol", expires_days=1, now=NOW)
    add_client(world.inventory, "dave", now=NOW)
    revoke_client(world.inventory, "dave", Hosts([push_remote("vps1"), push_remote("vps2")]), now=NOW)

    rows = list_clients(world.inventory, now=NOW + timedelta(days=2))

    got = [(r["name"], r["state"], r["days_left"], r["key"]) for r in rows]
    assert got == [
        ("alice", "live", 363, "bundle"),
        ("bob", "expiring soon", 8, "laptop"),
        ("carol", "expired", -1, "bundle"),
        ("dave", "revoked", None, "bundle"),
    ]
    assert rows[0]["serial"] == f"{serial_of(world.clients / 'alice.bundle'):x}"
    assert rows[0]["expires"] == (NOW + timedelta(days=365)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_list_clients_shows_a_reissue_beside_the_old_certificate(world: World) -> None:
    add_client(world.inventory, "alice", now=NOW)
    (world.clients / "alice.bundle").rename(world.clients / "lost")
    add_client(world.inventory, "alice", force=True, now=NOW + timedelta(seconds=1))
    rows = list_clients(world.inventory, now=NOW)
    assert [(r["state"], r["key"]) for r in rows] == [("revoked", "unknown"), ("live", "bundle")]


def test_list_clients_renders_a_table_and_json(world: World) -> None:
    add_client(world.inventory, "alice", now=NOW)
    rows = list_clients(world.inventory, now=NOW)

    lines = render_clients(rows)
    assert lines[0].split() == ["NAME", "SERIAL", "ISSUED", "EXPIRES", "DAYS", "STATE", "KEY"]
    assert lines[1].split()[0] == "alice" and lines[1].split()[-2:] == ["live", "bundle"]
    assert json.loads(render_clients(rows, as_json=True)[0]) == rows
    assert render_clients([]) == ["no clients yet (invoke add-client NAME)"]


# ---- status ---------------------------------------------------------------------------

SERVER_JSON = {
    "role": "server", "name": "vps1.vpn", "interface": "vpn0", "address": "10.8.0.1",
    "control_port": 8443, "data_port": 51820,
    "clients": [{"name": "alice", "session": "0000abcd", "tunnel_addresses": ["10.8.0.2"],
                 "endpoint": "192.0.2.10:40000", "transport": "udp", "rx_bytes": 1200, "tx_bytes": 3400,
                 "rx_packets": 3, "tx_packets": 4, "last_handshake_age": 2.5, "key_epoch": 1, "key_age": 2.5}],
    "drops": {}, "io_errors": {},
}


def test_status_shows_daemon_clients_and_expiries_per_server(world: World) -> None:
    crl = world.crl_pem().decode()
    hosts = Hosts([
        status_remote("vps1", (0, "active\n"), (0, json.dumps(SERVER_JSON)), (0, crl)),
        status_remote("vps2", (3, "inactive\n"), (5, "[]\n"), (1, "")),
    ])

    rows = server_status(world.inventory, "vpn_servers", hosts, now=NOW)

    vps1, vps2 = rows
    assert (vps1["host"], vps1["state"], vps1["daemon"], vps1["crl"]) == ("vps1", "ok", "active", "current")
    assert vps1["clients"] == SERVER_JSON["clients"]
    assert vps1["server_cert_days_left"] == 825
    next_update = x509.load_pem_x509_crl(world.crl_pem()).next_update_utc
    assert next_update is not None and vps1["crl_next_update"] == next_update.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (vps2["daemon"], vps2["clients"], vps2["crl"]) == ("inactive", None, "missing")
    assert vps2["runtime_error"] is not None
    lines = render_status(rows)
    assert lines[0].split()[:4] == ["HOST", "NAME", "DAEMON", "CLIENTS"]
    assert lines[1].split()[:4] == ["vps1", "vps1.vpn", "active", "1"]
    assert any("alice" in line and "10.8.0.2" in line and "rx 1200 B" in line for line in lines)
    assert json.loads(render_status(rows, as_json=True)[0]) == rows


def test_status_reports_an_unreachable_host_and_a_stale_crl(world: World) -> None:
    hosts = Hosts([status_remote("vps1", (0, "active\n"), (0, json.dumps(SERVER_JSON)), (0, "old crl"))],
                  unreachable=["vps2"])

    rows = server_status(world.inventory, "vps1,vps2", hosts, now=NOW)

    assert rows[0]["crl"] == "stale"
    assert (rows[1]["state"], rows[1]["daemon"]) == ("unreachable", None)
    assert "timed out" in rows[1]["error"]
    assert any(line.startswith("vps2: unreachable:") for line in render_status(rows))
    assert render_status(rows)[2].split()[2:4] == ["unreachable", "-"]
    assert render_status(rows)[2].split()[-1] == "-"  # no CRL state for a host not seen
    assert render_status(rows)[1].split()[-4:] == ["stale,", "next", "update", rows[0]["crl_next_update"][:10]]


def test_the_runtime_status_parser_finds_the_server_among_several() -> None:
    client = {"role": "client", "name": "x"}
    assert parse_runtime(0, json.dumps([client, SERVER_JSON]), "") == (SERVER_JSON, None)
    assert parse_runtime(0, json.dumps(SERVER_JSON), "") == (SERVER_JSON, None)
    assert parse_runtime(5, "[]", "") == (None, "no server runs here (exit 5)")
    assert parse_runtime(127, "", "sh: vpn-runtime: not found") == (None, "sh: vpn-runtime: not found")
    assert parse_runtime(0, "garbage", "")[0] is None


def test_a_server_never_deployed_is_skipped_not_failed():
    from provision.clients.revoke import NOT_DEPLOYED, install_crl
    from tests.provision.fakes import FakeRemote

    remote = FakeRemote("vps9", {f"test -d {CRL_DIR}": (1, "")})
    assert install_crl(remote, "PEM") == NOT_DEPLOYED
