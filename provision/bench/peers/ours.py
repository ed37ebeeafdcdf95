"""Our runtime as a peer: `vpn-runtime serve CONFIG` in anc-srv, `vpn-runtime up BUNDLE
--foreground` in anc-cli, with a throwaway PKI made by `provision.pki`.

Rule 1: each side gets its own VPN_RUNTIME_RUN_DIR (a folder under the run's state), so the
two runtimes on this one machine share no control socket or state file.
Rule 2: the bundle is split tunnel (only 10.99.0.0/24), no kill switch, no DNS: the client
changes nothing outside its namespace (resolv.conf is not namespaced).
Rule 3: the server is ready when its TUN holds 10.99.0.1 and the control port listens; a
process that exits first makes the run "failed to start" with its log tail.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from ipaddress import IPv4Network
from pathlib import Path

import yaml

from provision.bench.netns import (NS_CLI, NS_SRV, TUN_MTU, TUN_NET, TUN_SRV, UNDER_SRV, Procs, has_address,
                                   listening, wait_for)
from provision.bench.peers.base import Peer, ensure_ready
from provision.bench.peers.pki import CLIENT_NAME, SERVER_NAME, Pki, make_pki

DEV_SRV, CONTROL_PORT, DATA_PORT = "anc-ours-s", 8443, 51820


def ensure_bytecode() -> None:
    """Compile the runtime package's bytecode, as `pip install` does for a deployed wheel: a
    development checkout run with PYTHONDONTWRITEBYTECODE would otherwise compile every module
    at each start and bill that to our start-up (about 80 ms on the reference machine)."""
    import compileall

    import runtime

    compileall.compile_dir(str(Path(runtime.__file__).parent), quiet=2)


def runtime_bin() -> str:
    """The console script beside this interpreter (the project's venv)."""
    return str(Path(sys.executable).parent / "vpn-runtime")


def server_config(pki: Pki, state: Path) -> dict[str, object]:
    return {
        "name": SERVER_NAME, "network": TUN_NET, "listen": UNDER_SRV,
        "control_port": CONTROL_PORT, "data_port": DATA_PORT, "interface": DEV_SRV, "mtu": TUN_MTU,
        "paths": {"ca": str(pki.ca_cert), "cert": str(pki.server_cert), "key": str(pki.server_key),
                  "crl": str(pki.crl), "control_socket": str(state / "run-server" / "control.sock"),
                  "leases": str(state / "leases.json")},
    }


def write_client_bundle(pki: Pki, path: Path) -> None:
    from runtime.bundle import Bundle, ServerEndpoint, TunnelSettings, write_bundle
    from runtime.pin import pin_of_pem

    now = datetime.now(timezone.utc)
    server = ServerEndpoint(name=SERVER_NAME, host=UNDER_SRV, port=CONTROL_PORT, data_port=DATA_PORT,
                            pin=pin_of_pem(pki.server_cert.read_text()))
    tunnel = TunnelSettings(full_tunnel=False, routes=(IPv4Network(TUN_NET),), kill_switch=False, dns=False)
    bundle = Bundle(name=CLIENT_NAME, issued=now - timedelta(minutes=5), expires=now + timedelta(days=1),
                    servers=(server,), ca=pki.ca_cert.read_text(), cert=pki.client_cert.read_text(),
                    key=pki.client_key.read_text(), tunnel=tunnel)
    write_bundle(path, bundle)


class Ours(Peer):
    name = "ours"

    def __init__(self) -> None:
        self.state = Path("/nonexistent")

    def version(self) -> str:
        r = subprocess.run([runtime_bin(), "--version"], capture_output=True, text=True)
        return (r.stdout.strip() or r.stderr.strip()[-100:] or "vpn-runtime: no version").splitlines()[0]

    def startup_floor_ms(self) -> float | None:
        """Interpreter start + importing the client's modules (best of 3), what `up` pays first."""
        ensure_bytecode()
        argv = [sys.executable, "-c", "import runtime.cli, runtime.clientd"]
        best = None
        for _ in range(3):
            t0 = time.perf_counter()
            if subprocess.run(argv, capture_output=True).returncode != 0:
                return None
            spent = (time.perf_counter() - t0) * 1000
            best = spent if best is None else min(best, spent)
        return None if best is None else round(best, 1)

    def prepare(self, state: Path) -> None:
        ensure_bytecode()
        self.state = state
        pki = make_pki(state / "pki", UNDER_SRV)
        (state / "server.yml").write_text(yaml.safe_dump(server_config(pki, state), sort_keys=False))
        write_client_bundle(pki, state / "client.yml")
        for side in ("server", "client"):
            (state / f"run-{side}").mkdir(mode=0o700, exist_ok=True)

    def _env(self, side: str) -> dict[str, str]:
        return {"VPN_RUNTIME_RUN_DIR": str(self.state / f"run-{side}")}

    def start_server(self, procs: Procs) -> None:
        procs.spawn("server", NS_SRV, "ours-server", [runtime_bin(), "serve", str(self.state / "server.yml")],
                    self._env("server"))
        ready = wait_for(20, lambda: procs.dead() is None and has_address(NS_SRV, DEV_SRV, TUN_SRV)
                         and listening(NS_SRV, CONTROL_PORT))
        ensure_ready(ready and procs.dead() is None, procs, "ours server")

    def start_client(self, procs: Procs) -> None:
        """`up` with its run directory on a tmpfs, as /run/vpn-runtime is on a laptop: the undo
        journal's fsyncs then cost what they cost there, not what this machine's disk does.  The
        mount lives in the mount namespace `ip netns exec` makes, and goes with the process."""
        script = 'mount -t tmpfs -o mode=0700,size=8m selfvpn-run "$1" && exec "$2" up "$3" --foreground'
        procs.spawn("client", NS_CLI, "ours-client",
                    ["sh", "-c", script, "sh", str(self.state / "run-client"), runtime_bin(),
                     str(self.state / "client.yml")], self._env("client"))
