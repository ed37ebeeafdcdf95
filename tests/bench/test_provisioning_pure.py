"""The pure parts of the provisioning benchmark: Ansible's recap, the run order, the
summary and its table."""

from __future__ import annotations

from provision.bench import provisioning as p

RECAP = """
PLAY RECAP *********************************************************************
vps1                       : ok=3    changed=2    unreachable=0    failed=0    skipped=0
vps2                       : ok=21   changed=15   unreachable=0    failed=0    skipped=1    rescued=0    ignored=0
"""


def test_recap_of_the_named_host() -> None:
    assert p.parse_ansible_recap(RECAP) == {"ok": 21, "changed": 15, "unreachable": 0, "failed": 0}
    assert p.parse_ansible_recap(RECAP, "vps1")["changed"] == 2
    assert p.parse_ansible_recap(RECAP, "vps3") is None
    assert p.parse_ansible_recap("fatal: [vps2]: UNREACHABLE!") is None


def test_order_alternates_and_starts_with_ours() -> None:
    assert p.order(3) == [(1, "ours"), (1, "ansible"), (2, "ansible"), (2, "ours"), (3, "ours"), (3, "ansible")]


def runs() -> list[dict]:
    found = []
    for rnd, (ours, theirs) in enumerate(((1.5, 16.0), (2.0, 15.0), (1.7, 17.0)), 1):
        found += [{"round": rnd, "tool": "ours", "phase": "rerun", "ok": True, "seconds": ours, "changed": 0},
                  {"round": rnd, "tool": "ansible", "phase": "rerun", "ok": True, "seconds": theirs, "changed": 0},
                  {"round": rnd, "tool": "ours", "phase": "first", "ok": True, "seconds": 12.0, "changed": 16},
                  {"round": rnd, "tool": "ansible", "phase": "first", "ok": True, "seconds": 30.0, "changed": 15}]
    return found


def test_summary_medians_and_ratio_skip_failed_runs() -> None:
    data = runs() + [{"round": 4, "tool": "ansible", "phase": "rerun", "ok": False, "error": "boom"}]
    s = p.summarize(data)
    assert s["ours_rerun"] == {"n": 3, "median_s": 1.7, "min_s": 1.5, "max_s": 2.0}
    assert s["ansible_rerun"]["median_s"] == 16.0 and s["ansible_rerun"]["n"] == 3
    assert s["rerun_ratio"] == round(1.7 / 16.0, 3)
    assert s["first_ratio"] == 0.4


def test_summary_without_runs_has_no_ratio() -> None:
    s = p.summarize([{"round": 1, "tool": "ours", "phase": "first", "ok": False}])
    assert s["ours_first"] == {"n": 0} and s["rerun_ratio"] is None


def test_table_says_whether_the_target_is_met() -> None:
    data = runs()
    text = p.render(data, p.summarize(data))
    assert "| ours | 12.0 s (12.0-12.0, n=3) | 1.7 s (1.5-2.0, n=3) | 0 |" in text
    assert "target <= 0.33: met" in text
    slow = [dict(r, seconds=r["seconds"] * (10 if r["tool"] == "ours" else 1)) for r in data]
    assert "MISSED" in p.render(slow, p.summarize(slow))
