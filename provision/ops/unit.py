"""`unit` and `restart`: a systemd unit of ours, enabled and running, and the handler
that restarts (or reloads) it when a step it depends on changed.

Rule 1: `unit` owns `/etc/systemd/system/NAME`: written atomically (the `file` op), then
`daemon-reload`; enabled; started when it is not running.  When its file changed while it
ran, it is restarted here, since the running process still follows the old file.
Rule 2: `restart` is a handler: it is always a change when it runs, and it runs only when
a step that notifies it changed, so a deploy that changes nothing restarts nothing.
Rule 3: undo: stopped, disabled, its file removed (or restored) and systemd reloaded.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from provision.connection import Remote, Result
from provision.fact import Fact, gather
from provision.journal import undo
from provision.operation import Change, Context, NoChange, Operation, Outcome, Run, combine
from provision.ops.file import FileOp, FileState, file_fact

UNIT_NAME = re.compile(r"[A-Za-z0-9_.@-]+\.(service|timer|socket|path)")
UNIT_DIR = "/etc/systemd/system"
q = shlex.quote


def check_unit(name: str) -> None:
    if not UNIT_NAME.fullmatch(name):
        raise ValueError(f"name: {name!r} is not a systemd unit name like vpn-runtime.service")


def first_word(result: Result) -> str:
    """`systemctl is-enabled/is-active` print one word (and exit non-zero for 'no')."""
    words = result.stdout.split()
    return words[0] if words else "unknown"


def is_enabled(name: str) -> Fact[str]:
    return Fact(f"{name} enabled", f"systemctl is-enabled {q(name)} 2>/dev/null", first_word)


def is_active(name: str) -> Fact[str]:
    return Fact(f"{name} active", f"systemctl is-active {q(name)}", first_word)


@dataclass(frozen=True)
class UnitState:
    file: FileState
    enabled: str
    active: str


@dataclass(frozen=True)
class UnitOp(Operation[UnitState]):
    """A unit file with `content`, enabled and started as asked."""

    op = "unit"
    name: str
    content: str
    enabled: bool = True
    started: bool = True

    @property
    def path(self) -> str:
        return f"{UNIT_DIR}/{self.name}"

    def validate(self) -> None:
        check_unit(self.name)

    def gather(self, remote: Remote, ctx: Context) -> UnitState:
        return UnitState(gather(remote, file_fact(self.path)), gather(remote, is_enabled(self.name)),
                         gather(remote, is_active(self.name)))

    def decide(self, state: UnitState, ctx: Context) -> Outcome:
        written = self._file(state.file, ctx)
        enable = self._enable(state.enabled)
        start = self._start(state.active, isinstance(written, Change))
        return combine(written, enable, start)

    def _file(self, state: FileState, ctx: Context) -> Outcome:
        plan = FileOp(self.path, self.content, "0644").decide(state, ctx)
        if not isinstance(plan, Change):
            return plan
        kinds = {"file_created": "unit_file_created", "file_replaced": "unit_file_replaced"}
        records = tuple(undo(kinds.get(r.kind, r.kind), **r.args) for r in plan.undo)
        return Change(plan.description, (*plan.actions, Run("systemctl daemon-reload")), records, plan.diff)

    def _enable(self, enabled: str) -> Outcome:
        if not self.enabled or enabled == "enabled":
            return NoChange(f"{self.name} is {enabled}")
        record = undo("unit_enabled", unit=self.name)
        return Change(f"enable {self.name}", (Run(f"systemctl enable --quiet {q(self.name)}"),), (record,))

    def _start(self, active: str, file_changed: bool) -> Outcome:
        if not self.started:
            return NoChange(f"{self.name} is {active}")
        if active == "active":
            if file_changed:
                return Change(f"restart {self.name} (its unit file changed)",
                              (Run(f"systemctl restart {q(self.name)}"),))
            return NoChange(f"{self.name} is active")
        record = undo("unit_started", unit=self.name)
        return Change(f"start {self.name} (was {active})", (Run(f"systemctl start {q(self.name)}"),), (record,))


@dataclass(frozen=True)
class RestartOp(Operation[str]):
    """Handler: restart (or reload, or reload-or-restart) a unit."""

    op = "restart"
    name: str
    action: str = "restart"

    def validate(self) -> None:
        check_unit(self.name)
        if self.action not in ("restart", "reload", "try-restart", "reload-or-restart"):
            raise ValueError(f"action: {self.action!r}: use restart, reload, try-restart or reload-or-restart")

    def gather(self, remote: Remote, ctx: Context) -> str:
        return gather(remote, is_active(self.name))

    def decide(self, state: str, ctx: Context) -> Outcome:
        return Change(f"{self.action} {self.name} (was {state})", (Run(f"systemctl {self.action} {q(self.name)}"),))
