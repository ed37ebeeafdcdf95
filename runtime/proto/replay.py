"""Replay window: a sliding bitmap of 8192 bits, WireGuard's counter.c ported to Python.

Rule 1: `check` is read-only and cheap, run before decryption; `update` runs only after the
        datagram authenticated, so forged datagrams never move the window.
Rule 2: the window covers WINDOW = 8192 - 64 = 8128 counters behind the highest seen; older,
        duplicate, and counters at or above `limit` are refused.
Rule 3: the bitmap is 128 words of 64 bits used as a ring; words are cleared as the top moves.
Rule 4: `ReplayWindow` is the C window of runtime/native/fastseal.c where it was built
        (runtime/fast.py), else `PythonReplayWindow`, the reference it is tested against: same
        answers for every u64 counter (the C one refuses negative counters and update(2**64 - 1),
        which no check admits, with OverflowError).
"""

from __future__ import annotations

from runtime import fast

_fastseal = fast.load("_fastseal")

BITS_TOTAL = 8192
WORD_BITS = 64
WORDS = BITS_TOTAL // WORD_BITS
WINDOW = BITS_TOTAL - WORD_BITS
_RING = WORDS - 1
RECEIVE_LIMIT = 2**64 - WINDOW - 1  # WireGuard's REJECT_AFTER_MESSAGES: no u64 counter reaches it


class PythonReplayWindow:
    """Accepts each counter below `limit` at most once, within WINDOW of the newest."""

    __slots__ = ("_limit", "_top", "_words")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._top = 0  # highest accepted counter + 1 (0: none yet)
        self._words = [0] * WORDS

    def check(self, counter: int) -> bool:
        if counter >= self._limit:
            return False
        counter += 1
        if counter + WINDOW < self._top:
            return False
        if counter > self._top:
            return True
        return not (self._words[(counter >> 6) & _RING] >> (counter & 63)) & 1

    def update(self, counter: int) -> None:
        counter += 1
        index = counter >> 6
        if counter > self._top:
            current = self._top >> 6
            if index != current:  # the top moves into new words: clear them (at most all)
                for i in range(current + 1, min(index, current + WORDS) + 1):
                    self._words[i & _RING] = 0
            self._top = counter
        self._words[index & _RING] |= 1 << (counter & 63)

    def accept(self, counter: int) -> bool:
        """check + update in one call (what WireGuard's counter_validate does)."""
        if not self.check(counter):
            return False
        self.update(counter)
        return True


ReplayWindow: type[PythonReplayWindow] = _fastseal.ReplayWindow if _fastseal is not None else PythonReplayWindow
