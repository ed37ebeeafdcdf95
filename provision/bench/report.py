"""From benchmark records (the JSONL lines) to medians, ratios, target verdicts and markdown.

Pure: no I/O except `load_jsonl`.  Tested in tests/bench.

Rule 1: a cell is median [min–max] over the peer's successful runs of this one file; a peer
with no successful run shows "—", and its failures are listed with their reasons.
Rule 2: ratios are ours / peer of the medians of the same file (one run of the benchmark),
never across files; a missing side makes the ratio "n/a".
Rule 3: nothing is filled in or estimated: a figure absent from the records stays absent.
"""

from __future__ import annotations

import json
import operator
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Record = Mapping[str, Any]
OURS = "ours"
RATIO_PEERS = ("openvpn", "wireguard-go")


def get(record: Any, path: str) -> Any:
    """The value at a dotted path, or None if any step is missing."""
    for key in path.split("."):
        if not isinstance(record, Mapping) or record.get(key) is None:
            return None
        record = record[key]
    return record


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- metrics --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Metric:
    key: str
    title: str
    extract: Callable[[Record], float | None]
    fmt: str = "{:.0f}"


def at(path: str, scale: float = 1.0) -> Callable[[Record], float | None]:
    def extract(record: Record) -> float | None:
        value = get(record, path)
        return None if value is None else value * scale
    return extract


def under_load(side: str) -> Callable[[Record], float | None]:
    """The largest RSS of one side sampled during any iperf3 test, in MiB."""
    def extract(record: Record) -> float | None:
        found = [get(record, f"{t}.rss_load.{side}.rss_kb") for t in ("tcp1", "tcp1_rev", "tcp4", "tcp4_rev", "udp")]
        values = [v for v in found if v is not None]
        return max(values) / 1024 if values else None
    return extract


MIB = 1 / 1024
METRICS: tuple[Metric, ...] = (
    Metric("tcp1", "TCP 1 stream, client → server (Mbit/s)", at("tcp1.recv_mbps")),
    Metric("tcp1_rev", "TCP 1 stream, server → client (Mbit/s)", at("tcp1_rev.recv_mbps")),
    Metric("tcp4", "TCP 4 streams, client → server (Mbit/s)", at("tcp4.recv_mbps")),
    Metric("tcp4_rev", "TCP 4 streams, server → client (Mbit/s)", at("tcp4_rev.recv_mbps")),
    Metric("udp_rx", "UDP received at the offered rate (Mbit/s)", at("udp.recv_mbps")),
    Metric("udp_loss", "UDP loss (%)", at("udp.lost_pct"), "{:.1f}"),
    Metric("rtt", "ping RTT through the path (ms)", at("ping.tunnel.avg_ms"), "{:.3f}"),
    Metric("rtt_added", "RTT added by the tunnel (ms)", at("ping.added_ms"), "{:.3f}"),
    Metric("connect", "connect: client start → first reply (ms)", at("connect.connect_ms"), "{:.1f}"),
    Metric("startup", "… process start-up: start → first packet out (ms)", at("connect.startup_ms"), "{:.1f}"),
    Metric("import", "… of which interpreter + imports, measured apart (ms)", at("import_ms"), "{:.1f}"),
    Metric("handshake", "… handshake: first packet out → first reply (ms)", at("connect.handshake_ms"), "{:.1f}"),
    Metric("cpu_cli_tx", "CPU µs per full-size packet, client sending (TCP 1 →)",
           at("tcp1.cpu.client.us_per_packet"), "{:.2f}"),
    Metric("cpu_srv_rx", "CPU µs per full-size packet, server receiving (TCP 1 →)",
           at("tcp1.cpu.server.us_per_packet"), "{:.2f}"),
    Metric("cpu_srv_tx", "CPU µs per full-size packet, server sending (TCP 1 ←)",
           at("tcp1_rev.cpu.server.us_per_packet"), "{:.2f}"),
    Metric("cpu_cli_rx", "CPU µs per full-size packet, client receiving (TCP 1 ←)",
           at("tcp1_rev.cpu.client.us_per_packet"), "{:.2f}"),
    Metric("rss_idle_cli", "RSS idle, client (MiB)", at("rss_idle.client.rss_kb", MIB), "{:.1f}"),
    Metric("rss_idle_srv", "RSS idle, server (MiB)", at("rss_idle.server.rss_kb", MIB), "{:.1f}"),
    Metric("rss_load_cli", "RSS under load, client (MiB)", under_load("client"), "{:.1f}"),
    Metric("rss_load_srv", "RSS under load, server (MiB)", under_load("server"), "{:.1f}"),
    Metric("hwm_cli", "peak RSS (VmHWM), client (MiB)", at("rss_end.client.hwm_kb", MIB), "{:.1f}"),
    Metric("hwm_srv", "peak RSS (VmHWM), server (MiB)", at("rss_end.server.hwm_kb", MIB), "{:.1f}"),
)
BY_KEY = {m.key: m for m in METRICS}


# --- statistics -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Stat:
    median: float
    low: float
    high: float
    n: int

    def cell(self, fmt: str) -> str:
        if self.n == 1 or self.low == self.high:
            return fmt.format(self.median)
        return f"{fmt.format(self.median)} [{fmt.format(self.low)}–{fmt.format(self.high)}]"


def stat(values: Iterable[float | None]) -> Stat | None:
    found = [v for v in values if v is not None]
    if not found:
        return None
    return Stat(statistics.median(found), min(found), max(found), len(found))


def ratio(ours: Stat | None, other: Stat | None) -> float | None:
    if ours is None or other is None or other.median == 0:
        return None
    return ours.median / other.median


def peer_records(records: Iterable[Record]) -> dict[str, list[Record]]:
    """Records of peer runs by peer, in first-seen order."""
    found: dict[str, list[Record]] = {}
    for r in records:
        if r.get("kind") == "peer":
            found.setdefault(r["peer"], []).append(r)
    return found


def stats_table(runs: Mapping[str, Sequence[Record]]) -> dict[tuple[str, str], Stat | None]:
    """(peer, metric key) → statistics over that peer's successful runs."""
    return {(peer, m.key): stat(m.extract(r) for r in recs if r.get("ok"))
            for peer, recs in runs.items() for m in METRICS}


# --- targets ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    text: str
    met: bool | None  # None: a figure is missing
    detail: str


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "NOT met", None: "n/a"}[met]


def targets(table: Mapping[tuple[str, str], Stat | None]) -> list[Target]:
    """The issue's targets, judged from the medians of this file."""
    def med(peer: str, key: str) -> float | None:
        s = table.get((peer, key))
        return s.median if s else None

    found = []
    for key, arrow in (("tcp1", "client → server"), ("tcp1_rev", "server → client")):
        r = ratio(table.get((OURS, key)), table.get(("openvpn", key)))
        found.append(Target(f"TCP 1 stream {arrow} ≥ 3× OpenVPN", None if r is None else r >= 3.0,
                            "n/a" if r is None else f"{r:.2f}×"))
    pairs = (
        ("RTT added ≤ OpenVPN's", med(OURS, "rtt_added"), med("openvpn", "rtt_added"), operator.le, "{:.3f} ms"),
        ("handshake ≤ OpenVPN's whole connect", med(OURS, "handshake"), med("openvpn", "connect"), operator.le,
         "{:.1f} ms"),
        ("whole connect < 250 ms", med(OURS, "connect"), 250.0, operator.lt, "{:.1f} ms"),
    )
    for text, ours, bound, holds, fmt in pairs:
        if ours is None or bound is None:
            found.append(Target(text, None, "n/a"))
        else:
            found.append(Target(text, bool(holds(ours, bound)), f"{fmt.format(ours)} vs {fmt.format(bound)}"))
    return found


# --- markdown ---------------------------------------------------------------------------------

def render(records: Sequence[Record], title: str) -> str:
    """The whole report: settings, the figures table with ratios, targets, micro, failures."""
    runs = peer_records(records)
    table = stats_table(runs)
    lines = [f"# {title}", ""] + settings_lines(records)
    if runs:
        lines += figures_table(runs, table) + [""]
        if OURS in runs:
            lines += targets_lines(targets(table)) + [""]
    lines += micro_lines([r for r in records if r.get("kind") == "micro"])
    lines += failure_lines([r for recs in runs.values() for r in recs if not r.get("ok")])
    lines += version_lines(runs)
    return "\n".join(lines).rstrip() + "\n"


def settings_lines(records: Sequence[Record]) -> list[str]:
    first = next((r for r in records if r.get("kind") == "peer"), None)
    if first is None:
        return []
    rounds = max(r.get("round", 0) for r in records if r.get("kind") == "peer")
    return [
        f"Lab: netns anc-cli ↔ anc-srv over one veth (MTU 1500), tunnel MTU 1420; {rounds} round(s), "
        f"peers interleaved; {first.get('host', {}).get('ncpu', '?')} CPUs shared by both ends and iperf3. "
        f"iperf3 -t {first.get('secs')} (TCP with -O 1), UDP offered {first.get('udp_rate')} in 1200-byte "
        f"datagrams; TCP congestion control {first.get('tcp_cc') or '?'}. Cells: median [min–max] over "
        "successful runs. RTT added = tunnel ping − underlay ping, measured together in the same run. "
        "Start-up ends at the client's first non-ICMP packet on the underlay; the first reply is that to "
        f"echo requests sent every {first.get('probe_ms', 5):g} ms from the start. CPU per packet: VPN processes "
        "of one side (and children), CPU time / (received payload ÷ 1368 B), ACKs uncounted.",
        "",
    ]


def figures_table(runs: Mapping[str, Sequence[Record]], table: Mapping[tuple[str, str], Stat | None]) -> list[str]:
    peers = list(runs)
    ratio_peers = [p for p in RATIO_PEERS if p in runs] if OURS in runs else []
    head = [f"{p} ({sum(1 for r in runs[p] if r.get('ok'))}/{len(runs[p])} ok)" for p in peers]
    head += [f"ours/{p}" for p in ratio_peers]
    lines = ["| metric | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for m in METRICS:
        cells = [(s.cell(m.fmt) if (s := table[(p, m.key)]) else "—") for p in peers]
        for p in ratio_peers:
            r = ratio(table[(OURS, m.key)], table[(p, m.key)])
            cells.append("n/a" if r is None else f"{r:.2f}×")
        lines.append(f"| {m.title} | " + " | ".join(cells) + " |")
    return lines


def targets_lines(found: Sequence[Target]) -> list[str]:
    lines = ["## Targets (ours, medians of this run)", "", "| target | verdict | figure |", "|---|---|---|"]
    lines += [f"| {t.text} | {_verdict(t.met)} | {t.detail} |" for t in found]
    return lines


def micro_lines(micro: Sequence[Record]) -> list[str]:
    if not micro:
        return []
    lines = ["## Data channel microbenchmark (one core, no I/O; native = runtime/native, python = the reference)",
             "", "| path | cipher | packet bytes | seal µs/packet | open µs/packet | packets × repeats |",
             "|---|---|---|---|---|---|"]
    for r in micro:
        seal, open_ = stat(r.get("seal_us", [])), stat(r.get("open_us", []))
        cells = [s.cell("{:.2f}") if s else "—" for s in (seal, open_)]
        lines.append(f"| {r.get('path', 'python')} | {r['cipher']} | {r['size']} | {cells[0]} | {cells[1]} | "
                     f"{r.get('packets')} × {len(r.get('seal_us', []))} |")
    return lines + [""]


def failure_lines(failed: Sequence[Record]) -> list[str]:
    if not failed:
        return []
    lines = ["## Failed runs", ""]
    for r in failed:
        floor = f" (client interpreter + imports alone: {r['import_ms']} ms)" if r.get("import_ms") else ""
        lines.append(f"- {r['peer']} round {r.get('round')}: {r.get('error')}{floor}")
    return lines + [""]


def version_lines(runs: Mapping[str, Sequence[Record]]) -> list[str]:
    if not runs:
        return []
    lines = ["## Versions", ""]
    for peer, recs in runs.items():
        notes = next((r.get("notes") for r in recs if r.get("notes")), "")
        lines.append(f"- **{peer}**: {recs[0].get('version')}" + (f" ({notes})" if notes else ""))
    return lines
