"""One lab host: an overlay copy of the image, prepared for its role, booted by
systemd-nspawn inside the host's network namespace.

Rule 1: a host's writable layer lives under `STATE_DIR/hosts/NAME`; removing that folder
(after unmounting) removes every trace of the host.
Rule 2: nspawn runs detached in its own session; it is found again by the PID recorded
in the lab state, and its container init by walking its children.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from provision.errors import LabError
from provision.lab import local
from provision.lab.image import ADMIN_USER, image_dir
from provision.lab.topology import PREFIX, LabHost

STATE_DIR = Path(os.environ.get("VPNLAB_STATE", "/var/lib/vpnlab"))
NSENTER = ("nsenter", "--mount", "--uts", "--ipc", "--net", "--pid", "--cgroup")
ENV = ("env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
       "HOME=/root", "LANG=C.UTF-8", "TERM=xterm")


@dataclass(frozen=True)
class Paths:
    base: Path

    @property
    def upper(self) -> Path:
        return self.base / "upper"

    @property
    def work(self) -> Path:
        return self.base / "work"

    @property
    def root(self) -> Path:
        return self.base / "root"


def paths(h: LabHost) -> Paths:
    return Paths(STATE_DIR / "hosts" / h.name)


def mount_root(h: LabHost) -> Path:
    p, image = paths(h), image_dir()
    for d in (p.upper, p.work, p.root):
        d.mkdir(parents=True, exist_ok=True)
    lower = f"{image / 'internet'}:{image / 'rootfs'}" if h.role == "router" else str(image / "rootfs")
    local.run(["mount", "-t", "overlay", "overlay", "-o",
               f"lowerdir={lower},upperdir={p.upper},workdir={p.work}", str(p.root)])
    return p.root


def prepare(h: LabHost, root: Path, pubkey: str, admin_password: str) -> str:
    """Write the host's own files before it boots; return its SSH host public key."""
    _write(root / "etc/hostname", h.name + "\n")
    _write(root / "etc/hosts", f"127.0.0.1 localhost\n127.0.1.1 {h.name}\n::1 localhost ip6-localhost\n")
    local.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", h.name,
               "-f", str(root / "etc/ssh/ssh_host_ed25519_key")])
    sshd = ["PasswordAuthentication no", f"Port {h.ssh_port}"]
    if h.ssh_user == "root":
        _authorize(root / "root/.ssh", pubkey, 0, 0)
    else:
        sshd.append("PermitRootLogin no")
        _authorize(root / f"home/{h.ssh_user}/.ssh", pubkey, *_ids(root, h.ssh_user))
        _set_password(root, h.ssh_user, admin_password)
    _write(root / "etc/ssh/sshd_config.d/vpnlab.conf", "\n".join(sshd) + "\n")
    return (root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[1]


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _authorize(ssh_dir: Path, pubkey: str, uid: int, gid: int) -> None:
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write(ssh_dir / "authorized_keys", pubkey, 0o600)
    for p in (ssh_dir, ssh_dir / "authorized_keys"):
        os.chown(p, uid, gid)


def _ids(root: Path, user: str) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        f = line.split(":")
        if f[0] == user:
            return int(f[2]), int(f[3])
    raise LabError(f"lab: image has no user {user!r}", "rebuild the image: rm -rf /var/cache/vpnlab")


def _set_password(root: Path, user: str, password: str) -> None:
    shadow = root / "etc/shadow"
    hashed = local.out(["openssl", "passwd", "-6", "-stdin"], input=password.encode()).strip()
    lines = [f"{user}:{hashed}:" + ":".join(l.split(":")[2:]) if l.startswith(user + ":") else l
             for l in shadow.read_text().splitlines()]
    shadow.write_text("\n".join(lines) + "\n")


def boot(h: LabHost, root: Path, image: Path) -> int:
    """Start nspawn detached; return its PID."""
    argv = ["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--boot",
            f"--machine={h.machine}", f"--hostname={h.name}", "--directory", str(root),
            f"--network-namespace-path=/run/netns/{h.netns}",
            "--capability=CAP_NET_ADMIN,CAP_NET_RAW", "--console=passive",
            "--resolv-conf=off", "--timezone=off", "--link-journal=no"]
    if h.role == "router":
        argv.append(f"--bind-ro={image / 'mirror'}:/srv/mirror")
    log = open(paths(h).base / "console.log", "wb")
    env = dict(os.environ, SYSTEMD_NSPAWN_API_VFS_WRITABLE="network")
    groups = make_cgroups(h)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            start_new_session=True, env=env,
                            preexec_fn=lambda: _join_cgroups(groups))
    return proc.pid


def make_cgroups(h: LabHost) -> list[Path]:
    """A cgroup of its own per host in each systemd-managed hierarchy, so that the
    containers' systemds never share (and fight over) one `payload` subtree."""
    groups = [root / h.machine for root in cgroup_roots()]
    for g in groups:
        g.mkdir(exist_ok=True)
    return groups


def _join_cgroups(groups: list[Path]) -> None:
    for g in groups:
        (g / "cgroup.procs").write_text(str(os.getpid()))


def remove_cgroups() -> None:
    """Remove the lab's cgroups (deepest first); they are empty once the hosts stopped."""
    for top in lab_cgroups():
        for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass


def cgroup_roots() -> list[Path]:
    """The hierarchies systemd manages: the unified one alone (cgroup v2), or the
    name=systemd and unified ones (hybrid, as on this project's machines)."""
    top = Path("/sys/fs/cgroup")
    if (top / "cgroup.controllers").exists():
        return [top]
    return [p for p in (top / "systemd", top / "unified") if (p / "cgroup.procs").exists()]


def lab_cgroups() -> list[str]:
    return [str(p) for root in cgroup_roots() for p in root.glob(PREFIX + "*")]


def init_pid(nspawn_pid: int) -> int | None:
    """The container's PID 1, as seen from this machine: the descendant of nspawn whose
    innermost PID is 1."""
    todo = [nspawn_pid]
    while todo:
        pid = todo.pop()
        if pid != nspawn_pid and _inner_pid(pid) == 1:
            return pid
        todo.extend(_children(pid))
    return None


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return kids


def _inner_pid(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    except OSError:
        return None
    return None


def wait_running(h: LabHost, nspawn_pid: int, timeout: float = 90) -> int:
    """Wait until systemd in the host reports the boot finished; return the init PID."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = init_pid(nspawn_pid)
        if pid and _system_state(pid) in ("running", "degraded"):
            return pid
        if not alive(nspawn_pid):
            break
        time.sleep(0.3)
    log = (paths(h).base / "console.log").read_text(errors="replace")[-400:]
    raise LabError(f"lab: host {h.name} did not boot", f"its console said: {log!r}")


def _system_state(pid: int) -> str:
    proc = local.run([*enter(pid), "systemctl", "is-system-running"], check=False, timeout=20)
    return proc.stdout.decode().strip()


def enter(pid: int) -> list[str]:
    """argv prefix that runs a command inside the host whose init is `pid`."""
    return [*NSENTER, "--target", str(pid), *ENV]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0]
    except (OSError, IndexError):
        return "zombie"


def stop(pids: list[int], timeout: float = 15) -> None:
    """SIGTERM (nspawn powers the container off), then SIGKILL what is left."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
        for pid in pids:
            _signal(pid, sig)
        deadline = time.monotonic() + wait
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.2)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
