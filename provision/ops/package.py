"""`package`: Debian packages installed with apt, and exactly what that install added
taken back at teardown.

Rule 1: only missing packages are installed; installed ones are a no-op, whatever their
version (upgrades are the host's business, not ours).
Rule 2: the install saves, before it starts, what the host has (packages, users, groups,
directories, account files) in a folder under our backups, and what it has after; the
journal's `packages_installed` undo purges the difference, users and groups included
(see `provision.journal`).  A failed install keeps its `before` and is repaired by the
next deploy or undone by teardown.
Rule 3: `--check` lists what apt would pull in when the host's package lists allow a
simulation (`apt-get -s` only reads).
"""

from __future__ import annotations

import hashlib
import re
import shlex
from dataclasses import dataclass

from provision.connection import Remote, Result
from provision.fact import Fact, expect_success, gather
from provision.journal import PKG_LIST, package_snapshot, undo
from provision.operation import Change, Context, NoChange, Operation, Outcome, Run

NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
APT = ("DEBIAN_FRONTEND=noninteractive apt-get -y -q -o Dpkg::Options::=--force-confdef "
       "-o Dpkg::Options::=--force-confold")


def parse_installed(result: Result) -> frozenset[str]:
    names = expect_success(result).split()
    if not names:
        raise ValueError("dpkg lists no installed package")
    return frozenset(names)


INSTALLED: Fact[frozenset[str]] = Fact("installed packages", PKG_LIST, parse_installed)


def parse_simulation(result: Result) -> tuple[str, ...] | None:
    """Packages `apt-get install -s` would unpack, or None when apt cannot tell yet."""
    if result.rc != 0:
        return None
    return tuple(line.split()[1] for line in result.stdout.splitlines() if line.startswith("Inst "))


@dataclass(frozen=True)
class PackageState:
    installed: frozenset[str]
    would_install: tuple[str, ...] | None = None


@dataclass(frozen=True)
class PackageOp(Operation[PackageState]):
    """Packages `names` installed (with their dependencies, without recommends)."""

    op = "package"
    names: tuple[str, ...]
    recommends: bool = False

    def validate(self) -> None:
        if not self.names:
            raise ValueError("names: give at least one package")
        for name in self.names:
            if not NAME.fullmatch(name):
                raise ValueError(f"names: {name!r} is not a Debian package name")

    def gather(self, remote: Remote, ctx: Context) -> PackageState:
        installed = gather(remote, INSTALLED)
        missing = [n for n in self.names if n not in installed]
        if not missing:
            return PackageState(installed)
        simulate = f"apt-get install -s -q {self._flags()} {' '.join(missing)}"
        return PackageState(installed, parse_simulation(remote.run(simulate, check=False)))

    def decide(self, state: PackageState, ctx: Context) -> Outcome:
        missing = tuple(n for n in self.names if n not in state.installed)
        if not missing:
            return NoChange(f"installed: {', '.join(self.names)}")
        extra = [n for n in state.would_install or () if n not in missing]
        what = f"install {', '.join(missing)}" + (f" (and {', '.join(extra)})" if extra else "")
        folder = self.folder(ctx)
        diff = "".join(f"+package {n}\n" for n in (*missing, *extra))
        record = undo("packages_installed", dir=folder)
        return Change(what, (Run(self.script(folder, missing)),), (record,), diff)

    def folder(self, ctx: Context) -> str:
        digest = hashlib.sha256(" ".join(sorted(self.names)).encode()).hexdigest()[:12]
        return f"{ctx.state.backups}/packages/{digest}"

    def script(self, folder: str, missing: tuple[str, ...]) -> str:
        d, names = shlex.quote(folder), " ".join(missing)
        return (f"umask 022 && mkdir -p {d} && chmod 700 {d} && "
                f"{{ [ -e {d}/before.pkgs ] || {{ {package_snapshot(d, 'before')}; }}; }} && "
                f"{APT} update && {APT} install {self._flags()} {names} && {package_snapshot(d, 'after')}")

    def _flags(self) -> str:
        return "" if self.recommends else "--no-install-recommends"
