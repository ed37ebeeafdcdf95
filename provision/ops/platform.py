"""`platform`: the host is a system the playbook was written for (Debian or Ubuntu, with
systemd as init and apt), or the deploy stops there, before anything is changed.

Rule 1: it is the playbook's first step: one read-only command gathers /etc/os-release
(or /usr/lib/os-release), whether systemd runs as init (`/run/systemd/system`, as
`sd_booted` checks) and whether apt-get and dpkg are there.
Rule 2: a host that does not fit raises `Unsupported` (exit code 8) naming the host, what
was found and where; it never changes anything, so a supported host is always `ok`.
Rule 3: a derivative counts by its `ID_LIKE` (Raspbian, Linux Mint: `ID_LIKE=debian`), as
Ansible's `os_family` does.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from provision.connection import Remote, Result
from provision.errors import Unsupported
from provision.fact import Fact, gather
from provision.operation import Context, NoChange, Operation, Outcome

OS_RELEASE = ("/etc/os-release", "/usr/lib/os-release")
MARK = "--- selfvpn platform"
NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
KEY = re.compile(r"[A-Z][A-Z0-9_]*")
PLATFORM_CMD = (
    f"for f in {' '.join(OS_RELEASE)}; do "
    f"if [ -r $f ]; then echo \"{MARK} os-release $f\"; cat $f; echo; break; fi; done; "
    f"echo \"{MARK} facts\"; "
    "if [ -d /run/systemd/system ]; then echo systemd=yes; else echo systemd=no; fi; "
    "for t in apt-get dpkg; do if command -v $t >/dev/null 2>&1; then echo $t=yes; else echo $t=no; fi; done"
)
HINT = "deploy supports Debian and Ubuntu hosts booted with systemd and with apt; use such a host"


@dataclass(frozen=True)
class Platform:
    """What the host says it is."""

    source: str | None  # the os-release file read, None when there is none
    release: tuple[tuple[str, str], ...] = ()
    systemd: bool = False
    apt: bool = False
    dpkg: bool = False

    def get(self, key: str) -> str:
        return dict(self.release).get(key, "")

    @property
    def id(self) -> str:
        return self.get("ID").lower() or "linux"  # os-release(5): ID defaults to "linux"

    @property
    def id_like(self) -> tuple[str, ...]:
        return tuple(self.get("ID_LIKE").lower().split())

    @property
    def pretty(self) -> str:
        return self.get("PRETTY_NAME") or " ".join(filter(None, (self.get("NAME"), self.get("VERSION_ID")))) or self.id


def parse_os_release(text: str) -> tuple[tuple[str, str], ...]:
    """os-release(5): KEY=value lines, values shell-quoted; comments and junk are skipped."""
    pairs = []
    for line in text.splitlines():
        key, sep, raw = line.strip().partition("=")
        if not sep or not KEY.fullmatch(key):
            continue
        try:
            words = shlex.split(raw)
        except ValueError:
            continue  # an unbalanced quote: the line says nothing we can trust
        pairs.append((key, " ".join(words)))
    return tuple(pairs)


def parse_platform(result: Result) -> Platform:
    """The output of `PLATFORM_CMD` as a `Platform` (ValueError when it is not that)."""
    sections: dict[str, list[str]] = {}
    source, current = None, None
    for line in result.stdout.splitlines():
        if line.startswith(MARK + " "):
            head = line[len(MARK) + 1:].split(" ", 1)
            current = head[0]
            if current == "os-release" and len(head) == 2:
                source = head[1]
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    if "facts" not in sections:
        reason = (result.stderr.strip().splitlines() or [f"exit {result.rc}"])[-1]
        raise ValueError(f"no answer from the platform probe: {reason}")
    flags = dict(line.partition("=")[::2] for line in sections["facts"])
    release = parse_os_release("\n".join(sections.get("os-release", [])))
    return Platform(source, release, flags.get("systemd") == "yes", flags.get("apt-get") == "yes",
                    flags.get("dpkg") == "yes")


PLATFORM: Fact[Platform] = Fact("platform", PLATFORM_CMD, parse_platform)


@dataclass(frozen=True)
class PlatformState:
    host: str
    platform: Platform


@dataclass(frozen=True)
class PlatformOp(Operation[PlatformState]):
    """The host runs one of `families` (by os-release ID or ID_LIKE), systemd and apt."""

    op = "platform"
    families: tuple[str, ...] = ("debian", "ubuntu")

    def validate(self) -> None:
        if not self.families:
            raise ValueError("families: give at least one, like debian")
        for name in self.families:
            if not NAME.fullmatch(name):
                raise ValueError(f"families: {name!r} is not an os-release ID like debian")

    def gather(self, remote: Remote, ctx: Context) -> PlatformState:
        return PlatformState(remote.name, gather(remote, PLATFORM))

    def decide(self, state: PlatformState, ctx: Context) -> Outcome:
        problems = self.problems(state.platform)
        if problems:
            raise Unsupported(f"{state.host}: {'; '.join(problems)}", HINT)
        p = state.platform
        return NoChange(f"{p.pretty} ({p.source}), systemd, apt")

    def problems(self, p: Platform) -> list[str]:
        """What is wrong with the host, in words that say where it was seen."""
        found = []
        wanted = " or ".join(name.capitalize() for name in self.families)
        if p.source is None:
            found.append(f"no {' or '.join(OS_RELEASE)}: cannot tell which system this is, so not {wanted}")
        elif p.id not in self.families and not set(p.id_like) & set(self.families):
            like = f", ID_LIKE={' '.join(p.id_like)}" if p.id_like else ""
            found.append(f"{p.source} says {p.pretty} (ID={p.id}{like}), not {wanted}")
        if not p.systemd:
            found.append("systemd is not the init system (no /run/systemd/system)")
        if not (p.apt and p.dpkg):
            missing = [t for t, there in (("apt-get", p.apt), ("dpkg", p.dpkg)) if not there]
            found.append(f"no {' or '.join(missing)} in PATH")
        return found
