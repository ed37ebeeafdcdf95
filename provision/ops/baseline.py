"""`baseline`: kernel values that no step of ours sets but the services we start may
change (the TCP Fast Open key appears once something listens with TFO), written down on
the first deploy so that teardown puts them back.

Rule: it journals only when the host has no journal yet (the first change of a first
deploy); afterwards it is `ok`, so a second deploy still reports changed=0.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from provision.connection import Remote
from provision.fact import gather
from provision.journal import undo
from provision.operation import Change, Context, NoChange, Operation, Outcome
from provision.ops.sysctl import KEY, sysctl_fact


@dataclass(frozen=True)
class BaselineState:
    journal_exists: bool
    values: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class BaselineOp(Operation[BaselineState]):
    """Remember `sysctls` (their values now) for teardown, on a host we never changed."""

    op = "baseline"
    sysctls: tuple[str, ...]

    def validate(self) -> None:
        for key in self.sysctls:
            if not KEY.fullmatch(key):
                raise ValueError(f"sysctls: {key!r} does not look like net.ipv4.ip_forward")

    def gather(self, remote: Remote, ctx: Context) -> BaselineState:
        exists = remote.run(f"[ -e {shlex.quote(ctx.state.journal)} ]", check=False).rc == 0
        if exists:
            return BaselineState(True, ())
        return BaselineState(False, tuple((k, gather(remote, sysctl_fact(k))) for k in self.sysctls))

    def decide(self, state: BaselineState, ctx: Context) -> Outcome:
        if state.journal_exists:
            return NoChange("the host's journal holds its baseline")
        records = tuple(undo("sysctl_changed", key=k, old=v) for k, v in state.values)
        keys = ", ".join(k for k, _ in state.values)
        return Change(f"remember {keys} for teardown", (), records)
