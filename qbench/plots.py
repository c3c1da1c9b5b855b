"""The report's plots as inline SVG (matplotlib), each point carrying a hover tooltip.

Every point is its own artist with an id; after matplotlib writes the SVG, a `<title>` holding the
escaped tooltip text is put inside that element, which browsers show on hover.
"""

from __future__ import annotations

import html
import io
import math
import re
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the non-interactive backend)
import pandas as pd  # noqa: E402

from qbench.peaks import DevicePeak  # noqa: E402
from qbench.results import FAILING_STATUSES  # noqa: E402

plt.rcParams.update({"svg.hashsalt": "qbench", "svg.fonttype": "none", "font.size": 9})
_MARKERS = "osD^v<>ph*"


def _svg(fig: plt.Figure, tooltips: dict[str, str]) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]  # drop the XML prolog and doctype: the SVG goes inline

    def add_title(match: re.Match[str]) -> str:
        gid = match.group(1)
        return f'{match.group(0)}<title>{html.escape(tooltips[gid])}</title>'

    return re.sub(r'<g id="(pt-\d+)"[^>]*>', add_title, svg)


def _tooltip(row: pd.Series, *extra: str) -> str:
    failed = [f"{row['status']}: its outputs failed the check"] if _failed(row) else []
    return "\n".join([f"{row['case']} / {row['backend']}",
                      f"median {row['median_us']:.4g} us (p10 {row['p10_us']:.4g}, "
                      f"p90 {row['p90_us']:.4g})", *extra, *failed])


def _failed(row: pd.Series) -> bool:
    return row["status"] in FAILING_STATUSES


def _point(ax: plt.Axes, x: float, y: float, row: pd.Series, b_index: int, gid: str) -> None:
    """One row's marker, in its backend's shape and colour; hollow where the row's outputs
    failed the check (its time is of wrong results)."""
    colour = f"C{b_index % 10}"
    ax.plot(x, y, _MARKERS[b_index % len(_MARKERS)], color=colour, markersize=6, gid=gid,
            alpha=0.85, markerfacecolor="none" if _failed(row) else colour)


def _legend_failed(ax: plt.Axes, rows: pd.DataFrame) -> None:
    """A legend entry for hollow markers, where any row failed the check."""
    if rows["status"].isin(FAILING_STATUSES).any():
        ax.plot([], [], "o", color="grey", markerfacecolor="none",
                label="hollow: outputs failed the check")


def per_case_plot(rows: pd.DataFrame, value: str, label: str, log: bool = True,
                  reference_line: float | None = None) -> str:
    """A dot plot: one line per case, one marker per backend, x = `value`."""
    cases = list(dict.fromkeys(rows["case"]))
    backends = list(dict.fromkeys(rows["backend"]))
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.28 * len(cases)))
    tooltips: dict[str, str] = {}
    for b_index, backend in enumerate(backends):
        mine = rows[rows["backend"] == backend]
        for _, row in mine.iterrows():
            if not (isinstance(row[value], float) and math.isfinite(row[value]) and row[value] > 0):
                continue
            gid = f"pt-{len(tooltips)}"
            _point(ax, row[value], cases.index(row["case"]), row, b_index, gid)
            tooltips[gid] = _tooltip(row, f"{label}: {row[value]:.4g}")
        ax.plot([], [], _MARKERS[b_index % len(_MARKERS)], color=f"C{b_index % 10}", label=backend)
    _legend_failed(ax, rows)
    ax.set_yticks(range(len(cases)), cases)
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
    if reference_line is not None:
        ax.axvline(reference_line, color="grey", linewidth=1, linestyle="--")
    ax.set_xlabel(label)
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(len(backends) + 1, 5),
              frameon=False)
    return _svg(fig, tooltips)


def roofline_plot(rows: pd.DataFrame, peak: DevicePeak | None) -> str:
    """Achieved TOPS against arithmetic intensity (ops per byte), with the card's roof if known."""
    fig, ax = plt.subplots(figsize=(8, 5))
    tooltips: dict[str, str] = {}
    intensity = rows["tops"] * 1e3 / rows["gbps"]  # (ops / s) / (bytes / s) = ops / byte
    for b_index, backend in enumerate(dict.fromkeys(rows["backend"])):
        for index, row in rows[rows["backend"] == backend].iterrows():
            gid = f"pt-{len(tooltips)}"
            _point(ax, intensity[index], row["tops"], row, b_index, gid)
            tooltips[gid] = _tooltip(row, f"{row['tops']:.4g} TOPS at {intensity[index]:.4g} "
                                          f"ops/byte, {row['gbps']:.4g} GB/s")
        ax.plot([], [], _MARKERS[b_index % len(_MARKERS)], color=f"C{b_index % 10}", label=backend)
    _legend_failed(ax, rows)
    if peak is not None and len(rows):
        lo, hi = float(intensity.min()) / 2, float(intensity.max()) * 2
        ridge = peak.int8_tops * 1e12 / (peak.bandwidth_gbs * 1e9)
        xs = sorted({lo, hi, min(max(ridge, lo), hi)})
        ax.plot(xs, [min(peak.int8_tops, peak.bandwidth_gbs * x / 1e3) for x in xs], color="black",
                linewidth=1.5, label=f"{peak.name} roof: {peak.int8_tops:g} TOPS, "
                                     f"{peak.bandwidth_gbs:g} GB/s")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (ops / byte moved)")
    ax.set_ylabel("achieved TOPS")
    ax.grid(which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _svg(fig, tooltips)


def plots_for_device(rows: pd.DataFrame, baseline: str,
                     peak: DevicePeak | None) -> Sequence[tuple[str, str]]:
    """(title, svg) of every plot for the timed rows of one device."""
    timed = rows[rows["median_us"].notna() & (rows["median_us"] > 0)]
    if timed.empty:
        return []
    return [
        ("Time per call (median, log scale)", per_case_plot(timed, "median_us", "median us")),
        (f"Speedup against {baseline}", per_case_plot(timed, "speedup", f"speedup vs {baseline}",
                                                       reference_line=1.0)),
        ("Roofline", roofline_plot(timed, peak)),
    ]
