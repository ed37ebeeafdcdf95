"""Operations: compare a host's facts with the wanted state and say what would change.

Rule 1: an operation is a frozen dataclass of its arguments.  `gather` reads facts
through the `Remote` (read-only commands); `decide` is pure and returns `NoChange(reason)`
or a `Change` (what, the actions to run, their undo records, an optional diff).
Rule 2: an operation never changes the host itself.  Only `provision.plan.apply_change`
does, journal first, so `--check` (plan, do not apply) is honest.
Rule 3: argument checks go in `validate()` (raise `ValueError` with a short reason); the
playbook loader turns them into `PlaybookError`s that name the file and the step.
Rule 4: the ops a playbook may name are those in a `Registry`, looked up by `op` name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from provision.connection import Remote
from provision.errors import ProvisionError
from provision.journal import StateDir, UndoRecord

if TYPE_CHECKING:
    from provision.pki import Ca

S = TypeVar("S")


class OperationFailed(ProvisionError):
    """The host is in a state the operation cannot change into the wanted one."""

    default_hint = "fix it on the host by hand, or change the playbook"


@dataclass(frozen=True)
class Run:
    """Run a command (with optional stdin) as the become user."""

    cmd: str
    input: bytes | None = field(default=None, repr=False)

    def show(self) -> str:
        return self.cmd + (f"  (stdin: {len(self.input)} bytes)" if self.input else "")


@dataclass(frozen=True)
class Put:
    """Upload bytes to a path on the host with a mode."""

    path: str
    data: bytes = field(repr=False)
    mode: int = 0o644

    def show(self) -> str:
        return f"put {self.path} ({len(self.data)} bytes, mode {self.mode:04o})"


@dataclass(frozen=True)
class Exchange:
    """Run `cmd` on the host (none when empty), hand its stdout to `make` HERE, on the
    operator's side, and put what `make` returns at `path`: for what only the operator
    can make from what only the host has (sign a CSR made on the host with our CA).
    `make` runs only when the plan is applied, so `--check` never signs anything."""

    label: str
    path: str
    make: Callable[[str], bytes] = field(repr=False, compare=False)
    cmd: str = ""
    mode: int = 0o644

    def show(self) -> str:
        return f"{self.label}; put {self.path} (mode {self.mode:04o})"


Action = Run | Put | Exchange


@dataclass(frozen=True)
class NoChange:
    """The host already is as wanted."""

    reason: str


@dataclass(frozen=True)
class Change:
    """What would change, how to do it, and how to take it back.

    `guard`: the change touches the firewall over SSH; apply it under the lockout guard.
    """

    description: str
    actions: tuple[Action, ...]
    undo: tuple[UndoRecord, ...] = ()
    diff: str = ""
    guard: bool = False


Outcome = NoChange | Change


def combine(*outcomes: Outcome) -> Outcome:
    """Several partial outcomes as one: NoChange only when none of them changes."""
    changes = [o for o in outcomes if isinstance(o, Change)]
    if not changes:
        return NoChange("; ".join(o.reason for o in outcomes if isinstance(o, NoChange)))
    return Change(
        description="; ".join(c.description for c in changes),
        actions=tuple(a for c in changes for a in c.actions),
        undo=tuple(u for c in changes for u in c.undo),
        diff="".join(c.diff for c in changes),
        guard=any(c.guard for c in changes),
    )


@dataclass(frozen=True)
class Context:
    """What every operation may know besides its arguments: where our state lives on the
    host, and the operator's CA (for the PKI operations; None when the play needs none)."""

    state: StateDir = StateDir()
    ca: Ca | None = field(default=None, repr=False)


class Operation(ABC, Generic[S]):
    """Base of every operation; subclasses are frozen dataclasses with `op` set."""

    op: ClassVar[str]

    def validate(self) -> None:
        """Raise ValueError when the arguments make no sense (called once, when loaded)."""

    @abstractmethod
    def gather(self, remote: Remote, ctx: Context) -> S:
        """Read the facts this operation needs (read-only commands only)."""

    @abstractmethod
    def decide(self, state: S, ctx: Context) -> Outcome:
        """Pure: compare the gathered state with the wanted one."""

    def plan(self, remote: Remote, ctx: Context) -> Outcome:
        return self.decide(self.gather(remote, ctx), ctx)


class Registry:
    """The operations a playbook may name, by their `op` name."""

    def __init__(self, ops: Iterable[type[Operation[Any]]] = ()) -> None:
        self._ops: dict[str, type[Operation[Any]]] = {}
        for op in ops:
            self._ops[op.op] = op

    def get(self, name: str) -> type[Operation[Any]] | None:
        return self._ops.get(name)

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._ops))

    def with_ops(self, *ops: type[Operation[Any]]) -> Registry:
        return Registry([*self._ops.values(), *ops])

