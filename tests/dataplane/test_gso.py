"""UDP GSO runs and GRO splitting (runtime/gso.py), and the fallback when refused."""

from __future__ import annotations

import errno
import socket
import struct
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from runtime import gso


def test_runs_group_equal_sizes_to_one_address():
    a, b = ("198.51.100.1", 1), ("198.51.100.2", 1)
    items = [(b"x" * 100, a)] * 3 + [(b"y" * 50, a), (b"z" * 100, a), (b"w" * 100, b)]
    runs = gso.group_runs([(to, [d]) for d, to in items])
    assert [(addr, [len(d) for d in run]) for addr, run in runs] == [
        (a, [100, 100, 100, 50]), (a, [100]), (b, [100])]


def test_runs_respect_segment_and_byte_limits():
    runs = gso.group_runs([(None, [b"x" * 1400]) for _ in range(100)])
    assert all(len(run) <= gso.MAX_SEGMENTS and sum(map(len, run)) <= gso.MAX_BYTES for _, run in runs)
    assert sum(len(run) for _, run in runs) == 100


def valid(runs) -> bool:
    """Rule 1 of runtime/gso.py for every run."""
    return all(len(run) <= gso.MAX_SEGMENTS and sum(map(len, run)) <= gso.MAX_BYTES
               and all(len(d) == len(run[0]) for d in run[:-1]) and len(run[-1]) <= len(run[0])
               for _, run in runs)


def test_a_regular_group_is_cut_whole_and_an_irregular_one_datagram_by_datagram():
    a, b = ("198.51.100.1", 1), ("198.51.100.2", 1)
    tso = [b"s" * 1476] * 50 + [b"t" * 700]  # one TUN read's segments
    odd = [b"x" * 100, b"y" * 50, b"z" * 100]  # shorter in the middle: two runs
    groups = [(a, [b"k" * 88]), (a, [b"k" * 88]), (a, tso), (b, odd), (b, [b"w" * 100])]
    runs = gso.group_runs(groups)
    assert valid(runs)
    assert [(addr, [len(d) for d in run]) for addr, run in runs] == [
        (a, [88, 88]), (a, [1476] * 44), (a, [1476] * 6 + [700]), (b, [100, 50]), (b, [100, 100])]
    assert [d for _, run in runs for d in run] == [d for _, g in groups for d in g]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([None, ("192.0.2.1", 9)]),
                          st.lists(st.integers(1, 65000), min_size=1, max_size=70)), max_size=8))
def test_group_runs_keep_every_datagram_in_order_in_valid_runs(spec):
    groups = [(to, [bytes(n) for n in sizes]) for to, sizes in spec]
    runs = gso.group_runs(groups)
    assert valid(runs)
    assert [(to, d) for to, run in runs for d in run] == [(to, d) for to, g in groups for d in g]


def test_gro_split_cuts_at_the_cmsg_size():
    buf = bytearray(b"a" * 10 + b"b" * 10 + b"c" * 4 + b"\0" * 100)
    anc = [(gso.SOL_UDP, gso.UDP_GRO, struct.pack("=i", 10))]
    assert gso.split(buf, 24, anc) == [b"a" * 10, b"b" * 10, b"c" * 4]
    assert gso.split(buf, 24, []) == [bytes(buf[:24])]


class Refusing:
    def __init__(self, code: int) -> None:
        self.code, self.sent = code, []

    def sendmsg(self, *args):
        raise OSError(self.code, "refused")

    def sendto(self, data, addr):
        self.sent.append(data)


def test_a_refused_gso_send_falls_back_to_one_by_one_for_good():
    sock, errors = Refusing(errno.EIO), Counter()
    sender = gso.Sender(sock, errors)  # type: ignore[arg-type]
    groups = [(("198.51.100.1", 1), [bytes([i]) * 100 for i in range(5)])]
    sender.send_groups(groups)
    sender.send_groups(groups)
    assert not sender.enabled and len(sock.sent) == 10 and errors["udp-gso-off"] == 1


def test_gso_send_and_gro_receive_over_loopback():
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    gro = gso.enable_gro(rx)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent = [bytes([i]) * 1000 for i in range(10)] + [b"end"]
    gso.Sender(tx, Counter()).send_groups([(rx.getsockname(), [d]) for d in sent])
    rx.settimeout(2)
    got: list[bytes] = []
    buf = bytearray(65535)
    while len(got) < len(sent):
        n, anc, _, _ = rx.recvmsg_into([buf], gso.ANC_SPACE)
        got += gso.split(buf, n, anc)
    assert got == sent and gro in (True, False)
