"""The protocol core of the tunnel runtime, without I/O ("sans-I/O", like h11 and aioquic).

Rule 1: the core takes bytes and `now` (float seconds) as arguments and returns what to send
        and when it next needs a timer; it never reads a clock, a socket or a device.
Rule 2: nothing raised inside the core escapes it: bad datagrams are counted and dropped, bad
        control input closes the session with a reason.
Rule 3: the wire format is in runtime/PROTOCOL.md.
"""

from runtime.proto.client import ClientCore
from runtime.proto.config import AddressPolicy, ClientConfig, Limits, ServerConfig, TunnelAssignment
from runtime.proto.events import (
    Action,
    CloseConnection,
    Event,
    HandshakeCompleted,
    HandshakeFailed,
    KeysRotated,
    Output,
    PeerDead,
    PeerRoamed,
    SendDatagram,
    SendStream,
    SessionClosed,
    WriteTun,
)
from runtime.proto.identity import PeerIdentity, load_crl, spki_pin
from runtime.proto.server import ServerCore
from runtime.proto.stats import SessionStats
from runtime.proto.tls import Credentials, client_context, server_context

__all__ = [
    "Action", "AddressPolicy", "ClientConfig", "ClientCore", "CloseConnection", "Credentials", "Event",
    "HandshakeCompleted", "HandshakeFailed", "KeysRotated", "Limits", "Output", "PeerDead", "PeerIdentity",
    "PeerRoamed", "SendDatagram", "SendStream", "ServerConfig", "ServerCore", "SessionClosed", "SessionStats",
    "TunnelAssignment", "WriteTun", "client_context", "load_crl", "server_context", "spki_pin",
]
