"""What a peer is: how to prepare, start and describe one VPN (or none) in the lab.

Rule 1: `prepare` does the untimed work (keys, certificates, config files) under the run's
state folder; `start_server` returns once the server is ready for clients; `start_client`
may return before the tunnel carries traffic: the runner times from its call to the first
echo reply from `target` through the tunnel.
Rule 2: long-running processes are started only with `procs.spawn(...)`, so that CPU and
memory are counted for them (and their children) and they are stopped by PID.
Rule 3: a peer that cannot start raises `PeerFailed` with a one-line reason (a log tail),
which the runner records as "failed to start": no figure is ever produced for it.
"""

from __future__ import annotations

from pathlib import Path

from provision.bench.netns import TUN_MTU, TUN_SRV, Procs


class PeerFailed(RuntimeError):
    """The peer did not start; the message says why (one line)."""


class Peer:
    name = "unnamed"
    target = TUN_SRV  # the server-side address the client reaches through the tunnel
    mtu = TUN_MTU
    tunnel = True  # False for the bare path: no processes, nothing to split in connect time

    def version(self) -> str:
        return "n/a"

    def prepare(self, state: Path) -> None:
        """Untimed set-up: keys, certificates, configs, written under `state`."""

    def start_server(self, procs: Procs) -> None:
        """Start the server side in anc-srv; return once it accepts clients."""

    def start_client(self, procs: Procs) -> None:
        """Start the client side in anc-cli (the tunnel may come up after this returns)."""

    def startup_floor_ms(self) -> float | None:
        """Untimed extra: the least time the client program needs before it can connect, if known."""
        return None

    def notes(self, procs: Procs) -> str:
        """What the peer negotiated, read from its logs after the run (optional)."""
        return ""


def ensure_ready(ok: bool, procs: Procs, what: str) -> None:
    """Raise PeerFailed naming `what` and the first dead process's log tail unless `ok`."""
    if ok:
        return
    dead = procs.dead()
    detail = f"{dead.name} exited {dead.exited()}: {dead.tail()}" if dead else "timed out"
    raise PeerFailed(f"{what}: {detail}")
