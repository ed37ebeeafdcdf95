"""The bare path: no tunnel, the client reaches 192.0.2.2 straight over the veth.

Rule: nothing is started; every tunnel figure is read against this one (RTT added is
measured inside each run, so this row shows the underlay itself).
"""

from __future__ import annotations

import platform

from provision.bench.netns import UNDER_SRV
from provision.bench.peers.base import Peer


class Raw(Peer):
    name = "raw"
    target = UNDER_SRV
    mtu = 1500
    tunnel = False

    def version(self) -> str:
        return f"veth, kernel {platform.release()}, no tunnel"
