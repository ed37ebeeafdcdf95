"""The fuzzing engine: mutate seeds, run a target on each input, keep what finds new code.

Rule 1: a target is a function of bytes that returns when the parser kept its contract and
        raises anything else (an escaped exception is a finding). The engine adds two more
        findings of its own: a hang (over `Target.max_seconds`, cut by SIGALRM) and, on
        sampled inputs, memory (tracemalloc peak over `Target.max_bytes`).
Rule 2: guidance is line-edge coverage of our own packages (runtime/, provision/) through
        sys.settrace: an input that reaches a new edge joins the working queue. When another
        tracer is installed (coverage.py), the engine runs unguided instead.
Rule 3: everything is deterministic for a given `seed`; a finding is minimised (bounded)
        and keyed by exception type and the innermost frame of our code, so one bug is one
        finding however many inputs reach it.
"""

from __future__ import annotations

import random
import signal
import sys
import time
import tracemalloc
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from tests.fuzz.mutate import Mutator

ROOT = Path(__file__).resolve().parents[2]
OURS = (str(ROOT / "runtime"), str(ROOT / "provision"))


class Hang(BaseException):
    """Raised by the alarm inside a target that ran past its time (a BaseException, so a
    parser's `except Exception` cannot swallow it)."""


class TooMuchMemory(Exception):
    """The target's tracemalloc peak for one input went over its bound."""


@dataclass(frozen=True)
class Target:
    """One parser under fuzz: `run` holds the contract, `seeds` are valid real inputs."""

    name: str
    run: Callable[[bytes], None]
    seeds: Callable[[], list[bytes]]
    tokens: tuple[bytes, ...] = ()
    max_len: int = 4096
    max_seconds: float = 2.0
    max_bytes: int = 32 << 20


@dataclass(frozen=True)
class Finding:
    target: str
    key: str
    data: bytes
    report: str


@dataclass
class Result:
    target: str
    executions: int = 0
    edges: int = 0
    queue: int = 0
    findings: dict[str, Finding] = field(default_factory=dict)


def finding_key(exc: BaseException) -> str:
    """`Type@file:function` of the innermost frame in our packages (or the innermost)."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if f.filename.startswith(OURS)]
    where = (ours or frames or [None])[-1]
    place = f"{Path(where.filename).name}:{where.name}" if where is not None else "?"
    return f"{type(exc).__name__}@{place}"


def describe(exc: BaseException) -> str:
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    text = "".join(lines)
    return text if len(text) < 6000 else text[:2000] + "\n...\n" + text[-3500:]


# ---- limits ---------------------------------------------------------------------------


def _on_alarm(_signum: int, _frame: FrameType | None) -> None:
    raise Hang("input ran past its time bound")


@contextmanager
def time_bound(seconds: float) -> Iterator[None]:
    """Raise Hang in the body after `seconds` (main thread only; else unbounded)."""
    try:
        previous = signal.signal(signal.SIGALRM, _on_alarm)
    except ValueError:  # not the main thread
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def peak_memory(run: Callable[[bytes], None], data: bytes) -> int:
    """The tracemalloc peak (bytes) of one run; exceptions of `run` propagate."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        run(data)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        if started:
            tracemalloc.stop()


def execute(target: Target, data: bytes, *, measure: bool = False) -> BaseException | None:
    """Run one input under the limits; the exception that broke the contract, or None."""
    try:
        with time_bound(target.max_seconds):
            if not measure:
                target.run(data)
                return None
            peak = peak_memory(target.run, data)
    except Hang as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - anything that escapes is the finding
        return exc
    if peak > target.max_bytes:
        return TooMuchMemory(f"peak {peak >> 20} MB for a {len(data)}-byte input")
    return None


# ---- coverage -------------------------------------------------------------------------


class Coverage:
    """Line edges (code, previous line, line) seen in our packages while tracing."""

    def __init__(self) -> None:
        self.edges: set[tuple[Any, int, int]] = set()
        self._new: set[tuple[Any, int, int]] = set()
        self._last: dict[int, int] = {}

    def _global(self, frame: FrameType, event: str, _arg: object) -> Any:
        if event != "call" or not frame.f_code.co_filename.startswith(OURS):
            return None
        self._last[id(frame)] = frame.f_code.co_firstlineno
        return self._local

    def _local(self, frame: FrameType, event: str, _arg: object) -> Any:
        if event == "line":
            key = id(frame)
            edge = (frame.f_code, self._last.get(key, 0), frame.f_lineno)
            self._last[key] = frame.f_lineno
            if edge not in self.edges:
                self._new.add(edge)
        elif event == "return":
            self._last.pop(id(frame), None)
        return self._local

    @contextmanager
    def watching(self) -> Iterator[set[tuple[Any, int, int]]]:
        """Trace the body; the set it yields fills with the edges it saw first."""
        self._new = set()
        sys.settrace(self._global)
        try:
            yield self._new
        finally:
            sys.settrace(None)
            self._last.clear()
            self.edges |= self._new


@contextmanager
def _no_coverage() -> Iterator[set[tuple[Any, int, int]]]:
    yield set()


# ---- the loop -------------------------------------------------------------------------


@dataclass
class Session:
    """One target fuzzed for a while: replay the corpus, then mutate until time is up."""

    target: Target
    corpus: list[bytes]
    rng: random.Random
    on_finding: Callable[[Finding], None] = lambda _f: None
    memory_every: int = 64
    result: Result = field(init=False)
    queue: list[bytes] = field(init=False)

    def __post_init__(self) -> None:
        self.result = Result(self.target.name)
        self.queue = []
        guided = sys.gettrace() is None
        self.coverage = Coverage() if guided else None
        self.mutator = Mutator(self.rng, self.target.tokens, self.target.max_len)

    def run(self, seconds: float, max_executions: int | None = None) -> Result:
        deadline = time.monotonic() + seconds
        for data in self.corpus:
            self.one(data, measure=True, keep=True)
        if not self.queue:
            self.queue = list(self.corpus) or [b""]
        while time.monotonic() < deadline:
            if max_executions is not None and self.result.executions >= max_executions:
                break
            self.one(self.mutator.mutate(self.rng.choice(self.queue), self.queue))
        self.result.edges = len(self.coverage.edges) if self.coverage else 0
        self.result.queue = len(self.queue)
        return self.result

    def one(self, data: bytes, *, measure: bool = False, keep: bool = False) -> None:
        measure = measure or self.result.executions % self.memory_every == 0
        watching = self.coverage.watching() if self.coverage and not measure else _no_coverage()
        with watching as new:
            failure = execute(self.target, data, measure=measure)
        self.result.executions += 1
        if failure is not None:
            self._found(data, failure)
        elif new or keep:
            self.queue.append(data)

    def _found(self, data: bytes, failure: BaseException) -> None:
        key = finding_key(failure)
        if key in self.result.findings:
            return
        small = minimise(self.target, data, key)
        finding = Finding(self.target.name, key, small, describe(failure))
        self.result.findings[key] = finding
        self.on_finding(finding)


def minimise(target: Target, data: bytes, key: str, budget: float = 5.0) -> bytes:
    """A shorter input with the same finding key (chunk removal, bounded in time)."""
    deadline = time.monotonic() + budget
    chunk = max(1, len(data) // 2)
    while chunk >= 1 and time.monotonic() < deadline:
        start = 0
        while start < len(data) and time.monotonic() < deadline:
            candidate = data[:start] + data[start + chunk:]
            failure = execute(target, candidate)
            if failure is not None and finding_key(failure) == key:
                data = candidate
            else:
                start += chunk
        chunk //= 2
    return data

