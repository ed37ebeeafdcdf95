"""Shared fixtures.  Lab tests (marker `lab`) need root and bring the lab up once per
session (and down at its end, unless it was already up: several sessions may share one
lab); without root they are skipped, except in CI, where that is a failure."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    if os.environ.get("CI"):
        raise pytest.UsageError("CI must run the lab tests: run the suite as root")
    skip = pytest.mark.skip(reason="lab test: needs root (run the suite as root)")
    for item in items:
        if "lab" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def lab():
    """The running lab (brought up once; taken down at the end of the session)."""
    from provision.lab import lab as lab_mod

    from provision.lab import labinventory

    was_up = lab_mod.is_up(lab_mod.load_state())
    state = lab_mod.up(log=lambda *_: None)
    labinventory.write(state, Path(__file__).resolve().parent.parent / "inventory" / "lab.yml")
    yield state
    if not was_up and not os.environ.get("VPNLAB_KEEP"):
        lab_mod.down(log=lambda *_: None)


@pytest.fixture(scope="session")
def on(lab):
    """on(host, cmd) -> CompletedProcess: run a shell command as root inside a lab host."""
    from provision.lab import lab as lab_mod

    def run(host: str, cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        argv = [*lab_mod.exec_argv(host, lab), "sh", "-c", cmd]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"on {host}: `{cmd}` exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    return run
