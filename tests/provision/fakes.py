"""Test doubles for `provision.connection.Remote`.

Rule 1: `FakeRemote` knows only the commands a test expects (command -> (rc, stdout)) and
fails the test on any other, so a test sees every command an operation would run, and
`--check` can be shown to run nothing that changes the host.
Rule 2: `ShellRemote` runs commands in a local `sh` against files under a temporary
directory, for undo tests whose point is what the commands really do to files.  It is
never given a command that touches the machine's network or system state.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

from provision.connection import Result, as_bytes, check_result
from provision.inventory import Host


class UnexpectedCommand(AssertionError):
    """The code under test ran a command the test did not expect."""


class FakeRemote:
    """A host that answers only the commands it was told about."""

    def __init__(
        self,
        name: str = "vps1",
        commands: Mapping[str, tuple[int, str]] | None = None,
        files: Mapping[str, bytes] | None = None,
        puts: Iterable[str] = (),
    ) -> None:
        self.name = name
        self.commands = dict(commands or {})
        self.files = dict(files or {})
        self.allowed_puts = set(puts)
        self.ran: list[str] = []
        self.inputs: dict[str, bytes] = {}
        self.put_files: dict[str, tuple[bytes, int]] = {}
        self.closed = False

    def run(self, cmd: str, *, check: bool = True, input: bytes | str | None = None) -> Result:
        if cmd not in self.commands:
            known = "\n  ".join(self.commands) or "(none)"
            raise UnexpectedCommand(f"{self.name}: unexpected command:\n  {cmd}\nexpected:\n  {known}")
        self.ran.append(cmd)
        if input is not None:
            self.inputs[cmd] = as_bytes(input)
        rc, out = self.commands[cmd]
        result = Result(rc, out, "" if rc == 0 else f"fake failure of {cmd}")
        return check_result(self.name, cmd, result) if check else result

    def put(self, data: bytes | Path, remote_path: str, mode: int = 0o644) -> None:
        if remote_path not in self.allowed_puts:
            raise UnexpectedCommand(f"{self.name}: unexpected put to {remote_path}")
        self.put_files[remote_path] = (as_bytes(data), mode)

    def get(self, remote_path: str) -> bytes:
        if remote_path not in self.files:
            raise UnexpectedCommand(f"{self.name}: unexpected get of {remote_path}")
        return self.files[remote_path]

    def close(self) -> None:
        self.closed = True


class ShellRemote:
    """A `Remote` whose commands run in a local `sh` (paths live under a temp dir)."""

    def __init__(self, name: str = "local", fail_on: str | None = None) -> None:
        self.name = name
        self.fail_on = fail_on  # a command containing this fails, as a half-done deploy
        self.ran: list[str] = []

    def run(self, cmd: str, *, check: bool = True, input: bytes | str | None = None) -> Result:
        self.ran.append(cmd)
        if self.fail_on is not None and self.fail_on in cmd:
            return check_result(self.name, cmd, Result(1, "", "injected failure")) if check else Result(1)
        done = subprocess.run(["sh", "-c", cmd], input=as_bytes(input), capture_output=True, timeout=30)
        result = Result(done.returncode, done.stdout.decode(), done.stderr.decode())
        return check_result(self.name, cmd, result) if check else result

    def put(self, data: bytes | Path, remote_path: str, mode: int = 0o644) -> None:
        self.ran.append(f"put {remote_path}")
        path = Path(remote_path)
        path.write_bytes(as_bytes(data))
        path.chmod(mode)

    def get(self, remote_path: str) -> bytes:
        return Path(remote_path).read_bytes()

    def close(self) -> None:
        pass


def host(name: str = "vps1", **kwargs: object) -> Host:
    """An inventory host for tests; its host keys are checked against no file and none is
    written (/dev/null), unless the test names its own: tests never touch ~/.ssh."""
    kwargs.setdefault("known_hosts", (os.devnull,))
    kwargs.setdefault("global_known_hosts", ())
    return Host(name=name, address=str(kwargs.pop("address", "203.0.113.10")), **kwargs)  # type: ignore[arg-type]

