"""Byte mutations in the manner of libFuzzer's: small stacked edits of a valid input.

Rule 1: one `mutate` call applies 1-4 edits drawn from one `random.Random`, so a session is
        reproducible from its seed.
Rule 2: edits know nothing of formats except through `tokens` (a target's dictionary:
        YAML syntax, JSON field names, frame headers), which they insert or swap in.
Rule 3: the result never exceeds `max_len` bytes.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Sequence

INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000, 0xFFFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 2**63, 2**64 - 1)


class Mutator:
    """Edits byte strings; see the module rules."""

    def __init__(self, rng: random.Random, tokens: Sequence[bytes], max_len: int) -> None:
        self.rng = rng
        self.tokens = tuple(tokens)
        self.max_len = max_len
        self._edits: tuple[Callable[[bytearray, Sequence[bytes]], None], ...] = (
            self._flip, self._byte, self._number, self._insert, self._delete,
            self._duplicate, self._splice, self._token, self._token, self._swap_token, self._truncate,
        )

    def mutate(self, data: bytes, pool: Sequence[bytes]) -> bytes:
        out = bytearray(data)
        for _ in range(self.rng.randint(1, 4)):
            self.rng.choice(self._edits)(out, pool)
        return bytes(out[: self.max_len])

    def _at(self, out: bytearray) -> int:
        return self.rng.randint(0, len(out))

    def _flip(self, out: bytearray, _pool: Sequence[bytes]) -> None:
        if out:
            i = self.rng.randrange(len(out))
            out[i] ^= 1 << self.rng.randrange(8)

    def _byte(self, out: bytearray, _pool: Sequence[bytes]) -> None:
        if out:
            out[self.rng.randrange(len(out))] = self.rng.randrange(256)

    def _number(self, out: bytearray, _pool: Sequence[bytes]) -> None:
        value = self.rng.choice(INTERESTING) + self.rng.choice((-1, 0, 0, 1))
        size = self.rng.choice((1, 2, 3, 4, 8))
        raw = (value % (1 << (8 * size))).to_bytes(size, self.rng.choice(("big", "little")))
        if self.rng.random() < 0.3:
            raw = str(value).encode()
        at = self._at(out)
        out[at : at + len(raw)] = raw

    def _insert(self, out: bytearray, _pool: Sequence[bytes]) -> None:
        at = self._at(out)
        out[at:at] = self.rng.randbytes(self.rng.randint(1, 16))

    def _delete(self, out: bytearray, _pool: Sequence[bytes]) -> None:
        at = self._at(out)
        del out[at : at + self.rng.randint(1, 32)]

    def _duplicate(self, out: bytearray, _pool: Sequence[bytes]) -> None:
        at = self._at(out)
        piece = out[at : at + self.rng.randint(1, 64)]
        where = self._at(out)
        out[where:where] = piece * self.rng.randint(1, 4)

    def _splice(self, out: bytearray, pool: Sequence[bytes]) -> None:
        other = self.rng.choice(pool) if pool else b""
        start = self.rng.randint(0, len(other))
        piece = other[start : start + self.rng.randint(1, 128)]
        at = self._at(out)
        out[at : at + self.rng.randint(0, len(piece))] = piece

    def _token(self, out: bytearray, _pool: Sequence[bytes]) -> None:
        if self.tokens:
            at = self._at(out)
            out[at:at] = self.rng.choice(self.tokens)

    def _swap_token(self, out: bytearray, _pool: Sequence[bytes]) -> None:
        present = [t for t in self.tokens if t and t in out]
        if present and self.tokens:
            old = self.rng.choice(present)
            at = bytes(out).find(old, self.rng.randint(0, max(0, len(out) - len(old))))
            at = at if at >= 0 else bytes(out).find(old)
            out[at : at + len(old)] = self.rng.choice(self.tokens)

    def _truncate(self, out: bytearray, _pool: Sequence[bytes]) -> None:
        del out[self._at(out):]


def records(data: bytes) -> list[tuple[int, bytes]]:
    """A script input cut into (op, payload) records: [op u8][length u16 BE][payload]."""
    found: list[tuple[int, bytes]] = []
    at = 0
    while at + 3 <= len(data):
        op, size = data[at], struct.unpack_from("!H", data, at + 1)[0]
        found.append((op, data[at + 3 : at + 3 + size]))
        at += 3 + size
    return found


def record(op: int, payload: bytes) -> bytes:
    """One record of a script input (the inverse of `records`)."""
    return struct.pack("!BH", op, len(payload)) + payload
