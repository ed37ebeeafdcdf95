"""The C Path (runtime/native/fastpath.c, glue runtime/fastpath.py) against the loops' Python
handlers, which stay the reference: on real loopback sockets, with an AF_UNIX socketpair
standing in for the TUN (one frame per read and per writev, a vnet header on each).

Rule 1: the differential tests build two worlds that are the same down to the keys: sessions
        through the real handshake (tests/proto/link.py) with X25519 keys and session ids from
        seeded generators; the reference world runs ServerDaemon.on_udp/on_tun (Client.on_udp/
        on_tun), the other a Path wired as the daemons wire it (tests/fuzz/targets_native_path.py
        holds the harness and says what must agree after each wakeup).
Rule 2: both worlds' client cores seal what the test sends and must seal the same bytes, and
        open what the server sent them: the worlds stay one conversation.
Rule 3: the Path's unit tests use hand-made sessions and a Path with recording callables.
Rule 4: a wakeup that mixes the Path's datagrams with the core's is what the reference does:
        the core gets the first datagram off the happy path and all after it, in order (cases
        that once differed, `MIXED`, stay as tests).
Skipped where the native modules are not built, except under VPN_RUNTIME_NATIVE=require.
"""

from __future__ import annotations

import errno
import ipaddress
import random
import socket
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from runtime import fast, fastpath, gso, segment, vnet
from runtime.iobase import Receiver
from runtime.proto import ClientConfig, ClientCore, Limits, ServerConfig, ServerCore, client_context, server_context
from runtime.proto import keys as keys_module
from runtime.proto.keys import make_aead
from runtime.proto import server as server_module
from runtime.proto.peer import CLOSED, ESTABLISHED
from runtime.proto.replay import RECEIVE_LIMIT, ReplayWindow
from runtime.proto.wire import DG_DATA, DG_KEEPALIVE, FL_CONTINUES, FL_CSUM_PARTIAL, FL_TAKES_PARTIAL, HEADER
from tests.fuzz.targets_native_path import (
    OUTSIDE4, OUTSIDE6, SERVER4, SERVER6, ClientWorld, Knobs, ServerKit, ServerWorld, Step, assert_same,
    body, drain, hand_server, ip_packet, keys, plain_frame, seal_as, send_burst, tcp_packet,
    tso_frame, udp_partial_frame, units_of,
)
from tests.fuzz import corpus
from tests.fuzz.engine import Session
from tests.fuzz.registry import TARGETS
from tests.proto.certs import SERVER_NAME, Pki
from tests.proto.link import Net, Pool

if fast.MODE != "require":
    pytestmark = pytest.mark.skipif(not fastpath.ENABLED, reason="runtime._fastseal/_fastseg not built")

MSS = 1300
UNKNOWN4 = bytes([10, 8, 0, 99])


# ---- two worlds, one conversation (Rule 1) ------------------------------------------------


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki("Path CA")


@pytest.fixture(scope="module")
def certs(pki: Pki) -> dict[str, Any]:
    """Credentials by name: "server", "c0".."c3"; and the server's pin."""
    server = pki.server()
    made = {"server": pki.creds(server), **{f"c{i}": pki.creds(pki.client(f"client{i}")) for i in range(4)}}
    return {**made, "pin": server.pin}


@pytest.fixture
def seeded(monkeypatch: pytest.MonkeyPatch):
    """X25519 keys (Ephemeral) and session ids (ServerCore.admit) from seeded generators, one
    pair per world: `reset(seed)` starts them all again, `select(i)` draws from world i's from
    then on (Pair does it when it hands out a world), so that the worlds stay the same."""
    state: dict[str, Any] = {"seed": 0, "current": 0, "rngs": {}}

    def rngs() -> tuple[random.Random, random.Random]:
        made = state["rngs"]
        if state["current"] not in made:
            made[state["current"]] = (random.Random(state["seed"]), random.Random(state["seed"] + 1))
        return made[state["current"]]

    def ephemeral(self: keys_module.Ephemeral) -> None:
        self._private = X25519PrivateKey.from_private_bytes(rngs()[0].randbytes(32))
        self.public = self._private.public_key().public_bytes(serialization.Encoding.Raw,
                                                              serialization.PublicFormat.Raw)

    def reset(seed: int) -> None:
        state["seed"], state["current"], state["rngs"] = seed, 0, {}

    def select(i: int) -> None:
        state["current"] = i

    monkeypatch.setattr(keys_module.Ephemeral, "__init__", ephemeral)
    monkeypatch.setattr(server_module.secrets, "randbits", lambda k: rngs()[1].getrandbits(k))
    reset.select = select  # type: ignore[attr-defined]
    return reset


@dataclass
class Spec:
    """One client of a server world."""

    ciphers: tuple[str, ...] = ("aes-256-gcm", "chacha20-poly1305")
    takes_partial: bool = True
    endpoint: bool = True  # its handshake keepalive reaches the server


def addr4(i: int) -> bytes:
    return bytes([10, 8, 0, 2 + i])  # link.Pool: by order of arrival


def addr6(i: int) -> bytes:
    return ipaddress.IPv6Address(f"fd00:8::{2 + i}").packed


class Pair:
    """The reference world and the Path's (or the reference alone without native modules);
    iterating hands out each world with its own generators selected (see `seeded`)."""

    def __init__(self, worlds: list[Any], seeded: Any) -> None:
        self.worlds, self.seeded = worlds, seeded

    def __iter__(self) -> Iterator[Any]:
        for i, world in enumerate(self.worlds):
            self.seeded.select(i)
            yield world

    @property
    def ref(self) -> Any:
        return self.worlds[0]

    def check(self, steps: list[Step], where: str) -> list[Step]:
        assert_same(steps, where)
        return steps


def natives() -> tuple[bool, ...]:
    return (False, True) if fastpath.ENABLED else (False,)


def server_pair(seeded, certs, config: ServerConfig, specs: list[Spec], family: int = socket.AF_INET) -> Pair:
    """Server worlds (Rule 1): the reference's and the Path's."""
    worlds, t0 = [], time.monotonic() - 5.0
    seeded(7)
    for i, native in enumerate(natives()):
        seeded.select(i)
        core = ServerCore(config, server_context(certs["server"]), Pool())
        world = ServerWorld(core, native, family, clients=len(specs))
        net = world.net = Net(core)
        net.now = t0
        for n, spec in enumerate(specs):
            client = ClientCore(ClientConfig(SERVER_NAME, certs["pin"], ciphers=spec.ciphers,
                                             limits=config.limits), client_context(certs[f"c{n}"]))
            client.takes_partial = spec.takes_partial
            net.hold = not spec.endpoint
            net.connect(client, world.address(n))
            net.hold, net.held = False, []
            assert client.state == ESTABLISHED
        world.attach()
        world.streams = []  # every stream write of the loop, for the client cores
        worlds.append(world)
    assert len({tuple(s.session_id for s in w.peers()) for w in worlds}) == 1, "the worlds are not the same"
    return Pair(worlds, seeded)


def client_of(world: ServerWorld, i: int) -> ClientCore:
    return world.net.ends[i + 1].core


def seal(pair: Pair, i: int, packets: list[tuple[bytes, int]]) -> list[bytes]:
    """Client i seals `packets` in every world (Rule 2): the same datagrams."""
    made = [client_of(w, i).seal_segments(packets, w.net.now) for w in pair]
    assert all(m == made[0] for m in made), "the worlds' clients sealed different datagrams"
    return made[0]


def keepalive(pair: Pair, i: int) -> bytes:
    made = [client_of(w, i).data.seal(DG_KEEPALIVE, b"") for w in pair]
    assert all(m == made[0] for m in made)
    return made[0]


def tso(src: bytes, dst: bytes, n: int, seq: int = 1000, size: int = MSS) -> bytes:
    return tso_frame(src, dst, seq, body(n * size - 17, seq & 0xFF), size)


def segments_of(frame: bytes) -> list[tuple[bytes, int]]:
    return segment.split(frame)


def wakeup(pair: Pair, side: str, inputs: list, where: str) -> list[Step]:
    """Each world gets `inputs` on its UDP socket or TUN and wakes once on that side."""
    steps = []
    for w in pair:
        getattr(w, f"send_{side}")(inputs)
        steps.append(getattr(w, f"wake_{side}")())
        w.streams += w.sink
    return pair.check(steps, where)


def udp(pair: Pair, sends: list[tuple[str, list[bytes]]], where: str) -> list[Step]:
    return wakeup(pair, "udp", sends, where)


def tun(pair: Pair, frames: list[bytes], where: str) -> list[Step]:
    return wakeup(pair, "tun", frames, where)


def received(pair: Pair, steps: list[Step]) -> dict[int, list[tuple[bytes, int]]]:
    """Each world's clients open what their sockets got (Rule 2); client i -> packets."""
    opened = []
    for w, step in zip(pair, steps):
        got = {}
        for label, datagrams in sorted(step.datagrams.items()):
            i = int(label[1:])
            got.setdefault(i, []).extend(client_of(w, i).open_datagrams(datagrams, w.net.now))
        opened.append(got)
    assert all(o == opened[0] for o in opened)
    return opened[0]


def deliver_streams(pair: Pair) -> None:
    """What the loops wrote on the control connections reaches the clients."""
    for w in pair:
        for conn, data in w.streams:
            w.net.ends[conn].core.receive_stream(data, w.net.now)
        w.streams = []


def partial_bits(step: Step, label: str) -> list[int]:
    """The FL_CSUM_PARTIAL bit of each datagram `label` got."""
    return [d[2] & FL_CSUM_PARTIAL for d in step.datagrams.get(label, [])]


def tun_packets(step: Step) -> list[bytes]:
    return [p for frame in step.tun for p, _ in segment.split(frame)]


# ---- 1. the server ------------------------------------------------------------------------

SPECS = [Spec(), Spec(ciphers=("chacha20-poly1305",)), Spec(takes_partial=False), Spec(endpoint=False)]


@pytest.mark.parametrize("c2c", [False, True], ids=["c2c-off", "c2c-on"])
@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["udp4", "udp6"])
def test_the_server_path_does_what_the_python_handlers_do(seeded, certs, c2c, family):
    pair = server_pair(seeded, certs, ServerConfig(client_to_client=c2c), SPECS, family)

    # valid DATA (v4, v6, TCP segments of a super-packet as a GRO burst), a keepalive, and junk
    # that only the core can judge: all in one wakeup, the junk dropped and counted the same
    first = seal(pair, 0, [(ip_packet(addr4(0), OUTSIDE4, b"one"), 0)])[0]
    six = seal(pair, 1, [(ip_packet(addr6(1), OUTSIDE6, b"six"), 0)])[0]
    burst = seal(pair, 1, segments_of(tso(addr4(1), OUTSIDE4, 5)))
    down = seal(pair, 2, [(ip_packet(addr4(2), OUTSIDE4, b"two"), 0)])
    alive = keepalive(pair, 0)
    spare = seal(pair, 0, [(ip_packet(addr4(0), OUTSIDE4, b"never sent whole"), 0)])[0]
    junk = [first,  # a replay of the first
            first[:4] + struct.pack("!I", 0x0BADBAD0) + first[8:],  # a session nobody holds
            first[:1] + b"\x07" + first[2:],  # an epoch the session does not hold
            b"\x03" + first[1:],  # another type
            first[:20], spare[:40],  # short, and cut (forged)
            spare[:-1] + bytes([spare[-1] ^ 1]), b""]  # a forged tag, an empty datagram
    steps = udp(pair, [("c0", [first]), ("c1", [six]), ("c1", burst), ("c2", down), ("c0", [alive]),
                       ("c3", junk)], "valid and junk")
    ref = steps[0]
    assert ref.drops == {"replay": 1, "unknown-session": 1, "unknown-epoch": 1, "bad-type": 1, "short": 2,
                         "auth": 2}, ref.drops
    assert [p for p, _ in segments_of(tso(addr4(1), OUTSIDE4, 5))] == tun_packets(ref)[2:7]
    assert len(ref.tun) == 4  # one, six, the burst coalesced again, two
    if len(steps) > 1:
        assert steps[1].opened and steps[1].slow == ["udp"] * 8, steps[1].slow  # the junk, one call per read
        assert [who for who, _ in steps[1].plans] == ["path"]

    # a keepalive alone: life from the peer, nothing for the TUN
    steps = udp(pair, [("c1", [keepalive(pair, 1)])], "a keepalive")
    assert steps[0].sessions[1][-1] == (True, False) and steps[0].tun == [] and steps[0].sessions[1][4][1] == 6
    if len(steps) > 1:
        assert steps[1].opened and steps[1].slow == []

    # inner packets the core must judge: a spoofed source, to another client, to the server
    spoofed = seal(pair, 0, [(ip_packet(addr4(2), OUTSIDE4, b"spoofed"), 0), (ip_packet(addr6(1), OUTSIDE6), 0)])
    to_c1 = seal(pair, 0, [(ip_packet(addr4(0), addr4(1), b"c2c v4"), 0), (ip_packet(addr6(0), addr6(1), b"v6"), 0)])
    to_server = seal(pair, 1, [(ip_packet(addr4(1), SERVER4, b"server"), 0), (tcp_packet(addr6(1), SERVER6, 5, b"t"),
                                                                               FL_CSUM_PARTIAL)])
    steps = udp(pair, [("c0", spoofed + to_c1), ("c1", to_server)], "judged by the core")
    ref = steps[0]
    assert ref.drops["spoofed"] == 2 and ref.drops.get("client-to-client", 0) == (0 if c2c else 2)
    assert len(ref.tun) == 2 and (ref.datagrams.get("c1") is not None) == c2c
    if c2c:
        assert [p for p, _ in received(pair, steps)[1]] == [ip_packet(addr4(0), addr4(1), b"c2c v4"),
                                                            ip_packet(addr6(0), addr6(1), b"v6")]

    # TUN reads: plain, TSO (taken partial by c0 and c1, completed for c2), a partial UDP one,
    # to an unknown address, to c3 (no endpoint yet), an empty read, a cut packet, junk
    frames = [plain_frame(ip_packet(OUTSIDE4, addr4(0), b"down v4")), plain_frame(ip_packet(OUTSIDE6, addr6(1))),
              tso(OUTSIDE4, addr4(0), 4), tso(OUTSIDE6, addr6(1), 3, 5000), tso(OUTSIDE4, addr4(2), 3, 9000),
              udp_partial_frame(OUTSIDE4, addr4(1), b"dns"), tso(OUTSIDE4, UNKNOWN4, 2),
              plain_frame(ip_packet(OUTSIDE4, addr4(3), b"nowhere yet")), tso(OUTSIDE6, addr6(3), 2),
              vnet.PLAIN, plain_frame(b"\x45\x00"), b"\x01\x02", vnet.HEADER.pack(0, vnet.GSO_UDP, 0, 0, 0, 0, 0)]
    steps = tun(pair, frames, "TUN reads")
    ref = steps[0]
    assert ref.drops["no-route"] == 4 and ref.drops["no-endpoint"] == 3  # unknown (2), empty, cut; c3 (1 + 2)
    assert {k: len(v) for k, v in ref.datagrams.items()} == {"c0": 5, "c1": 5, "c2": 3}
    opened = received(pair, steps)
    assert partial_bits(ref, "c2") == [0, 0, 0] and partial_bits(ref, "c0") == [0, 1, 1, 1, 1]  # c2 takes none
    assert len(opened[0]) == 5 and len(opened[2]) == 3
    if len(steps) > 1:
        assert steps[1].slow == ["tun"] * 6, steps[1].slow  # c2 (partials), unknown, c3 (2), empty, cut

    # roaming: c0 from a new address; then the TUN's packets for c0 go there
    moved = seal(pair, 0, [(ip_packet(addr4(0), OUTSIDE4, b"roamed"), 0)])
    steps = udp(pair, [("r0", moved)], "roaming")
    assert steps[0].events == ["PeerRoamed"] and steps[0].sessions[0][2] == "r0"
    assert list(steps[0].datagrams) == ["r0"]  # the keepalive that tells the client
    steps = tun(pair, [tso(OUTSIDE4, addr4(0), 2, 20000)], "after roaming")
    assert list(steps[0].datagrams) == ["r0"]
    back = seal(pair, 0, [(ip_packet(addr4(0), OUTSIDE4, b"back"), 0)])
    udp(pair, [("c0", back)], "roaming back")

    # c3's first datagram gives it an endpoint; c2's first FL_TAKES_PARTIAL
    for w in pair:
        client_of(w, 2).data.own_flags = FL_TAKES_PARTIAL
    late = seal(pair, 3, [(ip_packet(addr4(3), OUTSIDE4, b"late"), 0)])
    partial = seal(pair, 2, [(ip_packet(addr4(2), OUTSIDE4, b"now partial"), 0)])
    steps = udp(pair, [("c3", late), ("c2", partial)], "first endpoint, first FL_TAKES_PARTIAL")
    assert steps[0].sessions[2][7] is True and steps[0].sessions[3][2] == "c3"
    steps = tun(pair, [tso(OUTSIDE4, addr4(2), 3, 30000), tso(OUTSIDE6, addr6(3), 2, 40000)], "after")
    opened = received(pair, steps)
    assert partial_bits(steps[0], "c2") == [1, 1, 1] and len(opened[2]) == 3 and len(opened[3]) == 2
    if len(steps) > 1:
        assert steps[1].slow == [], "the copies were not pushed after the slow path"

    # the kernel answers at once: a UDP wakeup that wrote to the TUN reads it in the same wakeup
    for w in pair:
        w.send_tun([plain_frame(ip_packet(OUTSIDE4, addr4(1), b"answer"))])
    steps = udp(pair, [("c1", seal(pair, 1, [(ip_packet(addr4(1), OUTSIDE4, b"ask"), 0)]))], "answer")
    assert list(steps[0].datagrams) == ["c1"] and len(steps[0].tun) == 1

    # a datagram the socket cannot send (65535 + 32 bytes): counted, the same way
    steps = tun(pair, [plain_frame(ip_packet(OUTSIDE4, addr4(1), bytes(65535 - 20)))], "too big")
    assert steps[0].errors == {f"udp-send-{errno.EMSGSIZE}": 1}


def test_a_replaced_session_hands_its_addresses_to_its_successor(seeded, certs):
    pair = server_pair(seeded, certs, ServerConfig(), [Spec(), Spec()])
    tun(pair, [tso(OUTSIDE4, addr4(0), 2)], "before")
    for w in pair:  # c0 connects again (the same certificate): the old session is replaced
        new = ClientCore(ClientConfig(SERVER_NAME, certs["pin"]), client_context(certs["c0"]))
        new.takes_partial = True
        w.net.connect(new, w.address(0))
        w.push()  # after the handshake, as the daemon does after each stream read
        w.attach()
    assert [s.state for s in pair.ref.core._conns.values()] == [ESTABLISHED, ESTABLISHED]  # noqa: SLF001
    steps = tun(pair, [tso(OUTSIDE4, addr4(0), 2, 7000), plain_frame(ip_packet(OUTSIDE6, addr6(0)))], "after")
    new_sid = pair.ref.net.ends[3].core.session_id
    assert {HEADER.unpack_from(d)[4] for d in steps[0].datagrams["c0"]} == {new_sid}
    if len(pair.worlds) > 1:
        assert pair.worlds[1].path.sessions() == 2 and steps[1].slow == []


def test_the_server_asks_for_a_rekey_at_the_volume_limit_and_seals_with_the_new_epoch(seeded, certs):
    limits = Limits(rekey_packets=24, reject_packets=40)
    pair = server_pair(seeded, certs, ServerConfig(limits=limits), [Spec(), Spec()])
    counter = pair.ref.core._conns[1].data.current.counter  # noqa: SLF001 - 1: the keepalive on the first datagram
    assert counter == 1
    tun(pair, [tso(OUTSIDE4, addr4(0), 4, 1000 + 10000 * i) for i in range(5)], "up to the limit")  # 21
    assert pair.ref.core._conns[1]._asked_epoch == -1  # noqa: SLF001
    steps = tun(pair, [tso(OUTSIDE4, addr4(0), 4, 90000), tso(OUTSIDE4, addr4(1), 2)], "over the soft limit")
    assert steps[0].streams == [1] and steps[0].sessions[0][9] == 0 and steps[0].sessions[0][6] == 25
    if len(steps) > 1:
        assert steps[1].slow == ["tun"], steps[1].slow  # only the read that reaches the limit
    steps = tun(pair, [tso(OUTSIDE4, addr4(0), 4, 100000 + 10000 * i) for i in range(5)], "to the hard limit")
    assert steps[0].drops == {"exhausted": 2} and steps[0].sessions[0][6] == 40 and steps[0].sessions[0][8]
    assert steps[0].streams == []  # asked once per epoch

    # the client rekeys; its confirm is held, so the server holds the new epoch as pending
    late = seal(pair, 0, [(ip_packet(addr4(0), OUTSIDE4, b"sealed before the rekey"), 0)])
    deliver_streams(pair)
    for w in pair:
        net = w.net
        net.hold_streams = True
        net.pump()
        assert net.release_stream() == "c2s" and net.release_stream() == "s2c"  # rekey, rekey_ack
        assert net.held_streams and net.held_streams[0][0] == "c2s"  # the confirm, held
        w.push()
    session = pair.ref.core._conns[1]  # noqa: SLF001
    assert session.data.pending is not None and session.data.epoch == 0
    fresh = seal(pair, 0, [(ip_packet(addr4(0), OUTSIDE4, b"new epoch"), 0)])
    assert fresh[0][1] == 1
    steps = udp(pair, [("c0", fresh)], "the pending epoch's first datagram")
    assert steps[0].sessions[0][5] == (0, 1, None) and steps[0].sessions[0][6] == 0
    if len(steps) > 1:
        assert steps[1].slow == ["udp"]
    steps = tun(pair, [tso(OUTSIDE4, addr4(0), 3, 500000)], "sealed with the new epoch")
    assert {d[1] for d in steps[0].datagrams["c0"]} == {1} and steps[0].sessions[0][6] == 3
    if len(steps) > 1:
        assert steps[1].slow == []
    # a late datagram of the old epoch still opens (the previous epoch), on the Path itself
    steps = udp(pair, [("c0", late)], "the old epoch, late")
    assert tun_packets(steps[0]) == [ip_packet(addr4(0), OUTSIDE4, b"sealed before the rekey")]
    if len(steps) > 1:
        assert steps[1].slow == [] and steps[1].opened


# ---- 2. the client ------------------------------------------------------------------------


def client_pair(seeded, certs, limits: Limits, server_takes_partial: bool, family: int = socket.AF_INET) -> Pair:
    worlds, t0 = [], time.monotonic() - 5.0
    seeded(11)
    for i, native in enumerate(natives()):
        seeded.select(i)
        server = ServerCore(ServerConfig(limits=Limits(rekey_packets=30, reject_packets=2**31)),
                            server_context(certs["server"]), Pool())
        server.takes_partial = server_takes_partial
        core = ClientCore(ClientConfig(SERVER_NAME, certs["pin"], limits=limits),
                          client_context(certs["c0"]))
        world = ClientWorld(core, native, family)
        net = world.net = Net(server)
        net.now = t0
        net.connect(core, world.udp.getsockname())
        assert core.state == ESTABLISHED
        world.push()
        world.streams = []
        worlds.append(world)
    return Pair(worlds, seeded)


def from_server(pair: Pair, packets: list[tuple[bytes, int]]) -> list[bytes]:
    """The server core seals `packets` to the client in every world: the same datagrams."""
    made = []
    for w in pair:
        session = w.net.server._conns[1]  # noqa: SLF001
        made.append(session.seal_many(packets, w.net.now))
    assert all(m == made[0] for m in made)
    return made[0]


def client_udp(pair: Pair, bursts: list[list[bytes]], where: str) -> list[Step]:
    steps = []
    for w in pair:
        w.send_udp([("server", burst) for burst in bursts])
        steps.append(w.wake_udp())
        w.streams += w.sink
    return pair.check(steps, where)


def to_server(pair: Pair, steps: list[Step]) -> list[tuple[bytes, int]]:
    """The server cores open what the clients sent (Rule 2)."""
    opened = []
    for w, step in zip(pair, steps):
        addr = w.udp.getsockname()
        opened.append(w.net.server.open_datagrams(step.datagrams["server"], addr, w.net.now))
        w.net.server.take_outputs()
    assert all(o == opened[0] for o in opened)
    return opened[0]


def client_streams_to_server(pair: Pair) -> None:
    for w in pair:
        for _, data in w.streams:
            w.net.server.receive_stream(1, data, w.net.now)
        w.streams = []


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["udp4", "udp6"])
def test_the_client_path_does_what_the_python_handlers_do_through_a_rekey(seeded, certs, family):
    pair = client_pair(seeded, certs, Limits(rekey_packets=40, reject_packets=45), server_takes_partial=False,
                       family=family)
    me4, me6 = addr4(0), addr6(0)
    assert pair.ref.core.data.limits.rekey_packets == 30  # the server's schedule is lower

    # from the server: valid DATA, a GRO burst of TCP segments, a keepalive, and junk
    one = from_server(pair, [(ip_packet(OUTSIDE4, me4, b"one"), 0), (ip_packet(OUTSIDE6, me6, b"six"), 0)])
    burst = from_server(pair, segments_of(tso(OUTSIDE4, me4, 6)))
    alive = pair.ref.net.server._conns[1].data.seal(DG_KEEPALIVE, b"")  # noqa: SLF001
    for w in pair.worlds[1:]:
        assert w.net.server._conns[1].data.seal(DG_KEEPALIVE, b"") == alive  # noqa: SLF001
    first, spare = one[0], from_server(pair, [(ip_packet(OUTSIDE4, me4, b"never sent whole"), 0)])[0]
    junk = [first, first[:4] + struct.pack("!I", 0x0BADBAD0) + first[8:], first[:1] + b"\x05" + first[2:],
            b"\x04" + first[1:], first[:31], spare[:-1] + bytes([spare[-1] ^ 0x10]), b""]
    steps = client_udp(pair, [one, burst, [alive], junk], "from the server")
    ref = steps[0]
    assert ref.drops == {"replay": 1, "unknown-session": 1, "unknown-epoch": 1, "bad-type": 1, "short": 2, "auth": 1}
    assert tun_packets(ref) == [ip_packet(OUTSIDE4, me4, b"one"), ip_packet(OUTSIDE6, me6, b"six")] + \
        [p for p, _ in segments_of(tso(OUTSIDE4, me4, 6))]

    # to the server: plain, TSO (completed: the server does not take partials), partial UDP
    frames = [plain_frame(ip_packet(me4, OUTSIDE4, b"up")), tso(me4, OUTSIDE4, 4), tso(me6, OUTSIDE6, 2, 3000),
              udp_partial_frame(me4, OUTSIDE4, b"query"), vnet.PLAIN]
    steps = tun(pair, frames, "to the server")
    assert len(steps[0].datagrams["server"]) == 9  # 1 + 4 + 2 + 1, and the empty read: an empty packet
    assert partial_bits(steps[0], "server") == [0] * 9 and len(to_server(pair, steps)) == 8  # the empty one: spoofed
    if len(steps) > 1:
        assert steps[1].slow == ["tun"] * 3, steps[1].slow  # the partial ones; the plain one is the Path's

    # the server's first FL_TAKES_PARTIAL: then the client's partials leave as they are
    for w in pair:
        w.net.server._conns[1].data.own_flags = FL_TAKES_PARTIAL  # noqa: SLF001
    steps = client_udp(pair, [from_server(pair, [(ip_packet(OUTSIDE4, me4, b"flag"), 0)])], "first flag")
    assert steps[0].sessions[0][7] is True
    alive = [w.net.server._conns[1].data.seal(DG_KEEPALIVE, b"") for w in pair]  # noqa: SLF001
    assert len(set(alive)) == 1
    steps = client_udp(pair, [alive[:1]], "a keepalive")
    assert steps[0].sessions[0][-1] == (True, False) and steps[0].tun == []
    if len(steps) > 1:
        assert steps[1].opened and steps[1].slow == []
    steps = tun(pair, [tso(me4, OUTSIDE4, 4, 8000)], "partials taken")
    assert [d[2] & 3 for d in steps[0].datagrams["server"]] == [FL_CSUM_PARTIAL] + [FL_CSUM_PARTIAL | FL_CONTINUES] * 3
    assert len(to_server(pair, steps)) == 4
    if len(steps) > 1:
        assert steps[1].slow == []

    # the volume limit (30): a read that stays below it is the Path's, the one that reaches it
    # goes to the core, which starts a rekey; at the hard limit (45) sealing stops
    assert steps[0].sessions[0][6] == 14  # the handshake's keepalive, 9, 4
    frames = [tso(me4, OUTSIDE4, 4, 20000 + 10000 * i) for i in range(3)] + [tso(me4, OUTSIDE4, 3, 50000)]
    steps = tun(pair, frames, "up to the limit")
    assert steps[0].streams == [] and steps[0].sessions[0][6] == 29
    if len(steps) > 1:
        assert steps[1].slow == []
    steps = tun(pair, [plain_frame(ip_packet(me4, OUTSIDE4, b"the 30th"))], "the soft limit")
    assert steps[0].streams == [0] and steps[0].sessions[0][10:12] == (1, True) and steps[0].sessions[0][6] == 30
    if len(steps) > 1:
        assert steps[1].slow == ["tun"]
    steps = tun(pair, [tso(me4, OUTSIDE4, 4, 70000 + 10000 * i) for i in range(5)], "to the hard limit")
    assert steps[0].drops["exhausted"] == 2 and steps[0].sessions[0][6] == 45 and steps[0].streams == []
    assert len(steps[0].datagrams["server"]) == 15
    to_server(pair, steps)

    # the rekey completes (rekey, rekey_ack, confirm); a datagram the server sealed under the
    # old epoch before it arrives late: the client's Path opens it (the previous epoch) too
    late = from_server(pair, [(ip_packet(OUTSIDE4, me4, b"old epoch"), 0)])
    client_streams_to_server(pair)
    for w in pair:
        w.net.pump()  # rekey_ack to the client, its confirm to the server
        w.push()
    assert pair.ref.core.data.epoch == 1 and pair.ref.net.server._conns[1].data.epoch == 1  # noqa: SLF001
    steps = tun(pair, [tso(me4, OUTSIDE4, 3, 200000)], "the new epoch")
    assert {d[1] for d in steps[0].datagrams["server"]} == {1} and steps[0].sessions[0][6] == 3
    if len(steps) > 1:
        assert steps[1].slow == []
    new = from_server(pair, [(ip_packet(OUTSIDE4, me4, b"new epoch"), 0)])
    steps = client_udp(pair, [late, new], "both epochs")
    assert tun_packets(steps[0]) == [ip_packet(OUTSIDE4, me4, b"old epoch"), ip_packet(OUTSIDE4, me4, b"new epoch")]
    if len(steps) > 1:
        assert steps[1].slow == [] and steps[1].opened


def test_a_client_send_error_is_counted_as_the_python_handlers_count_it(seeded, certs):
    pair = client_pair(seeded, certs, Limits(), server_takes_partial=True)
    for w in pair:
        w.server.close()  # nobody listens any more: the first send draws an ICMP error
    frame = plain_frame(ip_packet(addr4(0), OUTSIDE4, b"lost"))
    tun(pair, [frame], "first send")
    steps = tun(pair, [frame, frame], "refused")
    assert steps[0].errors == {f"udp-send-{errno.ECONNREFUSED}": 2}, steps[0].errors  # one GSO run of two


def test_a_wakeup_drains_at_most_a_batch_of_reads_and_datagrams(seeded, certs):
    pair = server_pair(seeded, certs, ServerConfig(), [Spec()])
    one = [seal(pair, 0, [(ip_packet(addr4(0), OUTSIDE4, b"%03d" % i), 0)])[0] for i in range(70)]
    steps = udp(pair, [("c0", [d]) for d in one], "70 reads")
    assert steps[0].sessions[0][4][1] == 64 and len(steps[0].tun) == 64  # iobase.BATCH reads
    steps = udp(pair, [], "the rest")
    assert steps[0].sessions[0][4][1] == 70
    bursts = [seal(pair, 0, [(ip_packet(addr4(0), OUTSIDE4, b"%03d" % i), 0) for i in range(10)]) for _ in range(30)]
    steps = udp(pair, [("c0", b) for b in bursts], "30 GRO reads of 10")
    assert steps[0].sessions[0][4][1] == 70 + 260  # 26 reads: iobase.MAX_DATAGRAMS reached
    steps = udp(pair, [], "the rest")
    assert steps[0].sessions[0][4][1] == 70 + 300


def test_tun_write_errors_are_counted_as_the_python_handlers_count_them(seeded, certs):
    pair = server_pair(seeded, certs, ServerConfig(), [Spec(), Spec()])
    for w in pair:  # a TUN that takes about two writes before it blocks
        w.pair.near.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    packets = [(ip_packet(addr4(0), OUTSIDE4, bytes(1000 + i)), 0) for i in range(8)]
    steps = udp(pair, [("c0", seal(pair, 0, packets))], "a full TUN")
    failed = steps[0].errors.get(f"tun-write-{errno.EAGAIN}", 0)
    assert 0 < failed < 8 and len(steps[0].tun) == 8 - failed, steps[0].errors


# ---- mixed wakeups (Rule 4) ---------------------------------------------------------------
#
# A datagram the core must see before others the Path could open itself: the core changes
# what the Path's copies say (an endpoint, an epoch), so everything after it is the core's.


def mixed_tun_order(pair: Pair) -> list[tuple[str, list[bytes]]]:
    """c0 roams (the core's), then c1 sends: the TUN writes stay in arrival order."""
    moved = seal(pair, 0, [(ip_packet(addr4(0), OUTSIDE4, b"c0 from afar"), 0)])
    plain = seal(pair, 1, [(ip_packet(addr4(1), OUTSIDE4, b"c1 as ever"), 0)])
    return [("r0", moved), ("c1", plain)]


def mixed_flapping(pair: Pair) -> list[tuple[str, list[bytes]]]:
    """c0 from a new address, then from its old one: followed there and back (two PeerRoamed,
    two keepalives)."""
    there = seal(pair, 0, [(ip_packet(addr4(0), OUTSIDE4, b"there"), 0)])
    back = seal(pair, 0, [(ip_packet(addr4(0), OUTSIDE4, b"back"), 0)])
    return [("r0", there), ("c0", back)]


def mixed_forward(pair: Pair) -> list[tuple[str, list[bytes]]]:
    """c1 roams, then c0 sends to c1's address (client_to_client on): the forwarded packet is
    sealed after the roaming keepalive, to c1's new address."""
    moved = seal(pair, 1, [(ip_packet(addr4(1), OUTSIDE4, b"c1 moved"), 0)])
    forward = seal(pair, 0, [(ip_packet(addr4(0), addr4(1), b"to c1"), 0)])
    return [("r1", moved), ("c0", forward)]


def mixed_forward_first(pair: Pair) -> list[tuple[str, list[bytes]]]:
    """c0 sends to c1 (the core's, its window unmoved by the Path), then to the outside."""
    forward = seal(pair, 0, [(ip_packet(addr4(0), addr4(1), b"to c1"), 0)])
    out = seal(pair, 0, [(ip_packet(addr4(0), OUTSIDE4, b"out"), 0)])
    return [("c0", forward), ("c0", out)]


def mixed_slow_reads(pair: Pair) -> list[tuple[str, list[bytes]]]:
    """c0 roams with a TCP super-packet's segments, one read each: all of them the core's,
    written as one super-packet, as the reference writes them."""
    return [("r0", [d]) for d in seal(pair, 0, segments_of(tso(addr4(0), OUTSIDE4, 3)))]


def mixed_happy_then_slow(pair: Pair) -> list[tuple[str, list[bytes]]]:
    """c0's first two segments (the Path's), c1 roams, c0's last (the core's): the Path's
    items and the core's in one plan, in arrival order."""
    first, second, third = seal(pair, 0, segments_of(tso(addr4(0), OUTSIDE4, 3)))
    moved = seal(pair, 1, [(ip_packet(addr4(1), OUTSIDE4, b"c1 moved"), 0)])
    return [("c0", [first]), ("c0", [second]), ("r1", moved), ("c0", [third])]


def mixed_retired_epoch(pair: Pair) -> list[tuple[str, list[bytes]]]:
    """c0's first datagram under a pending epoch retires the previous-but-one, then a late
    one of that epoch: dropped (unknown-epoch), never opened with a retired key."""
    old = seal(pair, 0, [(ip_packet(addr4(0), OUTSIDE4, b"epoch 0, late"), 0)])
    rekey(pair, 0, hold_confirm=False)
    rekey(pair, 0, hold_confirm=True)
    assert pair.ref.core._conns[1].data.pending.number == 2  # noqa: SLF001
    return [("c0", seal(pair, 0, [(ip_packet(addr4(0), OUTSIDE4, b"epoch 2"), 0)])), ("c0", old)]


def rekey(pair: Pair, i: int, hold_confirm: bool) -> None:
    """Client i rekeys over its control connection; with its confirm held the server keeps
    the new epoch pending."""
    for w in pair:
        net = w.net
        net.hold_streams = hold_confirm
        client = client_of(w, i)
        client._start_rekey(net.now)  # noqa: SLF001 - what its timer does at rekey_seconds
        client.flush()
        net.pump()
        if hold_confirm:
            assert net.release_stream() == "c2s" and net.release_stream() == "s2c"
            net.held_streams.clear()
            net.hold_streams = False
        w.push()


MIXED = {"slow-reads": (mixed_slow_reads, False), "tun-order": (mixed_tun_order, False),
         "flapping": (mixed_flapping, False), "forward": (mixed_forward, True),
         "forward-first": (mixed_forward_first, True), "happy-then-slow": (mixed_happy_then_slow, False),
         "retired-epoch": (mixed_retired_epoch, False)}


@pytest.mark.parametrize("case", sorted(MIXED))
def test_a_mixed_wakeup_is_what_the_reference_does(seeded, certs, case):
    scenario, c2c = MIXED[case]
    pair = server_pair(seeded, certs, ServerConfig(client_to_client=c2c), [Spec(), Spec()])
    units = units_of(scenario(pair))
    steps = []
    for w in pair:
        w.send_units(units)
        steps.append(w.wake_udp())
    assert_same(steps, case)
    ref = steps[0]
    if case == "retired-epoch":
        assert ref.drops == {"unknown-epoch": 1} and len(ref.tun) == 1, ref.drops
    if case == "flapping":
        assert ref.events == ["PeerRoamed", "PeerRoamed"] and ref.sessions[0][2] == "c0"
    segments = [p for p, _ in segments_of(tso(addr4(0), OUTSIDE4, 3))]
    if case == "slow-reads":
        assert tun_packets(ref) == segments and len(ref.tun) == 1
    if case == "happy-then-slow":
        assert tun_packets(ref) == segments[:2] + [ip_packet(addr4(1), OUTSIDE4, b"c1 moved")] + segments[2:]
    if len(steps) > 1:
        path = steps[1]
        assert path.rows and [who for who, _ in path.plans] == (["path"] if path.tun else [])
        assert path.opened == (case == "happy-then-slow"), path.opened  # the others begin with the core's


# ---- 3. the Path itself (Rule 3) ------------------------------------------------------------


class Calls:
    """Slow callables that note their calls; slow_udp answers with `udp_answer` (TUN items),
    slow_tun with `tun_answer`."""

    def __init__(self, udp_answer: Any = None, tun_answer: Any = None) -> None:
        self.log: list[tuple] = []
        self.udp_answer, self.tun_answer = udp_answer if udp_answer is not None else [], tun_answer

    def slow_udp(self, addr: Any, datagrams: list[bytes]) -> Any:
        self.log.append(("udp", tuple(addr[:2]), list(datagrams)))
        return self.udp_answer

    def slow_tun(self, segments: list) -> Any:
        self.log.append(("tun", list(segments)))
        return self.tun_answer

    def settle(self) -> None:
        self.log.append(("settle",))


@dataclass
class Bench:
    """A server Path on loopback with recording callables; `peer` is a client's socket."""

    path: Any
    calls: Calls
    kit: ServerKit

    @property
    def peer(self) -> socket.socket:
        return self.kit.clients[0]

    def send(self, *datagrams: bytes, sock: socket.socket | None = None) -> None:
        for d in datagrams:
            (sock or self.peer).sendto(d, self.kit.udp.getsockname())

    def got(self, sock: socket.socket | None = None) -> list[bytes]:
        return drain(sock or self.peer)

    def tun(self) -> list[bytes]:
        return drain(self.kit.pair.far)


@pytest.fixture
def bench() -> Iterator[Bench]:
    kit = ServerKit.make(socket.AF_INET, 2)
    calls = Calls()
    path = fastpath.make(kit.udp, kit.pair.tun, client=False, slow_udp=calls.slow_udp,
                         slow_tun=calls.slow_tun, settle=calls.settle)
    assert Receiver(kit.udp).gro  # UDP_GRO on, as the loops have it
    yield Bench(path, calls, kit)
    for sock in (kit.udp, *kit.clients, *kit.roams, kit.pair.near, kit.pair.far):
        sock.close()


SID, X4, X6 = 0x51D0_0001, bytes([10, 8, 0, 2]), addr6(0)


def copy(bench: Bench, sid: int = SID, addresses: tuple[bytes, ...] = (X4, X6), endpoint: Any = "peer",
         epoch: int = 0, limit: int = 1000, partial: bool = True) -> dict[str, Any]:
    """Path.set's arguments for a hand-made session (the keys of targets_native_path.keys)."""
    c2s, s2c = keys(sid, epoch)
    return {"sid": sid, "seal": make_native(s2c), "seal_tag": epoch, "seal_limit": limit,
            "own_flags": FL_TAKES_PARTIAL, "peer_partial": partial,
            "opens": ((epoch, make_native(c2s), ReplayWindow(RECEIVE_LIMIT)),),
            "endpoint": bench.peer.getsockname() if endpoint == "peer" else endpoint, "addresses": addresses}


def make_native(key: bytes) -> Any:
    return make_aead("aes-256-gcm", key)


def from_client(sid: int, counter: int, packet: bytes, kind: int = DG_DATA, flags: int = FL_TAKES_PARTIAL,
                epoch: int = 0) -> bytes:
    return seal_as("aes-256-gcm", keys(sid, epoch)[0], kind, epoch, flags, sid, counter, packet)


def test_without_a_copy_everything_goes_to_the_slow_callables_and_settle_runs_once(bench):
    up = from_client(SID, 0, ip_packet(X4, OUTSIDE4))
    bench.send(up, b"junk")
    send_burst_from(bench, [up[:40], up[:40], up[:33]])
    bench.path.on_udp()
    addr = tuple(bench.peer.getsockname())
    assert bench.calls.log == [("udp", addr, [up]), ("udp", addr, [b"junk"]),
                               ("udp", addr, [up[:40], up[:40], up[:33]]), ("settle",)]
    assert bench.tun() == [] and bench.got() == []
    bench.calls.log.clear()
    frames = [plain_frame(ip_packet(OUTSIDE4, X4)), tso(OUTSIDE4, X4, 3), b"\x01"]
    for frame in frames:
        bench.kit.pair.far.send(frame)
    bench.path.on_tun()
    assert bench.calls.log == [("tun", segment.split(frames[0])), ("tun", segment.split(frames[1])), ("settle",)]
    bench.calls.log.clear()
    bench.path.on_udp()
    bench.path.on_tun()
    assert bench.calls.log == [] and bench.path.drain() == [] and bench.path.errors == {}


def test_after_the_first_datagram_off_the_happy_path_the_rest_of_the_wakeup_is_the_cores(bench):
    args = copy(bench, addresses=(X4,))
    bench.path.set(**args)
    bench.path.set(**copy(bench, sid=SID + 1, addresses=(bytes([10, 8, 0, 3]),), endpoint=None))
    window = args["opens"][0][2]
    first = from_client(SID, 0, ip_packet(X4, OUTSIDE4, b"first"))
    to_other = from_client(SID, 1, ip_packet(X4, bytes([10, 8, 0, 3]), b"to another client"))
    after = [from_client(SID, 2, ip_packet(X4, OUTSIDE4, b"after")), from_client(SID, 3, b"", kind=DG_KEEPALIVE)]
    bench.send(first, to_other, *after)
    core_says = [(ip_packet(X4, OUTSIDE4, b"the core's"), 0)]
    bench.calls.udp_answer = core_says
    bench.path.on_udp()
    addr = tuple(bench.peer.getsockname())
    assert bench.calls.log == [("udp", addr, [to_other]), ("udp", addr, [after[0]]), ("udp", addr, [after[1]]),
                               ("settle",)]
    assert not window.check(0) and window.check(1) and window.check(2) and window.check(3)  # the core's to move
    assert bench.tun() == [plain_frame(ip_packet(X4, OUTSIDE4, b"first"))] + [plain_frame(core_says[0][0])] * 3
    (sid, rx_bytes, rx_packets, *_), = bench.path.drain()
    assert (sid, rx_packets) == (SID, 1)
    bench.calls.log.clear()
    bench.send(from_client(SID, 4, ip_packet(X4, OUTSIDE4, b"next wakeup")))  # the Path's again
    bench.path.on_udp()
    assert bench.calls.log == [] and bench.tun() == [plain_frame(ip_packet(X4, OUTSIDE4, b"next wakeup"))]


def send_burst_from(bench: Bench, datagrams: list[bytes]) -> None:
    send_burst(bench.peer, datagrams, bench.kit.udp.getsockname())


def test_what_the_slow_callables_answer_leaves_in_the_same_wakeup(bench):
    to = bench.kit.clients[1].getsockname()
    bench.calls.tun_answer = (to, [b"a" * 100, b"b" * 100, b"c" * 60])
    from_core = ip_packet(X4, OUTSIDE4, b"the core opened it")
    bench.calls.udp_answer = [(from_core, 0)]  # the Path writes it, then reads the TUN at once (Rule 4)
    bench.kit.pair.far.send(plain_frame(ip_packet(OUTSIDE4, X4, b"answer")))
    bench.send(b"anything")
    bench.path.on_udp()
    assert [c[0] for c in bench.calls.log] == ["udp", "settle", "tun", "settle"]
    assert bench.tun() == [plain_frame(from_core)]
    assert drain(bench.kit.clients[1]) == [b"a" * 100, b"b" * 100, b"c" * 60]
    bench.calls.tun_answer = (None, [b"x"])  # no address on a server's unconnected socket: counted
    bench.kit.pair.far.send(plain_frame(ip_packet(OUTSIDE4, X4, b"nowhere")))
    bench.path.on_tun()
    assert bench.path.errors == {f"udp-send-{errno.EDESTADDRREQ}": 1}


def raising(error: Exception) -> Any:
    def call(*_args: Any) -> Any:
        raise error
    return call


@pytest.mark.parametrize("side", ["udp", "udp-answer", "tun", "tun-answer"])
def test_an_exception_of_a_slow_callable_reaches_the_caller_unchanged(bench, side):
    if side.startswith("udp"):
        slow_udp = raising(ValueError("a bug in the core")) if side == "udp" else lambda _a, _d: True
        path = fastpath.make(bench.kit.udp, bench.kit.pair.tun, client=False, slow_udp=slow_udp,
                             slow_tun=bench.calls.slow_tun, settle=bench.calls.settle)
        bench.send(b"junk")
        expected, wake = (ValueError if side == "udp" else TypeError), path.on_udp
    else:
        slow_tun = raising(ValueError("a bug in the core")) if side == "tun" else lambda _s: ("not a group",)
        path = fastpath.make(bench.kit.udp, bench.kit.pair.tun, client=False, slow_udp=bench.calls.slow_udp,
                             slow_tun=slow_tun, settle=bench.calls.settle)
        bench.kit.pair.far.send(plain_frame(ip_packet(OUTSIDE4, X4)))
        expected, wake = (ValueError if side == "tun" else TypeError), path.on_tun
    with pytest.raises(expected):
        wake()


def test_set_remove_and_drain(bench):
    path, peer = bench.path, bench.peer
    args = copy(bench)
    path.set(**args)
    assert path.sessions() == 1 and path.drain() == []
    window, seal_aead = args["opens"][0][2], args["seal"]

    packet = ip_packet(X4, OUTSIDE4, b"up")
    bench.send(from_client(SID, 0, packet), from_client(SID, 1, b"", kind=DG_KEEPALIVE))
    t0 = time.monotonic()
    path.on_udp()
    assert bench.calls.log == [] and [f[vnet.SIZE:] for f in bench.tun()] == [packet]
    assert not window.check(0) and not window.check(1) and window.check(2)  # the window Python holds moved
    (row,) = path.drain()
    assert row[:5] == (SID, len(packet), 1, 0, 0) and t0 <= row[5] <= time.monotonic() and row[6] == 0.0
    assert path.drain() == []

    seal_aead.counter = 41  # the epoch's counter lives in the sealing Aead: Python's and the Path's
    bench.kit.pair.far.send(tso(OUTSIDE4, X4, 3))
    path.on_tun()
    sent = bench.got()
    assert [HEADER.unpack_from(d)[4:] for d in sent] == [(SID, 41), (SID, 42), (SID, 43)]
    assert [d[2] for d in sent] == [FL_TAKES_PARTIAL | FL_CSUM_PARTIAL] + \
        [FL_TAKES_PARTIAL | FL_CSUM_PARTIAL | FL_CONTINUES] * 2
    assert seal_aead.counter == 44

    bench.kit.pair.far.send(plain_frame(ip_packet(OUTSIDE6, X6, b"v6")))
    path.on_tun()
    assert len(bench.got()) == 1
    path.set(**{**args, "endpoint": bench.kit.clients[1].getsockname()})  # replaced: the counters stay
    (row,) = path.drain()
    assert row[:5] == (SID, 0, 0, sum(len(d) - 32 for d in sent) + 40 + 2, 4) and row[5] == 0.0 < row[6]
    bench.kit.pair.far.send(plain_frame(ip_packet(OUTSIDE4, X4)))
    path.on_tun()
    assert len(drain(bench.kit.clients[1])) == 1 and bench.got() == []  # to the new endpoint

    bench.kit.pair.far.send(plain_frame(ip_packet(OUTSIDE4, X4)))
    path.on_tun()
    path.remove(SID)  # forgotten, its counters too
    path.remove(SID)
    path.remove(12345)
    assert path.sessions() == 0 and path.drain() == []
    bench.kit.pair.far.send(plain_frame(ip_packet(OUTSIDE4, X4)))
    bench.send(from_client(SID, 2, packet))
    path.on_tun()
    path.on_udp()
    assert [c[0] for c in bench.calls.log] == ["tun", "settle", "udp", "settle"]


def test_a_copy_that_cannot_be_set_changes_nothing(bench):
    path, args = bench.path, copy(bench)
    path.set(**args)
    opens = args["opens"]
    bad = [({"opens": opens * 4}, ValueError), ({"addresses": (X4, X6, X4)}, ValueError),
           ({"addresses": (X4[:3],)}, ValueError), ({"addresses": ["x"]}, TypeError), ({"seal": "key"}, TypeError),
           ({"endpoint": ("vpn.example.test", 1)}, ValueError), ({"endpoint": "127.0.0.1"}, TypeError),
           ({"opens": ((0, args["seal"], "window"),)}, TypeError), ({"opens": ((0,),)}, TypeError)]
    for change, error in bad:
        with pytest.raises(error):
            path.set(**{**args, "sid": SID + 1, **change})
        with pytest.raises(error):
            path.set(**{**args, **change})
    assert path.sessions() == 1
    bench.kit.pair.far.send(plain_frame(ip_packet(OUTSIDE6, X6)))
    path.on_tun()
    assert len(bench.got()) == 1 and bench.calls.log == []  # the old copy serves as it did
    path.set(**{**args, "seal": None})  # no sealing key: the TUN side is the core's
    bench.kit.pair.far.send(plain_frame(ip_packet(OUTSIDE6, X6)))
    path.on_tun()
    assert bench.got() == [] and bench.calls.log[0][0] == "tun"


@pytest.mark.parametrize("order", ["remove-then-set", "set-then-remove"])
def test_an_address_moves_from_a_replaced_session_to_its_successor_in_either_order(bench, order):
    path = bench.path
    path.set(**copy(bench, sid=1))
    new = copy(bench, sid=2, endpoint=bench.kit.clients[1].getsockname())
    if order == "remove-then-set":
        path.remove(1)
        path.set(**new)
    else:
        path.set(**new)
        path.remove(1)
    for packet in (ip_packet(OUTSIDE4, X4), ip_packet(OUTSIDE6, X6)):
        bench.kit.pair.far.send(plain_frame(packet))
    path.on_tun()
    assert [HEADER.unpack_from(d)[4] for d in drain(bench.kit.clients[1])] == [2, 2] and bench.calls.log == []
    path.set(**copy(bench, sid=2, addresses=(X6,)))  # an address dropped from a copy goes
    bench.kit.pair.far.send(plain_frame(ip_packet(OUTSIDE4, X4)))
    path.on_tun()
    assert bench.calls.log[0][0] == "tun"


@pytest.mark.parametrize("marks", ["old-first", "new-first"])
def test_sync_pushes_removals_first_whatever_the_order_of_the_marks(bench, marks):
    knobs = Knobs.of(bytes([0, 0]))
    core = hand_server(knobs, [bench.peer.getsockname(), bench.kit.clients[1].getsockname()], time.monotonic())
    old, other = core._conns[1], core._conns[2]  # noqa: SLF001
    sync = fastpath.Sync()
    for s in (old, other):
        sync.mark(s)
    sync.push(bench.path)
    assert bench.path.sessions() == 2
    other.addresses = old.addresses  # `other` takes over old's addresses as old closes
    old.close("replaced", time.monotonic())
    core.register(other)
    for s in ((old, other) if marks == "old-first" else (other, old)):
        sync.mark(s)
    sync.push(bench.path)
    assert bench.path.sessions() == 1
    bench.kit.pair.far.send(plain_frame(ip_packet(OUTSIDE4, X4)))
    bench.path.on_tun()
    assert [HEADER.unpack_from(d)[4] for d in drain(bench.kit.clients[1])] == [other.session_id]


def test_copy_of_follows_the_session(bench):
    knobs = Knobs.of(bytes([8 | 16, 1]))  # rekeyed (previous 0, current 1) with a pending epoch 2
    core = hand_server(knobs, [bench.peer.getsockname()], time.monotonic())
    session = core._conns[1]  # noqa: SLF001
    got = fastpath.copy_of(session)
    data = session.data
    assert got["sid"] == session.session_id and got["seal"] is data.current.seal and got["seal_tag"] == 1
    assert [o[0] for o in got["opens"]] == [1, 0] and got["opens"][0][2] is data.current.window
    assert got["seal_limit"] == min(session.rekey_after, knobs.limits().reject_packets)
    assert got["peer_partial"] is True and got["own_flags"] == FL_TAKES_PARTIAL
    assert got["addresses"] == session.addresses and got["endpoint"] == bench.peer.getsockname()
    session.transport = "tcp"
    tcp = fastpath.copy_of(session)
    assert tcp["seal"] is None and tcp["opens"] == () and tcp["addresses"] == session.addresses
    session.close("bye", time.monotonic())
    assert session.state == CLOSED and fastpath.copy_of(session) is None
    assert fastpath.usable(bench.kit.pair.tun) == fastpath.ENABLED
    assert not fastpath.usable(SimpleTun())


class SimpleTun:
    vnet_hdr = False


def test_a_refused_gso_send_turns_gso_off_and_is_counted_as_gso_sender_counts_it(bench):
    path = bench.path
    path.set(**copy(bench, endpoint=("127.0.0.1", 0)))  # port 0: the kernel refuses (EINVAL)
    bench.kit.pair.far.send(tso(OUTSIDE4, X4, 3))
    path.on_tun()
    assert path.gso == 0 and path.errors == {"udp-gso-off": 1, f"udp-send-{errno.EINVAL}": 3}
    reference: Counter = Counter()
    gso.Sender(bench.kit.udp, reference).send_groups([(("127.0.0.1", 0), [b"x" * 100] * 2 + [b"y"])])
    assert dict(reference) == path.errors
    bench.kit.pair.far.send(tso(OUTSIDE4, X4, 2, 7000))
    path.on_tun()
    assert path.errors == {"udp-gso-off": 1, f"udp-send-{errno.EINVAL}": 5}


def test_the_tun_side_is_the_cores_at_the_volume_limit_and_for_partials_the_peer_refuses(bench):
    path = bench.path
    args = copy(bench, limit=10, partial=False)
    path.set(**args)
    args["seal"].counter = 6
    for frame in (tso(OUTSIDE4, X4, 3), plain_frame(ip_packet(OUTSIDE4, X4)), tso(OUTSIDE4, X4, 2, 9000)):
        bench.kit.pair.far.send(frame)
    path.on_tun()
    # partials to a peer that does not take them: the core's (which here seals nothing);
    # one packet at 6 (6 + 1 < 10): the Path's
    assert [c[0] for c in bench.calls.log] == ["tun", "tun", "settle"] and len(bench.got()) == 1
    bench.calls.log.clear()
    path.set(**{**args, "peer_partial": True})
    bench.kit.pair.far.send(tso(OUTSIDE4, X4, 2, 20000))  # 7 + 2 = 9: the Path's
    bench.kit.pair.far.send(plain_frame(ip_packet(OUTSIDE4, X4)))  # 9 + 1 = 10: the core's
    path.on_tun()
    assert [c[0] for c in bench.calls.log] == ["tun", "settle"] and len(bench.got()) == 2
    assert args["seal"].counter == 9


def test_a_client_path_seals_for_its_one_session_only(bench):
    calls = Calls()
    sock = udp_pair_to(bench.peer)
    path = fastpath.make(sock, bench.kit.pair.tun, client=True, slow_udp=calls.slow_udp,
                         slow_tun=calls.slow_tun, settle=calls.settle)
    frame = plain_frame(ip_packet(X4, OUTSIDE4))
    for sessions in ((), (1,), (1, 2)):
        for sid in sessions:
            path.set(**copy(bench, sid=sid, endpoint=None, addresses=()))
        bench.kit.pair.far.send(frame)
        calls.log.clear()
        path.on_tun()
        sent = bench.got()
        assert (len(sent), len(calls.log)) == ((1, 0) if len(sessions) == 1 else (0, 2)), sessions
        assert all(HEADER.unpack_from(d)[4] == 1 for d in sent)
    sock.close()


def udp_pair_to(peer: socket.socket) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(peer.getsockname())
    sock.setblocking(False)
    return sock


UNINITIALISED = """
from runtime import _fastseal
path = _fastseal.Path.__new__(_fastseal.Path)
for call in (lambda: path.sessions(), lambda: path.drain(), lambda: path.remove(1)):
    try:
        call()
    except Exception:
        pass
print("survived")
"""


def test_a_path_made_without_init_is_inert_instead_of_crashing():
    done = subprocess.run([sys.executable, "-c", UNINITIALISED], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0 and "survived" in done.stdout, (done.returncode, done.stderr[-500:])


# ---- 4. the fuzz target (tests/fuzz/targets_native_path.py) ------------------------------------


def test_the_fuzz_target_keeps_its_contract_on_its_corpus_and_a_few_mutations():
    """The target runs in the fuzz session of tests/fuzz too; here it also runs under the
    sanitizers (tests/proto/test_native_seal.py runs this file there)."""
    target = TARGETS["native-path"]
    inputs = target.seeds() + corpus.load("native-path")
    result = Session(target, inputs, random.Random(11)).run(2.0, max_executions=len(inputs) + 300)
    assert result.executions > len(inputs) and not result.findings, [f.report for f in result.findings.values()]
