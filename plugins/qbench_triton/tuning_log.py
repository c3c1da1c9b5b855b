"""What stream-K did in a tuning log (QBENCH_TRITON_TUNING_LOG, a JSON line per tuned shape): per
GEMM shape whose tuning timed shared launches, the fastest config with a program per tile, the
fastest shared one (`/streamN` in its label) and their ratio, as a Markdown table.
`python -m qbench_triton.tuning_log FILE`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SHARED_MARK = "/stream"  # `qbench_triton._config_label` of a shared config


def stream_k_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """A row per record whose medians include shared and unshared configs: the shape, the best of
    each and shared / unshared (under 1: stream-K was faster)."""
    rows = []
    for record in records:
        medians = record.get("median_us", {})
        shared = {label: us for label, us in medians.items() if SHARED_MARK in label}
        whole = {label: us for label, us in medians.items() if SHARED_MARK not in label}
        if not shared or not whole:
            continue
        best_shared = min(shared, key=shared.get)
        best_whole = min(whole, key=whole.get)
        rows.append({"input_nhwc": record["input_nhwc"], "output_nhwc": record["output_nhwc"],
                     "kernel_size": record["kernel_size"], "in_dtype": record["in_dtype"],
                     "per_tile": best_whole, "per_tile_us": whole[best_whole],
                     "stream_k": best_shared, "stream_k_us": shared[best_shared],
                     "ratio": shared[best_shared] / whole[best_whole]})
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table, with how many shapes stream-K won."""
    lines = ["| input NHWC | output NHWC | kernel | in | program per tile (µs) | stream-K (µs) "
             "| ratio |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        shape = ["x".join(map(str, row[key])) for key in ("input_nhwc", "output_nhwc",
                                                           "kernel_size")]
        lines.append(f"| {' | '.join(shape)} | {row['in_dtype']} "
                     f"| {row['per_tile']} {row['per_tile_us']:.1f} "
                     f"| {row['stream_k']} {row['stream_k_us']:.1f} | {row['ratio']:.2f} |")
    won = sum(row["ratio"] < 1 for row in rows)
    lines.append(f"\nstream-K faster on {won} of {len(rows)} shapes that tried it")
    return "\n".join(lines)


def main(path: str) -> int:
    with Path(path).open(encoding="utf-8") as log:
        print(markdown(stream_k_rows(json.loads(line) for line in log if line.strip())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
