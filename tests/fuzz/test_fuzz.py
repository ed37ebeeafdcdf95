"""The bounded fuzz session of CI, corpus replay, memory bounds and known bugs.

Rule 1: the whole file runs in about FUZZ_SECONDS (default 40) plus setup; the random seed
        is FUZZ_SEED (default fixed, so CI is reproducible) and is printed on failure.
Rule 2: every target replays its seeds and corpus first; a finding that is not in
        known.py fails with its minimised input and traceback.
"""

from __future__ import annotations

import os
import random
import time

import pytest

from runtime.proto import wire
from runtime.proto.faults import ProtocolViolation
from tests.fuzz import corpus
from tests.fuzz.engine import Hang, Session, Target, execute, finding_key, peak_memory
from tests.fuzz.known import KNOWN, known
from tests.fuzz.mutate import record
from tests.fuzz.registry import TARGETS, budget, ci_seconds
from tests.fuzz.targets_cores import run_client, run_server
from tests.fuzz.targets_data import run_datagram, run_frames

SEED = int(os.environ.get("FUZZ_SEED", "20260601"))
SHARES = budget(ci_seconds(), sorted(TARGETS))


def new_findings(name: str, seconds: float) -> list[str]:
    target = TARGETS[name]
    session = Session(target, target.seeds() + corpus.load(name), random.Random(SEED))
    result = session.run(seconds)
    assert result.executions > len(session.corpus), f"{name}: the fuzzer did not run"
    return [f"{f.key}\ninput {f.data!r}\n{f.report}" for f in result.findings.values()
            if known(name, f.key) is None]


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target_keeps_its_contract_under_fuzz(name: str) -> None:
    found = new_findings(name, SHARES[name])
    assert not found, f"seed {SEED}: " + "\n\n".join(found)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_target_has_a_corpus_folder_with_seeds(name: str) -> None:
    kept = corpus.load(name)
    assert kept, f"tests/fuzz/corpus/{name}/ is empty: run tests/fuzz/run.py or add seeds"


@pytest.mark.parametrize("bug", KNOWN, ids=lambda k: f"{k.target}-{k.where}")
@pytest.mark.xfail(strict=True, reason="known bug in another module, reported (tests/fuzz/known.py)")
def test_known_bugs(bug: object) -> None:
    failure = execute(TARGETS[bug.target], bug.crash)  # type: ignore[attr-defined]
    assert failure is None, finding_key(failure)


def _alias_bomb(place: str) -> bytes:
    """~300 bytes of YAML whose aliases expand to 9**8 strings when walked or repr'd."""
    levels = ["&a0 [x,x,x,x,x,x,x,x,x]"] + [f"&a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 8)]
    return place.replace("BOMB", "[" + ",".join(levels) + "]").replace("LAST", "*a7").encode()


ALIAS_BOMBS = {
    "config": "routes: BOMB\nname: LAST\nnetwork: 10.8.0.0/24\n",
    "bundle": "ca: BOMB\nversion: 1\nkind: selfvpn-bundle\nname: LAST\nissued: x\nexpires: x\nservers: x\ncert: x\n",
    "inventory": "all:\n  hosts:\n    h:\n      vpn_dns: BOMB\n",
    "playbook": "- op: sysctl\n  args: {key: a.b, value: BOMB}\n",
}


@pytest.mark.parametrize("name", sorted(ALIAS_BOMBS))
def test_a_yaml_alias_bomb_is_refused_in_bounded_time(name: str) -> None:
    target = TARGETS[name]
    bounded = Target(name, target.run, target.seeds, max_seconds=1.0)
    failure = execute(bounded, _alias_bomb(ALIAS_BOMBS[name]))
    assert failure is None, finding_key(failure)


# ---- the engine can fail --------------------------------------------------------------


def _planted(data: bytes) -> None:
    if b"BUG" in data:
        raise KeyError("planted")


def _sleepy(data: bytes) -> None:
    if data.startswith(b"zz"):
        time.sleep(5)


def test_the_engine_finds_a_planted_bug_and_minimises_it() -> None:
    target = Target("planted", _planted, lambda: [b"B-U-G"], (b"BU", b"G"))
    result = Session(target, [b"xxB-U-Gxx"], random.Random(1)).run(5.0, max_executions=20000)
    (finding,) = result.findings.values()
    assert finding.key.startswith("KeyError@") and finding.data == b"BUG"


def test_the_engine_cuts_a_hang() -> None:
    target = Target("sleepy", _sleepy, lambda: [], max_seconds=0.2)
    started = time.monotonic()
    assert isinstance(execute(target, b"zzz"), Hang)
    assert time.monotonic() - started < 2


# ---- memory: a length field must not allocate before data arrives ---------------------


def test_a_16_mb_frame_length_is_refused_before_any_body() -> None:
    reader = wire.FrameReader()
    with pytest.raises(ProtocolViolation, match="frame-too-large"):
        reader.feed(bytes([wire.F_DATA, 0xFF, 0xFF, 0xFF]))


@pytest.mark.parametrize("header", [bytes([wire.F_DATA, 0x00, 0xFF, 0xFF]), bytes([wire.F_HELLO, 0x00, 0xFF, 0xFF])])
def test_a_maximal_frame_header_holds_only_what_arrived(header: bytes) -> None:
    assert peak_memory(run_frames, b"\x04" + header + bytes(64)) < 256 << 10


def test_a_64_kb_datagram_costs_no_more_than_its_size() -> None:
    assert peak_memory(run_datagram, record(0, bytes(65000))) < 1 << 20


@pytest.mark.parametrize("run", [run_server, run_client], ids=["server", "client"])
def test_huge_length_fields_in_tls_and_frames_stay_small(run: object) -> None:
    tls_record = b"\x17\x03\x03\xff\xff" + bytes(32)  # a TLS record claiming 64 KB
    frame = bytes([wire.F_DATA, 0xFF, 0xFF, 0xFF])  # a frame claiming 16 MB
    run(b"")  # type: ignore[operator]  # contexts and caches made before measuring
    script = record(1, tls_record) + record(0, frame) + record(0, bytes([wire.F_HELLO, 0, 0xFF, 0xFF]))
    assert peak_memory(run, script) < 4 << 20  # type: ignore[arg-type]
