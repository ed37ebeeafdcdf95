"""The lockout guard: armed before a firewall change, confirmed over a fresh connection,
firing on its own when nobody confirms.  The detached fallback runs for real in a local
shell (marker and effect under tmp_path); systemd timers wait for the lab."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from provision.connection import CommandFailed, HostUnreachable
from provision.guard import Arming, GuardTripped, LockoutGuard
from provision.journal import Journal, undo
from provision.operation import Change, Run
from provision.plan import Applier
from tests.provision.fakes import FakeRemote, ShellRemote

NFT_UNDO = "if nft list table inet selfvpn >/dev/null 2>&1; then nft delete table inet selfvpn; fi"
CHANGE = Change("load table inet selfvpn", (Run("nft -f /etc/selfvpn/selfvpn.nft"),),
                (undo("nft_table_created", family="inet", name="selfvpn"),), guard=True)
ARMING = Arming("ab12", (NFT_UNDO,))


def test_arm_and_confirm_commands():
    assert ARMING.revert_script() == f"if rm /run/selfvpn-guard-ab12 2>/dev/null; then {NFT_UNDO}; fi"
    arm = ARMING.arm_command()
    assert arm.startswith("umask 077 && touch /run/selfvpn-guard-ab12 && if command -v systemd-run")
    assert "systemd-run --quiet --unit=selfvpn-guard-ab12 --on-active=60" in arm
    assert "setsid sh -c 'sleep 60; if rm /run/selfvpn-guard-ab12" in arm
    assert ARMING.confirm_command().startswith("rm /run/selfvpn-guard-ab12 && ")


@dataclass
class Fresh:
    """A reconnect that hands out a fresh FakeRemote, or fails."""

    remote: FakeRemote | None

    def __call__(self) -> FakeRemote:
        if self.remote is None:
            raise HostUnreachable("vps1 (203.0.113.1:22): unreachable: timed out")
        return self.remote


def guarded(fresh: FakeRemote | None, extra: dict | None = None):
    session = FakeRemote(commands={ARMING.arm_command(): (0, ""), **(extra or {})})
    return session, LockoutGuard(session, Fresh(fresh), token=lambda: "ab12")


def test_confirmed_over_a_fresh_connection():
    fresh = FakeRemote(commands={ARMING.confirm_command(): (0, "")})
    session, guard = guarded(fresh)
    done = []
    guard(CHANGE, lambda: done.append(True))
    assert session.ran == [ARMING.arm_command()] and done == [True]
    assert fresh.ran == [ARMING.confirm_command()] and fresh.closed


def test_no_fresh_connection_leaves_the_revert_armed():
    session, guard = guarded(None)
    with pytest.raises(GuardTripped, match="no fresh SSH connection .* reverts it within 60 s"):
        guard(CHANGE, lambda: None)
    assert session.ran == [ARMING.arm_command()]  # nothing cancels the revert


def test_guard_that_already_fired_is_reported():
    fresh = FakeRemote(commands={ARMING.confirm_command(): (1, "")})
    with pytest.raises(GuardTripped, match="fired before it was confirmed"):
        guarded(fresh)[1](CHANGE, lambda: None)


def test_failed_apply_reverts_at_once():
    session, guard = guarded(None, {ARMING.revert_script(): (0, "")})

    def fail() -> None:
        raise CommandFailed("vps1: `nft -f ...` exited 1")

    with pytest.raises(CommandFailed):
        guard(CHANGE, fail)
    assert session.ran == [ARMING.arm_command(), ARMING.revert_script()]


def test_applier_uses_the_guard_only_for_guarded_changes():
    calls = []
    remote = FakeRemote(commands={"true": (0, "")})
    journal = Journal(FakeRemote())
    applier = Applier(remote, journal, guard=lambda change, perform: calls.append(change))
    applier.apply(Change("plain", (Run("true"),)))
    applier.apply(Change("guarded", (), guard=True))
    assert [c.description for c in calls] == ["guarded"] and remote.ran == ["true"]


# ---- the detached fallback, for real, with a 1 second timeout ---------------------------


def arm_detached(tmp_path: Path) -> tuple[ShellRemote, Arming, Path]:
    effect = tmp_path / "reverted"
    arming = Arming("t1", (f"touch {effect}",), timeout=1, run_dir=str(tmp_path))
    shell = ShellRemote()
    shell.run(f"touch {arming.marker} && {arming.detached_command()}")
    return shell, arming, effect


def wait_past_timeout(effect: Path) -> None:
    deadline = time.monotonic() + 2.2
    while time.monotonic() < deadline and not effect.exists():
        time.sleep(0.1)


def test_unconfirmed_revert_fires_on_its_own(tmp_path):
    _, arming, effect = arm_detached(tmp_path)
    wait_past_timeout(effect)
    assert effect.exists() and not Path(arming.marker).exists()


def test_confirmed_revert_does_nothing(tmp_path):
    shell, arming, effect = arm_detached(tmp_path)
    assert shell.run(arming.claim_command()).rc == 0
    wait_past_timeout(effect)
    assert not effect.exists()
