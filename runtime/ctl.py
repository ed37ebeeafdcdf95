"""The local control interface that `status`, `down` and `reload` use: a Unix socket.

Rule 1: reachable by root only: the socket's folder is 0700 and the socket 0600, owned
by root, and every connection's peer credentials (SO_PEERCRED) are checked for uid 0.
Rule 2: one request per connection: a JSON object on one line (`{"cmd": "status"}`),
answered by one JSON object on one line.  Unknown commands get `{"error": ...}`.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

from runtime.errors import NotRunning, PermissionDenied, VpnError

RUN_DIR = Path(os.environ.get("VPN_RUNTIME_RUN_DIR", "/run/vpn-runtime"))
CLIENT_SOCKET = RUN_DIR / "client.sock"
MAX_REQUEST = 4096

Handler = Callable[[dict], Awaitable[dict]]


def _peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


async def serve(path: Path, handler: Handler) -> asyncio.AbstractServer:
    """Listen on `path` (root only) and answer each request with `handler`."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    path.unlink(missing_ok=True)

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if _peer_uid(writer.get_extra_info("socket")) != 0:
                reply = {"error": "root only"}
            else:
                reply = await _answer(await reader.readline(), handler)
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    old = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(on_conn, path=str(path), limit=MAX_REQUEST)
    finally:
        os.umask(old)
    return server


async def _answer(line: bytes, handler: Handler) -> dict:
    try:
        request = json.loads(line)
    except ValueError:
        return {"error": "request is not JSON"}
    if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
        return {"error": "request needs a string 'cmd'"}
    return await handler(request)


def request(path: Path, cmd: str, timeout: float = 10.0, **args: object) -> dict:
    """Send one request to a running runtime and return its answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(path))
            s.sendall(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
            data = b"".join(iter(lambda: s.recv(65536), b""))
    except PermissionError:
        raise PermissionDenied(f"{path}: the control socket is root only") from None
    except (FileNotFoundError, ConnectionRefusedError):
        raise NotRunning(f"{path}: no runtime is running here", "start it first") from None
    except (socket.timeout, OSError) as e:
        raise VpnError(f"{path}: no answer from the runtime ({e})", "see its log") from None
    try:
        return json.loads(data)
    except ValueError:
        raise VpnError(f"{path}: the runtime answered with something that is not JSON") from None
