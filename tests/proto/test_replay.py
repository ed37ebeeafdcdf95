"""The replay window against WireGuard's selftest/counter.c vectors (same window, same limits)."""

from __future__ import annotations

from runtime.proto.replay import WINDOW, ReplayWindow

REJECT = 2**64 - WINDOW - 1  # WireGuard's REJECT_AFTER_MESSAGES
LIM = WINDOW + 1  # counter.c's T_LIM


def test_window_is_wireguards():
    assert WINDOW == 8192 - 64


def test_counter_c_vectors_1_to_34():
    w = ReplayWindow(REJECT)
    vectors = [
        (0, True), (1, True), (1, False), (9, True), (8, True), (7, True), (7, False),
        (LIM, True), (LIM - 1, True), (LIM - 1, False), (LIM - 2, True), (2, True), (2, False),
        (LIM + 16, True), (3, False), (LIM + 16, False), (LIM * 4, True),
        (LIM * 4 - (LIM - 1), True), (10, False), (LIM * 4 - LIM, False),
        (LIM * 4 - (LIM + 1), False), (LIM * 4 - (LIM - 2), True), (LIM * 4 + 1 - LIM, False),
        (0, False), (REJECT, False), (REJECT - 1, True), (REJECT, False), (REJECT - 1, False),
        (REJECT - 2, True), (REJECT + 1, False), (REJECT + 2, False), (REJECT - 2, False),
        (REJECT - 3, True), (0, False),
    ]
    got = [(n, w.accept(n)) for n, _ in vectors]
    assert got == vectors


def test_in_order_fills_the_window_then_zero_still_fits():
    w = ReplayWindow(REJECT)
    assert all(w.accept(i) for i in range(1, WINDOW + 1))
    assert w.accept(0) is True
    assert w.accept(0) is False


def test_one_past_the_window_edge_is_too_old():
    w = ReplayWindow(REJECT)
    assert all(w.accept(i) for i in range(2, WINDOW + 2))
    assert w.accept(1) is True
    assert w.accept(0) is False


def test_descending_within_the_window():
    w = ReplayWindow(REJECT)
    assert all(w.accept(i) for i in range(WINDOW, -1, -1))


def test_descending_then_too_old():
    w = ReplayWindow(REJECT)
    assert all(w.accept(i) for i in range(WINDOW + 1, 0, -1))
    assert w.accept(0) is False


def test_descending_then_top_then_old():
    w = ReplayWindow(REJECT)
    assert all(w.accept(i) for i in range(WINDOW, 0, -1))
    assert w.accept(WINDOW + 1) is True
    assert w.accept(0) is False


def test_descending_then_zero_then_top():
    w = ReplayWindow(REJECT)
    assert all(w.accept(i) for i in range(WINDOW, 0, -1))
    assert w.accept(0) is True
    assert w.accept(WINDOW + 1) is True


def test_check_does_not_move_the_window():
    w = ReplayWindow(REJECT)
    assert w.check(10_000) is True
    assert w.accept(0) is True  # a check alone (a forged datagram) never moved the top
    assert w.check(0) is False
