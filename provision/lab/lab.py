"""Bringing the lab up and down, and saying what is running.

Rule 1: `up` on a running lab changes nothing; `up` after a crash first clears what is
left, then builds afresh.
Rule 2: `down` finds everything by prefix and PID (namespaces `vpnlab-*`, processes in
them, mounts under STATE_DIR), so it works after a crashed run, and twice.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from provision.errors import LabError
from provision.hostkeys import known_name
from provision.lab import container, image, local, net
from provision.lab.container import STATE_DIR
from provision.lab.topology import HOSTS, INTERNET, LabHost, host

STATE_FILE = STATE_DIR / "state.json"
SSH_DIR = STATE_DIR / "ssh"
KEY = SSH_DIR / "id_ed25519"
KNOWN_HOSTS = SSH_DIR / "known_hosts"
PROXY = f"ip netns exec {INTERNET.netns} socat STDIO TCP:%h:%p"


@dataclass
class HostState:
    nspawn_pid: int
    init_pid: int
    host_key: str


@dataclass
class LabState:
    image: str
    admin_password: str
    hosts: dict[str, HostState] = field(default_factory=dict)

    def save(self) -> None:
        tmp = STATE_FILE.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(self), f, indent=1)
        tmp.rename(STATE_FILE)


def load_state() -> LabState | None:
    try:
        raw = json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return None
    hosts = {k: HostState(**v) for k, v in raw.pop("hosts").items()}
    return LabState(**raw, hosts=hosts)


def is_up(state: LabState | None) -> bool:
    if state is None or set(state.hosts) != {h.name for h in HOSTS}:
        return False
    return all(container.alive(s.nspawn_pid) for s in state.hosts.values())


def up(log=print) -> LabState:
    local.require_root()
    state = load_state()
    if is_up(state):
        log("lab: already up")
        return state
    down(log=lambda *_: None)
    img = image.ensure_image(log)
    _ensure_key()
    state = LabState(str(img), secrets.token_urlsafe(12))
    log("lab: wiring namespaces and booting hosts: " + ", ".join(h.name for h in HOSTS))
    net.wire_all()
    started = {h.name: _start(h, img, state) for h in HOSTS}
    for h in HOSTS:
        pid, key = started[h.name]
        state.hosts[h.name] = HostState(pid, container.wait_running(h, pid), key)
        state.save()
    for h in HOSTS:
        _wait_link_local(h, state.hosts[h.name].init_pid)
    _write_known_hosts(state)
    return state


def reset_host(name: str, log=print) -> LabState:
    """Give one host a fresh disk and a fresh network namespace (no nft table or sysctl
    of an earlier run survives), then boot it.  For tests that need a never-touched host."""
    state, h = running_state(), host(name)
    container.stop([state.hosts[name].nspawn_pid])
    paths = container.paths(h)
    for mnt in image.mounts_below(paths.base):
        local.run(["umount", mnt])
    shutil.rmtree(paths.base)
    local.run(["ip", "netns", "del", h.netns])  # nft tables and sysctls live in the namespace
    local.run(["ip", "netns", "add", h.netns])
    net.ip(h.netns, "link", "set", "lo", "up")
    net.wire_host(h)
    for addr in (h.addr4, h.addr6):  # the router must not keep the old port's MAC
        net.ip(INTERNET.netns, "neigh", "flush", "to", addr, check=False)
    pid, key = _start(h, Path(state.image), state)
    state.hosts[name] = HostState(pid, container.wait_running(h, pid), key)
    state.save()
    _wait_link_local(h, state.hosts[name].init_pid)
    _write_known_hosts(state)
    log(f"lab: {name} reset to a fresh disk")
    return state


def reboot_host(name: str, log=print) -> LabState:
    """Power a host off (SIGTERM to nspawn: a clean shutdown) and boot it again on the
    same disk, as a reboot of a VPS does; its network namespace stays, like its NIC."""
    state, h = running_state(), host(name)
    container.stop([state.hosts[name].nspawn_pid])
    root = container.paths(h).root
    pid = container.boot(h, root, Path(state.image))
    state.hosts[name] = HostState(pid, container.wait_running(h, pid), state.hosts[name].host_key)
    state.save()
    _wait_link_local(h, state.hosts[name].init_pid)
    log(f"lab: {name} rebooted")
    return state


def _start(h: LabHost, img: Path, state: LabState) -> tuple[int, str]:
    root = container.mount_root(h)
    key = container.prepare(h, root, KEY.with_suffix(".pub").read_text(), state.admin_password)
    return container.boot(h, root, img), key


def _wait_link_local(h: LabHost, pid: int, timeout: float = 10) -> None:
    """Until eth0's IPv6 link-local address exists and is no longer tentative, so that a
    snapshot taken now does not differ from one taken a second later."""
    if h is INTERNET:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = local.out([*container.enter(pid), "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"],
                        check=False)
        if out.strip() and "tentative" not in out:
            return
        time.sleep(0.1)


def _ensure_key() -> None:
    SSH_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not KEY.exists():
        local.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vpnlab-operator", "-f", str(KEY)])


def _write_known_hosts(state: LabState) -> None:
    lines = []
    for h in HOSTS:
        if h.addr4:
            lines.append(f"{known_name(h.addr4, h.ssh_port)} ssh-ed25519 {state.hosts[h.name].host_key}")
    KNOWN_HOSTS.write_text("\n".join(lines) + "\n")


def down(log=print) -> None:
    """Stop every container, kill every process left in lab namespaces, unmount, delete."""
    local.require_root()
    state = load_state()
    nspawns = [s.nspawn_pid for s in state.hosts.values()] if state else []
    container.stop([p for p in nspawns if _is_nspawn(p)])
    leftovers = [p for ns in net.lab_namespaces() for p in net.pids_in(ns)]
    container.stop(leftovers, timeout=5)
    for mnt in image.mounts_below(STATE_DIR):
        if local.run(["umount", mnt], check=False).returncode:
            local.run(["umount", "--lazy", mnt], check=False)
    net.delete_namespaces()
    container.remove_cgroups()
    shutil.rmtree(STATE_DIR / "hosts", ignore_errors=True)
    STATE_FILE.unlink(missing_ok=True)
    _check_clean()
    log("lab: down")


def _is_nspawn(pid: int) -> bool:
    try:
        return b"systemd-nspawn" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _check_clean() -> None:
    left = net.lab_namespaces() + image.mounts_below(STATE_DIR) + container.lab_cgroups()
    if left:
        raise LabError("lab: could not remove " + ", ".join(left), "run `invoke lab.down` again")


def running_state() -> LabState:
    state = load_state()
    if not is_up(state):
        raise LabError("lab: not up", "run `invoke lab.up` first")
    return state


def ssh_argv(name: str, state: LabState) -> list[str]:
    """OpenSSH command line that reaches a lab host from this machine."""
    h = host(name)
    return ["ssh", "-i", str(KEY), "-p", str(h.ssh_port), "-o", f"ProxyCommand={PROXY}",
            "-o", f"UserKnownHostsFile={KNOWN_HOSTS}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", f"{h.ssh_user}@{h.addr4}"]


def exec_argv(name: str, state: LabState) -> list[str]:
    """argv prefix that runs a command as root inside a lab host (nsenter, no SSH)."""
    host(name)
    return container.enter(state.hosts[name].init_pid)


def status(state: LabState | None) -> dict:
    up_now = is_up(state)
    hosts = []
    for h in HOSTS:
        s = state.hosts.get(h.name) if state else None
        hosts.append({
            "name": h.name, "role": h.role, "address": h.addr4 or None, "address6": h.addr6 or None,
            "netns": h.netns, "machine": h.machine,
            "init_pid": s.init_pid if s and up_now else None,
            "nspawn_pid": s.nspawn_pid if s and up_now else None,
            "ssh": _ssh_info(h, state) if h.addr4 else None,
        })
    return {"up": up_now, "image": state.image if state else None, "hosts": hosts}


def _ssh_info(h: LabHost, state: LabState | None) -> dict:
    info = {"host": h.addr4, "port": h.ssh_port, "user": h.ssh_user, "key": str(KEY),
            "proxy_command": PROXY, "known_hosts": str(KNOWN_HOSTS)}
    if state:
        info["command"] = " ".join(_quote(a) for a in ssh_argv(h.name, state))
    return info


def _quote(arg: str) -> str:
    return shlex.quote(arg)
