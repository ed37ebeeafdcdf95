"""The lockout guard: a firewall change over SSH reverts itself unless confirmed.

Rule 1: before the change, arm on the host a revert that fires after `timeout` seconds:
a transient systemd timer (`systemd-run --on-active=60 --unit=selfvpn-guard-TOKEN`), or,
without systemd, a detached `setsid sh -c 'sleep 60; ...'`.
Rule 2: the revert runs only if it removes the marker `/run/selfvpn-guard-TOKEN` first,
and confirmation is removing that same marker, so exactly one of the two wins.
Rule 3: confirmation goes over a FRESH SSH connection: if the change broke new
connections (the next deploy could not get in), nobody confirms and the host reverts.
Rule 4: if applying fails while the session still works, the revert runs at once.
"""

from __future__ import annotations

import secrets
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from provision.connection import CommandFailed, HostUnreachable, Remote
from provision.errors import ProvisionError
from provision.operation import Change
from provision.plan import revert_commands

GUARD_TIMEOUT = 60
q = shlex.quote


class GuardTripped(ProvisionError):
    """The change was (or is being) reverted by the lockout guard."""

    default_hint = "the firewall change would cut SSH; check the ruleset and the SSH port in the inventory"


@dataclass(frozen=True)
class Arming:
    """The host-side commands of one guarded change; pure, so tests read them."""

    token: str
    revert: tuple[str, ...]
    timeout: int = GUARD_TIMEOUT
    run_dir: str = "/run"

    @property
    def unit(self) -> str:
        return f"selfvpn-guard-{self.token}"

    @property
    def marker(self) -> str:
        return f"{self.run_dir}/selfvpn-guard-{self.token}"

    def revert_script(self) -> str:
        body = "; ".join(self.revert) or "true"
        return f"if {self.claim_command()} 2>/dev/null; then {body}; fi"

    def timer_command(self) -> str:
        return (f"systemd-run --quiet --unit={q(self.unit)} --on-active={self.timeout} "
                f"--timer-property=AccuracySec=1s /bin/sh -c {q(self.revert_script())}")

    def detached_command(self) -> str:
        script = f"sleep {self.timeout}; {self.revert_script()}"
        return f"setsid sh -c {q(script)} >/dev/null 2>&1 </dev/null &"

    def arm_command(self) -> str:
        systemd = "command -v systemd-run >/dev/null 2>&1 && [ -d /run/systemd/system ]"
        return (f"umask 077 && touch {q(self.marker)} && "
                f"if {systemd}; then {self.timer_command()}; else {self.detached_command()} fi")

    def claim_command(self) -> str:
        """Succeeds for whoever removes the marker first: the confirmation or the revert."""
        return f"rm {q(self.marker)}"

    def confirm_command(self) -> str:
        timer = q(self.unit + ".timer")
        return f"{self.claim_command()} && {{ systemctl stop {timer} >/dev/null 2>&1 || true; }}"


def new_token() -> str:
    return secrets.token_hex(4)


@dataclass(frozen=True)
class LockoutGuard:
    """Applies a `Change` under the guard; `reconnect` opens a fresh `Remote` to the host."""

    remote: Remote
    reconnect: Callable[[], Remote]
    timeout: int = GUARD_TIMEOUT
    token: Callable[[], str] = new_token

    def __call__(self, change: Change, perform: Callable[[], None]) -> None:
        arming = Arming(self.token(), revert_commands(change), self.timeout)
        self.remote.run(arming.arm_command())
        try:
            perform()
        except CommandFailed:
            self.remote.run(arming.revert_script(), check=False)
            raise
        self._confirm(arming)

    def _confirm(self, arming: Arming) -> None:
        name = self.remote.name
        try:
            fresh = self.reconnect()
        except HostUnreachable as exc:
            raise GuardTripped(f"{name}: no fresh SSH connection after the firewall change "
                               f"({exc.message}); the host reverts it within {arming.timeout} s") from None
        try:
            if fresh.run(arming.confirm_command(), check=False).rc != 0:
                raise GuardTripped(f"{name}: the guard fired before it was confirmed; the change was reverted")
        finally:
            fresh.close()

