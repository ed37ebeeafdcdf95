"""Fixtures of the system tests: a throwaway `vpnlab-t-` namespace per lab test."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.system import nslab


@pytest.fixture
def ns() -> Iterator[str]:
    """A fresh, empty network namespace, deleted at the end of the test."""
    name = nslab.create_ns()
    try:
        yield name
    finally:
        nslab.delete_ns(name)


@pytest.fixture
def held(ns: str) -> Iterator[list[nslab.Held]]:
    """Long-running agents the test starts; SIGKILLed (by PID) before `ns` goes."""
    started: list[nslab.Held] = []
    try:
        yield started
    finally:
        for h in started:
            h.kill()


def machine_network() -> dict[str, str]:
    """What the system tests must never change in the machine's own namespace (read only)."""
    def read(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout

    return {"rules4": read("ip", "-4", "rule", "show"), "rules6": read("ip", "-6", "rule", "show"),
            "nft": read("nft", "list", "ruleset"), "tun": read("ip", "-o", "link", "show", "type", "tun"),
            "routes": read("ip", "route", "show", "table", "all")}


@pytest.fixture(scope="session", autouse=True)
def machine_network_before() -> dict[str, str]:
    """The machine's own namespace as the system tests found it."""
    return machine_network()
