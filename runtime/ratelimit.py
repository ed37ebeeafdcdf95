"""Who may open a control connection now: a token bucket per source, and caps on the
connections still handshaking (not yet authenticated), per source and in all.

Rule 1: pure: every call takes the current time; no clock, socket or log is touched.  The
        loop asks `admit(source, now)` for each new TCP connection and closes it at once
        when a `Refusal` comes back; it calls `settled(source)` exactly once for each
        admitted connection, when it authenticates or ends, whichever comes first.
Rule 2: a source is an IPv4 address or an IPv6 /64 (one host owns a whole /64), as in
        WireGuard's ratelimiter; its bucket holds `burst` tokens refilled at `rate` per
        second, and each connection spends one.
Rule 3: bounded memory: at most `max_sources` buckets.  A bucket idle long enough to be
        full again (and past its report interval) is forgotten, which loses nothing; when
        the table is still full the least recently seen source is forgotten (it only
        regains a burst).  Pending counts exist only for sources with pending connections,
        so they are bounded by `pending_total`.
Rule 4: a refusal is marked for the log once per source per `report_every` seconds; the
        ones in between are counted and the next reported one carries their number.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass

RATE, PENDING_SOURCE, PENDING_TOTAL = "rate", "pending-source", "pending-total"


@dataclass(frozen=True)
class Limits:
    rate: float = 20.0  # connections per second per source, refilled continuously
    burst: int = 5  # connections a quiet source may open at once
    pending_per_source: int = 8  # connections of one source still handshaking
    # connections of all sources still handshaking.  Sized to what one server works off:
    # a handshake costs it about 2-3 ms of CPU and 47 KiB (OpenSSL state) while pending, so
    # 512 is about 1.5 s of work (well inside the client's 10 s handshake timeout) and
    # 24 MiB at most.  128 refused most of a 1000-client reconnect storm at every wave.
    pending_total: int = 512
    max_sources: int = 4096  # buckets kept
    report_every: float = 10.0  # seconds between two log lines about one source

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1 or self.report_every < 0:
            raise ValueError("rate must be > 0, burst >= 1, report_every >= 0")
        if not 1 <= self.pending_per_source <= self.pending_total < self.max_sources:
            raise ValueError("need 1 <= pending_per_source <= pending_total < max_sources")

    @property
    def idle_after(self) -> float:
        """Seconds after which a bucket is full again and its report interval has passed."""
        return max(self.burst / self.rate, self.report_every)


@dataclass(frozen=True)
class Refusal:
    """A connection refused: whose, why, and whether to log it (with the silent ones since)."""

    source: str
    reason: str  # RATE, PENDING_SOURCE or PENDING_TOTAL
    logged: bool
    suppressed: int  # refusals of this source not logged since its last logged one

    def line(self) -> str:
        more = f" (+{self.suppressed} not logged)" if self.suppressed else ""
        return f"control connections from {self.source} refused: over the {self.reason} limit{more}"


class _Bucket:
    __slots__ = ("tokens", "seen", "reported", "suppressed")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.seen = now
        self.reported = float("-inf")
        self.suppressed = 0


def source_of(address: str) -> str:
    """The rate-limited source of a peer address: the IPv4 address, or the IPv6 /64."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class ConnectLimiter:
    """See the module rules."""

    def __init__(self, limits: Limits = Limits()) -> None:
        self.limits = limits
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._pending: dict[str, int] = {}
        self.pending = 0

    def __len__(self) -> int:
        return len(self._buckets)

    def admit(self, address: str, now: float) -> Refusal | None:
        """None to accept a new connection from `address`; else why to close it at once."""
        source = source_of(address)
        bucket = self._touch(source, now)
        reason = self._reason(source, bucket)
        if reason is not None:
            return self._refuse(source, bucket, reason, now)
        bucket.tokens -= 1.0
        self._pending[source] = self._pending.get(source, 0) + 1
        self.pending += 1
        return None

    def settled(self, address: str) -> None:
        """An admitted connection authenticated or ended: it is no longer pending."""
        source = source_of(address)
        left = self._pending.get(source, 0) - 1
        if left < 0:
            return
        self.pending -= 1
        if left:
            self._pending[source] = left
        else:
            del self._pending[source]

    def _reason(self, source: str, bucket: _Bucket) -> str | None:
        limits = self.limits
        if bucket.tokens < 1.0:
            return RATE
        if self._pending.get(source, 0) >= limits.pending_per_source:
            return PENDING_SOURCE
        if self.pending >= limits.pending_total:
            return PENDING_TOTAL
        return None

    def _refuse(self, source: str, bucket: _Bucket, reason: str, now: float) -> Refusal:
        if now - bucket.reported < self.limits.report_every:
            bucket.suppressed += 1
            return Refusal(source, reason, False, bucket.suppressed)
        suppressed, bucket.suppressed, bucket.reported = bucket.suppressed, 0, now
        return Refusal(source, reason, True, suppressed)

    def _touch(self, source: str, now: float) -> _Bucket:
        """The source's bucket refilled to `now` (made if new), after expiring idle ones."""
        self._expire(now)
        bucket = self._buckets.get(source)
        if bucket is None:
            if len(self._buckets) >= self.limits.max_sources:
                self._buckets.popitem(last=False)
            bucket = self._buckets[source] = _Bucket(float(self.limits.burst), now)
        else:
            elapsed = max(0.0, now - bucket.seen)
            bucket.tokens = min(float(self.limits.burst), bucket.tokens + elapsed * self.limits.rate)
            bucket.seen = now
            self._buckets.move_to_end(source)
        return bucket

    def _expire(self, now: float) -> None:
        idle_after = self.limits.idle_after
        while self._buckets:
            oldest = next(iter(self._buckets.values()))
            if now - oldest.seen < idle_after:
                return
            self._buckets.popitem(last=False)
