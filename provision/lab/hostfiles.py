"""Reaching into a running lab host from this machine: files, commands, the runtime.

Rule: through the host's own namespaces (its root filesystem under /proc/PID/root and
nsenter), never through the machine's network; for lab tools, tests and the demo only.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from provision import wheelhouse
from provision.lab import lab as lab_mod


def root_of(state, host: str) -> Path:
    return Path(f"/proc/{state.hosts[host].init_pid}/root")


def put(state, host: str, path: str, data: str | bytes, mode: int = 0o644) -> None:
    target = root_of(state, host) / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data.encode() if isinstance(data, str) else data)
    target.chmod(mode)


def sh(state, host: str, cmd: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a shell command as root in the host; AssertionError with its output if it fails."""
    argv = [*lab_mod.exec_argv(host, state), "sh", "-c", cmd]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"on {host}: `{cmd}` exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def install_runtime(state, host: str) -> None:
    """Install vpn-runtime in the host from the operator's wheels (as a user would with pip)."""
    wheels = wheelhouse.ensure()
    dest = root_of(state, host) / "tmp/selfvpn-wheels"
    subprocess.run(["rm", "-rf", str(dest)], check=True)
    subprocess.run(["cp", "-r", str(wheels), str(dest)], check=True)
    sh(state, host, wheelhouse.install_script("/tmp/selfvpn-wheels") + "; rm -rf /tmp/selfvpn-wheels", timeout=300)
