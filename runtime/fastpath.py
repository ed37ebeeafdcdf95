"""The data path's wakeups in C: a Path (runtime/native/fastpath.c) runs the happy path of
each UDP and TUN wakeup and hands everything else to the core, as the loop's Python
handlers (runtime/iobase.py) would.

Rule 1: a loop uses a Path when both native modules were built and its TUN has a vnet
        header, unless VPN_RUNTIME_WAKEUP=python; otherwise its Python handlers run. Those
        stay the reference: both give the same datagrams, TUN writes, counters and drops.
Rule 2: the Path holds copies (Path.set) of what the happy path needs of each session; a
        peer whose copy may be stale calls `changed()` (its state, epochs, endpoint), and the
        loop pushes the marked ones (`Sync.push`) after each thing it fed the core, removals
        first, so that an inner address moves from a replaced session to its successor.
Rule 3: counters and times the Path gathered reach the peers (`absorb`) before anything
        reads them: timers, status, the first-traffic check.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from runtime import fast
from runtime.proto.peer import ESTABLISHED, Peer

_seal = fast.load("_fastseal")
_seg = fast.load("_fastseg")
ENABLED = _seal is not None and _seg is not None and os.environ.get("VPN_RUNTIME_WAKEUP", "c") != "python"


def usable(tun: object) -> bool:
    """Whether a loop on `tun` runs its wakeups in C (Rule 1)."""
    return ENABLED and bool(getattr(tun, "vnet_hdr", False))


def make(udp, tun, *, client: bool, slow_udp: Callable, slow_tun: Callable, settle: Callable):
    """A Path on the loop's UDP socket and TUN (see fastpath.c for the callables' contract)."""
    return _seal.Path(udp.fileno(), tun.fileno(), client, _seg.split, _seg.plan,  # type: ignore[union-attr]
                      slow_udp, slow_tun, settle)


def copy_of(peer: Peer) -> dict | None:
    """Path.set's arguments for `peer`, or None when the Path must forget it.  A session on
    transport "tcp" keeps its inner addresses there (packets to them are the core's), no keys."""
    if peer.state != ESTABLISHED or peer.data is None:
        return None
    data, udp = peer.data, peer.transport == "udp"
    current = data.current if udp and data.native else None
    opens = tuple((e.tag, e.open, e.window) for e in (current, data.previous) if e is not None) if current else ()
    return {"sid": peer.session_id, "seal": current.seal if current else None,
            "seal_tag": current.tag if current else 0,
            "seal_limit": min(peer.rekey_after, data.limits.reject_packets), "own_flags": data.own_flags,
            "peer_partial": data.peer_takes_partial, "opens": opens,
            "endpoint": getattr(peer, "endpoint", None), "addresses": tuple(getattr(peer, "addresses", ()))}


class Sync:
    """The peers whose copy in a Path may be stale (Rule 2)."""

    def __init__(self) -> None:
        self.stale: dict[int, Peer] = {}

    def mark(self, peer: Peer) -> None:
        self.stale[id(peer)] = peer

    def push(self, path) -> None:
        if not self.stale:
            return
        peers = list(self.stale.values())
        self.stale.clear()
        copies = []
        for peer in peers:
            copy = copy_of(peer)
            if copy is None:
                path.remove(peer.session_id)
            else:
                copies.append(copy)
        for copy in copies:
            path.set(**copy)


def absorb(path, peer_of: Callable[[int], Peer | None]) -> None:
    """Hand what the Path counted since the last call to the peers (Rule 3)."""
    for sid, *counts in path.drain():
        peer = peer_of(sid)
        if peer is not None:
            peer.absorb(*counts)
