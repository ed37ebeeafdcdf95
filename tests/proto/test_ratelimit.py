"""The control-connection limiter (runtime/ratelimit.py): token bucket per source, caps on
pending handshakes, bounded table, one log line per source per interval."""

from __future__ import annotations

import pytest

from runtime.ratelimit import PENDING_SOURCE, PENDING_TOTAL, RATE, ConnectLimiter, Limits, source_of

A, B = "192.0.2.11", "192.0.2.10"


def limiter(**kw) -> ConnectLimiter:
    base = dict(rate=20.0, burst=5, pending_per_source=100, pending_total=1000, max_sources=4096, report_every=10.0)
    return ConnectLimiter(Limits(**{**base, **kw}))


def admit_settled(lim: ConnectLimiter, source: str, now: float) -> bool:
    """Admit and settle at once (a connection that authenticates straight away)."""
    refused = lim.admit(source, now)
    if refused is None:
        lim.settled(source)
    return refused is None


def test_a_quiet_source_gets_its_burst_then_is_refused_for_rate():
    lim = limiter()
    assert [admit_settled(lim, A, 0.0) for _ in range(7)] == [True] * 5 + [False] * 2
    assert lim.admit(A, 0.0).reason == RATE


def test_tokens_come_back_at_the_rate_and_never_above_the_burst():
    lim = limiter()
    for _ in range(5):
        admit_settled(lim, A, 0.0)
    assert admit_settled(lim, A, 0.049) is False  # 0.98 of a token
    assert admit_settled(lim, A, 0.05) is True  # one token back after 1/20 s
    assert sum(admit_settled(lim, A, 100.0) for _ in range(10)) == 5  # long idle: still only the burst


def test_a_steady_flood_gets_through_at_the_rate_only():
    lim = limiter()
    admitted = sum(admit_settled(lim, A, i * 0.001) for i in range(10_000))  # 1000/s for 10 s
    assert 5 + 20 * 10 - 2 <= admitted <= 5 + 20 * 10 + 1


def test_one_sources_flood_does_not_touch_another_source():
    lim = limiter()
    for i in range(1000):
        admit_settled(lim, A, i * 0.001)
    assert all(admit_settled(lim, B, 1.0) for _ in range(5))


def test_pending_connections_are_capped_per_source_and_freed_when_settled():
    lim = limiter(rate=1000.0, burst=1000, pending_per_source=3)
    assert [lim.admit(A, 0.0) for _ in range(3)] == [None] * 3
    assert lim.admit(A, 0.0).reason == PENDING_SOURCE
    assert lim.admit(B, 0.0) is None  # another source is not affected
    lim.settled(A)
    assert lim.admit(A, 0.0) is None
    assert lim.pending == 4


def test_pending_connections_are_capped_in_all():
    lim = limiter(rate=1000.0, burst=1000, pending_per_source=2, pending_total=4)
    sources = [f"192.0.2.{i}" for i in range(1, 10)]
    results = [lim.admit(s, 0.0) for s in sources]
    assert results[:4] == [None] * 4 and all(r.reason == PENDING_TOTAL for r in results[4:])
    lim.settled(sources[0])
    assert lim.admit(sources[5], 0.0) is None


def test_settling_more_than_admitted_changes_nothing():
    lim = limiter()
    lim.settled(A)
    assert lim.pending == 0
    assert lim.admit(A, 0.0) is None
    lim.settled(A)
    lim.settled(A)
    assert lim.pending == 0


def test_refusals_are_logged_once_per_source_per_interval_carrying_the_count():
    lim = limiter(burst=1, rate=0.001)
    admit_settled(lim, A, 0.0)
    refusals = [lim.admit(A, t / 10) for t in range(1, 100)]  # 99 refusals in 9.9 s
    assert [r.logged for r in refusals].count(True) == 1 and refusals[0].logged
    assert lim.admit(B, 1.0) is None and lim.admit(B, 1.0).logged  # B has its own interval
    later = lim.admit(A, 10.1)
    assert later.logged and later.suppressed == 98
    assert "192.0.2.11" in later.line() and "+98 not logged" in later.line() and "rate" in later.line()


def test_idle_sources_are_forgotten():
    lim = limiter()
    for i in range(100):
        lim.admit(f"192.0.2.{i}", 0.0)
        lim.settled(f"192.0.2.{i}")
    assert len(lim) == 100
    lim.admit(A, 10.0)  # idle for max(burst/rate, report_every) = 10 s
    assert len(lim) == 1


def test_the_table_is_capped_and_forgets_the_least_recently_seen():
    lim = limiter(max_sources=1001, rate=0.001, burst=1)
    admit_settled(lim, A, 0.0)
    assert not admit_settled(lim, A, 0.0)
    for i in range(100_000):  # many sources, one connection each, within the report interval
        admit_settled(lim, f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}", 1.0 + i * 1e-6)
    assert len(lim) == 1001
    assert lim.pending == 0


def test_a_recently_seen_source_keeps_its_bucket_when_the_table_is_full():
    lim = limiter(max_sources=1001, rate=0.001, burst=1)
    assert admit_settled(lim, A, 0.0)
    for i in range(3000):
        admit_settled(lim, f"10.0.{i >> 8}.{i & 255}", 0.0)
        if i % 500 == 0:
            assert not admit_settled(lim, A, 0.0)  # A keeps being refused: never forgotten


def test_pending_counts_survive_the_table_forgetting_a_source():
    lim = limiter(max_sources=11, pending_total=10, pending_per_source=2, rate=1000.0, burst=1000)
    assert lim.admit(A, 0.0) is None and lim.admit(A, 0.0) is None
    for i in range(50):
        admit_settled(lim, f"10.0.0.{i}", 0.0)
    assert lim.admit(A, 0.0).reason == PENDING_SOURCE


@pytest.mark.parametrize(("address", "source"), [
    ("192.0.2.11", "192.0.2.11"),
    ("2001:db8:2::11", "2001:db8:2::/64"),
    ("2001:db8:2::ffff:1", "2001:db8:2::/64"),
    ("::ffff:192.0.2.11", "192.0.2.11"),
    ("fe80::1%eth0", "fe80::/64"),
    ("?", "?"),
])
def test_a_source_is_an_ipv4_address_or_an_ipv6_slash_64(address, source):
    assert source_of(address) == source


def test_one_ipv6_host_cannot_dodge_the_rate_by_changing_address():
    lim = limiter()
    admitted = sum(admit_settled(lim, f"2001:db8:2::{i:x}", 0.0) for i in range(1, 100))
    assert admitted == 5


@pytest.mark.parametrize("bad", [
    dict(rate=0), dict(burst=0), dict(pending_per_source=0), dict(pending_per_source=9, pending_total=8),
    dict(pending_total=4096), dict(report_every=-1),
])
def test_limits_that_make_no_sense_are_refused(bad):
    with pytest.raises(ValueError):
        Limits(**bad)


def test_the_default_caps_take_half_a_reconnect_storm_at_once_and_refuse_only_for_the_total():
    lim = ConnectLimiter()  # the server's limits
    sources = [f"10.200.{i >> 8}.{i & 255}" for i in range(200)]
    refusals = [lim.admit(sources[i % 200], 0.0) for i in range(1000)]  # 1000 clients, none settled yet
    assert refusals.count(None) == Limits().pending_total == 512
    assert {r.reason for r in refusals if r is not None} == {PENDING_TOTAL}


def test_the_default_caps_still_refuse_one_sources_connect_and_sit_flood():
    lim = ConnectLimiter()
    refusals = [lim.admit(A, i * 0.001) for i in range(3000)]  # 1000/s for 3 s, never settled
    assert refusals.count(None) == Limits().pending_per_source
    assert {r.reason for r in refusals if r is not None} == {RATE, PENDING_SOURCE}
