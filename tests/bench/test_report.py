"""provision.bench.report: medians [min–max], ratios from one file, target verdicts, markdown."""

from __future__ import annotations

from typing import Any

import pytest

from provision.bench import report


def run(peer: str, rnd: int, tcp1: float | None, ok: bool = True, **more: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"kind": "peer", "peer": peer, "round": rnd, "ok": ok, "secs": 10, "udp_rate": "1G",
                         "version": f"{peer} 1.0", "host": {"ncpu": 2}}
    if tcp1 is not None:
        r["tcp1"] = {"recv_mbps": tcp1, "cpu": {"client": {"us_per_packet": 3.0}}}
    r.update(more)
    return r


def test_stat_median_min_max() -> None:
    s = report.stat([3.0, None, 1.0, 2.0])
    assert s == report.Stat(2.0, 1.0, 3.0, 3)
    assert s.cell("{:.0f}") == "2 [1–3]"
    assert report.Stat(5.0, 5.0, 5.0, 1).cell("{:.1f}") == "5.0"
    assert report.stat([None]) is None


def test_ratio() -> None:
    assert report.ratio(report.Stat(3000, 1, 1, 1), report.Stat(1000, 1, 1, 1)) == 3.0
    assert report.ratio(None, report.Stat(1, 1, 1, 1)) is None
    assert report.ratio(report.Stat(1, 1, 1, 1), report.Stat(0, 0, 0, 1)) is None


def test_get_dotted_path() -> None:
    assert report.get({"a": {"b": {"c": 1}}}, "a.b.c") == 1
    assert report.get({"a": {"b": None}}, "a.b.c") is None
    assert report.get({"a": 3}, "a.b") is None


def test_failed_runs_are_not_averaged_but_listed() -> None:
    records = [run("openvpn", 1, 800), run("openvpn", 2, 900),
               run("ours", 1, None, ok=False, error="failed to start: ours server: timed out", import_ms=400.0),
               run("ours", 2, 5000, ok=False, error="tcp1: boom")]
    table = report.stats_table(report.peer_records(records))
    assert table[("openvpn", "tcp1")] == report.Stat(850.0, 800, 900, 2)
    assert table[("ours", "tcp1")] is None
    text = report.render(records, "t")
    assert "ours (0/2 ok)" in text
    assert "- ours round 1: failed to start: ours server: timed out (client interpreter + imports alone: 400.0 ms)" in text
    assert "5000" not in text


def test_ratio_columns_and_targets() -> None:
    ping = lambda added: {"tunnel": {"avg_ms": added + 0.04}, "added_ms": added}  # noqa: E731
    records = [
        run("raw", 1, 20000, ping=ping(0.0)),
        run("openvpn", 1, 800, tcp1_rev={"recv_mbps": 900}, ping=ping(0.2),
            connect={"connect_ms": 20.0, "startup_ms": 5.0, "handshake_ms": 15.0}),
        run("wireguard-go", 1, 700, ping=ping(0.5)),
        run("ours", 1, 2600, tcp1_rev={"recv_mbps": 2000}, ping=ping(0.1),
            connect={"connect_ms": 240.0, "startup_ms": 225.0, "handshake_ms": 15.0}),
    ]
    text = report.render(records, "t")
    row = next(line for line in text.splitlines() if line.startswith("| TCP 1 stream, client → server"))
    assert row.endswith("| 20000 | 800 | 700 | 2600 | 3.25× | 3.71× |")
    verdicts = {t.text: t for t in report.targets(report.stats_table(report.peer_records(records)))}
    assert verdicts["TCP 1 stream client → server ≥ 3× OpenVPN"].met is True
    assert verdicts["TCP 1 stream server → client ≥ 3× OpenVPN"].met is False
    assert verdicts["RTT added ≤ OpenVPN's"].met is True
    assert verdicts["handshake ≤ OpenVPN's whole connect"].met is True
    assert verdicts["whole connect < 250 ms"].met is True
    assert "| whole connect < 250 ms | met | 240.0 ms vs 250.0 ms |" in text


def test_targets_without_ours_figures_are_na() -> None:
    records = [run("openvpn", 1, 800), run("ours", 1, None, ok=False, error="failed to start: x")]
    found = report.targets(report.stats_table(report.peer_records(records)))
    assert [t.met for t in found] == [None] * 5
    assert "n/a" in report.render(records, "t")


def test_under_load_takes_the_largest_sample_in_mib() -> None:
    r = {"tcp1": {"rss_load": {"client": {"rss_kb": 2048}}}, "udp": {"rss_load": {"client": {"rss_kb": 4096}}}}
    assert report.under_load("client")(r) == 4.0
    assert report.under_load("server")(r) is None


def test_micro_table() -> None:
    records = [{"kind": "micro", "cipher": "aes-256-gcm", "size": 1420, "packets": 100,
                "seal_us": [1.0, 2.0, 3.0], "open_us": [2.0, 2.0, 2.0]}]
    text = report.render(records, "micro")
    assert "| aes-256-gcm | 1420 | 2.00 [1.00–3.00] | 2.00 | 100 × 3 |" in text


def test_every_metric_has_a_unique_key() -> None:
    keys = [m.key for m in report.METRICS]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("value", [0.0001, 123456.0])
def test_cells_format_any_magnitude(value: float) -> None:
    assert report.Stat(value, value, value, 2).cell("{:.3f}") == f"{value:.3f}"


def test_settings_say_how_often_the_connect_probe_asked() -> None:
    """Older files (no probe_ms) were probed every 5 ms; the first reply is that fine at best."""
    assert "echo requests sent every 1 ms" in report.render([run("ours", 1, 5000, probe_ms=1.0)], "t")
    assert "echo requests sent every 5 ms" in report.render([run("ours", 1, 5000)], "t")
