"""The terminal summary at the end of a run: per backend, statuses, accuracy and speedup."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from qbench.results import STATUSES


def geomean(values: Sequence[float]) -> float:
    """Geometric mean of the finite positive values, NaN when there are none."""
    finite = [v for v in values if v > 0 and math.isfinite(v)]
    return math.exp(sum(map(math.log, finite)) / len(finite)) if finite else math.nan


def summary_table(rows: Sequence[dict[str, Any]], baseline: str) -> Table:
    """One line per backend, in the order backends first appear."""
    table = Table(title=f"qbench summary (speedup against {baseline or 'no baseline'})")
    table.add_column("backend")
    for status in STATUSES:
        table.add_column(status, justify="right")
    table.add_column("max err LSB", justify="right")
    table.add_column("min exact %", justify="right")
    table.add_column("geomean speedup", justify="right")
    for backend in dict.fromkeys(r["backend"] for r in rows):
        mine = [r for r in rows if r["backend"] == backend]
        counts = [sum(r["status"] == s for r in mine) for s in STATUSES]
        checked = [r for r in mine if not math.isnan(r["max_err_lsb"])]
        max_err = str(max(r["max_err_lsb"] for r in checked)) if checked else "-"
        min_exact = f"{min(r['exact_pct'] for r in checked):.2f}" if checked else "-"
        speedup = geomean([r["speedup"] for r in mine])
        table.add_row(backend, *[str(c) if c else "" for c in counts], max_err, min_exact,
                      "-" if math.isnan(speedup) else f"{speedup:.2f}x")
    return table


def print_summary(console: Console, rows: Sequence[dict[str, Any]], baseline: str) -> None:
    """The table, then every mismatch and error with its message in full."""
    console.print(summary_table(rows, baseline))
    for row in rows:
        if row["status"] in ("mismatch", "error"):
            console.print(f"[bold red]{row['status']}[/] {row['case']} / {row['backend']}: "
                          f"{row['error']}", markup=True, highlight=False)
