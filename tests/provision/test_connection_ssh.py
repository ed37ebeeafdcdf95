"""`SshRemote` over real SSH (paramiko client and server) with no network: the server
is a process on the other end of the ProxyCommand (`stdio_sshd.py`)."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

import paramiko
import pytest

from provision.connection import CommandFailed, HostUnreachable, connect
from tests.provision.fakes import host

SERVER = Path(__file__).with_name("stdio_sshd.py")


@pytest.fixture
def remote(tmp_path):
    key = tmp_path / "id_ecdsa"
    paramiko.ECDSAKey.generate().write_private_key_file(str(key))
    target = host("stdio", address="stdio.invalid", user=getpass.getuser(), key_file=str(key),
                  proxy_command=f"{sys.executable} {SERVER}")
    lines: list[str] = []
    opened = connect(target, echo=lines.append, timeout=10)
    opened.lines = lines
    yield opened
    opened.close()


def test_run_returns_exit_code_stdout_and_stderr(remote):
    result = remote.run("echo out; echo err >&2; exit 3", check=False)
    assert (result.rc, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert remote.lines == ["[#] echo out; echo err >&2; exit 3"]


def test_a_failing_command_raises_command_failed(remote):
    with pytest.raises(CommandFailed, match="exited 2: nope"):
        remote.run("echo nope >&2; exit 2")


def test_large_stdin_arrives_whole(remote):
    data = os.urandom(300_000)
    assert remote.run("wc -c", input=data).stdout.strip() == "300000"


def test_put_and_get_binary_with_mode(remote, tmp_path):
    data = bytes(range(256)) * 4096
    target = tmp_path / "blob"
    remote.put(data, str(target), 0o600)
    assert target.read_bytes() == data and (target.stat().st_mode & 0o777) == 0o600
    assert remote.get(str(target)) == data


def test_a_connection_that_dies_is_unreachable(remote):
    with pytest.raises(HostUnreachable, match="stdio.invalid"):
        remote.run("kill -9 $PPID; sleep 5")
        remote.run("true")
