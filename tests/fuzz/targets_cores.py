"""Fuzz targets for the whole protocol cores: a server with a live client, and a client
talking to a hostile server, fed scripted stream bytes, frames and datagrams.

An input is a script of records ([op u8][length u16][payload], see `mutate.records`):

    server target                              client target
    0 plaintext from mallory (a valid client   0 plaintext from the hostile server, inside
      certificate) inside real TLS                real TLS (the client's pin accepts it)
    1 raw bytes on a stranger's connection     1 raw bytes on the client's stream
    2 a datagram from a stranger's address     2 a datagram to the client
      (raw, or a real one of alice's with      3 time passes (payload[0] % 30 seconds)
      bytes flipped)
    3 time passes (payload[0] % 30 seconds)
    4 alice sends a packet

Rule 1: nothing escapes a core; every closed connection ends with one CloseConnection and
        one HandshakeFailed/SessionClosed carrying a reason.
Rule 2: silence to strangers: a stranger's datagram gets no output and no datagram ever goes
        to an address other than alice's.
Rule 3: whatever strangers and mallory do, alice's session stays up and her next packet
        reaches the server's TUN.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from runtime.proto import (
    ClientConfig,
    ClientCore,
    CloseConnection,
    HandshakeFailed,
    SendDatagram,
    SendStream,
    ServerConfig,
    ServerCore,
    SessionClosed,
    WriteTun,
    client_context,
    messages,
    server_context,
    wire,
)
from runtime.proto.faults import ProtocolViolation
from runtime.proto.peer import ESTABLISHED
from runtime.proto.tls import TlsChannel
from tests.fuzz.engine import Target
from tests.fuzz.mutate import record, records
from tests.fuzz.targets_data import FRAME_TOKENS, valid_messages
from tests.proto.certs import SERVER_NAME, Pki
from tests.proto.link import Pool, ipv4

ALICE_ADDR = ("198.51.100.7", 40000)
STRANGER = ("203.0.113.66", 5555)
MALLORY, RAW = 2, 3


@dataclass(frozen=True)
class Contexts:
    server: ssl.SSLContext
    alice: ssl.SSLContext
    mallory: ssl.SSLContext
    pin: str


@cache
def contexts() -> Contexts:
    pki = Pki("Fuzz CA")
    server = pki.server()
    return Contexts(server_context(pki.creds(server)), client_context(pki.creds(pki.client("alice"))),
                    client_context(pki.creds(pki.client("mallory"))), server.pin)


def check_outputs(outputs: list[Any]) -> None:
    """Rule 1 on one batch of outputs."""
    for index, out in enumerate(outputs):
        if isinstance(out, (HandshakeFailed, SessionClosed)):
            assert isinstance(out.reason, str) and out.reason, f"closed without a reason: {out}"
        if isinstance(out, CloseConnection):
            after = [o for o in outputs[index + 1 :] if isinstance(o, (HandshakeFailed, SessionClosed))]
            assert after and after[0].conn == out.conn, f"CloseConnection without its event: {outputs}"


def _feed(tls: TlsChannel, data: bytes) -> None:
    try:
        tls.feed(data)
    except ProtocolViolation:
        pass  # the core refused or closed; our end just notes it


# ---- the server target ----------------------------------------------------------------


@dataclass
class ServerRig:
    """One server core, alice's client core over an in-memory link, and two strangers."""

    now: float = 1000.0
    server: ServerCore = field(init=False)
    alice: ClientCore = field(init=False)
    mallory: TlsChannel | None = None
    alice_datagrams: list[bytes] = field(default_factory=list)
    tun: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        ctx = contexts()
        self.server = ServerCore(ServerConfig(), ctx.server, Pool())
        self.alice = ClientCore(ClientConfig(SERVER_NAME, ctx.pin), ctx.alice)
        self.server.connection_made(1, self.now)
        self.alice.connect(self.now)
        self.pump()
        assert self.alice.state == ESTABLISHED, "alice's handshake failed in the rig"

    def pump(self) -> None:
        moved = True
        while moved:
            client_out, server_out = self.alice.take_outputs(), self.server.take_outputs()
            check_outputs(client_out)
            check_outputs(server_out)
            moved = bool(client_out or server_out)
            for out in client_out:
                self._from_alice(out)
            for out in server_out:
                self._from_server(out)

    def _from_alice(self, out: Any) -> None:
        if isinstance(out, SendStream):
            self.server.receive_stream(1, out.data, self.now)
        elif isinstance(out, SendDatagram):
            self.alice_datagrams.append(out.data)
            self._to_tun(self.server.open_datagram(out.data, ALICE_ADDR, self.now))

    def _from_server(self, out: Any) -> None:
        if isinstance(out, SendStream) and out.conn == 1:
            self.alice.receive_stream(out.data, self.now)
        elif isinstance(out, SendStream) and out.conn == MALLORY and self.mallory is not None:
            _feed(self.mallory, out.data)
        elif isinstance(out, SendDatagram):
            assert out.addr == ALICE_ADDR, f"a datagram went to {out.addr}, not alice"
            self.alice.open_datagram(out.data, self.now)
        elif isinstance(out, WriteTun):
            self.tun.append(out.packet)
        elif isinstance(out, CloseConnection) and out.conn == 1:
            self.alice.connection_lost(self.now)

    def _to_tun(self, packet: bytes | None) -> None:
        if packet is not None:
            self.tun.append(packet)

    # -- the script's ops -----------------------------------------------------------------
    def from_mallory(self, payload: bytes) -> None:
        if self.mallory is None:
            self.mallory = TlsChannel(contexts().mallory, server_side=False, server_hostname=SERVER_NAME)
            self.server.connection_made(MALLORY, self.now)
            self.mallory.start()
            self.server.receive_stream(MALLORY, self.mallory.take_output(), self.now)
            self.pump()
            self.server.receive_stream(MALLORY, self.mallory.take_output(), self.now)
            self.pump()
        self.mallory.write(payload)
        self.server.receive_stream(MALLORY, self.mallory.take_output(), self.now)
        self.pump()

    def raw(self, payload: bytes) -> None:
        if RAW not in self.server._conns:  # noqa: SLF001 - first use opens the connection
            self.server.connection_made(RAW, self.now)
        self.server.receive_stream(RAW, payload, self.now)
        self.pump()

    def stranger_datagram(self, payload: bytes) -> None:
        datagram = flipped(payload, self.alice_datagrams)
        assert self.server.open_datagram(datagram, STRANGER, self.now) is None, "a stranger's datagram was opened"
        assert self.server.take_outputs() == [], "the server answered a stranger's datagram"

    def advance(self, payload: bytes) -> None:
        self.now += (payload[0] % 30) if payload else 1
        self.alice.handle_timer(self.now)
        self.server.handle_timer(self.now)
        self.pump()

    def alice_sends(self, payload: bytes) -> bytes:
        packet = ipv4("10.8.0.2", "192.0.2.1", payload[:64])
        datagram = self.alice.seal_packet(packet, self.now)
        if datagram is not None:
            self.alice_datagrams.append(datagram)
            self._to_tun(self.server.open_datagram(datagram, ALICE_ADDR, self.now))
        self.pump()
        return packet


def flipped(payload: bytes, real: list[bytes]) -> bytes:
    """`payload` itself (first byte even), or one of `real` xored with the rest of it."""
    if not payload or not real or payload[0] % 2 == 0:
        return payload[1:]
    base = real[payload[0] % len(real)]
    mask = payload[1:] or b"\x01"
    return bytes(b ^ mask[i % len(mask)] for i, b in enumerate(base)) if any(mask) else base + b"\x00"


def run_server(data: bytes) -> None:
    rig = ServerRig()
    ops = (rig.from_mallory, rig.raw, rig.stranger_datagram, rig.advance, rig.alice_sends)
    for op, payload in records(data)[:64]:
        ops[op % len(ops)](payload)
    assert rig.alice.state == ESTABLISHED, "strangers ended alice's session"
    packet = rig.alice_sends(b"canary")
    assert packet in rig.tun, "alice's packet did not reach the server after the attack"


def server_seeds() -> list[bytes]:
    hello, _welcome, rekey, ack, confirm, request, bye = (messages.encode(m) for m in valid_messages())
    data = wire.encode_frame(wire.F_DATA, ipv4("10.8.0.9", "10.8.0.2"))
    return [
        record(0, hello) + record(0, rekey) + record(0, confirm) + record(0, data) + record(0, bye),
        record(4, b"hi") + record(2, b"\x01\x80") + record(2, b"\x00" + bytes(32)) + record(3, b"\x0b"),
        record(0, ack + request) + record(1, b"\x16\x03\x01\x00\x05hello") + record(3, b"\x1d") * 5,
        record(4, b"x") + record(2, b"\x03\x00\x00\x00\x01") + record(0, hello + hello),
    ]


# ---- the client target ----------------------------------------------------------------


@dataclass
class ClientRig:
    """A client core whose server is a bare TLS end run by the fuzzer (the hostile server)."""

    now: float = 1000.0
    client: ClientCore = field(init=False)
    hostile: TlsChannel = field(init=False)
    closed: bool = False

    def __post_init__(self) -> None:
        ctx = contexts()
        self.client = ClientCore(ClientConfig(SERVER_NAME, ctx.pin), ctx.alice)
        self.hostile = TlsChannel(ctx.server, server_side=True)
        self.client.connect(self.now)
        self.pump()

    def pump(self) -> None:
        for _ in range(8):
            outputs = self.client.take_outputs()
            check_outputs(outputs)
            if self.closed:
                assert not outputs, f"a closed client kept talking: {outputs}"
            self.closed = self.closed or any(isinstance(o, CloseConnection) for o in outputs)
            streams = b"".join(o.data for o in outputs if isinstance(o, SendStream))
            if not streams:
                return
            _feed(self.hostile, streams)
            self.stream(self.hostile.take_output())

    def stream(self, data: bytes) -> None:
        if data:
            self.client.receive_stream(data, self.now)

    # -- the script's ops -----------------------------------------------------------------
    def plaintext(self, payload: bytes) -> None:
        self.hostile.write(payload)
        self.stream(self.hostile.take_output())
        self.pump()

    def raw(self, payload: bytes) -> None:
        self.stream(payload)
        self.pump()

    def datagram(self, payload: bytes) -> None:
        assert self.client.open_datagram(payload, self.now) is None, "the client opened a forged datagram"
        self.pump()

    def advance(self, payload: bytes) -> None:
        self.now += (payload[0] % 30) if payload else 1
        self.client.handle_timer(self.now)
        self.pump()


def run_client(data: bytes) -> None:
    rig = ClientRig()
    ops = (rig.plaintext, rig.raw, rig.datagram, rig.advance)
    for op, payload in records(data)[:64]:
        ops[op % len(ops)](payload)
    rig.client.seal_packet(ipv4("10.8.0.2", "192.0.2.1"), rig.now)
    rig.pump()


def client_seeds() -> list[bytes]:
    _hello, welcome, rekey, ack, confirm, request, bye = (messages.encode(m) for m in valid_messages())
    keepalive = wire.encode_frame(wire.F_KEEPALIVE, b"")
    return [
        record(0, welcome) + record(0, request) + record(0, ack) + record(3, b"\x1d") * 3 + record(0, bye),
        record(0, welcome + keepalive) + record(2, bytes(40)) + record(3, b"\x0a"),
        record(0, rekey + confirm) + record(1, b"\x17\x03\x03\x00\x10" + bytes(16)),
    ]


TARGETS = (
    Target("server", run_server, server_seeds, FRAME_TOKENS, max_len=8192, max_seconds=10.0),
    Target("client", run_client, client_seeds, FRAME_TOKENS, max_len=8192, max_seconds=10.0),
)
