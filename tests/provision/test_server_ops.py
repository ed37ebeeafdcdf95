"""The server playbook's operations from data: the ruleset against golden files (the
first checked byte for byte against `nft list table` in the lab), packages, the runtime,
the server certificate, units and the resolver: no-op when the host matches, a change
with its undo otherwise, and nothing that signs or ships until the plan is applied."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from provision import pki, wheelhouse
from provision.connection import Result
from provision.journal import StateDir, undo
from provision.operation import Change, Context, Exchange, NoChange, OperationFailed, Run
from provision.ops.baseline import BaselineOp, BaselineState
from provision.ops.file import FileState
from provision.ops.nft import NftState, NftTableOp, TableSpec, load_script, parse_live, render, ssh_safe
from provision.ops.package import PackageOp, PackageState, parse_simulation
from provision.ops.pki_files import CertState, ServerCertOp, cert_problem, csr_public
from provision.ops.resolver import ResolverOp, ResolverState, parse_nameservers, render_unbound
from provision.ops.runtime import BINARY, LINK, VENV, RuntimeOp, RuntimeState, parse_runtime
from provision.ops.server_config import ServerConfigOp
from provision.ops.unit import UnitOp, UnitState
from provision.pki.ca import public_der

DATA = Path(__file__).parent / "data"
CTX = Context(StateDir("/var/lib/selfvpn"))
SPEC = TableSpec("selfvpn-server", "10.8.0.0/24", "fd00:8::/64", "eth0", "selfvpn0", 8443, 51820)


# ---- the ruleset ---------------------------------------------------------------------------


def test_ruleset_matches_golden_files():
    assert render(SPEC) == (DATA / "selfvpn-server.nft").read_text()
    v4 = TableSpec("selfvpn-server", "10.9.0.0/24", None, "ens3", "selfvpn0", 443, 1194, client_to_client=True)
    assert render(v4) == (DATA / "selfvpn-server-v4-c2c.nft").read_text()


def test_load_script_replaces_the_table_in_one_transaction():
    assert load_script(SPEC).splitlines()[:2] == ["table inet selfvpn-server", "delete table inet selfvpn-server"]


def test_our_ruleset_cannot_cut_ssh_and_a_dropping_one_is_caught():
    assert ssh_safe(render(SPEC))
    assert not ssh_safe(render(SPEC).replace("policy accept;", "policy drop;", 1))
    assert not ssh_safe("table inet x {\n\tchain input {\n\t\ttcp dport 22 drop\n\t}\n}\n")


def op() -> NftTableOp:
    return NftTableOp("10.8.0.0/24", 8443, 51820, "fd00:8::/64")


def test_live_table_equal_to_the_rendering_is_ok():
    persisted = FileState("file", 0o600, "root", "root", load_script(SPEC).encode())
    assert isinstance(op().decide(NftState(render(SPEC), "eth0", persisted), CTX), NoChange)


def test_absent_table_is_created_under_the_guard_with_its_undo():
    change = op().decide(NftState(None, "eth0", FileState("absent")), CTX)
    assert isinstance(change, Change) and change.guard
    assert Run("nft -f -", load_script(SPEC).encode()) in change.actions
    assert [u.kind for u in change.undo] == ["file_created", "nft_table_created"]
    assert "+\t\toifname \"eth0\" ip saddr 10.8.0.0/24 masquerade" in change.diff


def test_drifted_table_is_saved_then_replaced():
    persisted = FileState("file", 0o600, "root", "root", load_script(SPEC).encode())
    drifted = render(SPEC).replace("8443", "9443")
    change = op().decide(NftState(drifted, "eth0", persisted), CTX)
    assert isinstance(change, Change) and change.guard
    assert [u.kind for u in change.undo] == ["nft_table_replaced"]
    assert change.actions[0].input.decode().endswith(drifted)


def test_no_default_route_and_no_interface_is_a_clear_failure():
    with pytest.raises(OperationFailed, match="vpn_public_interface"):
        op().decide(NftState(None, None, FileState("absent")), CTX)


def test_live_fact_absent_table_and_errors():
    assert parse_live(Result(1, "", "Error: No such file or directory; did you mean table...")) is None
    with pytest.raises(ValueError):
        parse_live(Result(1, "", "Error: Could not process rule: Operation not permitted"))


# ---- packages ------------------------------------------------------------------------------


def test_installed_packages_are_ok():
    assert isinstance(PackageOp(("unbound",)).decide(PackageState(frozenset({"unbound", "bash"})), CTX), NoChange)


def test_missing_packages_install_with_a_record_of_before_and_after():
    state = PackageState(frozenset({"bash", "nftables"}), ("libevent-2.1-7", "unbound"))
    change = PackageOp(("nftables", "unbound")).decide(state, CTX)
    assert isinstance(change, Change)
    assert change.description == "install unbound (and libevent-2.1-7)"
    (record,) = change.undo
    assert record.kind == "packages_installed" and record.args["dir"].startswith("/var/lib/selfvpn/backup/packages/")
    script = change.actions[0].cmd
    assert script.index("before.pkgs") < script.index("apt-get -y -q -o") < script.index("after.pkgs")
    assert "install --no-install-recommends unbound" in script and "nftables" not in script.split("install")[-1]


def test_apt_simulation_parses_and_unknown_is_none():
    out = "NOTE: simulation\nInst libevent-2.1-7 (2.1.12 mirror [amd64])\nInst unbound (1.17 mirror [amd64])\nConf unbound\n"
    assert parse_simulation(Result(0, out)) == ("libevent-2.1-7", "unbound")
    assert parse_simulation(Result(100, "", "E: Unable to locate package unbound")) is None


def test_package_names_are_checked():
    with pytest.raises(ValueError):
        PackageOp(("unbound; rm -rf /",)).validate()


# ---- the runtime ---------------------------------------------------------------------------


def test_runtime_fact_and_no_change_at_the_same_version():
    state = parse_runtime(Result(0, f"{wheelhouse.version()}\n3.11\n{BINARY}\n"))
    assert state == RuntimeState(wheelhouse.version(), "3.11", BINARY)
    assert isinstance(RuntimeOp().decide(state, CTX), NoChange)


def test_fresh_host_gets_the_wheels_shipped_at_apply_time_and_an_undo_that_removes_all():
    change = RuntimeOp().decide(RuntimeState("absent", "3.11", "nolink"), CTX)
    assert isinstance(change, Change) and isinstance(change.actions[0], Exchange)
    assert [(u.kind, dict(u.args)) for u in change.undo] == [("tree_created", {"path": VENV}),
                                                           ("file_created", {"path": LINK})]


def test_an_older_runtime_is_saved_for_teardown():
    change = RuntimeOp().decide(RuntimeState("0.0.9", "3.11", BINARY), CTX)
    assert isinstance(change, Change) and change.undo[0].kind == "tree_replaced"
    assert "tar -cpf" in change.actions[0].cmd


# ---- the server certificate ----------------------------------------------------------------


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return pki.init_ca(tmp_path_factory.mktemp("pki"))


def host_key_csr(name: str = "vps1.vpn") -> str:
    from runtime.keygen import csr_pem
    from cryptography.hazmat.primitives.asymmetric import ec

    return csr_pem(ec.generate_private_key(ec.SECP256R1()), name)


def test_a_good_certificate_is_kept_and_problems_are_named(ca, tmp_path):
    csr = host_key_csr()
    cert = pki.sign_server_csr(ca, csr, "vps1.vpn", sans=("198.51.100.10",)).encode()
    now, key = pki.utcnow(), csr_public(csr)
    names = ("vps1.vpn", "198.51.100.10")
    assert cert_problem(cert, ca.cert, key, names, now) is None
    assert cert_problem(cert, ca.cert, csr_public(host_key_csr()), names, now) == "does not match the host's key"
    assert cert_problem(cert, ca.cert, key, ("vps9.vpn",), now) == "does not name vps9.vpn"
    assert cert_problem(cert, ca.cert, key, names, now + timedelta(days=800)).startswith("expires ")
    other = pki.init_ca(tmp_path / "other")
    assert cert_problem(cert, other.cert, key, names, now) == "not signed by this CA"
    assert cert_problem(b"junk", ca.cert, key, names, now) == "the file is not a PEM certificate"


def test_a_missing_certificate_is_signed_only_when_applied(ca):
    op = ServerCertOp("vps1.vpn", ("198.51.100.10",))
    before = len(pki.load_roster(ca.directory).certs)
    change = op.decide(CertState(FileState("absent"), FileState("absent"), None, pki.utcnow()), Context(ca=ca))
    assert isinstance(change, Change)
    assert len(pki.load_roster(ca.directory).certs) == before  # planning signed nothing
    exchange = next(a for a in change.actions if isinstance(a, Exchange))
    assert exchange.cmd == f"{BINARY} csr --key /etc/vpn-runtime/server.key --name vps1.vpn"
    assert [u.kind for u in change.undo] == ["file_created", "file_created"]
    pem = exchange.make(host_key_csr())
    assert b"BEGIN CERTIFICATE" in pem and b"PRIVATE" not in pem
    assert len(pki.load_roster(ca.directory).certs) == before + 1


def test_pki_steps_without_a_ca_fail_clearly():
    with pytest.raises(OperationFailed, match="CA"):
        ServerCertOp("vps1.vpn").decide(CertState(FileState("absent"), FileState("absent"), None, pki.utcnow()), CTX)


# ---- units, the resolver, the daemon's config, the baseline ---------------------------------

UNIT = "[Service]\nExecStart=/bin/true\n"


def unit_file() -> FileState:
    return FileState("file", 0o644, "root", "root", UNIT.encode())


def test_unit_running_as_written_is_ok():
    assert isinstance(UnitOp("x.service", UNIT).decide(UnitState(unit_file(), "enabled", "active"), CTX), NoChange)


def test_fresh_unit_is_written_enabled_and_started_with_undo_in_order():
    change = UnitOp("x.service", UNIT).decide(UnitState(FileState("absent"), "not-found", "inactive"), CTX)
    assert isinstance(change, Change)
    assert [u.kind for u in change.undo] == ["unit_file_created", "unit_enabled", "unit_started"]
    cmds = [a.cmd for a in change.actions if isinstance(a, Run)]
    assert cmds[-3:] == ["systemctl daemon-reload", "systemctl enable --quiet x.service", "systemctl start x.service"]


def test_a_changed_unit_file_restarts_the_running_unit():
    old = FileState("file", 0o644, "root", "root", b"[Service]\nExecStart=/bin/false\n")
    change = UnitOp("x.service", UNIT).decide(UnitState(old, "enabled", "active"), CTX)
    assert isinstance(change, Change) and change.undo[0].kind == "unit_file_replaced"
    assert change.actions[-1] == Run("systemctl restart x.service")


def test_unbound_listens_on_the_tunnel_and_forwards_to_the_hosts_resolver():
    servers = parse_nameservers(Result(0, "# x\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\nsearch lan\n"))
    assert servers == ("127.0.0.53", "fe80::1")
    text = render_unbound("10.8.0.0/24", "fd00:8::/64", ("127.0.0.53",))
    for line in ("interface: 10.8.0.1", "interface: fd00:8::1", "ip-freebind: yes",
                 "access-control: 10.8.0.0/24 allow", "forward-addr: 127.0.0.53", "do-not-query-localhost: no"):
        assert f"    {line}\n" in text


def test_a_resolver_with_nothing_to_forward_to_fails_clearly():
    with pytest.raises(OperationFailed, match="resolv.conf"):
        ResolverOp("10.8.0.0/24").decide(ResolverState((), FileState("absent")), CTX)


def test_server_config_is_checked_by_the_runtimes_parser():
    assert "network6: fd00:8::/64" in ServerConfigOp("vps1.vpn", "10.8.0.0/24", 8443, 51820, "fd00:8::/64").render()
    with pytest.raises(ValueError):
        ServerConfigOp("vps1.vpn", "10.8.0.0/24", 8443, 51820, dns=("not-an-ip",)).validate()


def test_baseline_is_journaled_once():
    op = BaselineOp(("net.ipv4.tcp_fastopen_key",))
    first = op.decide(BaselineState(False, (("net.ipv4.tcp_fastopen_key", "0-0-0-0"),)), CTX)
    assert isinstance(first, Change) and first.actions == ()
    assert first.undo == (undo("sysctl_changed", key="net.ipv4.tcp_fastopen_key", old="0-0-0-0"),)
    assert isinstance(op.decide(BaselineState(True, ()), CTX), NoChange)


def test_tree_undo_refuses_shallow_paths():
    with pytest.raises(ValueError):
        undo("tree_created", path="/opt")
    assert undo("tree_created", path="/opt/vpn-runtime").commands() == (
        "if [ -e /opt/vpn-runtime ] || [ -L /opt/vpn-runtime ]; then rm -rf /opt/vpn-runtime; fi",)
