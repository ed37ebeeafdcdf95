"""lab.up / lab.down: harmless twice, leave nothing behind (even after a crash), and
never touch the machine's own network."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from provision.lab import container, image, lab as lab_mod, net

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(bool(os.environ.get("VPNLAB_KEEP")),
                       reason="restarts the lab: not while it is shared (VPNLAB_KEEP)"),
]


def machine_network() -> dict:
    """The machine's own network state (read only)."""
    def out(*argv):
        return subprocess.run(argv, capture_output=True, text=True).stdout
    links = [l["ifname"] for l in json.loads(out("ip", "-j", "link") or "[]")]
    return {
        "routes": out("ip", "route", "show", "table", "all"),
        "routes6": out("ip", "-6", "route", "show", "table", "all"),
        "rules": out("ip", "rule") + out("ip", "-6", "rule"),
        "nft": out("nft", "list", "ruleset"),
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text(),
        "links": sorted(links),
    }


def nothing_left() -> list[str]:
    left = net.lab_namespaces() + image.mounts_below(container.STATE_DIR) + container.lab_cgroups()
    for p in Path("/proc").glob("[0-9]*"):
        try:
            if b"systemd-nspawn" in (p / "cmdline").read_bytes() and b"vpnlab-" in (p / "cmdline").read_bytes():
                left.append(f"process {p.name}")
        except OSError:
            pass
    return left


def test_up_twice_then_down_leaves_nothing_and_the_machine_unchanged(lab):
    before = machine_network()  # the session's lab is up: its namespaces are not the machine's
    again = lab_mod.up(log=lambda *_: None)
    assert again.hosts == lab.hosts, "a second up must not restart anything"
    lab_mod.down(log=lambda *_: None)
    assert nothing_left() == []
    assert machine_network() == before
    lab.__dict__.update(lab_mod.up(log=lambda *_: None).__dict__)  # hand the session a running lab again


def test_down_after_a_crashed_run(lab):
    # a crash: the lab's state file is lost and nspawn killed without a proper stop
    victim = lab.hosts["laptop2"].nspawn_pid
    os.kill(victim, signal.SIGKILL)
    lab_mod.STATE_FILE.unlink()
    lab_mod.down(log=lambda *_: None)
    assert nothing_left() == []
    lab.__dict__.update(lab_mod.up(log=lambda *_: None).__dict__)


def test_reset_host_gives_a_fresh_disk_and_keeps_the_others(lab, on):
    on("vps2", "touch /etc/dirty")
    on("laptop2", "touch /etc/dirty-too")
    state = lab_mod.reset_host("vps2", log=lambda *_: None)
    lab.hosts.update(state.hosts)
    assert on("vps2", "test -e /etc/dirty", check=False).returncode != 0
    assert on("vps2", "systemctl is-system-running").stdout.strip() == "running"
    assert on("laptop2", "test -e /etc/dirty-too && rm /etc/dirty-too").returncode == 0
