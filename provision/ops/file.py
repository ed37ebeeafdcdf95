"""`file`: a file with the given content, mode and owner, written atomically.

Rule 1: one fact reads kind, mode, owner, group and content (base64, so every byte
counts) in one command.
Rule 2: the new content goes to `PATH.selfvpn-new` and is renamed over PATH, so readers
see the old file or the new one, never half.  A file that existed is first copied to a
backup named by its content's hash; the journal restores from it.
Rule 3: `secret: true` keeps the content out of `--diff`.
"""

from __future__ import annotations

import base64
import difflib
import posixpath
import re
import shlex
from dataclasses import dataclass

from provision.connection import Remote, Result
from provision.fact import Fact, expect_success, gather
from provision.journal import TEMP_SUFFIX, undo
from provision.operation import Change, Context, NoChange, Operation, OperationFailed, Outcome, Put, Run

q = shlex.quote


@dataclass(frozen=True)
class FileState:
    """What is at a path: `kind` is absent, file, dir, link or other."""

    kind: str
    mode: int = 0
    owner: str = ""
    group: str = ""
    content: bytes = b""


def file_fact(path: str) -> Fact[FileState]:
    p = q(path)
    command = (
        f"if [ -L {p} ]; then echo link; "
        f"elif [ -d {p} ]; then stat -c 'dir %a %U %G' {p}; "
        f"elif [ -f {p} ]; then stat -c 'file %a %U %G' {p} && base64 -w0 {p}; "
        f"elif [ -e {p} ]; then echo other; else echo absent; fi"
    )
    return Fact(f"file {path}", command, parse_file_state)


def parse_file_state(result: Result) -> FileState:
    head, _, body = expect_success(result).partition("\n")
    words = head.split()
    if words in (["absent"], ["link"], ["other"]):
        return FileState(words[0])
    if len(words) != 4 or words[0] not in ("file", "dir") or not re.fullmatch(r"[0-7]{1,4}", words[1]):
        raise ValueError(f"unexpected output {head!r}")
    try:
        content = base64.b64decode(body.strip(), validate=True)
    except ValueError:
        raise ValueError("content is not base64") from None
    return FileState(words[0], int(words[1], 8), words[2], words[3], content)


# ---- shared with `directory`: argument checks and attribute changes ---------------------


def check_path(path: str) -> None:
    if not path.startswith("/") or path != posixpath.normpath(path):
        raise ValueError(f"path must be absolute and normal, got {path!r}")


def parse_mode(mode: str) -> int:
    if not re.fullmatch(r"0?[0-7]{3}", str(mode)):
        raise ValueError(f"mode must be octal like '0644', got {mode!r}")
    return int(str(mode), 8)


def chown_actions(path: str, owner: str | None, group: str | None) -> tuple[Run, ...]:
    if owner is None and group is None:
        return ()
    return (Run(f"chown {q((owner or '') + ':' + (group or ''))} {q(path)}"),)


def attrs_outcome(path: str, state: FileState, mode: int, owner: str | None, group: str | None) -> Outcome:
    """Mode/owner/group of an existing path: NoChange, or chmod/chown with their undo."""
    wrong = [
        f"mode {state.mode:04o} -> {mode:04o}" if state.mode != mode else "",
        f"owner {state.owner} -> {owner}" if owner not in (None, state.owner) else "",
        f"group {state.group} -> {group}" if group not in (None, state.group) else "",
    ]
    wrong = [w for w in wrong if w]
    if not wrong:
        return NoChange(f"{path} is as wanted")
    actions = (Run(f"chmod {mode:04o} {q(path)}"), *chown_actions(path, owner, group))
    record = undo("attrs_changed", path=path, mode=f"{state.mode:04o}", owner=state.owner, group=state.group)
    return Change(f"{path}: {', '.join(wrong)}", actions, (record,), "".join(f"{path}: {w}\n" for w in wrong))


def text_diff(path: str, old: bytes, new: bytes, secret: bool = False) -> str:
    header = f"--- before: {path}\n+++ after: {path}\n"
    if secret:
        return header + "(content hidden: secret)\n"
    lines = difflib.unified_diff(
        old.decode(errors="replace").splitlines(keepends=True),
        new.decode(errors="replace").splitlines(keepends=True),
        f"before: {path}", f"after: {path}",
    )
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


class PathOp(Operation[FileState]):
    """What `file` and `directory` share: a path and a mode to check, one fact to read."""

    path: str
    mode: str

    def validate(self) -> None:
        check_path(self.path)
        parse_mode(self.mode)

    def gather(self, remote: Remote, ctx: Context) -> FileState:
        return gather(remote, file_fact(self.path))


# ---- the operation --------------------------------------------------------------------


@dataclass(frozen=True)
class FileOp(PathOp):
    """A regular file at `path` with exactly `content`."""

    op = "file"
    path: str
    content: str
    mode: str = "0644"
    owner: str | None = None
    group: str | None = None
    secret: bool = False

    def decide(self, state: FileState, ctx: Context) -> Outcome:
        data, mode = self.content.encode(), parse_mode(self.mode)
        if state.kind not in ("absent", "file"):
            raise OperationFailed(f"{self.path} is a {state.kind}, not a regular file")
        if state.kind == "file" and state.content == data:
            return attrs_outcome(self.path, state, mode, self.owner, self.group)
        diff = text_diff(self.path, state.content, data, self.secret)
        if state.kind == "absent":
            record = undo("file_created", path=self.path)
            return Change(f"create {self.path}", self._write(data, None), (record,), diff)
        backup = ctx.state.backup_for(self.path, state.content)
        record = undo("file_replaced", path=self.path, backup=backup)
        return Change(f"update {self.path}", self._write(data, (backup, state)), (record,), diff)

    def _write(self, data: bytes, backup: tuple[str, FileState] | None) -> tuple[Run | Put, ...]:
        temp, path = self.path + TEMP_SUFFIX, q(self.path)
        owner, group = self.owner, self.group
        keep: tuple[Run, ...] = ()
        if backup is not None:
            target, old = backup
            copy = f"umask 077 && mkdir -p {q(posixpath.dirname(target))} && cp -p {path} {q(target)}"
            keep = (Run(copy),)
            owner, group = owner or old.owner, group or old.group
        put = Put(temp, data, parse_mode(self.mode))
        return (*keep, put, *chown_actions(temp, owner, group), Run(f"mv -f {q(temp)} {path}"))
