"""Fuzz targets for the netlink replies the runtime reads from the kernel (runtime/netlink.py,
runtime/rtnl.py).

Rule 1: `netlink` feeds bytes to the codec: splitting a datagram into messages and reading
        links, rules, attributes and error codes raise only NetlinkParseError; what parses
        is within the bytes given (no attribute longer than its message).
Rule 2: `rtnl` hands bytes to the client as the kernel's reply to each request it makes;
        the client raises only NetlinkError (an OSError with the errno), whatever comes.
"""

from __future__ import annotations

import socket
import struct

from runtime import netlink, rtnl
from tests.fuzz.engine import Target

_IFINFO = struct.Struct("=BxHiII")
_FIBRULE = struct.Struct("=BBBBBBBBI")


def reply(kind: int, seq: int, body: bytes, flags: int = 0) -> bytes:
    packed = netlink.message(kind, flags, seq, body)
    return packed + bytes(-len(packed) % 4)


def link_body(index: int = 7, flags: int = 0x1043, mtu: int = 1420, txqlen: int = 1000) -> bytes:
    return (_IFINFO.pack(0, 65534, index, flags, 0) + netlink.attr(netlink.IFLA_IFNAME, b"selfvpn\0")
            + netlink.attr_u32(netlink.IFLA_MTU, mtu) + netlink.attr_u32(netlink.IFLA_TXQLEN, txqlen))


def rule_body(priority: int = 32765, table: int = 0x73656C66, fwmark: int | None = 0x73656C66,
              flags: int = 2) -> bytes:
    body = _FIBRULE.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, netlink.FR_ACT_TO_TBL, flags)
    body += netlink.attr_u32(netlink.FRA_PRIORITY, priority) + netlink.attr_u32(netlink.FRA_TABLE, table)
    if fwmark is not None:
        body += netlink.attr_u32(netlink.FRA_FWMARK, fwmark)
    return body + netlink.attr_u32(netlink.FRA_SUPPRESS_PREFIXLEN, 0xFFFFFFFF)


def ack(seq: int, code: int = 0) -> bytes:
    return reply(netlink.NLMSG_ERROR, seq, struct.pack("=i", -code) + bytes(16))


def seeds() -> list[bytes]:
    dump = (reply(netlink.RTM_NEWRULE, 1, rule_body(), netlink.NLM_F_MULTI)
            + reply(netlink.RTM_NEWRULE, 1, rule_body(0, 255, None, 0), netlink.NLM_F_MULTI)
            + reply(netlink.NLMSG_DONE, 1, struct.pack("=i", 0), netlink.NLM_F_MULTI))
    return [reply(netlink.RTM_NEWLINK, 1, link_body()) + ack(1), dump, ack(1), ack(1, 17), ack(1, 19)]


TOKENS = (struct.pack("=I", 0), struct.pack("=I", 0xFFFFFFFF), struct.pack("=H", 4), struct.pack("=H", 8),
          struct.pack("=H", 0xFFFF), struct.pack("=i", -2), struct.pack("=H", netlink.NLMSG_ERROR),
          struct.pack("=H", netlink.NLMSG_DONE), struct.pack("=H", netlink.RTM_NEWLINK),
          struct.pack("=H", netlink.RTM_NEWRULE), struct.pack("=I", 1), bytes(16))


def run_netlink(data: bytes) -> None:
    try:
        found = netlink.messages(data)
    except netlink.NetlinkParseError:
        return
    assert sum(16 + len(m.body) for m in found) <= len(data)
    for msg in found:
        _read(msg)


def _read(msg: netlink.Message) -> None:
    readers = {netlink.RTM_NEWLINK: netlink.parse_link, netlink.RTM_NEWRULE: netlink.parse_rule,
               netlink.NLMSG_ERROR: netlink.error_code, netlink.NLMSG_DONE: netlink.error_code}
    try:
        attrs = netlink.attributes(msg.body, 0)
        assert all(len(v) <= len(msg.body) for v in attrs.values())
        if msg.kind in readers:
            readers[msg.kind](msg)
    except netlink.NetlinkParseError:
        pass


class ScriptedSocket:
    """A netlink socket whose every recv returns `data` with the sequence number patched in."""

    def __init__(self, data: bytes) -> None:
        self.data, self.seq, self.reads = data, 0, 0

    def send(self, request: bytes) -> int:
        self.seq = struct.unpack_from("=I", request, 8)[0]
        return len(request)

    def recv(self, _size: int) -> bytes:
        self.reads += 1
        if self.reads > 3:
            raise socket.timeout("no more")
        data = bytearray(self.data)
        if len(data) >= 12:
            data[8:12] = struct.pack("=I", self.seq)
        return bytes(data)

    def close(self) -> None:
        pass


def run_rtnl(data: bytes) -> None:
    for call in (lambda i: i.link_index("selfvpn"), lambda i: i.link(7), lambda i: i.rules(socket.AF_INET),
                 lambda i: i.route("del", family=socket.AF_INET, dst="10.0.0.0", dst_len=8, table=254, oif=7)):
        ipr = rtnl.IPRoute()
        ipr._sock = ScriptedSocket(data)  # type: ignore[assignment]
        try:
            call(ipr)
        except rtnl.NetlinkError:
            pass


TARGETS: tuple[Target, ...] = (
    Target("netlink", run_netlink, seeds, TOKENS),
    Target("rtnl", run_rtnl, seeds, TOKENS),
)
