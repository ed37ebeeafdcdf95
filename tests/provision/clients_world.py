"""A project for the client tests: an inventory, a CA, servers "deployed" (their CSRs
signed as deploy would sign them) and fake servers to push to.

Rule: the servers' keys are made here, as on a server, so a test can compute the pin it
expects from the key itself and not from the roster under test.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from provision.clients.revoke import CRL_DIR, CRL_PATH, CRL_TEMP, RELOAD
from provision.clients.status import IS_ACTIVE, READ_CRL, RUNTIME_STATUS
from provision.connection import HostUnreachable, Remote
from provision.inventory import Host
from provision.pki import Ca, init_ca, sign_server_csr
from tests.pki.pki_helpers import make_csr
from tests.provision.fakes import FakeRemote

NOW = datetime.now(timezone.utc).replace(microsecond=0)

INVENTORY = """\
all:
  children:
    vpn_servers:
      hosts:
        vps1:
          ansible_host: 198.51.100.10
        vps2:
          ansible_host: 198.51.100.20
          ansible_port: 2222
          vpn_server_name: vpn2.example.test
          vpn_tcp_port: 443
          vpn_port: 4500
      vars:
        vpn_network: 10.8.0.0/24
    lab_clients:
      hosts:
        laptop:
          ansible_host: 192.0.2.10
"""

SERVER_NAMES = {"vps1": "vps1.vpn", "vps2": "vpn2.example.test"}


def spki_pin(key: ec.EllipticCurvePrivateKey) -> str:
    spki = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


@dataclass
class World:
    root: Path
    ca: Ca
    server_keys: dict[str, ec.EllipticCurvePrivateKey] = field(default_factory=dict)

    @property
    def inventory(self) -> Path:
        return self.root / "inventory" / "hosts.yml"

    @property
    def pki(self) -> Path:
        return self.root / "inventory" / "pki"

    @property
    def clients(self) -> Path:
        return self.root / "clients"

    def deploy(self, host: str, days: int = 825, now: datetime = NOW, new_key: bool = False) -> str:
        """Sign `host`'s CSR as deploy does (its key made "on the server"); return its pin."""
        key = None if new_key else self.server_keys.get(host)
        csr, key = make_csr(key)
        self.server_keys[host] = key
        sign_server_csr(self.ca, csr, SERVER_NAMES[host], days=days, now=now)
        return spki_pin(key)

    def crl_pem(self) -> bytes:
        return (self.pki / "crl.pem").read_bytes()


def make_world(root: Path, inventory: str = INVENTORY, deployed: Iterable[str] = ("vps1", "vps2")) -> World:
    (root / "inventory").mkdir(parents=True)
    (root / "inventory" / "hosts.yml").write_text(inventory)
    world = World(root, init_ca(root / "inventory" / "pki", now=NOW - timedelta(days=1)))
    for host in deployed:
        world.deploy(host)
    return world


def push_remote(name: str, reload_rc: int = 0) -> FakeRemote:
    """A server that expects the CRL push and nothing else."""
    commands = {f"test -d {CRL_DIR}": (0, ""), f"mv -f {CRL_TEMP} {CRL_PATH}": (0, ""), RELOAD: (reload_rc, "")}
    return FakeRemote(name, commands, puts=[CRL_TEMP])


def status_remote(name: str, active: tuple[int, str], runtime: tuple[int, str], crl: tuple[int, str]) -> FakeRemote:
    """A server answering the three status facts with recorded outputs."""
    return FakeRemote(name, {IS_ACTIVE: active, RUNTIME_STATUS: runtime, READ_CRL: crl})


class Hosts:
    """A `connect` for tests: known fakes by name, some hosts unreachable, others a failure."""

    def __init__(self, remotes: Iterable[FakeRemote], unreachable: Iterable[str] = ()) -> None:
        self.remotes = {r.name: r for r in remotes}
        self.unreachable = set(unreachable)
        self.connected: list[str] = []

    def __call__(self, host: Host, echo: object = None) -> Remote:
        self.connected.append(host.name)
        if host.name in self.unreachable:
            raise HostUnreachable(f"{host.name} ({host.address}:{host.port}): unreachable: timed out")
        if host.name not in self.remotes:
            raise AssertionError(f"connected to {host.name}, which the test did not expect")
        return self.remotes[host.name]
