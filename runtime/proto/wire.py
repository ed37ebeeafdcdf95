"""Wire layouts: the data-channel datagram header and the control-stream frames.

Rule 1: a datagram is [type u8][epoch u8][flags u8][reserved u8][session u32 BE][counter u64 BE]
        followed by the AEAD output; the 16-byte header is the AAD, and the nonce is 4 zero
        bytes followed by the header's last 8 bytes (the counter).
Rule 2: a stream frame is [type u8][length u24 BE][body]; a body longer than MAX_BODY or an
        unknown frame type is a ProtocolViolation.
Rule 3: datagram parsing never raises; stream parsing raises only ProtocolViolation.
"""

from __future__ import annotations

import struct

from runtime.proto.faults import ProtocolViolation

HEADER = struct.Struct("!BBBBIQ")
HEADER_LEN = HEADER.size
TAG_LEN = 16
MIN_DATAGRAM = HEADER_LEN + TAG_LEN
NONCE_PREFIX = bytes(4)
_SESSION = struct.Struct("!I")

DG_DATA = 1
DG_KEEPALIVE = 2

# Data-header flags (authenticated: the header is the AAD).  Receivers ignore unknown bits.
FL_CSUM_PARTIAL = 0x01  # DATA: the inner L4 checksum is partial (runtime/proto/checksum.py)
FL_CONTINUES = 0x02  # DATA: next TCP segment of the packet sealed just before (coalescing hint)
FL_TAKES_PARTIAL = 0x04  # any: the sender accepts DATA with FL_CSUM_PARTIAL
FL_INNER = FL_CSUM_PARTIAL | FL_CONTINUES

F_HELLO = 0x01
F_WELCOME = 0x02
F_REKEY = 0x03
F_REKEY_ACK = 0x04
F_REKEY_CONFIRM = 0x05
F_REKEY_REQUEST = 0x06
F_BYE = 0x07
F_DATA = 0x10
F_KEEPALIVE = 0x11
FRAME_TYPES = frozenset(
    {F_HELLO, F_WELCOME, F_REKEY, F_REKEY_ACK, F_REKEY_CONFIRM, F_REKEY_REQUEST, F_BYE,
     F_DATA, F_KEEPALIVE}
)
FRAME_HEADER_LEN = 4
MAX_BODY = 65535


def session_of(data: bytes) -> int:
    """The session id of a datagram, or 0 (never a valid id) when it is too short."""
    if len(data) < MIN_DATAGRAM:
        return 0
    return _SESSION.unpack_from(data, 4)[0]


def stray_reason(data: bytes) -> str:
    """Why a datagram no session takes is dropped: too short to name one, or a session id
    nobody holds."""
    return "short" if len(data) < MIN_DATAGRAM else "unknown-session"


def parse_header(data: bytes) -> tuple[int, int, int, int, int, int] | None:
    """(type, epoch, flags, reserved, session, counter), or None for a short datagram."""
    if len(data) < MIN_DATAGRAM:
        return None
    return HEADER.unpack_from(data)


def encode_frame(ftype: int, body: bytes) -> bytes:
    """One stream frame; the caller never passes a body over MAX_BODY."""
    size = len(body)
    if size > MAX_BODY:
        raise ValueError(f"frame body of {size} bytes exceeds {MAX_BODY}")
    return _SESSION.pack(ftype << 24 | size) + body


class FrameReader:
    """Cuts a byte stream into (type, body) frames; buffers at most one partial frame."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        frames: list[tuple[int, bytes]] = []
        while len(self._buf) >= FRAME_HEADER_LEN:
            word = _SESSION.unpack_from(self._buf)[0]
            ftype, size = word >> 24, word & 0xFFFFFF
            if ftype not in FRAME_TYPES:
                raise ProtocolViolation("unknown-frame-type")
            if size > MAX_BODY:
                raise ProtocolViolation("frame-too-large")
            end = FRAME_HEADER_LEN + size
            if len(self._buf) < end:
                break
            frames.append((ftype, bytes(self._buf[FRAME_HEADER_LEN:end])))
            del self._buf[:end]
        return frames
