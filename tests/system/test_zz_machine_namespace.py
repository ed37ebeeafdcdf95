"""Runs last: the machine's own network namespace is as the system tests found it."""

from __future__ import annotations

import subprocess

import pytest

from tests.system.conftest import machine_network

pytestmark = pytest.mark.lab

DEFAULT_RULES4 = ["0:\tfrom all lookup local", "32766:\tfrom all lookup main",
                  "32767:\tfrom all lookup default"]


def test_the_machine_namespace_is_untouched(machine_network_before):
    now = machine_network()
    assert "selfvpn" not in now["nft"]
    assert [line.strip() for line in now["rules4"].splitlines()] == DEFAULT_RULES4
    assert "fwmark" not in now["rules6"] and "suppress_prefixlength" not in now["rules6"]
    assert now == machine_network_before


def test_no_test_namespace_is_left_behind():
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert [n for n in names.split() if n.startswith("vpnlab-t-")] == []
