"""The undo log: every system change the runtime makes, written down before it is made.

Rule 1: a step is recorded (and the state file fsynced) BEFORE the change it undoes, so a
        crash half way leaves a log that undoes everything that may have happened.
Rule 2: undoing a step that never happened, or was already undone, is fine: undoers treat
        "already gone" as success. Unwinding twice is therefore harmless.
Rule 3: the state file alone is enough to restore: a new process after SIGKILL loads it
        and unwinds it backwards (`restore`).

State file (JSON, mode 0600, replaced atomically):
    {"version": 1, "steps": [{"kind": "...", "args": {...}, "says": "...", "undo_says": "..."}]}
`kind` names the undoer (see `undoers`), `args` is all the undoer needs, `says` and
`undo_says` are the equivalent shell commands, echoed as `[#] ...` when verbose.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runtime.errors import SystemSetupError

STATE_VERSION = 1
DEFAULT_STATE_FILE = Path("/run/vpn-runtime/client-state.json")

Undoer = Callable[[Mapping[str, Any]], None]
Echo = Callable[[str], None]


@dataclass(frozen=True)
class Step:
    """One change made to the system, with what it takes to undo it."""

    kind: str
    args: Mapping[str, Any]
    says: str
    undo_says: str

    @classmethod
    def from_json(cls, raw: Any) -> "Step":
        """The step in `raw`; KeyError, TypeError or ValueError if it is not one."""
        return cls(str(raw["kind"]), dict(raw["args"]), str(raw["says"]), str(raw["undo_says"]))


@dataclass
class Journal:
    """The undo log of one `up`, persisted to `path` after every change of the list."""

    path: Path
    echo: Echo | None = None
    steps: list[Step] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path, echo: Echo | None = None) -> "Journal":
        """The journal in `path`, or an empty one when there is no file."""
        try:
            raw = json.loads(Path(path).read_text())
        except FileNotFoundError:
            return cls(Path(path), echo)
        except (OSError, ValueError) as exc:
            raise SystemSetupError(f"{path}: unreadable undo log: {exc}",
                                   "restore by hand, then delete the file") from exc
        if not isinstance(raw, dict) or raw.get("version") != STATE_VERSION:
            raise SystemSetupError(f"{path}: not a version {STATE_VERSION} undo log",
                                   "restore by hand, then delete the file")
        try:
            return cls(Path(path), echo, [Step.from_json(s) for s in raw.get("steps", [])])
        except (KeyError, TypeError, ValueError) as exc:
            raise SystemSetupError(f"{path}: a step of the undo log lacks {exc}",
                                   "restore by hand, then delete the file") from exc

    def record(self, step: Step) -> None:
        """Write `step` down (durably), then echo the command it stands for."""
        self.steps.append(step)
        self._save()
        self.say(step.says)

    def forget(self, step: Step) -> None:
        """Remove the last record of `step`: the change did not happen, nothing to undo."""
        for i in range(len(self.steps) - 1, -1, -1):
            if self.steps[i] == step:
                del self.steps[i]
                break
        self._save()

    def say(self, command: str) -> None:
        if self.echo is not None:
            self.echo(f"[#] {command}")

    def unwind(self, undoers: Mapping[str, Undoer]) -> None:
        """Undo every step, newest first; keep the ones that fail and raise at the end."""
        failed: list[tuple[Step, BaseException]] = []
        while self.steps:
            step = self.steps.pop()
            try:
                self.say(step.undo_says)
                if step.kind not in undoers:
                    raise SystemSetupError(f"unknown kind of step {step.kind!r}")
                undoers[step.kind](step.args)
            except Exception as exc:  # noqa: BLE001 - collected, reported below
                failed.append((step, exc))
            self._save()
        if failed:
            self.steps = [s for s, _ in reversed(failed)]
            self._save()
            what = "; ".join(f"{s.undo_says}: {e}" for s, e in failed)
            raise SystemSetupError(f"{self.path}: could not undo: {what}",
                                   "fix the cause and run `vpn-runtime down` again")

    def _save(self) -> None:
        if not self.steps:
            _remove(self.path)
            return
        data = {"version": STATE_VERSION, "steps": [asdict(s) for s in self.steps]}
        write_atomically(self.path, (json.dumps(data, indent=1) + "\n").encode(), 0o600)


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` by a file holding `data`: temp file in the same dir, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _remove(Path(tmp))
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def undoers() -> dict[str, Undoer]:
    """Every kind of step the runtime writes, with its undoer."""
    # Imported here: those modules import this one to record their steps.
    from runtime import dns, killswitch, netconf

    return {**netconf.UNDOERS, **killswitch.UNDOERS, **dns.UNDOERS}


def restore(path: Path = DEFAULT_STATE_FILE, echo: Echo | None = None) -> None:
    """Undo everything the state file records (`down`, or `up` after a crash)."""
    Journal.load(path, echo).unwind(undoers())


@contextmanager
def rolled_back_on_failure(journal: Journal) -> Iterator[Journal]:
    """Run a half-done `up`; on any error undo what it did, then re-raise."""
    try:
        yield journal
    except BaseException:
        journal.unwind(undoers())
        raise
