"""provision.bench.runner's pure parts: interleaving, peer lists, the connect split; and
the microbenchmark on a small batch (no root, no namespaces)."""

from __future__ import annotations

import pytest

from provision.bench import micro, runner
from provision.errors import UsageError
from runtime.proto.keys import NATIVE


def test_interleave_runs_every_peer_once_per_round_rotating() -> None:
    order = runner.interleave(("raw", "openvpn", "ours"), 3)
    assert order == [(1, "raw"), (1, "openvpn"), (1, "ours"),
                     (2, "openvpn"), (2, "ours"), (2, "raw"),
                     (3, "ours"), (3, "raw"), (3, "openvpn")]


def test_parse_peers() -> None:
    assert runner.parse_peers("openvpn, ours") == ("openvpn", "ours")
    assert runner.parse_peers("") == runner.NAMES
    with pytest.raises(UsageError):
        runner.parse_peers("openvpn,ipsec")


def test_split_connect() -> None:
    ms = 1_000_000
    assert runner.split_connect(0, 30 * ms, 50 * ms) == {"connect_ms": 50.0, "startup_ms": 30.0, "handshake_ms": 20.0}
    assert runner.split_connect(0, None, 50 * ms) == {"connect_ms": 50.0}
    assert runner.split_connect(10 * ms, 5 * ms, 50 * ms) == {"connect_ms": 40.0}


def test_bench_refuses_bad_settings() -> None:
    with pytest.raises(UsageError):
        runner.bench(rounds=0)


def test_micro_round_trips_every_cipher_size_and_path() -> None:
    records = micro.run_micro(packets=50, repeats=2)
    paths = ("native", "python") if NATIVE else ("python",)
    assert sorted((r["cipher"], r["size"], r["path"]) for r in records) == sorted(
        (c, s, p) for c in ("aes-256-gcm", "chacha20-poly1305") for s in micro.SIZES for p in paths)
    assert all(len(r["seal_us"]) == 2 and min(r["seal_us"] + r["open_us"]) > 0 for r in records)
    table = micro.side_by_side(records)
    assert len(table) == 2 + 4 and all(line.count("|") == 3 + 2 * len(paths) for line in table)
