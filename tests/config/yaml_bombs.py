"""Hostile YAML shared by the file-loading tests (configs, bundles, inventories)."""

from __future__ import annotations


def alias_bomb(levels: int = 7) -> str:
    """A flow list of ~40 bytes a level whose last anchor `*a{levels}` expands to 9**(levels+1)
    strings when walked or repr'd (the "billion laughs")."""
    anchors = ["&a0 [x,x,x,x,x,x,x,x,x]"]
    anchors += [f"&a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels + 1)]
    return "[" + ",".join(anchors) + "]"


def with_bomb(template: str, levels: int = 7) -> str:
    """`template` with BOMB replaced by the anchors and LAST by an alias to the largest."""
    return template.replace("BOMB", alias_bomb(levels)).replace("LAST", f"*a{levels}")
