"""Head to head within one run: one backend's median over others', per case, and per other
backend the geometric mean, the worst case and how many cases it wins, over the cases where both
rows are `ok` (a wrong or unchecked result is no comparison); an other may be a group, "a,b":
per case the fastest of its backends that is `ok` (e.g. the fp16 figure, the faster of
torch-fp16 and cudnn-fp16); and the same against the layers' floors (`qbench.floor`), with how
many are within 2x of theirs; and a network's time, median x count summed, on both sides at
each batch size."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from rich.markup import escape
from rich.table import Table

from qbench.summary import geomean

FLOOR = "floor"  # the column of the backend's floors, and the `other` of its Versus
GROUP_SEPARATOR = ","  # "a,b": per case, the faster of a and b


def group_members(other: str) -> list[str]:
    """The backends an --against names: one, or a group's ("a,b")."""
    return [name.strip() for name in other.split(GROUP_SEPARATOR)]


def _label(other: str) -> str:
    members = group_members(other)
    return members[0] if len(members) == 1 else f"fastest of {', '.join(members)}"


@dataclass(frozen=True)
class Versus:
    """`backend` against `other` (a backend, or FLOOR) over `cases` cases where both have a time:
    the geomean of backend / other, the largest ratio and its case, the cases where backend is
    faster (ratio below 1) and those within 2x (ratio at most 2), and the `unsettled` cases:
    those where a median of the ratio's (backend's, or the other's fastest ok member's) did not
    settle (its row's `settled` is false: sampling ran out of time before its confidence
    interval narrowed), whose ratio is as noisy as that median."""

    backend: str
    other: str
    cases: int
    geomean: float
    worst: float
    worst_case: str
    faster: int
    within_2x: int
    unsettled: int = 0

    def sentence(self) -> str:
        if not self.cases:
            return f"{self.backend} / {self.other}: no case where both are ok"
        tally = (f"within 2x on {self.within_2x}" if self.other == FLOOR
                 else f"faster on {self.faster}")
        noise = (f"; {self.unsettled} of these ratios on a median that did not settle"
                 if self.unsettled else "")
        return (f"{self.backend} / {self.other}: geomean {self.geomean:.2f}, worst "
                f"{self.worst:.2f} ({self.worst_case}), {tally} of {self.cases}{noise}")


def head_to_head(rows: pd.DataFrame, backend: str, others: Sequence[str],
                 floor: bool = False) -> tuple[pd.DataFrame, list[Versus]]:
    """(per case in run order: the `ok` medians of `backend` and `others` (a group's: its
    fastest ok member's), NaN where not ok, and the ratios `backend / other`, and with `floor`
    the case's floor where backend's row is ok and backend / floor; the `Versus` of each)."""
    # rows without a `settled` column (made by hand) count as settled
    ok = rows[rows["status"] == "ok"].assign(settled=lambda r: r.get("settled", True))
    cases = list(dict.fromkeys(rows["case"]))
    members = list(dict.fromkeys(m for other in others for m in group_members(other)))
    columns = [backend, *members]
    medians = ok.pivot_table(index="case", columns="backend", values="median_us", sort=False)
    medians = medians.reindex(index=cases, columns=columns)
    settled = ok.astype({"settled": float}).pivot_table(
        index="case", columns="backend", values="settled", aggfunc="min", sort=False)
    settled = settled.reindex(index=cases, columns=columns).fillna(1.0) == 1.0
    table = medians[[backend]].copy()
    table.columns.name = None
    labels = [_label(other) for other in others]
    other_settled = {}
    for other, label in zip(others, labels):
        group = medians[group_members(other)]
        table[label] = group.min(axis=1)
        fastest = group.dropna(how="all").idxmin(axis=1)
        other_settled[label] = pd.Series(
            [bool(settled.at[case, fastest[case]]) if case in fastest.index else True
             for case in group.index], index=group.index)
    if floor:
        table[FLOOR] = ok[ok["backend"] == backend].set_index("case")["floor_us"]
        other_settled[FLOOR] = pd.Series(True, index=table.index)  # floors are not sampled
    summaries = []
    for other in [*labels, *([FLOOR] if floor else [])]:
        ratio = table[backend] / table[other]
        table[f"{backend} / {other}"] = ratio
        both = ratio.dropna()
        noisy = ~(settled[backend] & other_settled[other])[both.index]
        worst_case = str(both.idxmax()) if len(both) else ""
        summaries.append(Versus(backend, other, len(both), geomean(list(both)),
                                float(both.max()) if len(both) else math.nan, worst_case,
                                int((both < 1).sum()), int((both <= 2).sum()), int(noisy.sum())))
    return table, summaries


@dataclass(frozen=True)
class Network:
    """`backend` against `other` (as in `Versus`) over a whole network at one batch size: the
    sums of median x count (occurrences in the network) over the `cases` cases where both have a
    time, in milliseconds."""

    backend: str
    other: str
    batch: int
    cases: int
    backend_ms: float
    other_ms: float

    def sentence(self) -> str:
        cases = f"{self.cases} case" + ("s" if self.cases != 1 else "")
        return (f"network at batch {self.batch} (median x count, {cases}): "
                f"{self.backend} {self.backend_ms:.3f} ms, {self.other} {self.other_ms:.3f} ms, "
                f"ratio {self.backend_ms / self.other_ms:.2f}")


def networks(rows: pd.DataFrame, table: pd.DataFrame,
             summaries: Sequence[Versus]) -> list[Network]:
    """Per `Versus` of `head_to_head`'s and per batch size of the run's rows, the network's time
    (each case's median times its `count`, summed) on both sides, over the cases that the
    table's ratio column has: the figure a whole network's convs add up to, where the geomean
    weighs every layer alike."""
    cases = rows.drop_duplicates("case").set_index("case").reindex(table.index)
    totals = []
    for summary in summaries:
        timed = table[f"{summary.backend} / {summary.other}"].notna()
        for batch in sorted(cases.loc[timed, "batch"].unique()):
            chosen = timed & (cases["batch"] == batch)
            counts = cases.loc[chosen, "count"]
            totals.append(Network(
                summary.backend, summary.other, int(batch), int(chosen.sum()),
                float((table.loc[chosen, summary.backend] * counts).sum() / 1e3),
                float((table.loc[chosen, summary.other] * counts).sum() / 1e3)))
    return totals


def markdown(table: pd.DataFrame, summaries: Sequence[Versus | Network]) -> str:
    """The table as Markdown (cells as `cell` writes them), then one line per summary."""
    header = ["case", *table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for case, row in table.iterrows():
        cells = [cell(column, value) for column, value in row.items()]
        lines.append("| " + " | ".join([str(case), *cells]) + " |")
    lines.append("")
    lines.extend(f"- {summary.sentence()}" for summary in summaries)
    return "\n".join(lines)


def terminal_table(table: pd.DataFrame, title: str) -> Table:
    """The table for a terminal (rich), cells as `cell` writes them."""
    view = Table(title=title, title_justify="left")
    view.add_column("case")
    for column in table.columns:
        view.add_column(escape(column), justify="right")
    for case, row in table.iterrows():
        view.add_row(escape(str(case)), *[cell(column, value) for column, value in row.items()])
    return view


def cell(column: str, value: float) -> str:
    """A table cell: a median to 0.1 us, a ratio (a column "a / b") to 0.01, `-` for NaN."""
    if value != value:
        return "-"
    return f"{value:.2f}" if " / " in column else f"{value:.1f}"
