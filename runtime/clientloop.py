"""The client's loop: one session at a time to one of the bundle's servers, kept alive.

Rule 1: the loop feeds the `ClientCore` (TCP stream, UDP datagrams, TUN packets, one
timer) and performs what it returns; it makes no protocol decision.
Rule 2: a session that fails or dies is replaced by a new one, with exponential backoff
(0.5 s doubling to 30 s), trying the bundle's servers in order.  The TUN, routes and
kill switch stay as they are meanwhile, so nothing leaks while reconnecting.
Rule 4: where it can (runtime/fastpath.py), each session's UDP and TUN wakeups run in a C
Path, which hands the core what is off its happy path; `pump` pushes what changed to it.
Rule 3: a refusal on the very first connect (wrong pin, revoked, ...) ends `up` with that
reason; later refusals are logged and retried (the operator may fix the server).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import socket
import sys
import time
from pathlib import Path

from runtime import ctl, evloop, fastpath, undo
from runtime.bundle import Bundle
from runtime.clientsys import (
    FWMARK, IFNAME, Settings, Target, configure_tunnel, engage_kill_switch, kill_switch, resolve, same_network,
)
from runtime.errors import ConnectFailed, HandshakeRefused, VpnError
from runtime.iobase import Outputs, Receiver, StreamConn, set_buffers
from runtime.netconf import mark_socket
from runtime.proto import tls
from runtime.proto.client import ClientCore
from runtime.proto.config import ClientConfig
from runtime.proto.events import HandshakeCompleted, HandshakeFailed, PeerDead, SessionClosed
from runtime.tun import open_data_tun

log = logging.getLogger("vpn-runtime")
CONNECT_TIMEOUT = 10.0
BACKOFF_MAX = 30.0


class SessionEnded(Exception):
    def __init__(self, reason: str, refused: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.refused = reason, refused


class Client:
    def __init__(self, bundle: Bundle, settings: Settings, state: Path, ready_fd: int | None,
                 verbose: bool = False) -> None:
        self.bundle, self.settings, self.state_path, self.ready_fd = bundle, settings, state, ready_fd
        echo = (lambda s: log.info("%s", s)) if verbose else None
        self.echo = echo
        self.journal: undo.Journal | None = None
        self.creds = tls.Credentials(bundle.ca.encode(), bundle.cert.encode(), _key_pem(bundle))
        self.tun = None
        self.assignment = None
        self.core: ClientCore | None = None
        self.target: Target | None = None
        self.stopping = asyncio.Event()
        self.ended: asyncio.Future | None = None
        self.connected_once = False
        self.udp: socket.socket | None = None
        self.conns: dict[int, StreamConn] = {}
        self.path = None  # Rule 4: this session's C Path
        self.sync = fastpath.Sync()
        self.read_udp = self.on_udp

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self) -> int:
        try:
            await self.start()
        except VpnError as e:
            self.report({"error": e.message, "hint": e.hint, "code": e.exit_code})
            raise
        except BaseException:
            self.report({"error": "vpn-runtime up: internal error", "hint": "see the client log", "code": 1})
            raise
        await self.keep_up()
        return 0

    async def start(self) -> None:
        undo.restore(self.state_path, self.echo)  # leftovers of a crash or an earlier up
        self.journal = undo.Journal.load(self.state_path, self.echo)
        try:
            self.targets = resolve(self.bundle.servers)
            if self.settings.kill_switch:
                engage_kill_switch(self.journal, kill_switch(self.settings, self.targets, None))
            self.tun = open_data_tun(IFNAME)
            await self.first_session()
        except BaseException:
            self.close_session()
            if self.tun is not None:
                self.tun.close()
            self.journal.unwind(undo.undoers())
            raise
        loop = asyncio.get_running_loop()
        self.control = await ctl.serve(ctl.CLIENT_SOCKET, self.on_control)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_reader(self.tun.fileno(), self.path.on_tun if self.path is not None else self.on_tun)

    async def first_session(self) -> None:
        errors = []
        for target in self.targets:
            try:
                await self.open_session(target)
                await self.wait_traffic()
                self.connected_once = True
                self.report_ready()
                return
            except SessionEnded as e:
                errors.append(f"{target.endpoint.name}: {e.reason}")
                self.close_session()
                if e.refused:
                    raise HandshakeRefused(f"vpn-runtime up: {target.endpoint.name} refused: {e.reason}",
                                           _refusal_hint(e.reason)) from None
        raise ConnectFailed("vpn-runtime up: no server reachable: " + "; ".join(errors),
                            "check that the server runs and that its ports are open")

    async def keep_up(self) -> None:
        backoff = 0.5
        while not self.stopping.is_set():
            stop = asyncio.ensure_future(self.stopping.wait())
            await asyncio.wait([stop, self.ended], return_when=asyncio.FIRST_COMPLETED)
            if self.stopping.is_set():
                break
            log.warning("session ended: %s; reconnecting", self.ended.result())
            self.close_session()
            backoff = await self.reconnect(backoff)
        self.close_session()
        self.control.close()
        ctl.CLIENT_SOCKET.unlink(missing_ok=True)
        self.tun.close()
        self.journal.unwind(undo.undoers())
        log.info("down: restored")

    async def reconnect(self, backoff: float) -> float:
        while not self.stopping.is_set():
            for target in self.targets:
                try:
                    await self.open_session(target)
                    await self.wait_traffic()
                    log.info("reconnected to %s", target.endpoint.name)
                    return 0.5
                except SessionEnded as e:
                    log.warning("reconnect to %s failed: %s", target.endpoint.name, e.reason)
                    self.close_session()
            try:
                await asyncio.wait_for(self.stopping.wait(), backoff)
            except asyncio.TimeoutError:
                pass
            backoff = min(backoff * 2, BACKOFF_MAX) * random.uniform(0.8, 1.0)  # no thundering herd
        return backoff

    # -- one session ----------------------------------------------------------------------
    async def open_session(self, target: Target) -> None:
        loop = asyncio.get_running_loop()
        self.target, self.ended = target, loop.create_future()
        self.started = time.monotonic()
        self.established = loop.create_future()
        ep = target.endpoint
        config = ClientConfig(ep.name, ep.pin, self.settings.transport, (self.bundle.tunnel.cipher,))
        self.core = ClientCore(config, tls.client_context(self.creds))
        self.core.takes_partial = self.tun.vnet_hdr
        self.core.on_change = self.sync.mark
        self.open_udp(target)
        reader, writer = await self.open_tcp(target)
        self.conns = {0: StreamConn(writer)}
        self.outputs = Outputs(self.udp, self.tun, self.conns, log)
        self.core.connect(time.monotonic())
        self.pump()
        self.reader_task = asyncio.ensure_future(self.read_stream(reader))
        self.timer_task = asyncio.ensure_future(self.timer())
        try:
            await asyncio.wait_for(asyncio.shield(self.established), CONNECT_TIMEOUT + 1)
        except asyncio.TimeoutError:
            raise SessionEnded("handshake timed out") from None

    def open_udp(self, target: Target) -> None:
        family = socket.AF_INET6 if ":" in target.ip else socket.AF_INET
        udp = socket.socket(family, socket.SOCK_DGRAM)
        mark_socket(udp, FWMARK)
        set_buffers(udp)
        try:
            udp.connect((target.ip, target.endpoint.data_port))
        except OSError as e:  # no route: this machine's own network is down
            udp.close()
            raise SessionEnded(f"cannot reach {target.ip}:{target.endpoint.data_port} ({e.strerror})") from None
        udp.setblocking(False)
        self.udp = udp
        self.receiver = Receiver(udp)
        loop = asyncio.get_running_loop()
        self.read_udp = self.on_udp
        if fastpath.usable(self.tun):
            self.path = fastpath.make(udp, self.tun, client=True, slow_udp=self.slow_udp,
                                      slow_tun=self.slow_tun, settle=self.pump)
            self.read_udp = self.path.on_udp
            loop.add_reader(self.tun.fileno(), self.path.on_tun)
        loop.add_reader(udp.fileno(), self.read_udp)

    async def open_tcp(self, target: Target):
        family = socket.AF_INET6 if ":" in target.ip else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        mark_socket(sock, FWMARK)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (target.ip, target.endpoint.port)),
                                   CONNECT_TIMEOUT)
            return await asyncio.open_connection(sock=sock)
        except (OSError, asyncio.TimeoutError) as e:
            sock.close()
            raise SessionEnded(f"cannot connect to {target.ip}:{target.endpoint.port} "
                               f"({getattr(e, 'strerror', None) or 'timed out'})") from None

    async def wait_traffic(self) -> None:
        """Until the first authenticated datagram (UDP) or at once (TCP transport): the UDP
        socket's reader checks for it on each read until it comes, then is `on_udp` again."""
        if self.settings.transport == "tcp" or self.traffic_seen():
            return
        loop = asyncio.get_running_loop()
        seen = loop.create_future()
        fd = self.udp.fileno()

        def on_udp_first() -> None:
            self.read_udp()
            if self.traffic_seen() and not seen.done():
                seen.set_result(None)

        loop.add_reader(fd, on_udp_first)
        try:
            await asyncio.wait([seen, self.ended], timeout=CONNECT_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if self.udp is not None and self.udp.fileno() == fd:
                loop.add_reader(fd, self.read_udp)
        if not seen.done():
            raise SessionEnded(self.ended.result() if self.ended.done()
                               else "no datagram from the server (is its UDP port open?)")

    def traffic_seen(self) -> bool:
        self.absorb()
        return self.core is not None and self.core.live.last_received > self.started

    def absorb(self) -> None:
        """What this session's Path counted, into the core (runtime/fastpath.py Rule 3)."""
        core = self.core
        if self.path is not None and core is not None:
            fastpath.absorb(self.path, lambda sid: core if sid == core.session_id else None)

    def close_session(self) -> None:
        loop = asyncio.get_running_loop()
        for task in (getattr(self, "reader_task", None), getattr(self, "timer_task", None)):
            if task is not None:
                task.cancel()
        if self.udp is not None:
            loop.remove_reader(self.udp.fileno())
            self.udp.close()
            self.udp = None
        self.sync.stale.clear()
        if self.path is not None:
            self.path = None
            if self.tun is not None:
                loop.add_reader(self.tun.fileno(), self.on_tun)  # reconnecting: packets are dropped
        for c in self.conns.values():
            c.writer.close()
        self.conns = {}
        self.core = None

    # -- I/O ------------------------------------------------------------------------------
    async def read_stream(self, reader: asyncio.StreamReader) -> None:
        try:
            while data := await reader.read(65536):
                self.core.receive_stream(data, time.monotonic())
                self.pump()
        except (ConnectionError, OSError):
            pass
        except VpnError as e:
            log.error("%s", e.line())
            self.end(e.message, refused=True)
            return
        except Exception:
            log.exception("internal error in the session")
            self.end("internal error (see the log)", refused=True)
            return
        if self.core is not None:
            self.core.connection_lost(time.monotonic())
            self.pump()
        self.end("connection closed by the server")

    async def timer(self) -> None:
        while True:
            await evloop.sleep_until(self.core.next_deadline() if self.core else None)
            if self.core is None:
                return
            self.absorb()
            self.core.handle_timer(time.monotonic())
            self.pump()

    def on_udp(self) -> None:
        core, now, items = self.core, time.monotonic(), []
        if core is None:
            return
        for _, datagrams in self.receiver.receive():
            items += core.open_datagrams(datagrams, now)
        self.outputs.write_tun_many(items)
        self.pump()
        if items:
            self.on_tun()  # what the kernel answered at once (TCP ACKs) leaves in this wakeup

    def on_tun(self) -> None:
        self.outputs.seal_tun_reads(self.slow_tun)
        self.pump()

    def slow_udp(self, _addr, datagrams: list[bytes]) -> list:
        """One read's datagrams off the Path's happy path: the TUN items for the Path to write."""
        if self.core is None:
            return []
        return self.core.open_datagrams(datagrams, time.monotonic())

    def slow_tun(self, segments: list) -> tuple[None, list[bytes]] | None:
        """One TUN read's group (on_tun's, and the Path's reads off its happy path)."""
        if self.core is None:
            return None  # reconnecting: the packet is dropped, never sent outside
        sealed = self.core.seal_segments(segments, time.monotonic())
        return (None, sealed) if sealed else None

    def pump(self) -> None:
        if self.core is None:
            return
        for out in self.core.take_outputs():
            kind = type(out)
            if kind is HandshakeCompleted:
                self.on_established(out)
            elif kind is HandshakeFailed:
                self.end(out.reason, refused=_is_refusal(out.reason))
            elif kind in (SessionClosed, PeerDead):
                self.end(getattr(out, "reason", "dead-peer"))
            if kind in (HandshakeCompleted, HandshakeFailed, SessionClosed, PeerDead):
                self.outputs.event(out)
            else:
                self.outputs.perform([out])
        if self.path is not None:
            self.sync.push(self.path)

    def on_established(self, ev: HandshakeCompleted) -> None:
        if not same_network(self.assignment, ev.assignment):
            if self.assignment is not None:
                log.warning("the server gave new addresses: reconfiguring the tunnel")
                # routes and addresses of the old assignment go, the kill switch stays
            configure_tunnel(self.journal, self.settings, ev.assignment, ev.mtu)
            if self.settings.kill_switch:
                engage_kill_switch(self.journal, kill_switch(self.settings, self.targets, ev.assignment))
            self.assignment = ev.assignment
        self.mtu = ev.mtu
        if not self.established.done():
            self.established.set_result(ev)

    def end(self, reason: str, refused: bool = False) -> None:
        if self.ended is not None and not self.ended.done():
            self.ended.set_result(reason)
        if not self.established.done():
            self.established.set_exception(SessionEnded(reason, refused))

    # -- readiness and control ------------------------------------------------------------
    def report(self, msg: dict) -> None:
        if self.ready_fd is None:
            if "error" not in msg:
                print(json.dumps(msg), flush=True)
            return
        try:
            os.write(self.ready_fd, json.dumps(msg).encode())
            os.close(self.ready_fd)
        except OSError:
            pass
        self.ready_fd = None

    def report_ready(self) -> None:
        a = self.assignment
        self.report({"name": self.bundle.name, "server": self.target.endpoint.name,
                     "endpoint": f"{self.target.ip}:{self.target.endpoint.port}",
                     "address": str(a.address4), "transport": self.settings.transport,
                     "kill_switch": self.settings.kill_switch})

    async def on_control(self, request: dict) -> dict:
        if request["cmd"] == "down":
            self.stopping.set()
            return {"stopping": True}
        if request["cmd"] == "status":
            return self.status()
        return {"error": f"unknown command {request['cmd']!r}"}

    def status(self) -> dict:
        from runtime.serverview import session_view

        self.absorb()
        now = time.monotonic()
        stats = self.core.stats(now) if self.core is not None else None
        server = session_view(stats, now) if stats is not None else None
        if server is not None:
            a = self.assignment
            server["name"] = self.target.endpoint.name
            server["tunnel_addresses"] = [str(x) for x in (a.address4, a.address6) if x is not None]
            server["endpoint"] = f"{self.target.ip}:{self.target.endpoint.port}"
        return {"role": "client", "name": self.bundle.name, "pid": os.getpid(),
                "state": "connected" if server else "reconnecting", "interface": IFNAME,
                "kill_switch": self.settings.kill_switch, "full_tunnel": self.settings.full_tunnel,
                "server": server}


REFUSALS = ("foreign-ca", "expired", "not-yet-valid", "wrong-eku", "wrong-name", "wrong-pin", "revoked",
            "weak-cipher", "no-certificate", "no-name", "no-address",
            "certificate", "unknown-ca")  # the server's TLS alerts: peer-refused:bad-certificate, ...


def _is_refusal(reason: str) -> bool:
    return any(r in reason for r in REFUSALS)


def _refusal_hint(reason: str) -> str:
    if "revoked" in reason:
        return "this bundle was revoked: ask the operator for a new one"
    if "pin" in reason or "name" in reason or "foreign" in reason:
        return "the server is not the one this bundle names: check the bundle, or ask for a new one"
    if "expired" in reason or "not-yet-valid" in reason:
        return "a certificate is out of its validity period: check the clock, or ask for a new bundle"
    return "ask the operator for a new bundle"


def _key_pem(bundle: Bundle) -> bytes:
    if bundle.key is not None:
        return bundle.key.encode()
    try:
        return Path(bundle.key_file).read_bytes()
    except OSError as e:
        raise ConnectFailed(f"{bundle.key_file}: cannot read the client key ({e.strerror})") from None
