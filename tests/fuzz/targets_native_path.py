"""Fuzz target for the C Path (runtime/native/fastpath.c), and the differential harness that
tests/dataplane/test_fastpath.py shares: a Path against the loops' Python handlers.

Rule 1: a world is one core and its loop object (a ServerDaemon or a Client made without
        __init__, wired as their `run`/`open_udp` wire them), a UDP socket and a TUN stand-in
        (an AF_UNIX datagram socketpair: one frame per read, one per writev) on loopback.
        A reference world runs the Python handlers (on_udp, on_tun), a native one a Path
        with fastpath.Sync and the loop's absorb.
Rule 2: worlds fed the same datagrams and TUN frames must show after each wakeup the same
        datagrams at every socket (bytes, in order), TUN frames, drops, I/O errors, events
        and stream writes, and per session the same state, endpoint, epochs, counters,
        traffic (after absorb) and rekey state; a liveness time moves in both or in neither,
        and only to a time within the wakeup.
Rule 3: the Path hands the core the first datagram off its happy path and every one after
        it in the wakeup, in arrival order (`slow_udp` rows, a read each), so the core sees
        what the reference's core sees, in the same order: the two agree on every wakeup.
Rule 4: the fuzz contract is Rules 2-3 and nothing raised, over scripts of records
        (tests/fuzz/mutate.py): datagrams sealed under the sessions' keys (any epoch, type,
        flags, counter, inner addresses), earlier ones replayed, patched, cut or moved to
        another session, sent from the client's socket or a new one (roaming), alone or in a
        GSO burst (one GRO read); TUN frames (plain, TSO, partial, junk) to any address; and
        the wakeups.  The first two bytes pick the side (server or client) and the knobs.
Rule 5: the fuzz target's sessions are made by hand (no TLS) with fixed keys, so an input
        runs in milliseconds; the tests make theirs through real handshakes.  Without both
        native modules there is no Path: the target runs the reference alone.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import ssl
import struct
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from types import SimpleNamespace
from typing import Any

from runtime import fastpath, iobase, vnet
from runtime.clientloop import Client
from runtime.iobase import Outputs, Receiver, StreamConn
from runtime.proto.checksum import TCP, UDP
from runtime.proto.client import ClientCore
from runtime.proto.config import ClientConfig, Limits, ServerConfig
from runtime.proto.keys import CIPHERS, make_aead
from runtime.proto.server import ServerCore
from runtime.proto.session import ServerSession
from runtime.proto.wire import HEADER, NONCE_PREFIX
from runtime.serverd import ServerDaemon
from runtime.tun import Tun
from tests.dataplane.packets import ACK, PSH, tcp_header, with_partial
from tests.fuzz.engine import Target
from tests.fuzz.mutate import record, records
from tests.proto.link import Pool

NATIVE = fastpath.ENABLED
LOG = logging.getLogger("test-fastpath")
SOL_UDP, UDP_SEGMENT = 17, 103
BUFFER = 4 << 20
SERVER4, SERVER6 = bytes([10, 8, 0, 1]), bytes.fromhex("fd000008" + "00" * 11 + "01")
OUTSIDE4, OUTSIDE6 = bytes([192, 0, 2, 1]), bytes.fromhex("20010db8" + "00" * 11 + "01")


# ---- inner packets ------------------------------------------------------------------------


def ip_packet(src: bytes, dst: bytes, l4: bytes = b"hello", proto: int = 17) -> bytes:
    """An IPv4 or IPv6 packet (by the address length) around `l4`; no checksums (the cores
    never look at them, and a plain vnet frame asks the kernel for nothing)."""
    if len(src) == 4:
        return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0x1234, 0x4000, 64, proto, 0, src, dst) + l4
    return struct.pack("!IHBB16s16s", 6 << 28, len(l4), proto, 64, src, dst) + l4


def tcp_packet(src: bytes, dst: bytes, seq: int, data: bytes, flags: int = ACK | PSH) -> bytes:
    """A TCP packet with a partial checksum (the pseudo-header sum), as the kernel hands it over."""
    packet = ip_packet(src, dst, tcp_header(seq, flags) + data, TCP)
    return with_partial(packet, 20 if len(src) == 4 else 40)


def plain_frame(packet: bytes) -> bytes:
    return vnet.PLAIN + packet


def tso_frame(src: bytes, dst: bytes, seq: int, data: bytes, mss: int) -> bytes:
    """A TUN read holding a TCP super-packet from `src` to `dst` cut at `mss`."""
    l4 = 20 if len(src) == 4 else 40
    packet = tcp_packet(src, dst, seq, data)
    head = l4 + (packet[l4 + 12] >> 4) * 4
    kind = vnet.GSO_TCPV4 if len(src) == 4 else vnet.GSO_TCPV6
    return vnet.HEADER.pack(vnet.F_NEEDS_CSUM, kind, head, mss, l4, 16, 0) + packet


def udp_partial_frame(src: bytes, dst: bytes, data: bytes) -> bytes:
    """A TUN read of one UDP packet whose checksum is partial."""
    l4 = 20 if len(src) == 4 else 40
    packet = with_partial(ip_packet(src, dst, struct.pack("!HHHH", 5353, 53, 8 + len(data), 0) + data, UDP), l4, UDP)
    return vnet.partial(l4, 6) + packet


def body(n: int, salt: int = 0) -> bytes:
    return bytes((i * 7 + salt) & 0xFF for i in range(n))


# ---- sockets ------------------------------------------------------------------------------


def drain(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(1 << 17))
        except (BlockingIOError, InterruptedError):
            return out
        except ConnectionRefusedError:  # an ICMP error queued on a connected socket
            continue
        except OSError:  # closed
            return out


def udp_socket(family: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        sock.setsockopt(socket.SOL_SOCKET, opt, BUFFER)
    sock.bind(("127.0.0.1" if family == socket.AF_INET else "::1", 0))
    sock.setblocking(False)
    return sock


def shaped(datagrams: Sequence[bytes]) -> bool:
    """Whether the datagrams can leave in one GSO send (all of the first one's size but the
    last, not longer), which a receiver with UDP_GRO then reads at once."""
    size = len(datagrams[0]) if datagrams else 0
    return len(datagrams) > 1 and size > 0 and all(len(d) == size for d in datagrams[:-1]) \
        and 0 < len(datagrams[-1]) <= size


def send_burst(sock: socket.socket, datagrams: Sequence[bytes], to: Any = None) -> None:
    """Send datagrams from `sock` to `to` (None: its peer): in one GSO send when `shaped`,
    else one by one (a read each)."""
    if shaped(datagrams):
        anc = [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", len(datagrams[0])))]
        if to is None:
            sock.sendmsg([b"".join(datagrams)], anc)
        else:
            sock.sendmsg([b"".join(datagrams)], anc, 0, to)
        return
    for d in datagrams:
        sock.send(d) if to is None else sock.sendto(d, to)


Unit = tuple[str, list[bytes]]  # one read: the sending socket's label and its datagrams


def units_of(sends: Sequence[tuple[str, Sequence[bytes]]]) -> list[Unit]:
    """The reads (label, datagrams) that send_burst makes of (label, datagrams) sends."""
    out: list[Unit] = []
    for label, datagrams in sends:
        out += [(label, list(datagrams))] if shaped(datagrams) else [(label, [d]) for d in datagrams]
    return out


@dataclass
class TunPair:
    """A TUN stand-in: `tun` is the loop's end (runtime.tun.Tun with a vnet header), `far`
    the kernel's (frames to read are sent into it; frames written come out of it)."""

    near: socket.socket
    far: socket.socket
    tun: Tun

    @classmethod
    def make(cls) -> TunPair:
        near, far = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for sock in (near, far):
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                sock.setsockopt(socket.SOL_SOCKET, opt, BUFFER)
            sock.setblocking(False)
        return cls(near, far, Tun(near.fileno(), "fake0", True))

    def drain(self) -> None:
        drain(self.near)
        drain(self.far)


# ---- what the loops talk to besides sockets -----------------------------------------------


@dataclass
class FakeWriter:
    """A control connection's writer: what the loop writes is kept (conn, bytes)."""

    conn: int
    sink: list[tuple[int, bytes]]
    closed: bool = False

    def write(self, data: bytes) -> None:
        self.sink.append((self.conn, data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, _name: str) -> None:
        return None


class Done:
    def done(self) -> bool:
        return True


@dataclass
class Step:
    """What one wakeup did in one world (Rule 2), with the world's addresses as labels."""

    datagrams: dict[str, list[bytes]]
    tun: list[bytes]
    drops: dict[str, int]
    errors: dict[str, int]
    events: list[str]
    streams: list[int]
    sessions: list[tuple]
    times: list[str]  # liveness times that moved outside the wakeup (must be none)
    plans: list[tuple[str, list]]  # (who: "core" or "path", items) of each TUN write plan
    slow: list[str]  # the Path's slow callables, in the order they ran ("udp", "tun")
    rows: list[Unit]  # what the Path gave slow_udp, in order
    opened: bool  # the Path opened a datagram itself


class Diverged(AssertionError):
    """The worlds differ where Rule 2 says they may not."""


def _differ(name: str, a: Any, b: Any, where: str) -> None:
    if a != b:
        raise Diverged(f"{where}: {name} differ\n  reference {short(a)}\n  path      {short(b)}")


# one function per aspect, so that each is its own fuzz finding (engine.finding_key)
def same_datagrams(a: Step, b: Step, where: str) -> None:
    _differ("datagrams", a.datagrams, b.datagrams, where)


def same_tun(a: Step, b: Step, where: str) -> None:
    _differ("TUN frames", a.tun, b.tun, where)


def same_drops(a: Step, b: Step, where: str) -> None:
    _differ("drops", a.drops, b.drops, where)


def same_errors(a: Step, b: Step, where: str) -> None:
    _differ("I/O errors", a.errors, b.errors, where)


def same_events(a: Step, b: Step, where: str) -> None:
    _differ("events", a.events, b.events, where)
    _differ("stream writes", a.streams, b.streams, where)


def same_sessions(a: Step, b: Step, where: str) -> None:
    for x, y in zip(a.sessions, b.sessions):
        _differ(f"session {x[1]:08x}", x, y, where)
    _differ("sessions", a.sessions, b.sessions, where)


def times_in_wakeup(a: Step, b: Step, where: str) -> None:
    _differ("liveness outside the wakeup", [], a.times + b.times, where)


STRICT = (same_drops, same_errors, same_sessions, same_events, same_datagrams, same_tun, times_in_wakeup)


def assert_same(steps: Sequence[Step], where: str = "") -> None:
    """Rule 2: every aspect of every world's step equal to the first one's."""
    for other in steps[1:]:
        for check in STRICT:
            check(steps[0], other, where)
    if len(steps) == 1:
        times_in_wakeup(steps[0], steps[0], where)


def short(value: Any) -> str:
    if isinstance(value, dict) and value and all(isinstance(v, list) for v in value.values()):
        return repr({k: [_digest(d) for d in v] for k, v in value.items()})
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return repr([_digest(d) for d in value])
    text = repr(value)
    return text if len(text) < 2000 else text[:2000] + "..."


def _digest(d: bytes) -> str:
    return f"{len(d)}:{hashlib.sha256(d).hexdigest()[:8]}"


# ---- recording what the loops do -----------------------------------------------------------

_plans: list[tuple[str, list]] | None = None  # the plan calls of the step being recorded
seg_plan = iobase.plan  # the real plan (runtime/coalesce.py, native where built)


def recording_plan(who: str) -> Callable[[list], list]:
    def plan(batch: list) -> list:
        if _plans is not None and batch:
            _plans.append((who, list(batch)))
        return seg_plan(batch)
    return plan


def make_path(udp: socket.socket, tun: Tun, *, client: bool, slow: list, slow_udp: Callable,
              slow_tun: Callable, settle: Callable) -> Any:
    """fastpath.make with its plan recorded and its slow callables' calls noted in `slow`
    (kind, arguments)."""
    def noted(kind: str, call: Callable) -> Callable:
        def run(*args: Any) -> Any:
            slow.append((kind, args))
            return call(*args)
        return run
    real = fastpath._seg  # noqa: SLF001
    fastpath._seg = SimpleNamespace(split=real.split, plan=recording_plan("path"))  # noqa: SLF001
    try:
        return fastpath.make(udp, tun, client=client, slow_udp=noted("udp", slow_udp),
                             slow_tun=noted("tun", slow_tun), settle=settle)
    finally:
        fastpath._seg = real  # noqa: SLF001


class DrainSeen:
    """The Path as fastpath.absorb sees it, noting whether it opened anything itself."""

    def __init__(self, path: Any) -> None:
        self.path, self.opened = path, False

    def drain(self) -> list:
        rows = self.path.drain()
        self.opened = self.opened or any(row[5] > 0 for row in rows)
        return rows


class World:
    """What the server and client worlds share: the TUN, the liveness and the steps."""

    native: bool
    core: Any
    outputs: Outputs
    path: Any
    pair: TunPair
    labels: dict
    sink: list
    events: list
    slow: list
    sync: fastpath.Sync
    loop: Any  # the ServerDaemon or Client

    def label(self, addr: Any) -> str | None:
        if addr is None:
            return None
        return self.labels.get(tuple(addr[:2]), f"?{addr!r}")

    def peers(self) -> list[Any]:
        raise NotImplementedError

    def step(self, wake: Callable[[], None], collect: Callable[[], dict[str, list[bytes]]]) -> Step:
        global _plans
        self.sink.clear()
        self.events.clear()
        self.slow.clear()
        errors_before = self.errors()
        before = {id(p): (p.live.last_received, p.live.last_sent) for p in self.peers()}
        _plans, saved = [], iobase.plan
        iobase.plan = recording_plan("core")
        t0 = time.monotonic()
        try:
            wake()
        finally:
            t1 = time.monotonic()
            iobase.plan = saved
            plans, _plans = _plans, None
        seen = DrainSeen(self.path)
        if self.path is not None:  # the loop's own absorb (fastpath Rule 3), through DrainSeen
            self.loop.path = seen
            try:
                self.loop.absorb()
            finally:
                self.loop.path = self.path
        times, views = [], []
        for peer in self.peers():
            rx, tx = before.get(id(peer), (None, None))
            moved = (peer.live.last_received != rx, peer.live.last_sent != tx)
            for did, value in zip(moved, (peer.live.last_received, peer.live.last_sent)):
                if did and rx is not None and not t0 <= value <= t1:
                    times.append(f"{peer.session_id:08x}: {value} not in [{t0}, {t1}]")
            views.append(self.view(peer) + (moved if rx is not None else None,))
        rows = [(self.label(args[0]), list(args[1])) for kind, args in self.slow if kind == "udp"]
        return Step(collect(), drain(self.pair.far), dict(+self.core.drops), dict(self.errors() - errors_before),
                    list(self.events), [conn for conn, _ in self.sink], views, times, plans,
                    [kind for kind, _ in self.slow], rows, seen.opened)

    def errors(self) -> Counter:
        errors = Counter(self.outputs.errors)
        if self.path is not None:
            errors.update(self.path.errors)
        return errors

    def view(self, peer: Any) -> tuple:
        """0 state, 1 session id, 2 endpoint, 3 transport, 4 traffic, 5 epochs, 6 counter,
        7 peer takes partial, 8 exhausted, 9 asked for a rekey (server), 10-11 rekey (client)."""
        data = peer.data
        epochs = tuple(e.number if e is not None else None for e in (data.previous, data.current, data.pending)) \
            if data is not None else None
        t = peer.traffic
        return (peer.state, peer.session_id, self.label(getattr(peer, "endpoint", None)), peer.transport,
                (t.rx_bytes, t.rx_packets, t.tx_bytes, t.tx_packets), epochs,
                data.current.counter if data is not None and data.current is not None else None,
                data.peer_takes_partial if data is not None else None, data.exhausted if data is not None else None,
                getattr(peer, "_asked_epoch", None), getattr(peer, "_rekey_epoch", None),
                getattr(peer, "_rekey", None) is not None)

    def push(self) -> None:
        """After the test fed the core something itself (streams, a handshake): what the
        loop does after each thing it fed (serverd Rule 6, clientloop Rule 4)."""
        if self.path is not None:
            self.sync.push(self.path)

    def send_tun(self, frames: Sequence[bytes]) -> None:
        for frame in frames:
            self.pair.far.send(frame)

    def send_units(self, units: Sequence[Unit]) -> None:
        for label, datagrams in units:
            self.send_udp([(label, datagrams)])

    def send_udp(self, sends: Sequence[tuple[str, Sequence[bytes]]]) -> None:
        raise NotImplementedError

    def wake_udp(self) -> Step:
        raise NotImplementedError


# ---- the server's world -------------------------------------------------------------------


class ServerWorld(World):
    """A ServerCore behind a ServerDaemon's handlers or a Path (Rule 1).  Its clients are
    sockets (`clients[i]`, and `roams[i]`: the same client from a new address)."""

    def __init__(self, core: ServerCore, native: bool, family: int = socket.AF_INET, clients: int = 4,
                 kit: ServerKit | None = None) -> None:
        self.native, self.core = native, core
        self.kit = kit or ServerKit.make(family, clients)
        self.kit.drain()
        self.udp, self.pair = self.kit.udp, self.kit.pair
        self.labels = {tuple(s.getsockname()[:2]): f"c{i}" for i, s in enumerate(self.kit.clients)}
        self.labels.update({tuple(s.getsockname()[:2]): f"r{i}" for i, s in enumerate(self.kit.roams)})
        self.sink: list[tuple[int, bytes]] = []
        self.events: list[str] = []
        self.slow: list[tuple[str, tuple]] = []
        core.takes_partial = True  # what ServerDaemon.run does on a TUN with a vnet header
        d = self.daemon = self.loop = ServerDaemon.__new__(ServerDaemon)
        d.core, d.conns = core, {}
        d.outputs = self.outputs = Outputs(self.udp, self.pair.tun, d.conns, LOG)
        self.outputs.event = lambda ev: self.events.append(type(ev).__name__)  # type: ignore[method-assign]
        d.receiver = Receiver(self.udp)
        d.path = self.path = None
        d.sync = self.sync = fastpath.Sync()
        if native:
            d.path = self.path = make_path(self.udp, self.pair.tun, client=False, slow=self.slow,
                                           slow_udp=d.slow_udp, slow_tun=d.slow_tun, settle=d.flush)
        self.attach()

    def attach(self) -> None:
        """Connections and Path copies for the sessions the core has (made before the world)."""
        for conn, session in self.core._conns.items():  # noqa: SLF001
            self.daemon.conns.setdefault(conn, StreamConn(FakeWriter(conn, self.sink)))
        if self.native:
            self.core.on_change = self.sync.mark
            for session in self.core._conns.values():  # noqa: SLF001
                session.on_change = self.sync.mark
                self.sync.mark(session)
        self.push()

    def peers(self) -> list[ServerSession]:
        return [s for s in self.core._conns.values()]  # noqa: SLF001

    def address(self, i: int) -> Any:
        return self.kit.clients[i].getsockname()

    def collect(self) -> dict[str, list[bytes]]:
        got = {}
        for prefix, socks in (("c", self.kit.clients), ("r", self.kit.roams)):
            for i, sock in enumerate(socks):
                datagrams = drain(sock)
                if datagrams:
                    got[f"{prefix}{i}"] = datagrams
        return got

    def send_udp(self, sends: Sequence[tuple[str, Sequence[bytes]]]) -> None:
        """(socket label "c<i>" or "r<i>", datagrams) pairs, sent in order (send_burst each)."""
        to = self.udp.getsockname()
        for label, datagrams in sends:
            socks = self.kit.clients if label[0] == "c" else self.kit.roams
            send_burst(socks[int(label[1:])], datagrams, to)

    def wake_udp(self) -> Step:
        return self.step(self.path.on_udp if self.path is not None else self.daemon.on_udp, self.collect)

    def wake_tun(self) -> Step:
        return self.step(self.path.on_tun if self.path is not None else self.daemon.on_tun, self.collect)


@dataclass
class ServerKit:
    """The sockets of one server world (kept across fuzz inputs: drained before each)."""

    udp: socket.socket
    pair: TunPair
    clients: list[socket.socket]
    roams: list[socket.socket]

    @classmethod
    def make(cls, family: int, clients: int) -> ServerKit:
        return cls(udp_socket(family), TunPair.make(), [udp_socket(family) for _ in range(clients)],
                   [udp_socket(family) for _ in range(clients)])

    def drain(self) -> None:
        for sock in (self.udp, *self.clients, *self.roams):
            drain(sock)
        self.pair.drain()


# ---- the client's world -------------------------------------------------------------------


class ClientWorld(World):
    """A ClientCore behind a Client's handlers or a Path (Rule 1); its UDP socket is connected
    to `server`, a socket the test sends the server's datagrams from."""

    def __init__(self, core: ClientCore, native: bool, family: int = socket.AF_INET,
                 kit: ClientKit | None = None) -> None:
        self.native, self.core = native, core
        self.kit = kit or ClientKit.make(family)
        self.kit.drain()
        self.udp, self.pair, self.server = self.kit.udp, self.kit.pair, self.kit.server
        self.labels = {tuple(self.server.getsockname()[:2]): "server"}
        self.sink, self.events, self.slow = [], [], []
        core.takes_partial = True  # Client.open_session on a TUN with a vnet header (before the handshake)
        c = self.client = self.loop = Client.__new__(Client)
        c.core, c.udp, c.conns = core, self.udp, {0: StreamConn(FakeWriter(0, self.sink))}
        c.outputs = self.outputs = Outputs(self.udp, self.pair.tun, c.conns, LOG)
        self.outputs.event = lambda ev: self.events.append(type(ev).__name__)  # type: ignore[method-assign]
        c.receiver = Receiver(self.udp)
        c.ended, c.established = None, Done()
        c.path = self.path = None
        c.sync = self.sync = fastpath.Sync()
        if native:
            core.on_change = self.sync.mark
            c.path = self.path = make_path(self.udp, self.pair.tun, client=True, slow=self.slow, slow_udp=c.slow_udp,
                                           slow_tun=c.slow_tun, settle=c.pump)
            self.sync.mark(core)
        self.push()

    def peers(self) -> list[ClientCore]:
        return [self.core]

    def collect(self) -> dict[str, list[bytes]]:
        return {"server": drain(self.server)}

    def send_udp(self, sends: Sequence[tuple[str, Sequence[bytes]]]) -> None:
        """("server", datagrams) pairs, sent in order from the server's socket (send_burst each)."""
        to = self.udp.getsockname()
        for _label, datagrams in sends:
            send_burst(self.server, datagrams, to)

    def wake_udp(self) -> Step:
        return self.step(self.path.on_udp if self.path is not None else self.client.on_udp, self.collect)

    def wake_tun(self) -> Step:
        return self.step(self.path.on_tun if self.path is not None else self.client.on_tun, self.collect)


@dataclass
class ClientKit:
    udp: socket.socket
    server: socket.socket
    pair: TunPair

    @classmethod
    def make(cls, family: int) -> ClientKit:
        udp, server = udp_socket(family), udp_socket(family)
        udp.connect(server.getsockname())
        return cls(udp, server, TunPair.make())

    def drain(self) -> None:
        drain(self.udp)
        drain(self.server)
        self.pair.drain()


# ---- sessions made by hand (Rule 4) -------------------------------------------------------

SIDS = (0x11111111, 0x22222222, 0x33333333, 0x44444444)


def keys(sid: int, epoch: int) -> tuple[bytes, bytes]:
    """(client-to-server, server-to-client) keys of a hand-made session's epoch."""
    return (hashlib.sha256(b"c2s %d %d" % (sid, epoch)).digest(),
            hashlib.sha256(b"s2c %d %d" % (sid, epoch)).digest())


@cache
def bare_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """TLS contexts for control channels that never handshake (hand-made sessions)."""
    return ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


@dataclass(frozen=True)
class Knobs:
    """One fuzz world's settings, from the input's first bytes."""

    client_side: bool
    c2c: bool
    cipher: str
    rekeyed: bool  # sessions hold a previous epoch 0 and seal with 1
    pending: bool  # and hold a pending epoch (2 when rekeyed, else 1)
    partial: int  # bit i: session i's peer takes partial checksums
    no_endpoint: bool  # the last session has none yet
    limit: int  # 0: defaults; else rekey_packets (reject 3/2 of it)

    @classmethod
    def of(cls, head: bytes) -> Knobs:
        a, b = head[:2].ljust(2, b"\0")
        return cls(bool(a & 1), bool(a & 2), CIPHERS[a >> 2 & 1], bool(a & 8), bool(a & 16), b & 15,
                   bool(a & 32), (8 + (b >> 4) * 4) if a & 64 else 0)

    def limits(self) -> Limits:
        if not self.limit:
            return Limits()
        return Limits(rekey_packets=self.limit, reject_packets=self.limit * 3 // 2)

    def epochs(self) -> tuple[tuple[int, bool], ...]:
        """(number, active) in install order."""
        made = [(0, True), (1, True)] if self.rekeyed else [(0, True)]
        if self.pending:
            made.append((len(made), False))
        return tuple(made)


def hand_server(knobs: Knobs, endpoints: Sequence[Any], now: float) -> ServerCore:
    """A ServerCore with one established UDP session per endpoint (a None one has none yet)."""
    config = ServerConfig(client_to_client=knobs.c2c, limits=knobs.limits())
    core = ServerCore(config, bare_contexts()[0], Pool())
    core.takes_partial = True
    for i, endpoint in enumerate(endpoints):
        core.connection_made(i + 1, now)
        session = core._conns[i + 1]  # noqa: SLF001
        session.name = f"c{i}"
        session.session_id, session.assignment = SIDS[i], core.policy.assign(session.name)
        session.addresses = session.assignment.packed_addresses()
        session.establish(SIDS[i], knobs.cipher, config.limits, config.keepalive, config.server_dead_after, now)
        for number, active in knobs.epochs():
            c2s, s2c = keys(SIDS[i], number)
            session.data.install(number, s2c, c2s, now, active=active)
        session.data.peer_takes_partial = bool(knobs.partial >> i & 1)
        session.endpoint = endpoint
        core.register(session)
    return core


def hand_client(knobs: Knobs, now: float) -> ClientCore:
    config = ClientConfig("vpn.example.test", "0" * 64, limits=knobs.limits())
    core = ClientCore(config, bare_contexts()[1])
    core.takes_partial = True
    core.session_id = SIDS[0]
    core.establish(SIDS[0], knobs.cipher, config.limits, 10, 120, now)
    for number, active in knobs.epochs():
        c2s, s2c = keys(SIDS[0], number)
        core.data.install(number, c2s, s2c, now, active=active)
    core.data.peer_takes_partial = bool(knobs.partial & 1)
    return core


def seal_as(cipher: str, key: bytes, kind: int, tag: int, flags: int, sid: int, counter: int, payload: bytes) -> bytes:
    """A datagram as a peer seals it (wire.py Rule 1), with cryptography's AEAD."""
    header = HEADER.pack(kind, tag & 0xFF, flags & 0xFF, 0, sid, counter)
    return header + make_aead(cipher, key, native=False).encrypt(NONCE_PREFIX + header[8:], payload, header)


# ---- the fuzz target (Rule 3) -------------------------------------------------------------

CLIENTS = 3
MAX_READS = 48  # reads per UDP wakeup of a script: within one drain (iobase.BATCH), nothing left over


@cache
def kits(client_side: bool) -> tuple[Any, Any]:
    """The reference's and the Path's sockets."""
    if client_side:
        return ClientKit.make(socket.AF_INET), ClientKit.make(socket.AF_INET)
    return tuple(ServerKit.make(socket.AF_INET, CLIENTS) for _ in range(2))  # type: ignore[return-value]


class Script:
    """One input's worlds (the reference, and with a Path the Path's) and the state its
    records refer to."""

    def __init__(self, data: bytes) -> None:
        self.knobs = knobs = Knobs.of(data[:2])
        self.records = records(data[2:])
        now = time.monotonic() - 1.0
        natives = (False, True) if NATIVE else (False,)
        self.worlds: list[World] = []
        for native, kit in zip(natives, kits(knobs.client_side)):
            if knobs.client_side:
                self.worlds.append(ClientWorld(hand_client(knobs, now), native, kit=kit))
                continue
            endpoints = [s.getsockname() for s in kit.clients]
            if knobs.no_endpoint:
                endpoints[-1] = None
            self.worlds.append(ServerWorld(hand_server(knobs, endpoints, now), native, kit=kit))
        self.made: list[bytes] = []
        self.counters: Counter[tuple[int, int]] = Counter()
        self.udp: list[tuple[str, list[bytes]]] = []
        self.frames: list[bytes] = []
        self.seq = 1000
        self.streams = [7000 * (i + 1) for i in range(CLIENTS)]

    def run(self) -> None:
        for op, payload in self.records:
            kind = (op & 0x7F) % 10
            if kind <= 5:
                self.datagram(kind, payload, bool(op & 0x80))
            elif kind == 6:
                self.udp.append(("burst", []))
            elif kind == 7:
                self.wake_udp()
            elif kind == 8:
                self.frames.append(self.frame(payload))
            else:
                self.wake_tun()
        self.wake_udp()
        self.wake_tun()

    # -- datagrams -----------------------------------------------------------------------
    def datagram(self, kind: int, payload: bytes, roam: bool) -> None:
        if len(self.udp) >= MAX_READS:
            self.wake_udp()
        head = payload[:1] or b"\0"
        client = 0 if self.knobs.client_side else head[0] % CLIENTS
        if kind == 0:
            datagram = payload[1:]
        elif kind == 1:
            datagram = self.sealed(client, payload[1:])
        else:
            datagram = self.altered(kind - 2, payload[1:])
        self.made.append(datagram)
        label = "server" if self.knobs.client_side else ("r" if roam else "c") + str(client)
        if self.udp and self.udp[-1][0] == "burst":
            self.udp[-1] = ("burst-" + label, [datagram])
        elif self.udp and self.udp[-1][0] == "burst-" + label:
            self.udp[-1][1].append(datagram)
        else:
            self.udp.append((label, [datagram]))

    def sealed(self, client: int, spec: bytes) -> bytes:
        """[epoch|type|flags][addresses][counter][payload...]: a datagram under the client's keys."""
        a, b, c = spec[:3].ljust(3, b"\0")
        epoch, kind, flags = a & 3, (1, 1, 2, 3 + (a >> 7))[a >> 2 & 3], a >> 4 & 7
        sid = SIDS[client]
        counter_key = (client, epoch)
        counter = self.counters[counter_key] if not c & 0x80 else (c & 0x7F)
        self.counters[counter_key] = max(self.counters[counter_key], counter + 1)
        inner = self.inner(client, b, spec[3:]) if kind == 1 else b""
        c2s, s2c = keys(sid, epoch)
        key = s2c if self.knobs.client_side else c2s
        return seal_as(self.knobs.cipher, key, kind, epoch, flags, sid, counter, inner)

    def address(self, client: int, six: bool) -> bytes:
        n = 2 + client  # link.Pool: 10.8.0.N and fd00:8::N by order of arrival
        return bytes([10, 8, 0, n]) if not six else bytes.fromhex("fd000008" + "00" * 11) + bytes([n])

    def inner(self, client: int, how: int, rest: bytes) -> bytes:
        """An inner packet: v4 or v6; from its own address, another client's or a spoofed one;
        to the outside, the server, another client or an unknown tunnel address; TCP with a
        partial checksum or UDP; or junk."""
        six, src_how, dst_how = bool(how & 1), how >> 1 & 3, how >> 3 & 3
        if how & 0x40:
            return rest[:200]
        src = self.address(client if src_how < 2 else (client + 1) % CLIENTS, six)
        if src_how == 3:
            src = bytes([src[0] ^ 0x55]) + src[1:]
        other = (client + 1 + (rest[:1] or b"\0")[0] % (CLIENTS - 1)) % CLIENTS
        dst = ((OUTSIDE6 if six else OUTSIDE4), (SERVER6 if six else SERVER4), self.address(other, six),
               self.address(9, six))[dst_how]
        if how & 0x20:  # one TCP stream per client: consecutive segments may be joined again
            data, seq = rest[:300], self.streams[client]
            self.streams[client] = (seq + len(data)) & 0xFFFFFFFF
            return tcp_packet(src, dst, seq, data, ACK)
        return ip_packet(src, dst, rest[:300])

    def altered(self, how: int, arg: bytes) -> bytes:
        """An earlier datagram replayed (0), patched (1), cut (2) or moved to another session (3)."""
        if not self.made:
            return arg
        base = self.made[(arg[:1] or b"\0")[0] % len(self.made)]
        rest = arg[1:]
        if how == 1 and base:
            at, patch = (rest[0] % len(base) if rest else 0), rest[1:] or b"\x01"
            return base[:at] + bytes(x ^ y for x, y in zip(base[at:], patch)) + base[at + len(patch):]
        if how == 2:
            return base[: rest[0] if rest else 31]
        if how == 3 and len(base) >= 8:
            sid = SIDS[(rest[:1] or b"\0")[0] % len(SIDS)] ^ ((rest[1] if len(rest) > 1 else 0) << 8)
            return base[:4] + struct.pack("!I", sid) + base[8:]
        return base

    # -- TUN frames ----------------------------------------------------------------------
    def frame(self, spec: bytes) -> bytes:
        """[kind|version][destination][mss][payload...]"""
        a, b, c = spec[:3].ljust(3, b"\0")
        six, shape = bool(a & 1), a >> 1 & 7
        rest = spec[3:]
        if shape == 7:
            return rest
        src = OUTSIDE6 if six else OUTSIDE4
        dst = self.address(b % (CLIENTS + 1), six) if not b & 0x80 else (SERVER6 if six else SERVER4)
        if self.knobs.client_side:
            src, dst = self.address(0, six), src
        data = (rest * (1 + c // 16))[:4000] if rest else body(c * 8, c)
        self.seq += len(data) + 1
        if shape == 0 and c == 0xFF:  # a packet of 65535 bytes: its datagram is too big to send
            return plain_frame(ip_packet(src, dst, bytes(65535 - (40 if six else 20))))
        if shape in (0, 1):
            packet = tcp_packet(src, dst, self.seq, data[:1400]) if shape else ip_packet(src, dst, data[:1400])
            return plain_frame(packet)
        if shape == 2:
            return udp_partial_frame(src, dst, data[:1400])
        if shape == 3:
            return vnet.partial(20 if not six else 40, 16) + tcp_packet(src, dst, self.seq, data[:1400])
        return tso_frame(src, dst, self.seq, data, max(1, 100 + (c & 0x3F) * 20) if shape != 6 else 0)

    # -- wakeups -------------------------------------------------------------------------
    def wake_udp(self) -> None:
        sends = [(label.removeprefix("burst-"), d) for label, d in self.udp if d]
        self.udp = []
        units = units_of(sends)[:MAX_READS]
        if not units:
            return
        steps = []
        for world in self.worlds:
            world.send_units(units)
            steps.append(world.wake_udp())
        assert_same(steps, "UDP wakeup")

    def wake_tun(self) -> None:
        frames, self.frames = self.frames[:48], []
        if not frames:
            return
        steps = []
        for world in self.worlds:
            world.send_tun(frames)
            steps.append(world.wake_tun())
        assert_same(steps, "TUN wakeup")


def run_path(data: bytes) -> None:
    Script(data).run()


def path_seeds() -> list[bytes]:
    def sealed(client: int, a: int, b: int, c: int, payload: bytes, op: int = 1) -> bytes:
        return record(op, bytes([client, a, b, c]) + payload)

    def frame(a: int, b: int, c: int, payload: bytes = b"") -> bytes:
        return record(8, bytes([a, b, c]) + payload)

    wake, wake_tun = record(7, b""), record(9, b"")
    # DATA under epoch 0 from the clients' own v4 addresses to the outside (a TCP one, a v6
    # one), a keepalive; c2 last (it may have no endpoint yet: the core's, after the Path's)
    valid = b"".join(sealed(i % 2, 0x00, 0x00, 0, b"hello %d" % i) for i in range(4))
    valid += sealed(0, 0x00, 0x20, 0, b"tcp") + sealed(1, 0x00, 0x01, 0, b"six") + sealed(0, 0x08, 0, 0, b"")
    valid += sealed(2, 0x00, 0x00, 0, b"c2") + sealed(2, 0x08, 0, 0, b"")
    # a replay, a forged replay, a cut one, one moved to another session, raw junk
    attacks = (record(2, b"\x00\x00") + record(3, b"\x00\x01\x20\xff") + record(4, b"\x00\x02\x10")
               + record(5, b"\x00\x03\x01") + record(0, b"\x00" + b"\x01" * 40))
    # a spoofed source, to another client, another's source, unknown epoch, bad type, then a
    # first FL_TAKES_PARTIAL (the core's, last)
    odd = (sealed(0, 0x00, 0x04, 0, b"spoofed") + sealed(0, 0x00, 0x10, 0, b"to client")
           + sealed(1, 0x00, 0x06, 0, b"other src") + sealed(0, 0x03, 0, 0, b"unknown epoch")
           + sealed(0, 0x0C, 0, 0, b"bad type") + sealed(1, 0x40, 0x00, 0, b"partial flag"))
    # a GSO burst (one GRO read), then c2 roams (the core's, last)
    burst = record(6, b"") + b"".join(sealed(1, 0x00, 0x00, 0, b"x" * 40) for _ in range(5))
    roam = sealed(2, 0x00, 0x20, 0, b"from afar", op=129) + sealed(2, 0x00, 0x20, 0, b"again", op=129)
    # a TCP stream's segments with FL_CSUM_PARTIAL | FL_CONTINUES: the TUN gets them joined
    stream = b"".join(sealed(0, 0x30, 0x20, 0, b"s" * 100) for _ in range(4))
    frames = (frame(0, 0, 20) + frame(2, 1, 60) + frame(8, 2, 30) + frame(9, 0, 9) + frame(4, 1, 5)
              + frame(6, 0, 3) + frame(0, 3, 4) + frame(0, 0x80, 4) + frame(14, 0, 0, b"junk") + frame(12, 2, 40)
              + frame(0, 1, 0xFF))
    alone = sealed(1, 0x08, 0, 0, b"") + wake  # a keepalive: life, nothing else
    script = valid + attacks + wake + alone + odd + wake + stream + burst + roam + wake + frames + wake_tun
    # the pending epoch's first datagram, after which the previous epoch is gone
    rekey = sealed(0, 0x01, 0, 0, b"pending") + wake + sealed(0, 0x00, 0, 0, b"retired") + sealed(0, 0x01, 0, 0, b"")
    return [bytes([0, 0]) + script + rekey, bytes([2 | 8 | 16 | 32, 0x05]) + script + script + rekey,
            bytes([1, 0]) + script, bytes([1 | 4 | 8 | 16 | 64, 0x11]) + script + frames * 4 + wake_tun + rekey,
            bytes([64 | 16, 0x03]) + frames * 6 + wake_tun + script + rekey,
            bytes([2 | 4, 0x07]) + valid + odd + burst + roam + attacks + wake + frames + script]


PATH_TOKENS = (record(7, b""), record(9, b""), record(6, b""), b"\x01\x00\x05\x00\x00\x00\x00\x00",
               b"\x08\x00\x03\x08\x00\x20")
TARGETS = (Target("native-path", run_path, path_seeds, PATH_TOKENS, max_len=4096),)
