"""`sysctl`: a kernel parameter, now (`sysctl -w`) and after reboot (a drop-in file).

Rule 1: the live value is read from /proc/sys and journaled before it is changed, so
teardown writes back the value the host had, not a default.
Rule 2: the drop-in `/etc/sysctl.d/60-selfvpn-KEY.conf` is a `file` operation of its own
kind (atomic write, backup, diff), composed here.
Rule 3: values compare with whitespace collapsed (`32768\\t60999` equals `32768 60999`).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from provision.connection import Remote, Result
from provision.fact import Fact, expect_success, gather
from provision.journal import undo
from provision.operation import Change, Context, NoChange, Operation, Outcome, Run, combine
from provision.ops.file import FileOp, FileState, file_fact

KEY = re.compile(r"[a-z0-9_]+(\.[A-Za-z0-9_-]+)+")


def proc_path(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


def dropin_path(key: str) -> str:
    return f"/etc/sysctl.d/60-selfvpn-{key}.conf"


def normal(value: object) -> str:
    return " ".join(str(value).split())


def parse_sysctl(result: Result) -> str:
    return normal(expect_success(result))


def sysctl_fact(key: str) -> Fact[str]:
    return Fact(f"sysctl {key}", f"cat {shlex.quote(proc_path(key))}", parse_sysctl)


@dataclass(frozen=True)
class SysctlState:
    current: str
    dropin: FileState | None


@dataclass(frozen=True)
class SysctlOp(Operation[SysctlState]):
    """Kernel parameter `key` set to `value`; `persist` also writes the drop-in file."""

    op = "sysctl"
    key: str
    value: str | int
    persist: bool = True

    def validate(self) -> None:
        if not KEY.fullmatch(self.key):
            raise ValueError(f"key must look like net.ipv4.ip_forward, got {self.key!r}")
        if not normal(self.value) or "\n" in str(self.value):
            raise ValueError(f"value must be one non-empty line, got {self.value!r}")

    def gather(self, remote: Remote, ctx: Context) -> SysctlState:
        dropin = gather(remote, file_fact(dropin_path(self.key))) if self.persist else None
        return SysctlState(gather(remote, sysctl_fact(self.key)), dropin)

    def decide(self, state: SysctlState, ctx: Context) -> Outcome:
        live = self._live(state.current)
        if state.dropin is None:
            return live
        return combine(live, self._dropin().decide(state.dropin, ctx))

    def _live(self, current: str) -> Outcome:
        wanted = normal(self.value)
        if current == wanted:
            return NoChange(f"{self.key} is {wanted}")
        run = Run(f"sysctl -w {shlex.quote(f'{self.key}={wanted}')}")
        diff = f"--- before: sysctl {self.key}\n+++ after: sysctl {self.key}\n-{current}\n+{wanted}\n"
        record = undo("sysctl_changed", key=self.key, old=current)
        return Change(f"{self.key}: {current} -> {wanted}", (run,), (record,), diff)

    def _dropin(self) -> FileOp:
        return FileOp(dropin_path(self.key), f"{self.key} = {normal(self.value)}\n", "0644")
