"""The runtime's error tree.

Every error a user can cause carries a one-line message (what, where) and a hint (what to
do), and maps to a distinct exit code.  The CLI catches `VpnError` once, at the top; any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class HintedError(Exception):
    """An error of the user's making: a message (what, where), a hint (what to do) and an
    exit code of its own.  The toolkit's error tree (`provision.errors`) shares it."""

    exit_code = 1
    default_hint = ""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def line(self) -> str:
        """The one line printed to the user."""
        return f"{self.message} ({self.hint})" if self.hint else self.message


class VpnError(HintedError):
    """Base of every expected runtime error."""


class UsageError(VpnError):
    """Bad command-line flags or arguments."""

    exit_code = 2


class ConfigError(VpnError):
    """A server config or client bundle that does not validate."""

    exit_code = 3
    default_hint = "fix the file and run the command again"


class PermissionDenied(VpnError):
    """The command needs root (TUN, routes, nftables, the control socket)."""

    exit_code = 4
    default_hint = "run it as root"


class NotRunning(VpnError):
    """No runtime is running where the command expected one."""

    exit_code = 5


class AlreadyRunning(VpnError):
    """A tunnel is already up."""

    exit_code = 6
    default_hint = "run `vpn-runtime down` first"


class ConnectFailed(VpnError):
    """The tunnel could not be brought up (server unreachable, refused, timed out)."""

    exit_code = 7


class HandshakeRefused(VpnError):
    """The peer's certificate, pin, name or revocation status was refused."""

    exit_code = 8


class SystemSetupError(VpnError):
    """Changing the system (TUN, routes, rules, nftables, resolver) failed."""

    exit_code = 9
    default_hint = "the change was rolled back; see the log with -v"
