"""Internal faults of the protocol core.

Rule 1: these exceptions never escape the core; the client and server cores catch them at
        their entry points and turn them into a closed session with the fault's reason.
Rule 2: every fault carries a short, distinct, loggable reason string ("bad-json", "revoked").
"""

from __future__ import annotations


class ProtocolViolation(Exception):
    """The peer broke the protocol; the session closes with `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Refused(ProtocolViolation):
    """The peer's identity was refused during or right after the TLS handshake."""
