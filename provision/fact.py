"""Facts: what is on a host, read by one command and a pure parser of its output.

Rule 1: a fact's command only reads; it runs in `--check` too.
Rule 2: the parser is pure (a `Result` in, a value out) so facts are tested from recorded
outputs; it raises ValueError on output it does not understand, which `gather` turns
into a `FactError` naming the host and the fact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from provision.connection import Remote, Result
from provision.errors import ProvisionError

T = TypeVar("T")


class FactError(ProvisionError):
    """A fact's command printed something its parser does not understand."""

    default_hint = "the host may not be a system we support; run with -v to see the command"


@dataclass(frozen=True)
class Fact(Generic[T]):
    """A read-only command and the pure parser of its result."""

    name: str
    command: str
    parse: Callable[[Result], T]


def gather(remote: Remote, fact: Fact[T]) -> T:
    """Run the fact's command on the host and parse what it printed."""
    result = remote.run(fact.command, check=False)
    try:
        return fact.parse(result)
    except ValueError as exc:
        raise FactError(f"{remote.name}: fact {fact.name}: {exc}") from None


def expect_success(result: Result) -> str:
    """The stdout of a command that must succeed (for parsers of must-work commands)."""
    if result.rc != 0:
        reason = (result.stderr.strip().splitlines() or [""])[-1]
        raise ValueError(f"exit {result.rc}: {reason}".rstrip(": "))
    return result.stdout
