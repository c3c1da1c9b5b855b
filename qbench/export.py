"""qbench results in pytest-benchmark's JSON format, so `pytest-benchmark compare` reads them.

Each timed (case, backend) row becomes one benchmark named `case[backend]`, grouped by case, with
the statistics qbench recorded (seconds, as pytest-benchmark stores them). Samples themselves are
not kept by qbench, so the JSON carries no `data` lists.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import pandas as pd

from qbench.results import load_results

_US = 1e-6


def benchmark_entry(row: pd.Series, suite: str) -> dict[str, Any]:
    """One row as a pytest-benchmark benchmark."""
    median, q1, q3 = row["median_us"] * _US, row["q1_us"] * _US, row["q3_us"] * _US
    mean = row["mean_us"] * _US
    return {
        "group": row["case"], "name": f"{row['case']}[{row['backend']}]",
        "fullname": f"{suite}::{row['case']}[{row['backend']}]",
        "params": {"backend": row["backend"]}, "param": row["backend"],
        "extra_info": {"status": row["status"], "device": row["device"],
                       "max_err_lsb": row["max_err_lsb"], "tops": row["tops"]},
        "options": {"disable_gc": False, "timer": "qbench", "min_rounds": 1, "max_time": None,
                    "min_time": None, "warmup": False},
        "stats": {
            "min": row["min_us"] * _US, "max": row["max_us"] * _US, "mean": mean,
            "stddev": row["stddev_us"] * _US, "rounds": int(row["samples"]), "median": median,
            "iqr": q3 - q1, "q1": q1, "q3": q3, "iqr_outliers": 0, "stddev_outliers": 0,
            "outliers": "0;0", "ld15iqr": row["min_us"] * _US, "hd15iqr": row["max_us"] * _US,
            "ops": 1 / mean if mean > 0 else 0.0, "total": mean * int(row["samples"]),
            "iterations": 1,
        },
    }


def export_pytest_benchmark(directory: str | Path, destination: str | Path) -> int:
    """Write the timed rows of a result directory as pytest-benchmark JSON; return their number."""
    header, rows = load_results(directory)
    timed = rows[rows["median_us"].notna()]
    env = header.get("environment", {})
    document = {
        "machine_info": {"node": env.get("host", ""), "processor": env.get("cpu", ""),
                         "machine": platform.machine(), "python_version": env.get("python", ""),
                         "python_implementation": platform.python_implementation(),
                         "cpu": {"brand_raw": env.get("cpu", "")}, "gpu": env.get("gpu")},
        "commit_info": {"id": "unknown", "dirty": False, "project": "qbench"},
        "benchmarks": [benchmark_entry(row, header.get("suite", ""))
                       for _, row in timed.iterrows()],
        "datetime": header.get("started", ""),
        "version": "5.1.0",
    }
    Path(destination).write_text(json.dumps(document, indent=1, default=str) + "\n")
    return len(document["benchmarks"])
