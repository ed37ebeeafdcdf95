"""The peers a benchmark compares: the bare path, OpenVPN, wireguard-go and our runtime.

Rule: `make(name)` gives a fresh peer object per run (peers hold per-run state); the order
of `NAMES` is the default interleaving order and the column order of the report.
"""

from __future__ import annotations

from collections.abc import Callable

from provision.bench.peers.base import Peer, PeerFailed
from provision.bench.peers.openvpn import OpenVpn
from provision.bench.peers.ours import Ours
from provision.bench.peers.raw import Raw
from provision.bench.peers.wireguard_go import WireguardGo

FACTORIES: dict[str, Callable[[], Peer]] = {
    "raw": Raw, "openvpn": OpenVpn, "wireguard-go": WireguardGo, "ours": Ours,
}
NAMES = tuple(FACTORIES)

__all__ = ["FACTORIES", "NAMES", "Peer", "PeerFailed", "make"]


def make(name: str) -> Peer:
    if name not in FACTORIES:
        raise ValueError(f"unknown peer {name!r}; known: {', '.join(NAMES)}")
    return FACTORIES[name]()
