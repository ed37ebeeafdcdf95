"""The inventory: Ansible's YAML inventory format, parsed once into frozen `Host`s.

Rule 1: the file means what it means to Ansible.  `all:` is the root group; each group has
`hosts:`, `vars:` and `children:` (nestable); a host's sub-keys are its host vars.  Vars
combine as in Ansible: `all` < parent group < child group (by depth, then
`ansible_group_priority`, then name) < host, so `ansible-inventory --list` agrees with us.
Rule 2: every value we use is checked where it is written, and an error names the file,
the YAML path and the value (`inventory/hosts.yml: all.hosts.vps1.ansible_port: expected
1-65535, got 'auto'`).
Rule 3: the become password lives only in `Host.become_password`, which no repr shows.
Rule 4: the file is read through runtime's bounded YAML loader (size, nesting, aliases), and
a bad value is shown cut short, so any input costs bounded time and memory.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from provision.errors import InventoryError
from provision.sshoptions import ssh_options
from runtime.validate import MAX_FILE_BYTES, NotYaml, brief, load_yaml, one_line

GROUP_KEYS = ("hosts", "vars", "children")
HOST_RANGE = re.compile(r"\[[^\[\]:]*:[^\[\]]*\]")  # web[1:3]; linear time on any name
PRIORITY = re.compile(r"[-+]?[0-9]{1,18}")
SECRET_VARS = frozenset({"ansible_become_password", "ansible_become_pass"})
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


@dataclass(frozen=True)
class Host:
    """One host with everything needed to reach it and its combined vars."""

    name: str
    address: str
    port: int = 22
    user: str | None = None
    become: bool = False
    become_user: str = "root"
    become_password: str | None = field(default=None, repr=False)
    key_file: str | None = None
    proxy_command: str | None = None
    known_hosts: tuple[str, ...] = field(default_factory=lambda: ssh_options(None).known_hosts)
    global_known_hosts: tuple[str, ...] = field(default_factory=lambda: ssh_options(None).global_known_hosts)
    host_key_checking: str = field(default_factory=lambda: ssh_options(None).host_key_checking)  # yes|accept-new|no
    groups: tuple[str, ...] = ()
    vars: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def target(self) -> str:
        """`user@address:port`, as errors about reaching the host show it."""
        return f"{self.user + '@' if self.user else ''}{self.address}:{self.port}"


@dataclass(frozen=True)
class Inventory:
    """The parsed file: hosts in file order, and each group's hosts (recursively)."""

    source: str
    hosts: Mapping[str, Host]
    groups: Mapping[str, tuple[str, ...]]

    def resolve(self, pattern: str) -> tuple[Host, ...]:
        """Hosts matching `pattern`: a host, a group, `all`, or a comma list of those."""
        names: list[str] = []
        for term in (t.strip() for t in pattern.split(",")):
            for name in self._term(term):
                if name not in names:
                    names.append(name)
        return tuple(self.hosts[n] for n in self.hosts if n in names)

    def _term(self, term: str) -> tuple[str, ...]:
        if term in ("all", "*"):
            return tuple(self.hosts)
        if term in self.groups:
            return self.groups[term]
        if term in self.hosts:
            return (term,)
        raise InventoryError(
            f"{self.source}: no host or group named {term!r}",
            f"known hosts: {', '.join(self.hosts) or '(none)'}; "
            f"known groups: {', '.join(sorted(self.groups))}",
        )


# ---- value checks: each returns the problem, or None when the value is good ----------


def _show(value: object) -> str:
    return brief(value) if isinstance(value, str) else f"{brief(value)} ({type(value).__name__})"


def as_bool(value: object) -> bool | None:
    """Ansible's reading of a boolean, or None when it is not one."""
    if isinstance(value, bool):
        return value
    if isinstance(value, list | dict):
        return None
    text = str(value).strip().lower()
    return True if text in _TRUE else False if text in _FALSE else None


def as_port(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    return value if isinstance(value, int) and 1 <= value <= 65535 else None


def as_priority(value: object) -> int | None:
    """`ansible_group_priority` as Ansible reads it (`int(value)`), or None when it is not one."""
    if isinstance(value, str) and PRIORITY.fullmatch(value.strip()):
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _check_port(value: object) -> str | None:
    return None if as_port(value) is not None else f"expected 1-65535, got {_show(value)}"


def _check_bool(value: object) -> str | None:
    return None if as_bool(value) is not None else f"expected true or false, got {_show(value)}"


def _check_text(value: object) -> str | None:
    ok = isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip()
    return None if ok else f"expected a non-empty string, got {_show(value)}"


def _check_priority(value: object) -> str | None:
    return None if as_priority(value) is not None else f"expected an integer like 10, got {_show(value)}"


def _check_method(value: object) -> str | None:
    return None if value == "sudo" else f"only 'sudo' is supported, got {_show(value)}"


def _check_ssh_args(value: object) -> str | None:
    if not isinstance(value, str):
        return f"expected a string of ssh options, got {_show(value)}"
    try:
        ssh_options(value)
    except ValueError as exc:
        return str(exc)
    return None


def _check_network(version: int) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        try:
            net = ipaddress.ip_network(value, strict=True) if isinstance(value, str) else None
        except ValueError:
            net = None
        good = net is not None and net.version == version
        like = "10.8.0.0/24" if version == 4 else "fd00:8::/64"
        return None if good else f"expected an IPv{version} network like {like}, got {_show(value)}"

    return check


def _check_addresses(value: object) -> str | None:
    items = value if isinstance(value, list) else [value]
    if all(isinstance(item, str) and _is_address(item) for item in items):
        return None
    return f"expected an IP address or a list of them, got {_show(value)}"


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _check_ifname(value: object) -> str | None:
    ok = isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9_.@-]{1,15}", value)
    return None if ok else f"expected an interface name like eth0, got {_show(value)}"


VAR_CHECKS: Mapping[str, Callable[[object], str | None]] = {
    "ansible_host": _check_text,
    "ansible_port": _check_port,
    "ansible_user": _check_text,
    "ansible_become": _check_bool,
    "ansible_become_user": _check_text,
    "ansible_become_method": _check_method,
    "ansible_become_password": _check_text,
    "ansible_ssh_private_key_file": _check_text,
    "ansible_ssh_common_args": _check_ssh_args,
    "vpn_port": _check_port,
    "vpn_tcp_port": _check_port,
    "vpn_network": _check_network(4),
    "vpn_network6": _check_network(6),
    "vpn_dns": _check_addresses,
    "vpn_client_to_client": _check_bool,
    "vpn_public_interface": _check_ifname,
    "ansible_group_priority": _check_priority,
}


# ---- reading the YAML tree ------------------------------------------------------------


@dataclass
class _Tree:
    """What the walk collects; combined into frozen Hosts at the end."""

    source: str
    host_order: list[str] = field(default_factory=list)
    host_vars: dict[str, dict[str, Any]] = field(default_factory=dict)
    group_vars: dict[str, dict[str, Any]] = field(default_factory=dict)
    group_hosts: dict[str, list[str]] = field(default_factory=dict)
    children: dict[str, list[str]] = field(default_factory=dict)

    def fail(self, where: str, problem: str, hint: str | None = None) -> InventoryError:
        return InventoryError(one_line(f"{self.source}: {where}: {problem}"), hint)


def _check_vars(tree: _Tree, values: object, where: str) -> dict[str, Any]:
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise tree.fail(where, f"expected a mapping of vars, got {_show(values)}")
    for key, value in values.items():
        check = VAR_CHECKS.get(str(key))
        problem = check(value) if check else None
        if problem:
            raise tree.fail(f"{where}.{key}", problem)
    return values


def _walk_group(tree: _Tree, name: str, section: object, where: str) -> None:
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise tree.fail(where, f"expected a group (hosts/vars/children), got {_show(section)}")
    for key in section:
        if key not in GROUP_KEYS:
            raise tree.fail(f"{where}.{key}", "unknown key", f"a group holds {', '.join(GROUP_KEYS)}")
    tree.group_vars.setdefault(name, {}).update(_check_vars(tree, section.get("vars"), f"{where}.vars"))
    tree.group_hosts.setdefault(name, [])
    tree.children.setdefault(name, [])
    _walk_hosts(tree, name, section.get("hosts"), f"{where}.hosts")
    _walk_children(tree, name, section.get("children"), f"{where}.children")


def _entries(tree: _Tree, value: object, where: str, what: str) -> list[tuple[str, Any]]:
    """The `name: section` pairs of a `hosts:` or `children:` mapping (empty when null)."""
    if value is None:
        return []
    if not isinstance(value, dict):
        raise tree.fail(where, f"expected a mapping of {what} names, got {_show(value)}")
    return [(str(name), section) for name, section in value.items()]


def _walk_hosts(tree: _Tree, group: str, hosts: object, where: str) -> None:
    for name, values in _entries(tree, hosts, where, "host"):
        if HOST_RANGE.search(name):
            raise tree.fail(f"{where}.{name}", "host ranges are not supported", "list each host")
        if name not in tree.host_order:
            tree.host_order.append(name)
        checked = _check_vars(tree, values, f"{where}.{name}")
        tree.host_vars.setdefault(name, {}).update(checked)
        if name not in tree.group_hosts[group]:
            tree.group_hosts[group].append(name)


def _walk_children(tree: _Tree, group: str, children: object, where: str) -> None:
    for child, section in _entries(tree, children, where, "group"):
        if child == "all" or _reaches(tree, child, group):
            raise tree.fail(f"{where}.{child}", f"group {child!r} would contain itself")
        if child not in tree.children[group]:
            tree.children[group].append(child)
        _walk_group(tree, child, section, f"{where}.{child}")


def _reaches(tree: _Tree, start: str, target: str) -> bool:
    if start == target:
        return True
    return any(_reaches(tree, c, target) for c in tree.children.get(start, ()))


# ---- combining vars into Hosts --------------------------------------------------------


def _parents(tree: _Tree) -> dict[str, list[str]]:
    parents: dict[str, list[str]] = {g: [] for g in tree.group_vars}
    for group, kids in tree.children.items():
        for kid in kids:
            parents[kid].append(group)
    return parents


def _depths(tree: _Tree) -> dict[str, int]:
    parents = _parents(tree)

    def depth(group: str) -> int:
        return max((depth(p) + 1 for p in parents[group]), default=0 if group == "all" else 1)

    return {group: depth(group) for group in tree.group_vars}


def _ancestors(tree: _Tree, host: str) -> set[str]:
    parents = _parents(tree)
    found: set[str] = {"all"}
    todo = [g for g, members in tree.group_hosts.items() if host in members]
    while todo:
        group = todo.pop()
        if group not in found:
            found.add(group)
            todo.extend(parents[group])
    return found


def _combined_vars(tree: _Tree, host: str, depths: Mapping[str, int]) -> dict[str, Any]:
    def order(group: str) -> tuple[int, int, str]:
        priority = as_priority(tree.group_vars[group].get("ansible_group_priority", 1))
        return depths[group], priority or 0, group  # never None: _check_vars checked it

    combined: dict[str, Any] = {}
    for group in sorted(_ancestors(tree, host), key=order):
        combined.update(tree.group_vars[group])
    combined.update(tree.host_vars[host])
    return combined


def _make_host(name: str, values: Mapping[str, Any], groups: Iterable[str]) -> Host:
    password = values.get("ansible_become_password", values.get("ansible_become_pass"))
    key_file = values.get("ansible_ssh_private_key_file")
    ssh = ssh_options(values.get("ansible_ssh_common_args"))  # checked where it is written
    return Host(
        name=name,
        address=str(values.get("ansible_host", name)),
        port=as_port(values.get("ansible_port", 22)) or 22,
        user=str(values["ansible_user"]) if "ansible_user" in values else None,
        become=bool(as_bool(values.get("ansible_become", False))),
        become_user=str(values.get("ansible_become_user", "root")),
        become_password=None if password is None else str(password),
        key_file=None if key_file is None else str(key_file),
        proxy_command=ssh.proxy_command,
        known_hosts=ssh.known_hosts,
        global_known_hosts=ssh.global_known_hosts,
        host_key_checking=ssh.host_key_checking,
        groups=tuple(sorted(groups)),
        vars=MappingProxyType({k: _freeze(v) for k, v in values.items() if k not in SECRET_VARS}),
    )


def _freeze(value: Any) -> Any:
    """Lists become tuples and mappings read-only, so a Host cannot change under us."""
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    return value


def _members(tree: _Tree, group: str) -> list[str]:
    names = list(tree.group_hosts[group])
    for kid in tree.children[group]:
        names.extend(n for n in _members(tree, kid) if n not in names)
    return names


def _build(tree: _Tree) -> Inventory:
    depths = _depths(tree)
    hosts = {
        name: _make_host(
            name, _combined_vars(tree, name, depths), _ancestors(tree, name) - {"all"}
        )
        for name in tree.host_order
    }
    groups = {g: tuple(n for n in tree.host_order if n in _members(tree, g)) for g in tree.group_vars}
    groups["all"] = tuple(tree.host_order)
    groups["ungrouped"] = tuple(n for n, h in hosts.items() if not h.groups)
    return Inventory(tree.source, MappingProxyType(hosts), MappingProxyType(groups))


def _load_yaml(text: str | bytes, source: str) -> dict[str, Any]:
    try:
        data = load_yaml(text)
    except NotYaml as exc:
        raise InventoryError(f"{source}: {exc}", exc.hint) from None
    if not isinstance(data, dict) or not data:
        raise InventoryError(f"{source}: expected a mapping with an 'all:' group",
                             "start the file with `all:` and its hosts, vars and children")
    return data


def parse_inventory(text: str | bytes, source: str) -> Inventory:
    """Parse an inventory from YAML `text` (bytes: UTF-8); `source` names the file in errors."""
    tree = _Tree(source)
    data = _load_yaml(text, source)
    tree.group_vars.setdefault("all", {})
    tree.group_hosts.setdefault("all", [])
    tree.children.setdefault("all", [])
    for name, section in data.items():
        _walk_group(tree, str(name), section, str(name))
        if name != "all" and name not in tree.children["all"]:
            tree.children["all"].append(str(name))
    return _build(tree)


def load_inventory(path: str | Path) -> Inventory:
    """Read and parse the inventory file at `path`."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InventoryError(f"{path}: cannot read: {exc.strerror}", "check the --inventory path") from None
    if len(data) > MAX_FILE_BYTES:
        raise InventoryError(f"{path}: {len(data)} bytes is too large for an inventory", "check the --inventory path")
    return parse_inventory(data, str(path))
