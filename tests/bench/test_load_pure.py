"""The pure parts of the load benchmark: inner packets, statistics, status lines, tables."""

from __future__ import annotations

import json
from ipaddress import IPv4Address

from provision.bench.load import packets, report, stats
from provision.bench.load.netlab import source_ips
from provision.bench.measure import _checksum

OWN, SERVER = IPv4Address("10.100.0.7"), IPv4Address("10.100.0.1")


def reply_of(request: bytes) -> bytes:
    """What a kernel answers: addresses swapped, ICMP type 0, checksum fixed."""
    header, icmp = bytearray(request[:20]), bytearray(request[20:])
    header[12:16], header[16:20] = request[16:20], request[12:16]
    icmp[0], icmp[2:4] = 0, b"\0\0"
    icmp[2:4] = _checksum(bytes(icmp)).to_bytes(2, "big")
    return bytes(header) + bytes(icmp)


def test_echo_is_a_valid_ipv4_packet_from_the_tunnel_address() -> None:
    pkt = packets.ipv4_echo(OWN, SERVER, 7, 3)
    assert pkt[0] == 0x45 and pkt[9] == 1
    assert int.from_bytes(pkt[2:4], "big") == len(pkt)
    assert pkt[12:16] == OWN.packed and pkt[16:20] == SERVER.packed
    assert _checksum(pkt[:20]) == 0 and _checksum(pkt[20:]) == 0


def test_reply_matches_only_our_address_and_identifier() -> None:
    reply = reply_of(packets.ipv4_echo(OWN, SERVER, 7, 3))
    assert packets.is_echo_reply_to(reply, OWN, 7)
    assert not packets.is_echo_reply_to(reply, OWN, 8)
    assert not packets.is_echo_reply_to(reply, IPv4Address("10.100.0.8"), 7)
    assert not packets.is_echo_reply_to(packets.ipv4_echo(SERVER, OWN, 7, 3), OWN, 7)  # a request
    assert not packets.is_echo_reply_to(reply[:20], OWN, 7)


def test_percentiles_nearest_rank() -> None:
    found = stats.percentiles([i / 1000 for i in range(1, 101)])
    assert found == {"p50_ms": 50.0, "p95_ms": 95.0, "p99_ms": 99.0, "max_ms": 100.0}
    assert stats.percentiles([]) is None
    assert stats.percentiles([0.25]) == {"p50_ms": 250.0, "p95_ms": 250.0, "p99_ms": 250.0, "max_ms": 250.0}


def test_rates_memory_and_cpu() -> None:
    assert stats.rate(1000, 8.0) == 125.0
    assert stats.rate(1000, None) is None and stats.rate(1000, 0) is None
    assert stats.per_client_kib(40000, 90000, 1000) == 50.0
    assert stats.per_client_kib(None, 90000, 1000) is None
    assert stats.core_pct(150, 100, 30.0) == 5.0
    assert stats.core_pct(10, 100, 0) is None


def test_flatness_ignores_warmup_and_sees_growth() -> None:
    flat = [(0.0, 50000), (30.0, 90000), (60.0, 90010), (120.0, 90000), (600.0, 90020)]
    found = stats.flatness(flat, warmup_s=60)
    assert found["flat"] is True and found["samples"] == 3 and found["first_kb"] == 90010
    growing = [(t, 90000 + 10 * int(t)) for t in range(0, 601, 60)]  # 600 KiB/min
    found = stats.flatness(growing, warmup_s=60)
    assert found["flat"] is False and found["kib_per_min"] == 600.0
    assert stats.flatness(flat[:2], warmup_s=60)["flat"] is None
    assert stats.flatness([], warmup_s=0)["flat"] is None


def test_status_lines_skip_noise() -> None:
    lines = ['{"t": 1.0, "up": 3}\n', "Traceback (most recent call last):\n", '{"t": broken\n', "\n"]
    assert stats.parse_status(lines) == [{"t": 1.0, "up": 3}]
    statuses = [{"t": 1.0, "up": 1}, {"t": 2.0, "up": 5}, {"t": 3.0, "up": 5}]
    assert stats.first_time(statuses, 1.5, lambda s: s["up"] == 5) == 2.0
    assert stats.first_time(statuses, 3.5, lambda s: True) is None


def test_hold_liveness_counts_ended_and_missing() -> None:
    before = {"ended": 2, "up": 10, "stale": 0}
    window = [{"up": 10}, {"up": 9}, {"up": 10}]
    ok = stats.hold_liveness(before, {"ended": 2, "up": 10, "stale": 0}, window, 10)
    assert ok == {"ended": 0, "min_up": 9, "up_at_end": 10, "stale_at_end": 0, "lost": 0}
    bad = stats.hold_liveness(before, {"ended": 3, "up": 8, "stale": 1}, window, 10)
    assert bad["lost"] == 3 and bad["ended"] == 1


def test_source_addresses() -> None:
    assert source_ips(3) == ["192.0.2.2", "192.0.2.3", "192.0.2.4"]
    assert len(set(source_ips(252))) == 252 and source_ips(252)[-1] == "192.0.2.253"


def test_report_shows_targets_and_dashes_for_missing() -> None:
    record = {"settings": {"clients": 1000, "hold": 30.0, "sources": 200, "concurrency": 64},
              "kib_per_client": 50.3, "restart": {"all_back_s": 31.0},
              "hold": {"liveness": {"lost": 0}, "rss_samples": [[0.0, 94624]]}}
    text = report.render(record)
    assert "| memory per idle client | 50.3 KiB | < 64 KiB: met |" in text
    assert "| restart: all clients back | 31.0 s | < 30 s: MISSED |" in text
    assert "| handshakes per second | - |" in text
    assert "| 0.0 | 94624 |" in text
    json.dumps(record)  # the record stays JSON
