"""Facts from recorded outputs; operations from data: no-op when the state matches, a
change with its undo and diff when it does not; and the exact commands on a fake host."""

from __future__ import annotations

import base64

import pytest

from tests.provision.fakes import FakeRemote
from provision.connection import Result
from provision.fact import FactError, gather
from provision.journal import StateDir
from provision.operation import Change, Context, NoChange, OperationFailed, Put, Run, combine
from provision.ops import DirectoryOp, FileOp, SysctlOp
from provision.ops.file import FileState, file_fact, parse_file_state
from provision.ops.sysctl import SysctlState, sysctl_fact

CTX = Context(StateDir("/var/lib/selfvpn"))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ---- facts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stdout", "state"),
    [
        ("absent\n", FileState("absent")),
        ("link\n", FileState("link")),
        ("dir 755 root root\n", FileState("dir", 0o755, "root", "root")),
        ("file 640 root adm\n" + b64(b"a\nb"), FileState("file", 0o640, "root", "adm", b"a\nb")),
        ("file 600 root root\n", FileState("file", 0o600, "root", "root", b"")),
    ],
)
def test_file_fact_parses_recorded_outputs(stdout, state):
    assert parse_file_state(Result(0, stdout)) == state


@pytest.mark.parametrize("stdout", ["", "file rw root root\n", "file 644 root\n", "file 644 root root\n%%%"])
def test_file_fact_rejects_what_it_does_not_understand(stdout):
    with pytest.raises(ValueError):
        parse_file_state(Result(0, stdout))


def test_gather_names_host_and_fact_on_bad_output():
    fact = sysctl_fact("net.ipv4.ip_fward")
    remote = FakeRemote(commands={fact.command: (1, "")})
    with pytest.raises(FactError, match=r"vps1: fact sysctl net.ipv4.ip_fward: exit 1"):
        gather(remote, fact)


def test_sysctl_fact_collapses_whitespace():
    fact = sysctl_fact("net.ipv4.ip_local_port_range")
    assert fact.command == "cat /proc/sys/net/ipv4/ip_local_port_range"
    assert fact.parse(Result(0, "32768\t60999\n")) == "32768 60999"


# ---- file -------------------------------------------------------------------------------

PATH = "/etc/selfvpn/server.conf"
SAME = FileState("file", 0o640, "root", "root", b"port 443\n")


def test_file_matching_state_is_no_change():
    op = FileOp(PATH, "port 443\n", "0640")
    assert isinstance(op.decide(SAME, CTX), NoChange)


def test_file_absent_is_created_atomically_with_undo_and_diff():
    change = FileOp(PATH, "port 443\n", "0640").decide(FileState("absent"), CTX)
    assert isinstance(change, Change)
    assert change.actions == (
        Put(PATH + ".selfvpn-new", b"port 443\n", 0o640),
        Run(f"mv -f {PATH}.selfvpn-new {PATH}"),
    )
    assert [(u.kind, dict(u.args)) for u in change.undo] == [("file_created", {"path": PATH})]
    assert "+port 443\n" in change.diff


def test_file_with_other_content_is_backed_up_then_replaced():
    change = FileOp(PATH, "port 8443\n", "0640").decide(SAME, CTX)
    backup = StateDir().backup_for(PATH, b"port 443\n")
    assert backup.startswith("/var/lib/selfvpn/backup/etc/selfvpn/server.conf.")
    assert change.actions[0] == Run(f"umask 077 && mkdir -p /var/lib/selfvpn/backup/etc/selfvpn && cp -p {PATH} {backup}")
    assert change.actions[2] == Run(f"chown root:root {PATH}.selfvpn-new")  # keeps the owner
    assert dict(change.undo[0].args) == {"path": PATH, "backup": backup}
    assert "-port 443\n+port 8443\n" in change.diff


def test_file_only_mode_differs_is_chmod_with_old_mode_as_undo():
    change = FileOp(PATH, "port 443\n", "0600").decide(SAME, CTX)
    assert change.actions == (Run(f"chmod 0600 {PATH}"),)
    assert dict(change.undo[0].args) == {"path": PATH, "mode": "0640", "owner": "root", "group": "root"}
    assert change.diff == f"{PATH}: mode 0640 -> 0600\n"


def test_secret_file_diff_hides_content():
    change = FileOp(PATH, "key=abc\n", secret=True).decide(FileState("absent"), CTX)
    assert "abc" not in change.diff and "hidden" in change.diff


def test_file_over_a_directory_fails_clearly():
    with pytest.raises(OperationFailed, match="is a dir, not a regular file"):
        FileOp(PATH, "x").decide(FileState("dir", 0o755, "root", "root"), CTX)


@pytest.mark.parametrize(
    "op", [FileOp("etc/x", "a"), FileOp("/etc/../x", "a"), FileOp("/etc/x", "a", mode="rw"),
           DirectoryOp("/srv/", "0755"), SysctlOp("net ipv4", 1), SysctlOp("net.ipv4.ip_forward", "")],
)
def test_bad_arguments_are_refused(op):
    with pytest.raises(ValueError):
        op.validate()


# ---- directory --------------------------------------------------------------------------


def test_directory_absent_is_made_with_mode_and_undo():
    change = DirectoryOp("/etc/selfvpn", "0700").decide(FileState("absent"), CTX)
    assert change.actions == (Run("mkdir -m 0700 /etc/selfvpn"),)
    assert change.undo[0].kind == "dir_created"


def test_directory_present_is_no_change_and_a_file_is_an_error():
    assert isinstance(DirectoryOp("/etc/selfvpn", "0755").decide(FileState("dir", 0o755, "root", "root"), CTX), NoChange)
    with pytest.raises(OperationFailed):
        DirectoryOp("/etc/selfvpn").decide(FileState("file", 0o644, "root", "root"), CTX)


# ---- sysctl -----------------------------------------------------------------------------

KEY = "net.ipv4.ip_forward"
DROPIN = "/etc/sysctl.d/60-selfvpn-net.ipv4.ip_forward.conf"
DROPIN_STATE = FileState("file", 0o644, "root", "root", b"net.ipv4.ip_forward = 1\n")


def test_sysctl_matching_live_value_and_dropin_is_no_change():
    assert isinstance(SysctlOp(KEY, 1).decide(SysctlState("1", DROPIN_STATE), CTX), NoChange)


def test_sysctl_change_journals_the_old_value():
    change = SysctlOp(KEY, 1).decide(SysctlState("0", DROPIN_STATE), CTX)
    assert change.actions == (Run("sysctl -w net.ipv4.ip_forward=1"),)
    assert [(u.kind, dict(u.args)) for u in change.undo] == [("sysctl_changed", {"key": KEY, "old": "0"})]
    assert "-0\n+1\n" in change.diff


def test_sysctl_without_persist_ignores_the_dropin():
    assert isinstance(SysctlOp(KEY, "1", persist=False).decide(SysctlState("1", None), CTX), NoChange)


def test_sysctl_plans_on_a_fake_host_with_only_read_commands():
    remote = FakeRemote(commands={
        sysctl_fact(KEY).command: (0, "0\n"),
        file_fact(DROPIN).command: (0, "absent\n"),
    })
    change = SysctlOp(KEY, 1).plan(remote, CTX)
    assert change.description == f"{KEY}: 0 -> 1; create {DROPIN}"
    assert [u.kind for u in change.undo] == ["sysctl_changed", "file_created"]


def test_combine_of_no_changes_is_no_change():
    assert combine(NoChange("a"), NoChange("b")) == NoChange("a; b")
