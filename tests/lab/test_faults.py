"""Under faults: the server daemon killed, the path to the server cut for longer than the
dead-peer time, the client frozen (SIGSTOP) past the timeouts.  In each, traffic resumes
without user action and the laptop's physical interface shows nothing but the runtime's
own packets to its server throughout (the kill switch holds)."""

from __future__ import annotations

import time

import pytest

from provision import pki
from tests.lab.vpn import RUNTIME_SERVER as S, SERVERS, Vpn, install_runtime, leak_filter, sh

pytestmark = pytest.mark.lab
SERVER_IP = SERVERS[S]
ALLOWED = leak_filter(SERVER_IP)
WEB = "curl -s --max-time 2 http://203.0.113.80/"
SHORT_TIMERS = "keepalive: 1\ndead_peer: 4\n"  # so that faults outlast the timeouts quickly


@pytest.fixture(scope="module")
def vpn(lab, tmp_path_factory):
    for host in (S, "laptop"):
        install_runtime(lab, host)
    v = Vpn(lab, pki.init_ca(tmp_path_factory.mktemp("ca")), {})
    v.start_server(S, SHORT_TIMERS)
    yield v
    sh(lab, "laptop", "vpn-runtime down", check=False)
    v.stop_server(S)


@pytest.fixture
def watched(vpn):
    """The tunnel up, a capture on the laptop's eth0 for the whole test, checked at the end."""
    sh(vpn.lab, "laptop", f"vpn-runtime up {vpn.give('laptop', vpn.bundle('alice'))}", timeout=60)
    sh(vpn.lab, "laptop", "rm -f /tmp/fault.pcap; systemd-run --unit faultcap tcpdump -i eth0 -nn -U "
                          "-w /tmp/fault.pcap; sleep 1")
    yield vpn
    sh(vpn.lab, "laptop", "systemctl stop faultcap; vpn-runtime down", check=False)
    leaks = sh(vpn.lab, "laptop", f"tcpdump -nn -r /tmp/fault.pcap '{ALLOWED}' 2>/dev/null").stdout
    assert leaks == "", f"packets outside the tunnel during the fault:\n{leaks}"


def resumes(vpn, within: float = 45) -> float:
    """Seconds until the web page through the tunnel shows the server's address again."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if sh(vpn.lab, "laptop", WEB, check=False).stdout == f"your address: {SERVER_IP}\n":
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"traffic did not resume within {within} s")


def test_server_daemon_killed_is_restarted_and_the_client_rejoins(watched):
    sh(watched.lab, S, "systemctl kill -s KILL vpn-test")
    time.sleep(1)
    assert sh(watched.lab, S, "systemctl is-active vpn-test", check=False).stdout.strip() in ("active", "activating")
    resumes(watched)


def test_path_cut_longer_than_the_dead_peer_time_then_restored(watched):
    sh(watched.lab, "internet", "nft 'add table inet cut; add chain inet cut f { type filter hook forward priority 0; }; "
                                f"add rule inet cut f ip daddr {SERVER_IP} drop'")
    try:
        time.sleep(8)  # dead_peer is 4 s: the client gives the session up and retries
        assert sh(watched.lab, "laptop", WEB, check=False).stdout == ""
    finally:
        sh(watched.lab, "internet", "nft delete table inet cut")
    resumes(watched)


def test_client_frozen_past_the_timeouts_then_resumed(watched):
    pid = sh(watched.lab, "laptop", "vpn-runtime status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"pid\"])'").stdout.strip()
    sh(watched.lab, "laptop", f"kill -STOP {pid}")
    try:
        time.sleep(10)  # the server drops the silent session after twice dead_peer
        assert sh(watched.lab, "laptop", WEB, check=False).stdout == ""
    finally:
        sh(watched.lab, "laptop", f"kill -CONT {pid}")
    resumes(watched)


def test_laptop_address_changed(watched):
    """Roaming: the laptop moves to another address on its network; the session follows
    (the server moves it on the first authenticated datagram from the new address)."""
    lab = watched.lab
    move_laptop(lab, "192.0.2.10", "192.0.2.50")
    try:
        resumes(watched)
        endpoint = json_of(sh(lab, S, "vpn-runtime status --json").stdout)["clients"][0]["endpoint"]
        assert endpoint.startswith("192.0.2.50:"), endpoint
    finally:
        move_laptop(lab, "192.0.2.50", "192.0.2.10")


def move_laptop(lab, old: str, new: str) -> None:
    """Swap eth0's address; the new one is promoted, so the routes stay."""
    sh(lab, "laptop", "sysctl -qw net.ipv4.conf.eth0.promote_secondaries=1 && "
                      f"ip addr add {new}/24 dev eth0 && ip addr del {old}/24 dev eth0 && "
                      "ip route replace default via 192.0.2.1 dev eth0 && "
                      "sysctl -qw net.ipv4.conf.eth0.promote_secondaries=0")


def json_of(text: str) -> dict:
    import json

    return json.loads(text)
