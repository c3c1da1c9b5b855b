"""Result files: results.csv (one row per case and backend, appended as produced) and results.json
(schema version, settings, environment, and the rows once the run ends)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from qbench.errors import QbenchError

# 2: `details`; 3: `host_us` and `launch_bound_samples`; 4: `floor_us`; 5: `reduce_range`
SCHEMA_VERSION = 5
READABLE_SCHEMA_VERSIONS = (2, 3, 4, 5)  # an older file's missing columns read as empty
STATUSES = ("ok", "mismatch", "mistrusted", "unsupported", "unavailable", "error")
FAILING_STATUSES = ("mismatch", "error")
PASSING_STATUSES = ("ok", "mistrusted")  # outputs within 1 LSB of the reference everywhere
RESULTS_JSON, RESULTS_CSV = "results.json", "results.csv"
RESULT_FILES = (RESULTS_JSON, RESULTS_CSV)  # a new run would overwrite these
COLUMNS = (
    "suite", "case", "backend", "device", "node", "status", "error", "batch", "in_channels",
    "out_channels", "height", "width", "kernel_size", "stride", "padding", "dilation", "groups",
    "in_dtype", "out_dtype", "weight_qscheme", "relu", "bias", "in_zero_point", "reduce_range",
    "weight_zero_point", "out_scale", "out_zero_point", "count", "numerics", "max_err_lsb",
    "exact_pct", "median_us", "p10_us", "p90_us", "min_us", "max_us", "mean_us", "stddev_us",
    "q1_us", "q3_us", "spread_pct", "median_ci_pct", "samples", "throttled_samples",
    "launch_bound_samples", "settled", "host_us",
    "prepack_ms", "first_call_ms", "tops", "gbps", "floor_us", "speedup", "timing_mode",
    "details",
)


class ResultWriter:
    """Writes one run's files under `directory`: each row reaches results.csv when produced.

    `existing` rows (from `load_results`, for `--resume`) are kept: results.csv is appended to.
    """

    def __init__(self, directory: Path, header: dict[str, Any],
                 existing: list[dict[str, Any]] | None = None):
        self.directory = directory
        self.header = {"schema_version": SCHEMA_VERSION, **header}
        self.rows: list[dict[str, Any]] = list(existing or [])
        directory.mkdir(parents=True, exist_ok=True)
        self.csv_path = directory / RESULTS_CSV
        self.json_path = directory / RESULTS_JSON
        if existing is None:
            self.csv_path.unlink(missing_ok=True)
        self._write_json()

    def append(self, row: dict[str, Any]) -> None:
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise ValueError(f"unknown result columns: {sorted(unknown)}")
        self.rows.append(row)
        frame = pd.DataFrame([row], columns=list(COLUMNS))
        frame.to_csv(self.csv_path, mode="a", header=not self.csv_path.exists(), index=False)

    def finish(self, **extra: Any) -> None:
        """Rewrite both files from all rows (with values derived across rows, such as speedups,
        filled in since) and `extra` header fields (e.g. the end time)."""
        self.header.update(extra)
        pd.DataFrame(self.rows, columns=list(COLUMNS)).to_csv(self.csv_path, index=False)
        self._write_json()

    def _write_json(self) -> None:
        document = {**self.header, "rows": [_jsonable(r) for r in self.rows]}
        self.json_path.write_text(json.dumps(document, indent=1, default=str) + "\n")


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in row.items()}


def load_results(directory: str | Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """(header, rows) of a result directory, with every column of this schema; refuses a schema
    version it cannot read."""
    directory = Path(directory)
    json_path = directory / RESULTS_JSON
    try:
        header = json.loads(json_path.read_text())
    except FileNotFoundError:
        raise QbenchError(f"{json_path}: no such file (not a qbench result directory)") from None
    except json.JSONDecodeError as exc:
        raise QbenchError(f"{json_path}: not valid JSON: {exc}") from None
    if header.get("schema_version") not in READABLE_SCHEMA_VERSIONS:
        raise QbenchError(f"{json_path}: schema version {header.get('schema_version')!r} is not "
                          f"one this qbench reads {READABLE_SCHEMA_VERSIONS}")
    csv_path = directory / RESULTS_CSV
    if csv_path.exists():
        text_columns = {name: str for name in ("suite", "case", "backend", "device", "node",
                                               "status", "error", "timing_mode", "details")}
        rows = pd.read_csv(csv_path, dtype=text_columns, keep_default_na=False,
                           na_values={name: [""] for name in COLUMNS if name not in text_columns})
        rows = rows.reindex(columns=list(COLUMNS))
    else:
        rows = pd.DataFrame(columns=list(COLUMNS))
    header.pop("rows", None)
    return header, rows
