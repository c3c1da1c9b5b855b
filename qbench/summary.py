"""The terminal summary at the end of a run: per backend, statuses, accuracy and speedup."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from qbench.check import exact_share_text
from qbench.results import PASSING_STATUSES, STATUSES


def geomean(values: Sequence[float]) -> float:
    """Geometric mean of the finite positive values, NaN when there are none."""
    finite = [v for v in values if v > 0 and math.isfinite(v)]
    return math.exp(sum(map(math.log, finite)) / len(finite)) if finite else math.nan


# mismatch and error rows listed in full per backend and status; results.csv holds them all
LISTED_FAILURES = 5

_SHORT = {"mismatch": "mism", "mistrusted": "mistr", "unsupported": "unsup",
          "unavailable": "unavail"}


def summary_table(rows: Sequence[dict[str, Any]], baseline: str) -> Table:
    """One line per backend, in the order backends first appear: row counts per status, the worst
    error and the lowest exact-match share over checked rows, the geomean speedup over the rows
    that passed the check."""
    table = Table(title=f"qbench: speedup against {baseline or 'no baseline'}",
                  title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    table.add_column("backend", no_wrap=True)
    for status in STATUSES:
        table.add_column(_SHORT.get(status, status), justify="right", no_wrap=True)
    for column in ("max LSB", "exact %", "speedup"):
        table.add_column(column, justify="right", no_wrap=True)
    for entry in backend_stats(rows):
        counts = [entry["counts"][s] for s in STATUSES]
        table.add_row(entry["backend"], *[str(c) if c else "" for c in counts],
                      _show(entry["max_err_lsb"], "{:.0f}"),
                      exact_share_text(entry["min_exact_pct"]),
                      _show(entry["speedup"], "{:.2f}x"))
    return table


def backend_stats(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per backend, in the order backends first appear: rows of each status, the worst error and
    the lowest exact-match share over checked rows (NaN when none), and the geomean speedup over
    the rows that passed the check (a wrong output's speed is no speedup)."""
    stats = []
    for backend in dict.fromkeys(r["backend"] for r in rows):
        mine = [r for r in rows if r["backend"] == backend]
        checked = [r for r in mine if not math.isnan(r["max_err_lsb"])]
        stats.append({
            "backend": backend,
            "counts": {s: sum(r["status"] == s for r in mine) for s in STATUSES},
            "max_err_lsb": max((r["max_err_lsb"] for r in checked), default=math.nan),
            "min_exact_pct": min((r["exact_pct"] for r in checked), default=math.nan),
            "speedup": geomean([r["speedup"] for r in mine if r["status"] in PASSING_STATUSES]),
        })
    return stats


def missing_baseline(rows: Sequence[dict[str, Any]], baseline: str) -> str | None:
    """Why no row has a speedup, where the baseline backend has no row in the run; else None."""
    if any(r["backend"] == baseline for r in rows):
        return None
    return (f"no speedups: the baseline, {baseline or 'none'}, is not among this run's backends "
            "(--baseline names another)")


def _show(value: float, pattern: str) -> str:
    return "-" if math.isnan(value) else pattern.format(value)


def stdout_console(piped_width: int) -> Console:
    """A console on stdout: as wide as the terminal, or `piped_width` columns when the output is
    piped or captured, where rich's 80 would wrap a wide table's cells over many lines."""
    console = Console()
    return console if console.is_terminal else Console(width=piped_width)


def print_summary(rows: Sequence[dict[str, Any]], baseline: str) -> None:
    """The table on stdout (100 columns when piped: what it needs), a note where the baseline did
    not run (no speedups), then per backend and status the first `LISTED_FAILURES` mismatches
    and errors with their messages in full and how many more there are, the notes of `ok` rows
    (a row that ran again after its worker or Ray task was lost), then the rows whose timings
    are in doubt: samples taken while the GPU may have waited on the host."""
    console = stdout_console(100)
    console.print(summary_table(rows, baseline))
    if (note := missing_baseline(rows, baseline)) is not None:
        _say(console, "yellow", "note", note)
    failing: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        if row["status"] in ("mismatch", "error"):
            failing.setdefault((row["backend"], row["status"]), []).append(row)
    for (backend, status), failed in failing.items():
        for row in failed[:LISTED_FAILURES]:
            _say(console, "bold red", status, f"{row['case']} / {backend}: {row['error']}")
        if len(failed) > LISTED_FAILURES:
            _say(console, "bold red", status, f"{len(failed) - LISTED_FAILURES} more rows of "
                 f"{backend} (results.csv: error)")
    for row in rows:
        if row["status"] == "ok" and row["error"]:
            _say(console, "yellow", "note", f"{row['case']} / {row['backend']}: {row['error']}")
    for row in rows:
        if row.get("launch_bound_samples", 0) > 0:
            _say(console, "yellow", "launch-bound", f"{row['case']} / {row['backend']}: "
                 f"{row['launch_bound_samples']} of {row['samples']} samples may include the "
                 f"host's {row['host_us']:.0f} us to queue a call")


def _say(console: Console, style: str, label: str, text: str) -> None:
    """`label` in `style`, then `text` as it is (a case's "[batch=1]" is no markup to rich)."""
    console.print(f"[{style}]{label}[/] {escape(text)}", highlight=False)
