"""No leaks: captures on the laptop's physical interface (eth0) while it sends TCP, UDP and
ICMP to a public and a lab address, and DNS over UDP and TCP to the lab's public resolver.

Whatever the state (connected, runtime killed, server stopped, network to the server cut),
the only packets allowed on eth0 are the runtime's own to the server's address and ports,
ARP and IPv6 neighbour discovery.  After `down` the laptop's snapshot equals the one
taken before `up`.
"""

from __future__ import annotations

import json
import time

import pytest

from provision import pki
from provision.lab import snapshot
from tests.lab.vpn import RUNTIME_SERVER as S, SERVERS, Vpn, install_runtime, leak_filter, sh

pytestmark = pytest.mark.lab
SERVER_IP = SERVERS[S]
ALLOWED = leak_filter(SERVER_IP)
TRAFFIC = "; ".join([
    "curl -s --max-time 2 http://203.0.113.80/", "curl -s --max-time 2 http://192.0.2.1:80/",
    "echo x | nc -u -w1 203.0.113.80 9999", "echo x | nc -u -w1 192.0.2.1 9999",
    "ping -c1 -W1 203.0.113.80", "ping -c1 -W1 192.0.2.1",
    "dig +time=1 +tries=1 @203.0.113.53 web.example.test", "dig +tcp +time=1 +tries=1 @203.0.113.53 web.example.test",
    "ping -6 -c1 -W1 2001:db8:3::80", "curl -6 -s --max-time 2 http://[2001:db8:3::80]/", "true",
])


@pytest.fixture(scope="module")
def vpn(lab, tmp_path_factory):
    for host in (S, "laptop"):
        install_runtime(lab, host)
    v = Vpn(lab, pki.init_ca(tmp_path_factory.mktemp("ca")), {})
    v.start_server(S)
    v.start_resolver(S)
    yield v
    sh(lab, "laptop", "vpn-runtime down", check=False)
    v.stop_server(S)


@pytest.fixture
def laptop(vpn):
    """The laptop's snapshot before the test must equal the one after `down`."""
    before = snapshot.take("laptop", vpn.lab)
    yield vpn
    sh(vpn.lab, "laptop", "vpn-runtime down", check=False)
    assert snapshot.diff(before, snapshot.take("laptop", vpn.lab), "laptop") == ""


def up(vpn) -> None:
    if sh(vpn.lab, S, "systemctl is-active vpn-test", check=False).returncode != 0:
        vpn.start_server(S)
    sh(vpn.lab, "laptop", f"vpn-runtime up {vpn.give('laptop', vpn.bundle('alice'))}", timeout=60)


def leaks_during_traffic(vpn) -> list[str]:
    """Capture on eth0 while generating traffic; return the packets outside ALLOWED."""
    sh(vpn.lab, "laptop", "rm -f /tmp/cap.pcap; systemd-run --unit leakcap tcpdump -i eth0 -nn -U -w /tmp/cap.pcap; "
                          "sleep 1")
    sh(vpn.lab, "laptop", TRAFFIC, check=False, timeout=120)
    sh(vpn.lab, "laptop", "sleep 0.5; systemctl stop leakcap")
    out = sh(vpn.lab, "laptop", f"tcpdump -nn -r /tmp/cap.pcap '{ALLOWED}' 2>/dev/null").stdout
    return out.splitlines()


def test_connected_only_the_server_appears_on_the_wire(laptop):
    up(laptop)
    assert leaks_during_traffic(laptop) == []
    page = sh(laptop.lab, "laptop", "curl -s --max-time 5 http://203.0.113.80/").stdout
    assert page == f"your address: {SERVER_IP}\n"


def test_dns_goes_through_the_tunnel_to_the_servers_resolver(laptop):
    seen_before = sh(laptop.lab, "internet", "grep -c 'from 192.0.2.10' /var/log/vpnlab-dns.log", check=False).stdout
    up(laptop)
    assert sh(laptop.lab, "laptop", "dig +short +time=2 web.example.test").stdout.split() == ["203.0.113.80"]
    # a query aimed at another resolver is answered too, by the tunnel's resolver
    forced = sh(laptop.lab, "laptop", "dig +short +time=2 @203.0.113.53 web.example.test").stdout.split()
    assert forced == ["203.0.113.80"]
    log = sh(laptop.lab, S, "journalctl -u unbound --no-pager").stdout
    assert "web.example.test. A IN" in log
    seen_after = sh(laptop.lab, "internet", "grep -c 'from 192.0.2.10' /var/log/vpnlab-dns.log", check=False).stdout
    assert seen_after == seen_before, "a DNS query left the laptop outside the tunnel"


def test_sigkilled_runtime_keeps_the_kill_switch_and_status_says_so(laptop):
    up(laptop)
    pid = json.loads(sh(laptop.lab, "laptop", "vpn-runtime status --json").stdout)["pid"]
    sh(laptop.lab, "laptop", f"kill -9 {pid}")
    time.sleep(0.5)
    status = sh(laptop.lab, "laptop", "vpn-runtime status").stdout
    assert "kill switch holding" in status
    assert leaks_during_traffic(laptop) == []


def test_server_stopped_only_the_runtimes_attempts_appear(laptop):
    up(laptop)
    sh(laptop.lab, S, "systemctl stop vpn-test")
    assert leaks_during_traffic(laptop) == []
    attempts = sh(laptop.lab, "laptop", f"tcpdump -nn -r /tmp/cap.pcap 'dst host {SERVER_IP}' 2>/dev/null").stdout
    assert attempts.strip(), "the runtime should keep trying to reach its server"


def test_network_to_the_server_cut_nothing_leaks(laptop):
    up(laptop)
    sh(laptop.lab, "internet", "nft 'add table inet cut; add chain inet cut f { type filter hook forward priority 0; }; "
                                f"add rule inet cut f ip daddr {SERVER_IP} drop'")
    try:
        assert leaks_during_traffic(laptop) == []
    finally:
        sh(laptop.lab, "internet", "nft delete table inet cut")


def test_ipv6_does_not_leave_with_an_ipv4_only_tunnel(laptop):
    assert sh(laptop.lab, "laptop", "curl -6 -s --max-time 3 http://[2001:db8:3::80]/").returncode == 0
    up(laptop)
    assert sh(laptop.lab, "laptop", "curl -6 -s --max-time 3 http://[2001:db8:3::80]/", check=False).returncode != 0


def test_packets_to_the_tunnel_address_from_another_interface_are_dropped(laptop):
    """CVE-2019-14899: the router, on the laptop's LAN, probes the tunnel address."""
    up(laptop)
    st = json.loads(sh(laptop.lab, "laptop", "vpn-runtime status --json").stdout)
    tunnel_ip = st["server"]["tunnel_addresses"][0].split("/")[0]
    sh(laptop.lab, "internet", f"ip route add {tunnel_ip}/32 via 192.0.2.10")
    try:
        probe = sh(laptop.lab, "internet", f"ping -c2 -W1 {tunnel_ip}", check=False)
    finally:
        sh(laptop.lab, "internet", f"ip route del {tunnel_ip}/32 via 192.0.2.10", check=False)
    assert probe.returncode != 0, "the laptop answered on eth0 for its tunnel address"


def test_a_second_up_is_refused_and_down_still_restores_everything(laptop):
    up(laptop)
    again = sh(laptop.lab, "laptop", f"vpn-runtime up {laptop.give('laptop', laptop.bundle('alice'))}",
               check=False, timeout=60)
    assert again.returncode == 6 and "already up" in again.stderr, again.stderr


def test_up_after_a_crash_then_down_restores_everything(laptop):
    up(laptop)
    pid = json.loads(sh(laptop.lab, "laptop", "vpn-runtime status --json").stdout)["pid"]
    sh(laptop.lab, "laptop", f"kill -9 {pid}")
    up(laptop)  # takes over what the killed client left (its undo log) before starting
    assert sh(laptop.lab, "laptop", "curl -s --max-time 5 http://203.0.113.80/").stdout == f"your address: {SERVER_IP}\n"
