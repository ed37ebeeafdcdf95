"""Shared pieces of the provisioning tests: a handler op for tests, and a way to teach a
FakeRemote the exact commands of a planned change."""

from __future__ import annotations

from dataclasses import dataclass

from provision.journal import Entry, Journal, StateDir
from provision.operation import Change, Context, Operation, Outcome, Put, Run
from provision.ops import DEFAULT_REGISTRY
from tests.provision.fakes import FakeRemote

CLOCK = "2026-11-25T12:00:00Z"


def fixed_clock() -> str:
    return CLOCK


@dataclass(frozen=True)
class RestartOp(Operation[None]):
    """A handler for tests: always a change (restarting is an action, not a state)."""

    op = "restart"
    unit: str

    def gather(self, remote: object, ctx: Context) -> None:
        return None

    def decide(self, state: None, ctx: Context) -> Outcome:
        return Change(f"restart {self.unit}", (Run(f"systemctl restart {self.unit}"),))


REGISTRY = DEFAULT_REGISTRY.with_ops(RestartOp)


def expect_apply(remote: FakeRemote, change: Change, step: str, state: StateDir = StateDir()) -> list[str]:
    """Teach `remote` the journal appends and actions of `change`; return them in order."""
    expected = []
    for record in change.undo:
        cmd = Journal.record_command(state, Entry(record, step, CLOCK))
        expected.append(cmd)
    for action in change.actions:
        if isinstance(action, Put):
            remote.allowed_puts.add(action.path)
            expected.append(f"put {action.path}")
        else:
            expected.append(action.cmd)
    for cmd in expected:
        if not cmd.startswith("put "):
            remote.commands[cmd] = (0, "")
    return expected
