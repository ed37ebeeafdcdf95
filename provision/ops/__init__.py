"""The concrete operations a playbook can name, gathered in `DEFAULT_REGISTRY`.

Rule 1: one module per operation, named for what it manages (`file`, `sysctl`...).
Rule 2: a new operation is a frozen dataclass subclass of `provision.operation.Operation`
with `op` set; add it to `DEFAULT_REGISTRY` below.
"""

from __future__ import annotations

from provision.operation import Registry
from provision.ops.directory import DirectoryOp
from provision.ops.file import FileOp
from provision.ops.sysctl import SysctlOp

DEFAULT_REGISTRY = Registry([FileOp, DirectoryOp, SysctlOp])

__all__ = ["DEFAULT_REGISTRY", "DirectoryOp", "FileOp", "SysctlOp"]
