"""Keepalive, dead-peer detection and handshake timeout, by stepping `now`."""

from __future__ import annotations

from runtime.proto import HandshakeFailed, PeerDead, SendDatagram, SessionClosed
from runtime.proto.wire import DG_KEEPALIVE, HEADER
from tests.proto.link import ipv4


def test_idle_client_sends_keepalives_every_keepalive_seconds(net, connect):
    end = connect(net)
    net.hold = True
    net.advance(9.9)
    assert net.held == []
    net.advance(0.2)
    assert [(d, HEADER.unpack_from(data)[0]) for d, data, _ in net.held] == [("c2s", DG_KEEPALIVE), ("s2c", DG_KEEPALIVE)]
    net.hold = False
    net.held.clear()


def test_traffic_postpones_the_keepalive(net, connect):
    end = connect(net)
    net.advance(8)
    net.client_sends(end, ipv4(end.address, "93.184.216.34"))
    net.hold = True
    net.advance(9)
    assert [d for d, _, _ in net.held] == ["s2c"]  # the server was idle, the client was not


def test_keepalives_keep_a_quiet_tunnel_alive(net, connect):
    end = connect(net)
    net.advance(600)
    assert end.of(PeerDead) == [] and end.core.state == "established"
    assert end.core.next_deadline() <= net.now + 10


def test_client_declares_a_silent_server_dead(net, connect):
    end = connect(net)
    net.hold = True  # every datagram is lost from now on
    net.advance(119)
    assert end.of(PeerDead) == []
    net.advance(2)
    dead = end.of(PeerDead)
    assert len(dead) == 1 and dead[0].silent_for >= 120
    assert [e.reason for e in end.of(SessionClosed)] == ["dead-peer"]
    assert not end.connected


def test_server_drops_a_client_silent_for_twice_dead_peer(net, connect):
    end = connect(net)
    end.core.close("suspended", net.now, tell_peer=False)  # vanishes without a word
    end.core.take_outputs()
    net.advance(239)
    assert net.server.stats(net.now) != []
    net.advance(2)
    assert net.server.stats(net.now) == []
    assert [e.reason for e in net.server_events if isinstance(e, SessionClosed)] == ["dead-peer"]


def test_handshake_times_out(net, connect):
    net.hold_streams = True
    end = connect(net)
    net.advance(10.5)
    assert [e.reason for e in end.of(HandshakeFailed)] == ["handshake-timeout"]
    assert [e.reason for e in net.server_events if isinstance(e, HandshakeFailed)] == ["handshake-timeout"]
    assert net.server.next_deadline() is None and end.core.next_deadline() is None


def test_no_deadline_busy_loop_before_the_endpoint_is_known(net, connect):
    net.hold = True
    end = connect(net)
    net.held.clear()
    deadline = net.server.next_deadline()
    assert deadline is not None and deadline > net.now  # the server cannot keepalive yet
    assert not any(isinstance(o, SendDatagram) for o in net.server.take_outputs())


def test_the_server_timer_pass_fires_only_due_sessions_and_names_the_next_deadline(net, connect, bob):
    connect(net)
    net.now += 4
    connect(net, cert=bob, addr=("198.51.100.8", 40000))
    net.now += 6.05  # the server's keepalive to the first client is due, to the second not yet
    server = net.server
    deadline = server.handle_timer(net.now)
    sent = [o for o in server.take_outputs() if type(o) is SendDatagram]
    assert [(o.addr, HEADER.unpack_from(o.data)[0]) for o in sent] == [(("198.51.100.7", 40000), DG_KEEPALIVE)]
    assert deadline == server.next_deadline() and net.now < deadline <= net.now + 4
