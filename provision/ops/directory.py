"""`directory`: a directory with a mode and owner.

Rule 1: only the directory itself is created (`mkdir`, not `mkdir -p`), so each directory
we add has its own journal entry and teardown removes exactly those, and only when empty.
Rule 2: `purge: true` is for a directory that a program of ours fills (the daemon's
leases): teardown removes it with its contents, as it did not exist before.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from provision.journal import undo
from provision.operation import Change, Context, OperationFailed, Outcome, Run
from provision.ops.file import FileState, PathOp, attrs_outcome, chown_actions, parse_mode


@dataclass(frozen=True)
class DirectoryOp(PathOp):
    """A directory at `path` (its parent must exist)."""

    op = "directory"
    path: str
    mode: str = "0755"
    owner: str | None = None
    group: str | None = None
    purge: bool = False

    def decide(self, state: FileState, ctx: Context) -> Outcome:
        mode = parse_mode(self.mode)
        if state.kind == "dir":
            return attrs_outcome(self.path, state, mode, self.owner, self.group)
        if state.kind != "absent":
            raise OperationFailed(f"{self.path} is a {state.kind}, not a directory")
        create = Run(f"mkdir -m {mode:04o} {shlex.quote(self.path)}")
        actions = (create, *chown_actions(self.path, self.owner, self.group))
        diff = f"--- before: {self.path} (absent)\n+++ after: {self.path}/ (directory, mode {mode:04o})\n"
        record = undo("tree_created" if self.purge else "dir_created", path=self.path)
        return Change(f"create directory {self.path}", actions, (record,), diff)
