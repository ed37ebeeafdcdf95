"""Fixtures of the system tests: a throwaway `vpnlab-t-` namespace per lab test."""

from __future__ import annotations

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
