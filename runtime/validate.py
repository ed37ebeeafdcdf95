"""Validation of the runtime's files: YAML read once at the edge, checked key by key.

Every problem becomes one `ConfigError` whose message says where and what:
`alice.bundle: servers[0].port: expected 1-65535, got 'auto'`, plus a hint.

Rule 1: a checker takes a `Where` (file plus key path) and a raw value, and returns the
typed value or raises `ConfigError`; it never raises anything else, whatever the input.
Rule 2: unknown keys are errors (a typo must not be ignored), with a "did you mean" hint.
Rule 3: files are written atomically (temp file, fsync, rename), created with their final
mode from the start so that a private key is never readable by others, even briefly.
Rule 4: YAML from outside is loaded in bounded time and memory (`load_yaml`, shared with
provision/): nesting and alias expansion are capped before any value is built, and an error
message renders a found value with a bounded walk (`brief`), never a whole repr.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import reprlib
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
MAX_YAML_DEPTH = 64  # nested lists and mappings
MAX_YAML_VALUES = 100_000  # nodes, counting each alias as often as it is used
TAG = "tag:yaml.org,2002:"
CHECKED_TAGS = {  # a tag whose constructor fails oddly on other text: what it takes, in words
    f"{TAG}int": ({f"{TAG}int"}, "an integer"),
    f"{TAG}float": ({f"{TAG}float", f"{TAG}int"}, "a number like 1.5"),
    f"{TAG}bool": ({f"{TAG}bool"}, "true or false"),
    f"{TAG}timestamp": ({f"{TAG}timestamp"}, "a date like 2030-01-31"),
}


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


def _short_repr() -> reprlib.Repr:
    short = reprlib.Repr()
    short.maxlevel = 3
    short.maxlist = short.maxtuple = short.maxdict = short.maxset = short.maxfrozenset = 8
    short.maxstring = short.maxother = short.maxlong = 64
    return short


SHORT = _short_repr()


def brief(value: Any, width: int = 60) -> str:
    """A repr of `value` cut to `width` characters, one line, in bounded work however large
    or shared (YAML aliases) the value is: a few levels and items, each string cut first."""
    return cut(repr(value[: width + 1]) if isinstance(value, str) else SHORT.repr(value), width)


def cut(text: str, width: int = 60) -> str:
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= width else text[: width - 3] + "..."


def shown(value: Any) -> str:
    """A short, one-line rendering of a found value for an error message."""
    if value is None:
        return "nothing"
    return brief(value) if isinstance(value, str) else cut(f"{type(value).__name__} {SHORT.repr(value)}")


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
        return load_yaml(data)
    except NotYaml as exc:
        raise where.fail(f"not a {what}: {exc}", exc.hint) from None


class NotYaml(Exception):
    """Text `load_yaml` refuses; each caller turns it into its own error (ConfigError, ...)."""

    def __init__(self, problem: str, hint: str | None = None) -> None:
        super().__init__(one_line(problem))
        self.hint = hint


def load_yaml(data: bytes | str) -> Any:
    """One YAML document (safe tags only), in bounded time and memory; else `NotYaml`."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise NotYaml("not UTF-8 text", "is this the right file?") from None
    loader = yaml.CSafeLoader(text)
    try:
        node = _yaml_node(loader)
        if node is not None:
            YamlBounds(loader).check(node)
        return _yaml_value(loader, node)
    finally:
        loader.dispose()


def _yaml_node(loader: yaml.CSafeLoader) -> yaml.Node | None:
    try:
        return loader.get_single_node()
    except yaml.YAMLError as exc:
        raise _not_yaml(exc) from None


def _yaml_value(loader: yaml.CSafeLoader, node: yaml.Node | None) -> Any:
    if node is None:
        return None
    try:
        return loader.construct_document(node)
    except (yaml.YAMLError, ValueError, OverflowError) as exc:  # bad dates, too many digits
        raise _not_yaml(exc) from None


def _not_yaml(exc: Exception) -> NotYaml:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1}" if mark is not None else ""
        return NotYaml(f"not valid YAML{at}: {exc.problem or exc.context}")
    return NotYaml(f"not valid YAML: {exc}")


class YamlBounds:
    """Walks the node graph before anything is built: depth, size with aliases expanded
    (each shared node is measured once), aliases to themselves, and scalars given a tag
    they do not match (`!!int x`), on which PyYAML's constructors raise odd errors."""

    def __init__(self, loader: yaml.CSafeLoader) -> None:
        self.loader = loader
        self.measured: dict[int, tuple[int, int]] = {}  # id(node): (values, height)
        self.open: set[int] = set()

    def check(self, root: yaml.Node) -> None:
        values, _height = self.measure(root, 0)
        if values > MAX_YAML_VALUES:
            raise NotYaml(f"more than {MAX_YAML_VALUES} values once YAML aliases are expanded",
                          "write the values out; do not nest aliases")

    def measure(self, node: yaml.Node, depth: int) -> tuple[int, int]:
        known = self.measured.get(id(node))
        if known is None:
            known = self.measured[id(node)] = self._walk(node, depth)
        if depth + known[1] > MAX_YAML_DEPTH:
            raise self._fail(node, f"nested deeper than {MAX_YAML_DEPTH} levels")
        return known

    def _walk(self, node: yaml.Node, depth: int) -> tuple[int, int]:
        if id(node) in self.open:
            raise self._fail(node, "a YAML alias refers to a value that contains it")
        if isinstance(node, yaml.ScalarNode):
            self._check_tag(node)
            return 1, 0
        self.open.add(id(node))
        values, height = 1, 0
        for child in _children(node):
            if depth + 1 > MAX_YAML_DEPTH:
                raise self._fail(child, f"nested deeper than {MAX_YAML_DEPTH} levels")
            child_values, child_height = self.measure(child, depth + 1)
            values, height = min(values + child_values, MAX_YAML_VALUES + 1), max(height, child_height + 1)
        self.open.discard(id(node))
        return values, height

    def _check_tag(self, node: yaml.ScalarNode) -> None:
        allowed, what = CHECKED_TAGS.get(node.tag, (None, ""))
        if allowed and self.loader.resolve(yaml.ScalarNode, node.value, (True, False)) not in allowed:
            tag = node.tag.removeprefix(TAG)
            raise self._fail(node, f"!!{tag} expects {what}, got {brief(node.value)}")

    @staticmethod
    def _fail(node: yaml.Node, problem: str) -> NotYaml:
        return NotYaml(f"not valid YAML at line {node.start_mark.line + 1}: {problem}")


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


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
