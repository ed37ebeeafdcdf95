"""Random bytes never make the datagram parser or the control frame parser raise."""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.proto import Limits, messages, wire
from runtime.proto.datachannel import DataChannel
from runtime.proto.faults import ProtocolViolation
from tests.proto.link import ipv4

CHANNEL = DataChannel(0x01020304, "aes-256-gcm", Limits(), Counter())
CHANNEL.install(0, bytes(32), bytes(32), 0.0, active=True)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_datagrams_are_dropped_without_raising(data):
    assert CHANNEL.open(data, 1.0) is None
    assert wire.parse_header(data) is None or len(data) >= wire.MIN_DATAGRAM


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=wire.MIN_DATAGRAM, max_size=100), st.integers(0, 255))
def test_datagrams_with_our_session_id_and_epoch_are_still_refused(data, kind):
    forged = bytes([kind, 0]) + data[2:4] + (0x01020304).to_bytes(4, "big") + data[8:]
    assert CHANNEL.open(forged, 1.0) is None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_random_streams_raise_only_protocol_violations(chunks):
    reader = wire.FrameReader()
    try:
        for chunk in chunks:
            for ftype, body in reader.feed(chunk):
                if ftype not in (wire.F_DATA, wire.F_KEEPALIVE):
                    messages.decode(ftype, body)
    except ProtocolViolation as fault:
        assert fault.reason


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(messages.BY_FRAME)), json_values)
def test_random_json_bodies_raise_only_protocol_violations(ftype, value):
    import json

    try:
        messages.decode(ftype, json.dumps(value).encode())
    except ProtocolViolation as fault:
        assert fault.reason.startswith(("bad-", "unexpected-"))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=100))
def test_random_bytes_through_live_cores_never_raise_nor_answer(net, connect, data):
    end = net.ends[1] if net.ends else connect(net)
    assert net.server.open_datagram(data, ("203.0.113.1", 1), net.now) is None
    assert end.core.open_datagram(data, net.now) is None
    net.server.seal_packet(data, net.now)
    net.server.receive_stream(99, data, net.now)  # no such connection
    assert net.server.take_outputs() == []


def test_messages_round_trip():
    hello = messages.Hello(1, messages.encode_key(bytes(32)), ("aes-256-gcm",), "tcp")
    frame = messages.encode(hello)
    (ftype, body), = wire.FrameReader().feed(frame)
    assert messages.decode(ftype, body) == hello
    assert ipv4("10.0.0.1", "10.0.0.2")[0] == 0x45


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=1, max_size=300))
def test_random_bytes_on_a_new_control_connection_close_it_with_a_reason(net, data):
    from runtime.proto import CloseConnection, HandshakeFailed

    conn = len(net.server._conns) + 100
    net.server.connection_made(conn, net.now)
    net.server.receive_stream(conn, data, net.now)
    out = net.server.take_outputs()
    if out:  # else: a plausible partial ClientHello, still waiting (the handshake timer ends it)
        assert isinstance(out[-2], CloseConnection) and isinstance(out[-1], HandshakeFailed)
        assert out[-1].reason.startswith("tls:")
