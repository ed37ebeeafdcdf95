"""Where the client files live: the inventory's `pki/` and the project's `clients/`.

    inventory/hosts.yml            the inventory every command is given
    inventory/pki/                 the CA and its roster (`provision.pki`), beside the inventory
    clients/NAME.bundle            the bundle to hand out: mode 0600, folder 0700
    clients/NAME.bundle.revoked    the same file once revoked: kept as a record, renamed so
                                   that it is never handed out again by mistake
    NAME.key                       never written by us: with `--csr` the laptop keeps its key
                                   beside the bundle, which names it (`key_file: NAME.key`)

Rule: the project root is the inventory's folder's parent (`inventory/lab.yml` -> `.`),
so `clients/` sits beside `inventory/`; an explicit out dir replaces `clients/`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

BUNDLE_SUFFIX = ".bundle"
REVOKED_SUFFIX = ".bundle.revoked"


@dataclass(frozen=True)
class Layout:
    inventory: Path
    pki: Path
    clients: Path

    def bundle(self, name: str) -> Path:
        return self.clients / f"{name}{BUNDLE_SUFFIX}"

    def revoked(self, name: str) -> Path:
        return self.clients / f"{name}{REVOKED_SUFFIX}"


def layout_for(inventory_path: str | Path, out_dir: str | Path | None = None) -> Layout:
    inventory = Path(inventory_path)
    clients = Path(out_dir) if out_dir is not None else inventory.parent.parent / "clients"
    return Layout(inventory, inventory.parent / "pki", clients)


def key_file_name(name: str) -> str:
    """The key a laptop holds beside its bundle when it brought a CSR."""
    return f"{name}.key"
