"""The netlink codec and client without a kernel: requests as bytes, replies from bytes."""

from __future__ import annotations

import errno
import socket
import struct

import pytest

from runtime import netlink, rtnl
from tests.fuzz.targets_netlink import ScriptedSocket, ack, link_body, reply, rule_body


def header(data: bytes) -> tuple[int, int, int, int, int]:
    return struct.unpack_from("=IHHII", data)


def test_a_request_is_one_message_of_its_own_length_with_attributes_padded_to_four():
    kind, flags, body = netlink.link_by_name("vpn0")
    data = netlink.message(kind, flags | netlink.NLM_F_REQUEST, 9, body)
    assert header(data) == (len(data), netlink.RTM_GETLINK, netlink.NLM_F_REQUEST, 9, 0)
    assert netlink.attributes(data[16:], 16) == {netlink.IFLA_IFNAME: b"vpn0\0"}
    assert len(data) % 4 == 0


def test_route_add_is_a_device_route_with_ip_defaults_and_the_table_as_attribute():
    kind, flags, body = netlink.route("add", socket.AF_INET, bytes(4), 0, 0x73656C66, 5)
    family, dst_len, _, _, table, proto, scope, rtype, _ = struct.unpack_from("=BBBBBBBBI", body)
    attrs = netlink.attributes(body, 12)
    assert (kind, flags) == (netlink.RTM_NEWROUTE, netlink.NLM_F_CREATE | netlink.NLM_F_EXCL)
    assert (family, dst_len, table, proto, scope, rtype) == (socket.AF_INET, 0, 0, 3, 253, 1)
    assert netlink.u32(attrs, netlink.RTA_TABLE) == 0x73656C66 and netlink.u32(attrs, netlink.RTA_OIF) == 5


def test_route_del_matches_any_scope_protocol_and_type():
    kind, flags, body = netlink.route("del", socket.AF_INET6, bytes(16), 0, 254, 5)
    assert (kind, flags) == (netlink.RTM_DELROUTE, 0)
    assert struct.unpack_from("=BBBBBBBBI", body)[4:8] == (254, 0, 255, 0)


def test_rule_carries_invert_fwmark_and_suppress_only_when_asked():
    _, _, body = netlink.rule("add", socket.AF_INET, 32765, 0x73656C66, fwmark=0x5E1F, flags=2)
    assert struct.unpack_from("=BBBBBBBBI", body)[7:] == (netlink.FR_ACT_TO_TBL, 2)
    attrs = netlink.attributes(body, 12)
    assert set(attrs) == {netlink.FRA_PRIORITY, netlink.FRA_TABLE, netlink.FRA_FWMARK}
    _, _, body = netlink.rule("del", socket.AF_INET, 32764, 254, suppress_prefixlen=0)
    assert netlink.u32(netlink.attributes(body, 12), netlink.FRA_SUPPRESS_PREFIXLEN) == 0


def test_address_sets_local_and_address_like_ip():
    family, packed = netlink.packed_address("fd66::2")
    kind, _, body = netlink.address("del", 3, family, packed, 64)
    attrs = netlink.attributes(body, 8)
    assert kind == netlink.RTM_DELADDR and attrs[netlink.IFA_LOCAL] == attrs[netlink.IFA_ADDRESS] == packed


def test_replies_split_into_messages_and_read_as_links_and_rules():
    data = reply(netlink.RTM_NEWLINK, 4, link_body(7, 0x1043, 1420, 500)) + ack(4)
    link_msg, end = netlink.messages(data)
    assert netlink.parse_link(link_msg) == netlink.Link(7, 0x1043, 1420, 500) and netlink.parse_link(link_msg).up
    assert netlink.error_code(end) == 0
    found = netlink.parse_rule(netlink.messages(reply(netlink.RTM_NEWRULE, 1, rule_body()))[0])
    assert found == netlink.RuleInfo(socket.AF_INET, 32765, 0x73656C66, 0x73656C66, 2, 0xFFFFFFFF)


@pytest.mark.parametrize("data", [
    b"\x10\x00\x00",  # shorter than a header
    struct.pack("=IHHII", 8, 2, 0, 1, 0),  # length below the header's
    struct.pack("=IHHII", 64, 2, 0, 1, 0),  # length beyond the datagram
    reply(netlink.RTM_NEWLINK, 1, link_body()[:16] + struct.pack("=HH", 40, 4) + bytes(4)),  # attribute overrun
    reply(netlink.RTM_NEWLINK, 1, link_body()[:16] + struct.pack("=HH", 6, 4) + b"\x01\x02"),  # u32 of 2 bytes
    reply(netlink.RTM_NEWLINK, 1, b"\x00" * 8),  # shorter than ifinfomsg
    reply(netlink.NLMSG_ERROR, 1, b"\x00\x00"),  # error without its code
    reply(netlink.NLMSG_ERROR, 1, struct.pack("=i", -(1 << 31))),  # code out of the errno range
    reply(netlink.RTM_NEWLINK, 1, link_body()[:16] + netlink.attr(1, b"x")),  # no MTU reported
])
def test_malformed_replies_raise_only_the_parse_error(data):
    with pytest.raises(netlink.NetlinkParseError):
        for msg in netlink.messages(data):
            {netlink.RTM_NEWLINK: netlink.parse_link, netlink.NLMSG_ERROR: netlink.error_code}[msg.kind](msg)


def scripted(data: bytes) -> rtnl.IPRoute:
    ipr = rtnl.IPRoute()
    ipr._sock = ScriptedSocket(data)  # type: ignore[assignment]
    return ipr


def test_the_client_maps_a_kernel_refusal_to_its_errno():
    with pytest.raises(rtnl.NetlinkError) as caught:
        scripted(ack(1, errno.EEXIST)).address("add", 3, "10.0.0.2", 24)
    assert caught.value.code == errno.EEXIST and isinstance(caught.value, OSError)
    assert scripted(ack(1, errno.ENODEV)).link_index("nosuch") is None


def test_the_client_reads_a_dump_until_done_and_a_link_until_its_ack():
    dump = (reply(netlink.RTM_NEWRULE, 1, rule_body(), 2) + reply(netlink.RTM_NEWRULE, 1, rule_body(7), 2)
            + reply(netlink.NLMSG_DONE, 1, bytes(4), 2))
    assert [r.priority for r in scripted(dump).rules(socket.AF_INET)] == [32765, 7]
    assert scripted(reply(netlink.RTM_NEWLINK, 1, link_body(9)) + ack(1)).link(9).index == 9


def test_silence_and_garbage_become_netlink_errors():
    with pytest.raises(rtnl.NetlinkError) as caught:
        scripted(reply(netlink.RTM_NEWLINK, 1, link_body())).link(7)  # never acknowledged
    assert caught.value.code == errno.ETIMEDOUT
    with pytest.raises(rtnl.NetlinkError) as caught:
        scripted(b"\x01\x02\x03").link(7)
    assert caught.value.code == errno.EBADMSG


def test_a_request_outside_with_is_refused():
    with pytest.raises(rtnl.NetlinkError):
        rtnl.IPRoute().link(1)
