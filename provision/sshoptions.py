"""The SSH options an inventory gives in `ansible_ssh_common_args`, read as ssh(1) reads them.

Rule 1: only `-o` options count: `-o Key=Value`, `-oKey=Value`, `-o "Key Value"`; keys are
case-insensitive and, as on ssh's command line, the first value given for a key wins.
Rule 2: we honour ProxyCommand, UserKnownHostsFile, GlobalKnownHostsFile and
StrictHostKeyChecking, with OpenSSH's defaults when they are not given; any other option
is Ansible's business.  A value we cannot honour raises `ValueError` saying which option,
what it takes and what it got; the inventory names the file and the var.
Rule 3: known-hosts files are space separated, `~` expanded (`none`: no file; `/dev/null`
is a file).  StrictHostKeyChecking is kept as `yes`, `accept-new` or `no`: `ask` is `yes`
(a deploy never asks), `off` is `no`, and `true`/`false` read as ssh reads them.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass

from runtime.validate import brief

USER_KNOWN_HOSTS = "~/.ssh/known_hosts"
GLOBAL_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"
CHECKING = {"yes": "yes", "ask": "yes", "true": "yes", "accept-new": "accept-new",
            "no": "no", "off": "no", "false": "no"}
OPTION = re.compile(r"\s*([A-Za-z][A-Za-z0-9]*)(?:\s*=\s*|\s+)(.*?)\s*", re.S)  # Key=Value, Key Value


@dataclass(frozen=True)
class SshOptions:
    proxy_command: str | None
    known_hosts: tuple[str, ...]  # UserKnownHostsFile: read, and the first one written
    global_known_hosts: tuple[str, ...]  # GlobalKnownHostsFile: read only
    host_key_checking: str  # yes | accept-new | no


def ssh_options(ssh_args: str | None) -> SshOptions:
    """The options of `ssh_args` we honour, with OpenSSH's defaults (raises ValueError)."""
    given = options(ssh_args)
    proxy = given.get("proxycommand")
    return SshOptions(
        proxy_command=None if proxy is None or proxy.lower() == "none" else proxy,
        known_hosts=files("UserKnownHostsFile", given.get("userknownhostsfile", USER_KNOWN_HOSTS)),
        global_known_hosts=files("GlobalKnownHostsFile", given.get("globalknownhostsfile", GLOBAL_KNOWN_HOSTS)),
        host_key_checking=checking(given.get("stricthostkeychecking", "accept-new")),
    )


def options(ssh_args: str | None) -> dict[str, str]:
    """Every `-o` option of `ssh_args`: lower-cased key -> the first value given for it."""
    try:
        words = shlex.split(ssh_args or "")
    except ValueError as exc:
        raise ValueError(f"cannot split {ssh_args!r}: {exc}") from None
    found: dict[str, str] = {}
    for index, word in enumerate(words):
        option = word[2:] if word.startswith("-o") and word != "-o" else None
        if word == "-o" and index + 1 < len(words):
            option = words[index + 1]
        match = OPTION.fullmatch(option or "")
        if match and match[2]:
            found.setdefault(match[1].lower(), match[2])
    return found


def files(option: str, value: str) -> tuple[str, ...]:
    if value.lower() == "none":
        return ()
    if "%" in value or "${" in value:
        raise ValueError(f"{option}: tokens like %d or ${{HOME}} are not supported, got {brief(value)}; "
                         "write the path out (~ is expanded)")
    return tuple(os.path.expanduser(path) for path in value.split())


def checking(value: str) -> str:
    if value.lower() not in CHECKING:
        raise ValueError(f"StrictHostKeyChecking: expected yes, accept-new, no, off or ask, got {brief(value)}")
    return CHECKING[value.lower()]
