"""The native data channel (runtime/native/fastseal.c) against the pure-Python one.

The reference is a DataChannel with native=False: cryptography's AEAD objects and
PythonReplayWindow. Both must seal the same bytes, open the same payloads with the same
stops and drops, and agree with each other's datagrams. With VPN_RUNTIME_NATIVE=require
(`invoke test`) a missing module fails here; otherwise the comparisons skip.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime import fast
from runtime.proto import wire
from runtime.proto.keys import AES_256_GCM, CHACHA20_POLY1305, CIPHERS, NATIVE, make_aead
from runtime.proto.replay import RECEIVE_LIMIT, WINDOW, PythonReplayWindow, ReplayWindow
from tests.fuzz.targets_native_seal import (SESSION, UNKNOWN_EPOCH, Spec, altered, assert_aead_batch_agrees,
                                            assert_open_agrees, assert_seal_agrees, epoch_keys, forge, receiver)

native_only = pytest.mark.skipif(not NATIVE, reason="runtime._fastseal not built (or VPN_RUNTIME_NATIVE=0)")
PYTHON_AEAD = {AES_256_GCM: AESGCM, CHACHA20_POLY1305: ChaCha20Poly1305}
ciphers = st.sampled_from(CIPHERS)
payloads = st.binary(max_size=1500)
near_top = st.integers(2**64 - WINDOW - 16, 2**64 - 1)
counters = st.one_of(st.integers(0, 3 * WINDOW), near_top, st.integers(0, 2**64 - 1))


def test_the_native_module_is_there_when_required():
    if fast.MODE != "require":
        pytest.skip("VPN_RUNTIME_NATIVE is not 'require'")
    assert NATIVE and type(make_aead(AES_256_GCM, bytes(32))).__module__ == "runtime._fastseal"
    assert ReplayWindow is not PythonReplayWindow


# ---- the AEAD object: a drop-in for cryptography's --------------------------------------


@native_only
@settings(max_examples=200, deadline=None)
@given(ciphers, st.binary(min_size=32, max_size=32), st.binary(min_size=12, max_size=12), payloads,
       st.one_of(st.none(), st.binary(max_size=40)))
def test_aead_encrypts_and_decrypts_as_cryptography_does(cipher, key, nonce, data, aad):
    ours, theirs = make_aead(cipher, key), PYTHON_AEAD[cipher](key)
    sealed = theirs.encrypt(nonce, data, aad)
    assert ours.encrypt(nonce, data, aad) == sealed
    assert ours.decrypt(nonce, sealed, aad) == data == theirs.decrypt(nonce, ours.encrypt(nonce, data, aad), aad)
    assert ours.decrypt(nonce=nonce, data=sealed, associated_data=aad) == data


@native_only
@pytest.mark.parametrize("cipher", CIPHERS)
@pytest.mark.parametrize("damage", ["flip-ciphertext", "flip-tag", "other-aad", "other-nonce", "short"])
def test_a_damaged_message_raises_cryptographys_invalid_tag(cipher, damage):
    key, nonce, aad = os.urandom(32), os.urandom(12), b"header"
    sealed = make_aead(cipher, key).encrypt(nonce, b"some payload", aad)
    bad = {"flip-ciphertext": (nonce, bytes([sealed[0] ^ 1]) + sealed[1:], aad),
           "flip-tag": (nonce, sealed[:-1] + bytes([sealed[-1] ^ 0x80]), aad),
           "other-aad": (nonce, sealed, b"headeR"), "other-nonce": (bytes(12), sealed, aad),
           "short": (nonce, sealed[:15], aad)}[damage]
    for aead in (make_aead(cipher, key), PYTHON_AEAD[cipher](key)):
        with pytest.raises(InvalidTag):
            aead.decrypt(*bad)
    assert make_aead(cipher, key).decrypt(nonce, sealed, aad) == b"some payload"  # the context is still good


@native_only
def test_aead_refuses_what_it_cannot_do_with_value_errors():
    with pytest.raises(ValueError, match="unknown cipher"):
        make_aead("aes-128-cbc", bytes(32))
    with pytest.raises(ValueError):
        make_aead(AES_256_GCM, bytes(16))
    with pytest.raises(ValueError):
        make_aead(CHACHA20_POLY1305, bytes(32)).encrypt(bytes(8), b"x", None)
    assert not hasattr(make_aead(AES_256_GCM, bytes(32)), "key")


# ---- seal_batch ---------------------------------------------------------------------------


packet_lists = st.lists(st.tuples(payloads, st.integers(0, wire.FL_INNER)), max_size=12)


@settings(max_examples=150, deadline=None)
@given(ciphers, packet_lists, st.sampled_from([wire.DG_DATA, wire.DG_KEEPALIVE]), st.integers(0, 40),
       st.integers(2, 30))
def test_seal_batch_gives_the_same_datagrams_counter_and_limit(cipher, packets, kind, counter, reject):
    assert_seal_agrees(cipher, packets, kind, min(counter, reject), reject)


@native_only
@settings(max_examples=150, deadline=None)
@given(ciphers, packet_lists, st.integers(0, 255), st.sampled_from([0, wire.FL_TAKES_PARTIAL]), counters)
def test_seal_batch_is_wire_rule_1_at_every_counter_up_to_2_64(cipher, packets, kind, own, counter):
    assert_aead_batch_agrees(cipher, packets, kind, own, counter)


@native_only
@pytest.mark.parametrize("bad", [{"kind": 256}, {"own": -1}, {"session": 2**32}, {"counter": 2**64},
                                 {"counter": -1}, {"flags": 256}, {"kind": 1.0}])
def test_out_of_range_header_fields_raise_struct_error_as_struct_pack_does(bad):
    args = {"kind": 1, "own": 0, "session": SESSION, "counter": 0, "flags": 0, **bad}
    aead = make_aead(AES_256_GCM, bytes(32))
    with pytest.raises(struct.error):
        aead.seal_batch([(b"x", args["flags"])], args["kind"], 1, args["own"], args["session"], args["counter"])
    with pytest.raises(struct.error):
        wire.HEADER.pack(args["kind"], 1, args["flags"] | args["own"], 0, args["session"], args["counter"])
    assert aead.seal_batch([], args["kind"], 1, args["own"], args["session"], args["counter"]) == []


# ---- open_batch ---------------------------------------------------------------------------

specs = st.builds(Spec, st.integers(0, UNKNOWN_EPOCH), st.sampled_from([1, 1, 1, 2, 0, 3, 255]),
                  st.integers(0, 255), counters, st.binary(max_size=80),
                  st.sampled_from([SESSION, SESSION, SESSION, SESSION ^ 1]))
steps = st.one_of(
    st.tuples(st.just("seal"), specs),
    st.tuples(st.just("alter"), st.integers(0, 3), st.binary(max_size=6)),
    st.tuples(st.just("raw"), st.binary(max_size=48)),
    st.tuples(st.just("cut")),
)


def batches(cipher: str, script: list[tuple]) -> list[list[bytes]]:
    """The datagrams of `script` (new specs, altered earlier datagrams, raw bytes), cut into
    batches at each "cut"."""
    made: list[bytes] = []
    out: list[list[bytes]] = [[]]
    for step in script:
        if step[0] == "cut":
            out.append([])
            continue
        datagram = forge(cipher, step[1]) if step[0] == "seal" else (
            altered(made, step[1], step[2]) if step[0] == "alter" else step[1])
        made.append(datagram)
        out[-1].append(datagram)
    return out


@native_only
@settings(max_examples=300, deadline=None)
@given(ciphers, st.lists(steps, max_size=40))
def test_open_batch_agrees_on_random_and_adversarial_batches(cipher, script):
    assert_open_agrees(cipher, batches(cipher, script))


def in_order(epoch: int, counters: range, kind: int = wire.DG_DATA, flags: int = 0) -> list[Spec]:
    return [Spec(epoch, kind, flags, c, b"%d" % c) for c in counters]


WINDOW_EDGES = {
    "fill-then-zero": in_order(1, range(1, WINDOW + 1)) + in_order(1, range(0, 1)) * 2,
    "one-past-the-edge": in_order(1, range(2, WINDOW + 2)) + in_order(1, range(1, -1, -1)),
    "ring-wrap": in_order(1, range(0, 3 * 8192, 61)) + in_order(1, range(8192, 16384, 97)),
    "near-the-limit": in_order(1, range(RECEIVE_LIMIT - 3, RECEIVE_LIMIT + 3)) + in_order(1, range(2**64 - 2, 2**64)),
    "jump-past-the-ring": in_order(1, [5, 2**40 + 100, 2**40 + 5, 5, 2**40 - WINDOW + 100, 2**40 - WINDOW + 99]),
    "pending-then-current": in_order(2, range(3), flags=wire.FL_TAKES_PARTIAL) + in_order(1, range(3)),
    "keepalives": in_order(1, range(4), kind=wire.DG_KEEPALIVE) + in_order(0, range(4), kind=wire.DG_KEEPALIVE),
}


@native_only
@pytest.mark.parametrize("cipher", CIPHERS)
@pytest.mark.parametrize("case", sorted(WINDOW_EDGES))
def test_open_batch_agrees_at_the_window_edges(cipher, case):
    datagrams = [forge(cipher, s) for s in WINDOW_EDGES[case]]
    assert_open_agrees(cipher, [datagrams, datagrams[::-1], datagrams[: len(datagrams) // 2]])


@native_only
@pytest.mark.parametrize("cipher", CIPHERS)
def test_forgeries_before_the_genuine_datagrams_move_no_window(cipher):
    genuine = [forge(cipher, s) for s in in_order(1, range(3)) + in_order(2, range(2)) + in_order(1, [9000])]
    forged = [altered(genuine, 1, bytes([i, 20, 0x55])) for i in range(len(genuine))]
    assert_open_agrees(cipher, [forged, genuine, forged + genuine])
    channel = receiver(cipher, True)
    channel.open_batch(forged, 0, 1.0)
    assert channel.open_batch(genuine, 0, 1.0)[2] == len(genuine)


@native_only
@pytest.mark.parametrize("cipher", CIPHERS)
def test_open_batch_agrees_when_the_pending_epochs_tag_is_the_previous_ones(cipher):
    """Epoch 256 pending while 0 is the previous: activating 256 drops tag 0, so only the
    first datagram under it opens (Rule 4 of datachannel.py, in C as in Python)."""
    datagrams = [forge(cipher, s) for s in in_order(256, range(4)) + in_order(1, range(2))]
    assert_open_agrees(cipher, [datagrams, datagrams], numbers=(0, 1, 256))


# ---- interop ------------------------------------------------------------------------------


@native_only
@pytest.mark.parametrize("cipher", CIPHERS)
@pytest.mark.parametrize("sender_native", [True, False])
def test_each_path_opens_what_the_other_sealed(cipher, sender_native):
    peer, ours = epoch_keys(1)
    sender = receiver(cipher, sender_native)  # seals with its epoch-1 key ("ours")
    opener = receiver(cipher, not sender_native)
    opener.current.open = make_aead(cipher, ours, native=not sender_native)  # the mirror of sender's sealing key
    packets = [(os.urandom(n), n & wire.FL_INNER) for n in (0, 1, 52, 1420, 1500)]
    datagrams = sender.seal_batch(packets) + sender.seal_batch([(b"", 0)], wire.DG_KEEPALIVE)
    out, stop, authentic = opener.open_batch(datagrams, 0, 1.0)
    assert (out, stop, authentic, dict(opener.drops)) == (packets, len(datagrams), len(datagrams), {})
    assert opener.peer_takes_partial  # receivers set FL_TAKES_PARTIAL (takes_partial=True)


@native_only
@pytest.mark.parametrize("cipher", CIPHERS)
def test_tuples_of_packets_and_datagrams_work_as_lists_do(cipher):
    """The Python loops take any sequence; so does C (the data path passes lists)."""
    sealed = []
    for native in (True, False):
        sender = receiver(cipher, native)
        sealed.append(sender.seal_batch(((b"one", 0), (b"two", wire.FL_CONTINUES))))
    assert sealed[0] == sealed[1]
    datagrams = tuple(forge(cipher, s) for s in in_order(1, range(3)) + in_order(2, range(2)))
    assert_open_agrees(cipher, [datagrams, datagrams])  # type: ignore[list-item]


# ---- replay window ------------------------------------------------------------------------

window_ops = st.lists(st.tuples(st.sampled_from(["check", "update", "accept"]),
                                st.one_of(counters, st.integers(0, 300))), max_size=60)


@native_only
@settings(max_examples=300, deadline=None)
@given(st.sampled_from([RECEIVE_LIMIT, 2**64 - 1, 0, 1, 250]), window_ops)
def test_the_c_window_answers_as_the_python_one(limit, ops):
    native, python = ReplayWindow(limit), PythonReplayWindow(limit)
    for op, counter in ops:
        if op == "update" and counter == 2**64 - 1:
            continue
        assert getattr(native, op)(counter) == getattr(python, op)(counter), (op, counter)


@native_only
def test_the_c_window_refuses_counters_outside_u64():
    w = ReplayWindow(RECEIVE_LIMIT)
    assert w.check(2**64) is False and w.accept(2**70) is False
    for bad in (lambda: w.check(-1), lambda: w.update(2**64 - 1), lambda: ReplayWindow(2**64)):
        with pytest.raises(OverflowError):
            bad()


# ---- reference counts: no leak on any path ------------------------------------------------


@native_only
def test_no_call_leaks_a_reference_on_success_or_error():
    payload, other = b"p" * 100, b"q" * 100
    aead, channel = make_aead(AES_256_GCM, epoch_keys(1)[0]), receiver(AES_256_GCM, True)
    good = forge(AES_256_GCM, Spec(1, wire.DG_DATA, 0, 7, b"x"))
    before = sys.getrefcount(payload), sys.getrefcount(other), sys.getrefcount(good)
    for _ in range(2000):
        aead.seal_batch([(payload, 0), (other, 1)], 1, 1, 0, SESSION, 5)
        for bad in ([(payload, 999)], [(payload,)], [(other, 0), (payload, 0)]):
            with pytest.raises((struct.error, ValueError)):
                aead.seal_batch(bad, 1, 1, 0, SESSION, 2**64 - 1)
        channel.open_batch([good, good, other * 2, payload[:20]], 0, 1.0)
        with pytest.raises(InvalidTag):
            aead.decrypt(bytes(12), other, payload)
    del bad  # the last bad batch holds payload and other
    assert (sys.getrefcount(payload), sys.getrefcount(other), sys.getrefcount(good)) == before


# ---- the same tests under AddressSanitizer and UBSan ---------------------------------------

ROOT = Path(__file__).resolve().parents[2]
UNDER_ASAN = """
import importlib.util, random, sys
spec = importlib.util.spec_from_file_location("runtime._fastseal", sys.argv[1])
sys.modules[spec.name] = module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
import pytest
from tests.fuzz.engine import Session
from tests.fuzz.targets_native_seal import TARGETS
here = ["-q", "-p", "no:cacheprovider", "--capture=sys", "-k", "not sanitizer", "tests/proto/test_native_seal.py",
        "tests/dataplane/test_fastpath.py"]
if pytest.main(here):
    sys.exit("differential tests failed under the sanitizers")
for target in TARGETS:
    found = Session(target, target.seeds(), random.Random(7)).run(float(sys.argv[2])).findings
    assert not found, [f.report for f in found.values()]
"""


def sanitized_build(out: Path) -> Path | None:
    """fastseal.c built with -fsanitize=address,undefined into `out`, or None without gcc."""
    so = out / "_fastseal_asan.so"
    build = ["gcc", "-shared", "-fPIC", "-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
             "-fno-sanitize-recover=undefined", f"-I{sysconfig.get_paths()['include']}",
             str(ROOT / "runtime/native/fastseal.c"), "-lcrypto", "-o", str(so)]
    try:
        done = subprocess.run(build, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        return None
    return so if done.returncode == 0 else None


@native_only
def test_the_differential_tests_and_fuzz_targets_pass_under_the_sanitizers(tmp_path):
    so = sanitized_build(tmp_path)
    asan = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    if so is None or not os.path.isabs(asan):
        pytest.skip("no gcc with AddressSanitizer here")
    env = {**os.environ, "LD_PRELOAD": asan, "ASAN_OPTIONS": "detect_leaks=0", "VPN_RUNTIME_NATIVE": "require",
           "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
           "PYTHONMALLOC": "malloc"}  # every bytes object its own allocation, so ASan sees its end
    run = subprocess.run([sys.executable, "-c", UNDER_ASAN, str(so), "4"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
    assert "passed" in run.stdout and "AddressSanitizer" not in run.stderr
