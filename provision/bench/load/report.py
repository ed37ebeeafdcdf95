"""The load benchmark's result as markdown tables, with the targets beside the figures.

Rule: pure: a result record in, text out; a missing figure prints as "-", never as 0.
"""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]
TARGET_KIB, TARGET_BACK_S = 64.0, 30.0


def cell(value: Any, unit: str = "") -> str:
    return "-" if value is None else f"{value}{unit}"


def verdict(value: float | None, limit: float) -> str:
    return "-" if value is None else ("met" if value < limit else "MISSED")


def render(r: Json) -> str:
    s = r.get("settings", {})
    lines = [f"## Server load: {s.get('clients')} clients, hold {s.get('hold')} s, "
             f"{s.get('sources')} source addresses, {s.get('concurrency')} handshakes in flight",
             "", "| figure | value | target |", "| --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows(r)]
    if r.get("error"):
        lines += ["", f"error: {r['error']}"]
    hold = r.get("hold") or {}
    if hold.get("rss_samples"):
        lines += ["", "| hold t (s) | server RSS (KiB) |", "| --- | --- |"]
        lines += [f"| {t} | {kb} |" for t, kb in hold["rss_samples"]]
    return "\n".join(lines) + "\n"


def rows(r: Json) -> list[tuple[str, str, str]]:
    ramp, hold, restart = r.get("ramp") or {}, r.get("hold") or {}, r.get("restart") or {}
    live, lat, mem = hold.get("liveness") or {}, ramp.get("latency") or {}, hold.get("memory") or {}
    per = r.get("kib_per_client")
    back = restart.get("all_back_s")
    return [
        ("certificates issued now / PKI ready", f"{cell((r.get('pki') or {}).get('issued_s'), ' s')} / "
                                                f"{cell((r.get('pki') or {}).get('ready_s'), ' s')}", ""),
        ("ramp: all up after", cell(ramp.get("seconds"), " s"), ""),
        ("handshakes per second", cell(ramp.get("handshakes_per_s")), "as fast as accepted"),
        ("handshake latency p50 / p95 / max", f"{cell(lat.get('p50_ms'))} / {cell(lat.get('p95_ms'))} / "
                                              f"{cell(lat.get('max_ms'))} ms", ""),
        ("CPU in the ramp: server / generator (incl. its start)",
         f"{cell(ramp.get('server_cpu_pct'))} / {cell(ramp.get('generator_cpu_pct'))} % of a core", ""),
        ("failed attempts during ramp", cell(ramp.get("failures")), ""),
        ("echo replies after connect", f"{cell(ramp.get('echo_rx'))} of {cell(ramp.get('echo_tx'))}", ""),
        ("server RSS, 0 sessions", cell(r.get("rss_0_kb"), " KiB"), ""),
        ("server RSS, all idle sessions", cell(r.get("rss_loaded_kb"), " KiB"), ""),
        ("memory per idle client", cell(per, " KiB"), f"< {TARGET_KIB:.0f} KiB: {verdict(per, TARGET_KIB)}"),
        ("server CPU, keepalives only", cell(hold.get("server_cpu_pct"), " % of a core"), "report"),
        ("generator CPU, same window", cell(hold.get("generator_cpu_pct"), " % of a core"), ""),
        ("sessions lost in hold (ended + not up)", cell(live.get("lost")), "0: " + (
            "-" if live.get("lost") is None else ("met" if live["lost"] == 0 else "MISSED"))),
        ("fewest up / silent at end", f"{cell(live.get('min_up'))} / {cell(live.get('stale_at_end'))}", ""),
        (f"RSS growth after warm-up ({cell(mem.get('warmup_s'), ' s')}: first rekey wave)",
         cell(mem.get("kib_per_min"), " KiB/min"),
         "flat: " + cell(mem.get("flat"))),
        ("restart: server down (TERM to listening)", cell(restart.get("server_down_s"), " s"), ""),
        ("restart: all clients back", cell(back, " s"), f"< {TARGET_BACK_S:.0f} s: {verdict(back, TARGET_BACK_S)}"),
        ("restart: failed attempts", cell(restart.get("failures")), ""),
        ("server RSS after restart, all up", cell(r.get("rss_after_restart_kb"), " KiB"), ""),
    ]
