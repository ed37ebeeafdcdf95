"""Operator faults on a real host (vps1 only; it is reset at the start and at the end):
a wrong inventory value, a host that is not Debian, the SSH session killed in the middle
of a deploy, a disk that fills up during a deploy.

What a user would check, through `invoke deploy` / `invoke teardown` themselves: one
`error:` line that says what, where and what to do, the error's own exit code and never
a traceback; nothing touched when the input or the host is wrong; after a fault, the
next deploy finishes the job (changed>0, then changed=0) and teardown brings the host
back to its snapshot from before.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from provision.connection import connect
from provision.errors import HostFailed, InventoryError, Unsupported
from provision.inventory import load_inventory
from provision.lab import lab as lab_mod
from provision.lab import labinventory, snapshot
from provision.lab.hostfiles import put, sh

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
INVOKE = Path(sys.executable).parent / "invoke"
HOST = "vps1"
GATEWAY = "198.51.100.1"
FRESH_NET = ("nft flush ruleset; sysctl -qw net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0 "
             "net.ipv4.tcp_fastopen_key=00000000-00000000-00000000-00000000")
JOURNAL = "/var/lib/selfvpn/journal.jsonl"
RECAP = re.compile(rf"^{HOST} : ok=(\d+) changed=(\d+) unreachable=(\d+) failed=(\d+) skipped=(\d+)$", re.M)
PLATFORM_STEP = "a Debian or Ubuntu host with systemd and apt"
ALPINE = 'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME="Alpine Linux v3.19"\n'


def fresh(lab) -> None:
    """vps1 on a fresh disk, reachable over SSH."""
    lab.hosts.update(lab_mod.reset_host(HOST, log=lambda *_: None).hosts)
    # The router still has the old disk's MAC for vps1 for a while: a packet from the new
    # one teaches it (else the first SSH connection waits out its 10 s banner timeout).
    sh(lab, HOST, f"ping -c1 -W2 {GATEWAY} >/dev/null; {FRESH_NET}")


class Cli:
    """One `invoke deploy|teardown vps1 -i INVENTORY` as the operator types it."""

    def __init__(self, proc: subprocess.CompletedProcess) -> None:
        self.rc, self.out, self.err = proc.returncode, proc.stdout, proc.stderr
        assert "Traceback" not in self.out + self.err, self.out + self.err
        match = RECAP.search(self.out)
        self.ok, self.changed, self.unreachable, self.failed, _ = map(int, match.groups()) if match else (0,) * 5

    @property
    def error(self) -> str:
        """The one error line (asserting there is exactly one)."""
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, self.err
        return lines[0]


def argv(task: str, inventory: Path) -> list[str]:
    return [str(INVOKE), task, HOST, "-i", str(inventory)]


def cli(task: str, inventory: Path, timeout: float = 300) -> Cli:
    return Cli(subprocess.run(argv(task, inventory), cwd=ROOT, capture_output=True, text=True, timeout=timeout))


@pytest.fixture(scope="module")
def site(lab, tmp_path_factory):
    """A fresh vps1, its snapshot, and an inventory of our own (the CA lives beside it)."""
    fresh(lab)
    inventory = tmp_path_factory.mktemp("faults") / "lab.yml"
    labinventory.write(lab, inventory)
    host = load_inventory(inventory).hosts[HOST]
    deadline = time.monotonic() + 30
    while True:  # sshd answers within seconds of the boot
        try:
            connect(host, timeout=5).close()
            break
        except HostFailed:
            if time.monotonic() > deadline:
                raise
    yield inventory, snapshot.take(HOST, lab)
    fresh(lab)  # leave vps1 as the others expect it: a fresh disk


def assert_as(lab, before: str) -> None:
    assert snapshot.diff(before, snapshot.take(HOST, lab), HOST) == ""


def assert_repaired_then_torn_down(lab, inventory: Path, before: str) -> None:
    """The next deploy finishes what the fault stopped, a third changes nothing, and
    teardown brings the host back to its snapshot."""
    repair = cli("deploy", inventory)
    assert repair.rc == 0 and repair.changed > 0 and repair.failed == repair.unreachable == 0, repair.out + repair.err
    assert sh(lab, HOST, "systemctl is-active vpn-runtime unbound").stdout.split() == ["active", "active"]
    again = cli("deploy", inventory)
    assert again.rc == 0 and again.changed == 0, again.out
    down = cli("teardown", inventory)
    assert down.rc == 0 and down.failed == 0, down.out + down.err
    assert_as(lab, before)


# ---- input and platform: refused before anything is touched -------------------------------


@pytest.mark.parametrize(("old", "new", "where"), [
    ("ansible_port: 22\n", "ansible_port: auto\n",
     "all.children.vpn_servers.hosts.vps1.ansible_port: expected 1-65535, got 'auto'"),
    ("vpn_network: 10.8.0.0/24", "vpn_network: 10.8.0.0/33",
     "all.children.vpn_servers.vars.vpn_network: expected an IPv4 network like 10.8.0.0/24, got '10.8.0.0/33'"),
])
def test_a_wrong_inventory_value_is_one_line_exit_3_and_nothing_is_touched(lab, site, tmp_path, old, new, where):
    inventory, before = site
    bad = tmp_path / "hosts.yml"
    text = inventory.read_text()
    assert old in text
    bad.write_text(text.replace(old, new, 1))
    run = cli("deploy", bad)
    assert run.rc == InventoryError.exit_code == 3
    assert run.error == f"error: {bad}: {where} (fix the inventory file and run again)"
    assert run.out == ""  # not a single host line: nothing was reached
    assert not (tmp_path / "pki").exists()
    assert_as(lab, before)


def test_a_host_that_is_not_debian_is_refused_before_any_change(lab, site):
    inventory, before = site
    sh(lab, HOST, "mv /etc/os-release /etc/os-release.selfvpn-test")  # a link to ../usr/lib/os-release
    put(lab, HOST, "/etc/os-release", ALPINE)
    try:
        faked = snapshot.take(HOST, lab)
        run = cli("deploy", inventory)
        why = ("vps1: /etc/os-release says Alpine Linux v3.19 (ID=alpine), not Debian or Ubuntu (deploy supports "
               "Debian and Ubuntu hosts booted with systemd and with apt; use such a host)")
        assert run.rc == Unsupported.exit_code == 8, run.out + run.err
        assert f"failed: [{HOST}] {PLATFORM_STEP}: {why}" in run.out.splitlines()
        assert (run.ok, run.changed, run.failed) == (0, 0, 1)
        assert run.error == f"error: 1 of 1 hosts did not finish: {HOST}: step '{PLATFORM_STEP}': {why}"
        assert_as(lab, faked)
    finally:
        sh(lab, HOST, "rm -f /etc/os-release && mv /etc/os-release.selfvpn-test /etc/os-release")
    sh(lab, HOST, "mv /usr/bin/apt-get /usr/bin/apt-get.selfvpn-test")
    try:
        run = cli("deploy", inventory)
        assert run.rc == 8 and f"{PLATFORM_STEP}: vps1: no apt-get in PATH (deploy supports" in run.out, run.out
    finally:
        sh(lab, HOST, "mv /usr/bin/apt-get.selfvpn-test /usr/bin/apt-get")
    assert sh(lab, HOST, "[ -e /var/lib/selfvpn ]", check=False).returncode != 0  # not even a journal
    assert_as(lab, before)


# ---- faults in the middle of a deploy ---------------------------------------------------------

# The sshd processes serving a connection are the listener's children (run inside the host).
KILL_SESSIONS = ("l=$(cat /run/sshd.pid) && for p in $(ps -eo pid=,ppid=,args= | "
                 "awk -v l=$l '$2 == l && $3 ~ /^sshd:/ {print $1}'); do kill $p && echo $p; done")


def test_ssh_killed_mid_deploy_is_unreachable_then_deploy_finishes_and_teardown_restores(lab, site):
    inventory, before = site
    step = "vpn-runtime"  # journaled before its actions run: the wheels upload and the pip install
    proc = subprocess.Popen(argv("deploy", inventory), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    outputs: list[str] = []
    reader = threading.Thread(target=lambda: outputs.extend(proc.communicate(timeout=300)))
    reader.start()
    killed = ""
    while proc.poll() is None and not killed:
        journal = sh(lab, HOST, f"cat {JOURNAL} 2>/dev/null", check=False).stdout
        if f'"step":"{step}"' in journal:  # provision.journal writes compact JSON
            killed = sh(lab, HOST, KILL_SESSIONS).stdout.strip()
        time.sleep(0.05)
    reader.join()
    run = Cli(subprocess.CompletedProcess(proc.args, proc.returncode, *outputs))
    assert killed, f"the deploy ended before step {step!r} started: {run.out}"
    where = f"{HOST} (root@198.51.100.10:22)"
    assert re.search(rf"^unreachable: \[{HOST}\] {step}: {re.escape(where)}: unreachable: the SSH connection "
                     r"was lost during a command \(.+\) \(once the host answers, run the same command again: "
                     r"it picks up where it stopped\)$", run.out, re.M), run.out
    assert (run.unreachable, run.failed) == (1, 0) and run.changed > 0
    assert run.rc == HostFailed.exit_code == 6
    assert run.error.startswith(f"error: 1 of 1 hosts did not finish: {HOST}: step '{step}': {where}: unreachable")
    assert_repaired_then_torn_down(lab, inventory, before)


@pytest.mark.parametrize(("mount", "size", "cause"), [
    ("/opt", "2m", "/opt is full: No space left on device"),  # pip's ENOSPC, hidden by `python3 -m venv`
    ("/tmp", "1m", "cat: write error: No space left on device"),  # the wheels' upload
])
def test_a_disk_full_during_deploy_names_step_and_cause_then_deploy_repairs(lab, site, mount, size, cause):
    inventory, before = site
    sh(lab, HOST, f"mount -t tmpfs -o size={size},mode=0755 selfvpn-test-full {mount}")
    try:
        run = cli("deploy", inventory)
    finally:
        sh(lab, HOST, f"umount -l {mount}")  # lazily: a process may still have a file open there
    failed = [line for line in run.out.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1 and failed[0].startswith(f"failed: [{HOST}] vpn-runtime: {HOST}: `"), run.out
    assert failed[0].endswith(f"{cause} (free space on the host, then run deploy again: it picks up where it "
                              "stopped)"), failed[0]
    assert run.rc == 6 and (run.failed, run.unreachable) == (1, 0)
    assert run.error.startswith(f"error: 1 of 1 hosts did not finish: {HOST}: step 'vpn-runtime': ")
    assert cause in run.error
    assert_repaired_then_torn_down(lab, inventory, before)
