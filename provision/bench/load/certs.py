"""Certificates for the load benchmark: one CA, one server certificate and one client
certificate with its own P-256 key per session, cached on disk between runs.

Rule 1: made with the toolkit's `provision.pki` (the bench's `make_pki` for the CA and server, its `build` of a client certificate:
        same subject, extensions and signature as `issue_client`), every client with a key of
        its own: mTLS identity is per client.
Rule 2: `issue_client` records each certificate in the CA's roster, loading and saving the
        whole roster each time (O(n) per certificate: 400 took 37 s, and it grows); the bench
        signs with `build` and skips the roster, which a throwaway bench CA does not need.
Rule 3: the cache (default /var/cache/selfvpn-bench-load) is reused while it holds enough
        clients for the server name and address asked for and the certificates stay valid
        for another day; otherwise it is extended (more clients) or made again.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from provision.bench.peers.pki import SERVER_NAME, make_pki
from provision.pki.ca import key_pem, key_type_of, new_key, utcnow
from provision.pki.issue import CLIENT_DAYS, CertSpec, build

CACHE = Path("/var/cache/selfvpn-bench-load")
PREFIX = "load-"


@dataclass(frozen=True)
class LoadPki:
    folder: Path
    ca_cert: Path
    crl: Path
    server_cert: Path
    server_key: Path
    clients: tuple[Path, ...]  # folders named by CN, each with cert.pem and key.pem
    issued_s: float  # seconds spent issuing in this call (0.0 when all came from the cache)


def client_name(i: int) -> str:
    return f"{PREFIX}{i:05d}"


def load_pki(count: int, server_ip: str, cache: Path = CACHE) -> LoadPki:
    """The cached PKI, extended to `count` clients (made again if it does not fit)."""
    meta_path = cache / "meta.json"
    wanted = {"server_name": SERVER_NAME, "server_ip": server_ip}
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if {k: meta.get(k) for k in wanted} != wanted or meta.get("expires", 0) < time.time() + 86400:
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(mode=0o700, parents=True)
        meta = {**wanted, "expires": make_server(cache, server_ip)}
        meta_path.write_text(json.dumps(meta))
    t0 = time.perf_counter()
    issued = issue_clients(cache, count)
    spent = time.perf_counter() - t0 if issued else 0.0
    clients = tuple(cache / "clients" / client_name(i) for i in range(count))
    return LoadPki(cache, cache / "ca.crt", cache / "ca" / "crl.pem", cache / "server.crt",
                   cache / "server.key", clients, spent)


def make_server(cache: Path, server_ip: str) -> float:
    """CA and server certificate (the bench's `make_pki`); returns when the clients'
    certificates would expire (epoch s)."""
    make_pki(cache, server_ip)
    return (utcnow() + timedelta(days=CLIENT_DAYS)).timestamp()


def issue_clients(cache: Path, count: int) -> int:
    """Issue the missing clients 0..count-1; returns how many were made."""
    from provision.pki import load_ca

    missing = [i for i in range(count) if not (cache / "clients" / client_name(i) / "key.pem").exists()]
    if not missing:
        return 0
    ca, now = load_ca(cache / "ca"), utcnow()
    for i in missing:
        key = new_key(key_type_of(ca.key))
        cert = build(ca, CertSpec(client_name(i), "client", key.public_key(), CLIENT_DAYS), now, set())
        folder = cache / "clients" / client_name(i)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        write(folder / "cert.pem", cert.public_bytes(serialization.Encoding.PEM).decode())
        write(folder / "key.pem", key_pem(key).decode())
    return len(missing)


def write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    tmp.rename(path)
