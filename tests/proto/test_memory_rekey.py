"""Memory of a server under keepalives and rekeys: what the sessions hold stays the same.

The load benchmark saw the server's RSS step up about two minutes into a hold (the first
rekey of every session, which keeps two epochs alive for the grace period) and creep a
little after.  These tests drive sessions through simulated hours of keepalives, rekeys
and timer ticks and check that nothing the runtime allocates accumulates.
"""

from __future__ import annotations

import gc
import tracemalloc

from runtime.proto.config import Limits
from runtime.proto.datachannel import Epoch
from runtime.proto.replay import ReplayWindow
from tests.proto.conftest import make_client, make_server
from tests.proto.link import Net

REKEY, GRACE, SESSIONS = Limits().rekey_seconds, Limits().old_key_grace, 8
RUNTIME = [tracemalloc.Filter(True, "*/runtime/*")]


def tick(net: Net, seconds: float) -> None:
    """What the daemons do: every core's timer once a second; the test's logs are emptied."""
    for _ in range(int(seconds)):
        net.now += 1.0
        for end in net.ends.values():
            end.core.handle_timer(net.now)
        net.server.handle_timer(net.now)
        net.pump()
    net.server_events.clear()
    for end in net.ends.values():
        end.events.clear()


def sessions(pki, server_cert) -> Net:
    net = Net(make_server(pki, server_cert))
    for i in range(SESSIONS):
        net.connect(make_client(pki, pki.client(f"soak{i}"), server_cert.pin), ("198.51.100.7", 40000 + i))
    return net


def live(kind: type) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, kind))


def runtime_bytes() -> int:
    gc.collect()
    return sum(s.size for s in tracemalloc.take_snapshot().filter_traces(RUNTIME).statistics("filename"))


def test_rekeys_keep_at_most_two_epochs_per_side_and_one_after_the_grace(pki, server_cert):
    others = live(Epoch), live(ReplayWindow)  # other tests' channels
    net = sessions(pki, server_cert)
    sides = 2 * SESSIONS
    tick(net, REKEY + GRACE / 2)  # in the grace of the first rekey
    for _ in range(6):
        assert (live(Epoch) - others[0], live(ReplayWindow) - others[1]) == (2 * sides, 2 * sides)
        tick(net, GRACE)  # the grace is over: the previous epoch is gone
        assert live(Epoch) - others[0] == sides
        tick(net, REKEY - GRACE)  # in the grace of the next rekey
    assert all(end.core.data.epoch >= 6 for end in net.ends.values())


def test_what_the_runtime_allocates_is_the_same_after_an_hour_of_keepalives_and_rekeys(pki, server_cert):
    tracemalloc.start(1)
    try:
        net = sessions(pki, server_cert)
        tick(net, REKEY * 30 + GRACE)  # an hour: each session's epoch table (a dict) has
        before = runtime_bytes()  # grown to its size for three epochs; between two rekeys
        tick(net, REKEY * 30)  # another hour: 360 keepalives and 30 rekeys per session, same phase
        after = runtime_bytes()
    finally:
        tracemalloc.stop()
    assert all(end.core.state == "established" for end in net.ends.values())
    assert after - before < 64 * SESSIONS, (before, after)  # a leak of one object per rekey would be KiB
