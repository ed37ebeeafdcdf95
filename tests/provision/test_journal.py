"""The journal: appended before each change, replayed backwards, every undo idempotent;
teardown twice and after a half-done deploy leaves files exactly as they were.

The real-file tests run the undo commands in a local `sh` on files under tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.provision.fakes import FakeRemote, ShellRemote
from provision.connection import CommandFailed
from provision.journal import Entry, Journal, JournalError, StateDir, UndoRecord, parse_journal, undo
from provision.operation import Change, Context, NoChange
from provision.ops import DirectoryOp, FileOp
from provision.plan import Applier

STATE = StateDir()
JOURNAL = "/var/lib/selfvpn/journal.jsonl"
READ = f"if [ -f {JOURNAL} ]; then cat {JOURNAL}; fi"
FORGET = (f"rm -f {JOURNAL} && rm -rf /var/lib/selfvpn/backup && rmdir /var/lib/selfvpn 2>/dev/null"
          " || true")


def fixed_clock() -> str:
    return "2026-11-25T12:00:00Z"


def line(record: UndoRecord, step: str = "s") -> str:
    return Entry(record, step, fixed_clock()).line()


def test_record_appends_one_json_line_with_one_command():
    record = undo("sysctl_changed", key="net.ipv4.ip_forward", old="0")
    expected = (
        "umask 077 && mkdir -p /var/lib/selfvpn && printf '%s\\n' "
        "'{\"args\":{\"key\":\"net.ipv4.ip_forward\",\"old\":\"0\"},\"at\":\"2026-11-25T12:00:00Z\","
        "\"kind\":\"sysctl_changed\",\"step\":\"forwarding\",\"v\":1}' >> /var/lib/selfvpn/journal.jsonl"
    )
    remote = FakeRemote(commands={expected: (0, "")})
    Journal(remote, STATE, fixed_clock).record(record, "forwarding")
    assert remote.ran == [expected]


def test_quotes_in_entries_survive_the_shell(tmp_path):
    state = StateDir(str(tmp_path / "state"))
    journal = Journal(ShellRemote(), state, fixed_clock)
    record = undo("file_created", path=str(tmp_path / "it's $HOME `x`"))
    journal.record(record, step='say "hi"')
    assert journal.entries() == (Entry(record, 'say "hi"', fixed_clock()),)
    assert oct(os.stat(state.journal).st_mode & 0o777) == "0o600"
    assert oct(os.stat(state.root).st_mode & 0o777) == "0o700"


def test_torn_last_line_is_dropped_but_a_bad_middle_line_is_an_error():
    good = line(undo("file_created", path="/etc/a"))
    assert len(parse_journal(f"{good}\n{good[:20]}", "j")) == 1
    with pytest.raises(JournalError, match="j: line 2: not a journal entry"):
        parse_journal(f"{good}\n{good[:20]}\n{good}\n", "j")
    with pytest.raises(JournalError, match="format version"):
        parse_journal(good.replace('"v":1', '"v":9') + "\n", "j")


def test_undo_records_are_checked():
    with pytest.raises(ValueError, match="unknown undo kind"):
        UndoRecord("file_deleted", {"path": "/x"})
    with pytest.raises(ValueError, match="takes string fields path, backup"):
        undo("file_replaced", path="/x")


@pytest.mark.parametrize(
    ("record", "commands"),
    [
        (undo("sysctl_changed", key="net.ipv4.ip_local_port_range", old="32768 60999"),
         ("sysctl -w 'net.ipv4.ip_local_port_range=32768 60999'",)),
        (undo("nft_table_created", family="inet", name="selfvpn"),
         ("if nft list table inet selfvpn >/dev/null 2>&1; then nft delete table inet selfvpn; fi",)),
        (undo("package_installed", name="unbound"),
         ("if dpkg-query -W -f='${db:Status-Status}' unbound 2>/dev/null | grep -qxv not-installed; "
          "then DEBIAN_FRONTEND=noninteractive apt-get purge -y unbound; fi",)),
        (undo("unit_started", unit="selfvpn.service"),
         ("if systemctl is-active --quiet selfvpn.service; then systemctl stop selfvpn.service; fi",)),
        (undo("unit_enabled", unit="selfvpn.service"),
         ("if systemctl is-enabled --quiet selfvpn.service 2>/dev/null; then systemctl disable selfvpn.service; fi",)),
        (undo("unit_file_created", path="/etc/systemd/system/selfvpn.service"),
         ("if [ -e /etc/systemd/system/selfvpn.service ]; then rm -f /etc/systemd/system/selfvpn.service"
          " && systemctl daemon-reload; fi",)),
    ],
)
def test_each_undo_is_guarded_by_the_current_state(record, commands):
    assert record.commands() == commands


def test_teardown_replays_backwards_then_forgets():
    first = undo("dir_created", path="/etc/selfvpn")
    second = undo("sysctl_changed", key="net.ipv4.ip_forward", old="0")
    remote = FakeRemote(commands={
        READ: (0, line(first) + "\n" + line(second) + "\n"),
        "sysctl -w net.ipv4.ip_forward=0": (0, ""),
        "if [ -d /etc/selfvpn ]; then rmdir --ignore-fail-on-non-empty /etc/selfvpn; fi": (0, ""),
        FORGET: (0, ""),
    })
    Journal(remote, STATE).teardown()
    assert remote.ran[1:] == ["sysctl -w net.ipv4.ip_forward=0",
                              "if [ -d /etc/selfvpn ]; then rmdir --ignore-fail-on-non-empty /etc/selfvpn; fi",
                              FORGET]


def test_teardown_check_only_reads():
    remote = FakeRemote(commands={READ: (0, line(undo("file_created", path="/etc/x")) + "\n")})
    commands = Journal(remote, STATE).teardown(check=True)
    assert commands == ("rm -f /etc/x /etc/x.selfvpn-new", FORGET)
    assert remote.ran == [READ]


def test_a_failed_undo_keeps_the_journal_for_next_time():
    remote = FakeRemote(commands={
        READ: (0, line(undo("sysctl_changed", key="net.ipv4.ip_forward", old="0")) + "\n"),
        "sysctl -w net.ipv4.ip_forward=0": (255, ""),
    })
    with pytest.raises(JournalError, match="teardown step failed"):
        Journal(remote, STATE).teardown()
    assert FORGET not in remote.ran


def test_no_journal_means_nothing_to_undo():
    remote = FakeRemote(commands={READ: (0, ""), FORGET: (0, "")})
    Journal(remote, STATE).teardown()
    assert remote.ran == [READ, FORGET]


# ---- real files: deploy, teardown, teardown again, half-done deploys --------------------


def snapshot(root: Path) -> dict[str, tuple[int, bytes | None]]:
    found = {}
    for path in sorted(root.rglob("*")):
        data = path.read_bytes() if path.is_file() else None
        found[str(path.relative_to(root))] = (path.stat().st_mode & 0o7777, data)
    return found


@pytest.fixture
def site(tmp_path: Path):
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "a.conf").write_text("original\n")
    (etc / "a.conf").chmod(0o640)
    (etc / "keep.conf").write_text("untouched\n")
    return tmp_path


def site_ops(root: Path) -> list:
    etc = root / "etc"
    return [
        FileOp(str(etc / "a.conf"), "ours\n", "0600"),
        FileOp(str(etc / "b.conf"), "new file\n"),
        DirectoryOp(str(etc / "selfvpn"), "0700"),
        FileOp(str(etc / "selfvpn" / "c.conf"), "deep\n", "0640"),
        FileOp(str(etc / "keep.conf"), "untouched\n", "0600"),  # mode-only change
    ]


def deploy(root: Path, remote: ShellRemote) -> list:
    state = StateDir(str(root / "state"))
    applier = Applier(remote, Journal(remote, state), Context(state))
    return [applier.execute(op, f"step {i}") for i, op in enumerate(site_ops(root))]


def teardown(root: Path, remote: ShellRemote | None = None) -> None:
    Journal(remote or ShellRemote(), StateDir(str(root / "state"))).teardown()


def test_deploy_then_teardown_restores_every_file(site):
    before = snapshot(site)
    outcomes = deploy(site, ShellRemote())
    assert all(isinstance(o, Change) for o in outcomes)
    assert (site / "etc" / "a.conf").read_text() == "ours\n"
    assert all(isinstance(o, NoChange) for o in deploy(site, ShellRemote()))  # second run
    teardown(site)
    assert snapshot(site) == before
    teardown(site)  # a second teardown is a no-op
    assert snapshot(site) == before


def test_two_deploys_with_a_change_between_restore_the_original(site):
    before = snapshot(site)
    deploy(site, ShellRemote())
    (site / "etc" / "a.conf").write_text("edited by hand\n")
    deploy(site, ShellRemote())
    teardown(site)
    assert snapshot(site) == before


@pytest.mark.parametrize("fail_on", ["mv -f", "cp -p", "mkdir -m", "chmod 0600"])
def test_teardown_after_a_half_done_deploy(site, fail_on):
    before = snapshot(site)
    with pytest.raises(CommandFailed, match="injected failure"):
        deploy(site, ShellRemote(fail_on=fail_on))
    teardown(site)
    assert snapshot(site) == before


def test_teardown_interrupted_then_run_again(site):
    before = snapshot(site)
    deploy(site, ShellRemote())
    with pytest.raises(JournalError):
        teardown(site, ShellRemote(fail_on="rmdir --ignore"))  # fails half way through
    teardown(site)
    assert snapshot(site) == before
