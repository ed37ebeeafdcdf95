"""The native twin of segment.split and coalesce.plan (runtime/native/fastseg.c) against the
Python reference, on valid, odd and broken input: the same segments, the same writes (a run's
bytes joined), nothing raised, nothing leaked.  Skipped where the module is not built, except
under VPN_RUNTIME_NATIVE=require (`invoke test`), where its absence fails."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import sysconfig
import tracemalloc
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime import coalesce, fast, segment, vnet
from runtime.proto.checksum import TCP, UDP, ipv4_header_checksum
from runtime.proto.wire import FL_CONTINUES, FL_CSUM_PARTIAL
from tests.dataplane.packets import ACK, DST4, DST6, SRC4, SRC6, payload, tso_frame, with_partial

ROOT = Path(__file__).resolve().parents[2]
NATIVE = segment.NATIVE
needs_native = pytest.mark.skipif(NATIVE is None, reason="runtime._fastseg is not built (or VPN_RUNTIME_NATIVE=0)")
DATA = payload(70000)
SLOW = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def joined(writes: list[list[bytes]]) -> list[bytes]:
    return [b"".join(w) for w in writes]


def agree_split(frame: bytes) -> list:
    """Python's split of `frame` (it must not raise), after checking the native one gives it."""
    expected = segment.py_split(frame)
    if NATIVE is not None:
        assert NATIVE.split(frame) == expected
    return expected


def agree_plan(items: list[tuple[bytes, int]]) -> list[bytes]:
    expected = joined(coalesce.py_plan(items))
    if NATIVE is not None:
        assert joined(NATIVE.plan(items)) == expected
    return expected


# ---- packets of every shape -------------------------------------------------------------


def tcp_packet(version: int, ip_options: bytes, tcp_options: bytes, seq: int, flags: int, data: bytes,
               ident: int = 0x1234, src: bytes | None = None, short: int = 0) -> bytes:
    """A TCP packet with IP options (v4) and a partial checksum, as the kernel hands it over;
    `short` words cut from the end of the fixed IPv4 header make an odd one."""
    doff = (20 + len(tcp_options)) // 4
    tcp = struct.pack("!HHIIBBHHH", 40000, 5201, seq, 777, doff << 4, flags, 512, 0, 0) + tcp_options + data
    if version == 6:
        ip = struct.pack("!IHBB16s16s", 6 << 28, len(tcp) & 0xFFFF, TCP, 64, src or SRC6, DST6)
    else:
        ihl = 5 - short + len(ip_options) // 4
        ip = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, (ihl * 4 + len(tcp)) & 0xFFFF, ident, 0x4000, 64, TCP, 0,
                         src or SRC4, DST4)[:20 - 4 * short] + ip_options
        ip = ip[:10] + struct.pack("!H", ipv4_header_checksum(ip)) + ip[12:]
    return with_partial(ip + tcp, len(ip))


@st.composite
def flows(draw) -> dict:
    version = draw(st.sampled_from([4, 6]))
    words = st.integers(0, 10).map(lambda n: b"\x01" * (4 * n))
    ip_options = draw(words) if version == 4 else b""
    short = draw(st.sampled_from([0, 0, 0, 1, 2])) if version == 4 else 0
    return {"version": version, "ip_options": ip_options, "tcp_options": draw(words), "short": short,
            "ident": draw(st.integers(0, 0xFFFF)), "seq": draw(st.integers(0, 2**32 - 1))}


MSS = st.one_of(st.sampled_from([0, 1, 536, 1368, 1448, 65535]), st.integers(1, 9000))


def edited(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for at, value in edits:
        if out:
            out[at % len(out)] = value
    return bytes(out[:cut] if cut is not None else out)


@st.composite
def tso_frames(draw) -> bytes:
    """A super-packet with a vnet header that mostly fits it, then a few bytes edited."""
    flow, mss = draw(flows()), draw(MSS)
    size = draw(st.integers(0, min(65600, (mss or 30) * 60)))
    packet = tcp_packet(flow["version"], flow["ip_options"], flow["tcp_options"], flow["seq"],
                        draw(st.integers(0, 255)), DATA[:size], flow["ident"], short=flow["short"])
    l4 = head_of(flow)[0]
    if draw(st.booleans()):
        packet = packet[:l4 + 16] + draw(st.binary(min_size=2, max_size=2)) + packet[l4 + 18:]
    gso = vnet.GSO_TCPV4 if flow["version"] == 4 else vnet.GSO_TCPV6
    header = vnet.HEADER.pack(draw(st.sampled_from([vnet.F_NEEDS_CSUM, 0])),
                              draw(st.sampled_from([gso, gso | vnet.GSO_ECN, 5 - gso, 0, 3, 5])), 0, mss,
                              draw(st.one_of(st.just(l4), st.integers(0, 90))),
                              draw(st.sampled_from([16, 6, 0, 200])), 0)
    edits = draw(st.lists(st.tuples(st.integers(0, 160), st.integers(0, 255)), max_size=3))
    return edited(header + packet, edits, draw(st.none() | st.integers(0, 200)))


# ---- split ------------------------------------------------------------------------------


@SLOW
@given(tso_frames())
def test_split_agrees_on_super_packets_valid_or_edited(frame: bytes) -> None:
    agree_split(frame)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_split_agrees_on_any_bytes(frame: bytes) -> None:
    agree_split(frame)


def frame_of(packet: bytes, gso_type: int, mss: int, start: int) -> bytes:
    return vnet.HEADER.pack(vnet.F_NEEDS_CSUM, gso_type, 0, mss, start, 16, 0) + packet


def _doff(packet: bytes, l4: int, doff: int) -> bytes:
    return packet[:l4 + 12] + bytes([doff << 4]) + packet[l4 + 13:]


V4 = tcp_packet(4, b"", b"", 1, ACK, DATA[:3000])
V6 = tcp_packet(6, b"", b"", 1, ACK, DATA[:3000])
UNCUTTABLE = {  # Python raised on these before: they yield nothing now, on both paths
    "short frame": bytes(11),
    "TCP header of 16 bytes": frame_of(_doff(V4, 20, 4), vnet.GSO_TCPV4, 1000, 20),
    "odd csum_start": frame_of(_doff(V4, 21, 5), vnet.GSO_TCPV4, 1000, 21),
    "csum_start inside the fixed IPv4 header": frame_of(_doff(V4, 8, 5), vnet.GSO_TCPV4, 1000, 8),
    "IPv6 shorter than its addresses": frame_of(_doff(b"\x60" + bytes(33), 6, 5), vnet.GSO_TCPV6, 1, 6),
    "IPv4 segment over 65535 bytes": frame_of(tcp_packet(4, b"", b"", 1, ACK, DATA[:65600]), vnet.GSO_TCPV4,
                                              65535, 20),
    "IPv6 payload length below zero": frame_of(_doff(b"\x60" + bytes(59), 6, 5), vnet.GSO_TCPV6, 1, 6),
}


@pytest.mark.parametrize("name", sorted(UNCUTTABLE))
def test_a_super_packet_that_cannot_be_cut_yields_nothing(name: str) -> None:
    assert agree_split(UNCUTTABLE[name]) == []


def _v6_small_l4(payload_size: int) -> bytes:
    return _doff(b"\x60" + bytes(25 + payload_size), 6, 5)  # TCP at 6: a 26-byte head


BOUNDARIES = {  # the edges of what can be cut, each side
    "IPv4 total 65535": frame_of(tcp_packet(4, b"", b"", 1, ACK, DATA[:65495]), vnet.GSO_TCPV4, 65535, 20),
    "IPv4 total 65536": frame_of(tcp_packet(4, b"", b"", 1, ACK, DATA[:65496]), vnet.GSO_TCPV4, 65535, 20),
    "IPv6 payload 65535": frame_of(tcp_packet(6, b"", b"", 1, ACK, DATA[:65515]), vnet.GSO_TCPV6, 65535, 40),
    "IPv6 payload 65536": frame_of(tcp_packet(6, b"", b"", 1, ACK, DATA[:65516]), vnet.GSO_TCPV6, 65535, 40),
    "IPv6 last segment length 0": frame_of(_v6_small_l4(34), vnet.GSO_TCPV6, 20, 6),
    "IPv6 last segment length -1": frame_of(_v6_small_l4(33), vnet.GSO_TCPV6, 20, 6),
}


@pytest.mark.parametrize("name", sorted(BOUNDARIES))
def test_split_agrees_at_the_edges_of_what_can_be_cut(name: str) -> None:
    assert bool(agree_split(BOUNDARIES[name])) == (name[-1] != "6" and not name.endswith("-1"))


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("mss", [1, 7, 1368, 3000, 65535])
def test_split_agrees_on_whole_super_packets(version: int, mss: int) -> None:
    frame, _ = tso_frame(version, 0xFFFFFF00, DATA[:min(64000, mss * 50)], mss)
    assert agree_split(frame)


@given(st.binary(min_size=21, max_size=200), st.integers(-2, 70000), st.integers(-2, 70000))
def test_split_tcp_agrees_or_both_refuse_the_arguments(packet: bytes, mss: int, l4: int) -> None:
    try:
        expected = segment.py_split_tcp(packet, mss, l4)
    except ValueError:
        if NATIVE is not None:
            with pytest.raises(ValueError):
                NATIVE.split_tcp(packet, mss, l4)
        return
    if NATIVE is not None:
        assert NATIVE.split_tcp(packet, mss, l4) == expected


# ---- plan -------------------------------------------------------------------------------


def stream(flow: dict, sizes: list[tuple[int, int]], joins: list[bool]) -> list[tuple[bytes, int]]:
    """The segments of consecutive super-packets of one flow; `joins` flags the first segment
    of each later one FL_CONTINUES (a sender that sealed it right after the one before)."""
    items, seq = [], flow["seq"]
    for (size, mss, flags), join in zip(sizes, joins):
        packet = tcp_packet(flow["version"], flow["ip_options"], flow["tcp_options"], seq, flags, DATA[:size],
                            flow["ident"], short=flow["short"])
        l4 = head_of(flow)[0]
        cut = segment.py_split_tcp(packet, mss, l4)
        if cut and join and items:
            cut[0] = (cut[0][0], cut[0][1] | FL_CONTINUES)
        items += cut
        seq = (seq + size) & 0xFFFFFFFF
    return items


def strangers(flow: dict) -> list[tuple[bytes, int]]:
    """Packets that must not join a run: another source, UDP, complete, short, garbage."""
    zero = bytes(4 if flow["version"] == 4 else 16)
    other = tcp_packet(flow["version"], b"", b"", flow["seq"], ACK, DATA[:100], src=zero)
    udp = struct.pack("!HHHH", 5353, 53, 9, 0) + b"q"
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 29, 1, 0, 64, UDP, 0, SRC4, DST4)
    return [(other, FL_CSUM_PARTIAL | FL_CONTINUES), (with_partial(ip + udp, 20, UDP), FL_CSUM_PARTIAL),
            (other, 0), (b"", FL_CSUM_PARTIAL | FL_CONTINUES), (b"\x45" + bytes(30), FL_CSUM_PARTIAL), (b"", 0),
            (with_partial(ip + udp, 20, UDP)[:27], FL_CSUM_PARTIAL)]


def head_of(flow: dict) -> tuple[int, int]:
    """(TCP offset, header length) of the flow's packets."""
    l4 = 20 - 4 * flow["short"] + len(flow["ip_options"]) if flow["version"] == 4 else 40
    return l4, l4 + 20 + len(flow["tcp_options"])


EDITS = st.tuples(st.sampled_from(["drop", "swap", "flags", "tcp flags", "reroute", "byte", "every", "cut", "empty",
                                   "insert"]),
                  st.integers(0, 10**6), st.integers(0, 255), st.integers(0, 120))


def _edit(items: list, kind: str, i: int, value: int, pos: int, flow: dict) -> None:
    packet, flags = items[i]
    l4, head = head_of(flow)
    if kind == "drop":
        del items[i]
    elif kind == "swap":
        items[i], items[i - 1] = items[i - 1], items[i]
    elif kind == "flags":
        items[i] = (packet, value & 3)
    elif kind in ("tcp flags", "reroute", "byte"):
        at = {"tcp flags": l4 + 13, "reroute": 12 if flow["version"] == 4 else 8}.get(kind, pos)
        items[i] = (edited(packet, [(at, value)], None), flags)
    elif kind == "every":  # the same edit on every packet: runs of one odd shape
        items[:] = [(edited(p, [(pos, value)], None), f) for p, f in items]
    else:
        items[i] = (packet[:head if kind == "empty" else pos], flags)


def perturbed(items: list, edits: list, flow: dict) -> list:
    """Loss, reordering, other flags, edited, emptied and cut packets, strangers in between."""
    items, extra = list(items), strangers(flow)
    for kind, at, value, pos in edits:
        i = at % (len(items) + 1)
        if kind == "insert" or i == len(items):
            items.insert(i, extra[value % len(extra)])
        else:
            _edit(items, kind, i, value, pos, flow)
    return items


@st.composite
def receptions(draw) -> list[tuple[bytes, int]]:
    flow = draw(flows())
    mss = draw(st.sampled_from([1368, 1000, 536, 100]))
    flags = st.sampled_from([ACK, ACK, ACK | 0x08, ACK | 0x01, ACK | 0x80, ACK | 0x02, 0x20 | ACK])
    size = st.builds(lambda k, less: max(1, k * mss - less), st.integers(1, 48), st.sampled_from([0, 0, 1, mss // 3]))
    sizes = draw(st.lists(st.tuples(size, st.sampled_from([mss, mss, mss // 2]), flags), min_size=1, max_size=4))
    joins = draw(st.lists(st.booleans(), min_size=len(sizes), max_size=len(sizes)))
    return perturbed(stream(flow, sizes, joins), draw(st.lists(EDITS, max_size=6)), flow)


@SLOW
@given(receptions())
def test_plan_agrees_on_runs_broken_by_loss_reordering_flags_and_size(items: list) -> None:
    agree_plan(items)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=90), st.integers(0, 3)), max_size=8))
def test_plan_agrees_on_any_packets(items: list) -> None:
    agree_plan(items)


@pytest.mark.parametrize("version", [4, 6])
def test_plan_agrees_on_strangers_inside_a_run(version: int) -> None:
    flow = {"version": version, "ip_options": b"", "tcp_options": b"", "short": 0, "ident": 1, "seq": 0}
    items = stream(flow, [(4 * 1000, 1000, ACK)], [False])
    for stranger in strangers(flow):
        agree_plan(items[:2] + [stranger] + items[2:])


def test_runs_of_consecutive_super_packets_stop_at_64k() -> None:
    flow = {"version": 4, "ip_options": b"", "tcp_options": b"\x01" * 12, "short": 0, "ident": 1, "seq": 2**32 - 5000}
    writes = agree_plan(stream(flow, [(40 * 1368, 1368, ACK)] * 3, [True] * 3))
    assert [len(w) - vnet.SIZE - 52 for w in writes] == [47 * 1368, 47 * 1368, 26 * 1368]  # 47: 64 KiB


def test_a_run_of_exactly_65535_bytes_is_one_write() -> None:
    flow = {"version": 4, "ip_options": b"", "tcp_options": b"", "short": 0, "ident": 1, "seq": 0}
    writes = agree_plan(stream(flow, [(5 * 13099, 13099, ACK), (10, 10, ACK)], [True, True]))
    assert [len(w) - vnet.SIZE for w in writes] == [65535, 50]


def test_a_packet_too_short_for_the_tcp_fields_is_not_taken() -> None:
    first = _doff(tcp_packet(4, b"", b"", 1, ACK, DATA[:30]), 20, 3)  # Python raised on this pair before
    short = (first[:33], FL_CSUM_PARTIAL | FL_CONTINUES)  # and, too short for a layout, dropped
    assert agree_plan([(first, FL_CSUM_PARTIAL), short]) == [vnet.partial(20, 16) + first]


@needs_native
def test_plan_refuses_what_is_not_a_list_of_packet_flag_pairs() -> None:
    for bad in ([(b"x", 0), (b"y",)], [(b"x", "0")], [("x", 1)], [7], 7):
        with pytest.raises(TypeError):
            NATIVE.plan(bad)


def test_plan_takes_any_sequence_of_pairs_as_python_does() -> None:
    frame, _ = tso_frame(6, 1, DATA[:3000], 1000)
    items = segment.py_split(frame)
    assert agree_plan(tuple(list(pair) for pair in items)) == agree_plan(items)
    assert agree_plan([(bytearray(p), f) for p, f in items]) == agree_plan(items)


# ---- the module itself ------------------------------------------------------------------


def test_the_native_module_is_used_when_required() -> None:
    if fast.MODE != "require":
        pytest.skip("VPN_RUNTIME_NATIVE is not 'require'")
    assert NATIVE is not None and segment.split is NATIVE.split and coalesce.plan is NATIVE.plan


def test_vpn_runtime_native_0_runs_the_python_reference() -> None:
    code = "from runtime import coalesce as c, segment as s; print(s.split is s.py_split, c.plan is c.py_plan)"
    env = {**os.environ, "VPN_RUNTIME_NATIVE": "0"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]


@needs_native
def test_many_calls_leak_nothing() -> None:
    frame, _ = tso_frame(4, 0, DATA[:47 * 1368], 1368)
    items = NATIVE.split(frame)
    bad = items + [(b"x", "not flags")]
    def calls() -> None:
        for _ in range(300):
            NATIVE.split(frame), NATIVE.plan(items), NATIVE.split(UNCUTTABLE["IPv6 shorter than its addresses"])
            with pytest.raises(TypeError):
                NATIVE.plan(bad)
    calls()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        calls()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 << 10, f"{grown} bytes still held after 300 rounds"


# ---- under AddressSanitizer and UBSan ---------------------------------------------------

SANITIZED = """
import importlib.util, random, sys
spec = importlib.util.spec_from_file_location("runtime._fastseg", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
sys.modules["runtime._fastseg"] = module
import pytest
from tests.fuzz.engine import Session
from tests.fuzz.targets_native_seg import NATIVE, TARGETS
assert NATIVE is module
failed = pytest.main(["-q", "--capture=sys", "-p", "no:cacheprovider", "-k", "not sanitizer", *sys.argv[2:]])
found = [f for t in TARGETS for f in Session(t, t.seeds(), random.Random(1)).run(4.0).findings.values()]
print(*(f"{f.key} {f.data!r}\\n{f.report}" for f in found), sep="\\n")
sys.exit(failed or len(found))
"""


@cache
def _asan() -> str | None:
    """The AddressSanitizer runtime gcc links against, if there is one."""
    if shutil.which("gcc") is None:
        return None
    lib = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    return lib if os.path.isabs(lib) and os.path.exists(lib) else None


@needs_native
@pytest.mark.skipif(_asan() is None, reason="no gcc with AddressSanitizer here")
def test_differential_tests_and_fuzz_targets_pass_under_sanitizers(tmp_path: Path) -> None:
    """fastseg.c built with -fsanitize=address,undefined, every Python allocation through
    malloc (so ASan sees each object's bounds): the tests above and both fuzz targets."""
    so = tmp_path / "_fastseg.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                    "-fno-omit-frame-pointer", f"-I{sysconfig.get_paths()['include']}",
                    str(ROOT / "runtime/native/fastseg.c"), "-o", str(so)], check=True)
    env = {**os.environ, "LD_PRELOAD": _asan(), "PYTHONMALLOC": "malloc", "ASAN_OPTIONS": "detect_leaks=0",
           "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1", "VPN_RUNTIME_NATIVE": "1", "PYTHONPATH": str(ROOT)}
    tests = [str(ROOT / "tests/dataplane" / f) for f in ("test_native_seg.py", "test_segment.py", "test_coalesce.py")]
    run = subprocess.run([sys.executable, "-c", SANITIZED, str(so), *tests], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
