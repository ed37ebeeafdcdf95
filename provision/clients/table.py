"""A plain text table: a header row and aligned columns, two spaces apart.

Rule: cells are rendered as given (the caller shortens them); None shows as `-`.
"""

from __future__ import annotations

from collections.abc import Sequence


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    cells = [list(headers), *([_cell(v) for v in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]


def _cell(value: object) -> str:
    return "-" if value is None else str(value)
