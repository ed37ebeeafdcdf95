"""DNS while the tunnel is up: the system resolver points at the tunnel's DNS server.

Rule 1: the decision (`choose`) and the file text (`render_resolv_conf`) are pure; the I/O
        around them is thin (`gather_facts`, `point_resolver`).
Rule 2: with systemd-resolved managing the resolver: `resolvectl dns|domain '~.'|default-route`
        on the tunnel link (systemd's RESOLVED-VPNS recipe); resolved forgets it when the link
        goes away, and `down` reverts it anyway. Otherwise /etc/resolv.conf is backed up byte
        for byte (a symlink as its target, a missing file as missing) into the state dir and
        replaced atomically; `down` puts back exactly what was there.
Rule 3: the journal records the backup BEFORE the file is replaced, so restoring needs only
        the state file and the backup it names.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from runtime.errors import SystemSetupError
from runtime.undo import Journal, Step, write_atomically

Method = Literal["resolved", "file"]
Run = Callable[[Sequence[str]], None]
MAX_NAMESERVERS = 3  # glibc reads no more


@dataclass(frozen=True)
class DnsPaths:
    """Where the resolver's files are; tests point these into a temporary root."""

    resolv_conf: Path = Path("/etc/resolv.conf")
    state_dir: Path = Path("/run/vpn-runtime")
    resolved_dir: Path = Path("/run/systemd/resolve")


@dataclass(frozen=True)
class ResolverFacts:
    """What decides how to point the resolver."""

    resolved_running: bool  # resolved's varlink socket exists
    resolvectl: str | None  # path of resolvectl, if installed
    resolv_conf_target: str | None  # symlink target of resolv.conf, if it is a symlink
    resolv_conf_has_stub: bool  # resolv.conf names resolved's stub 127.0.0.53


def choose(facts: ResolverFacts, resolved_dir: Path = DnsPaths.resolved_dir) -> Method:
    """resolved when it runs, can be driven and owns resolv.conf; else the file itself."""
    if not facts.resolved_running or facts.resolvectl is None:
        return "file"
    target = facts.resolv_conf_target
    managed = target is not None and str(resolved_dir) in os.path.normpath(target)
    return "resolved" if managed or facts.resolv_conf_has_stub else "file"


def render_resolv_conf(servers: Sequence[str], search: Sequence[str] = ()) -> bytes:
    """The resolv.conf we write while the tunnel is up."""
    if not servers:
        raise SystemSetupError("DNS: no tunnel DNS server to point the resolver at",
                               "set the tunnel's DNS in the bundle")
    lines = ["# Written by vpn-runtime while the tunnel is up.",
             "# `vpn-runtime down` puts the original file back."]
    lines += [f"nameserver {s}" for s in servers[:MAX_NAMESERVERS]]
    if search:
        lines.append("search " + " ".join(search))
    return ("\n".join(lines) + "\n").encode()


def resolvectl_commands(resolvectl: str, ifname: str, servers: Sequence[str]) -> list[list[str]]:
    return [[resolvectl, "dns", ifname, *servers],
            [resolvectl, "domain", ifname, "~."],
            [resolvectl, "default-route", ifname, "true"]]


# --- I/O ------------------------------------------------------------------------------

def gather_facts(paths: DnsPaths = DnsPaths()) -> ResolverFacts:
    conf = paths.resolv_conf
    target = os.readlink(conf) if conf.is_symlink() else None
    try:
        has_stub = b"nameserver 127.0.0.53" in conf.read_bytes()
    except OSError:
        has_stub = False
    return ResolverFacts((paths.resolved_dir / "io.systemd.Resolve").exists(),
                         shutil.which("resolvectl"), target, has_stub)


def point_resolver(journal: Journal, ifname: str, servers: Sequence[str],
                   paths: DnsPaths = DnsPaths(), run: Run | None = None) -> Method:
    """Point the system resolver at `servers` for as long as the tunnel is up."""
    facts = gather_facts(paths)
    method = choose(facts, paths.resolved_dir)
    if method == "resolved":
        assert facts.resolvectl is not None
        use_resolved(journal, facts.resolvectl, ifname, servers, run or _run)
    else:
        replace_resolv_conf(journal, servers, paths)
    return method


def use_resolved(journal: Journal, resolvectl: str, ifname: str, servers: Sequence[str],
                 run: Run) -> None:
    commands = resolvectl_commands(resolvectl, ifname, servers)
    step = Step("resolved_link", {"resolvectl": resolvectl, "ifname": ifname},
                "; ".join(" ".join(c) for c in commands), f"{resolvectl} revert {ifname}")
    if step not in journal.steps:
        journal.record(step)
    for command in commands:
        run(command)


def replace_resolv_conf(journal: Journal, servers: Sequence[str], paths: DnsPaths) -> None:
    """Back up resolv.conf (once per `up`), record it, then replace it atomically."""
    text = render_resolv_conf(servers)
    path = paths.resolv_conf
    if not any(s.kind == "resolv_conf" and s.args["path"] == str(path) for s in journal.steps):
        backup = _backup(path, paths.state_dir)
        journal.record(Step("resolv_conf", {"path": str(path), **backup},
                            f"cp -a {path} {paths.state_dir}/ && write {path}", f"restore {path}"))
    try:
        write_atomically(path, text, 0o644)
    except OSError as exc:
        raise SystemSetupError(f"{path}: {exc.strerror}") from exc


def _backup(path: Path, state_dir: Path) -> dict[str, Any]:
    """Save what `path` is now: a symlink's target, a file's bytes and owner, or nothing."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return {"type": "absent"}
    if stat.S_ISLNK(st.st_mode):
        return {"type": "symlink", "target": os.readlink(path)}
    if not stat.S_ISREG(st.st_mode):
        raise SystemSetupError(f"{path}: neither a file nor a symlink", "fix it by hand")
    copy = state_dir / f"{path.name}.orig"
    write_atomically(copy, path.read_bytes(), 0o600)
    return {"type": "file", "backup": str(copy), "mode": stat.S_IMODE(st.st_mode),
            "uid": st.st_uid, "gid": st.st_gid}


def undo_resolv_conf(args: Mapping[str, Any]) -> None:
    """Put back what `_backup` saved; a second call finds nothing left to do."""
    path = Path(args["path"])
    if args["type"] == "absent":
        path.unlink(missing_ok=True)
    elif args["type"] == "symlink":
        _replace_with_symlink(path, args["target"])
    else:
        _restore_file(path, Path(args["backup"]), args["mode"], args["uid"], args["gid"])


def _restore_file(path: Path, backup: Path, mode: int, uid: int, gid: int) -> None:
    try:
        data = backup.read_bytes()
    except FileNotFoundError:
        return  # restored already (the backup goes only after the file is back)
    write_atomically(path, data, mode)
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    backup.unlink()


def _replace_with_symlink(path: Path, target: str) -> None:
    tmp = Path(tempfile.mktemp(dir=path.parent, prefix=f".{path.name}."))
    os.symlink(target, tmp)
    os.replace(tmp, path)


def undo_resolved_link(args: Mapping[str, Any]) -> None:
    # Fails harmlessly when the link is gone (resolved dropped its settings with it).
    subprocess.run([args["resolvectl"], "revert", args["ifname"]], capture_output=True, check=False)


def _run(command: Sequence[str]) -> None:
    done = subprocess.run(list(command), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemSetupError(f"{' '.join(command)}: {done.stderr.strip() or done.returncode}",
                               "is systemd-resolved running?")


UNDOERS = {"resolv_conf": undo_resolv_conf, "resolved_link": undo_resolved_link}
