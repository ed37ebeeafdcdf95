"""A client and a server core over the in-memory network: handshake and data both ways."""

from __future__ import annotations

from runtime.proto import HandshakeCompleted
from tests.proto.link import ipv4, ipv6


def test_handshake_gives_the_client_its_assignment(net, connect):
    end = connect(net)
    done = end.of(HandshakeCompleted)
    assert len(done) == 1
    assert str(done[0].assignment.address4) == "10.8.0.2/24"
    assert str(done[0].assignment.address6) == "fd00:8::2/64"
    assert done[0].mtu == 1420
    assert [e.name for e in net.server_events if isinstance(e, HandshakeCompleted)] == ["alice"]


def test_data_flows_both_ways(net, connect):
    end = connect(net)
    up = ipv4("10.8.0.2", "93.184.216.34", b"ping")
    assert net.client_sends(end, up) is not None
    assert net.server_tun == [up]
    down = ipv4("93.184.216.34", "10.8.0.2", b"pong")
    assert net.server_sends(down) is not None
    assert end.tun == [down]
    six = ipv6("fd00:8::2", "2001:db8::1")
    net.client_sends(end, six)
    assert net.server_tun[-1] == six
