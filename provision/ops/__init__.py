"""The concrete operations a playbook can name, gathered in `DEFAULT_REGISTRY`.

Rule 1: one module per operation (or per family of them), named for what it manages
(`file`, `sysctl`, `package`, `nft`...).
Rule 2: a new operation is a frozen dataclass subclass of `provision.operation.Operation`
with `op` set; add it to `DEFAULT_REGISTRY` below.
"""

from __future__ import annotations

from provision.operation import Registry
from provision.ops.baseline import BaselineOp
from provision.ops.directory import DirectoryOp
from provision.ops.file import FileOp
from provision.ops.nft import NftTableOp
from provision.ops.package import PackageOp
from provision.ops.platform import PlatformOp
from provision.ops.pki_files import CaCertOp, CrlOp, ServerCertOp
from provision.ops.resolver import ResolverOp
from provision.ops.runtime import RuntimeOp
from provision.ops.server_config import ServerConfigOp
from provision.ops.sysctl import SysctlOp
from provision.ops.unit import RestartOp, UnitOp

DEFAULT_REGISTRY = Registry([
    PlatformOp, FileOp, DirectoryOp, SysctlOp, BaselineOp, PackageOp, RuntimeOp, ServerCertOp, CaCertOp, CrlOp,
    NftTableOp, ResolverOp, ServerConfigOp, UnitOp, RestartOp,
])

__all__ = [
    "DEFAULT_REGISTRY", "BaselineOp", "CaCertOp", "CrlOp", "DirectoryOp", "FileOp", "NftTableOp",
    "PackageOp", "PlatformOp", "ResolverOp", "RestartOp", "RuntimeOp", "ServerCertOp", "ServerConfigOp", "SysctlOp", "UnitOp",
]
