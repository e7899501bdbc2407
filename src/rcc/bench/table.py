"""The benchmarks' result tables: named columns, each aligned left or right."""

from __future__ import annotations

from collections.abc import Sequence

Column = tuple[str, str]  # (heading, "<" or ">")


def aligned(columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> list[str]:
    """Heading, a rule, then one line per row, every column as wide as its widest cell."""
    table = [[name for name, _ in columns], *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    lines = []
    for row in table:
        cells = (
            f"{cell:{align}{width}}"
            for cell, (_, align), width in zip(row, columns, widths, strict=True)
        )
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "-" * len(lines[0]))
    return lines
