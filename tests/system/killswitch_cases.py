"""Kill-switch configurations shared by the golden and the lab tests."""

from __future__ import annotations

from runtime.killswitch import Endpoint, KillSwitch

MARK = 0x73656C66

CASES: dict[str, KillSwitch] = {
    # IPv4-only tunnel, one UDP server: IPv6 must be dropped, no LAN.
    "v4_only": KillSwitch("vpn0", (Endpoint("192.0.2.1", "udp", 1194),), MARK,
                          ("10.66.0.2/24",), ("10.66.0.1",)),
    # Dual stack with LAN allowed, two servers (one over TCP, on IPv6), two resolvers.
    "dual_stack_lan": KillSwitch("vpn0", (Endpoint("192.0.2.1", "udp", 443),
                                          Endpoint("2001:db8::1", "tcp", 443)), MARK,
                                 ("10.66.0.2/24", "fd66::2/64"), ("10.66.0.1", "fd66::1"),
                                 allow_lan=True, ipv6=True),
    # Connecting: no tunnel address and no DNS yet; every query on port 53 is dropped.
    "connecting": KillSwitch("vpn0", (Endpoint("198.51.100.7", "udp", 1194),
                                      Endpoint("203.0.113.9", "udp", 1194)), MARK, ()),
}
