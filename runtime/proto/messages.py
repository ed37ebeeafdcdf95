"""Control messages: frozen dataclasses carried as UTF-8 JSON objects in stream frames.

Rule 1: decoding is strict: bad UTF-8 or JSON, a non-object, an unknown or missing field, a
        field of the wrong type (a bool is not an int) or a value out of range raises
        ProtocolViolation, and nothing else.
Rule 2: each message class names its frame type; the field annotations are its schema.
Rule 3: values stay JSON-shaped here (strings for keys and addresses); `Welcome` converts
        to and from the typed TunnelAssignment.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import asdict, dataclass, fields
from functools import cache
from ipaddress import ip_address, ip_interface, ip_network
from typing import Any, ClassVar, get_type_hints

from runtime.proto import wire
from runtime.proto.config import TRANSPORTS, TunnelAssignment
from runtime.proto.faults import ProtocolViolation
from runtime.proto.keys import PUBLIC_KEY_LEN

VERSION = 1
U32 = 2**32
_MISSING = object()


def encode_key(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def decode_key(text: str) -> bytes | None:
    """The 32 raw bytes of a base64 X25519 public key, or None if it is not one."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == PUBLIC_KEY_LEN else None


def _parses(parse: Any, text: str | None, version: int | None = None) -> bool:
    if text is None:
        return True
    try:
        value = parse(text)
    except ValueError:
        return False
    return version is None or value.version == version


@dataclass(frozen=True)
class Hello:
    FRAME: ClassVar[int] = wire.F_HELLO
    version: int
    public_key: str
    ciphers: tuple[str, ...]
    transport: str

    def problem(self) -> str | None:
        if self.version != VERSION:
            return "version"
        if decode_key(self.public_key) is None:
            return "public_key"
        if not self.ciphers or len(self.ciphers) > 16:
            return "ciphers"
        return None if self.transport in TRANSPORTS else "transport"


@dataclass(frozen=True)
class Welcome:
    FRAME: ClassVar[int] = wire.F_WELCOME
    session_id: int
    public_key: str
    cipher: str
    address4: str
    address6: str | None
    server_address4: str
    server_address6: str | None
    routes: tuple[str, ...]
    dns: tuple[str, ...]
    mtu: int
    keepalive: int
    dead_peer: int
    data_port: int
    rekey_seconds: int
    rekey_packets: int

    def problem(self) -> str | None:
        checks = (
            ("session_id", 0 < self.session_id < U32),
            ("public_key", decode_key(self.public_key) is not None),
            ("address4", _parses(ip_interface, self.address4, 4)),
            ("address6", _parses(ip_interface, self.address6, 6)),
            ("server_address4", _parses(ip_address, self.server_address4, 4)),
            ("server_address6", _parses(ip_address, self.server_address6, 6)),
            ("routes", all(_parses(ip_network, r) for r in self.routes)),
            ("dns", all(_parses(ip_address, d) for d in self.dns)),
            ("mtu", 576 <= self.mtu <= 65535),
            ("keepalive", 0 < self.keepalive < self.dead_peer),
            ("data_port", 0 < self.data_port < 65536),
            ("rekey", self.rekey_seconds > 0 and 0 < self.rekey_packets < 2**63),
        )
        return next((name for name, ok in checks if not ok), None)

    def assignment(self) -> TunnelAssignment:
        """The typed assignment; only call on a validated Welcome."""
        six, server_six = self.address6, self.server_address6
        return TunnelAssignment(
            address4=ip_interface(self.address4),  # type: ignore[arg-type]
            server_address4=ip_address(self.server_address4),  # type: ignore[arg-type]
            address6=ip_interface(six) if six else None,  # type: ignore[arg-type]
            server_address6=ip_address(server_six) if server_six else None,  # type: ignore[arg-type]
            routes=tuple(ip_network(r) for r in self.routes),
            dns=tuple(ip_address(d) for d in self.dns),
        )

    @staticmethod
    def assignment_fields(a: TunnelAssignment) -> dict[str, Any]:
        """The Welcome fields that carry `a`."""
        return {
            "address4": str(a.address4),
            "address6": str(a.address6) if a.address6 else None,
            "server_address4": str(a.server_address4),
            "server_address6": str(a.server_address6) if a.server_address6 else None,
            "routes": tuple(str(r) for r in a.routes),
            "dns": tuple(str(d) for d in a.dns),
        }


@dataclass(frozen=True)
class Rekey:
    FRAME: ClassVar[int] = wire.F_REKEY
    epoch: int
    public_key: str

    def problem(self) -> str | None:
        if not 0 < self.epoch < U32:
            return "epoch"
        return None if decode_key(self.public_key) is not None else "public_key"


@dataclass(frozen=True)
class RekeyAck(Rekey):
    FRAME: ClassVar[int] = wire.F_REKEY_ACK


@dataclass(frozen=True)
class RekeyConfirm:
    FRAME: ClassVar[int] = wire.F_REKEY_CONFIRM
    epoch: int

    def problem(self) -> str | None:
        return None if 0 < self.epoch < U32 else "epoch"


@dataclass(frozen=True)
class RekeyRequest:
    FRAME: ClassVar[int] = wire.F_REKEY_REQUEST
    reason: str

    def problem(self) -> str | None:
        ok = len(self.reason) <= 64 and self.reason.isascii() and self.reason.isprintable()
        return None if ok else "reason"


@dataclass(frozen=True)
class Bye(RekeyRequest):
    FRAME: ClassVar[int] = wire.F_BYE


Message = Hello | Welcome | Rekey | RekeyAck | RekeyConfirm | RekeyRequest | Bye
BY_FRAME: dict[int, type[Message]] = {
    cls.FRAME: cls for cls in (Hello, Welcome, Rekey, RekeyAck, RekeyConfirm, RekeyRequest, Bye)
}


def encode(message: Message) -> bytes:
    """The frame (header and JSON body) carrying `message`."""
    body = json.dumps(asdict(message), separators=(",", ":")).encode("utf-8")
    return wire.encode_frame(message.FRAME, body)


def decode(ftype: int, body: bytes) -> Message:
    """The validated message in a frame body, or ProtocolViolation."""
    cls = BY_FRAME.get(ftype)
    if cls is None:
        raise ProtocolViolation("unexpected-frame-type")
    try:
        obj = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ProtocolViolation("bad-json") from None
    if not isinstance(obj, dict):
        raise ProtocolViolation("bad-json")
    return _build(cls, obj)


@cache
def _schema(cls: type[Message]) -> dict[str, Any]:
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


def _build(cls: type[Message], obj: dict[str, Any]) -> Message:
    schema = _schema(cls)
    name = cls.__name__.lower()
    if set(obj) - set(schema):
        raise ProtocolViolation(f"bad-{name}:unknown-field")
    values = {key: _coerce(obj.get(key, _MISSING), kind) for key, kind in schema.items()}
    bad = next((key for key, value in values.items() if value is _MISSING), None)
    if bad is not None:
        raise ProtocolViolation(f"bad-{name}:{bad}")
    message = cls(**values)
    problem = message.problem()
    if problem is not None:
        raise ProtocolViolation(f"bad-{name}:{problem}")
    return message


def _coerce(value: Any, kind: Any) -> Any:
    """`value` if it has JSON type `kind` (lists become tuples), else _MISSING."""
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is str:
        ok = isinstance(value, str)
    elif kind == str | None:
        ok = value is None or isinstance(value, str)
    else:  # tuple[str, ...]
        ok = isinstance(value, list) and len(value) <= 256 and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value
    return value if ok else _MISSING
