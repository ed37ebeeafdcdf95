"""The client bundle: one YAML file, readable by a person, holding all a client needs.

Layout (version 1), in this order on disk:

    version: 1
    kind: selfvpn-bundle
    name: alice                      # the client's certificate CN
    issued: '2030-01-01T00:00:00Z'
    expires: '2031-01-01T00:00:00Z'
    servers:                         # one or more; tried in order
    - {name: vps1.example.net, host: 203.0.113.7, port: 443, data_port: 51820, pin: <hex>}
    tunnel: {cipher, transport, full_tunnel, routes, kill_switch, allow_lan, dns}
    ca: |                            # PEM of our CA
    cert: |                          # PEM of the client certificate
    key: |                           # PEM of its key, or instead:
    key_file: alice.key              # a locally held key (relative to the bundle's folder)

Rule 1: loading validates everything (YAML, keys, values, PEMs, the cert against the CA
and the key, expiry) and raises only `ConfigError`, naming the file and the key.
Rule 2: a bundle is written atomically, mode 0600 from creation, and only after the text
about to be written has been loaded back and validated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)

from runtime.pin import PIN
from runtime.proto.config import TRANSPORTS
from runtime.proto.keys import CIPHERS
from runtime.validate import (
    IpNetwork,
    Where,
    boolean,
    choice,
    client_name,
    fields,
    host,
    iso_time,
    hostname,
    listing,
    network,
    path_text,
    port,
    read_yaml,
    shown,
    text,
    timestamp,
    write_atomic,
)

KIND = "selfvpn-bundle"
VERSION = 1

_TOP_REQUIRED = ("version", "kind", "name", "issued", "expires", "servers", "ca", "cert")
_TOP_OPTIONAL = ("tunnel", "key", "key_file")
_SERVER_KEYS = ("name", "host", "port", "data_port", "pin")
_TUNNEL_KEYS = ("cipher", "transport", "full_tunnel", "routes", "kill_switch", "allow_lan", "dns")
_NOT_A_BUNDLE_HINT = "is this the right file? a bundle comes from `invoke add-client NAME`"


@dataclass(frozen=True)
class ServerEndpoint:
    name: str  # TLS server name, checked against the server certificate
    host: str  # IP address or DNS name to connect to
    port: int  # TCP control channel
    data_port: int  # UDP data channel
    pin: str  # sha256 hex of the server certificate's SubjectPublicKeyInfo


@dataclass(frozen=True)
class TunnelSettings:
    cipher: str = "aes-256-gcm"
    transport: str = "udp"
    full_tunnel: bool = True
    routes: tuple[IpNetwork, ...] = ()
    kill_switch: bool = True
    allow_lan: bool = False
    dns: bool = True


@dataclass(frozen=True)
class Bundle:
    name: str
    issued: datetime
    expires: datetime
    servers: tuple[ServerEndpoint, ...]
    ca: str
    cert: str
    key: str | None = field(default=None, repr=False)
    key_file: Path | None = None
    tunnel: TunnelSettings = TunnelSettings()
    version: int = VERSION

    def __post_init__(self) -> None:
        if (self.key is None) == (self.key_file is None):
            raise ValueError("a bundle holds exactly one of key and key_file")


def load_bundle(path: Path, now: datetime | None = None) -> Bundle:
    """Read and validate a bundle file; `key_file` is resolved against its folder."""
    raw = read_yaml(path, "selfvpn bundle")
    return parse_bundle(raw, Where(path.name), path.parent, now or _utcnow())


def write_bundle(path: Path, bundle: Bundle, now: datetime | None = None) -> None:
    """Write `bundle` to `path` atomically, mode 0600, after validating the text."""
    data = dump_bundle(bundle).encode()
    raw = yaml.safe_load(data)
    parse_bundle(raw, Where(path.name), path.parent, now or _utcnow())
    write_atomic(path, data, 0o600)


def parse_bundle(raw: Any, where: Where, base: Path, now: datetime) -> Bundle:
    check_identity(where, raw)
    f = fields(where, raw, _TOP_REQUIRED, _TOP_OPTIONAL)
    name = client_name(where.key("name"), f["name"])
    issued = timestamp(where.key("issued"), f["issued"])
    expires = timestamp(where.key("expires"), f["expires"])
    if expires <= issued:
        raise where.key("expires").expected(f"a time after issued ({issued})", f["expires"])
    ca = ca_certificate(where.key("ca"), f["ca"])
    cert = check_issued_to(where.key("cert"), f["cert"], ca, name)
    key, key_file = key_of(where, f, base, cert)
    check_not_expired(where.key("expires"), min(expires, cert.not_valid_after_utc), now, name)
    check_not_expired(where.key("ca"), ca.not_valid_after_utc, now, name)
    return Bundle(
        name=name, issued=issued, expires=expires, servers=servers_of(where, f["servers"]),
        ca=f["ca"], cert=f["cert"], key=key, key_file=key_file,
        tunnel=tunnel_of(where.key("tunnel"), f.get("tunnel", {})),
    )


def check_identity(where: Where, raw: Any) -> None:
    """Tell a foreign file (a server config, random YAML) from a bundle, before details."""
    if not isinstance(raw, dict) or raw.get("kind") != KIND:
        raise where.fail(f"not a selfvpn bundle (no `kind: {KIND}`)", _NOT_A_BUNDLE_HINT)
    version = raw.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > VERSION:
        raise where.key("version").fail(
            f"bundle version {version} is newer than this runtime reads ({VERSION})",
            "upgrade vpn-runtime",
        )
    if version != VERSION or isinstance(version, bool):
        raise where.key("version").expected(str(VERSION), version)


def key_of(where: Where, f: Any, base: Path, cert: Any) -> tuple[str | None, Path | None]:
    if ("key" in f) == ("key_file" in f):
        raise where.fail("expected exactly one of `key` and `key_file`", "keep one of them")
    if "key" in f:
        private_key_for(where.key("key"), f["key"], cert)
        return f["key"], None
    key_file = base / path_text(where.key("key_file"), f["key_file"])
    key_file_for(where.key("key_file"), key_file, cert)
    return None, key_file


def servers_of(where: Where, value: Any) -> tuple[ServerEndpoint, ...]:
    servers = listing(where.key("servers"), value, server_of)
    if not servers:
        raise where.key("servers").expected("at least one server", value)
    return servers


def server_of(where: Where, value: Any) -> ServerEndpoint:
    f = fields(where, value, _SERVER_KEYS)
    return ServerEndpoint(
        name=hostname(where.key("name"), f["name"]),
        host=host(where.key("host"), f["host"]),
        port=port(where.key("port"), f["port"]),
        data_port=port(where.key("data_port"), f["data_port"]),
        pin=text(where.key("pin"), f["pin"], PIN, "64 lowercase hex digits (sha256)"),
    )


def tunnel_of(where: Where, value: Any) -> TunnelSettings:
    f, d = fields(where, value, (), _TUNNEL_KEYS), TunnelSettings()
    settings = TunnelSettings(
        cipher=choice(where.key("cipher"), f.get("cipher", d.cipher), CIPHERS),
        transport=choice(where.key("transport"), f.get("transport", d.transport), TRANSPORTS),
        full_tunnel=boolean(where.key("full_tunnel"), f.get("full_tunnel", d.full_tunnel)),
        routes=listing(where.key("routes"), f.get("routes", []), network),
        kill_switch=boolean(where.key("kill_switch"), f.get("kill_switch", d.kill_switch)),
        allow_lan=boolean(where.key("allow_lan"), f.get("allow_lan", d.allow_lan)),
        dns=boolean(where.key("dns"), f.get("dns", d.dns)),
    )
    if not settings.full_tunnel and not settings.routes:
        raise where.key("routes").expected("at least one CIDR when full_tunnel is false", [])
    return settings


def dump_bundle(bundle: Bundle) -> str:
    """The bundle as YAML text, PEMs as literal blocks, keys in the documented order."""
    header = (
        f"# selfvpn client bundle for {bundle.name}. It can hold a private key: keep it\n"
        f"# private (mode 0600). Use it with: vpn-runtime up <this file>\n"
    )
    return header + yaml.dump(to_raw(bundle), Dumper=_BundleDumper, sort_keys=False)


def to_raw(bundle: Bundle) -> dict[str, Any]:
    t = bundle.tunnel
    raw: dict[str, Any] = {
        "version": bundle.version, "kind": KIND, "name": bundle.name,
        "issued": iso_time(bundle.issued), "expires": iso_time(bundle.expires),
        "servers": [dict(vars(s)) for s in bundle.servers],
        "tunnel": {**vars(t), "routes": [str(r) for r in t.routes]},
        "ca": bundle.ca, "cert": bundle.cert,
    }
    if bundle.key is not None:
        raw["key"] = bundle.key
    else:
        raw["key_file"] = str(bundle.key_file)
    return raw


def ca_certificate(where: Where, value: Any) -> x509.Certificate:
    ca = certificate(where, value)
    try:
        is_ca = ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except (x509.ExtensionNotFound, ValueError):
        is_ca = False
    if not is_ca:
        raise where.fail("expected a CA certificate, got one that is not a CA")
    return ca


def certificate(where: Where, value: Any) -> x509.Certificate:
    if not isinstance(value, str) or "-----BEGIN CERTIFICATE-----" not in value:
        raise where.expected("a PEM certificate", value)
    try:
        cert = x509.load_pem_x509_certificate(value.encode())
        cert.public_key()
        return cert
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion):
        raise where.fail("PEM certificate does not parse (damaged or truncated)") from None


def check_issued_to(where: Where, value: Any, ca: x509.Certificate, name: str) -> x509.Certificate:
    """The client certificate: parses, is signed by `ca`, and is issued to `name`."""
    cert = certificate(where, value)
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        raise where.fail("certificate is not signed by the bundle's CA") from None
    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    cn = cns[0].value if cns else None
    if cn != name:
        raise where.fail(f"expected a certificate issued to {name!r}, got one for {cn!r}")
    return cert


def private_key_for(where: Where, value: Any, cert: x509.Certificate) -> None:
    """A PEM private key, unencrypted, whose public half is the certificate's."""
    if not isinstance(value, str) or "PRIVATE KEY-----" not in value:
        found = "other text" if isinstance(value, str) else shown(value)  # never echo a key
        raise where.fail(f"expected a PEM private key, got {found}")
    try:
        key = load_pem_private_key(value.encode(), password=None)
    except TypeError:
        raise where.fail("private key is encrypted", "give an unencrypted key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise where.fail("PEM private key does not parse (damaged or truncated)") from None
    if _spki(key.public_key()) != _spki(cert.public_key()):
        raise where.fail("private key does not match the certificate (cert)")


def key_file_for(where: Where, path: Path, cert: x509.Certificate) -> None:
    try:
        data = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not a text file"
        raise where.fail(f"cannot read key file {str(path)!r}: {reason}") from None
    private_key_for(where, data, cert)


def check_not_expired(where: Where, until: datetime, now: datetime, name: str) -> None:
    if now >= until:
        raise where.fail(
            f"expired on {iso_time(until)}",
            f"ask the operator for a new bundle: invoke add-client {name}",
        )


def _spki(public_key: Any) -> bytes:
    return bytes(public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))


class _BundleDumper(yaml.SafeDumper):
    """SafeDumper writing multi-line strings (PEMs) as `|` literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BundleDumper.add_representer(str, _represent_str)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)
