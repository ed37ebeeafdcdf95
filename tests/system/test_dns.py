"""DNS: the pure choice, and resolv.conf backed up and restored byte for byte in a temp root."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from runtime import dns, undo
from runtime.dns import DnsPaths, ResolverFacts, choose
from runtime.undo import Journal

RESOLVED = Path("/run/systemd/resolve")
ORIGINAL = b"# by the admin\nnameserver 192.0.2.53\nsearch corp.example\noptions rotate"  # no final \n


@pytest.mark.parametrize("facts, method", [
    (ResolverFacts(True, "/usr/bin/resolvectl", "../run/systemd/resolve/stub-resolv.conf", True),
     "resolved"),
    (ResolverFacts(True, "/usr/bin/resolvectl", None, True), "resolved"),  # a copied stub file
    (ResolverFacts(True, "/usr/bin/resolvectl", None, False), "file"),  # resolved not in use
    (ResolverFacts(True, None, "/run/systemd/resolve/resolv.conf", False), "file"),  # no tool
    (ResolverFacts(False, "/usr/bin/resolvectl", "/run/systemd/resolve/stub-resolv.conf", True),
     "file"),  # not running
])
def test_choose(facts, method):
    assert choose(facts, RESOLVED) == method


def test_render_resolv_conf():
    assert dns.render_resolv_conf(["10.66.0.1", "fd66::1"]).endswith(
        b"nameserver 10.66.0.1\nnameserver fd66::1\n")


def paths(tmp_path: Path) -> DnsPaths:
    (tmp_path / "etc").mkdir()
    return DnsPaths(tmp_path / "etc" / "resolv.conf", tmp_path / "run" / "vpn-runtime",
                    tmp_path / "run" / "systemd" / "resolve")


def up_then_restore_in_a_new_process(p: DnsPaths, state: Path) -> bytes:
    """`up` points DNS at the tunnel (twice, as a reconnect does); a new Journal restores."""
    journal = Journal(state)
    assert dns.point_resolver(journal, "vpn0", ["10.66.0.1"], p) == "file"
    dns.point_resolver(journal, "vpn0", ["10.66.0.9"], p)
    during = p.resolv_conf.read_bytes()
    assert not p.resolv_conf.is_symlink()
    undo.restore(state)
    return during


def test_a_regular_file_comes_back_byte_for_byte_with_its_mode(tmp_path):
    p = paths(tmp_path)
    p.resolv_conf.write_bytes(ORIGINAL)
    os.chmod(p.resolv_conf, 0o640)

    during = up_then_restore_in_a_new_process(p, tmp_path / "state.json")

    assert b"nameserver 10.66.0.9\n" in during and b"192.0.2.53" not in during
    assert p.resolv_conf.read_bytes() == ORIGINAL
    assert stat.S_IMODE(p.resolv_conf.stat().st_mode) == 0o640
    assert os.listdir(p.state_dir) == []  # backup gone with the state


def test_a_symlink_comes_back_as_the_same_symlink(tmp_path):
    p = paths(tmp_path)
    target = tmp_path / "run" / "stub-resolv.conf"
    target.parent.mkdir(parents=True)
    target.write_bytes(ORIGINAL)
    os.symlink("../run/stub-resolv.conf", p.resolv_conf)

    up_then_restore_in_a_new_process(p, tmp_path / "state.json")

    assert os.readlink(p.resolv_conf) == "../run/stub-resolv.conf"
    assert target.read_bytes() == ORIGINAL  # the link's target was never written


def test_a_missing_file_is_missing_again(tmp_path):
    p = paths(tmp_path)
    up_then_restore_in_a_new_process(p, tmp_path / "state.json")
    assert not os.path.lexists(p.resolv_conf)


def test_restoring_twice_keeps_the_original(tmp_path):
    p = paths(tmp_path)
    p.resolv_conf.write_bytes(ORIGINAL)
    state = tmp_path / "state.json"
    dns.point_resolver(Journal(state), "vpn0", ["10.66.0.1"], p)
    saved = state.read_text()
    undo.restore(state)
    state.write_text(saved)  # a `down` that died before deleting the state file
    undo.restore(state)
    assert p.resolv_conf.read_bytes() == ORIGINAL


def test_under_systemd_resolved_the_link_gets_dns_and_the_root_domain(tmp_path, monkeypatch):
    p = paths(tmp_path)
    p.resolved_dir.mkdir(parents=True)
    (p.resolved_dir / "io.systemd.Resolve").touch()
    os.symlink(str(p.resolved_dir / "stub-resolv.conf"), p.resolv_conf)
    fake = tmp_path / "bin" / "resolvectl"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/calls\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    assert shutil.which("resolvectl") == str(fake)  # never the machine's own resolver
    state = tmp_path / "state.json"

    method = dns.point_resolver(Journal(state), "vpn0", ["10.66.0.1", "fd66::1"], p)
    undo.restore(state)

    assert method == "resolved"
    assert (tmp_path / "calls").read_text().splitlines() == [
        "dns vpn0 10.66.0.1 fd66::1", "domain vpn0 ~.", "default-route vpn0 true", "revert vpn0"]
    assert os.readlink(p.resolv_conf) == str(p.resolved_dir / "stub-resolv.conf")
