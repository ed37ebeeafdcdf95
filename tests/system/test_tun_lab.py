"""The TUN device in a throwaway namespace: created by TUNSETIFF, gone with its process."""

from __future__ import annotations

import pytest

from runtime.errors import SystemSetupError
from runtime.tun import VNET_HDR_SIZE
from tests.system import nslab


@pytest.mark.lab
def test_a_bad_name_is_refused_before_any_device_is_made(ns):
    out = nslab.agent(ns, "hold-tun", "a-much-too-long-name", expect_rc=SystemSetupError.exit_code)
    assert out["error"] == "SystemSetupError" and "at most 15 bytes" in out["line"]
    with nslab.ipr(ns) as nl:
        assert [link.get_attr("IFLA_IFNAME") for link in nl.get_links()] == ["lo"]


def tun_kind(ns: str, name: str) -> str | None:
    with nslab.ipr(ns) as nl:
        links = nl.get_links(ifname=name) if nl.link_lookup(ifname=name) else []
        return links[0].get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") if links else None


@pytest.mark.lab
def test_the_device_lives_exactly_as_long_as_the_process(ns, held):
    holder = nslab.Held(ns, "hold-tun", "vpn7", "mq")
    held.append(holder)
    assert holder.ready["name"] == "vpn7" and len(holder.ready["fds"]) == 2  # two queues
    assert tun_kind(ns, "vpn7") == "tun"

    holder.kill()

    assert tun_kind(ns, "vpn7") is None


@pytest.mark.lab
@pytest.mark.parametrize("vnet", [False, True])
def test_a_packet_for_the_peer_comes_out_of_the_tun(ns, vnet):
    out = nslab.agent(ns, "tun-io", "vpn8", *(["vnet"] if vnet else []))
    packet = bytes.fromhex(out["packet"])
    if vnet:
        assert packet[1] == 0  # virtio_net_hdr.gso_type: GSO_NONE for one small datagram
        packet = packet[VNET_HDR_SIZE:]
    assert packet[0] == 0x45  # IPv4 right after the vnet header, or at 0: no packet info
    assert packet[16:20] == bytes([10, 77, 0, 2]) and packet.endswith(b"hello tun")
    assert out["vnet_hdr"] is vnet
