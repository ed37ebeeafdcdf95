"""Pure arithmetic of the load benchmark: percentiles, rates, per-client memory, CPU share,
whether memory stayed flat, and reading the generator's status lines.

Rule: no I/O and no clock; every function takes the samples it works on.  A figure that
cannot be computed from the samples is None, never guessed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

Json = dict[str, Any]


def percentiles(values: Sequence[float], points: Sequence[int] = (50, 95, 99)) -> Json | None:
    """Nearest-rank percentiles in milliseconds, and the max; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    found = {f"p{p}_ms": round(ordered[max(0, -(-p * len(ordered) // 100) - 1)] * 1000, 1) for p in points}
    found["max_ms"] = round(ordered[-1] * 1000, 1)
    return found


def rate(count: int, seconds: float | None) -> float | None:
    return round(count / seconds, 1) if seconds and seconds > 0 else None


def per_client_kib(rss_idle_kb: int | None, rss_loaded_kb: int | None, clients: int) -> float | None:
    """Resident memory one idle session adds, from the server's RSS without and with them."""
    if rss_idle_kb is None or rss_loaded_kb is None or clients <= 0:
        return None
    return round((rss_loaded_kb - rss_idle_kb) / clients, 1)


def core_pct(cpu_ticks: int, clk_tck: int, seconds: float) -> float | None:
    """CPU used over a window, as % of one core."""
    if seconds <= 0 or clk_tck <= 0:
        return None
    return round(100.0 * cpu_ticks / clk_tck / seconds, 2)


def warmup_s(rekey_s: float, grace_s: float, margin_s: float) -> float:
    """How long memory is not yet judged: every session that came up in the ramp makes its
    first rekey within `rekey_s` and holds two epochs for `grace_s` more; the allocator keeps
    that peak.  Growth is judged from the first sample after that wave (plus a margin)."""
    return rekey_s + grace_s + margin_s


def flatness(samples: Sequence[tuple[float, int]], warmup_s: float) -> Json:
    """Memory after warm-up: first, last, min, max (KiB) and the growth rate (KiB/min) of a
    least-squares line through the samples; `flat` when it grows under 1 % of the first per
    10 minutes.  Fewer than two samples after warm-up: nothing is concluded."""
    if not samples:
        return {"samples": 0, "warmup_s": warmup_s, "flat": None}
    start = samples[0][0] + warmup_s
    kept = [(t, kb) for t, kb in samples if t >= start]
    found: Json = {"samples": len(kept), "warmup_s": warmup_s}
    if len(kept) < 2:
        return {**found, "flat": None}
    slope = _slope(kept) * 60.0
    first = kept[0][1]
    found.update(first_kb=first, last_kb=kept[-1][1], min_kb=min(k for _, k in kept),
                 max_kb=max(k for _, k in kept), kib_per_min=round(slope, 2),
                 flat=abs(slope) * 10 < 0.01 * first)
    return found


def _slope(points: Sequence[tuple[float, int]]) -> float:
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mk = sum(k for _, k in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    return 0.0 if den == 0 else sum((t - mt) * (k - mk) for t, k in points) / den


def parse_status(lines: Iterable[str]) -> list[Json]:
    """The generator's JSON status lines; anything else (a traceback) is skipped."""
    found = []
    for line in lines:
        line = line.strip()
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return found


def first_time(statuses: Sequence[Json], after: float, ok: Any) -> float | None:
    """The `t` of the first status at or after `after` for which `ok(status)` holds."""
    return next((s["t"] for s in statuses if s["t"] >= after and ok(s)), None)


def hold_liveness(before: Json, after: Json, window: Sequence[Json], clients: int) -> Json:
    """Sessions lost during a hold, from the generator's statuses at its start and end and
    in between: ends it counted, the fewest up at any second, how many were up at the end
    and how many of those had heard nothing authenticated for 2.5 keepalives."""
    ended = after["ended"] - before["ended"]
    return {"ended": ended, "min_up": min((s["up"] for s in window), default=after["up"]),
            "up_at_end": after["up"], "stale_at_end": after["stale"],
            "lost": ended + max(0, clients - after["up"])}
