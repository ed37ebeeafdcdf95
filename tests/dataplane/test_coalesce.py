"""Joining segments for the TUN (runtime/coalesce.py): a run written back is the very
super-packet the sender's kernel handed over; loss, other flows and unflagged packets
break runs instead of corrupting them.  Each test runs on the Python reference and on the
native twin (skipped where it is not built), which writes a run as one bytes object."""

from __future__ import annotations

import struct

import pytest

from runtime import coalesce, vnet
from runtime.proto.checksum import complete, ipv4_header_checksum, l4_valid
from runtime.proto.wire import FL_CONTINUES, FL_CSUM_PARTIAL
from runtime.segment import py_split as split
from tests.dataplane.packets import ACK, PSH, ipv4, payload, tcp_header, tso_frame, udp_packet

MSS = 1368


@pytest.fixture(params=["python", "native"])
def plan(request):
    if request.param == "native" and coalesce.NATIVE is None:
        pytest.skip("runtime._fastseg is not built (or VPN_RUNTIME_NATIVE=0)")
    return coalesce.py_plan if request.param == "python" else coalesce.NATIVE.plan


def joined(write: list[bytes]) -> tuple[tuple, bytes]:
    whole = b"".join(write)
    return vnet.HEADER.unpack_from(whole), whole[vnet.SIZE:]


@pytest.mark.parametrize("version", [4, 6])
def test_segments_coalesce_back_into_the_original_super_packet(plan, version):
    frame, original = tso_frame(version, 1000, payload(40 * MSS + 7), MSS)
    [write] = plan(split(frame))
    header, packet = joined(write)
    l4 = 20 if version == 4 else 40
    gso_type = vnet.GSO_TCPV4 if version == 4 else vnet.GSO_TCPV6
    assert header == (vnet.F_NEEDS_CSUM, gso_type, l4 + 32, MSS, l4, 16, 0)
    assert packet == original
    assert l4_valid(complete(packet))


def test_a_lost_segment_splits_the_run_at_the_gap(plan):
    frame, _ = tso_frame(4, 0, payload(6 * MSS), MSS)
    segments = split(frame)
    del segments[2]
    writes = plan(segments)
    assert len(writes) == 2
    for write in writes:
        _, packet = joined(write)
        assert struct.unpack_from("!H", packet, 2)[0] == len(packet)
        assert ipv4_header_checksum(packet[:10] + b"\0\0" + packet[12:20]) == struct.unpack_from("!H", packet, 10)[0]
        assert l4_valid(complete(packet))
    assert struct.unpack_from("!I", joined(writes[1])[1], 24)[0] == 3 * MSS


def test_unflagged_or_other_flow_segments_are_not_joined(plan):
    frame, _ = tso_frame(4, 0, payload(3 * MSS), MSS)
    a, b, c = split(frame)
    other = ipv4(tcp_header(MSS, ACK) + payload(MSS))  # same seq, other source address
    other = other[:12] + bytes([10, 99, 0, 3]) + other[16:]
    writes = plan([a, (b[0], FL_CSUM_PARTIAL), (other, FL_CSUM_PARTIAL | FL_CONTINUES), c])
    assert len(writes) == 4


def test_complete_packets_get_a_plain_header_and_partial_udp_its_offsets(plan):
    tcp = ipv4(tcp_header(5, ACK | PSH) + b"done")
    udp = udp_packet(b"q")
    writes = plan([(tcp, 0), (udp, FL_CSUM_PARTIAL)])
    assert writes == [[vnet.PLAIN, tcp], [vnet.partial(20, 6), udp]]


def test_runs_stop_below_64k(plan):
    frame, _ = tso_frame(4, 0, payload(47 * MSS), MSS)
    segments = split(frame)
    writes = plan(segments + [(s, f | FL_CONTINUES) for s, f in split(tso_frame(4, 47 * MSS, payload(MSS), MSS)[0])])
    assert all(len(joined(w)[1]) <= 65535 for w in writes)
    assert sum(len(joined(w)[1]) - 52 for w in writes) == 48 * MSS
