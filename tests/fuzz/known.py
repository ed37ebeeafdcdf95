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


KNOWN: tuple[Known, ...] = (
    Known("playbook", "playbook.py:load_playbook", b"\xca",
          "provision/playbook.py load_playbook: non-UTF-8 file raises UnicodeDecodeError"),
    Known("playbook", "playbook.py:parse_playbook", b"- !!float e: 1\n",
          "provision/playbook.py parse_playbook: yaml.safe_load raises ValueError/IndexError/RecursionError "
          "that are not YAMLError"),
    Known("playbook", "playbook.py:parse_when", b"- op: sysctl\n  args: {key: a.b, value: 1}\n  when: 'a == ['\n",
          "provision/playbook.py parse_when: yaml.safe_load(literal) of the `when: NAME == VALUE` value "
          "raises YAMLError (or ValueError), which is not turned into PlaybookError"),
)


def known(target: str, key: str) -> Known | None:
    """The known bug a finding key belongs to, if any."""
    where = key.partition("@")[2]
    return next((k for k in KNOWN if k.target == target and k.where == where), None)
