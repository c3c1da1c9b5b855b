"""What the alternatives to the plain kernels (the GEMM with a program per tile, the direct kernel
with its taps a loop) did in a tuning log (QBENCH_TRITON_TUNING_LOG, a JSON line per tuned shape):
for each kind in KINDS, per shape whose tuning timed configs of that kind and of a plain kernel,
the fastest of each and their ratio, as a Markdown table. `python -m qbench_triton.tuning_log
FILE`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# a kind's mark in `qbench_triton._config_label`: stream-K's shared launches, the Gluon kernels
# with a program per tile, with split-K (`/wgmma/splitN`: a label's last mark is its kind), with
# the activations through L1 (`/wgmma/l1`) and with persistent programs (`/wgmma/persistN`), and
# the direct kernel with its taps unrolled
KINDS = {"stream-K": "/stream", "wgmma": "/wgmma", "split-K": "/split", "L1 reuse": "/l1",
         "persistent": "/persist", "unrolled taps": "/unrolled"}


def _mark(label: str) -> str | None:
    """The kind mark that comes last in `label`, or None (the GEMM kernel, a program per tile)."""
    found = [(label.rfind(mark), mark) for mark in KINDS.values() if mark in label]
    return max(found)[1] if found else None


def kind_rows(records: Iterable[dict[str, Any]], mark: str) -> list[dict[str, Any]]:
    """A row per record whose medians include configs of the kind `mark` and configs of no
    kind: the shape, the best of each and marked / unmarked (under 1: the kind was faster)."""
    rows = []
    for record in records:
        medians = record.get("median_us", {})
        marked = {label: us for label, us in medians.items() if _mark(label) == mark}
        whole = {label: us for label, us in medians.items() if _mark(label) is None}
        if not marked or not whole:
            continue
        best_marked = min(marked, key=marked.get)
        best_whole = min(whole, key=whole.get)
        rows.append({"input_nhwc": record["input_nhwc"], "output_nhwc": record["output_nhwc"],
                     "kernel_size": record["kernel_size"], "in_dtype": record["in_dtype"],
                     "per_tile": best_whole, "per_tile_us": whole[best_whole],
                     "kind": best_marked, "kind_us": marked[best_marked],
                     "ratio": marked[best_marked] / whole[best_whole]})
    return rows


def markdown(rows: list[dict[str, Any]], kind: str) -> str:
    """The rows of `kind` as a Markdown table, with how many shapes it won."""
    lines = [f"| input NHWC | output NHWC | kernel | in | plain kernel (µs) | {kind} (µs) "
             "| ratio |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        shape = ["x".join(map(str, row[key])) for key in ("input_nhwc", "output_nhwc",
                                                           "kernel_size")]
        lines.append(f"| {' | '.join(shape)} | {row['in_dtype']} "
                     f"| {row['per_tile']} {row['per_tile_us']:.1f} "
                     f"| {row['kind']} {row['kind_us']:.1f} | {row['ratio']:.2f} |")
    won = sum(row["ratio"] < 1 for row in rows)
    lines.append(f"\n{kind} faster on {won} of {len(rows)} shapes that tried it")
    return "\n".join(lines)


def main(path: str) -> int:
    """Print a table for each kind that the log's tunings tried."""
    with Path(path).open(encoding="utf-8") as log:
        records = [json.loads(line) for line in log if line.strip()]
    tables = [markdown(rows, kind) for kind, mark in KINDS.items()
              if (rows := kind_rows(records, mark))]
    print("\n\n".join(tables) or "no tuning in the log tried any of " + ", ".join(KINDS))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
