"""SSH host key checking as OpenSSH does it, from the inventory's own options.

Rule 1: the name looked up and written is the one paramiko looks up: the address we
connect to (also behind a ProxyCommand), as `[address]:port` when the port is not 22.
Rule 2: the keys the host's known-hosts files (UserKnownHostsFile, then
GlobalKnownHostsFile) hold for that name are handed to paramiko, which refuses a key that
differs from them under every policy (`HostKeyChanged`, naming the file and line).  A line
that cannot be read is skipped, as ssh skips it; paramiko itself never writes a file.
Rule 3: a host with no known key meets StrictHostKeyChecking: `yes` refuses it
(`HostKeyUnknown`); `accept-new` appends one OpenSSH line to the first UserKnownHostsFile
(the file and its directory made 0600/0700 when missing, its other lines never rewritten,
nothing written to /dev/null) and logs one line with the key's type and SHA256
fingerprint; `no` accepts it and records nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import shlex
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from provision.errors import HostKeyChanged, HostKeyUnknown
from provision.inventory import Host

if TYPE_CHECKING:
    import paramiko

log = logging.getLogger(__name__)
_APPENDING = threading.Lock()  # hosts connect in parallel threads, maybe to one file


@dataclass(frozen=True)
class KnownKey:
    """One known-hosts line that names the host: where it is, and the key it gives."""

    path: str
    line: int
    keytype: str
    blob: bytes


# ---- pure: names, lines, fingerprints --------------------------------------------------


def known_name(address: str, port: int) -> str:
    """The name a known-hosts line gives a host, as ssh and paramiko look it up."""
    return address if port == 22 else f"[{address}]:{port}"


def fingerprint(blob: bytes) -> str:
    """OpenSSH's fingerprint of a key blob: `SHA256:` and the unpadded base64 of its sha256."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def known_line(name: str, keytype: str, blob: bytes) -> str:
    return f"{name} {keytype} {base64.b64encode(blob).decode()}\n"


def names_match(field: str, name: str) -> bool:
    """Whether a line's first field (`a,b`, or hashed `|1|salt|hmac`) names `name`."""
    return any(_hashed_match(entry, name) if entry.startswith("|1|") else entry == name
               for entry in field.split(","))


def _hashed_match(entry: str, name: str) -> bool:
    parts = entry.split("|")
    try:
        salt, digest = base64.b64decode(parts[2], validate=True), base64.b64decode(parts[3], validate=True)
    except (IndexError, binascii.Error):
        return False
    return hmac.compare_digest(hmac.new(salt, name.encode(), "sha1").digest(), digest)


def known_keys(text: str, path: str, name: str) -> Iterator[KnownKey]:
    """The lines of a known-hosts file's `text` that give `name` a key, in file order
    (comments, markers such as @revoked, and lines that are not base64 are passed over)."""
    for number, line in enumerate(text.split("\n"), 1):
        fields = line.split()
        if len(fields) < 3 or fields[0].startswith(("#", "@")) or not names_match(fields[0], name):
            continue
        try:
            blob = base64.b64decode(fields[2], validate=True)
        except binascii.Error:
            continue
        yield KnownKey(path, number, fields[1], blob)


# ---- the check: files in, paramiko's policy out ----------------------------------------


class HostKeyCheck:
    """One connection's check, put in force on a paramiko client with `install`.  It is the
    client's missing-host-key policy (paramiko calls `missing_host_key` for a name it
    knows no key of), in place of the AutoAddPolicy Fabric sets."""

    def __init__(self, host: Host, name: str) -> None:
        self.host, self.name = host, name
        self.known = [k for path in (*host.known_hosts, *host.global_known_hosts) for k in _read(host, path, name)]

    def install(self, client: paramiko.SSHClient) -> None:
        """Hand `client` the known keys, and put this check in force as its policy."""
        keys, kinds = client.get_host_keys(), set()
        for known in self.known:
            key = _pkey(known)
            if key is not None and key.get_name() not in kinds:  # paramiko compares with one key per type
                kinds.add(key.get_name())
                keys.add(self.name, key.get_name(), key)
        client.set_missing_host_key_policy(self)

    def missing_host_key(self, client: paramiko.SSHClient, name: str, key: paramiko.PKey) -> None:
        """paramiko found no known key for `name` (the same name `install` was given)."""
        if self.host.host_key_checking == "yes":
            raise self._unknown(name, key)
        if self.host.host_key_checking == "accept-new":
            self._record(name, key)

    def changed(self, got: paramiko.PKey, expected: paramiko.PKey) -> HostKeyChanged:
        """The error for a host that showed `got` where a line we installed holds `expected`."""
        host, shown = self.host, f"{got.get_name()} {fingerprint(got.asbytes())}"
        was = next(k for k in self.known if k.blob == expected.asbytes())  # paramiko knows only these
        return HostKeyChanged(
            f"{host.name} ({host.target()}): the SSH host key of {self.name} has CHANGED ({shown}) from the one "
            f"in {was.path} line {was.line}: possible man-in-the-middle",
            f"if the host was rebuilt, remove the old key with "
            f"ssh-keygen -f {shlex.quote(was.path)} -R {shlex.quote(self.name)}, then connect again",
        )

    def _unknown(self, name: str, key: paramiko.PKey) -> HostKeyUnknown:
        host, files = self.host, (*self.host.known_hosts, *self.host.global_known_hosts)
        into = host.known_hosts[0] if host.known_hosts else "a UserKnownHostsFile"
        return HostKeyUnknown(
            f"{host.name} ({host.target()}): the SSH host key of {name} ({key.get_name()} "
            f"{fingerprint(key.asbytes())}) is not in {' or '.join(files) or 'any known-hosts file'} "
            "and StrictHostKeyChecking=yes",
            f"check the fingerprint, then add the key to {into} with ssh-keyscan or one ssh login, "
            "or set StrictHostKeyChecking=accept-new",
        )

    def _record(self, name: str, key: paramiko.PKey) -> None:
        who, shown = self.host.name, f"{key.get_name()} {fingerprint(key.asbytes())}"
        path = self.host.known_hosts[0] if self.host.known_hosts else os.devnull
        if path == os.devnull:
            log.warning(f"{who}: accepted the new SSH host key of {name} ({shown}); not recorded")
            return
        try:
            with _APPENDING:
                added = append_known(Path(path), name, key.get_name(), key.asbytes())
        except OSError as exc:
            log.warning(f"{who}: accepted the new SSH host key of {name} ({shown}) but could not record it in "
                        f"{path}: {exc.strerror or exc}")
            return
        if added:
            log.warning(f"{who}: added the SSH host key of {name} to {path} ({shown})")


def append_known(path: Path, name: str, keytype: str, blob: bytes) -> bool:
    """Append `name`'s key to the known-hosts file at `path` unless a line already gives it
    (another connection of this run may have); False when it was there."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    with open(fd, "r+b", buffering=0) as file:
        text = file.read()
        if any(k.blob == blob for k in known_keys(text.decode(errors="replace"), str(path), name)):
            return False
        lead = b"\n" if text and not text.endswith(b"\n") else b""
        file.write(lead + known_line(name, keytype, blob).encode())
    return True


def _read(host: Host, path: str, name: str) -> list[KnownKey]:
    try:
        text = Path(path).read_bytes().decode(errors="replace")
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.warning(f"{host.name}: cannot read known-hosts file {path}: {exc.strerror or exc}; passed over")
        return []
    return list(known_keys(text, path, name))


def _pkey(known: KnownKey) -> paramiko.PKey | None:
    """paramiko's key for a known-hosts line, or None when paramiko cannot read it."""
    import paramiko

    try:
        return paramiko.PKey.from_type_string(known.keytype, known.blob)
    except (paramiko.SSHException, paramiko.pkey.UnknownKeyType, ValueError, ArithmeticError, IndexError):
        return None
