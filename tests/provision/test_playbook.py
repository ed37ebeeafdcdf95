"""Playbooks: checked at load with errors that name file, step and fix; rendered per
host with `{{ var }}` and `when:` and nothing more."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from provision.errors import PlaybookError
from provision.ops import FileOp, SysctlOp
from provision.playbook import load_playbook, parse_playbook
from runtime.validate import MAX_FILE_BYTES
from tests.config.yaml_bombs import with_bomb
from tests.provision.helpers import REGISTRY, RestartOp

DATA = Path(__file__).parent / "data"
VARS = {"vpn_port": 4443, "vpn_network": "10.8.0.0/24", "vpn_unit": "selfvpn.service", "vpn_network6": None}
SRC = "playbooks/server.yml"


def parse(text: str):
    return parse_playbook(text, SRC, REGISTRY)


def error_of(text: str) -> PlaybookError:
    with pytest.raises(PlaybookError) as err:
        parse(text)
    return err.value


def test_example_playbook_loads_and_renders_for_a_host():
    playbook = load_playbook(DATA / "server.yml", REGISTRY)
    steps, handlers = playbook.for_host(VARS)
    assert [s.step.name for s in steps] == ["state directory", "server config", "forward IPv4", "forward IPv6"]
    assert steps[1].operation == FileOp("/etc/selfvpn/server.conf", "port 4443\nnetwork 10.8.0.0/24\n", "0600")
    assert steps[2].operation == SysctlOp("net.ipv4.ip_forward", 1)
    assert steps[2].step.notify == ("restart vpn",)
    assert steps[3].operation is None  # when: vpn_network6 is null
    assert handlers["restart vpn"].operation == RestartOp("selfvpn.service")


def test_the_documented_error_form():
    err = error_of("- name: forward\n  op: file\n  args: {path: /a, content: x}\n"
                   "- op: file\n  args: {path: /b, content: y}\n"
                   "- op: sysctl\n  args: {key: net.ipv4.ip_forward, vaule: 1}\n")
    assert err.message == "playbooks/server.yml: step 3 (op: sysctl): unknown arg 'vaule'"
    assert err.hint == "sysctl takes: key, value, persist"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- op: sysctll\n", "step 1: unknown op 'sysctll'"),
        ("- op: sysctl\n  agrs: {}\n", "step 1: unknown key 'agrs'"),
        ("- op: sysctl\n  args: {key: net.ipv4.ip_forward}\n", "step 1 (op: sysctl): missing arg 'value'"),
        ("- op: sysctl\n  args: [1]\n", "step 1 (op: sysctl): args: expected a mapping"),
        ("- op: file\n  args: {path: /a, content: x, mode: 0644}\n",
         "step 1 (op: file): arg 'mode': expected str, got 420 (int)"),
        ("- op: file\n  args: {path: a, content: x}\n", "step 1 (op: file): path must be absolute"),
        ("- op: sysctl\n  args: {key: a.b, value: 1, persist: maybe}\n", "step 1 (op: sysctl): arg 'persist': expected bool, got 'maybe' (str)"),
        ("- op: file\n  args: {path: /a, content: '{{ a + b }}'}\n",
         "step 1 (op: file): '{{ a + b }}': only {{ name }} of a host var is allowed"),
        ("- op: file\n  args: {path: /a, content: x}\n  when: a and b\n",
         "step 1 (op: file): when: 'a and b': write NAME, not NAME"),
        ("- op: file\n  args: {path: /a, content: x}\n  notify: restart\n",
         "step 1 (op: file): notify: no handler named 'restart'"),
        ("- just a string\n", "step 1: expected a mapping with name, op and args"),
        ("steps: {op: file}\n", "expected a list of steps"),
        ("steps: []\nhandlers:\n  - {name: h, op: restart, args: {unit: a}}\n"
         "  - {name: h, op: restart, args: {unit: b}}\n", "handler 2 (op: restart): two handlers are named 'h'"),
        ("- op: file\n  args: {path: /a\n", "not valid YAML"),
    ],
)
def test_errors_name_the_file_and_the_step(text, message):
    assert f"{SRC}: {message}" in error_of(text).message


def test_unknown_op_hint_lists_the_known_ones():
    assert error_of("- op: nope\n").hint == (
        "known ops: baseline, ca_cert, crl, directory, file, nft_table, package, platform, resolver, restart, runtime, "
        "server_cert, server_config, sysctl, unit")


def test_whole_string_var_keeps_its_type_and_embedded_var_is_text():
    playbook = parse("- op: sysctl\n  args: {key: net.core.somaxconn, value: '{{ vpn_port }}'}\n"
                     "- op: file\n  args: {path: /a, content: 'port={{ vpn_port }}'}\n")
    steps, _ = playbook.for_host(VARS)
    assert steps[0].operation.value == 4443
    assert steps[1].operation.content == "port=4443"


def test_undefined_var_is_an_error_for_that_host():
    playbook = parse("- op: file\n  args: {path: /a, content: '{{ nope }}'}\n")
    with pytest.raises(PlaybookError, match=r"step 1 \(op: file\): undefined variable 'nope'"):
        playbook.for_host(VARS)


def test_type_errors_after_substitution_are_found_per_host():
    playbook = parse("- op: file\n  args: {path: /a, content: '{{ vpn_port }}'}\n")
    with pytest.raises(PlaybookError, match="arg 'content': expected str, got 4443"):
        playbook.for_host(VARS)


@pytest.mark.parametrize(
    ("when", "runs"),
    [("flag", True), ("not flag", False), ("mode == 'full'", True), ("mode != 'full'", False),
     ("count == 3", True), ("missing_flag", None)],
)
def test_when_conditions(when, runs):
    playbook = parse(f"- op: file\n  args: {{path: /a, content: x}}\n  when: \"{when}\"\n")
    host_vars = {"flag": True, "mode": "full", "count": 3}
    if runs is None:
        with pytest.raises(PlaybookError, match="undefined variable 'missing_flag'"):
            playbook.for_host(host_vars)
        return
    steps, _ = playbook.for_host(host_vars)
    assert (steps[0].operation is not None) is runs


def test_missing_playbook_file(tmp_path):
    with pytest.raises(PlaybookError, match="cannot read"):
        load_playbook(tmp_path / "none.yml")


# ---- hostile input: only PlaybookError, one line, in bounded time (fuzz reports 7-9) ------


def test_a_file_that_is_not_utf8_is_a_playbook_error(tmp_path):
    path = tmp_path / "server.yml"
    path.write_bytes(b"\xca")
    with pytest.raises(PlaybookError) as err:
        load_playbook(path, REGISTRY)
    assert err.value.line() == f"{path}: not UTF-8 text (is this the right file?)"


def test_a_file_too_large_is_a_playbook_error(tmp_path):
    path = tmp_path / "server.yml"
    path.write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    with pytest.raises(PlaybookError, match=f"{path}: {MAX_FILE_BYTES + 1} bytes is too large"):
        load_playbook(path, REGISTRY)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("- !!float e: 1\n", "not valid YAML at line 1: !!float expects a number like 1.5, got 'e'"),
        ("!!float :", "not valid YAML at line 1: !!float expects a number like 1.5, got ''"),
        ("[" * 5000, "not valid YAML at line 1: exceeded maximum nesting depth"),
        ("- " + "{a: " * 100 + "}" * 100, "not valid YAML at line 1: nested deeper than 64 levels"),
    ],
    ids=["bad float key", "empty float", "5000 brackets", "deep nesting"],
)
def test_yaml_the_loader_cannot_build_is_a_playbook_error(text, problem):
    assert error_of(text).message == f"{SRC}: {problem}"


@pytest.mark.parametrize(
    ("when", "problem"),
    [
        ("a == [", "not valid YAML: did not find expected node content"),
        ("a == !!binary x", "not valid YAML: "),
        ("a == !!int x", "not valid YAML: !!int expects an integer, got 'x'"),
    ],
)
def test_a_when_value_that_is_not_yaml_is_a_playbook_error(when, problem):
    err = error_of(f"- op: sysctl\n  args: {{key: a.b, value: 1}}\n  when: '{when}'\n")
    assert err.message.startswith(f"{SRC}: step 1 (op: sysctl): when: {when!r}: {problem}")
    assert "\n" not in err.line()


def test_an_alias_bomb_in_args_is_refused_at_once():
    started = time.monotonic()
    with pytest.raises(PlaybookError) as err:
        parse(with_bomb("- op: sysctl\n  args: {key: a.b, value: BOMB}\n", levels=6))
    assert err.value.message == f"{SRC}: more than 100000 values once YAML aliases are expanded"
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(
    "place",
    [
        "- op: sysctl\n  args: {key: a.b, value: BOMB}\n",  # wrong type: conform's message
        "- op: sysctl\n  args: {key: BOMB, value: 1}\n",
        "- op: BOMB\n",
        "- op: sysctl\n  args: BOMB\n",
        "- op: sysctl\n  args: {key: a.b, value: 1}\n  notify: BOMB\n",
        "- op: sysctl\n  args: {key: a.b, value: 1}\n  when: BOMB\n",
        "- op: sysctl\n  args: {key: a.b, value: 1}\n  name: BOMB\n",
    ],
    ids=["arg type", "arg key type", "op", "args", "notify", "when", "name"],
)
def test_errors_show_a_large_shared_value_briefly(place):
    """Just under the loader's cap (9**5 strings through aliases): the message stays short."""
    started = time.monotonic()
    err = error_of(with_bomb(place, levels=4))
    assert len(err.line()) < 400 and "\n" not in err.line()
    assert time.monotonic() - started < 1


def test_a_template_deep_in_shared_args_is_still_rendered_per_host():
    playbook = parse("- op: file\n  args: {path: /a, content: &c '{{ vpn_unit }}'}\n"
                     "- op: file\n  args: {path: /b, content: *c}\n")
    steps, _ = playbook.for_host(VARS)
    assert [s.operation.content for s in steps] == ["selfvpn.service", "selfvpn.service"]
