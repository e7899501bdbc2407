"""What the benchmarks print: the machine and server lines, and aligned result tables."""

from __future__ import annotations

import os
import platform
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


def machine_line(sharing: str, load: str) -> str:
    """What ran the benchmark: without it the figures mean little."""
    return (
        f"machine:  {os.cpu_count()} CPUs (nproc), {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}; {sharing}, {load}"
    )


def server_line(version: str, fsync: str, synchronous_commit: str) -> str:
    """The server and its durability settings, as configured (never changed by a bench)."""
    return (
        f"server:   PostgreSQL {version}, fsync={fsync}, "
        f"synchronous_commit={synchronous_commit} (as configured, not changed)"
    )
