"""The journal on the host: every change is written down, with its undo, BEFORE it is made.

Rule 1: the journal lives on the host it describes (`/var/lib/selfvpn/journal.jsonl`,
directory 0700, file 0600), so any operator machine can tear the host down.
Rule 2: one entry is one JSON line, appended by ONE remote command
(`printf '%s\\n' LINE >> journal`): an O_APPEND write of a short line lands whole, and the
change only starts after that command succeeded, so a torn last line (a crash during the
append) always belongs to a change that never started; the reader drops it.  Whole-file
rewrites (temp + rename) would be atomic too, but cost a read and a full upload per entry.
Rule 3: every undo is idempotent and guarded by a test of the current state (`[ -e ]`,
`systemctl is-active`, `nft list table`...), so teardown can be run twice, after a deploy
that failed half way, and for an entry whose change never happened.
Rule 4: teardown replays the journal backwards and removes it only after every undo
succeeded; an undo that fails leaves the journal in place for the next teardown.
Rule 5: the kinds of undo are all in `UNDO_KINDS`; a new kind of change adds its row here.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from provision.connection import Remote
from provision.errors import ProvisionError

STATE_DIR = "/var/lib/selfvpn"
TEMP_SUFFIX = ".selfvpn-new"  # where a file is written before its rename into place
FORMAT_VERSION = 1
q = shlex.quote


class JournalError(ProvisionError):
    """The journal on the host cannot be read or a teardown step failed."""

    default_hint = "fix the cause on the host and run teardown again; undo steps are safe to repeat"


@dataclass(frozen=True)
class StateDir:
    """Where our state lives on a host: the journal, and backups of files we replaced."""

    root: str = STATE_DIR

    @property
    def journal(self) -> str:
        return f"{self.root}/journal.jsonl"

    @property
    def backups(self) -> str:
        return f"{self.root}/backup"

    def backup_for(self, path: str, content: bytes) -> str:
        """A backup path named by the old content's hash: never overwrites an older backup."""
        digest = hashlib.sha256(content).hexdigest()[:16]
        return f"{self.backups}/{path.lstrip('/')}.{digest}"


# ---- the kinds of undo: fields, and the idempotent commands that undo the change ------


def _when(test: str, action: str) -> tuple[str, ...]:
    """An undo that acts only while the change is still there: safe to repeat."""
    return (f"if {test}; then {action}; fi",)


def _rm_file(a: Mapping[str, str]) -> tuple[str, ...]:
    return (f"rm -f {q(a['path'])} {q(a['path'] + TEMP_SUFFIX)}",)


def _restore(a: Mapping[str, str]) -> tuple[str, ...]:
    path, backup, temp = q(a["path"]), q(a["backup"]), q(a["path"] + TEMP_SUFFIX)
    return (f"if [ -e {backup} ]; then cp -p {backup} {temp} && mv -f {temp} {path}; fi; rm -f {temp}",)


def _attrs(a: Mapping[str, str]) -> tuple[str, ...]:
    path, owner = q(a["path"]), q(f"{a['owner']}:{a['group']}")
    return _when(f"[ -e {path} ]", f"chmod {q(a['mode'])} {path} && chown {owner} {path}")


def _rmdir(a: Mapping[str, str]) -> tuple[str, ...]:
    path = q(a["path"])
    return _when(f"[ -d {path} ]", f"rmdir --ignore-fail-on-non-empty {path}")


def _purge(a: Mapping[str, str]) -> tuple[str, ...]:
    name = q(a["name"])
    status = f"dpkg-query -W -f='${{db:Status-Status}}' {name} 2>/dev/null | grep -qxv not-installed"
    return _when(status, f"DEBIAN_FRONTEND=noninteractive apt-get purge -y {name}")


def _sysctl(a: Mapping[str, str]) -> tuple[str, ...]:
    return (f"sysctl -w {q(a['key'] + '=' + a['old'])}",)


def _nft_table(a: Mapping[str, str]) -> tuple[str, ...]:
    table = f"{q(a['family'])} {q(a['name'])}"
    return _when(f"nft list table {table} >/dev/null 2>&1", f"nft delete table {table}")


def _unit_stop(a: Mapping[str, str]) -> tuple[str, ...]:
    unit = q(a["unit"])
    return _when(f"systemctl is-active --quiet {unit}", f"systemctl stop {unit}")


def _unit_disable(a: Mapping[str, str]) -> tuple[str, ...]:
    unit = q(a["unit"])
    return _when(f"systemctl is-enabled --quiet {unit} 2>/dev/null", f"systemctl disable {unit}")


def _unit_file(a: Mapping[str, str]) -> tuple[str, ...]:
    path = q(a["path"])
    return _when(f"[ -e {path} ]", f"rm -f {path} && systemctl daemon-reload")


def _unit_file_restore(a: Mapping[str, str]) -> tuple[str, ...]:
    return (*_restore(a), "systemctl daemon-reload")


def _owned_path(path: str) -> str:
    """A path whose whole tree we may delete: absolute, normal, at least two levels deep."""
    parts = path.strip("/").split("/")
    if not path.startswith("/") or len(parts) < 2 or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"refusing to delete the tree {path!r}")
    return q(path)


def _rm_tree(a: Mapping[str, str]) -> tuple[str, ...]:
    path = _owned_path(a["path"])
    return _when(f"[ -e {path} ] || [ -L {path} ]", f"rm -rf {path}")


def _tree_restore(a: Mapping[str, str]) -> tuple[str, ...]:
    path, backup = _owned_path(a["path"]), q(a["backup"])
    return _when(f"[ -e {backup} ]", f"rm -rf {path} && tar -xpf {backup} -C /")


def _nft_restore(a: Mapping[str, str]) -> tuple[str, ...]:
    backup = q(a["backup"])
    return _when(f"[ -e {backup} ]", f"nft -f {backup}")


# `packages_installed`: the folder `dir` holds what the install saw before it started
# (`before.*`) and after it ended (`after.*`): package names, user and group names,
# directories with mode and owner, and copies of the account files.  The undo purges the
# packages the install added that are still there, deletes the users and groups their
# scripts made, puts back the account files' `-` backups when the files are back to
# their old bytes, recreates directories a purge removed and removes empty ones the
# install left.  Every part tests the current state first, so it can run again.
PKG_LIST = "dpkg-query -W -f '${db:Status-Abbrev} ${Package}\\n' | awk '$1==\"ii\"{print $2}' | LC_ALL=C sort"
DIR_TREES = "/etc /var/lib /opt /usr/local"
DIR_LIST = (f"find {DIR_TREES} -xdev \\( -path /var/lib/apt -o -path /var/lib/dpkg \\) -prune "
            "-o -type d -printf '%m %U %G %p\\n' | LC_ALL=C sort -k4")
ACCOUNT_FILES = ("passwd", "group", "shadow", "gshadow")


def package_snapshot(d: str, when: str) -> str:
    """Shell that writes `d/<when>.{pkgs,users,groups,dirs}` (and, before, the account files)."""
    names = "LC_ALL=C sort"
    files = " ".join(f"/etc/{f} /etc/{f}-" for f in ACCOUNT_FILES)
    copy = f" && {{ cp -p {files} {d}/ 2>/dev/null || true; }}" if when == "before" else ""
    return (f"{PKG_LIST} > {d}/{when}.pkgs.tmp && getent passwd | cut -d: -f1 | {names} > {d}/{when}.users"
            f" && getent group | cut -d: -f1 | {names} > {d}/{when}.groups && {DIR_LIST} > {d}/{when}.dirs"
            f"{copy} && mv -f {d}/{when}.pkgs.tmp {d}/{when}.pkgs")


def _added(d: str, what: str, now: str) -> str:
    """Names the install added (after - before; without `after`: now - before)."""
    return (f"{{ if [ -e {d}/after.pkgs ]; then cat {d}/after.{what}; else {now}; fi; }} "
            f"| LC_ALL=C comm -23 - {d}/before.{what}")


def _purge_packages(a: Mapping[str, str]) -> tuple[str, ...]:
    d = q(a["dir"])
    now_pkgs = f"{PKG_LIST} > {d}/now.pkgs"
    purge = (f"{_added(d, 'pkgs', f'cat {d}/now.pkgs')} | LC_ALL=C comm -12 - {d}/now.pkgs > {d}/purge.pkgs"
             f" && if [ -s {d}/purge.pkgs ]; then DEBIAN_FRONTEND=noninteractive apt-get purge -y -q "
             f"$(cat {d}/purge.pkgs); fi")
    users = (f"for u in $({_added(d, 'users', 'getent passwd | cut -d: -f1 | LC_ALL=C sort')}); do "
             f"if getent passwd \"$u\" >/dev/null; then userdel \"$u\"; fi; done")
    groups = (f"for g in $({_added(d, 'groups', 'getent group | cut -d: -f1 | LC_ALL=C sort')}); do "
              f"if getent group \"$g\" >/dev/null; then groupdel \"$g\"; fi; done")
    accounts = " ".join(ACCOUNT_FILES)
    restore = (f"for f in {accounts}; do if [ -e {d}/$f- ] && cmp -s /etc/$f {d}/$f; then "
               f"cp -p {d}/$f- /etc/$f-; fi; done")
    recreate = (f"while read -r m u g p; do if [ ! -d \"$p\" ]; then mkdir -p \"$p\" && chmod \"$m\" \"$p\" "
                f"&& chown \"$u:$g\" \"$p\"; fi; done < {d}/before.dirs")
    leftover = (f"if [ -e {d}/after.dirs ]; then cut -d' ' -f4- {d}/after.dirs | LC_ALL=C comm -23 - "
                f"{d}/before.dirs.paths | LC_ALL=C sort -r | while read -r p; do "
                f"rmdir \"$p\" 2>/dev/null || true; done; fi")
    paths = f"cut -d' ' -f4- {d}/before.dirs | LC_ALL=C sort > {d}/before.dirs.paths"
    body = " && ".join((now_pkgs, purge, users, groups, restore, recreate, paths, leftover))
    return _when(f"[ -e {d}/before.pkgs ]", body)


UNDO_KINDS: Mapping[str, tuple[tuple[str, ...], Callable[[Mapping[str, str]], tuple[str, ...]]]] = {
    "file_created": (("path",), _rm_file),
    "file_replaced": (("path", "backup"), _restore),
    "attrs_changed": (("path", "mode", "owner", "group"), _attrs),
    "dir_created": (("path",), _rmdir),
    "package_installed": (("name",), _purge),
    "sysctl_changed": (("key", "old"), _sysctl),
    "nft_table_created": (("family", "name"), _nft_table),
    "unit_started": (("unit",), _unit_stop),
    "unit_enabled": (("unit",), _unit_disable),
    "unit_file_created": (("path",), _unit_file),
    "unit_file_replaced": (("path", "backup"), _unit_file_restore),
    "tree_created": (("path",), _rm_tree),
    "tree_replaced": (("path", "backup"), _tree_restore),
    "nft_table_replaced": (("family", "name", "backup"), _nft_restore),
    "packages_installed": (("dir",), _purge_packages),
}


@dataclass(frozen=True)
class UndoRecord:
    """How to take one change back: a kind from `UNDO_KINDS` and its string fields."""

    kind: str
    args: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if self.kind not in UNDO_KINDS:
            raise ValueError(f"unknown undo kind {self.kind!r}")
        wanted = UNDO_KINDS[self.kind][0]
        if sorted(self.args) != sorted(wanted) or not all(isinstance(v, str) for v in self.args.values()):
            raise ValueError(f"undo {self.kind} takes string fields {', '.join(wanted)}, got {dict(self.args)}")
        object.__setattr__(self, "args", MappingProxyType(dict(self.args)))
        self.commands()  # a record whose undo cannot be written is refused now, not at teardown

    def commands(self) -> tuple[str, ...]:
        return UNDO_KINDS[self.kind][1](self.args)


def undo(kind: str, **args: str) -> UndoRecord:
    """Shorthand: `undo("file_created", path="/etc/x")`."""
    return UndoRecord(kind, args)


@dataclass(frozen=True)
class Entry:
    """One journal line: when, which step, and the undo of the change it announces."""

    record: UndoRecord
    step: str = ""
    at: str = ""

    def line(self) -> str:
        data = {"v": FORMAT_VERSION, "at": self.at, "step": self.step,
                "kind": self.record.kind, "args": dict(self.record.args)}
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def parse_journal(text: str, where: str) -> tuple[Entry, ...]:
    """Entries in file order.  A torn LAST line is dropped (its change never started);
    a bad line anywhere else is an error."""
    lines = [line for line in text.split("\n") if line.strip()]
    entries = []
    for number, line in enumerate(lines, 1):
        try:
            entries.append(_entry(json.loads(line)))
        except (ValueError, KeyError, TypeError) as exc:
            if number == len(lines) and not text.endswith("\n"):
                break
            raise JournalError(f"{where}: line {number}: not a journal entry ({exc})") from None
    return tuple(entries)


def _entry(data: dict) -> Entry:
    if data["v"] != FORMAT_VERSION:
        raise ValueError(f"format version {data['v']}, this toolkit reads {FORMAT_VERSION}")
    return Entry(UndoRecord(data["kind"], data["args"]), data.get("step", ""), data.get("at", ""))


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Journal:
    """The journal of one host, read and written through its `Remote`."""

    def __init__(self, remote: Remote, state: StateDir = StateDir(), clock: Callable[[], str] = utc_now) -> None:
        self.remote, self.state, self.clock = remote, state, clock

    def record(self, record: UndoRecord, step: str = "") -> None:
        """Append one entry; returns only once it is on the host's disk."""
        self.remote.run(self.record_command(self.state, Entry(record, step, self.clock())))

    @staticmethod
    def record_command(state: StateDir, entry: Entry) -> str:
        """The one command that appends `entry` (see Rule 2)."""
        root, path = q(state.root), q(state.journal)
        return f"umask 077 && mkdir -p {root} && printf '%s\\n' {q(entry.line())} >> {path}"

    def entries(self) -> tuple[Entry, ...]:
        path = q(self.state.journal)
        text = self.remote.run(f"if [ -f {path} ]; then cat {path}; fi").stdout
        return parse_journal(text, f"{self.remote.name}:{self.state.journal}")

    def teardown_commands(self, entries: tuple[Entry, ...]) -> tuple[str, ...]:
        """Every undo command, newest change first, then the removal of our state dir."""
        steps = [cmd for entry in reversed(entries) for cmd in entry.record.commands()]
        return (*steps, self.forget_command())

    def forget_command(self) -> str:
        state = self.state
        return f"rm -f {q(state.journal)} && rm -rf {q(state.backups)} && rmdir {q(state.root)} 2>/dev/null || true"

    def teardown(self, check: bool = False) -> tuple[str, ...]:
        """Undo every journaled change, newest first, then forget the journal (with
        `check`, only list the commands).  Returns the commands."""
        entries = self.entries()
        for entry in () if check else reversed(entries):
            self.undo_entry(entry)
        if not check:
            self._run(self.forget_command())
        return self.teardown_commands(entries)

    def undo_entry(self, entry: Entry) -> None:
        for cmd in entry.record.commands():
            self._run(cmd)

    def _run(self, cmd: str) -> None:
        result = self.remote.run(cmd, check=False)
        if result.rc != 0:
            detail = ((result.stderr or result.stdout).strip().splitlines() or [""])[-1]
            raise JournalError(f"{self.remote.name}: teardown step failed (exit {result.rc}): {cmd}: {detail}")
