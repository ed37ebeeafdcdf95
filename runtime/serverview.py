"""What `vpn-runtime status` shows of a server: one entry per connected client.

Rule: built only when asked, from the core's session snapshots; times become ages in
seconds (handshake age, key age), so the answer means the same on any clock.
"""

from __future__ import annotations

from typing import Any

from runtime.proto.stats import SessionStats


def session_view(s: SessionStats, now: float) -> dict[str, Any]:
    return {
        "name": s.name,
        "session": f"{s.session_id:08x}",
        "tunnel_addresses": list(s.tunnel_addresses),
        "endpoint": f"{s.endpoint[0]}:{s.endpoint[1]}" if s.endpoint else None,
        "transport": s.transport,
        "rx_bytes": s.rx_bytes, "tx_bytes": s.tx_bytes,
        "rx_packets": s.rx_packets, "tx_packets": s.tx_packets,
        "last_handshake_age": round(now - s.last_handshake, 1),
        "key_epoch": s.key_epoch,
        "key_age": round(s.key_age, 1),
    }


def status(daemon: Any, now: float) -> dict[str, Any]:
    cfg = daemon.cfg
    return {
        "role": "server",
        "name": cfg.name,
        "interface": cfg.interface,
        "address": str(cfg.server_address),
        "control_port": cfg.control_port,
        "data_port": cfg.data_port,
        "clients": [session_view(s, now) for s in daemon.core.stats(now)],
        "drops": dict(daemon.core.drops),
        "io_errors": io_errors(daemon),
    }


def io_errors(daemon: Any) -> dict[str, int]:
    """The loop's I/O errors, with those of its C Path (runtime/fastpath.py) added."""
    errors = dict(daemon.outputs.errors)
    path = getattr(daemon, "path", None)
    for kind, n in (path.errors.items() if path is not None else ()):
        errors[kind] = errors.get(kind, 0) + n
    return errors
