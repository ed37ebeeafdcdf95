"""Deploy and teardown on real hosts: vps1 (root, port 22) and vps2 (sudo with a
password, port 2222), both fresh, each with a web server of its own on port 80 and its
own nft table.

What a user would check: `--check` changes nothing and names every step; deploy works on
both at once and a second deploy changes nothing and restarts nothing; the daemon,
unbound and our table are up; the web server still answers; teardown brings each host
back to its snapshot from before the first deploy, even after a deploy that failed half
way, and twice; the CA key is never on a host; a firewall change that cuts new SSH
sessions reverts itself.
"""

from __future__ import annotations

import base64
import shutil
import time
from pathlib import Path

import pytest
import yaml

from provision import deploy as deploy_mod
from provision.connection import connect
from provision.inventory import load_inventory
from provision.journal import undo
from provision.lab import lab as lab_mod
from provision.lab import snapshot
from provision.operation import Change, Context, NoChange, Operation, Outcome, Run
from provision.ops import DEFAULT_REGISTRY
from provision.playbook import parse_playbook
from provision.recap import Console
from provision.runner import PlayFailed, RunOptions, run_playbook
from tests.lab.vpn import sh

pytestmark = pytest.mark.lab

HOSTS = ("vps1", "vps2")
ADDRESS = {"vps1": "198.51.100.10", "vps2": "198.51.100.20"}
WEB_UNIT = """[Unit]
Description=a web server that was there before us
[Service]
ExecStart=/usr/bin/python3 -m http.server 80 --directory /srv/web
[Install]
WantedBy=multi-user.target
"""
OTHER_TABLE = ('table inet other {\n chain input {\n  type filter hook input priority 0; policy accept;\n'
               '  tcp dport 80 accept comment "web"\n }\n}')
FRESH_NET = ("nft flush ruleset; sysctl -qw net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0 "
             "net.ipv4.tcp_fastopen_key=00000000-00000000-00000000-00000000")


def web_server(lab, host: str) -> None:
    """What the host ran before us: a systemd web server on 80 and an nft table of its own."""
    sh(lab, host, f"mkdir -p /srv/web && echo hello from {host} > /srv/web/index.html && "
                  f"cat > /etc/systemd/system/web80.service <<'EOF'\n{WEB_UNIT}EOF\n"
                  f"systemctl daemon-reload && systemctl enable --now --quiet web80 && "
                  f"nft -f - <<'EOF'\n{OTHER_TABLE}\nEOF")
    sh(lab, host, "for i in $(seq 50); do ss -lnt | grep -q ':80 ' && exit 0; sleep 0.1; done; exit 1")


def web_answers(lab, host: str) -> bool:
    other = "vps2" if host == "vps1" else "vps1"
    fetch = f"python3 -c \"import urllib.request as u; print(u.urlopen('http://{ADDRESS[host]}/', timeout=5).read().decode())\""
    return sh(lab, other, fetch, check=False).stdout.strip() == f"hello from {host}"


class Run_:
    """One deploy or teardown, its printed lines and its recap (or failure)."""

    def __init__(self, fn, *args, **kwargs) -> None:
        self.lines: list[str] = []
        console = Console(self.lines.append, verbose=kwargs.pop("verbose", False), diff=kwargs.pop("diff", False))
        self.failed: PlayFailed | None = None
        try:
            self.recap = fn(*args, console=console, **kwargs)
        except PlayFailed as exc:
            self.failed, self.recap = exc, exc.recap

    def stats(self, host: str):
        return self.recap.stats(host)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture(scope="module")
def site(lab, tmp_path_factory):
    """Fresh vps1 and vps2 with their web servers, their snapshots, and an inventory of
    our own (so the CA is this test's, in its `pki/` folder)."""
    for host in HOSTS:
        lab.hosts.update(lab_mod.reset_host(host, log=lambda *_: None).hosts)  # the session's view too
        sh(lab, host, FRESH_NET)  # reset_host gives a fresh disk; the netns is reused
        web_server(lab, host)
    folder = tmp_path_factory.mktemp("deploy")
    shutil.copy(Path(__file__).resolve().parents[2] / "inventory" / "lab.yml", folder / "lab.yml")
    before = {host: snapshot.take(host, lab) for host in HOSTS}
    return folder / "lab.yml", before


def assert_as_before(lab, before: dict[str, str]) -> None:
    for host in HOSTS:
        assert snapshot.diff(before[host], snapshot.take(host, lab), host) == ""


def assert_no_ca_key(lab, inventory: Path) -> None:
    pem = (inventory.parent / "pki" / "ca.key").read_text()
    body = "".join(line for line in pem.splitlines() if "-----" not in line)
    needles = [body[8:72], base64.b64decode(body)[-32:].hex()]
    for host in HOSTS:
        for needle in needles:
            found = sh(lab, host, f"grep -rlsF -- {needle} /etc /opt /var /root /home /tmp /srv /usr/local",
                       check=False, timeout=300)
            assert found.stdout == "", f"CA key material on {host}: {found.stdout}"


def test_check_on_fresh_hosts_plans_every_step_and_changes_nothing(lab, site):
    inventory, before = site
    run = Run_(deploy_mod.deploy, inventory, "vps1,vps2", check=True, diff=True, verbose=True)
    assert run.failed is None, run.text
    for host in HOSTS:
        assert run.stats(host).changed >= 12, run.text
        for step in ("packages", "vpn-runtime", "server key and certificate", "firewall table",
                     "DNS resolver for clients", "vpn-runtime service"):
            assert f"changed: [{host}] {step}" in run.text
    assert "+\t\toifname \"eth0\" ip saddr 10.8.0.0/24 masquerade" in run.text  # the ruleset's diff
    assert "install unbound" in run.text
    assert_as_before(lab, before)
    assert not (inventory.parent / "pki").exists()  # not even the operator's CA was made


def test_deploy_both_hosts_then_again_changes_and_restarts_nothing(lab, site):
    inventory, _ = site
    started = time.monotonic()
    first = Run_(deploy_mod.deploy, inventory, "vpn_servers")
    took = time.monotonic() - started
    assert first.failed is None, first.text
    for host in HOSTS:
        assert first.stats(host).changed > 10 and first.stats(host).failed == 0
        status = sh(lab, host, "vpn-runtime status --json").stdout
        assert f'"name": "{host}.vpn"' in status
        assert sh(lab, host, "systemctl is-enabled vpn-runtime unbound web80").stdout.split() == ["enabled"] * 3
        assert sh(lab, host, "sysctl -n net.ipv4.ip_forward").stdout.strip() == "1"
        assert "masquerade" in sh(lab, host, "nft list table inet selfvpn-server").stdout
        assert sh(lab, host, "nft list table inet other", check=False).returncode == 0
        assert web_answers(lab, host)
    pids = {h: sh(lab, h, "systemctl show -p MainPID --value vpn-runtime unbound").stdout for h in HOSTS}
    started = time.monotonic()
    again = Run_(deploy_mod.deploy, inventory, "vps1,vps2")
    print(f"first deploy of both: {took:.1f}s; no-change deploy: {time.monotonic() - started:.1f}s")
    assert again.failed is None, again.text
    for host in HOSTS:
        assert again.stats(host).changed == 0, again.text
        assert sh(lab, host, "systemctl show -p MainPID --value vpn-runtime unbound").stdout == pids[host]
    assert_no_ca_key(lab, inventory)


def test_teardown_restores_both_hosts_exactly_and_twice(lab, site):
    inventory, before = site
    run = Run_(deploy_mod.teardown, inventory, "vps1,vps2")
    assert run.failed is None, run.text
    assert_as_before(lab, before)
    for host in HOSTS:
        assert web_answers(lab, host)
    again = Run_(deploy_mod.teardown, inventory, "vps1,vps2")
    assert again.failed is None and all(again.stats(h).changed == 0 for h in HOSTS), again.text
    assert_as_before(lab, before)
    assert_no_ca_key(lab, inventory)


@pytest.fixture
def broken_playbook(tmp_path) -> Path:
    """The server playbook with a step that fails after the runtime and the certificate."""
    book = yaml.safe_load(deploy_mod.SERVER_PLAYBOOK.read_text())
    at = next(i for i, s in enumerate(book["steps"]) if s["name"] == "server config")
    book["steps"].insert(at, {"name": "fail on purpose", "op": "file",
                              "args": {"path": "/nonexistent/dir/file", "content": "x"}})
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(book, sort_keys=False))
    return path


def test_a_deploy_that_fails_half_way_is_repaired_by_deploy_and_by_teardown(lab, site, broken_playbook):
    inventory, before = site
    broken = Run_(deploy_mod.deploy, inventory, "vps1,vps2", playbook=broken_playbook)
    assert broken.failed is not None
    for host in HOSTS:
        assert broken.stats(host).failed == 1 and f"failed: [{host}] fail on purpose" in broken.text
        assert sh(lab, host, "[ -x /opt/vpn-runtime/bin/vpn-runtime ]", check=False).returncode == 0
    repaired = Run_(deploy_mod.deploy, inventory, "vps1")  # vps1: the next deploy repairs it
    assert repaired.failed is None, repaired.text
    assert sh(lab, "vps1", "systemctl is-active vpn-runtime").stdout.strip() == "active"
    run = Run_(deploy_mod.teardown, inventory, "vps1,vps2")  # vps2: straight to teardown
    assert run.failed is None, run.text
    assert_as_before(lab, before)


# ---- the lockout guard --------------------------------------------------------------------

LOCKOUT = ("table inet selfvpn-lockout {\n chain input {\n  type filter hook input priority -10; policy accept;\n"
           "  tcp dport 22 ct state new drop\n }\n}\n")


class CutSshOp(Operation[None]):
    """A firewall change that lets the running session live and refuses new SSH sessions."""

    op = "cut_ssh"

    def gather(self, remote, ctx: Context) -> None:
        return None

    def decide(self, state: None, ctx: Context) -> Outcome:
        record = undo("nft_table_created", family="inet", name="selfvpn-lockout")
        return Change("drop new SSH sessions", (Run("nft -f -", LOCKOUT.encode()),), (record,), guard=True)


CutSshOp = __import__("dataclasses").dataclass(frozen=True)(CutSshOp)


def test_a_firewall_change_that_cuts_new_ssh_sessions_reverts_itself(lab, site):
    inventory, before = site
    host = load_inventory(inventory).hosts["vps1"]
    book = parse_playbook("- {name: cut ssh, op: cut_ssh}\n", "lockout.yml", DEFAULT_REGISTRY.with_ops(CutSshOp))
    lines: list[str] = []
    with pytest.raises(PlayFailed):
        run_playbook(book, [host], connect, Console(lines.append), RunOptions(guard_timeout=15))
    assert "no fresh SSH connection after the firewall change" in "\n".join(lines)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and sh(lab, "vps1", "nft list table inet selfvpn-lockout", check=False).returncode == 0:
        time.sleep(1)
    assert sh(lab, "vps1", "nft list table inet selfvpn-lockout", check=False).returncode != 0
    fresh = connect(host)
    try:
        assert fresh.run("echo in").stdout == "in\n"
    finally:
        fresh.close()
    sh(lab, "vps1", "rm -rf /var/lib/selfvpn")  # the journal of this test-only change
    assert snapshot.diff(before["vps1"], snapshot.take("vps1", lab), "vps1") == ""
