"""The only module that talks SSH: `SshRemote`, a thin shell over `fabric.Connection`.

Rule 1: everything else in the toolkit takes a `Remote` (run/put/get/close), so tests hand
it a fake that knows only the commands they expect.
Rule 2: every command runs with the host's privileges for provisioning: directly when we
log in as the become user, else through `sudo -n` (NOPASSWD) or `sudo -k -S` with the
password fed on stdin, never on a command line, never echoed.
Rule 3: a host we cannot reach raises `HostUnreachable`; a command that exits non-zero
raises `CommandFailed`.  The runner counts the first as `unreachable`, the second as
`failed`.  A host key we refuse is unreachable too, with its own error and exit code
(`HostKeyUnknown`, `HostKeyChanged`): the check is `provision.hostkeys`, from the
inventory's UserKnownHostsFile and StrictHostKeyChecking.
Rule 4: with -v each command is echoed before it runs (`[#] cmd`, as wg-quick does).
"""

from __future__ import annotations

import logging
import os
import select
import shlex
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from provision.errors import HostUnreachable, ProvisionError
from provision.hostkeys import HostKeyCheck, known_name
from provision.inventory import Host

# paramiko's transport thread logs its failures with tracebacks; with no handler they reach
# stderr through logging's last resort.  We report them ourselves, as one line.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

Echo = Callable[[str], None]
CONNECT_TIMEOUT = 10.0
SHOWN_CMD = 72  # characters of a failed command in its error line
# strerror(3) of the errors that say the host, not the command, is the problem
RESOURCE_ERRORS = ("No space left on device", "Disk quota exceeded", "Read-only file system",
                   "Cannot allocate memory")
LOST_HINT = "once the host answers, run the same command again: it picks up where it stopped"


class CommandFailed(ProvisionError):
    """A command on the host exited non-zero."""

    default_hint = "run again with -v to see every command"


class BecomeFailed(ProvisionError):
    """sudo refused us: no NOPASSWD rule and no (or a wrong) become password."""

    default_hint = "set ansible_become_password, or allow the user NOPASSWD sudo"


@dataclass(frozen=True)
class Result:
    """What a command returned; stdout and stderr decoded as UTF-8 (bad bytes replaced)."""

    rc: int
    stdout: str = ""
    stderr: str = ""


class Remote(Protocol):
    """What operations, facts, the journal and the guard use to act on one host."""

    name: str

    def run(self, cmd: str, *, check: bool = True, input: bytes | str | None = None) -> Result: ...

    def put(self, data: bytes | Path, remote_path: str, mode: int = 0o644) -> None: ...

    def get(self, remote_path: str) -> bytes: ...

    def close(self) -> None: ...


def check_result(host: str, cmd: str, result: Result) -> Result:
    """Raise `CommandFailed` for a non-zero exit, naming the command (its start, when it is
    long: -v echoes it whole) and the error line that says why: the last line that names
    a host resource error (a full disk...), else the last line."""
    if result.rc == 0:
        return result
    lines = [line.strip() for line in (result.stderr or result.stdout).strip().splitlines() if line.strip()]
    cause = next((line for line in reversed(lines) if any(e in line for e in RESOURCE_ERRORS)), None)
    reason = f": {cause or lines[-1]}" if lines else ""
    shown = cmd if len(cmd) <= SHOWN_CMD else cmd[:SHOWN_CMD].rstrip() + " ..."
    raise CommandFailed(f"{host}: `{shown}` exited {result.rc}{reason}")


def as_bytes(data: bytes | str | Path | None) -> bytes:
    if data is None:
        return b""
    if isinstance(data, Path):
        return data.read_bytes()
    return data.encode() if isinstance(data, str) else data


# ---- become: how a command is wrapped, decided once per connection ---------------------


@dataclass(frozen=True)
class Become:
    """How commands gain the become user's privileges: not at all, `sudo -n`, or password."""

    mode: str = "direct"  # direct | nopasswd | password
    user: str = "root"

    def wrap(self, cmd: str) -> str:
        if self.mode == "direct":
            return cmd
        flags = "-n" if self.mode == "nopasswd" else "-k -S -p ''"
        return f"sudo {flags} -u {shlex.quote(self.user)} -- sh -c {shlex.quote(cmd)}"

    def stdin(self, password: str | None, data: bytes) -> bytes:
        if self.mode != "password":
            return data
        return (password or "").encode() + b"\n" + data


def expand_proxy(command: str, host: Host) -> str:
    """OpenSSH's %h, %p, %r and %% in a ProxyCommand."""
    tokens = {"h": host.address, "p": str(host.port), "r": host.user or "", "%": "%"}
    out, chars = [], iter(command)
    for char in chars:
        out.append(tokens.get(next(chars, ""), "") if char == "%" else char)
    return "".join(out)


# ---- the SSH session: fabric opens it, one paramiko channel per command ----------------


class SshSession:
    """One open SSH connection; `exec` runs a full command line with stdin bytes."""

    def __init__(self, host: Host, timeout: float = CONNECT_TIMEOUT) -> None:
        import fabric  # the operator side only; imported here so `Remote` users need not

        kwargs = _connect_kwargs(host, timeout)
        self.host = host
        self._conn = fabric.Connection(
            host.address, user=host.user, port=host.port, connect_timeout=timeout, connect_kwargs=kwargs,
        )
        try:
            _open(self._conn, host)
        except BaseException:
            self._conn.close()
            if "sock" in kwargs:
                kwargs["sock"].close()  # type: ignore[attr-defined]  # ends the proxy process
            raise

    def exec(self, cmd: str, stdin: bytes) -> tuple[int, bytes, bytes]:
        transport = self._conn.client.get_transport()
        channel = transport.open_session()
        channel.exec_command(cmd)
        feeder = threading.Thread(target=_feed, args=(channel, stdin), daemon=True)
        feeder.start()
        errors: list[bytes] = []
        reader = threading.Thread(target=lambda: errors.append(channel.makefile_stderr("rb").read()))
        reader.start()
        out = channel.makefile("rb").read()
        reader.join()
        feeder.join()
        rc = channel.recv_exit_status()
        if rc == -1 and not transport.is_active():
            raise EOFError("the connection was lost while a command ran")
        return rc, out, b"".join(errors)

    def close(self) -> None:
        self._conn.close()


def _open(conn: Any, host: Host) -> None:
    """Open the fabric Connection with our host key check in force.  Fabric's __init__ set
    AutoAddPolicy (any key, never recorded) and its open() leaves the policy alone, so ours
    replaces it, for the name paramiko looks up (fabric's host and port)."""
    import paramiko

    check = HostKeyCheck(host, known_name(conn.host, conn.port))
    check.install(conn.client)
    try:
        conn.open()
    except paramiko.BadHostKeyException as exc:
        raise check.changed(exc.key, exc.expected_key) from None


def _connect_kwargs(host: Host, timeout: float) -> dict[str, object]:
    kwargs: dict[str, object] = {"banner_timeout": timeout, "auth_timeout": timeout}
    if host.key_file:
        kwargs["key_filename"] = os.path.expanduser(host.key_file)
    if host.proxy_command:
        kwargs["sock"] = _proxy(expand_proxy(host.proxy_command, host))
    return kwargs


def _proxy(command: str) -> object:
    """paramiko's ProxyCommand, except that the command's end is an end of stream: stock
    `recv` spins on EOF and never reports it, so a dead proxy would hang every read."""
    import paramiko

    class EofProxyCommand(paramiko.ProxyCommand):
        def recv(self, size: int) -> bytes:
            stdout = self.process.stdout
            if not select.select([stdout], [], [], self.timeout)[0]:
                raise socket.timeout()
            return os.read(stdout.fileno(), size)  # b"" at EOF: paramiko raises EOFError

    return EofProxyCommand(command)


def _feed(channel: object, data: bytes) -> None:
    try:
        channel.sendall(data)  # type: ignore[attr-defined]
        channel.shutdown_write()  # type: ignore[attr-defined]
    except OSError:
        pass  # the command ended without reading all its input; its exit code tells


def _network_errors() -> tuple[type[BaseException], ...]:
    import paramiko

    return (OSError, socket.timeout, EOFError, paramiko.SSHException)


class Session(Protocol):
    def exec(self, cmd: str, stdin: bytes) -> tuple[int, bytes, bytes]: ...

    def close(self) -> None: ...


class SshRemote:
    """A `Remote` over SSH for one inventory host; `open()` connects and settles become."""

    def __init__(
        self,
        host: Host,
        *,
        echo: Echo | None = None,
        timeout: float = CONNECT_TIMEOUT,
        session_factory: Callable[[Host, float], Session] = SshSession,
    ) -> None:
        self.name = host.name
        self._host, self._echo, self._timeout = host, echo, timeout
        self._factory = session_factory
        self._session: Session | None = None
        self._become = Become()

    def open(self) -> SshRemote:
        try:
            self._session = self._factory(self._host, self._timeout)
        except _network_errors() as exc:
            raise self._unreachable(exc) from None
        self._become = self._settle_become()
        return self

    def run(self, cmd: str, *, check: bool = True, input: bytes | str | None = None) -> Result:
        data = as_bytes(input)
        self._say(f"[#] {cmd}" + (f"  (stdin: {len(data)} bytes)" if data else ""))
        rc, out, err = self._privileged(cmd, data)
        result = Result(rc, out.decode(errors="replace"), err.decode(errors="replace"))
        return check_result(self.name, cmd, result) if check else result

    def put(self, data: bytes | Path, remote_path: str, mode: int = 0o644) -> None:
        payload, path = as_bytes(data), shlex.quote(remote_path)
        self._say(f"[#] put {remote_path} ({len(payload)} bytes, mode {mode:04o})")
        cmd = f"umask 077 && cat > {path} && chmod {mode:04o} {path}"
        rc, out, err = self._privileged(cmd, payload)
        check_result(self.name, f"put {remote_path}", Result(rc, "", err.decode(errors="replace")))

    def get(self, remote_path: str) -> bytes:
        self._say(f"[#] get {remote_path}")
        rc, out, err = self._privileged(f"cat {shlex.quote(remote_path)}", b"")
        check_result(self.name, f"get {remote_path}", Result(rc, "", err.decode(errors="replace")))
        return out

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def _privileged(self, cmd: str, data: bytes) -> tuple[int, bytes, bytes]:
        stdin = self._become.stdin(self._host.become_password, data)
        return self._exec(self._become.wrap(cmd), stdin)

    def _exec(self, line: str, stdin: bytes) -> tuple[int, bytes, bytes]:
        if self._session is None:
            self.open()
        try:
            return self._session.exec(line, stdin)  # type: ignore[union-attr]
        except _network_errors() as exc:
            raise self._unreachable(exc, LOST_HINT) from None

    def _settle_become(self) -> Become:
        host = self._host
        if not host.become or host.user == host.become_user:
            return Become()
        if self._exec(Become("nopasswd", host.become_user).wrap("true"), b"")[0] == 0:
            return Become("nopasswd", host.become_user)
        if host.become_password is None:
            raise BecomeFailed(f"{host.name}: sudo as {host.user or 'the login user'} asks for a password")
        trial = Become("password", host.become_user)
        if self._exec(trial.wrap("true"), trial.stdin(host.become_password, b""))[0] != 0:
            raise BecomeFailed(f"{host.name}: sudo refused the become password")
        return trial

    def _unreachable(self, exc: BaseException, hint: str | None = None) -> HostUnreachable:
        host, where = self._host, self._host.target()
        reason = str(exc) or type(exc).__name__
        if hint is not None:  # the session was open: it broke under us
            return HostUnreachable(f"{host.name} ({where}): unreachable: the SSH connection was lost during a command "
                                   f"({reason})", hint)
        return HostUnreachable(f"{host.name} ({where}): unreachable: {reason}")

    def _say(self, line: str) -> None:
        if self._echo is not None:
            self._echo(line)


def connect(host: Host, echo: Echo | None = None, timeout: float = CONNECT_TIMEOUT) -> SshRemote:
    """An open `SshRemote` to `host` (raises `HostUnreachable`, one of its host key errors,
    or `BecomeFailed`)."""
    return SshRemote(host, echo=echo, timeout=timeout).open()
