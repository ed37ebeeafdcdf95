"""The load benchmark judges memory after the first rekey wave, and its clients back off
with the real client's jitter."""

from __future__ import annotations

import random

from provision.bench.load import run, stats
from provision.bench.load.worker import BACKOFF_MAX, next_backoff

# The 10-minute hold that was judged "not flat": the step at 120 s is the first rekey of
# every session (two epochs each for 30 s; the allocator keeps the peak).
SOAK = [(0.0, 94544), (60.0, 94544), (120.0, 98516), (180.0, 98516), (240.0, 98672), (300.0, 98676),
        (360.0, 98676), (420.0, 98676), (480.0, 98688), (540.0, 98688), (600.0, 98948)]


def test_the_warm_up_covers_the_first_rekey_and_its_grace():
    assert run.memory_warmup() == run.REKEY + 30 + run.KEEPALIVE == 160


def test_the_rekey_step_is_warm_up_and_the_same_rule_still_sees_steady_growth():
    found = stats.flatness(SOAK, run.memory_warmup())
    assert found["first_kb"] == 98516 and found["flat"] is True and found["kib_per_min"] < 40
    leak = [(t, kb + int(t) * 3) for t, kb in SOAK]  # 180 KiB/min more: a leak of 180 B/client/min
    assert stats.flatness(leak, run.memory_warmup())["flat"] is False


def test_a_hold_shorter_than_the_warm_up_concludes_nothing():
    short = [(t, 94472) for t in range(0, 61, 6)]
    assert stats.flatness(short, run.memory_warmup())["flat"] is None


def test_backoff_doubles_to_30_s_with_the_clients_jitter():
    rng, backoff, waits = random.Random(1), 0.5, []
    for _ in range(12):
        nxt = next_backoff(backoff, rng)
        assert 0.8 * min(2 * backoff, BACKOFF_MAX) <= nxt <= min(2 * backoff, BACKOFF_MAX)
        waits.append(nxt)
        backoff = nxt
    assert max(waits) <= BACKOFF_MAX and waits[-1] >= 0.8 * BACKOFF_MAX
    firsts = {round(next_backoff(2.0, random.Random(i)), 3) for i in range(100)}
    assert len(firsts) > 50  # clients that failed together do not retry together
