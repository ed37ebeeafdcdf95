"""The control channel: revocation, TCP transport, strict frames, bye, one session per name."""

from __future__ import annotations

from runtime.proto import HandshakeFailed, SessionClosed, WriteTun
from runtime.proto import messages, wire
from tests.proto.conftest import make_server
from tests.proto.link import Net, Pool, ipv4

OUT = "93.184.216.34"


def closed(events):
    return [e.reason for e in events if isinstance(e, SessionClosed)]


def test_revoke_by_name_ends_the_live_session_at_once(net, connect, bob):
    alice_end = connect(net)
    bob_end = connect(net, bob, addr=("198.51.100.8", 40001))
    assert net.server.revoke(net.now, name="alice") == 1
    net.pump()
    assert closed(alice_end.events) == ["revoked"]
    assert not alice_end.connected
    assert net.client_sends(alice_end, ipv4(alice_end.address, OUT)) is None
    assert [s.name for s in net.server.stats(net.now)] == ["bob"]
    assert net.client_sends(bob_end, ipv4(bob_end.address, OUT)) is not None


def test_revoke_by_serial_and_by_new_crl(pki, server_cert, connect, alice, bob):
    net = Net(make_server(pki, server_cert))
    alice_end = connect(net)
    bob_end = connect(net, bob, addr=("198.51.100.8", 40001))
    assert net.server.revoke(net.now, serial=bob.serial) == 1
    from runtime.proto import load_crl
    assert net.server.update_crl(load_crl(pki.crl(alice.serial), pki.ca_pem), net.now) == 1
    net.pump()
    assert closed(alice_end.events) == ["revoked"] and closed(bob_end.events) == ["revoked"]
    again = connect(net, alice, addr=("198.51.100.9", 40002))
    assert [e.reason for e in again.of(HandshakeFailed)] == ["revoked"]


def test_session_end_releases_the_address(pki, server_cert, connect):
    pool = Pool()
    net = Net(make_server(pki, server_cert, policy=pool))
    end = connect(net)
    end.core.close("shutdown", net.now)
    net.pump()
    assert pool.released == ["alice"]
    assert closed(net.server_events) == ["shutdown"]


def test_no_address_in_the_pool_refuses(pki, server_cert, connect):
    net = Net(make_server(pki, server_cert, policy=Pool(refuse=("alice",))))
    end = connect(net)
    assert [e.reason for e in end.of(HandshakeFailed)] == ["no-address"]


def test_a_second_connection_of_the_same_client_replaces_the_first(net, connect):
    old = connect(net)
    new = connect(net, addr=("198.51.100.50", 50000))
    assert closed(old.events) == ["replaced"]
    assert len(net.server.stats(net.now)) == 1
    assert net.client_sends(new, ipv4(new.address, OUT)) is not None and len(net.server_tun) == 1


def test_tcp_transport_carries_data_frames(net, connect):
    end = connect(net, transport="tcp")
    up = ipv4(end.address, OUT, b"over tcp")
    assert end.core.seal_packet(up, net.now) is None  # it left in a SendStream
    net.pump()
    assert net.server_tun == [up]
    down = ipv4(OUT, end.address, b"back over tcp")
    assert net.server.seal_packet(down, net.now) is None
    net.pump()
    assert end.tun == [down]
    net.client_sends(end, ipv4("10.8.0.66", OUT))
    assert net.server.drops["spoofed"] == 1


def test_tcp_transport_keepalives_ride_the_stream(net, connect):
    end = connect(net, transport="tcp")
    net.hold = True
    net.advance(300)
    assert net.held == [] and end.core.state == "established"


def inject(net, end, frame: bytes) -> None:
    """Send raw frame bytes inside the client's TLS connection."""
    end.core.channel._tls.write(frame)
    end.core.flush()
    net.pump()


def test_bad_frames_close_the_session_with_a_reason(net, connect):
    cases = [
        (bytes([0x7F, 0, 0, 0]), "unknown-frame-type"),
        (bytes([wire.F_BYE, 0x01, 0x00, 0x00]), "frame-too-large"),
        (wire.encode_frame(wire.F_REKEY, b"{not json"), "bad-json"),
        (wire.encode_frame(wire.F_REKEY, b'{"epoch": "1", "public_key": "x"}'), "bad-rekey:epoch"),
        (wire.encode_frame(wire.F_REKEY, b'{"epoch": 1}'), "bad-rekey:public_key"),
        (wire.encode_frame(wire.F_REKEY_CONFIRM, b'{"epoch": 1, "extra": 2}'), "bad-rekeyconfirm:unknown-field"),
        (wire.encode_frame(wire.F_REKEY_CONFIRM, b'{"epoch": true}'), "bad-rekeyconfirm:epoch"),
        (messages.encode(messages.RekeyConfirm(5)), "bad-rekey-epoch"),
        (wire.encode_frame(wire.F_DATA, ipv4("10.8.0.2", OUT)), "unexpected-data-frame"),
    ]
    for i, (frame, reason) in enumerate(cases):
        end = connect(net, addr=("198.51.100.7", 41000 + i))
        inject(net, end, frame)
        assert closed(net.server_events)[-1] == reason, reason
        assert not end.connected


def inject_from_server(net, frame: bytes) -> None:
    session = next(iter(net.server._conns.values()))
    session.channel._tls.write(frame)
    session.flush()
    net.pump()


def welcome(public_key: str) -> bytes:
    return messages.encode(messages.Welcome(
        1, public_key, "aes-256-gcm", "10.8.0.2/24", None, "10.8.0.1", None, (), (), 1420, 10, 120, 1, 1, 1))


def test_client_checks_server_messages_strictly(net, connect):
    end = connect(net)
    inject_from_server(net, welcome("AAAA"))
    assert closed(end.events) == ["bad-welcome:public_key"]


def test_client_refuses_a_message_out_of_order(net, connect):
    end = connect(net)
    inject_from_server(net, welcome(messages.encode_key(bytes(range(32)))))
    assert closed(end.events) == ["unexpected-welcome"]
    assert closed(net.server_events) == ["unexpected-welcome"]  # the client's bye said why


def test_core_never_writes_tun_for_control_traffic(net, connect):
    end = connect(net)
    net.advance(100)
    assert not [o for o in end.events + net.server_events if isinstance(o, WriteTun)]


def test_no_common_cipher_refuses(pki, server_cert, connect):
    from runtime.proto import ServerConfig

    net = Net(make_server(pki, server_cert, ServerConfig(ciphers=("aes-256-gcm",))))
    end = connect(net, ciphers=("chacha20-poly1305",))
    assert [e.reason for e in end.of(HandshakeFailed)] == ["no-common-cipher"]


def test_chacha20_poly1305_carries_data(net, connect):
    end = connect(net, ciphers=("chacha20-poly1305",))
    assert end.core.data.cipher == "chacha20-poly1305"
    net.client_sends(end, ipv4(end.address, OUT))
    assert len(net.server_tun) == 1
