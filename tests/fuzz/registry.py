"""Every fuzz target by name, and the budget of a bounded session.

Rule 1: names are the corpus folder names (tests/fuzz/corpus/<name>/).
Rule 2: the CI budget is FUZZ_SECONDS (default 40) shared by all targets; cores get twice
        the share of the others because each of their inputs runs TLS handshakes.
"""

from __future__ import annotations

import os

from tests.fuzz import (targets_cores, targets_data, targets_files, targets_native_path, targets_native_seal,
                        targets_native_seg, targets_netlink)
from tests.fuzz.engine import Target

TARGETS: dict[str, Target] = {t.name: t for t in (*targets_data.TARGETS, *targets_files.TARGETS,
                                                   *targets_cores.TARGETS, *targets_native_seal.TARGETS,
                                                   *targets_native_seg.TARGETS, *targets_native_path.TARGETS,
                                                   *targets_netlink.TARGETS)}
WEIGHT = {"server": 2.0, "client": 2.0}


def budget(total: float, names: list[str]) -> dict[str, float]:
    """Seconds per target so that they add up to `total`."""
    weights = {n: WEIGHT.get(n, 1.0) for n in names}
    scale = total / sum(weights.values())
    return {n: w * scale for n, w in weights.items()}


def ci_seconds() -> float:
    return float(os.environ.get("FUZZ_SECONDS", "40"))
