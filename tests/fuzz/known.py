"""Bugs the fuzzers found in other modules, reported to their owners and not yet fixed.

Rule 1: a known bug is matched by target and by where the exception escaped (the finding
        key's `@file:function` part), so every input reaching the same bad spot is one bug.
Rule 2: each has a crash file in the corpus; `test_known_bugs` replays it as a strict xfail,
        so the fix turns it into an unexpected pass and this entry must then be deleted.
Rule 3: a finding not listed here fails the CI run and the long run.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Known:
    target: str
    where: str  # "file.py:function" where the exception escapes
    crash: bytes  # an input that shows it (also kept in the corpus)
    report: str


KNOWN: tuple[Known, ...] = ()  # none open: the playbook's (reports 7-9) are fixed, their crashes stay in the corpus


def known(target: str, key: str) -> Known | None:
    """The known bug a finding key belongs to, if any."""
    where = key.partition("@")[2]
    return next((k for k in KNOWN if k.target == target and k.where == where), None)
