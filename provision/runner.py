"""The runner: one playbook against many hosts in parallel, each host's steps in order.

Rule 1: hosts run in a thread pool (`forks`, 5 by default as in Ansible); a host that is
unreachable or fails stops there, and the others go on.
Rule 2: a host's steps are rendered (vars, `when`) before its first command, so a
playbook error changes nothing on it.
Rule 3: handlers run once, after the host's last step, in the order they are written,
and only if a step that notifies them changed (and the host did not fail).
Rule 4: a step whose command failed while a disk the deploy writes to is full says so: a
tool may hide the cause (`python3 -m venv` swallows pip's ENOSPC), so the runner looks
(`df`, read-only) and adds the full mount points and "No space left on device".
Rule 5: the run ends with the recap; if any host failed or was unreachable it raises
`PlayFailed` (a `HostFailed`, carrying the recap) for a non-zero exit: exit code 6, or
the hosts' own error's code when every broken host failed the same distinct way (8 when
they are all `Unsupported`, 10 or 11 for a refused SSH host key).  With one broken host its
line says the step and the error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from provision.connection import CommandFailed, Echo, HostUnreachable, Remote, Result
from provision.errors import HostFailed, PlaybookError, ProvisionError
from provision.guard import GUARD_TIMEOUT, LockoutGuard, new_token
from provision.inventory import Host
from provision.journal import Journal, utc_now
from provision.operation import Change, Context, NoChange
from provision.plan import Applier, shown
from provision.playbook import Planned, Playbook
from provision.recap import Console, HostStats, Recap

Connector = Callable[[Host, Echo | None], Remote]
DISKS = ("/", "/etc", "/opt", "/tmp", "/usr", "/var", "/var/lib")  # where a deploy writes
DISK_FREE_CMD = f"df -Pk {' '.join(DISKS)}"
FULL_BELOW_KB = 1024
DISK_HINT = "free space on the host, then run deploy again: it picks up where it stopped"
Failures = dict[str, tuple[str, ProvisionError]]  # host -> (step, error): why it stopped


class PlayFailed(HostFailed):
    """Some hosts failed or were unreachable; `recap` has every host's counters, and
    `failures` the step and error each broken host stopped at."""

    def __init__(self, recap: Recap, failures: Mapping[str, tuple[str, ProvisionError]] | None = None) -> None:
        broken = [name for name, stats in recap.hosts if stats.broken]
        failures = dict(failures or {})
        message = f"{len(broken)} of {len(recap.hosts)} hosts did not finish: {', '.join(broken)}"
        hint = "see the failed and unreachable lines above, and the recap"
        if len(broken) == 1 and broken[0] in failures:
            step, error = failures[broken[0]]
            message, hint = f"{message}: {step}: {error.message}", error.hint or hint
        super().__init__(message, hint)
        codes = {failures[name][1].exit_code if name in failures else HostFailed.exit_code for name in broken}
        if len(codes) == 1 and codes != {ProvisionError.exit_code}:
            self.exit_code = codes.pop()
        self.recap, self.failures = recap, failures


@dataclass(frozen=True)
class RunOptions:
    check: bool = False
    forks: int = 5
    ctx: Context = Context()
    guard_timeout: int = GUARD_TIMEOUT
    clock: Callable[[], str] = utc_now  # journal timestamps
    guard_token: Callable[[], str] = new_token  # names the guard's timer on the host


def run_playbook(
    playbook: Playbook, hosts: Sequence[Host], connect: Connector, console: Console,
    options: RunOptions = RunOptions(),
) -> Recap:
    """Play `playbook` on `hosts`; print lines and the recap; raise `PlayFailed` on failure."""
    failures: Failures = {}

    def play(host: Host) -> HostStats:
        return HostRun(playbook, host, connect, console, options, failures).play()

    return _in_parallel(hosts, play, console, options.forks, failures)


def run_teardown(hosts: Sequence[Host], connect: Connector, console: Console,
                 options: RunOptions = RunOptions()) -> Recap:
    """Replay each host's journal backwards (see `provision.journal`), in parallel."""
    failures: Failures = {}

    def undo(host: Host) -> HostStats:
        return _teardown_host(host, connect, console, options, failures)

    return _in_parallel(hosts, undo, console, options.forks, failures)


def _in_parallel(hosts: Sequence[Host], work: Callable[[Host], HostStats], console: Console, forks: int,
                 failures: Failures) -> Recap:
    with ThreadPoolExecutor(max_workers=max(1, min(forks, len(hosts) or 1))) as pool:
        results = list(pool.map(work, hosts))
    recap = Recap(tuple((host.name, stats) for host, stats in zip(hosts, results)))
    console.recap(recap)
    if any(stats.broken for stats in results):
        raise PlayFailed(recap, failures)
    return recap


def _open(host: Host, connect: Connector, console: Console, failures: Failures) -> Remote | HostStats:
    """A connected Remote, or the stats of a host we could not get into."""
    try:
        return connect(host, console.echo_for(host.name))
    except HostUnreachable as exc:
        console.status("unreachable", host.name, "connect", exc.shown())
        failures[host.name] = ("connect", exc)
        return HostStats(unreachable=1)
    except ProvisionError as exc:
        console.status("failed", host.name, "connect", exc.line())
        failures[host.name] = ("connect", exc)
        return HostStats(failed=1)


def _teardown_host(host: Host, connect: Connector, console: Console, options: RunOptions,
                   failures: Failures) -> HostStats:
    remote = _open(host, connect, console, failures)
    if isinstance(remote, HostStats):
        return remote
    try:
        return _undo_journal(Journal(remote, options.ctx.state, options.clock), console, options.check)
    except ProvisionError as exc:
        unreachable = isinstance(exc, HostUnreachable)
        console.status("unreachable" if unreachable else "failed", host.name, "teardown", exc.line())
        failures[host.name] = ("teardown", exc)
        return HostStats().bump("unreachable" if unreachable else "failed")
    finally:
        remote.close()


def _undo_journal(journal: Journal, console: Console, check: bool) -> HostStats:
    stats, name = HostStats(), journal.remote.name
    for entry in reversed(journal.entries()):
        if not check:
            journal.undo_entry(entry)
        console.status("changed", name, f"undo {entry.record.kind}", entry.step)
        stats = stats.bump("ok", "changed")
    if not check:
        journal.remote.run(journal.forget_command())
    return stats.bump("ok")


def full_disks(result: Result) -> tuple[str, ...]:
    """Mount points that `df -Pk` shows with less than FULL_BELOW_KB free (pure)."""
    full: list[str] = []
    for line in result.stdout.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 6 and fields[3].isdigit() and int(fields[3]) < FULL_BELOW_KB:
            mount = " ".join(fields[5:])
            if mount not in full:
                full.append(mount)
    return tuple(full)


def with_disk_note(remote: Remote, exc: CommandFailed) -> CommandFailed:
    """`exc`, or the same failure naming the full disks and ENOSPC when some are full."""
    if "No space left on device" in exc.message:
        return CommandFailed(exc.message, DISK_HINT)
    try:
        full = full_disks(remote.run(DISK_FREE_CMD, check=False))
    except ProvisionError:
        return exc
    if not full:
        return exc
    verb = "is" if len(full) == 1 else "are"
    return CommandFailed(f"{exc.message}; {', '.join(full)} {verb} full: No space left on device", DISK_HINT)


class HostRun:
    """One host's run: its steps in order, then its notified handlers."""

    def __init__(self, playbook: Playbook, host: Host, connect: Connector, console: Console,
                 options: RunOptions, failures: Failures | None = None) -> None:
        self.playbook, self.host, self.connect = playbook, host, connect
        self.console, self.options = console, options
        self.failures: Failures = {} if failures is None else failures
        self.stats = HostStats()
        self.notified: set[str] = set()

    def play(self) -> HostStats:
        try:
            steps, handlers = self.playbook.for_host({**self.host.vars, "inventory_hostname": self.host.name})
        except PlaybookError as exc:
            self.console.status("failed", self.host.name, "playbook", exc.line())
            self.failures[self.host.name] = ("playbook", exc)
            return self.stats.bump("failed")
        remote = _open(self.host, self.connect, self.console, self.failures)
        if isinstance(remote, HostStats):
            return remote
        try:
            self._play(self._applier(remote), steps, handlers)
        finally:
            remote.close()
        return self.stats

    def _applier(self, remote: Remote) -> Applier:
        def reconnect() -> Remote:
            return self.connect(self.host, self.console.echo_for(self.host.name))

        guard = LockoutGuard(remote, reconnect, self.options.guard_timeout, self.options.guard_token)
        return Applier(remote, Journal(remote, self.options.ctx.state, self.options.clock), self.options.ctx,
                       self.options.check, guard)

    def _play(self, applier: Applier, steps: tuple[Planned, ...], handlers: dict[str, Planned]) -> None:
        for planned in steps:
            if not self._step(applier, planned):
                return
        for name, handler in handlers.items():
            if name in self.notified and not self._step(applier, handler):
                return

    def _step(self, applier: Applier, planned: Planned) -> bool:
        """Run one step; False when the host must stop here."""
        step, name = planned.step, self.host.name
        if planned.operation is None:
            self.console.status("skipping", name, step.name, f"when: {step.when.text}" if step.when else "")
            self.stats = self.stats.bump("skipped")
            return True
        try:
            outcome = applier.execute(planned.operation, step.name)
        except ProvisionError as exc:
            if isinstance(exc, CommandFailed):
                exc = with_disk_note(applier.remote, exc)
            counter = "unreachable" if isinstance(exc, HostUnreachable) else "failed"
            self.console.status("unreachable" if counter == "unreachable" else "failed", name, step.name, exc.line())
            self.failures[name] = (f"step {step.name!r}", exc)
            self.stats = self.stats.bump(counter)
            return False
        self._report(planned, outcome)
        return True

    def _report(self, planned: Planned, outcome: Any) -> None:
        step, name = planned.step, self.host.name
        if isinstance(outcome, NoChange):
            self.console.status("ok", name, step.name, outcome.reason if self.console.verbose else "")
            self.stats = self.stats.bump("ok")
            return
        assert isinstance(outcome, Change)
        self.console.status("changed", name, step.name, outcome.description)
        self.console.show_diff(outcome.diff)
        if self.options.check and self.console.verbose:
            self.console.lines(f"[{name}] [check] would run: {line}" for line in shown(outcome))
        self.stats = self.stats.bump("ok", "changed")
        self.notified.update(step.notify)
