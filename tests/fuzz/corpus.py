"""The corpus kept in the repo: tests/fuzz/corpus/<target>/<name>, one input per file.

Rule 1: `seed-*` files are valid inputs made by the real code; `crash-*` files are inputs
        that once broke a contract (a known bug, or a regression test once fixed).
Rule 2: a file's name ends in the first 12 hex digits of its SHA-256, so saving the same
        input twice writes one file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"


def folder(target: str) -> Path:
    return CORPUS / target


def load(target: str) -> list[bytes]:
    """Every input kept for `target`, seeds first, in name order."""
    directory = folder(target)
    if not directory.is_dir():
        return []
    files = sorted(directory.iterdir(), key=lambda p: (not p.name.startswith("seed-"), p.name))
    return [p.read_bytes() for p in files if p.is_file()]


def save(target: str, kind: str, data: bytes) -> Path:
    """Write `data` as `<kind>-<sha256 prefix>` under the target's folder; return the path."""
    directory = folder(target)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{kind}-{hashlib.sha256(data).hexdigest()[:12]}"
    if not path.exists():
        path.write_bytes(data)
    return path
