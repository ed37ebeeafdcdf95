"""The undo log on its own: recorded before the change, unwound newest first, from the file alone."""

from __future__ import annotations

import json
import stat

import pytest

from runtime import undo
from runtime.errors import SystemSetupError
from runtime.netconf import set_sysctl
from runtime.undo import Journal, Step


def step(n: int) -> Step:
    return Step("note", {"n": n}, f"do {n}", f"undo {n}")


def test_a_step_is_on_disk_before_the_change_is_made(tmp_path):
    path = tmp_path / "run" / "state.json"
    journal = Journal(path)
    journal.record(step(1))
    on_disk = json.loads(path.read_text())  # what a crash right now would leave
    assert on_disk == {"version": 1, "steps": [{"kind": "note", "args": {"n": 1},
                                                "says": "do 1", "undo_says": "undo 1"}]}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_new_process_unwinds_newest_first_and_the_file_goes(tmp_path):
    path = tmp_path / "state.json"
    journal = Journal(path)
    for n in (1, 2, 3):
        journal.record(step(n))
    done: list[int] = []
    echoed: list[str] = []

    Journal.load(path, echoed.append).unwind({"note": lambda args: done.append(args["n"])})

    assert done == [3, 2, 1]
    assert echoed == ["[#] undo 3", "[#] undo 2", "[#] undo 1"]
    assert not path.exists()


def test_a_failed_undo_is_kept_the_others_are_undone(tmp_path):
    path = tmp_path / "state.json"
    journal = Journal(path)
    for n in (1, 2, 3):
        journal.record(step(n))

    def undo_note(args):
        if args["n"] == 2:
            raise OSError("device busy")

    with pytest.raises(SystemSetupError, match="undo 2: device busy"):
        journal.unwind({"note": undo_note})
    assert Journal.load(path).steps == [step(2)]


def test_forget_removes_a_change_that_did_not_happen(tmp_path):
    journal = Journal(tmp_path / "state.json")
    journal.record(step(1))
    journal.record(step(2))
    journal.forget(step(2))
    assert Journal.load(tmp_path / "state.json").steps == [step(1)]


@pytest.mark.parametrize("content", ["{not json", '{"version": 99, "steps": []}',
                                     '{"version": 1, "steps": [{"kind": "x"}]}'])
def test_a_damaged_state_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / "state.json"
    path.write_text(content)
    with pytest.raises(SystemSetupError, match="state.json"):
        Journal.load(path)


def test_no_state_file_means_nothing_to_undo(tmp_path):
    undo.restore(tmp_path / "absent.json")
    assert not (tmp_path / "absent.json").exists()


def fake_proc_sys(tmp_path, key: str, value: str):
    path = tmp_path / key
    path.parent.mkdir(parents=True)
    path.write_text(value + "\n")
    return path


def test_sysctl_keeps_its_old_value_and_gets_it_back(tmp_path):
    key = "net/ipv4/conf/all/src_valid_mark"
    path = fake_proc_sys(tmp_path / "proc", key, "0")
    journal = Journal(tmp_path / "state.json", echo=None)

    set_sysctl(journal, key, "1", tmp_path / "proc")
    set_sysctl(journal, key, "1", tmp_path / "proc")  # no change: nothing more to undo

    assert path.read_text() == "1\n" and len(journal.steps) == 1
    assert journal.steps[0].says == "sysctl -q net.ipv4.conf.all.src_valid_mark=1"
    undo.restore(tmp_path / "state.json")
    assert path.read_text() == "0\n"


def test_a_failed_up_is_rolled_back_and_the_error_kept(tmp_path):
    key = "net/ipv4/conf/all/arp_ignore"
    path = fake_proc_sys(tmp_path / "proc", key, "0")
    journal = Journal(tmp_path / "state.json")
    with pytest.raises(RuntimeError, match="half way"):
        with undo.rolled_back_on_failure(journal):
            set_sysctl(journal, key, "2", tmp_path / "proc")
            raise RuntimeError("half way")
    assert path.read_text() == "0\n"
    assert not (tmp_path / "state.json").exists()
