"""A tiny SSH server on stdin/stdout, for tests: the client reaches it through a
ProxyCommand, so `SshSession` and `SshRemote` run over real SSH with no network at all.
It accepts any public key and runs each exec request with `sh -c` as the current user.
Its host key is a fresh ECDSA key, or the private key file named by its one argument."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import threading
import time

import paramiko


class StdioSocket:
    """Enough of a socket for paramiko's Transport, over file descriptors 0 and 1."""

    def __init__(self) -> None:
        self.timeout: float | None = None

    def settimeout(self, timeout: float | None) -> None:
        self.timeout = timeout

    def gettimeout(self) -> float | None:
        return self.timeout

    def recv(self, size: int) -> bytes:
        if not select.select([0], [], [], self.timeout)[0]:
            raise socket.timeout()
        return os.read(0, size)

    def send(self, data: bytes) -> int:
        return os.write(1, data)

    def sendall(self, data: bytes) -> None:
        while data:
            data = data[self.send(data):]

    def close(self) -> None:
        pass


def pump(read, write, done=None) -> None:
    while chunk := read(65536):
        write(chunk)
    if done is not None:
        done()


def serve_exec(channel: paramiko.Channel, command: bytes) -> None:
    proc = subprocess.Popen(["sh", "-c", command.decode()], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pumps = [
        threading.Thread(target=pump, args=(channel.recv, proc.stdin.write, proc.stdin.close)),
        threading.Thread(target=pump, args=(proc.stdout.read1, channel.sendall)),
        threading.Thread(target=pump, args=(proc.stderr.read1, channel.sendall_stderr)),
    ]
    for thread in pumps:
        thread.daemon = True
        thread.start()
    rc = proc.wait()
    pumps[1].join()
    pumps[2].join()
    channel.send_exit_status(rc)
    channel.close()


class Server(paramiko.ServerInterface):
    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return paramiko.AUTH_SUCCESSFUL

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        threading.Thread(target=serve_exec, args=(channel, command), daemon=True).start()
        return True


def main() -> None:
    transport = paramiko.Transport(StdioSocket())
    transport.add_server_key(paramiko.PKey.from_path(sys.argv[1]) if sys.argv[1:] else paramiko.ECDSAKey.generate())
    transport.start_server(server=Server())
    while transport.is_active():
        time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main())
