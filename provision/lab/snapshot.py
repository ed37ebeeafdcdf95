"""Host snapshots: a canonical picture of a lab host's state, and the diff of two.

Rule: a snapshot is plain text, the same bytes for the same state, so two snapshots are
compared with a unified diff and a test prints exactly what changed.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from provision.lab import local
from provision.lab.lab import LabState, exec_argv

PROBE = Path(__file__).parent / "probe" / "snapshot.py"


def take(name: str, state: LabState) -> str:
    """Run the probe inside the host (through its namespaces, no SSH) and return its text."""
    return local.out([*exec_argv(name, state), "python3", "-"], input=PROBE.read_bytes(), timeout=120)


def diff(before: str, after: str, label: str = "host") -> str:
    """Unified diff of two snapshots; empty when they are equal."""
    lines = difflib.unified_diff(before.splitlines(), after.splitlines(),
                                 f"{label} before", f"{label} after", lineterm="", n=1)
    return "\n".join(lines)
