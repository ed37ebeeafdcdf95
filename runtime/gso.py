"""UDP segmentation offload: many datagrams per send (UDP_SEGMENT) and per receive (UDP_GRO).

Rule 1: a send groups consecutive datagrams to the same address into runs of equal size
        (the last of a run may be shorter, and ends it), at most MAX_SEGMENTS datagrams and
        MAX_BYTES bytes a run; each run is one sendmsg with a UDP_SEGMENT cmsg.  The wire
        sees exactly the datagrams we sealed: the kernel (or NIC) cuts at the run's size.
        Datagrams come in groups, one per seal call (one TUN read); a group already shaped
        like runs (the segments of a super-packet) is cut without a look at each datagram.
Rule 2: a kernel or device that refuses (EIO, EINVAL, ENOPROTOOPT, EOPNOTSUPP) switches GSO
        off for the socket, and that run and all later ones go one datagram per send.  Other
        send errors (a full buffer, an ICMP error on a connected socket) drop the run, counted.
Rule 3: receiving with UDP_GRO set, one recvmsg may return several datagrams of the same
        sender back to back, all of the size the UDP_GRO cmsg gives but the last; without
        the cmsg it is one datagram.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections import Counter

SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
MAX_SEGMENTS = 64
MAX_BYTES = 65000
REFUSALS = (errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP)
_SIZE = struct.Struct("=H")
_GRO = struct.Struct("=i")
ANC_SPACE = socket.CMSG_SPACE(_GRO.size)

Group = tuple[object, list[bytes]]  # (address or None, datagrams): what one seal call gave


def group_runs(groups: list[Group]) -> list[tuple[object, list[bytes]]]:
    """(address, datagrams) runs per Rule 1, in order, for (address, datagrams) groups.  A
    group whose datagrams all have the first one's size but the last (shorter or equal: the
    segments of one TUN read) is cut into runs as a whole, without a look at each datagram."""
    out: list[tuple[object, list[bytes]]] = []
    run: list[bytes] = []
    addr: object = None
    size = total = 0
    for to, datagrams in groups:
        count = len(datagrams)
        if count > 1:
            first, sizes = len(datagrams[0]), list(map(len, datagrams))
            if sizes.count(first) - (sizes[-1] == first) == count - 1 and sizes[-1] <= first:
                if run:
                    out.append((addr, run))
                    run = []
                step = max(1, min(MAX_SEGMENTS, MAX_BYTES // first))
                out += [(to, datagrams[i:i + step]) for i in range(0, count, step)]
                continue
        for data in datagrams:
            n = len(data)
            if run and (to != addr or n > size or len(run) == MAX_SEGMENTS or total + n > MAX_BYTES
                        or len(run[-1]) < size):
                out.append((addr, run))
                run = []
            if not run:
                addr, size, total = to, n, 0
            run.append(data)
            total += n
    if run:
        out.append((addr, run))
    return out


def split(buf: bytes | bytearray | memoryview, n: int, ancdata: list) -> list[bytes]:
    """The datagrams in the first `n` bytes of a UDP_GRO receive (Rule 3): one copy of the
    read into bytes, then one bytes slice per datagram (cheaper than a copy per memoryview
    slice)."""
    size = n
    for level, kind, data in ancdata:
        if level == SOL_UDP and kind == UDP_GRO and len(data) >= _GRO.size:
            size = _GRO.unpack_from(data)[0] or n
    whole = buf[:n] if type(buf) is bytes else bytes(buf[:n])
    if size >= n:
        return [whole]
    return [whole[i:i + size] for i in range(0, n, size)]


def enable_gro(sock: socket.socket) -> bool:
    """Ask for coalesced receives; False when the kernel does not know UDP_GRO."""
    try:
        sock.setsockopt(SOL_UDP, UDP_GRO, 1)
        return True
    except OSError:
        return False


class Sender:
    """Sends batches of datagrams on one UDP socket per Rules 1-2."""

    def __init__(self, sock: socket.socket, errors: Counter, enabled: bool = True) -> None:
        self.sock, self.errors, self.enabled = sock, errors, enabled

    def send_groups(self, groups: list[Group]) -> None:
        """Send (address, datagrams) groups in order, in GSO runs (Rule 1)."""
        for addr, run in group_runs(groups) if self.enabled else [(a, [d]) for a, g in groups for d in g]:
            if len(run) > 1 and self.enabled:
                self._send_run(addr, run)
            else:
                self._send_one(run[0], addr)

    def _send_run(self, addr: object, run: list[bytes]) -> None:
        anc = [(SOL_UDP, UDP_SEGMENT, _SIZE.pack(len(run[0])))]
        try:
            if addr is None:
                self.sock.sendmsg(run, anc)
            else:
                self.sock.sendmsg(run, anc, 0, addr)
            return
        except OSError as e:
            if e.errno not in REFUSALS:
                self.errors[f"udp-send-{e.errno}"] += len(run)
                return
            self.enabled = False
            self.errors["udp-gso-off"] += 1
        for data in run:
            self._send_one(data, addr)

    def _send_one(self, data: bytes, addr: object) -> None:
        try:
            if addr is None:
                self.sock.send(data)
            else:
                self.sock.sendto(data, addr)
        except OSError as e:
            self.errors[f"udp-send-{e.errno}"] += 1
