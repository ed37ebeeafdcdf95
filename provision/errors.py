"""The toolkit's error tree, caught once at the top of `tasks.py` and turned into invoke's
`Exit` with one line (what, where, what to do) and a distinct exit code."""

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


class LabError(ProvisionError):
    exit_code = 7


class Unsupported(ProvisionError):
    """The host is not a system we support (not Debian/Ubuntu, no systemd...)."""

    exit_code = 8
