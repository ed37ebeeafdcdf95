"""The data channel of one session: sealing and opening datagrams under epoch keys.

Rule 1: seal is one struct.pack and one AEAD call; open is one struct.unpack, a replay check,
        one AEAD call and a replay update. Nothing else runs per packet. A `native` channel
        (the default where runtime/native/fastseal.c was built) runs these loops in C, one call
        per batch to seal and one per run of one epoch's datagrams to open; everything else
        about a batch stays here, and both paths give the same datagrams, results and drops.
Rule 2: a counter is used once per key: it starts at 0 per epoch, only grows, and at
        `reject_packets` sealing stops (returns None, sets `exhausted`) instead of wrapping.
        The receiver does not enforce the sender's limit (configs may differ); its replay
        window refuses only counters no u64 can reach (WireGuard's REJECT_AFTER_MESSAGES).
Rule 3: a datagram that is short, for another session, of unknown type or epoch, a replay,
        or fails authentication is counted in `drops` by reason and dropped; open never raises.
Rule 4: at most three epochs are live for receiving: the previous (until its grace ends),
        the current (the one we seal with) and a pending one (installed, not yet sealing).
        The first authenticated datagram under the pending epoch proves the peer holds it:
        we then start sealing with it.
Rule 5: the flags byte (authenticated) carries per-packet hints (FL_INNER bits, passed
        through to and from the caller) and our FL_TAKES_PARTIAL on every datagram when
        `takes_partial`; the peer's FL_TAKES_PARTIAL, once seen on an authentic datagram,
        sets `peer_takes_partial` for the rest of the session.
Rule 6: a native epoch keeps its counter in its sealing Aead (`seal.counter`), where a C
        Path (runtime/fastpath.py) seals too; `on_change` is called after anything a Path
        copies changes: the sealing epoch, the epochs it opens, `peer_takes_partial`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from cryptography.exceptions import InvalidTag

from runtime.proto.config import Limits
from runtime.proto.keys import NATIVE, Aead, make_aead
from runtime.proto.replay import RECEIVE_LIMIT, PythonReplayWindow, ReplayWindow
from runtime.proto.wire import (DG_DATA, DG_KEEPALIVE, FL_INNER, FL_TAKES_PARTIAL, HEADER, MIN_DATAGRAM,
                                 NONCE_PREFIX, session_of, stray_reason)


class Epoch:
    """Keys and counters of one epoch, both directions."""

    __slots__ = ("number", "tag", "seal", "open", "counter", "window", "installed_at")

    def __init__(self, number: int, seal: Aead, open_: Aead, window: PythonReplayWindow, now: float) -> None:
        self.number = number
        self.tag = number & 0xFF
        self.seal = seal
        self.open = open_
        self.counter = 0
        self.window = window
        self.installed_at = now


class NativeEpoch(Epoch):
    """An epoch whose counter lives in its C sealing Aead (Rule 6)."""

    __slots__ = ()

    @property  # type: ignore[override]
    def counter(self) -> int:
        return self.seal.counter

    @counter.setter
    def counter(self, value: int) -> None:
        self.seal.counter = value


class DataChannel:
    """Seals and opens one session's datagrams; see the module rules."""

    def __init__(self, session_id: int, cipher: str, limits: Limits, drops: Counter[str],
                 takes_partial: bool = False, *, native: bool = True) -> None:
        self.session_id = session_id
        self.native = native and NATIVE  # Rule 1: the C loops (the same bytes) when built
        self.own_flags = FL_TAKES_PARTIAL if takes_partial else 0
        self.peer_takes_partial = False
        self.last_flags = 0  # FL_INNER bits of the datagram `open` last returned
        self.cipher = cipher
        self.limits = limits
        self.drops = drops
        self.current: Epoch | None = None
        self.pending: Epoch | None = None
        self.previous: Epoch | None = None
        self.previous_until = 0.0
        self.exhausted = False
        self._reject = limits.reject_packets
        self._by_tag: dict[int, Epoch] = {}
        self.on_change: Callable[[], None] | None = None  # Rule 6

    def changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def install(self, number: int, seal_key: bytes, open_key: bytes, now: float, *, active: bool) -> None:
        """Add epoch `number`; seal with it now if `active`, else once the peer uses it."""
        native = self.native
        window = (ReplayWindow if native else PythonReplayWindow)(RECEIVE_LIMIT)
        epoch = (NativeEpoch if native else Epoch)(number, make_aead(self.cipher, seal_key, native=native),
                                                   make_aead(self.cipher, open_key, native=native), window, now)
        self._by_tag[epoch.tag] = epoch
        self.pending = epoch
        if active or self.current is None:
            self.activate(now)

    def activate(self, now: float) -> None:
        """Seal with the pending epoch from now on; the current one becomes the previous."""
        if self.pending is None:
            return
        if self.previous is not None:
            self._by_tag.pop(self.previous.tag, None)
        self.previous, self.current, self.pending = self.current, self.pending, None
        self.previous_until = now + self.limits.old_key_grace
        self.exhausted = False
        self.changed()

    def expire(self, now: float) -> None:
        """Forget the previous epoch once its grace period has passed."""
        if self.previous is not None and now >= self.previous_until:
            self._by_tag.pop(self.previous.tag, None)
            self.previous = None
            self.changed()

    def seal(self, kind: int, payload: bytes, flags: int = 0) -> bytes | None:
        """The datagram carrying `payload`, or None when the key is used up (never wraps)."""
        sealed = self.seal_batch([(payload, flags)], kind)
        return sealed[0] if sealed else None

    def seal_batch(self, packets: list[tuple[bytes, int]], kind: int = DG_DATA) -> list[bytes]:
        """The datagrams for (payload, FL_INNER flags) pairs, in order, under the current
        epoch; it stops where the key is used up (Rule 2: counted, `exhausted` set)."""
        epoch = self.current
        room = self._reject - epoch.counter if epoch is not None else 0
        if room < len(packets):  # what a one-by-one seal would do: the first refused is counted
            self.exhausted = True
            self.drops["exhausted"] += 1
            if epoch is None or room <= 0:
                return []
            packets = packets[:room]
        counter = epoch.counter
        if self.native:
            out = epoch.seal.seal_batch(packets, kind, epoch.tag, self.own_flags, self.session_id, counter)
            epoch.counter = counter + len(out)
            return out
        pack, encrypt, tag, own, sid = HEADER.pack, epoch.seal.encrypt, epoch.tag, self.own_flags, self.session_id
        out = []
        for payload, flags in packets:
            header = pack(kind, tag, flags | own, 0, sid, counter)
            out.append(header + encrypt(NONCE_PREFIX + header[8:], payload, header))
            counter += 1
        epoch.counter = counter
        return out

    def open(self, data: bytes, now: float) -> tuple[int, bytes] | None:
        """(type, payload) of an authentic, fresh datagram; None (counted) otherwise."""
        opened, taken, authentic = self.open_batch([data], 0, now)
        if not taken:
            self._drop(stray_reason(data))
        if not authentic:
            return None
        if not opened:
            return DG_KEEPALIVE, b""
        self.last_flags = opened[0][1]
        return DG_DATA, opened[0][0]

    def open_batch(self, datagrams: list[bytes], start: int,
                   now: float) -> tuple[list[tuple[bytes, int]], int, int]:
        """(the DATA payloads with their FL_INNER bits, where it stopped, how many datagrams
        authenticated, keepalives included) for datagrams from `start` on, in order, up to
        the first that is short or of another session (left for the caller to count, see
        wire.stray_reason).  Rule 1's checks, in one loop."""
        if self.native:
            return self._open_native(datagrams, start, now)
        out: list[tuple[bytes, int]] = []
        authentic = 0
        drops, by_tag, sid, unpack = self.drops, self._by_tag, self.session_id, HEADER.unpack_from
        end = len(datagrams)
        i = start
        while i < end:
            data = datagrams[i]
            if len(data) < MIN_DATAGRAM:
                break
            kind, tag, flags, _reserved, session_id, counter = unpack(data)
            if session_id != sid:
                break
            i += 1
            epoch = by_tag.get(tag)
            if epoch is None:
                drops["unknown-epoch"] += 1
                continue
            if kind != DG_DATA and kind != DG_KEEPALIVE:
                drops["bad-type"] += 1
                continue
            window = epoch.window
            if not window.check(counter):
                drops["replay"] += 1
                continue
            try:
                payload = epoch.open.decrypt(NONCE_PREFIX + data[8:16], data[16:], data[:16])
            except InvalidTag:
                drops["auth"] += 1
                continue
            window.update(counter)
            if flags & FL_TAKES_PARTIAL and not self.peer_takes_partial:
                self.peer_takes_partial = True
                self.changed()
            if epoch is self.pending:
                self.activate(now)
            authentic += 1
            if kind == DG_DATA:
                out.append((payload, flags & FL_INNER))
        return out, i, authentic

    def _open_native(self, datagrams: list[bytes], start: int,
                     now: float) -> tuple[list[tuple[bytes, int]], int, int]:
        """open_batch with each run of one epoch's datagrams opened in C (fastseal.c open_run);
        unknown epochs and the pending epoch's activation are handled here, as in the loop."""
        out: list[tuple[bytes, int]] = []
        authentic, i, end, sid, by_tag = 0, start, len(datagrams), self.session_id, self._by_tag
        while i < end:
            data = datagrams[i]
            if len(data) < MIN_DATAGRAM or session_of(data) != sid:
                break
            epoch = by_tag.get(data[1])
            if epoch is None:
                self.drops["unknown-epoch"] += 1
                i += 1
                continue
            pending = epoch is self.pending
            stop, opened, *counts, partial = epoch.open.open_run(datagrams, i, sid, epoch.tag, epoch.window, out,
                                                                   pending)
            self._count_native_drops(*counts)
            if partial and not self.peer_takes_partial:
                self.peer_takes_partial = True
                self.changed()
            if opened and pending:
                self.activate(now)
            authentic += opened
            if stop == i:  # not a run after all (a datagram C reads otherwise): stop, as at a stray
                break
            i = stop
        return out, i, authentic

    def _count_native_drops(self, bad_type: int, replay: int, forged: int) -> None:
        for reason, n in (("bad-type", bad_type), ("replay", replay), ("auth", forged)):
            if n:
                self.drops[reason] += n

    def _drop(self, reason: str) -> None:
        self.drops[reason] += 1
        return None

    @property
    def sent(self) -> int:
        """Datagrams sealed under the current epoch."""
        return self.current.counter if self.current is not None else 0

    @property
    def epoch(self) -> int:
        """The number of the current (sealing) epoch."""
        return self.current.number if self.current is not None else -1

    def rekey_due(self, now: float) -> bool:
        """True when the current epoch has reached a soft limit (age or volume)."""
        epoch = self.current
        if epoch is None:
            return False
        age_due = now - epoch.installed_at >= self.limits.rekey_seconds
        return age_due or epoch.counter >= self.limits.rekey_packets or self.exhausted

    def deadline(self) -> float | None:
        """When `expire` next has work to do."""
        return self.previous_until if self.previous is not None else None
