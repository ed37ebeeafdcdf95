"""Key rotation: on time, on volume, on the server's request, without losing a packet."""

from __future__ import annotations

import random

from runtime.proto import KeysRotated, Limits, ServerConfig
from runtime.proto.datachannel import DataChannel
from runtime.proto.wire import DG_DATA, HEADER
from tests.proto.conftest import TINY, make_server
from tests.proto.link import Net, ipv4

OUT = "93.184.216.34"


def epoch_of(datagram: bytes) -> int:
    return datagram[1]


def test_rekey_under_two_way_traffic_with_reordering_loses_nothing(net, connect):
    end = connect(net, limits=TINY)
    rng = random.Random(7)
    net.hold = True
    up = [ipv4(end.address, OUT, i.to_bytes(4, "big")) for i in range(600)]
    down = [ipv4(OUT, end.address, i.to_bytes(4, "big")) for i in range(600)]
    for i in range(600):
        net.client_sends(end, up[i])
        net.server_sends(down[i])
        if i % 9 == 8:  # deliver what is in flight, in a random order (crossing epoch switches)
            batch, net.held = net.held, []
            rng.shuffle(batch)
            for item in batch:
                net.deliver(item)
    for item in net.held:
        net.deliver(item)
    assert sorted(net.server_tun) == sorted(up)
    assert sorted(end.tun) == sorted(down)
    assert len(end.of(KeysRotated)) >= 10
    assert sum(net.server.drops.values()) == 0 and sum(end.core.drops.values()) == 0


def test_rekey_on_time(net, connect):
    end = connect(net, limits=Limits(rekey_seconds=30))
    net.advance(29)
    assert end.of(KeysRotated) == []
    net.advance(2)
    assert [e.epoch for e in end.of(KeysRotated)] == [1]
    net.advance(31)
    assert [e.epoch for e in end.of(KeysRotated)] == [1, 2]
    assert net.client_sends(end, ipv4(end.address, OUT)) is not None
    assert len(net.server_tun) == 1
    assert net.server.stats(net.now)[0].key_epoch == 2


def test_server_asks_for_a_rekey_when_its_counter_nears_the_limit(pki, server_cert, connect):
    net = Net(make_server(pki, server_cert, ServerConfig(limits=TINY)))
    end = connect(net)
    for i in range(TINY.rekey_packets + 5):  # only the server sends: its counter, not the client's
        net.server_sends(ipv4(OUT, end.address, bytes([i % 256])))
    assert [e.epoch for e in end.of(KeysRotated)] == [1]
    assert len(end.tun) == TINY.rekey_packets + 5


def test_server_keeps_sealing_on_the_old_epoch_until_the_client_proves_the_new(net, connect):
    end = connect(net, limits=Limits(rekey_seconds=30))
    net.hold_streams = True
    net.advance(31)  # the client's rekey is queued
    assert net.release_stream() == "c2s"  # the server installs epoch 1 and queues its ack
    assert epoch_of(net.server_sends(ipv4(OUT, end.address, b"a"))) == 0
    assert net.release_stream() == "s2c"  # the client switches and queues its confirm
    assert epoch_of(net.client_sends(end, ipv4(end.address, OUT, b"b"))) == 1
    assert epoch_of(net.server_sends(ipv4(OUT, end.address, b"c"))) == 1  # proved by the datagram
    assert net.release_stream() == "c2s"  # the confirm arrives late: harmless
    assert [p[-1:] for p in end.tun] == [b"a", b"c"] and len(net.server_tun) == 1
    assert end.core.state == "established" and net.server.stats(net.now)[0].key_epoch == 1


def test_counter_exhaustion_refuses_to_seal_and_never_wraps(net, connect):
    end = connect(net, limits=TINY)
    net.hold_streams = True  # the rekey cannot complete
    net.hold = True
    sent = [net.client_sends(end, ipv4(end.address, OUT)) for _ in range(TINY.reject_packets + 10)]
    sealed = [d for d in sent if d is not None]
    counters = [HEADER.unpack_from(d)[5] for d in sealed]
    assert counters == list(range(1, TINY.reject_packets))  # the first keepalive used counter 0
    assert end.core.drops["exhausted"] == 11
    while net.held_streams:
        net.release_stream()
    assert epoch_of(net.client_sends(end, ipv4(end.address, OUT))) == 1


def test_old_epoch_is_accepted_during_grace_then_dropped(pki, server_cert, connect):
    limits = Limits(rekey_seconds=30, old_key_grace=5)
    net = Net(make_server(pki, server_cert, ServerConfig(limits=limits)))
    end = connect(net, limits=limits)
    net.hold = True
    net.client_sends(end, ipv4(end.address, OUT, b"late"))
    net.client_sends(end, ipv4(end.address, OUT, b"later"))
    late, later = net.held.pop(0), net.held.pop(0)
    net.hold = False
    net.advance(31)
    assert [e.epoch for e in end.of(KeysRotated)] == [1]
    net.client_sends(end, ipv4(end.address, OUT, b"new"))  # the server now seals with epoch 1
    net.deliver(late)
    assert [p[20:] for p in net.server_tun] == [b"new", b"late"]
    net.advance(6)
    net.deliver(later)
    assert len(net.server_tun) == 2 and net.server.drops["unknown-epoch"] == 1


def test_pending_epoch_is_used_once_the_peer_authenticates_under_it():
    from collections import Counter

    limits = Limits()
    client, server = DataChannel(7, "aes-256-gcm", limits, Counter()), DataChannel(7, "aes-256-gcm", limits, Counter())
    k0, k1, k2, k3 = (bytes([i]) * 32 for i in range(4))
    client.install(0, k0, k1, 0.0, active=True)
    server.install(0, k1, k0, 0.0, active=True)
    server.install(1, k3, k2, 1.0, active=False)
    assert server.seal(DG_DATA, b"x")[1] == 0
    client.install(1, k2, k3, 1.0, active=True)
    assert server.open(client.seal(DG_DATA, b"y"), 2.0) == (DG_DATA, b"y")
    assert server.seal(DG_DATA, b"z")[1] == 1 and server.pending is None


def test_a_batch_of_segments_stops_at_the_hard_limit_and_starts_one_rekey(net, connect):
    end = connect(net, limits=TINY)
    net.hold_streams = True  # the rekey cannot complete
    segments = [(ipv4(end.address, OUT, bytes([i])), 0) for i in range(TINY.reject_packets + 5)]
    sealed = end.core.seal_segments(segments, net.now)
    assert [HEADER.unpack_from(d)[5] for d in sealed] == list(range(1, TINY.reject_packets))
    assert end.core.drops["exhausted"] == 1
    net.pump()
    assert len([s for s in net.held_streams if s[0] == "c2s"]) == 1  # one rekey for the batch
    opened = net.server.open_datagrams(sealed, end.addr, net.now)
    assert [p[-1] for p, _ in opened] == list(range(TINY.reject_packets - 1))
