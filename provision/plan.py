"""Plans and their application: the one place where the host is changed.

Rule 1: an operation's plan (its `Change`) is applied in two phases: first every undo
record is appended to the host's journal, then the actions run in order.  A crash in
between leaves journal entries whose undo is harmless (see `provision.journal`).
Rule 2: with `check`, plans are made and reported, and nothing is applied: no journal
entry, no action.  Facts still run (they only read).
Rule 3: a `Change` marked `guard` (a firewall change over SSH) runs under the lockout
guard given by the caller, which can cut the session; without one it runs plainly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from provision.connection import Remote
from provision.journal import Journal
from provision.operation import Action, Change, Context, Exchange, Operation, Outcome, Put

# A guard takes the change and a callable that performs its actions.
Guard = Callable[[Change, Callable[[], None]], None]


def perform(remote: Remote, action: Action) -> None:
    """Do one action on the host."""
    if isinstance(action, Put):
        remote.put(action.data, action.path, action.mode)
    elif isinstance(action, Exchange):
        out = remote.run(action.cmd).stdout if action.cmd else ""
        remote.put(action.make(out), action.path, action.mode)
    else:
        remote.run(action.cmd, input=action.input)


def perform_all(remote: Remote, actions: tuple[Action, ...]) -> None:
    for action in actions:
        perform(remote, action)


def revert_commands(change: Change) -> tuple[str, ...]:
    """The undo of a change, newest first: what a guard runs when it fires."""
    return tuple(cmd for record in reversed(change.undo) for cmd in record.commands())


@dataclass(frozen=True)
class Applier:
    """Plans operations on one host and, unless `check`, applies their changes."""

    remote: Remote
    journal: Journal
    ctx: Context = Context()
    check: bool = False
    guard: Guard | None = None

    def execute(self, op: Operation[Any], step: str = "") -> Outcome:
        outcome = op.plan(self.remote, self.ctx)
        if isinstance(outcome, Change) and not self.check:
            self.apply(outcome, step)
        return outcome

    def apply(self, change: Change, step: str = "") -> None:
        for record in change.undo:
            self.journal.record(record, step)
        if change.guard and self.guard is not None:
            self.guard(change, lambda: perform_all(self.remote, change.actions))
        else:
            perform_all(self.remote, change.actions)


def shown(change: Change) -> tuple[str, ...]:
    """The actions of a change as the lines `--check -v` prints."""
    return tuple(action.show() for action in change.actions)

