"""The runner: hosts in parallel, steps in order, handlers once, Ansible-style lines and
recap, a non-zero exit when a host fails; `--check` runs nothing that changes a host;
a second run on a host that now matches reports changed=0."""

from __future__ import annotations

import base64
import threading
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import pytest

from provision.connection import HostUnreachable
from provision.errors import HostKeyChanged
from provision.guard import Arming
from provision.inventory import Host
from provision.journal import Entry, Journal, undo
from provision.operation import Change, Context, Operation, Run
from provision.ops.file import file_fact
from provision.ops.sysctl import sysctl_fact
from provision.plan import revert_commands
from provision.playbook import load_playbook, parse_playbook
from provision.recap import Console
from provision.runner import PlayFailed, RunOptions, run_playbook, run_teardown
from tests.provision.fakes import FakeRemote
from tests.provision.helpers import REGISTRY, expect_apply, fixed_clock

PLAYBOOK = load_playbook(Path(__file__).parent / "data" / "server.yml", REGISTRY)
VARS = {"vpn_port": 4443, "vpn_network": "10.8.0.0/24", "vpn_unit": "selfvpn.service", "vpn_network6": None}
CONF = "/etc/selfvpn/server.conf"
KEY = "net.ipv4.ip_forward"
DROPIN = f"/etc/sysctl.d/60-selfvpn-{KEY}.conf"
RESTART = "systemctl restart selfvpn.service"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def facts(fresh: bool) -> dict[str, tuple[int, str]]:
    conf, dropin = b"port 4443\nnetwork 10.8.0.0/24\n", f"{KEY} = 1\n".encode()
    return {
        file_fact("/etc/selfvpn").command: (0, "absent\n" if fresh else "dir 700 root root\n"),
        file_fact(CONF).command: (0, "absent\n" if fresh else "file 600 root root\n" + b64(conf)),
        sysctl_fact(KEY).command: (0, "0\n" if fresh else "1\n"),
        file_fact(DROPIN).command: (0, "absent\n" if fresh else "file 644 root root\n" + b64(dropin)),
    }


def make_host(name: str) -> Host:
    return Host(name=name, address="203.0.113.1", vars=MappingProxyType(VARS))


def teach_fresh_host(remote: FakeRemote) -> list[str]:
    """Every command a deploy on a fresh host runs, in order (taught to `remote`)."""
    steps, handlers = PLAYBOOK.for_host(VARS)
    expected = []
    for planned in [*steps, handlers["restart vpn"]]:
        if planned.operation is not None:
            change = planned.operation.plan(remote, Context())
            expected += expect_apply(remote, change, planned.step.name)
    remote.commands[RESTART] = (0, "")
    remote.ran.clear()
    return expected


def play(remotes: dict[str, FakeRemote], check: bool = False, diff: bool = False, connect=None):
    lines: list[str] = []
    console = Console(lines.append, diff=diff)
    connect = connect or (lambda host, echo: remotes[host.name])
    hosts = [make_host(name) for name in remotes]
    try:
        recap = run_playbook(PLAYBOOK, hosts, connect, console, RunOptions(check=check, clock=fixed_clock))
    except PlayFailed as failed:
        return failed.recap, lines, failed
    return recap, lines, None


def test_check_mode_reports_every_change_and_runs_only_facts():
    remote = FakeRemote("vps1", commands=facts(fresh=True))  # no mutating command is known
    recap, lines, failed = play({"vps1": remote}, check=True, diff=True)
    assert failed is None
    assert recap.lines() == ["vps1 : ok=4 changed=4 unreachable=0 failed=0 skipped=1"]
    assert set(remote.ran) <= set(facts(fresh=True)) and not remote.put_files
    assert "changed: [vps1] server config: create /etc/selfvpn/server.conf" in lines
    assert "changed: [vps1] restart vpn: restart selfvpn.service" in lines
    assert "+port 4443" in lines and "skipping: [vps1] forward IPv6: when: vpn_network6" in lines


def test_apply_runs_journal_first_then_actions_and_the_handler_once():
    remote = FakeRemote("vps1", commands=facts(fresh=True))
    expected = teach_fresh_host(remote)
    recap, lines, failed = play({"vps1": remote})
    assert failed is None
    assert recap.stats("vps1").changed == 4
    mutations = [c for c in remote.ran if c not in facts(fresh=True)]
    assert mutations == [c for c in expected if not c.startswith("put ")]
    assert remote.ran.count(RESTART) == 1  # notified by two steps, run once, at the end
    assert remote.ran[-1] == RESTART
    assert remote.put_files[CONF + ".selfvpn-new"] == (b"port 4443\nnetwork 10.8.0.0/24\n", 0o600)
    assert mutations[0].startswith("umask 077 && mkdir -p /var/lib/selfvpn && printf")


def test_second_run_on_a_host_that_matches_changes_nothing():
    remote = FakeRemote("vps1", commands=facts(fresh=False))
    recap, lines, failed = play({"vps1": remote})
    assert recap.lines() == ["vps1 : ok=3 changed=0 unreachable=0 failed=0 skipped=1"]
    assert RESTART not in remote.ran and failed is None
    assert "ok: [vps1] forward IPv4" in lines


def test_hosts_run_in_parallel_and_each_gets_its_recap_line():
    both_connected = threading.Barrier(2, timeout=5)  # breaks if hosts ran one by one
    broken = facts(fresh=False) | {sysctl_fact(KEY).command: (1, "")}
    remotes = {"vps1": FakeRemote("vps1", facts(fresh=False)), "vps22": FakeRemote("vps22", broken),
               "vps3": FakeRemote("vps3")}

    def connect(host, echo):
        if host.name == "vps3":
            raise HostUnreachable("vps3 (203.0.113.1:22): unreachable: timed out")
        both_connected.wait()
        return remotes[host.name]

    recap, lines, failed = play(remotes, connect=connect)
    assert recap.lines() == [
        "vps1  : ok=3 changed=0 unreachable=0 failed=0 skipped=1",
        "vps22 : ok=2 changed=0 unreachable=0 failed=1 skipped=0",
        "vps3  : ok=0 changed=0 unreachable=1 failed=0 skipped=0",
    ]
    assert failed.exit_code == 6 and "2 of 3 hosts did not finish: vps22, vps3" in failed.message
    assert any(line.startswith("failed: [vps22] forward IPv4: vps22: fact sysctl") for line in lines)
    assert "unreachable: [vps3] connect: vps3 (203.0.113.1:22): unreachable: timed out" in lines
    assert lines[-4:-3] == ["PLAY RECAP"]
    assert all(r.closed for r in remotes.values() if r.name != "vps3")


def test_a_refused_host_key_is_unreachable_with_its_hint_and_its_exit_code():
    refused = HostKeyChanged("vps1 (203.0.113.1:22): the SSH host key of 203.0.113.1 has CHANGED", "ssh-keygen -R")

    def connect(host, echo):
        raise refused

    recap, lines, failed = play({"vps1": FakeRemote("vps1")}, connect=connect)
    assert recap.stats("vps1").unreachable == 1
    assert f"unreachable: [vps1] connect: {refused.line()}" in lines
    assert failed.exit_code == HostKeyChanged.exit_code == 11
    assert failed.line() == f"1 of 1 hosts did not finish: vps1: connect: {refused.line()}"


def test_connection_lost_mid_run_counts_as_unreachable():
    class Dropping(FakeRemote):
        def run(self, cmd, **kwargs):
            if "proc/sys" in cmd:
                raise HostUnreachable("vps1 (203.0.113.1:22): unreachable: connection reset")
            return super().run(cmd, **kwargs)

    recap, lines, failed = play({"vps1": Dropping("vps1", facts(fresh=False))})
    assert recap.stats("vps1").unreachable == 1 and failed is not None


def test_a_playbook_error_for_a_host_fails_it_before_connecting():
    def connect(host, echo):
        raise AssertionError("must not connect")

    lines: list[str] = []
    host = Host(name="vps1", address="x", vars=MappingProxyType({}))
    with pytest.raises(PlayFailed) as err:
        run_playbook(PLAYBOOK, [host], connect, Console(lines.append))
    assert err.value.recap.stats("vps1").failed == 1
    assert "undefined variable 'vpn_port'" in lines[0]


# ---- verbose check output, the guard through the runner, teardown ---------------------


def test_verbose_check_shows_what_would_run_and_why_steps_are_ok():
    lines: list[str] = []
    remote = FakeRemote("vps1", commands=facts(fresh=True) | {sysctl_fact(KEY).command: (0, "1\n")})
    run_playbook(PLAYBOOK, [make_host("vps1")], lambda h, e: remote, Console(lines.append, verbose=True),
                 RunOptions(check=True))
    assert "[vps1] [check] would run: mkdir -m 0700 /etc/selfvpn" in lines
    assert "[vps1] [check] would run: put /etc/selfvpn/server.conf.selfvpn-new (30 bytes, mode 0600)" in lines
    assert "changed: [vps1] forward IPv4: create " + DROPIN in lines


@dataclass(frozen=True)
class FirewallOp(Operation[None]):
    op = "firewall"
    table: str

    def gather(self, remote, ctx):
        return None

    def decide(self, state, ctx):
        record = undo("nft_table_created", family="inet", name=self.table)
        return Change(f"load table {self.table}", (Run(f"nft -f /etc/{self.table}.nft"),), (record,), guard=True)


def test_a_firewall_change_that_locks_us_out_fails_the_host_and_stays_armed():
    playbook = parse_playbook("- {name: firewall, op: firewall, args: {table: selfvpn}}\n", "pb.yml",
                              REGISTRY.with_ops(FirewallOp))
    change = FirewallOp("selfvpn").decide(None, Context())
    session = FakeRemote("vps1")
    expect_apply(session, change, "firewall")
    arming = Arming("t0", revert_commands(change))
    session.commands[arming.arm_command()] = (0, "")
    connects = []

    def connect(host, echo):
        connects.append(host.name)
        if len(connects) > 1:
            raise HostUnreachable("vps1 (203.0.113.1:22): unreachable: timed out")
        return session

    lines: list[str] = []
    with pytest.raises(PlayFailed) as err:
        run_playbook(playbook, [make_host("vps1")], connect, Console(lines.append),
                     RunOptions(clock=fixed_clock, guard_token=lambda: "t0"))
    assert err.value.recap.stats("vps1").failed == 1
    assert session.ran[-2:] == [arming.arm_command(), "nft -f /etc/selfvpn.nft"]
    assert any("no fresh SSH connection" in line and "within 60 s" in line for line in lines)


def test_teardown_of_many_hosts_replays_each_journal():
    read = "if [ -f /var/lib/selfvpn/journal.jsonl ]; then cat /var/lib/selfvpn/journal.jsonl; fi"
    entry = Entry(undo("sysctl_changed", key=KEY, old="0"), "forward IPv4", fixed_clock())
    forget = Journal(FakeRemote()).forget_command()
    deployed = FakeRemote("vps1", {read: (0, entry.line() + "\n"), f"sysctl -w {KEY}=0": (0, ""), forget: (0, "")})
    fresh = FakeRemote("vps2", {read: (0, ""), forget: (0, "")})
    lines: list[str] = []
    remotes = {"vps1": deployed, "vps2": fresh}
    recap = run_teardown([make_host("vps1"), make_host("vps2")], lambda h, e: remotes[h.name],
                         Console(lines.append))
    assert recap.lines() == ["vps1 : ok=2 changed=1 unreachable=0 failed=0 skipped=0",
                             "vps2 : ok=1 changed=0 unreachable=0 failed=0 skipped=0"]
    assert deployed.ran == [read, f"sysctl -w {KEY}=0", forget]
    assert "changed: [vps1] undo sysctl_changed: forward IPv4" in lines


def test_teardown_check_changes_nothing():
    read = "if [ -f /var/lib/selfvpn/journal.jsonl ]; then cat /var/lib/selfvpn/journal.jsonl; fi"
    entry = Entry(undo("file_created", path="/etc/x"), "x", fixed_clock())
    remote = FakeRemote("vps1", {read: (0, entry.line() + "\n")})
    recap = run_teardown([make_host("vps1")], lambda h, e: remote, Console(lambda line: None),
                         RunOptions(check=True))
    assert recap.stats("vps1").changed == 1 and remote.ran == [read]
