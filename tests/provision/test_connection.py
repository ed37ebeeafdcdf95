"""`SshRemote`: become wrapping, echo, secrets, and unreachable vs failed, over a fake
session; and one real paramiko connect through a ProxyCommand that dies."""

from __future__ import annotations

import time

import pytest

from tests.provision.fakes import host
from provision.connection import (
    BecomeFailed, CommandFailed, HostUnreachable, SshRemote, SshSession, expand_proxy,
)

PROBE = "sudo -n -u root -- sh -c true"
TRIAL = "sudo -k -S -p '' -u root -- sh -c true"


class FakeSession:
    """Answers full command lines (after become wrapping) from a table; records stdin."""

    def __init__(self, answers: dict[str, int] | None = None, broken: bool = False) -> None:
        self.answers = answers or {}
        self.broken = broken
        self.calls: list[tuple[str, bytes]] = []

    def exec(self, cmd: str, stdin: bytes) -> tuple[int, bytes, bytes]:
        if self.broken:
            raise EOFError("connection closed by remote host")
        self.calls.append((cmd, stdin))
        rc = self.answers.get(cmd, 0)
        return rc, b"out\xff", b"" if rc == 0 else b"boom\nno such file"

    def close(self) -> None:
        pass


def remote_for(session: FakeSession, lines: list[str] | None = None, **host_args) -> SshRemote:
    echo = lines.append if lines is not None else None
    return SshRemote(host(**host_args), echo=echo, session_factory=lambda h, t: session).open()


def test_root_login_runs_commands_as_they_are_and_echoes_them():
    session, lines = FakeSession(), []
    result = remote_for(session, lines, user="root", become=True).run("sysctl -w a=1")
    assert session.calls == [("sysctl -w a=1", b"")]
    assert lines == ["[#] sysctl -w a=1"]
    assert result.stdout == "out\ufffd"


def test_nopasswd_sudo_wraps_with_sudo_n():
    session = FakeSession()
    remote_for(session, user="admin", become=True).run("echo 'hi'", input="x")
    assert session.calls[0] == (PROBE, b"")
    assert session.calls[1] == ("sudo -n -u root -- sh -c 'echo '\"'\"'hi'\"'\"''", b"x")


def test_password_sudo_feeds_the_password_on_stdin_and_never_prints_it():
    session, lines = FakeSession({PROBE: 1}), []
    remote = remote_for(session, lines, user="admin", become=True, become_password="s3cret!")
    remote.run("cat > /etc/x", input=b"data")
    remote.put(b"key", "/etc/k", 0o600)
    assert session.calls[1] == (TRIAL, b"s3cret!\n")
    assert session.calls[2] == ("sudo -k -S -p '' -u root -- sh -c 'cat > /etc/x'", b"s3cret!\ndata")
    assert session.calls[3][1] == b"s3cret!\nkey"
    assert lines == ["[#] cat > /etc/x  (stdin: 4 bytes)", "[#] put /etc/k (3 bytes, mode 0600)"]
    assert not any("s3cret" in cmd for cmd, _ in session.calls)


def test_sudo_without_a_rule_or_password_is_a_clear_error():
    with pytest.raises(BecomeFailed, match="asks for a password"):
        remote_for(FakeSession({PROBE: 1}), user="admin", become=True)


def test_wrong_become_password_is_refused():
    with pytest.raises(BecomeFailed, match="refused"):
        remote_for(FakeSession({PROBE: 1, TRIAL: 1}), user="admin", become=True, become_password="x")


def test_no_become_runs_as_the_login_user():
    session = FakeSession()
    remote_for(session, user="admin").run("id -u")
    assert session.calls == [("id -u", b"")]


def test_failed_command_is_not_unreachable():
    remote = remote_for(FakeSession({"false": 1}), user="root")
    with pytest.raises(CommandFailed, match="`false` exited 1: no such file"):
        remote.run("false")
    assert remote.run("false", check=False).rc == 1


def test_broken_connection_is_unreachable():
    remote = remote_for(FakeSession(broken=True), user="root", port=2222)
    with pytest.raises(HostUnreachable, match=r"vps1 \(root@203.0.113.10:2222\): unreachable"):
        remote.run("true")


def test_connect_failure_is_unreachable():
    def refuse(h, t):
        raise ConnectionRefusedError(111, "Connection refused")

    with pytest.raises(HostUnreachable, match="Connection refused"):
        SshRemote(host(), session_factory=refuse).open()


def test_put_and_get_carry_bytes_and_mode():
    session = FakeSession()
    remote = remote_for(session, user="root")
    remote.put(b"\x00\x01", "/etc/a b", 0o600)
    assert session.calls[-1] == ("umask 077 && cat > '/etc/a b' && chmod 0600 '/etc/a b'", b"\x00\x01")
    assert remote.get("/etc/a b") == b"out\xff"


def test_proxy_command_tokens():
    h = host(address="192.0.2.30", port=2222, user="deploy")
    assert expand_proxy("socat STDIO TCP:%h:%p # %r %%", h) == "socat STDIO TCP:192.0.2.30:2222 # deploy %"


def test_real_ssh_through_a_dead_proxy_command_is_unreachable_quickly():
    # No network: the ProxyCommand is a local process that exits at once.
    started = time.monotonic()
    remote = SshRemote(host(proxy_command="sh -c 'exit 1'"), timeout=5, session_factory=SshSession)
    with pytest.raises(HostUnreachable, match="unreachable"):
        remote.open()
    assert time.monotonic() - started < 5
