"""The lab's shape as data: which hosts, which addresses, who routes.

Rule: documentation ranges only (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 and
2001:db8::/32) for the simulated internet; 10.x stays for tunnels inside lab hosts.
The `internet` host is the router: every other host hangs off one of its bridges.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "vpnlab-"


@dataclass(frozen=True)
class Segment:
    """A LAN behind the internet router: a bridge in the internet host."""

    bridge: str
    gw4: str
    gw6: str
    plen4: int = 24
    plen6: int = 64


@dataclass(frozen=True)
class LabHost:
    name: str
    role: str  # "router", "server" (in the inventory's vpn_servers), "spare" (a server host
    #            outside that group, for runtime tests) or "client"
    addr4: str = ""
    addr6: str = ""
    segment: str = ""  # key into SEGMENTS
    ssh_user: str = "root"
    ssh_port: int = 22

    @property
    def netns(self) -> str:
        return PREFIX + self.name

    @property
    def machine(self) -> str:
        return PREFIX + self.name


SEGMENTS: dict[str, Segment] = {
    "vps": Segment("br-vps", "198.51.100.1", "2001:db8:1::1"),
    "home": Segment("br-home", "192.0.2.1", "2001:db8:2::1"),
}

# The simulated internet's own services, on a dummy interface of the router.
SERVICES4 = {"web": "203.0.113.80", "dns": "203.0.113.53"}
SERVICES6 = {"web": "2001:db8:3::80", "dns": "2001:db8:3::53"}
TEST_ZONE = {"web.example.test": ("203.0.113.80", "2001:db8:3::80")}
MIRROR_URL = "http://203.0.113.80/debian"

INTERNET = LabHost("internet", "router")
HOSTS: tuple[LabHost, ...] = (
    INTERNET,
    LabHost("vps1", "server", "198.51.100.10", "2001:db8:1::10", "vps"),
    LabHost("vps2", "server", "198.51.100.20", "2001:db8:1::20", "vps", "admin", 2222),
    LabHost("vps3", "spare", "198.51.100.30", "2001:db8:1::30", "vps"),
    LabHost("laptop", "client", "192.0.2.10", "2001:db8:2::10", "home"),
    LabHost("laptop2", "client", "192.0.2.11", "2001:db8:2::11", "home"),
)


def host(name: str) -> LabHost:
    for h in HOSTS:
        if h.name == name:
            return h
    from provision.errors import LabError

    names = ", ".join(h.name for h in HOSTS)
    raise LabError(f"lab: no host named {name!r}", f"lab hosts are: {names}")
