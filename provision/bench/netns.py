"""The benchmark lab: two network namespaces joined by one veth pair, and processes in them.

    netns anc-cli  anc-c0 192.0.2.1/24  <-- veth, MTU 1500 -->  anc-s0 192.0.2.2/24  netns anc-srv
    tunnel 10.99.0.0/24 (server .1), inner MTU 1420

Rule 1 (the one rule): nothing here touches the machine's own network namespace.  The veth
pair is created inside anc-cli with its peer end put straight into anc-srv; every command
runs as `ip -n NS ...` or `ip netns exec NS ...`; a socket that must live in the lab is made
by a short-lived helper thread that `setns`-es itself into the lab, so the calling thread
never leaves the root namespace.
Rule 2: the lab is built fresh for every peer run and removed after it; a lab left by
someone else (the namespaces exist) is an error, never reused or deleted.
Rule 3: processes are started only with `Procs.spawn`, tracked by PID per side (client or
server), and stopped by PID: TERM, then KILL after a grace period.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from provision import errors

NS_CLI = "anc-cli"
NS_SRV = "anc-srv"
VETH_CLI = "anc-c0"
VETH_SRV = "anc-s0"
UNDER_CLI = "192.0.2.1"
UNDER_SRV = "192.0.2.2"
TUN_NET = "10.99.0.0/24"
TUN_SRV = "10.99.0.1"
TUN_CLI = "10.99.0.2"
TUN_MTU = 1420
LOCK = Path(os.environ.get("ANC_LOCK", "/tmp/bench.lock"))
CLONE_NEWNET = 0x40000000


class LabError(errors.LabError):
    """The bench lab could not be built, or a command in it failed."""


def run(argv: Sequence[str], timeout: float = 30.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a short command; with `check`, a failure is a LabError naming the command."""
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise LabError(f"{' '.join(argv)}: exit {r.returncode}: {(r.stderr or r.stdout).strip()[-300:]}")
    return r


def in_ns(ns: str, *argv: str) -> list[str]:
    """The argv that runs `argv` inside namespace `ns` (ip execs it: the PID is the command's)."""
    return ["ip", "netns", "exec", ns, *argv]


def ns_exists(ns: str) -> bool:
    return Path(f"/run/netns/{ns}").exists()


def ns_pids(ns: str) -> list[int]:
    r = run(["ip", "netns", "pids", ns], check=False)
    return [int(p) for p in r.stdout.split()]


def lab_up() -> None:
    """Build the two namespaces and the veth between them; check the underlay answers."""
    for ns in (NS_CLI, NS_SRV):
        if ns_exists(ns):
            raise LabError(f"namespace {ns} already exists (another benchmark?); remove it with `ip netns del {ns}`")
    run(["ip", "netns", "add", NS_CLI])
    run(["ip", "netns", "add", NS_SRV])
    run(["ip", "-n", NS_CLI, "link", "add", VETH_CLI, "mtu", "1500", "type", "veth",
         "peer", "name", VETH_SRV, "mtu", "1500", "netns", NS_SRV])
    for ns, dev, addr in ((NS_CLI, VETH_CLI, UNDER_CLI), (NS_SRV, VETH_SRV, UNDER_SRV)):
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        run(["ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev])
        run(["ip", "-n", ns, "link", "set", dev, "up"])
    if not wait_for(5.0, lambda: run(in_ns(NS_CLI, "ping", "-c1", "-W1", "-q", UNDER_SRV), check=False).returncode == 0):
        raise LabError("lab: the underlay does not answer ping")


def lab_down() -> list[str]:
    """Remove the lab; processes still inside get TERM then KILL. Returns what was left."""
    return remove_namespaces((NS_CLI, NS_SRV))


def remove_namespaces(names: tuple[str, ...]) -> list[str]:
    """Delete these namespaces; processes still inside get TERM then KILL. Returns them."""
    left: list[str] = []
    for ns in names:
        if not ns_exists(ns):
            continue
        for pid in ns_pids(ns):
            left.append(f"pid {pid} ({comm(pid)}) in {ns}")
            stop_pid(pid, grace=2.0)
        run(["ip", "netns", "del", ns], check=False)
    return left


def extra_devices() -> list[str]:
    """Devices in the lab other than lo and the veth ends (what a peer forgot to remove)."""
    found = []
    for ns in (NS_CLI, NS_SRV):
        for line in run(["ip", "-n", ns, "-br", "link"], check=False).stdout.splitlines():
            name = line.split()[0].split("@")[0] if line.split() else ""
            if name and name not in ("lo", VETH_CLI, VETH_SRV):
                found.append(f"{name} in {ns}")
    return found


def wait_for(timeout: float, ok: Callable[[], bool], every: float = 0.01) -> bool:
    """Poll `ok` until it holds or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ok():
                return True
        except (OSError, subprocess.SubprocessError):
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(every)


def has_address(ns: str, dev: str, addr: str) -> bool:
    r = run(["ip", "-n", ns, "-br", "addr", "show", "dev", dev], check=False)
    return f"{addr}/" in r.stdout


def listening(ns: str, port: int, proto: str = "t") -> bool:
    r = run(in_ns(ns, "ss", f"-Hl{proto}n", f"sport = :{port}"), check=False)
    return bool(r.stdout.strip())


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def stop_pid(pid: int, grace: float = 5.0) -> None:
    """TERM `pid`, KILL it if still there after `grace` seconds (by PID only)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if not wait_for(grace, lambda: not Path(f"/proc/{pid}").exists() or zombie(pid), every=0.05):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


# --- sockets inside the lab, made without the caller leaving the root namespace -----------

_libc = ctypes.CDLL(None, use_errno=True)


def socket_in(ns: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket living in namespace `ns`, made by a helper thread that joins `ns` then ends."""
    box: dict[str, object] = {}

    def make() -> None:
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {ns} failed")
            box["sock"] = socket.socket(family, kind, proto)
        except BaseException as e:  # handed to the caller below
            box["error"] = e
        finally:
            os.close(fd)

    helper = threading.Thread(target=make, name=f"setns-{ns}")
    helper.start()
    helper.join()
    if "error" in box:
        raise LabError(f"socket in {ns}: {box['error']}")
    return box["sock"]  # type: ignore[return-value]


# --- processes ---------------------------------------------------------------------------

@dataclass
class Proc:
    role: str  # "client" or "server"
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def exited(self) -> int | None:
        return self.popen.poll()

    def tail(self, chars: int = 400) -> str:
        try:
            text = self.log.read_text(errors="replace").strip()
        except OSError:
            return ""
        return " | ".join(text[-chars:].splitlines()[-6:])


@dataclass
class Procs:
    """Every long-running process of one peer run, by side, stopped in reverse order."""

    logs: Path
    tag: str
    started: list[Proc] = field(default_factory=list)

    def spawn(self, role: str, ns: str, name: str, argv: Sequence[str],
              env: Mapping[str, str] | None = None) -> Proc:
        log = self.logs / f"{self.tag}-{name}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(in_ns(ns, *argv), stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})
        proc = Proc(role, name, popen, log)
        self.started.append(proc)
        return proc

    def pids(self, role: str) -> list[int]:
        return [p.pid for p in self.started if p.role == role and p.exited() is None]

    def dead(self) -> Proc | None:
        """The first tracked process that has exited, if any."""
        return next((p for p in self.started if p.exited() is not None), None)

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            stop_pid(proc.pid)
            try:
                proc.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.started.clear()
