"""`server_config`: the daemon's /etc/vpn-runtime/server.yml, rendered from the inventory's
settings and checked with the runtime's own parser before it is written.

Rule: a config the daemon would refuse fails the step on the operator's side (with the
runtime's one-line error), before anything reaches the host.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from provision.connection import Remote
from provision.fact import gather
from provision.operation import Context, Operation, Outcome
from provision.ops.file import FileOp, FileState, check_path, file_fact
from runtime.config import parse_config
from runtime.errors import ConfigError
from runtime.validate import Where


@dataclass(frozen=True)
class ServerConfigOp(Operation[FileState]):
    """The server daemon's config file."""

    op = "server_config"
    name: str
    network: str
    control_port: int
    data_port: int
    network6: str | None = None
    dns: tuple[str, ...] = ()
    client_to_client: bool = False
    path: str = "/etc/vpn-runtime/server.yml"

    def validate(self) -> None:
        check_path(self.path)
        try:
            parse_config(yaml.safe_load(self.render()), Where(self.path))
        except ConfigError as exc:
            raise ValueError(exc.message) from None

    def render(self) -> str:
        raw: dict[str, object] = {"name": self.name, "network": self.network}
        if self.network6:
            raw["network6"] = self.network6
        raw.update(control_port=self.control_port, data_port=self.data_port, client_to_client=self.client_to_client)
        if self.dns:
            raw["dns"] = list(self.dns)
        return "# Written by selfvpn deploy.\n" + yaml.safe_dump(raw, sort_keys=False)

    def gather(self, remote: Remote, ctx: Context) -> FileState:
        return gather(remote, file_fact(self.path))

    def decide(self, state: FileState, ctx: Context) -> Outcome:
        return FileOp(self.path, self.render(), "0644").decide(state, ctx)
