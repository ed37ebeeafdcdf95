"""Host key checking over real SSH: our `connect` against a paramiko server with an Ed25519
host key the test picks, on a loopback port or behind a ProxyCommand, with the
known-hosts files in a temp dir.  OpenSSH's ssh-keygen reads back what we write."""

from __future__ import annotations

import dataclasses
import getpass
import logging
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import paramiko
import pytest

from provision import hostkeys
from provision.clients.fanout import on_one
from provision.connection import connect
from provision.errors import HostKeyChanged, HostKeyUnknown
from provision.hostkeys import fingerprint, known_keys
from provision.inventory import parse_inventory
from provision.lab import lab as lab_mod
from provision.lab import labinventory
from provision.lab.lab import HostState, LabState
from provision.lab.topology import HOSTS
from tests.provision.fakes import host
from tests.provision.loopback_sshd import LoopbackSshd, host_key

ROOT = Path(__file__).resolve().parents[2]
STDIO_SERVER = Path(__file__).with_name("stdio_sshd.py")
SSH_KEYGEN = shutil.which("ssh-keygen")
needs_ssh_keygen = pytest.mark.skipif(SSH_KEYGEN is None, reason="OpenSSH's ssh-keygen is not installed")


@pytest.fixture
def sshd():
    server = LoopbackSshd(host_key())
    yield server
    server.close()


@pytest.fixture
def login_key(tmp_path) -> str:
    path = tmp_path / "id_ecdsa"
    paramiko.ECDSAKey.generate().write_private_key_file(str(path))
    return str(path)


@pytest.fixture
def notes(caplog):
    """The lines the check logs (what the operator sees on stderr)."""
    caplog.set_level(logging.INFO, logger="provision.hostkeys")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "provision.hostkeys"]


def web1(sshd, login_key, known: Path | str, checking: str, **more):
    return host("web1", address="127.0.0.1", port=sshd.port, user=getpass.getuser(), key_file=login_key,
                known_hosts=(str(known),), host_key_checking=checking, **more)


def reach(target) -> str:
    remote = connect(target, timeout=10)
    try:
        return remote.run("echo reached").stdout.strip()
    finally:
        remote.close()


def openssh_line(name: str, key: paramiko.PKey) -> str:
    return f"{name} {key.get_name()} {key.get_base64()}\n"


def keygen_fingerprint(key: paramiko.PKey, tmp_path: Path) -> str:
    """The fingerprint as OpenSSH's ssh-keygen prints it for `key`."""
    pub = tmp_path / "key.pub"
    pub.write_text(f"{key.get_name()} {key.get_base64()}\n")
    out = subprocess.run([SSH_KEYGEN, "-l", "-E", "sha256", "-f", str(pub)], capture_output=True, text=True,
                         check=True).stdout
    return out.split()[1]


# ---- StrictHostKeyChecking=yes ------------------------------------------------------------


@needs_ssh_keygen
def test_an_unknown_key_under_yes_is_refused_with_one_line_and_exit_code_10(sshd, login_key, tmp_path):
    known = tmp_path / "known_hosts"
    with pytest.raises(HostKeyUnknown) as err:
        connect(web1(sshd, login_key, known, "yes"), timeout=10)
    name, shown = f"[127.0.0.1]:{sshd.port}", f"ssh-ed25519 {keygen_fingerprint(sshd.host_key, tmp_path)}"
    assert err.value.exit_code == 10
    assert err.value.line() == (
        f"web1 ({getpass.getuser()}@127.0.0.1:{sshd.port}): the SSH host key of {name} ({shown}) is not in "
        f"{known} and StrictHostKeyChecking=yes (check the fingerprint, then add the key to {known} with "
        "ssh-keyscan or one ssh login, or set StrictHostKeyChecking=accept-new)"
    )
    assert not known.exists()


def test_a_known_key_under_yes_connects_also_from_a_hashed_line_and_the_global_file(sshd, login_key, tmp_path):
    name = f"[127.0.0.1]:{sshd.port}"
    hashed, plain = tmp_path / "hashed", tmp_path / "global"
    hashed.write_text(openssh_line(paramiko.HostKeys.hash_host(name), sshd.host_key))
    plain.write_text(openssh_line(name, sshd.host_key))
    assert reach(web1(sshd, login_key, hashed, "yes")) == "reached"
    assert reach(web1(sshd, login_key, tmp_path / "absent", "yes", global_known_hosts=(str(plain),))) == "reached"
    assert not (tmp_path / "absent").exists()


# ---- accept-new ---------------------------------------------------------------------------


@needs_ssh_keygen
def test_accept_new_records_one_openssh_line_once_then_uses_it(sshd, login_key, tmp_path, notes):
    known = tmp_path / "home" / ".ssh" / "known_hosts"
    name = f"[127.0.0.1]:{sshd.port}"
    assert reach(web1(sshd, login_key, known, "accept-new")) == "reached"
    assert known.read_text() == openssh_line(name, sshd.host_key)
    assert (known.stat().st_mode & 0o777, known.parent.stat().st_mode & 0o777) == (0o600, 0o700)
    shown = keygen_fingerprint(sshd.host_key, tmp_path)
    assert notes() == [f"web1: added the SSH host key of {name} to {known} (ssh-ed25519 {shown})"]
    # OpenSSH finds the line under the name ssh itself looks up
    found = subprocess.run([SSH_KEYGEN, "-F", name, "-f", str(known)], capture_output=True, text=True)
    assert found.returncode == 0 and f"{name} ssh-ed25519" in found.stdout
    # the next connections use it, and write nothing: under yes it is known now
    assert reach(web1(sshd, login_key, known, "accept-new")) == "reached"
    assert reach(web1(sshd, login_key, known, "yes")) == "reached"
    assert known.read_text() == openssh_line(name, sshd.host_key) and len(notes()) == 1


def test_accept_new_appends_and_leaves_every_other_line_as_it_was(sshd, login_key, tmp_path):
    known = tmp_path / "known_hosts"
    other = host_key()
    before = (f"# mine\n{openssh_line('203.0.113.9', other)}"
              f"{openssh_line(paramiko.HostKeys.hash_host('198.51.100.7'), other)}"
              f"garbage that is no line\n[127.0.0.1]:1 ssh-ed25519 {other.get_base64()}")  # no final newline
    known.write_text(before)
    known.chmod(0o644)
    assert reach(web1(sshd, login_key, known, "accept-new")) == "reached"
    assert known.read_text() == before + "\n" + openssh_line(f"[127.0.0.1]:{sshd.port}", sshd.host_key)
    assert known.stat().st_mode & 0o777 == 0o644


def test_accept_new_with_dev_null_connects_and_writes_nothing(sshd, login_key, notes):
    assert reach(web1(sshd, login_key, os.devnull, "accept-new")) == "reached"
    assert len(notes()) == 1 and notes()[0].endswith("; not recorded")


def test_a_known_hosts_file_we_cannot_read_or_write_is_said_and_passed_over(sshd, login_key, tmp_path, notes):
    (tmp_path / "a-file").write_text("")
    unwritable = tmp_path / "a-file" / "known_hosts"  # its directory is a file
    assert reach(web1(sshd, login_key, unwritable, "accept-new")) == "reached"  # as ssh: accepted, not recorded
    assert notes()[-1].endswith(f"but could not record it in {unwritable}: File exists")
    with pytest.raises(HostKeyUnknown):
        connect(web1(sshd, login_key, tmp_path, "yes"), timeout=10)  # a directory
    assert notes()[-1] == f"web1: cannot read known-hosts file {tmp_path}: Is a directory; passed over"


# ---- no -------------------------------------------------------------------------------------


def test_no_connects_and_records_nothing(sshd, login_key, tmp_path, notes):
    known = tmp_path / "known_hosts"
    assert reach(web1(sshd, login_key, known, "no")) == "reached"
    assert not known.exists() and notes() == []


# ---- a changed key ----------------------------------------------------------------------------


@pytest.mark.parametrize("checking", ["yes", "accept-new", "no"])
def test_a_changed_key_is_refused_under_every_policy_and_the_file_is_untouched(sshd, login_key, tmp_path, checking):
    known, name = tmp_path / "known_hosts", f"[127.0.0.1]:{sshd.port}"
    # the second line is not base64: it is passed over, and does not hide the third
    known.write_text(f"# web1\n{name} ssh-ed25519 not-base64!\n{openssh_line(name, host_key())}")
    before = known.read_bytes()
    with pytest.raises(HostKeyChanged) as err:
        connect(web1(sshd, login_key, known, checking), timeout=10)
    assert err.value.exit_code == 11
    assert err.value.line() == (
        f"web1 ({getpass.getuser()}@127.0.0.1:{sshd.port}): the SSH host key of {name} has CHANGED "
        f"(ssh-ed25519 {fingerprint(sshd.host_key.asbytes())}) from the one in {known} line 3: possible "
        f"man-in-the-middle (if the host was rebuilt, remove the old key with ssh-keygen -f {known} "
        f"-R '{name}', then connect again)"
    )
    assert known.read_bytes() == before


@needs_ssh_keygen
def test_the_changed_key_hint_is_a_command_that_works(sshd, login_key, tmp_path):
    known, name = tmp_path / "known_hosts", f"[127.0.0.1]:{sshd.port}"
    known.write_text(openssh_line(name, host_key()))
    with pytest.raises(HostKeyChanged) as err:
        connect(web1(sshd, login_key, known, "accept-new"), timeout=10)
    command = err.value.hint.split("remove the old key with ", 1)[1].split(", then", 1)[0]
    subprocess.run(shlex.split(command), check=True, capture_output=True)
    assert reach(web1(sshd, login_key, known, "accept-new")) == "reached"
    assert known.read_text() == openssh_line(name, sshd.host_key)


# ---- the name looked up: behind a ProxyCommand, port 22 or not ---------------------------------


@pytest.mark.parametrize(("port", "name"), [(22, "web1.test"), (2222, "[web1.test]:2222")])
def test_behind_a_proxy_command_the_name_is_the_inventory_address(tmp_path, login_key, port, name):
    key_file = tmp_path / "host_key"
    key = host_key(path=key_file)
    known = tmp_path / "known_hosts"
    target = host("web1", address="web1.test", port=port, user=getpass.getuser(), key_file=login_key,
                  proxy_command=f"{sys.executable} {STDIO_SERVER} {key_file}", known_hosts=(str(known),),
                  host_key_checking="accept-new")
    assert reach(target) == "reached"
    assert known.read_text() == openssh_line(name, key)


@pytest.mark.parametrize("server", ["vps1", "vps2"])
def test_the_lab_known_hosts_file_lets_its_inventory_in_under_yes(tmp_path, login_key, monkeypatch, server):
    """The lab writes its hosts' real keys (`[addr]:port` off port 22) and its inventory
    says StrictHostKeyChecking=yes: the names we look up are the ones it writes."""
    known = tmp_path / "lab_known_hosts"
    monkeypatch.setattr(lab_mod, "KNOWN_HOSTS", known)
    monkeypatch.setattr(labinventory, "KNOWN_HOSTS", known)
    pems = {h.name: host_key(path=tmp_path / f"{h.name}.key") for h in HOSTS}
    state = LabState("/img", "pw", {h.name: HostState(1, 2, pems[h.name].get_base64()) for h in HOSTS})
    lab_mod._write_known_hosts(state)
    lab_host = parse_inventory(labinventory.render(state), "lab.yml").hosts[server]
    assert (lab_host.known_hosts, lab_host.host_key_checking) == ((str(known),), "yes")
    through_stdio = dataclasses.replace(
        lab_host, key_file=login_key, user=getpass.getuser(), become=False,
        proxy_command=f"{sys.executable} {STDIO_SERVER} {tmp_path / f'{server}.key'}")
    assert reach(through_stdio) == "reached"
    wrong = dataclasses.replace(through_stdio, proxy_command=f"{sys.executable} {STDIO_SERVER} {tmp_path / 'vps3.key'}")
    with pytest.raises(HostKeyChanged, match=f"from the one in {known} line"):
        connect(wrong, timeout=10)


# ---- pure parts ---------------------------------------------------------------------------------


@needs_ssh_keygen
def test_fingerprint_is_openssh_s(tmp_path):
    key = host_key()
    assert fingerprint(key.asbytes()) == keygen_fingerprint(key, tmp_path)


def test_known_keys_match_plain_listed_and_hashed_names_and_skip_the_rest():
    key = host_key()
    blob, b64 = key.asbytes(), key.get_base64()
    text = "\n".join([
        f"a.test,[198.51.100.20]:2222 ssh-ed25519 {b64}",
        f"{paramiko.HostKeys.hash_host('[198.51.100.20]:2222')} ssh-ed25519 {b64} comment",
        f"# [198.51.100.20]:2222 ssh-ed25519 {b64}",
        f"@revoked [198.51.100.20]:2222 ssh-ed25519 {b64}",
        f"198.51.100.20 ssh-ed25519 {b64}",
        "[198.51.100.20]:2222 ssh-ed25519 ***",
        "|1|bad|salt ssh-ed25519 AAAA",
    ])
    found = list(known_keys(text, "kh", "[198.51.100.20]:2222"))
    assert [(k.line, k.keytype, k.blob) for k in found] == [(1, "ssh-ed25519", blob), (2, "ssh-ed25519", blob)]


def test_two_connections_racing_to_record_one_host_write_one_line(tmp_path):
    key, known = host_key(), tmp_path / "known_hosts"
    assert hostkeys.append_known(known, "[h]:2", key.get_name(), key.asbytes())
    assert not hostkeys.append_known(known, "[h]:2", key.get_name(), key.asbytes())
    assert known.read_text() == openssh_line("[h]:2", key)


# ---- what the operator sees: `invoke deploy` ----------------------------------------------------


@pytest.mark.parametrize(("known_line", "code", "says"), [
    (None, 10, "is not in {known} or /etc/ssh/ssh_known_hosts and StrictHostKeyChecking=yes"),
    ("changed", 11, "has CHANGED"),
])
def test_invoke_deploy_says_it_in_one_error_line_with_the_exit_code(sshd, login_key, tmp_path, known_line, code,
                                                                     says):
    known = tmp_path / "known_hosts"
    if known_line:
        known.write_text(openssh_line(f"[127.0.0.1]:{sshd.port}", host_key()))
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  children:\n    vpn_servers:\n      hosts:\n        web1:\n"
        f"          ansible_host: 127.0.0.1\n          ansible_port: {sshd.port}\n"
        f"          ansible_user: {getpass.getuser()}\n          ansible_ssh_private_key_file: {login_key}\n"
        f"          ansible_ssh_common_args: -o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes\n"
    )
    invoke = Path(sys.executable).parent / "invoke"
    proc = subprocess.run([str(invoke), "deploy", "web1", "-i", str(inventory), "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)})
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: 1 of 1 hosts did not finish: web1: connect: web1 ("), line
    assert says.format(known=known) in line, line
    assert "web1 : ok=0 changed=0 unreachable=1 failed=0 skipped=0" in proc.stdout


def test_revoke_and_status_rows_say_what_to_do_about_a_refused_key():
    refused = HostKeyUnknown("web1 (127.0.0.1:22): the SSH host key of 127.0.0.1 (...) is not in kh", "add it")

    def connect(target, echo):
        raise refused

    outcome = on_one(host("web1"), connect, lambda remote: None)
    assert (outcome.state, outcome.error) == ("unreachable", refused.line())
