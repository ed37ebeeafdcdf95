"""Running commands on this machine for the lab: one place that echoes and checks them.

Rule: commands are argument lists, never shell strings built from input.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

from provision.errors import LabError

VERBOSE = bool(os.environ.get("VPNLAB_VERBOSE"))


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    input: bytes | None = None,
    timeout: float | None = 600,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run `argv`, capture output; raise LabError with its stderr when it fails and `check`."""
    if VERBOSE:
        print("[#] " + " ".join(argv), file=sys.stderr)
    proc = subprocess.run(
        list(argv), input=input, capture_output=True, timeout=timeout, env=env, cwd=cwd
    )
    if check and proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        last = err[-1] if err else f"exit {proc.returncode}"
        raise LabError(f"lab: `{' '.join(argv)}` failed: {last}", "run with VPNLAB_VERBOSE=1 for details")
    return proc


def out(argv: Sequence[str], **kw) -> str:
    """Run and return stdout as text."""
    return run(argv, **kw).stdout.decode()


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("lab: needs root (namespaces, mounts, containers)", "run it as root")
