"""The runner: hosts in parallel, steps in order, handlers once, Ansible-style lines and
recap, a non-zero exit when a host fails; `--check` runs nothing that changes a host;
a second run on a host that now matches reports changed=0."""

from __future__ import annotations

import base64
import threading
from pathlib import Path
from types import MappingProxyType

import pytest

from provision.connection import HostUnreachable
from provision.inventory import Host
from provision.operation import Context
from provision.ops.file import file_fact
from provision.ops.sysctl import sysctl_fact
from provision.playbook import load_playbook
from provision.recap import Console
from provision.runner import PlayFailed, RunOptions, run_playbook
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
