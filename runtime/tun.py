"""The TUN device: a layer-3 interface whose packets the runtime reads and writes.

Rule 1: the device is created by TUNSETIFF on our own fd and is not persistent, so it
        vanishes with the last fd, i.e. with the process (no leftover after a crash).
Rule 2: the fd is non-blocking; `read` returns None when there is nothing to read.
Rule 3: IFF_NO_PI always (no 4-byte packet-info prefix). With `vnet_hdr`, every packet
        read or written carries a virtio_net_hdr of VNET_HDR_SIZE bytes in front, and the
        kernel may hand over TCP super-packets (TSO4/TSO6, checksum partial): only for a
        data path that understands them.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from dataclasses import dataclass

from runtime.errors import PermissionDenied, SystemSetupError

TUN_PATH = "/dev/net/tun"

# <linux/if_tun.h>
TUNSETIFF = 0x400454CA
TUNGETIFF = 0x800454D2
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_MULTI_QUEUE = 0x0100
IFF_VNET_HDR = 0x4000
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04

IFNAMSIZ = 16
VNET_HDR_SIZE = 12  # struct virtio_net_hdr_v1 (num_buffers included); set by TUNSETVNETHDRSZ
MAX_PACKET = 65535  # an IP packet, or a TSO super-packet with vnet_hdr
_IFREQ = struct.Struct(f"{IFNAMSIZ}sH22x")


@dataclass
class Tun:
    """An open TUN queue: fd, device name, and whether packets carry a vnet header."""

    fd: int
    name: str
    vnet_hdr: bool = False

    def read(self, size: int = 0) -> bytes | None:
        """One packet (at most `size` bytes; 0: the largest one), or None when none is waiting."""
        try:
            return os.read(self.fd, size or MAX_PACKET + (VNET_HDR_SIZE if self.vnet_hdr else 0))
        except BlockingIOError:
            return None

    def write(self, packet: bytes) -> int:
        return os.write(self.fd, packet)

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "Tun":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def tun_flags(*, vnet_hdr: bool = False, multi_queue: bool = False) -> int:
    """The TUNSETIFF flags for the options."""
    flags = IFF_TUN | IFF_NO_PI
    if vnet_hdr:
        flags |= IFF_VNET_HDR
    if multi_queue:
        flags |= IFF_MULTI_QUEUE
    return flags


def open_tun(name: str = "", *, vnet_hdr: bool = False, multi_queue: bool = False) -> Tun:
    """Create (or, with multi_queue, attach a queue to) the TUN device `name`.

    An empty name lets the kernel pick `tunN`. Call again with the same name and
    multi_queue=True to open one more queue.
    """
    _check_name(name)
    try:
        fd = os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise _error(exc, f"open {TUN_PATH}") from exc
    try:
        ifr = _IFREQ.pack(name.encode(), tun_flags(vnet_hdr=vnet_hdr, multi_queue=multi_queue))
        actual = _IFREQ.unpack(fcntl.ioctl(fd, TUNSETIFF, ifr))[0]
        if vnet_hdr:
            fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_SIZE))
            fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
    except OSError as exc:
        os.close(fd)
        raise _error(exc, f"TUN device {name or 'tun%d'}") from exc
    return Tun(fd, actual.rstrip(b"\0").decode(), vnet_hdr)


def open_data_tun(name: str) -> Tun:
    """The TUN of a data path: with vnet header and TCP offloads (TSO super-packets,
    partial checksums) where the kernel offers them, plain otherwise.  The environment
    variable VPN_RUNTIME_OFFLOAD=0 asks for plain."""
    if os.environ.get("VPN_RUNTIME_OFFLOAD", "1") != "0":
        try:
            return open_tun(name, vnet_hdr=True)
        except SystemSetupError as exc:
            if isinstance(exc, PermissionDenied):
                raise
    return open_tun(name)


def _check_name(name: str) -> None:
    if len(name.encode()) >= IFNAMSIZ or "/" in name or " " in name:
        raise SystemSetupError(f"TUN device name {name!r}: at most 15 bytes, no '/' or spaces",
                               "choose a shorter interface name")


def _error(exc: OSError, what: str) -> Exception:
    if exc.errno in (errno.EPERM, errno.EACCES):
        return PermissionDenied(f"{what}: {exc.strerror} (needs CAP_NET_ADMIN)")
    if exc.errno == errno.ENOENT:
        return SystemSetupError(f"{what}: {exc.strerror}", "load the tun module: modprobe tun")
    if exc.errno == errno.EBUSY:
        return SystemSetupError(f"{what}: the name is in use by another device",
                                "choose another interface name")
    return SystemSetupError(f"{what}: {exc.strerror}")
