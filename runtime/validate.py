"""Validation of the runtime's files: YAML read once at the edge, checked key by key.

Every problem becomes one `ConfigError` whose message says where and what:
`alice.bundle: servers[0].port: expected 1-65535, got 'auto'`, plus a hint.

Rule 1: a checker takes a `Where` (file plus key path) and a raw value, and returns the
typed value or raises `ConfigError`; it never raises anything else, whatever the input.
Rule 2: unknown keys are errors (a typo must not be ignored), with a "did you mean" hint.
Rule 3: files are written atomically (temp file, fsync, rename), created with their final
mode from the start so that a private key is never readable by others, even briefly.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tempfile
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import yaml

from runtime.errors import ConfigError

T = TypeVar("T")
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_FILE_BYTES = 1 << 20
CLIENT_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
HOSTNAME = re.compile(
    r"(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?"
)
PORT_RANGE = (1, 65535)


@dataclass(frozen=True)
class Where:
    """A place in a file: the file's name and the key path inside it."""

    file: str
    path: str = ""

    def key(self, name: str) -> Where:
        return Where(self.file, f"{self.path}.{name}" if self.path else name)

    def index(self, i: int) -> Where:
        return Where(self.file, f"{self.path}[{i}]")

    def fail(self, message: str, hint: str | None = None) -> ConfigError:
        place = f"{self.file}: {self.path}" if self.path else self.file
        return ConfigError(one_line(f"{place}: {message}"), hint)

    def expected(self, what: str, got: Any, hint: str | None = None) -> ConfigError:
        return self.fail(f"expected {what}, got {shown(got)}", hint)


def one_line(message: str) -> str:
    return " ".join(message.split()) if "\n" in message or "\r" in message else message


def shown(value: Any) -> str:
    """A short, one-line rendering of a found value for an error message."""
    if value is None:
        return "nothing"
    text = repr(value) if isinstance(value, str) else f"{type(value).__name__} {value!r}"
    text = text.replace("\n", "\\n")
    return text if len(text) <= 60 else text[:57] + "..."


def read_yaml(path: Path, what: str) -> Any:
    """Read and parse a YAML file; any failure is a `ConfigError` naming the file."""
    where = Where(path.name)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise where.fail(f"cannot read {what}: {exc.strerror}", "check the path") from None
    if len(data) > MAX_FILE_BYTES:
        raise where.fail(f"{len(data)} bytes is too large for {what}")
    return parse_yaml(where, data, what)


def parse_yaml(where: Where, data: bytes, what: str) -> Any:
    try:
        return yaml.load(data.decode("utf-8"), Loader=yaml.CSafeLoader)
    except UnicodeDecodeError:
        raise where.fail(f"not a {what}: not UTF-8 text", "is this the right file?") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise where.fail(f"not a {what}: not valid YAML{at}: {exc.problem}") from None
    except (yaml.YAMLError, ValueError, RecursionError, OverflowError) as exc:
        raise where.fail(f"not a {what}: not valid YAML: {exc}") from None


def fields(
    where: Where, value: Any, required: Collection[str], optional: Collection[str] = ()
) -> Mapping[str, Any]:
    """Check a mapping: every required key present, no key unknown."""
    if not isinstance(value, dict):
        raise where.expected("a mapping of keys", value)
    known = [*required, *optional]
    for key in value:
        if key not in known:
            raise where.key(str(key)).fail("unknown key", did_you_mean(str(key), known))
    for key in required:
        if key not in value:
            raise where.key(key).fail("missing", f"add `{key}:`")
    return value


def did_you_mean(key: str, known: Collection[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    if close:
        return f"did you mean `{close[0]}`?"
    return "known keys: " + ", ".join(sorted(known))


def integer(where: Where, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise where.expected(f"{low}-{high}", value)
    return value


def port(where: Where, value: Any) -> int:
    return integer(where, value, *PORT_RANGE)


def boolean(where: Where, value: Any) -> bool:
    if not isinstance(value, bool):
        raise where.expected("true or false", value)
    return value


def text(where: Where, value: Any, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise where.expected(what, value)
    return value


def client_name(where: Where, value: Any) -> str:
    return text(where, value, CLIENT_NAME, "a name of a-z, 0-9, '.', '_', '-' (max 63)")


def hostname(where: Where, value: Any) -> str:
    return text(where, value, HOSTNAME, "a DNS name")


def choice(where: Where, value: Any, options: Collection[str]) -> str:
    if not isinstance(value, str) or value not in options:
        raise where.expected(" or ".join(options), value)
    return value


def path_text(where: Where, value: Any) -> Path:
    if not isinstance(value, str) or not value or "\0" in value:
        raise where.expected("a file path", value)
    return Path(value)


def network(where: Where, value: Any, version: int | None = None) -> Any:
    """An IP network in CIDR form (host bits must be zero), of the given version."""
    wanted = {4: "an IPv4 network", 6: "an IPv6 network"}.get(version or 0, "a network")
    try:
        net = ipaddress.ip_network(value, strict=True) if isinstance(value, str) else None
    except ValueError:
        net = None
    if net is None or (version is not None and net.version != version):
        raise where.expected(f"{wanted} like 10.8.0.0/24", value)
    return net


def address(where: Where, value: Any) -> Any:
    found = None
    if isinstance(value, str):
        try:
            found = ipaddress.ip_address(value)
        except ValueError:
            pass
    if found is None:
        raise where.expected("an IP address", value)
    return found


def host(where: Where, value: Any) -> str:
    """A host to connect to: an IP address or a DNS name."""
    if isinstance(value, str):
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            pass
    return text(where, value, HOSTNAME, "an IP address or a DNS name")


def listing(where: Where, value: Any, item: Callable[[Where, Any], T]) -> tuple[T, ...]:
    if not isinstance(value, list):
        raise where.expected("a list", value)
    return tuple(item(where.index(i), v) for i, v in enumerate(value))


def timestamp(where: Where, value: Any) -> datetime:
    """A point in time, ISO 8601; one without a zone is taken as UTC."""
    when = value if isinstance(value, datetime) else None
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            when = None
    if when is None:
        raise where.expected("a time like 2030-01-31T12:00:00Z", value)
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def iso_time(when: datetime) -> str:
    """The inverse of `timestamp`: UTC, to the second, `Z` suffix."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data`: temp file created with `mode`, fsync, rename, fsync dir."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    sync_dir(path.parent)


def sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
