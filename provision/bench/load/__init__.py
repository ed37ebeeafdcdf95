"""`invoke bench-load`: the server under many clients (see run.py for the phases).

    python -m provision.bench.load [--clients N] [--hold S] ...

Rule: as the peer benchmark (provision/bench/netns.py): nothing touches the machine's own
network namespace, the lab is ours (vpnlab-load-*) and removed after the run, and the run
holds /tmp/bench.lock.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from provision.errors import UsageError

__all__ = ["load", "main"]


def load(clients: int = 1000, hold: float = 30, sources: int = 200, concurrency: int = 64,
         ping_every: float = 0.0, interval: float | None = None, restart: bool = True,
         cache: str | Path | None = None) -> dict[str, Any]:
    """Run the load benchmark, print its tables, return the record (also saved as JSON)."""
    from provision.bench.load.certs import CACHE
    from provision.bench.load.report import render
    from provision.bench.load.run import LoadSettings, run_load

    if clients < 1 or hold < 0 or concurrency < 1:
        raise UsageError("need clients >= 1, hold >= 0, concurrency >= 1")
    settings = LoadSettings(clients=clients, hold=float(hold), sources=min(sources, clients),
                            concurrency=concurrency, ping_every=ping_every, interval=interval,
                            restart=restart, cache=Path(cache) if cache else CACHE)
    record = run_load(settings)
    print(render(record))
    print(f"raw figures: {record['state']}/result.json")
    return record


def main(argv: Sequence[str] | None = None) -> int:
    from provision.bench.netns import LabError

    p = argparse.ArgumentParser(prog="python -m provision.bench.load", description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--hold", type=float, default=30, help="seconds of keepalives only (600 for the soak)")
    p.add_argument("--sources", type=int, default=200, help="client source addresses (server limits per source)")
    p.add_argument("--concurrency", type=int, default=64, help="handshakes in flight during the ramp")
    p.add_argument("--ping-every", type=float, default=0.0, help="each client pings the server this often (s)")
    p.add_argument("--interval", type=float, default=None, help="seconds between RSS samples in the hold")
    p.add_argument("--no-restart", dest="restart", action="store_false")
    p.add_argument("--cache", default=None, help="certificate cache (default /var/cache/selfvpn-bench-load)")
    a = p.parse_args(argv)
    try:
        record = load(a.clients, a.hold, a.sources, a.concurrency, a.ping_every, a.interval, a.restart, a.cache)
    except (UsageError, LabError) as e:
        print(f"bench-load: error: {e.line()}", file=sys.stderr)
        return e.exit_code
    return 1 if record.get("error") else 0
