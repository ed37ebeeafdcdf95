"""The inventory reads Ansible's YAML format, combines vars as Ansible does, and says
exactly where a value is wrong."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from provision.errors import InventoryError
from provision.inventory import load_inventory, parse_inventory
from provision.sshoptions import ssh_options
from tests.config.yaml_bombs import with_bomb

DATA = Path(__file__).parent / "data"
EXAMPLE = DATA / "hosts.yml"


def names(hosts) -> list[str]:
    return [h.name for h in hosts]


def test_connection_settings_come_from_ansible_vars():
    inv = load_inventory(EXAMPLE)
    vps1, vps2, vps3 = inv.hosts["vps1"], inv.hosts["vps2"], inv.hosts["vps3"]
    assert (vps1.address, vps1.port, vps1.user, vps1.become) == ("203.0.113.10", 2222, "root", False)
    assert (vps2.user, vps2.become, vps2.become_password) == ("admin", True, "hunter2")
    assert vps2.key_file == "~/.ssh/vps2"
    assert vps3.proxy_command == "ip netns exec vpnlab-internet socat STDIO TCP:%h:%p"
    assert inv.hosts["solo"].address == "198.51.100.9"


def test_precedence_all_then_parent_then_child_then_host():
    hosts = load_inventory(EXAMPLE).hosts
    assert hosts["solo"].vars["vpn_port"] == 4443  # all
    assert hosts["vps1"].vars["vpn_port"] == 5443  # vpn beats all
    assert hosts["vps3"].vars["vpn_port"] == 6443  # europe (child of vpn) beats vpn
    assert hosts["vps3"].vars["vpn_client_to_client"] is True  # host beats groups
    assert hosts["vps2"].vars["vpn_dns"] == ("10.9.0.1", "10.9.0.2")  # host vars merge


def test_same_depth_groups_combine_by_name():
    # vps2 is in `lab` and `vpn` (both children of all): `vpn` sorts last and wins.
    vps2 = load_inventory(EXAMPLE).hosts["vps2"]
    assert vps2.vars["vpn_public_interface"] == "eth0"
    assert vps2.vars["vpn_network"] == "10.9.0.0/24"  # only lab sets it


def test_group_priority_overrides_name_order():
    text = """
all:
  children:
    a: {vars: {x: from-a, ansible_group_priority: 10}, hosts: {h: }}
    b: {vars: {x: from-b}, hosts: {h: }}
"""
    assert parse_inventory(text, "inv.yml").hosts["h"].vars["x"] == "from-a"


def test_become_password_is_never_shown():
    vps2 = load_inventory(EXAMPLE).hosts["vps2"]
    assert "hunter2" not in repr(vps2)
    assert "ansible_become_password" not in vps2.vars


def test_patterns_host_group_all_and_lists():
    inv = load_inventory(EXAMPLE)
    assert names(inv.resolve("all")) == ["solo", "vps1", "vps2", "vps3"]
    assert names(inv.resolve("vpn")) == ["vps1", "vps2", "vps3"]
    assert names(inv.resolve("europe")) == ["vps3"]
    assert names(inv.resolve("vps3, solo,europe")) == ["solo", "vps3"]


def test_unknown_pattern_lists_what_exists():
    with pytest.raises(InventoryError) as err:
        load_inventory(EXAMPLE).resolve("vps1,vps9")
    assert "no host or group named 'vps9'" in err.value.message
    assert "vps1, vps2" in err.value.hint and "europe" in err.value.hint


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("all:\n  hosts:\n    vps1:\n      ansible_port: auto\n",
         "inventory/hosts.yml: all.hosts.vps1.ansible_port: expected 1-65535, got 'auto'"),
        ("all:\n  vars:\n    ansible_port: 70000\n",
         "inventory/hosts.yml: all.vars.ansible_port: expected 1-65535, got 70000 (int)"),
        ("all:\n  children:\n    vpn:\n      vars: {vpn_network: 10.8.0.1/24}\n",
         "all.children.vpn.vars.vpn_network: expected an IPv4 network"),
        ("all:\n  hosts:\n    a: {ansible_become: maybe}\n",
         "all.hosts.a.ansible_become: expected true or false, got 'maybe'"),
        ("all:\n  hosts:\n    a: {ansible_become_method: su}\n", "only 'sudo' is supported"),
        ("all:\n  chilren: {}\n", "inventory/hosts.yml: all.chilren: unknown key"),
        ("all:\n  hosts: [a, b]\n", "all.hosts: expected a mapping of host names"),
        ("all:\n  hosts:\n    web[1:3]:\n", "host ranges are not supported"),
        ("- just a list\n", "expected a mapping with an 'all:' group"),
        ("all: {hosts: {a: }\n", "not valid YAML"),
        ("all:\n  children:\n    a:\n      children:\n        all:\n", "would contain itself"),
    ],
)
def test_errors_name_file_path_and_value(text, where):
    with pytest.raises(InventoryError) as err:
        parse_inventory(text, "inventory/hosts.yml")
    assert where in err.value.line()


def test_port_error_has_the_documented_form_and_a_hint():
    with pytest.raises(InventoryError) as err:
        parse_inventory("all:\n  hosts:\n    vps1:\n      ansible_port: auto\n", "inventory/hosts.yml")
    assert err.value.message == "inventory/hosts.yml: all.hosts.vps1.ansible_port: expected 1-65535, got 'auto'"
    assert err.value.hint == "fix the inventory file and run again"


def test_missing_file_is_an_inventory_error(tmp_path):
    with pytest.raises(InventoryError, match="cannot read"):
        load_inventory(tmp_path / "nope.yml")


def test_a_file_that_is_not_utf8_is_an_inventory_error(tmp_path):
    path = tmp_path / "hosts.yml"
    path.write_bytes(b"\x83")
    with pytest.raises(InventoryError) as err:
        load_inventory(path)
    assert err.value.line() == f"{path}: not UTF-8 text (is this the right file?)"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("!!float l", "not valid YAML at line 1: !!float expects a number like 1.5, got 'l'"),
        ("!!float :", "not valid YAML at line 1: !!float expects a number like 1.5, got ''"),
        ("all:\n  vars: {ansible_port: !!int x}\n", "not valid YAML at line 2: !!int expects an integer, got 'x'"),
        ("[" * 5000, "not valid YAML at line 1: exceeded maximum nesting depth"),
        ("all: " + "{a: " * 100 + "}" * 100, "not valid YAML at line 1: nested deeper than 64 levels"),
    ],
    ids=["bad float", "empty float", "bad int", "5000 brackets", "deep nesting"],
)
def test_yaml_the_loader_cannot_build_is_an_inventory_error(text, problem):
    with pytest.raises(InventoryError) as err:
        parse_inventory(text, "inventory/hosts.yml")
    assert err.value.message == f"inventory/hosts.yml: {problem}"


@pytest.mark.parametrize(
    ("priority", "shown"), [("x", "'x'"), ("[1]", "[1] (list)"), (".inf", "inf (float)"), ("true", "True (bool)")]
)
def test_group_priority_must_be_an_integer(priority, shown):
    text = f"all:\n  vars: {{ansible_group_priority: {priority}}}\n  hosts: {{a: }}\n"
    with pytest.raises(InventoryError) as err:
        parse_inventory(text, "inventory/hosts.yml")
    assert err.value.message == (
        f"inventory/hosts.yml: all.vars.ansible_group_priority: expected an integer like 10, got {shown}"
    )


def test_an_alias_bomb_under_a_checked_var_is_refused_at_once():
    started = time.monotonic()
    with pytest.raises(InventoryError) as err:
        parse_inventory(with_bomb("all:\n  hosts:\n    h:\n      vpn_dns: BOMB\n"), "inventory/hosts.yml")
    assert err.value.message == "inventory/hosts.yml: more than 100000 values once YAML aliases are expanded"
    assert time.monotonic() - started < 1


def test_vars_shared_through_an_alias_are_read():
    text = """
all:
  children:
    a: {vars: &common {vpn_port: 4443, vpn_dns: [10.8.0.1]}, hosts: {h1: }}
    b: {vars: *common, hosts: {h2: {<<: *common, vpn_port: 5443}}}
"""
    hosts = parse_inventory(text, "inv.yml").hosts
    assert (hosts["h1"].vars["vpn_port"], hosts["h2"].vars["vpn_port"]) == (4443, 5443)
    assert hosts["h2"].vars["vpn_dns"] == ("10.8.0.1",)


def test_a_long_host_name_with_brackets_is_checked_in_linear_time():
    started = time.monotonic()
    inventory = parse_inventory("all:\n  hosts:\n    ? h" + "[" * 100_000 + "\n", "inv.yml")
    assert len(inventory.hosts) == 1 and time.monotonic() - started < 1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ('-o ProxyCommand="nc %h %p"', "nc %h %p"),
        ("-oProxyCommand='ssh -W %h:%p jump'", "ssh -W %h:%p jump"),
        ('-o StrictHostKeyChecking=no -o "ProxyCommand nc %h %p"', "nc %h %p"),
        ('-o "ProxyCommand ssh -o Foo=bar -W %h:%p jump"', "ssh -o Foo=bar -W %h:%p jump"),
        ("-o proxycommand=first -o ProxyCommand=second", "first"),
        ("-o ProxyCommand=none", None),
        ("-o StrictHostKeyChecking=no", None),
        (None, None),
    ],
)
def test_proxy_command_from_ssh_common_args(args, expected):
    assert ssh_options(args).proxy_command == expected


@pytest.mark.parametrize(
    ("args", "known_hosts", "checking"),
    [
        ("-o UserKnownHostsFile=/srv/kh -o StrictHostKeyChecking=yes", ("/srv/kh",), "yes"),
        ('-o "UserKnownHostsFile /srv/a ~/b" -o "StrictHostKeyChecking accept-new"',
         ("/srv/a", str(Path.home() / "b")), "accept-new"),
        ("-oUserKnownHostsFile=/dev/null -oStricthostkeychecking=No", ("/dev/null",), "no"),
        ("-o userknownhostsfile=none -o StrictHostKeyChecking=off", (), "no"),
        ("-o StrictHostKeyChecking=ask -o StrictHostKeyChecking=no", (str(Path.home() / ".ssh/known_hosts"),), "yes"),
        ("", (str(Path.home() / ".ssh/known_hosts"),), "accept-new"),
    ],
    ids=["K=V", "'K V', two files", "/dev/null, any case", "none, off", "ask is yes, first wins", "defaults"],
)
def test_host_key_options_from_ssh_common_args(args, known_hosts, checking):
    options = ssh_options(args)
    assert (options.known_hosts, options.host_key_checking) == (known_hosts, checking)
    assert options.global_known_hosts == ("/etc/ssh/ssh_known_hosts",)


def test_hosts_carry_their_host_key_options_and_the_defaults():
    text = """
all:
  vars: {ansible_ssh_common_args: '-o UserKnownHostsFile="/srv/kh /srv/kh2" -o StrictHostKeyChecking=yes'}
  hosts:
    a:
    b: {ansible_ssh_common_args: '-o GlobalKnownHostsFile=none'}
"""
    hosts = parse_inventory(text, "inv.yml").hosts
    assert (hosts["a"].known_hosts, hosts["a"].host_key_checking) == (("/srv/kh", "/srv/kh2"), "yes")
    assert hosts["a"].global_known_hosts == ("/etc/ssh/ssh_known_hosts",)
    # a host's own args replace the group's, as in Ansible: b is back to the defaults
    assert (hosts["b"].known_hosts, hosts["b"].host_key_checking) == ((str(Path.home() / ".ssh/known_hosts"),),
                                                                      "accept-new")
    assert hosts["b"].global_known_hosts == ()


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ("-o StrictHostKeyChecking=maybe",
         "StrictHostKeyChecking: expected yes, accept-new, no, off or ask, got 'maybe'"),
        ("-o UserKnownHostsFile=%d/.ssh/kh",
         "UserKnownHostsFile: tokens like %d or ${HOME} are not supported, got '%d/.ssh/kh'; write the path out "
         "(~ is expanded)"),
        ("-o ProxyCommand='nc %h", "cannot split \"-o ProxyCommand='nc %h\": No closing quotation"),
    ],
)
def test_a_bad_ssh_option_names_the_file_the_var_and_the_option(args, problem):
    text = f"all:\n  hosts:\n    vps1:\n      ansible_ssh_common_args: {json.dumps(args)}\n"
    with pytest.raises(InventoryError) as err:
        parse_inventory(text, "inventory/hosts.yml")
    assert err.value.line() == (f"inventory/hosts.yml: all.hosts.vps1.ansible_ssh_common_args: {problem} "
                                "(fix the inventory file and run again)")


# ---- agreement with Ansible's own reading of the same file ------------------------------

ANSIBLE_INVENTORY = shutil.which("ansible-inventory") or shutil.which(
    str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "ansible-inventory")
)


def ansible_list(path: Path) -> dict:
    out = subprocess.run(
        [ANSIBLE_INVENTORY, "-i", str(path), "--list"],
        check=True, capture_output=True, text=True, timeout=120,
        env={"PATH": str(Path(ANSIBLE_INVENTORY).parent), "ANSIBLE_LOCAL_TEMP": "/tmp",
             "ANSIBLE_HOME": "/tmp/selfvpn-ansible-home"},
    )
    return json.loads(out.stdout)


def ansible_members(listing: dict, group: str) -> set[str]:
    entry = listing.get(group, {})
    found = set(entry.get("hosts", []))
    for child in entry.get("children", []):
        found |= ansible_members(listing, child)
    return found


def plain(value):
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.skipif(ANSIBLE_INVENTORY is None, reason="ansible-inventory is not installed")
def test_ansible_inventory_agrees_on_hosts_groups_and_vars():
    listing = ansible_list(EXAMPLE)
    ours = load_inventory(EXAMPLE)
    hostvars = listing["_meta"]["hostvars"]
    assert set(hostvars) == set(ours.hosts)
    for group, members in ours.groups.items():
        assert ansible_members(listing, group) == set(members), group
    for name, host in ours.hosts.items():
        theirs = {k: v for k, v in hostvars[name].items() if k != "ansible_become_password"}
        assert {k: plain(v) for k, v in host.vars.items()} == theirs, name
        assert hostvars[name].get("ansible_become_password") == host.become_password
