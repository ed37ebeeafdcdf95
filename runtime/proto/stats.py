"""Traffic counters of a session and the snapshot `vpn-runtime status` shows.

Rule 1: counters are plain integers bumped on the data path; snapshots are frozen and built
        only when asked.
Rule 2: times are in the caller's `now` clock; ages are computed for the snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.proto.events import Address


class Traffic:
    """Inner-packet bytes and packets, each way."""

    __slots__ = ("rx_bytes", "rx_packets", "tx_bytes", "tx_packets")

    def __init__(self) -> None:
        self.rx_bytes = self.rx_packets = self.tx_bytes = self.tx_packets = 0

    def received(self, size: int, packets: int = 1) -> None:
        self.rx_bytes += size
        self.rx_packets += packets

    def sent(self, size: int, packets: int = 1) -> None:
        self.tx_bytes += size
        self.tx_packets += packets


@dataclass(frozen=True)
class SessionStats:
    session_id: int
    name: str
    tunnel_addresses: tuple[str, ...]
    endpoint: Address | None
    transport: str
    rx_bytes: int
    rx_packets: int
    tx_bytes: int
    tx_packets: int
    last_handshake: float
    key_epoch: int
    key_age: float
