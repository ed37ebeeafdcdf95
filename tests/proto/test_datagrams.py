"""Silence to strangers, replay, roaming, inner-source anti-spoofing and client-to-client."""

from __future__ import annotations

import os

from runtime.proto import PeerRoamed, SendDatagram, ServerConfig
from runtime.proto.wire import HEADER_LEN
from tests.proto.conftest import make_server
from tests.proto.link import Net, ipv4

OUT = "93.184.216.34"


def sealed_up(net, end, payload=b"data"):
    """A valid client datagram, captured instead of delivered."""
    net.hold = True
    net.client_sends(end, ipv4(end.address, OUT, payload))
    net.hold = False
    return net.held.pop()[1]


def assert_silent(net, before_tun):
    assert net.server.take_outputs() == []
    assert net.server_tun == before_tun
    assert net.replies_to == []


def test_garbage_is_dropped_silently_and_counted(net, connect):
    end = connect(net)
    good = sealed_up(net, end)
    tun = list(net.server_tun)
    flipped = bytearray(good)
    flipped[-1] ^= 1
    header_flipped = bytearray(good)
    header_flipped[2] ^= 1  # flags are authenticated (AAD)
    other_session = bytearray(good)
    other_session[4:8] = (int.from_bytes(good[4:8], "big") ^ 1).to_bytes(4, "big")
    for data in (b"", good[:HEADER_LEN], good[:31], bytes(flipped), bytes(header_flipped),
                 bytes(other_session), os.urandom(1400)):
        net.server.open_datagram(data, ("203.0.113.9", 666), net.now)
    assert_silent(net, tun)
    drops = net.server.drops
    assert drops["short"] == 3
    assert drops["auth"] == 2
    assert drops["unknown-session"] == 2
    assert net.server.stats(net.now)[0].endpoint == end.addr  # nothing moved the session


def test_replayed_datagram_is_dropped(net, connect):
    end = connect(net)
    good = sealed_up(net, end)
    net.datagram_to_server(good, end.addr)
    assert len(net.server_tun) == 1
    net.datagram_to_server(good, end.addr)
    assert len(net.server_tun) == 1
    assert net.server.drops["replay"] == 1
    assert net.server.take_outputs() == []


def test_reordered_datagrams_are_all_delivered_once(net, connect):
    end = connect(net)
    net.hold = True
    packets = [ipv4(end.address, OUT, bytes([i])) for i in range(20)]
    for p in packets:
        net.client_sends(end, p)
    net.hold = False
    held, net.held = net.held, []
    for item in reversed(held):
        net.deliver(item)
    for item in held:  # all replays now
        net.deliver(item)
    assert sorted(net.server_tun) == sorted(packets)
    assert net.server.drops["replay"] == 20


def test_server_follows_an_authenticated_client_to_a_new_address(net, connect):
    end = connect(net)
    moved = ("192.0.2.55", 50123)
    end.addr = moved
    net.client_sends(end, ipv4(end.address, OUT))
    assert net.server.stats(net.now)[0].endpoint == moved
    assert net.server_sends(ipv4(OUT, end.address, b"back")) is not None
    assert end.tun == [ipv4(OUT, end.address, b"back")]
    assert [e.endpoint for e in net.server_events if isinstance(e, PeerRoamed)][-1] == moved


def test_unauthenticated_datagram_never_moves_the_session(net, connect):
    end = connect(net)
    good = bytearray(sealed_up(net, end))
    good[-1] ^= 1
    net.datagram_to_server(bytes(good), ("192.0.2.99", 4444))
    assert net.server.drops["auth"] == 1
    assert net.server.stats(net.now)[0].endpoint == end.addr
    assert not [e for e in net.server_events if isinstance(e, PeerRoamed) and e.endpoint != end.addr]


def test_replayed_datagram_from_a_new_address_does_not_move_the_session(net, connect):
    end = connect(net)
    good = sealed_up(net, end)
    net.datagram_to_server(good, end.addr)
    net.datagram_to_server(good, ("192.0.2.99", 4444))
    assert net.server.stats(net.now)[0].endpoint == end.addr
    sealed = net.server.seal_packet(ipv4(OUT, end.address), net.now)
    assert sealed is not None and sealed[1] == end.addr


def test_inner_source_must_be_the_clients_own_address(net, connect):
    end = connect(net)
    net.client_sends(end, ipv4("10.8.0.77", OUT))
    net.client_sends(end, b"\x45garbage")
    assert net.server_tun == []
    assert net.server.drops["spoofed"] == 2
    net.client_sends(end, ipv4(end.address, OUT))
    assert len(net.server_tun) == 1


def test_client_to_client_is_off_by_default(net, connect, bob):
    alice_end = connect(net)
    bob_end = connect(net, bob, addr=("198.51.100.8", 40001))
    net.client_sends(alice_end, ipv4(alice_end.address, bob_end.address, b"hi bob"))
    assert bob_end.tun == [] and net.server_tun == []
    assert net.server.drops["client-to-client"] == 1


def test_client_to_client_when_enabled(pki, server_cert, connect, bob):
    net = Net(make_server(pki, server_cert, ServerConfig(client_to_client=True)))
    alice_end = connect(net)
    bob_end = connect(net, bob, addr=("198.51.100.8", 40001))
    packet = ipv4(alice_end.address, bob_end.address, b"hi bob")
    net.client_sends(alice_end, packet)
    assert bob_end.tun == [packet] and net.server_tun == []


def test_server_routes_tun_packets_by_destination(net, connect, bob):
    alice_end = connect(net)
    bob_end = connect(net, bob, addr=("198.51.100.8", 40001))
    to_bob = ipv4(OUT, bob_end.address, b"for bob")
    net.server_sends(to_bob)
    assert bob_end.tun == [to_bob] and alice_end.tun == []
    assert net.server_sends(ipv4(OUT, "10.8.0.200")) is None
    assert net.server.drops["no-route"] == 1


def test_server_cannot_send_before_it_knows_the_endpoint(net, connect):
    net.hold = True  # the client's first keepalive (its endpoint) never arrives
    end = connect(net)
    assert net.server.seal_packet(ipv4(OUT, end.address), net.now) is None
    assert net.server.drops["no-endpoint"] == 1
    assert not any(isinstance(o, SendDatagram) for o in net.server.take_outputs())


def test_client_drops_garbage_silently(net, connect):
    end = connect(net)
    for data in (b"", os.urandom(16), os.urandom(64), os.urandom(1500)):
        assert end.core.open_datagram(data, net.now) is None
    assert end.core.take_outputs() == []
    assert sum(end.core.drops.values()) == 4


def test_a_batch_keeps_order_and_silence_around_junk(net, connect):
    end = connect(net)
    first, second = sealed_up(net, end, b"one"), sealed_up(net, end, b"two")
    tun = list(net.server_tun)
    opened = net.server.open_datagrams([first, os.urandom(60), b"x", second, first], end.addr, net.now)
    assert [p[-3:] for p, _ in opened] == [b"one", b"two"]
    assert net.server.drops["replay"] == 1 and net.server.drops["short"] == 1
    assert net.server.drops["unknown-session"] == 1
    assert_silent(net, tun)
