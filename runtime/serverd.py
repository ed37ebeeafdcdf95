"""`vpn-runtime serve`: the server daemon, a small I/O shell around `ServerCore`.

Rule 1: the loop reads the TUN and the UDP socket (draining up to BATCH per wakeup),
accepts TCP control connections, feeds the core, performs what it returns, and arms one
timer at the core's next deadline.  No protocol decision is made here.
Rule 2: the daemon changes nothing on the system but its TUN and that TUN's addresses
(gone with the process); firewall, NAT and forwarding belong to the deploy.
Rule 3: SIGHUP or `vpn-runtime reload` re-reads the CRL; a CRL file that changed on disk
is also picked up within a second.  Live sessions it revokes end at once.
Rule 4: after writing received packets to the TUN the loop reads the TUN at once: the
kernel has often answered already (an echo reply, TCP ACKs), and that answer then leaves
without another trip through the event loop.
Rule 6: where it can (runtime/fastpath.py), a C Path runs the UDP and TUN wakeups and
hands the core what is off its happy path (slow_udp, slow_tun); after each
thing the core was fed, the loop performs its outputs and pushes changed sessions to the Path.
Rule 5: a timer pass walks every session, so deadlines are served in TIMER_GRAIN steps: all
that fall due in one step share one pass.  With 1000 clients whose keepalives fall due at
spread-out times, exact timers would make a pass every few milliseconds (half a core);
the core's timers (keepalive, dead peer, handshake and key-grace limits) count in seconds.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import socket
import time
from pathlib import Path

from runtime import ctl, evloop, fastpath, serverview
from runtime.config import DaemonConfig, load_config
from runtime.errors import ConfigError
from runtime.iobase import Outputs, Receiver, StreamConn, set_buffers
from runtime.proto import identity, tls
from runtime.proto.events import HandshakeCompleted
from runtime.proto.server import ServerCore
from runtime.ratelimit import ConnectLimiter
from runtime.tun import open_data_tun

log = logging.getLogger("vpn-runtime")
STATE = ctl.RUN_DIR / "server-state.json"
TIMER_GRAIN = 0.1  # Rule 5: the core's deadlines are served in steps of this many seconds


class ServerDaemon:
    def __init__(self, cfg: DaemonConfig) -> None:
        self.cfg = cfg
        creds = tls.Credentials.from_files(cfg.paths.ca, cfg.paths.cert, cfg.paths.key)
        self.ca_pem = creds.ca_pem
        self.crl_stamp: tuple[float, int] | None = None
        self.core = ServerCore(cfg.protocol(), tls.server_context(creds), cfg.address_policy(),
                               self.read_crl())
        self.conns: dict[int, StreamConn] = {}
        self.ids = itertools.count(1)
        self.limiter = ConnectLimiter()
        self.started = time.time()
        self.stopping = asyncio.Event()

    # -- CRL ------------------------------------------------------------------------------
    def read_crl(self):
        path = self.cfg.paths.crl
        try:
            st = path.stat()
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise ConfigError(f"{path}: cannot read the CRL ({e.strerror})") from None
        self.crl_stamp = (st.st_mtime, st.st_size)
        return identity.load_crl(data, self.ca_pem)

    def reload_crl(self, why: str) -> int:
        try:
            crl = self.read_crl()
        except ConfigError as e:
            log.error("CRL not reloaded (%s): %s", why, e.line())
            return 0
        ended = self.core.update_crl(crl, time.monotonic()) if crl is not None else 0
        log.info("CRL reloaded (%s): %d live session(s) ended", why, ended)
        self.flush()
        return ended

    def crl_changed(self) -> bool:
        try:
            st = self.cfg.paths.crl.stat()
        except OSError:
            return False
        return (st.st_mtime, st.st_size) != self.crl_stamp

    # -- sockets and TUN ------------------------------------------------------------------
    def open_udp(self) -> socket.socket:
        family = socket.AF_INET6 if self.cfg.listen.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        set_buffers(sock)
        sock.bind((str(self.cfg.listen), self.cfg.data_port))
        sock.setblocking(False)
        return sock

    def open_tun(self):
        from runtime import netconf, rtnl, undo

        undo.restore(STATE)
        tun = open_data_tun(self.cfg.interface)
        journal = undo.Journal.load(STATE)
        addrs = [str(self.cfg.server_address)]
        if self.cfg.server_address6 is not None:
            addrs.append(str(self.cfg.server_address6))
        with rtnl.IPRoute() as ipr:
            netconf.configure(ipr, journal, netconf.TunnelNet(tun.name, tuple(addrs), mtu=self.cfg.mtu,
                                                               routing=netconf.SplitTunnel(())))
        return tun

    # -- the loop -------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self.tun, self.udp = self.open_tun(), self.open_udp()
        self.core.takes_partial = self.tun.vnet_hdr
        self.outputs = Outputs(self.udp, self.tun, self.conns, log)
        self.receiver = Receiver(self.udp)
        self.path = None
        if fastpath.usable(self.tun):  # Rule 6
            self.sync = fastpath.Sync()
            self.core.on_change = self.sync.mark
            self.path = fastpath.make(self.udp, self.tun, client=False, slow_udp=self.slow_udp,
                                      slow_tun=self.slow_tun, settle=self.flush)
        loop.add_reader(self.udp.fileno(), self.path.on_udp if self.path else self.on_udp)
        loop.add_reader(self.tun.fileno(), self.path.on_tun if self.path else self.on_tun)
        tcp = await asyncio.start_server(self.on_connection, str(self.cfg.listen), self.cfg.control_port,
                                         reuse_address=True)
        control = await ctl.serve(self.cfg.paths.control_socket, self.on_control)
        loop.add_signal_handler(signal.SIGHUP, self.reload_crl, "SIGHUP")
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        log.info("serving %s: control tcp/%d, data udp/%d, tunnel %s on %s", self.cfg.name,
                 self.cfg.control_port, self.cfg.data_port, self.cfg.server_address, self.tun.name)
        ticker = asyncio.create_task(self.tick())
        await self.stopping.wait()
        ticker.cancel()
        self.shutdown(tcp, control)
        return 0

    def shutdown(self, tcp: asyncio.AbstractServer, control: asyncio.AbstractServer) -> None:
        now = time.monotonic()
        for conn in list(self.conns):
            self.core.connection_lost(conn, now)
        tcp.close()
        control.close()
        self.cfg.paths.control_socket.unlink(missing_ok=True)
        self.tun.close()
        log.info("stopped")

    async def tick(self) -> None:
        """The one timer: the core's next deadline, at least once a second (CRL watch)."""
        deadline = self.core.next_deadline()
        while True:
            await evloop.sleep_until(deadline, grain=TIMER_GRAIN)
            self.absorb()
            deadline = self.core.handle_timer(time.monotonic())
            self.flush()
            if self.crl_changed():
                self.reload_crl("file changed")

    def flush(self, outputs: list | None = None) -> None:
        """Perform the core's outputs (or those already taken); push changed sessions to the
        Path (Rule 6)."""
        self.outputs.perform(self.core.take_outputs() if outputs is None else outputs)
        if self.path is not None:
            self.sync.push(self.path)

    def absorb(self) -> None:
        if self.path is not None:
            fastpath.absorb(self.path, self.core.session)

    # the Path's slow paths (Rule 6): what the Python handlers below do for those datagrams
    def slow_udp(self, addr, datagrams: list[bytes]) -> list:
        """One read's datagrams off the Path's happy path: the TUN items for the Path to write."""
        return self.core.open_datagrams(datagrams, addr, time.monotonic())

    def slow_tun(self, segments: list[tuple[bytes, int]]):
        """One TUN read's group (on_tun's, too)."""
        return self.core.seal_group(segments, time.monotonic())

    def on_udp(self) -> None:
        now, core, items = time.monotonic(), self.core, []
        for addr, datagrams in self.receiver.receive():
            items += core.open_datagrams(datagrams, addr, now)
        self.outputs.write_tun_many(items)
        self.outputs.perform(core.take_outputs())
        if items:
            self.on_tun()  # Rule 4: what the kernel answered at once goes out in this wakeup

    def on_tun(self) -> None:
        self.outputs.seal_tun_reads(self.slow_tun)
        self.outputs.perform(self.core.take_outputs())

    async def on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        source = (writer.get_extra_info("peername") or ("?",))[0]
        if not self.admitted(source, writer):
            return
        conn, pending = next(self.ids), True
        self.conns[conn] = StreamConn(writer)
        self.core.connection_made(conn, time.monotonic())
        try:
            while data := await reader.read(65536):
                self.core.receive_stream(conn, data, time.monotonic())
                outputs = self.core.take_outputs()
                if pending and any(type(o) is HandshakeCompleted and o.conn == conn for o in outputs):
                    pending = False
                    self.limiter.settled(source)
                self.flush(outputs)
        except (ConnectionError, OSError):
            pass
        finally:
            if pending:
                self.limiter.settled(source)
            self.conns.pop(conn, None)
            self.core.connection_lost(conn, time.monotonic())
            self.flush()
            writer.close()

    def admitted(self, source: str, writer: asyncio.StreamWriter) -> bool:
        """The per-source rate and pending-handshake caps (runtime/ratelimit.py); over them
        the connection is closed at once, counted in drops, and logged once per interval."""
        refusal = self.limiter.admit(source, time.monotonic())
        if refusal is None:
            return True
        self.core.drops[f"connect-{refusal.reason}"] += 1
        if refusal.logged:
            log.warning("%s", refusal.line())
        writer.transport.abort()
        return False

    async def on_control(self, request: dict) -> dict:
        if request["cmd"] == "status":
            self.absorb()
            return serverview.status(self, time.monotonic())
        if request["cmd"] == "reload":
            return {"ended": self.reload_crl("requested")}
        return {"error": f"unknown command {request['cmd']!r}"}


def main(config_path: str, verbose: bool = False) -> int:
    cfg = load_config(Path(config_path))
    daemon = ServerDaemon(cfg)
    return evloop.run(daemon.run())
