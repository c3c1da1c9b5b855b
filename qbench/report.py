"""report.html: one self-contained page (inline SVG, CSS and a few lines of script) from a result
directory's files. It reads results.json and results.csv only, so `qbench report DIR` works on a
directory written yesterday, by another machine.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from qbench.check import exact_share_text
from qbench.peaks import PEAKS, peak_for
from qbench.plots import plots_for_device
from qbench.results import PASSING_STATUSES, STATUSES, load_results
from qbench.summary import backend_stats, missing_baseline

REPORT_FILE = "report.html"
_TABLE_COLUMNS = ("case", "backend", "status", "batch", "in_channels", "out_channels", "height",
                  "width", "kernel_size", "stride", "groups", "in_dtype", "out_dtype",
                  "weight_qscheme", "reduce_range", "relu", "max_err_lsb", "exact_pct",
                  "median_us", "p10_us", "p90_us", "spread_pct", "settled", "host_us",
                  "first_call_ms", "tops", "gbps", "floor_us", "speedup", "details")

templates = jinja2.Environment(
    loader=jinja2.PackageLoader("qbench", "templates"),
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def network_times(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """Per (device, backend, batch): the sum over cases of median x count, in milliseconds, and how
    many of the cases were timed and passed the check (a sum over fewer cases is not the
    network's time)."""
    result = []
    for (device, backend, batch), group in rows.groupby(["device", "backend", "batch"], sort=False):
        timed = group[group["median_us"].notna() & group["status"].isin(PASSING_STATUSES)]
        result.append({"device": device, "backend": backend, "batch": int(batch),
                       "ms": float((timed["median_us"] * timed["count"]).sum() / 1e3),
                       "cases": len(timed), "of": len(group)})
    return result


def accuracy_matrix(rows: pd.DataFrame) -> tuple[list[str], list[dict[str, Any]]]:
    """(backends, one entry per case with a cell per backend: max LSB, exact share, status)."""
    backends = list(dict.fromkeys(rows["backend"]))
    cases = []
    for case, group in rows.groupby("case", sort=False):
        cells = {r["backend"]: r for _, r in group.iterrows()}
        cases.append({"case": case, "cells": [cells.get(b) for b in backends]})
    return backends, cases


def cards_side_by_side(rows: pd.DataFrame) -> dict[str, Any] | None:
    """With rows from more than one device: per case, the median of every (device, backend) and
    each device's fastest backend among the rows that passed the check. None for one device."""
    devices = list(dict.fromkeys(rows["device"]))
    if len(devices) < 2:
        return None
    passed = rows[rows["status"].isin(PASSING_STATUSES) & rows["median_us"].notna()]
    columns = list(dict.fromkeys(zip(rows["device"], rows["backend"])))
    cases = []
    for case, group in rows.groupby("case", sort=False):
        medians = {(r["device"], r["backend"]): r["median_us"] for _, r in group.iterrows()}
        mine = passed[passed["case"] == case]
        best = {device: (mine[mine["device"] == device].nsmallest(1, "median_us")["backend"]
                         .tolist() or ["-"])[0] for device in devices}
        cases.append({"case": case, "medians": [medians.get(c) for c in columns],
                      "best": [best[d] for d in devices]})
    return {"devices": devices, "columns": columns, "cases": cases}


def render_report(directory: str | Path) -> Path:
    """Write `directory`/report.html from its results and return the path."""
    directory = Path(directory)
    header, rows = load_results(directory)
    baseline = header.get("settings", {}).get("baseline", "")
    devices = []
    for device, group in rows.groupby("device", sort=False):
        peak = peak_for(str(device))
        devices.append({"name": device, "peak": peak,
                        "plots": plots_for_device(group, baseline, peak)})
    backends, accuracy = accuracy_matrix(rows)
    records = rows.to_dict("records")
    page = templates.get_template("report.html.j2").render(
        header=header, rows=records, columns=_TABLE_COLUMNS, summary=backend_stats(records),
        missing_baseline=missing_baseline(records, baseline), network=network_times(rows),
        devices=devices,
        accuracy_backends=backends, accuracy=accuracy, statuses=STATUSES, peaks=PEAKS,
        cards=cards_side_by_side(rows),
        errors=rows[rows["error"] != ""].to_dict("records"), fmt=_format, share=exact_share_text)
    path = directory / REPORT_FILE
    path.write_text(page)
    return path


def _format(value: Any, digits: int = 4) -> str:
    """A table cell: numbers to `digits` significant digits, missing values as a dash."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)
