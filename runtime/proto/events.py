"""What the cores hand back to the I/O loop: actions (imperative) and events (past tense).

Rule 1: actions say what to do (SendStream, SendDatagram, WriteTun, CloseConnection); the
        loop performs them in order. Events say what happened; the loop logs or reacts.
Rule 2: `conn` names the server's TCP connection (the caller's id); the client uses 0.
        `addr` is the peer's UDP (host, port); the client's is None (its socket is connected).
Rule 3: the per-packet data path does not use these: seal/open return bytes directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runtime.proto.config import TunnelAssignment

Address = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class SendStream:
    data: bytes
    conn: int = 0


@dataclass(frozen=True, slots=True)
class SendDatagram:
    data: bytes
    addr: Address | None = None


@dataclass(frozen=True, slots=True)
class WriteTun:
    packet: bytes


@dataclass(frozen=True, slots=True)
class CloseConnection:
    conn: int = 0


@dataclass(frozen=True, slots=True)
class HandshakeCompleted:
    """The tunnel is up. `name` is the peer's certificate name (client CN, or server name)."""

    session_id: int
    name: str
    assignment: TunnelAssignment
    transport: str
    mtu: int
    data_port: int
    conn: int = 0


@dataclass(frozen=True, slots=True)
class HandshakeFailed:
    """The handshake was refused, by us or by the peer; `reason` says why."""

    reason: str
    conn: int = 0


@dataclass(frozen=True, slots=True)
class SessionClosed:
    session_id: int
    name: str
    reason: str
    conn: int = 0


@dataclass(frozen=True, slots=True)
class PeerDead:
    """Nothing authenticated came from the peer for `silent_for` seconds."""

    session_id: int
    silent_for: float


@dataclass(frozen=True, slots=True)
class KeysRotated:
    session_id: int
    epoch: int


@dataclass(frozen=True, slots=True)
class PeerRoamed:
    session_id: int
    endpoint: Address


Action = SendStream | SendDatagram | WriteTun | CloseConnection
Event = HandshakeCompleted | HandshakeFailed | SessionClosed | PeerDead | KeysRotated | PeerRoamed
Output = Action | Event
