"""`runtime`: the vpn-runtime installed in its own venv from wheels we ship over SSH.

Rule 1: the host never reaches a package registry: the wheel folder for the host's Python
(`provision.wheelhouse`) travels as one tar over the SSH connection and pip installs
with `--no-index`.
Rule 2: the installed version is compared with the wheelhouse's (which names the runtime's
source hash), so an unchanged runtime is a no-op and a changed one is shipped again.
Rule 3: what was there before is what teardown brings back: no venv -> the venv and the
link are removed; somebody's older venv -> it is saved as a tar and restored.
Rule 4: the wheels are built (or taken from the cache) only when the plan is applied.
"""

from __future__ import annotations

import hashlib
import io
import re
import shlex
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path

from provision import wheelhouse
from provision.connection import Remote, Result
from provision.fact import Fact, expect_success, gather
from provision.journal import undo
from provision.operation import Change, Context, Exchange, NoChange, Operation, Outcome, Run

VENV = wheelhouse.INSTALL_DIR
LINK = "/usr/local/bin/vpn-runtime"
BINARY = f"{VENV}/bin/vpn-runtime"
TARBALL = "/tmp/selfvpn-runtime-wheels.tar"
UNPACKED = "/tmp/selfvpn-runtime-wheels"
PYTHON = re.compile(r"3\.\d{1,2}")
VERSION_CMD = (f"if [ -e {VENV} ]; then {VENV}/bin/python -c 'import importlib.metadata as m; "
               f"print(m.version(\"{wheelhouse.DIST}\"))' 2>/dev/null || echo unknown; else echo absent; fi; "
               f"python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])' || echo none; "
               f"readlink {LINK} || echo nolink")


@dataclass(frozen=True)
class RuntimeState:
    installed: str  # a version, "unknown" (a venv without our package) or "absent"
    python: str
    link: str  # the link's target, or "nolink"


def parse_runtime(result: Result) -> RuntimeState:
    lines = expect_success(result).split("\n")
    if len(lines) < 3:
        raise ValueError(f"expected three lines, got {result.stdout!r}")
    installed, python, link = (line.strip() for line in lines[:3])
    if python == "none":
        raise ValueError("no python3 on the host (install python3 and python3-venv)")
    if not PYTHON.fullmatch(python):
        raise ValueError(f"python3 says its version is {python!r}")
    return RuntimeState(installed, python, link)


RUNTIME_FACT: Fact[RuntimeState] = Fact("vpn-runtime", VERSION_CMD, parse_runtime)


_WHEELHOUSE = threading.Lock()  # hosts deploy in threads; the wheel cache takes one builder


def shipped_wheels(python: str) -> bytes:
    with _WHEELHOUSE:
        folder = wheelhouse.ensure(python)
    return wheel_tar(folder)


def wheel_tar(folder: Path) -> bytes:
    """The wheel folder as one uncompressed tar (wheels are zips already)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for path in sorted(folder.glob("*.whl")):
            tar.add(path, arcname=path.name)
    return out.getvalue()


@dataclass(frozen=True)
class RuntimeOp(Operation[RuntimeState]):
    """The runtime at `wheelhouse.version()`, in /opt/vpn-runtime, linked into /usr/local/bin."""

    op = "runtime"

    def gather(self, remote: Remote, ctx: Context) -> RuntimeState:
        return gather(remote, RUNTIME_FACT)

    def decide(self, state: RuntimeState, ctx: Context) -> Outcome:
        wanted = wheelhouse.version()
        if state.installed == wanted and state.link == BINARY:
            return NoChange(f"vpn-runtime {wanted} installed")
        actions, records = self._keep_old(state, ctx)
        ship = Exchange(f"ship the runtime's wheels for Python {state.python}", TARBALL,
                        lambda _: shipped_wheels(state.python), mode=0o600)
        install = Run(self.install_command())
        diff = f"--- before: {VENV} ({state.installed})\n+++ after: {VENV} ({wanted})\n"
        return Change(f"install vpn-runtime {wanted} (was {state.installed})",
                      (*actions, ship, install), records, diff)

    def _keep_old(self, state: RuntimeState, ctx: Context) -> tuple[tuple[Run, ...], tuple]:
        records = [] if state.link != "nolink" else [undo("file_created", path=LINK)]
        if state.installed == "absent":
            return (), (undo("tree_created", path=VENV), *records)
        backup = f"{ctx.state.backups}/runtime-{hashlib.sha256(state.installed.encode()).hexdigest()[:12]}.tar"
        save = Run(f"umask 077 && mkdir -p {shlex.quote(ctx.state.backups)} && "
                   f"{{ [ -e {shlex.quote(backup)} ] || tar -cpf {shlex.quote(backup)} -C / {VENV.lstrip('/')}; }}")
        return (save,), (undo("tree_replaced", path=VENV, backup=backup), *records)

    @staticmethod
    def install_command() -> str:
        script = wheelhouse.install_script(UNPACKED)
        return (f"rm -rf {UNPACKED} && mkdir -m 700 {UNPACKED} && tar -xf {TARBALL} -C {UNPACKED} && "
                f"(export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1; {script}); "
                f"rc=$?; rm -rf {UNPACKED} {TARBALL}; exit $rc")
