"""The data header's offload flags (PROTOCOL.md, "Data channel"): partial checksums travel
only to a peer that said it takes them; everyone else gets complete packets; the hints are
authenticated and the replay window and rekey see no difference."""

from __future__ import annotations

import struct

import pytest

from runtime.proto.checksum import TCP, address_sum, fold, ipv4_header_checksum, l4_valid
from runtime.proto.wire import FL_CONTINUES, FL_CSUM_PARTIAL, FL_TAKES_PARTIAL, HEADER
from tests.proto.conftest import make_client, make_server
from tests.proto.link import Net


def partial_tcp(src: str, dst: str, data: bytes = b"payload!") -> bytes:
    """An IPv4/TCP packet whose checksum field holds only the pseudo-header sum."""
    tcp = struct.pack("!HHIIBBHHH", 40000, 443, 1, 2, 5 << 4, 0x18, 512, 0, 0) + data
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, TCP, 0,
                     bytes(map(int, src.split("."))), bytes(map(int, dst.split("."))))
    ip = ip[:10] + struct.pack("!H", ipv4_header_checksum(ip)) + ip[12:]
    packet = ip + tcp
    return packet[:36] + struct.pack("!H", fold(address_sum(packet) + TCP + len(tcp))) + packet[38:]


@pytest.fixture
def pair(pki, server_cert, alice):
    def make(client_takes: bool, server_takes: bool):
        net = Net(make_server(pki, server_cert))
        net.server.takes_partial = server_takes
        client = make_client(pki, alice, server_cert.pin)
        client.takes_partial = client_takes
        return net, net.connect(client)
    return make


def flags_of(datagram: bytes) -> int:
    return HEADER.unpack_from(datagram)[2]


def test_both_take_partial_packets_travel_partial_with_their_hints(pair):
    net, end = pair(True, True)
    packet = partial_tcp(end.address, "93.184.216.34")
    datagram = end.core.seal_packet(packet, net.now, FL_CSUM_PARTIAL | FL_CONTINUES)
    assert flags_of(datagram) == FL_CSUM_PARTIAL | FL_CONTINUES | FL_TAKES_PARTIAL
    assert net.server.open_datagram(datagram, end.addr, net.now) == packet
    assert net.server.last_flags == FL_CSUM_PARTIAL | FL_CONTINUES
    back = partial_tcp("93.184.216.34", end.address)
    sealed, addr = net.server.seal_packet(back, net.now, FL_CSUM_PARTIAL)
    assert end.core.open_datagram(sealed, net.now) == back and end.core.last_flags == FL_CSUM_PARTIAL


@pytest.mark.parametrize("client_takes, server_takes", [(True, False), (False, True), (False, False)])
def test_a_peer_that_does_not_take_partial_gets_complete_packets(pair, client_takes, server_takes):
    net, end = pair(client_takes, server_takes)
    up = end.core.seal_packet(partial_tcp(end.address, "93.184.216.34"), net.now, FL_CSUM_PARTIAL)
    got = net.server.open_datagram(up, end.addr, net.now)
    assert l4_valid(got) == (not server_takes) and net.server.last_flags == (FL_CSUM_PARTIAL if server_takes else 0)
    sealed, _ = net.server.seal_packet(partial_tcp("93.184.216.34", end.address), net.now, FL_CSUM_PARTIAL)
    got = end.core.open_datagram(sealed, net.now)
    assert l4_valid(got) == (not client_takes)


def test_a_partial_packet_sent_anyway_is_completed_by_a_receiver_that_does_not_take_them(pair):
    net, end = pair(True, False)
    end.core.data.peer_takes_partial = True  # a peer that ignores what we said
    up = end.core.seal_packet(partial_tcp(end.address, "93.184.216.34"), net.now, FL_CSUM_PARTIAL)
    assert flags_of(up) & FL_CSUM_PARTIAL
    got = net.server.open_datagram(up, end.addr, net.now)
    assert l4_valid(got) and net.server.last_flags == 0


def test_flags_are_authenticated_and_replays_stay_refused(pair):
    net, end = pair(True, True)
    up = end.core.seal_packet(partial_tcp(end.address, "93.184.216.34"), net.now, FL_CSUM_PARTIAL)
    forged = bytearray(up)
    forged[2] ^= FL_CONTINUES
    assert net.server.open_datagram(bytes(forged), end.addr, net.now) is None
    assert net.server.open_datagram(up, end.addr, net.now) is not None
    assert net.server.open_datagram(up, end.addr, net.now) is None
    assert net.server.drops["auth"] == 1 and net.server.drops["replay"] == 1
