"""The `platform` step and what the operator sees when a host cannot be deployed:
os-release parsed from recorded outputs; a host that is not Debian or Ubuntu (or has no
systemd, or no apt) is refused with one line naming the host and what was found, exit
code 8, before any command that changes it; a failed command says why in one line
(a full disk included, even when the tool hid it); one broken host's error reaches the
final line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from provision.connection import CommandFailed, HostUnreachable, Result, SshRemote, check_result
from provision.deploy import SERVER_PLAYBOOK
from provision.errors import HostFailed, Unsupported
from provision.fact import FactError
from provision.inventory import Host
from provision.operation import Context, NoChange
from provision.ops import DEFAULT_REGISTRY, PlatformOp
from provision.ops.platform import PLATFORM_CMD, Platform, PlatformState, parse_os_release, parse_platform
from provision.playbook import load_playbook, parse_playbook
from provision.recap import Console
from provision.runner import DISK_FREE_CMD, PlayFailed, full_disks, run_playbook, with_disk_note
from tests.provision.fakes import FakeRemote

MARK = "--- selfvpn platform"
DEBIAN_12 = ('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\n'
             'VERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\nHOME_URL="https://www.debian.org/"\n')
UBUNTU_2204 = ('PRETTY_NAME="Ubuntu 22.04.4 LTS"\nNAME="Ubuntu"\nVERSION_ID="22.04"\nID=ubuntu\n'
               'ID_LIKE=debian\nVERSION_CODENAME=jammy\n')
RASPBIAN = 'PRETTY_NAME="Raspbian GNU/Linux 12 (bookworm)"\nNAME="Raspbian GNU/Linux"\nID=raspbian\nID_LIKE=debian\n'
ALPINE = 'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME="Alpine Linux v3.19"\n'
FEDORA = ('NAME="Fedora Linux"\nVERSION="40 (Server Edition)"\nID=fedora\n'
          'PRETTY_NAME="Fedora Linux 40 (Server Edition)"\n')


def probe_output(release: str | None, systemd: bool = True, apt: bool = True, dpkg: bool = True,
                 path: str = "/etc/os-release") -> str:
    """What PLATFORM_CMD prints on a host (the shape recorded on the lab's Debian 12)."""
    head = f"{MARK} os-release {path}\n{release}\n" if release is not None else ""
    yes = {True: "yes", False: "no"}
    return f"{head}{MARK} facts\nsystemd={yes[systemd]}\napt-get={yes[apt]}\ndpkg={yes[dpkg]}\n"


def decide(stdout: str, op: PlatformOp = PlatformOp()):
    return op.decide(PlatformState("vps1", parse_platform(Result(0, stdout))), Context())


# ---- facts ------------------------------------------------------------------------------


def test_the_lab_debian_12_probe_parses():
    recorded = ('--- selfvpn platform os-release /etc/os-release\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n'
                'NAME="Debian GNU/Linux"\nVERSION_ID="12"\nVERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\n'
                'ID=debian\nHOME_URL="https://www.debian.org/"\nSUPPORT_URL="https://www.debian.org/support"\n'
                'BUG_REPORT_URL="https://bugs.debian.org/"\n\n--- selfvpn platform facts\nsystemd=yes\n'
                'apt-get=yes\ndpkg=yes\n')
    p = parse_platform(Result(0, recorded))
    assert (p.source, p.id, p.pretty, p.systemd, p.apt, p.dpkg) == (
        "/etc/os-release", "debian", "Debian GNU/Linux 12 (bookworm)", True, True, True)
    assert p.get("VERSION_ID") == "12"


def test_os_release_values_are_shell_quoted_and_junk_is_skipped():
    text = ("# a comment\nNAME='Odd \"Linux\"'\nID=\"debian\"\nBROKEN=\"unterminated\nlower=case\n"
            "ID_LIKE=\"ubuntu debian\"\n\n=novalue\nVERSION_ID=12\n")
    assert parse_os_release(text) == (("NAME", 'Odd "Linux"'), ("ID", "debian"),
                                      ("ID_LIKE", "ubuntu debian"), ("VERSION_ID", "12"))


def test_a_host_without_os_release_and_defaults():
    p = parse_platform(Result(0, probe_output(None)))
    assert p.source is None and p.id == "linux" and p.pretty == "linux"
    assert Platform("/x", (("NAME", "Foo"), ("VERSION_ID", "1"))).pretty == "Foo 1"


@pytest.mark.parametrize("result", [Result(0, ""), Result(127, "", "sh: 1: syntax error\n"),
                                    Result(0, "PRETTY_NAME=x\n")])
def test_output_that_is_not_the_probe_is_a_fact_error(result):
    with pytest.raises(ValueError, match="no answer from the platform probe"):
        parse_platform(result)
    remote = FakeRemote(commands={PLATFORM_CMD: (result.rc, result.stdout)})
    with pytest.raises(FactError, match="vps1: fact platform: no answer from the platform probe"):
        PlatformOp().gather(remote, Context())


def test_the_probe_only_reads():
    assert PLATFORM_CMD.count(">") == 2 and PLATFORM_CMD.count(">/dev/null 2>&1") == 1  # no file written
    assert not re.search(r"\b(rm|mv|cp|tee|touch|mkdir|chmod|ln|sed|install|update)\b", PLATFORM_CMD)


# ---- decisions --------------------------------------------------------------------------


@pytest.mark.parametrize("release", [DEBIAN_12, UBUNTU_2204, RASPBIAN])
def test_debian_ubuntu_and_their_derivatives_with_systemd_and_apt_are_ok(release):
    outcome = decide(probe_output(release))
    assert isinstance(outcome, NoChange) and outcome.reason.endswith("(/etc/os-release), systemd, apt")


@pytest.mark.parametrize(("release", "message"), [
    (ALPINE, "vps1: /etc/os-release says Alpine Linux v3.19 (ID=alpine), not Debian or Ubuntu"),
    (FEDORA, "vps1: /etc/os-release says Fedora Linux 40 (Server Edition) (ID=fedora), not Debian or Ubuntu"),
    ('NAME="Linux Mint"\nID=linuxmint\nID_LIKE="centos"\n',
     "vps1: /etc/os-release says Linux Mint (ID=linuxmint, ID_LIKE=centos), not Debian or Ubuntu"),
])
def test_other_systems_are_refused_naming_host_file_and_what_it_says(release, message):
    with pytest.raises(Unsupported) as err:
        decide(probe_output(release))
    assert err.value.message == message and err.value.exit_code == 8
    assert err.value.hint.startswith("deploy supports Debian and Ubuntu hosts booted with systemd")
    assert "\n" not in err.value.line()


def test_no_os_release_no_systemd_and_no_apt_are_each_said():
    with pytest.raises(Unsupported) as err:
        decide(probe_output(None, systemd=False, apt=False, dpkg=False))
    assert err.value.message == (
        "vps1: no /etc/os-release or /usr/lib/os-release: cannot tell which system this is, so not Debian or "
        "Ubuntu; systemd is not the init system (no /run/systemd/system); no apt-get or dpkg in PATH")
    with pytest.raises(Unsupported, match=r"^vps1: no apt-get in PATH$"):
        decide(probe_output(DEBIAN_12, apt=False))
    with pytest.raises(Unsupported, match=r"^vps1: systemd is not the init system"):
        decide(probe_output(UBUNTU_2204, systemd=False))


def test_families_narrow_what_is_accepted_and_are_checked():
    assert isinstance(decide(probe_output(DEBIAN_12, path="/usr/lib/os-release"), PlatformOp(("debian",))), NoChange)
    with pytest.raises(Unsupported, match=r"Ubuntu 22.04.4 LTS \(ID=ubuntu, ID_LIKE=debian\), not Raspbian"):
        decide(probe_output(UBUNTU_2204), PlatformOp(("raspbian",)))
    for bad in ((), ("Debian",), ("deb ian",)):
        with pytest.raises(ValueError, match="families"):
            PlatformOp(bad).validate()


# ---- the server playbook and the runner --------------------------------------------------

GUARDED = """
- name: a Debian or Ubuntu host
  op: platform
- name: config
  op: file
  args: {path: /etc/x, content: "x\\n"}
"""


def host(name: str) -> Host:
    return Host(name=name, address="203.0.113.1")


def play(remotes: dict[str, FakeRemote], unreachable: tuple[str, ...] = ()):
    lines: list[str] = []

    def connect(h, echo):
        if h.name in unreachable:
            raise HostUnreachable(f"{h.name} (203.0.113.1:22): unreachable: timed out")
        return remotes[h.name]

    book = parse_playbook(GUARDED, "pb.yml", DEFAULT_REGISTRY)
    with pytest.raises(PlayFailed) as err:
        run_playbook(book, [host(n) for n in (*remotes, *unreachable)], connect, Console(lines.append))
    return err.value, lines


def test_the_server_playbook_checks_the_platform_first():
    book = load_playbook(SERVER_PLAYBOOK, DEFAULT_REGISTRY)
    assert book.steps[0].op == "platform" and book.steps[1].op == "baseline"


def test_an_unsupported_host_fails_before_any_change_with_exit_code_8():
    remote = FakeRemote("vps1", {PLATFORM_CMD: (0, probe_output(ALPINE))})  # knows no other command
    failed, lines = play({"vps1": remote})
    assert remote.ran == [PLATFORM_CMD] and not remote.put_files
    assert lines[0] == ("failed: [vps1] a Debian or Ubuntu host: vps1: /etc/os-release says Alpine Linux v3.19 "
                        "(ID=alpine), not Debian or Ubuntu (deploy supports Debian and Ubuntu hosts booted with "
                        "systemd and with apt; use such a host)")
    assert failed.exit_code == Unsupported.exit_code == 8
    assert failed.line() == ("1 of 1 hosts did not finish: vps1: step 'a Debian or Ubuntu host': vps1: "
                             "/etc/os-release says Alpine Linux v3.19 (ID=alpine), not Debian or Ubuntu "
                             "(deploy supports Debian and Ubuntu hosts booted with systemd and with apt; "
                             "use such a host)")


def test_two_unsupported_hosts_still_exit_8_and_mixed_failures_exit_6():
    fedora = {PLATFORM_CMD: (0, probe_output(FEDORA))}
    failed, _ = play({"vps1": FakeRemote("vps1", fedora), "vps2": FakeRemote("vps2", fedora)})
    assert failed.exit_code == 8 and failed.message == "2 of 2 hosts did not finish: vps1, vps2"
    failed, lines = play({"vps1": FakeRemote("vps1", fedora)}, unreachable=("vps3",))
    assert failed.exit_code == HostFailed.exit_code == 6
    assert "unreachable: [vps3] connect: vps3 (203.0.113.1:22): unreachable: timed out" in lines


# ---- a failed command says why, a full disk included ------------------------------------------

DF_HEADER = "Filesystem     1024-blocks     Used Available Capacity Mounted on\n"


def test_a_long_failed_command_is_cut_and_the_resource_error_wins_over_the_last_line():
    cmd = "tar -xf /tmp/selfvpn-runtime-wheels.tar -C /tmp/selfvpn-runtime-wheels && " + "x " * 50
    stderr = ("tar: selfvpn_runtime.whl: Cannot write: No space left on device\n"
              "tar: Exiting with failure status due to previous errors\n")
    with pytest.raises(CommandFailed) as err:
        check_result("vps1", cmd, Result(2, "", stderr))
    assert err.value.message == ("vps1: `tar -xf /tmp/selfvpn-runtime-wheels.tar -C /tmp/selfvpn-runtime-wheels "
                                 "& ...` exited 2: tar: selfvpn_runtime.whl: Cannot write: No space left on device")
    with pytest.raises(CommandFailed, match=r"^vps1: `false` exited 1: last$"):
        check_result("vps1", "false", Result(1, "", "first\nlast\n\n"))


def test_full_disks_are_those_df_shows_nearly_empty():
    df = (DF_HEADER + "overlay 264212084 24438940 81951972 23% /\n"
          "selfvpn-test-full 2048 2040 8 100% /opt\n"
          "tmpfs 1024 1024 0 100% /tmp\ntmpfs 1024 1024 0 100% /tmp\n"
          "/dev/sda1 100 100 1023 99% /mnt/with space\ngarbage\n")
    assert full_disks(Result(1, df, "df: /var/lib: No such file or directory")) == ("/opt", "/tmp", "/mnt/with space")
    assert full_disks(Result(0, DF_HEADER + "overlay 10 5 5000 1% /\n")) == ()


def test_a_failed_step_on_a_full_disk_names_it_even_when_the_tool_hid_it():
    hidden = CommandFailed("vps1: `python3 -m venv /opt/vpn-runtime` exited 1: Error: Command "
                           "'['/opt/vpn-runtime/bin/python3', '-m', 'ensurepip']' returned non-zero exit status 1.")
    full = FakeRemote("vps1", {DISK_FREE_CMD: (0, DF_HEADER + "tmpfs 2048 2048 0 100% /opt\n")})
    noted = with_disk_note(full, hidden)
    assert noted.message == hidden.message + "; /opt is full: No space left on device"
    assert noted.hint == "free space on the host, then run deploy again: it picks up where it stopped"
    roomy = FakeRemote("vps1", {DISK_FREE_CMD: (0, DF_HEADER + "overlay 10 5 5000 1% /\n")})
    assert with_disk_note(roomy, hidden) is hidden
    said = CommandFailed("vps1: `put /tmp/x` exited 1: cat: write error: No space left on device")
    assert with_disk_note(FakeRemote("vps1"), said).hint.startswith("free space on the host")  # no df needed


# ---- a connection that breaks under a deploy -----------------------------------------------


class DroppedSession:
    """A session whose connection breaks at the first command (sshd killed on the host)."""

    def exec(self, cmd: str, stdin: bytes) -> tuple[int, bytes, bytes]:
        raise EOFError()

    def close(self) -> None:
        pass


def test_a_connection_lost_during_a_command_says_so_and_how_to_go_on():
    remote = SshRemote(Host(name="vps1", address="198.51.100.10", user="root"),
                       session_factory=lambda h, t: DroppedSession()).open()
    with pytest.raises(HostUnreachable) as err:
        remote.run("apt-get install -y unbound")
    assert err.value.line() == ("vps1 (root@198.51.100.10:22): unreachable: the SSH connection was lost during a "
                                "command (EOFError) (once the host answers, run the same command again: it picks "
                                "up where it stopped)")


def test_paramiko_tracebacks_never_reach_the_operator():
    code = ("import logging, provision.connection; "
            "logging.getLogger('paramiko.transport').error('Exception (client): Error reading SSH protocol banner')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0 and proc.stderr == ""
