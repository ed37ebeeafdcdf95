"""The toolkit's error tree, caught once at the top of `tasks.py` and turned into invoke's
`Exit` with one line (what, where, what to do) and a distinct exit code.

| code | error |
|---|---|
| 2 | `UsageError`: a flag, argument or host pattern |
| 3 | `InventoryError`: a value in the inventory file |
| 4 | `PlaybookError`: a step of the playbook |
| 5 | `PkiError`: the CA, a certificate or a bundle |
| 6 | `HostFailed`: a host failed or was unreachable (`HostUnreachable`, `PlayFailed`...) |
| 7 | `LabError`: the local lab |
| 8 | `Unsupported`: a host that is not Debian/Ubuntu with systemd |
| 9 | `WheelhouseError` (`provision.wheelhouse`): the runtime's wheels could not be built |
| 10 | `HostKeyUnknown`: StrictHostKeyChecking=yes and the host's SSH key is not known |
| 11 | `HostKeyChanged`: the host's SSH key differs from the known one |

A run over many hosts exits 6, or the hosts' own code when every broken host failed the
same distinct way (`provision.runner.PlayFailed`).
"""

from __future__ import annotations

from runtime.errors import HintedError


class ProvisionError(HintedError):
    """Base of every expected toolkit error."""


class UsageError(ProvisionError):
    exit_code = 2


class InventoryError(ProvisionError):
    exit_code = 3
    default_hint = "fix the inventory file and run again"


class PlaybookError(ProvisionError):
    exit_code = 4
    default_hint = "fix the playbook and run again"


class PkiError(ProvisionError):
    exit_code = 5


class HostFailed(ProvisionError):
    """One or more hosts failed or were unreachable; the recap says which."""

    exit_code = 6


class HostUnreachable(HostFailed):
    """The SSH connection could not be opened, or it broke."""

    default_hint = "check the address, port, key and that sshd runs; other hosts go on"

    def shown(self) -> str:
        """What the host's line shows: the message, and the hint unless it is this generic
        one (a refused host key says what to do about it)."""
        return self.message if self.hint == HostUnreachable.default_hint else self.line()


class HostKeyUnknown(HostUnreachable):
    """StrictHostKeyChecking=yes, and no known-hosts file holds a key for the host."""

    exit_code = 10


class HostKeyChanged(HostUnreachable):
    """The host showed an SSH key that differs from the one a known-hosts file holds for it."""

    exit_code = 11


class LabError(ProvisionError):
    exit_code = 7


class Unsupported(ProvisionError):
    """The host is not a system we support (not Debian/Ubuntu, no systemd...)."""

    exit_code = 8
