"""rtnetlink messages built and read without I/O: the codec under runtime/rtnl.py.

Rule 1: pure: requests are built as bytes and replies parsed from bytes; no socket here.
Rule 2: replies are parsed as untrusted input: every length is checked against the bytes at
        hand, and anything malformed raises NetlinkParseError (a ValueError), never
        IndexError or struct.error.
Rule 3: only what netconf needs: get and set a link, add and delete addresses, routes and
        policy rules, dump the rules of one family.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP, NLM_F_EXCL, NLM_F_CREATE = 0x300, 0x200, 0x400
RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWADDR, RTM_DELADDR = 20, 21
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
RTM_NEWRULE, RTM_DELRULE, RTM_GETRULE = 32, 33, 34
IFLA_IFNAME, IFLA_MTU, IFLA_TXQLEN = 3, 4, 13
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_TABLE = 1, 4, 15
FRA_PRIORITY, FRA_FWMARK, FRA_SUPPRESS_PREFIXLEN, FRA_TABLE = 6, 10, 14, 15
IFF_UP = 0x1
RTPROT_BOOT, RTN_UNICAST, FR_ACT_TO_TBL = 3, 1, 1
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_NOWHERE = 0, 253, 255
MAX_ERRNO = 4095  # the kernel's errno values are 1..4095
ADD = {"add": NLM_F_CREATE | NLM_F_EXCL, "del": 0}

_HEADER = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
_ATTR = struct.Struct("=HH")  # length, type
_IFINFO = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBi")  # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
_FIBRULE = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, res1, res2, action, flags
_U32 = struct.Struct("=I")
_I32 = struct.Struct("=i")


class NetlinkParseError(ValueError):
    """A reply that is not a well-formed netlink message."""


@dataclass(frozen=True)
class Message:
    """One netlink message: its header fields and the bytes after the header."""

    kind: int
    flags: int
    seq: int
    body: bytes


@dataclass(frozen=True)
class Link:
    index: int
    flags: int
    mtu: int
    txqlen: int

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)


@dataclass(frozen=True)
class RuleInfo:
    """A policy rule as the kernel reports it (None: the attribute is absent)."""

    family: int
    priority: int | None
    table: int
    fwmark: int | None
    flags: int
    suppress_prefixlen: int | None


# --- building requests ----------------------------------------------------------------

def message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return _HEADER.pack(_HEADER.size + len(body), kind, flags, seq, 0) + body


def attr(kind: int, value: bytes) -> bytes:
    size = _ATTR.size + len(value)
    return _ATTR.pack(size, kind) + value + bytes(-size % 4)


def attr_u32(kind: int, value: int) -> bytes:
    return attr(kind, _U32.pack(value))


def link_by_name(ifname: str) -> tuple[int, int, bytes]:
    """(type, flags, body) of a request for one link by name."""
    return RTM_GETLINK, 0, _IFINFO.pack(0, 0, 0, 0, 0) + attr(IFLA_IFNAME, ifname.encode() + b"\0")


def link_by_index(index: int) -> tuple[int, int, bytes]:
    return RTM_GETLINK, 0, _IFINFO.pack(0, 0, index, 0, 0)


def set_link(index: int, mtu: int, txqlen: int, up: bool) -> tuple[int, int, bytes]:
    body = _IFINFO.pack(0, 0, index, IFF_UP if up else 0, IFF_UP)
    return RTM_NEWLINK, 0, body + attr_u32(IFLA_MTU, mtu) + attr_u32(IFLA_TXQLEN, txqlen)


def address(cmd: str, index: int, family: int, packed: bytes, prefixlen: int) -> tuple[int, int, bytes]:
    """`ip address add|del ADDRESS/PREFIX dev INDEX` (IFA_LOCAL and IFA_ADDRESS, as ip does)."""
    body = _IFADDR.pack(family, prefixlen, 0, RT_SCOPE_UNIVERSE, index)
    body += attr(IFA_LOCAL, packed) + attr(IFA_ADDRESS, packed)
    return (RTM_NEWADDR if cmd == "add" else RTM_DELADDR), ADD[cmd], body


def route(cmd: str, family: int, packed_dst: bytes, dst_len: int, table: int, oif: int) -> tuple[int, int, bytes]:
    """`ip route add|del DST/LEN dev OIF table TABLE`: a device route, with ip's defaults."""
    if cmd == "add":
        fields = (RTPROT_BOOT, RT_SCOPE_LINK, RTN_UNICAST)
    else:
        fields = (0, RT_SCOPE_NOWHERE, 0)  # match whatever protocol, scope and type it has
    body = _RTMSG.pack(family, dst_len, 0, 0, table if table < 256 else 0, *fields, 0)
    body += attr(RTA_DST, packed_dst) + attr_u32(RTA_TABLE, table) + attr_u32(RTA_OIF, oif)
    return (RTM_NEWROUTE if cmd == "add" else RTM_DELROUTE), ADD[cmd], body


def rule(cmd: str, family: int, priority: int, table: int, fwmark: int | None = None, flags: int = 0,
         suppress_prefixlen: int | None = None) -> tuple[int, int, bytes]:
    """`ip rule add|del [not] [fwmark M] table T [suppress_prefixlength N] priority P`."""
    body = _FIBRULE.pack(family, 0, 0, 0, table if table < 256 else 0, 0, 0, FR_ACT_TO_TBL, flags)
    body += attr_u32(FRA_PRIORITY, priority) + attr_u32(FRA_TABLE, table)
    if fwmark is not None:
        body += attr_u32(FRA_FWMARK, fwmark)
    if suppress_prefixlen is not None:
        body += attr_u32(FRA_SUPPRESS_PREFIXLEN, suppress_prefixlen)
    return (RTM_NEWRULE if cmd == "add" else RTM_DELRULE), ADD[cmd], body


def rule_dump(family: int) -> tuple[int, int, bytes]:
    return RTM_GETRULE, NLM_F_DUMP, _FIBRULE.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)


def packed_address(text: str) -> tuple[int, bytes]:
    """(family, packed bytes) of an IPv4 or IPv6 address in text form."""
    family = socket.AF_INET6 if ":" in text else socket.AF_INET
    return family, socket.inet_pton(family, text)


# --- reading replies ------------------------------------------------------------------

def messages(data: bytes) -> list[Message]:
    """The messages of one datagram from the kernel."""
    found, offset = [], 0
    while offset < len(data):
        if len(data) - offset < _HEADER.size:
            raise NetlinkParseError(f"netlink: {len(data) - offset} stray bytes after the last message")
        length, kind, flags, seq, _ = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size or length > len(data) - offset:
            raise NetlinkParseError(f"netlink: message length {length} at {offset} outside 16..{len(data) - offset}")
        found.append(Message(kind, flags, seq, bytes(data[offset + _HEADER.size:offset + length])))
        offset += (length + 3) & ~3
    return found


def attributes(body: bytes, start: int) -> dict[int, bytes]:
    """The attributes (type without the nested/byte-order bits -> value) from `start` on."""
    if start > len(body):
        raise NetlinkParseError(f"netlink: body of {len(body)} bytes, shorter than its {start}-byte header")
    found, offset = {}, start
    while len(body) - offset >= _ATTR.size:
        length, kind = _ATTR.unpack_from(body, offset)
        if length < _ATTR.size or length > len(body) - offset:
            raise NetlinkParseError(f"netlink: attribute length {length} at {offset} outside 4..{len(body) - offset}")
        found[kind & 0x3FFF] = body[offset + _ATTR.size:offset + length]
        offset += (length + 3) & ~3
    return found


def u32(attrs: dict[int, bytes], kind: int) -> int | None:
    value = attrs.get(kind)
    if value is None:
        return None
    if len(value) != _U32.size:
        raise NetlinkParseError(f"netlink: attribute {kind}: {len(value)} bytes where a u32 belongs")
    return int(_U32.unpack(value)[0])


def error_code(msg: Message) -> int:
    """The errno of an NLMSG_ERROR (0 for an acknowledgement) or of an NLMSG_DONE."""
    if len(msg.body) < _I32.size:
        if msg.kind == NLMSG_DONE:
            return 0
        raise NetlinkParseError(f"netlink: error message of {len(msg.body)} bytes")
    code = -int(_I32.unpack_from(msg.body)[0])
    if not 0 <= code <= MAX_ERRNO:
        raise NetlinkParseError(f"netlink: error code {-code} is no negated errno")
    return code


def parse_link(msg: Message) -> Link:
    if msg.kind != RTM_NEWLINK or len(msg.body) < _IFINFO.size:
        raise NetlinkParseError(f"netlink: expected a link, got type {msg.kind} of {len(msg.body)} bytes")
    _, _, index, flags, _ = _IFINFO.unpack_from(msg.body)
    attrs = attributes(msg.body, _IFINFO.size)
    mtu, txqlen = u32(attrs, IFLA_MTU), u32(attrs, IFLA_TXQLEN)
    if mtu is None or txqlen is None:
        raise NetlinkParseError(f"netlink: link {index} reported without its MTU or txqueuelen")
    return Link(index, flags, mtu, txqlen)


def parse_rule(msg: Message) -> RuleInfo:
    if msg.kind != RTM_NEWRULE or len(msg.body) < _FIBRULE.size:
        raise NetlinkParseError(f"netlink: expected a rule, got type {msg.kind} of {len(msg.body)} bytes")
    family, _, _, _, table, _, _, _, flags = _FIBRULE.unpack_from(msg.body)
    attrs = attributes(msg.body, _FIBRULE.size)
    return RuleInfo(family, u32(attrs, FRA_PRIORITY), u32(attrs, FRA_TABLE) or table, u32(attrs, FRA_FWMARK),
                    flags, u32(attrs, FRA_SUPPRESS_PREFIXLEN))
