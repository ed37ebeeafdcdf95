"""The pure parts of provision.bench.measure: iperf3 JSON, ping output, per-packet CPU, the
connect-time packet filter, ICMP echo building and matching."""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path

import pytest

from provision.bench import measure

DATA = Path(__file__).parent / "data"


def load(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def test_parse_iperf_tcp_real_output() -> None:
    doc = load("iperf3-tcp.json")
    res = measure.parse_iperf(doc, udp=False)
    end = doc["end"]
    assert res["recv_mbps"] == round(end["sum_received"]["bits_per_second"] / 1e6, 1)
    assert res["sent_mbps"] == round(end["sum_sent"]["bits_per_second"] / 1e6, 1)
    assert res["retransmits"] == end["sum_sent"]["retransmits"]
    assert res["recv_bytes"] == end["sum_received"]["bytes"]
    assert "error" not in res


def test_parse_iperf_udp_real_output() -> None:
    doc = load("iperf3-udp.json")
    res = measure.parse_iperf(doc, udp=True)
    rx = doc["end"]["sum_received"]
    assert res["recv_mbps"] == round(rx["bits_per_second"] / 1e6, 1)
    assert res["packets"] == rx["packets"] and res["lost_packets"] == rx["lost_packets"]
    assert res["lost_pct"] == round(rx["lost_percent"], 2)


def test_parse_iperf_udp_old_format_counts_arrived_datagrams() -> None:
    doc = {"end": {"sum": {"seconds": 2.0, "bytes": 1200 * 1000, "packets": 1000, "lost_packets": 250,
                           "lost_percent": 25.0, "bits_per_second": 4.8e6, "jitter_ms": 0.01}}}
    res = measure.parse_iperf(doc, udp=True)
    assert res["recv_mbps"] == round(750 * 1200 * 8 / 2.0 / 1e6, 1)
    assert res["sent_mbps"] == 4.8 and res["lost_pct"] == 25.0


def test_parse_iperf_error_is_kept_and_figures_are_none() -> None:
    res = measure.parse_iperf({"error": "unable to connect to server: Connection refused"}, udp=False)
    assert res["error"].startswith("unable to connect")
    assert res["recv_mbps"] is None and res["sent_mbps"] is None


PING_OK = """PING 10.99.0.1 (10.99.0.1) 56(84) bytes of data.

--- 10.99.0.1 ping statistics ---
50 packets transmitted, 49 received, 2% packet loss, time 4904ms
rtt min/avg/max/mdev = 0.181/0.224/0.296/0.021 ms
"""


def test_parse_ping() -> None:
    res = measure.parse_ping(PING_OK)
    assert res == {"sent": 50, "received": 49, "loss_pct": 2.0, "min_ms": 0.181, "avg_ms": 0.224,
                   "max_ms": 0.296, "mdev_ms": 0.021}


def test_parse_ping_without_replies_has_an_error() -> None:
    res = measure.parse_ping("ping: connect: Network is unreachable\n")
    assert "unreachable" in res["error"] and "avg_ms" not in res


def test_rtt_added_is_tunnel_minus_underlay() -> None:
    assert measure.rtt_added({"avg_ms": 0.224}, {"avg_ms": 0.045}) == 0.179
    assert measure.rtt_added({"error": "x"}, {"avg_ms": 0.045}) is None


def test_cpu_us_per_packet() -> None:
    # 1 core busy for the whole window at 1368 B * 8 * 100k pkt/s = 1094.4 Mbit/s -> 10 µs/packet
    assert measure.cpu_us_per_packet(2.0, 2.0, 1094.4) == pytest.approx(10.0)
    assert measure.cpu_us_per_packet(None, 2.0, 100.0) is None
    assert measure.cpu_us_per_packet(1.0, 2.0, 0.0) is None


def test_cpu_seconds_counts_processes_that_appeared() -> None:
    assert measure.cpu_seconds({1: 100}, {1: 150, 2: 50}) == pytest.approx(100 / measure.CLK_TCK)


def ipv4(src: str, dst: str, proto: int) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, proto, 0,
                       socket.inet_aton(src), socket.inet_aton(dst)) + bytes(20)


def test_first_underlay_packet_skips_icmp_old_and_incoming() -> None:
    packets = [
        (90, ipv4("192.0.2.1", "192.0.2.2", 17)),   # before the client started
        (100, ipv4("192.0.2.1", "192.0.2.2", 1)),   # ICMP: the probe on the bare path
        (110, ipv4("192.0.2.2", "192.0.2.1", 6)),   # incoming
        (130, ipv4("192.0.2.1", "192.0.2.2", 6)),
        (120, ipv4("192.0.2.1", "192.0.2.2", 17)),
    ]
    assert measure.first_underlay_packet(packets, since_ns=95) == 120
    assert measure.first_underlay_packet(packets[:3], since_ns=95) is None


def test_echo_request_checksum_verifies_and_reply_matches() -> None:
    req = measure.echo_request(0x1234, 7)
    assert measure._checksum(req) == 0
    reply = bytes([0]) + req[1:]
    packet = ipv4("10.99.0.1", "10.99.0.2", 1)[:20] + reply
    assert measure.is_echo_reply(packet, "10.99.0.1", 0x1234)
    assert not measure.is_echo_reply(packet, "10.99.0.1", 0x9999)
    assert not measure.is_echo_reply(packet, "192.0.2.2", 0x1234)
    assert not measure.is_echo_reply(ipv4("10.99.0.1", "10.99.0.2", 1)[:20] + req, "10.99.0.1", 0x1234)


def test_iperf_argv() -> None:
    tcp = measure.IperfTest("tcp4_rev", streams=4, reverse=True).argv("10.99.0.1", 10)
    assert tcp[:4] == ["iperf3", "-c", "10.99.0.1", "-t"] and "-R" in tcp and "-P" in tcp and "-O" in tcp
    udp = measure.IperfTest("udp", udp_rate="1G").argv("10.99.0.1", 5)
    assert ["-u", "-b", "1G", "-l", "1200", "-w", "2M"] == udp[udp.index("-u"):udp.index("-u") + 7]
    assert "-O" not in udp
