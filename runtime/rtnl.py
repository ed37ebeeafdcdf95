"""Our rtnetlink client: one NETLINK_ROUTE socket, request and acknowledgement, on the stdlib.

Rule 1: every request asks for an acknowledgement and carries its own sequence number; the
        reply is read until that request's NLMSG_ERROR (or, for a dump, its NLMSG_DONE), and
        messages of other sequence numbers are skipped.
Rule 2: a kernel refusal raises NetlinkError, an OSError whose `code` is the errno (EEXIST,
        ENODEV, EPERM, ...); a reply that does not parse raises it too (EBADMSG), as does
        silence past TIMEOUT (ETIMEDOUT).  Nothing else escapes.
Rule 3: synchronous and cheap (one socket, no thread, no import beyond the stdlib), so the
        event loop may call it directly during set-up.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any

from runtime import netlink
from runtime.netlink import Link, Message, RuleInfo

TIMEOUT = 5.0
RECV_SIZE = 1 << 17


class NetlinkError(OSError):
    """The kernel refused a request, or its reply could not be read."""

    @property
    def code(self) -> int:
        return self.errno or 0


def _error(code: int, what: str = "") -> NetlinkError:
    text = os.strerror(code) + (f" ({what})" if what else "")
    return NetlinkError(code, text)


class IPRoute:
    """`with IPRoute() as ipr:` the changes netconf makes, one request at a time."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._seq = 0

    def __enter__(self) -> IPRoute:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
        sock.settimeout(TIMEOUT)
        sock.bind((0, 0))
        self._sock = sock
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # -- what netconf asks ----------------------------------------------------------------
    def link_index(self, ifname: str) -> int | None:
        """The index of the link named `ifname`, or None when there is none."""
        try:
            return self._link(netlink.link_by_name(ifname)).index
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return None
            raise

    def link(self, index: int) -> Link:
        return self._link(netlink.link_by_index(index))

    def set_link(self, index: int, *, mtu: int, txqlen: int, up: bool) -> None:
        self._request(netlink.set_link(index, mtu, txqlen, up))

    def address(self, cmd: str, index: int, address: str, prefixlen: int) -> None:
        family, packed = netlink.packed_address(address)
        self._request(netlink.address(cmd, index, family, packed, prefixlen))

    def route(self, cmd: str, *, family: int, dst: str, dst_len: int, table: int, oif: int) -> None:
        self._request(netlink.route(cmd, family, socket.inet_pton(family, dst), dst_len, table, oif))

    def rule(self, cmd: str, **kw: Any) -> None:
        """kw: family, priority, table, and optionally fwmark, flags, suppress_prefixlen."""
        self._request(netlink.rule(cmd, **kw))

    def rules(self, family: int) -> list[RuleInfo]:
        return self._parsed(netlink.parse_rule, self._request(netlink.rule_dump(family)))

    # -- the exchange ---------------------------------------------------------------------
    def _link(self, request: tuple[int, int, bytes]) -> Link:
        links = self._parsed(netlink.parse_link, self._request(request))
        if len(links) != 1:
            raise _error(errno.EBADMSG, f"{len(links)} links in the reply to one")
        return links[0]

    @staticmethod
    def _parsed(parse: Any, replies: list[Message]) -> list[Any]:
        try:
            return [parse(m) for m in replies]
        except netlink.NetlinkParseError as exc:
            raise _error(errno.EBADMSG, str(exc)) from None

    def _request(self, request: tuple[int, int, bytes]) -> list[Message]:
        """Send one request; the messages answering it, once the kernel says it is done."""
        if self._sock is None:
            raise _error(errno.EBADF, "IPRoute used outside its `with`")
        kind, flags, body = request
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        try:
            self._sock.send(netlink.message(kind, flags | netlink.NLM_F_REQUEST | netlink.NLM_F_ACK, self._seq, body))
        except OSError as exc:
            raise _error(exc.errno or errno.EIO, "sending the request") from None
        replies: list[Message] = []
        while True:
            for msg in self._receive():
                if msg.seq != self._seq:
                    continue
                if msg.kind in (netlink.NLMSG_ERROR, netlink.NLMSG_DONE):
                    return _finished(msg, replies)
                replies.append(msg)

    def _receive(self) -> list[Message]:
        assert self._sock is not None
        try:
            data = self._sock.recv(RECV_SIZE)
        except socket.timeout:
            raise _error(errno.ETIMEDOUT, f"no netlink reply in {TIMEOUT:.0f} s") from None
        except OSError as exc:
            raise _error(exc.errno or errno.EIO, "reading the reply") from None
        try:
            return netlink.messages(data)
        except netlink.NetlinkParseError as exc:
            raise _error(errno.EBADMSG, str(exc)) from None


def _finished(end: Message, replies: list[Message]) -> list[Message]:
    try:
        code = netlink.error_code(end)
    except netlink.NetlinkParseError as exc:
        raise _error(errno.EBADMSG, str(exc)) from None
    if code:
        raise _error(code)
    return replies
