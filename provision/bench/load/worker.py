"""The load generator process: many `ClientCore` sessions on one asyncio loop, over real
TCP+TLS and UDP sockets, each with its own certificate; it runs inside the load namespace.

    python -m provision.bench.load.worker SPEC.json     (started by provision.bench.load.run)

Rule 1: each session behaves like the real client (runtime/clientloop.py): up = handshake
        done and a first authenticated datagram; on any end it reconnects at once, then
        waits 0.5 s, and after each further failure min(2 x wait, 30 s) x uniform(0.8, 1.0)
        (`next_backoff`, the client's jitter against a thundering herd); a handshake times
        out after 10 s.
Rule 2: the first connects of the ramp are gated by `concurrency` (handshakes in flight);
        reconnects are not gated (every client acts alone, as real ones do).
Rule 3: after each session comes up it sends one ICMP echo from its tunnel address to the
        server's; with `ping_every` > 0 it sends one every that many seconds, else only
        keepalives (made by the core) travel.
Rule 4: one JSON line per second on stdout (the status); nothing else is printed there.
        Timers of all sessions share one scheduler (a heap swept every 50 ms).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import random
import resource
import socket
import sys
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

from provision.bench.load.packets import ipv4_echo, is_echo_reply_to
from provision.bench.load.stats import percentiles
from runtime.proto import tls
from runtime.proto.client import ClientCore
from runtime.proto.config import ClientConfig
from runtime.proto.events import (CloseConnection, HandshakeCompleted, HandshakeFailed, PeerDead, SendDatagram,
                                  SendStream, SessionClosed, WriteTun)

CONNECT_TIMEOUT, BACKOFF_FIRST, BACKOFF_MAX, SWEEP = 10.0, 0.5, 30.0, 0.05


@dataclass(frozen=True)
class Spec:
    """What the orchestrator asks for (read from a JSON file)."""

    server: str
    control_port: int
    data_port: int
    server_name: str
    pin: str
    ca: str  # path of the CA certificate
    certs: list[str]  # one folder per client holding cert.pem and key.pem; the folder name is the CN
    sources: list[str]  # underlay addresses the sessions bind to, round-robin
    concurrency: int = 64
    ping_every: float = 0.0
    keepalive: float = 10.0

    @classmethod
    def load(cls, path: str) -> Spec:
        return cls(**json.loads(Path(path).read_text()))


@dataclass
class Totals:
    attempts: int = 0
    handshakes: int = 0
    failures: int = 0
    ended: int = 0
    echo_tx: int = 0
    echo_rx: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)  # seconds, connect → up, first sessions only


class Timers:
    """One heap of (deadline, seq, session, core) for every session's core timer."""

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, Session, object]] = []
        self.seq = itertools.count()

    def arm(self, session: Session) -> None:
        core = session.core
        deadline = core.next_deadline() if core is not None else None
        if deadline is not None and deadline != session.armed:
            session.armed = deadline
            heapq.heappush(self.heap, (deadline, next(self.seq), session, core))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(SWEEP)
            now = time.monotonic()
            while self.heap and self.heap[0][0] <= now:
                deadline, _, session, core = heapq.heappop(self.heap)
                if session.core is core and session.armed == deadline:
                    session.armed = None
                    core.handle_timer(now)  # type: ignore[union-attr]
                    session.pump()


class Session:
    """One client: its certificate, its source address and its current core."""

    def __init__(self, index: int, ctx: object, source: str, gen: Generator) -> None:
        self.index, self.ctx, self.source, self.gen = index, ctx, source, gen
        self.core: ClientCore | None = None
        self.armed: float | None = None
        self.up = False
        self.assignment = None
        self.udp: socket.socket | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.ended: asyncio.Future[str] | None = None
        self.established: asyncio.Future[None] | None = None
        self.seq = 0
        self.rng = random.Random(index)  # seeded: a rerun draws the same waits

    # -- lifecycle (the client's backoff) -------------------------------------------------
    async def keep(self, gate: asyncio.Semaphore) -> None:
        backoff, ever_up = BACKOFF_FIRST, False
        while True:
            if await self.session(None if ever_up else gate, record=not ever_up) is None:
                ever_up, backoff = True, BACKOFF_FIRST  # it was up: reconnect at once
                continue
            await asyncio.sleep(backoff)
            backoff = next_backoff(backoff, self.rng)

    async def session(self, gate: asyncio.Semaphore | None, record: bool) -> str | None:
        """One attempt; None after a session that was up and then ended, else the failure."""
        totals = self.gen.totals
        try:
            if gate is not None:
                async with gate:
                    started = await self.attempt()
            else:
                started = await self.attempt()
        except (OSError, asyncio.TimeoutError, _Ended) as e:
            reason = str(e) if isinstance(e, _Ended) else type(e).__name__
            totals.failures += 1
            totals.reasons[reason] = totals.reasons.get(reason, 0) + 1
            self.close()
            return reason
        totals.handshakes += 1
        if record:
            totals.latencies.append(time.monotonic() - started)
        self.mark_up()
        reason = await self.ended  # type: ignore[misc]
        totals.ended += 1
        totals.reasons[f"ended:{reason}"] = totals.reasons.get(f"ended:{reason}", 0) + 1
        self.close()
        return None

    async def attempt(self) -> float:
        self.gen.totals.attempts += 1
        started = time.monotonic()
        await self.open(started)
        return started

    async def open(self, started: float) -> None:
        loop = asyncio.get_running_loop()
        self.ended, self.established = loop.create_future(), loop.create_future()
        spec = self.gen.spec
        self.core = ClientCore(ClientConfig(spec.server_name, spec.pin), self.ctx)  # type: ignore[arg-type]
        self.open_udp()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.bind((self.source, 0))
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (spec.server, spec.control_port)), CONNECT_TIMEOUT)
        except BaseException:
            sock.close()
            raise
        reader, self.writer = await asyncio.open_connection(sock=sock)
        self.core.connect(time.monotonic())
        self.pump()
        asyncio.ensure_future(self.read(reader, self.core))
        await asyncio.wait_for(asyncio.shield(self.established), CONNECT_TIMEOUT + 1)
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while self.core is not None and self.core.live.last_received <= started:
            if self.ended.done():
                raise _Ended(self.ended.result())
            if time.monotonic() > deadline:
                raise _Ended("no-datagram")
            await asyncio.sleep(0.02)

    def open_udp(self) -> None:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind((self.source, 0))
        udp.connect((self.gen.spec.server, self.gen.spec.data_port))
        udp.setblocking(False)
        self.udp = udp
        asyncio.get_running_loop().add_reader(udp.fileno(), self.on_udp)

    def close(self) -> None:
        if self.udp is not None:
            asyncio.get_running_loop().remove_reader(self.udp.fileno())
            self.udp.close()
            self.udp = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.up:
            self.gen.count_up(-1)
        self.core, self.armed, self.up = None, None, False

    def mark_up(self) -> None:
        self.up = True
        self.gen.count_up(+1)
        self.send_echo()

    # -- I/O ------------------------------------------------------------------------------
    async def read(self, reader: asyncio.StreamReader, core: ClientCore) -> None:
        try:
            while data := await reader.read(65536):
                if self.core is not core:
                    return
                core.receive_stream(data, time.monotonic())
                self.pump()
        except (ConnectionError, OSError):
            pass
        except Exception as e:  # a protocol error raised by the core ends this session only
            self.end(f"error:{type(e).__name__}")
            return
        if self.core is core:
            core.connection_lost(time.monotonic())
            self.pump()
            self.end("connection-closed")

    def on_udp(self) -> None:
        for _ in range(16):
            try:
                data = self.udp.recv(65535)  # type: ignore[union-attr]
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                continue
            if self.core is None:
                return
            packet = self.core.open_datagram(data, time.monotonic())
            if packet is not None:
                self.on_packet(packet)
        self.pump()

    def on_packet(self, packet: bytes) -> None:
        if self.assignment is not None and is_echo_reply_to(packet, self.assignment.address4.ip, self.index):
            self.gen.totals.echo_rx += 1

    def send_echo(self) -> None:
        if self.core is None or self.assignment is None:
            return
        a = self.assignment
        self.seq += 1
        datagram = self.core.seal_packet(ipv4_echo(a.address4.ip, a.server_address4, self.index, self.seq),
                                         time.monotonic())
        if datagram is not None:
            self.send(datagram)
            self.gen.totals.echo_tx += 1
        self.pump()

    def send(self, datagram: bytes) -> None:
        try:
            self.udp.send(datagram)  # type: ignore[union-attr]
        except (OSError, AttributeError):
            pass

    def pump(self) -> None:
        core = self.core
        if core is None:
            return
        for out in core.take_outputs():
            kind = type(out)
            if kind is SendDatagram:
                self.send(out.data)
            elif kind is SendStream:
                if self.writer is not None and not self.writer.is_closing():
                    self.writer.write(out.data)
            elif kind is CloseConnection:
                if self.writer is not None:
                    self.writer.close()
            elif kind is HandshakeCompleted:
                self.assignment = out.assignment
                if self.established is not None and not self.established.done():
                    self.established.set_result(None)
            elif kind in (HandshakeFailed, SessionClosed, PeerDead):
                self.end(getattr(out, "reason", "peer-dead"))
            elif kind is WriteTun:
                self.on_packet(out.packet)
        self.gen.timers.arm(self)

    def end(self, reason: str) -> None:
        if self.ended is not None and not self.ended.done():
            self.ended.set_result(reason)
        if self.established is not None and not self.established.done():
            self.established.set_exception(_Ended(reason))
            self.established.exception()  # read it, so asyncio does not warn if nobody waits

    def stale(self, now: float, after: float) -> bool:
        core = self.core
        return bool(self.up and core is not None and now - core.live.last_received > after)


def next_backoff(backoff: float, rng: random.Random) -> float:
    """The wait after the next failure: runtime/clientloop.py `reconnect`, to the letter."""
    return min(backoff * 2, BACKOFF_MAX) * rng.uniform(0.8, 1.0)


class _Ended(Exception):
    """The session ended (or was refused) before it was up."""


class Generator:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.totals = Totals()
        self.timers = Timers()
        creds = [tls.Credentials.from_files(Path(spec.ca), Path(d) / "cert.pem", Path(d) / "key.pem")
                 for d in spec.certs]
        self.sessions = [Session(i, tls.client_context(c), spec.sources[i % len(spec.sources)], self)
                         for i, c in enumerate(creds)]
        self.t0 = time.monotonic()
        self.ramp_s: float | None = None
        self.up = 0
        self.all_up_t: float | None = None  # when the count of up sessions last reached all

    def count_up(self, delta: int) -> None:
        self.up += delta
        if self.up == len(self.sessions):
            self.all_up_t = time.monotonic()
            if self.ramp_s is None:
                self.ramp_s = self.all_up_t - self.t0

    async def run(self) -> None:
        gate = asyncio.Semaphore(self.spec.concurrency)
        asyncio.ensure_future(self.timers.run())
        self.t0 = time.monotonic()
        tasks = [asyncio.ensure_future(s.keep(gate)) for s in self.sessions]
        if self.spec.ping_every > 0:
            asyncio.ensure_future(self.pinger())
        self.tasks = tasks  # kept referenced
        while True:
            await asyncio.sleep(1.0)
            self.report()

    async def pinger(self) -> None:
        while True:
            await asyncio.sleep(self.spec.ping_every / max(1, len(self.sessions)))
            for s in self.sessions:  # spread: one full pass per ping_every
                if s.up:
                    s.send_echo()
                await asyncio.sleep(self.spec.ping_every / max(1, len(self.sessions)))

    def report(self) -> None:
        now, t = time.monotonic(), self.totals
        up = sum(s.up for s in self.sessions)
        line = {"t": round(now, 3), "up": up, "stale": sum(s.stale(now, 2.5 * self.spec.keepalive) for s in self.sessions),
                "attempts": t.attempts, "handshakes": t.handshakes, "failures": t.failures, "ended": t.ended,
                "echo_tx": t.echo_tx, "echo_rx": t.echo_rx, "reasons": t.reasons,
                "ramp_s": None if self.ramp_s is None else round(self.ramp_s, 3),
                "all_up_t": None if self.all_up_t is None else round(self.all_up_t, 3),
                "first_latency": percentiles(t.latencies) if self.ramp_s is not None else None,
                "t0": round(self.t0, 3)}
        print(json.dumps(line, separators=(",", ":")), flush=True)


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str]) -> int:
    raise_nofile()
    spec = Spec.load(argv[0])
    try:
        asyncio.run(Generator(spec).run())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
