"""Compile every kernel specialisation the backend can launch with the machine's `nvcc`, no GPU
needed: `python -m qbench_cupy.compile_check 80 90`. Warnings (nvcc's and ptxas's, register spills
included) are errors; each kernel's registers, shared memory and spills are printed. Exits non-zero
when a kernel fails."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from qbench_cupy.plan import KERNEL_DIR, every_kernel

NVCC_FLAGS = ("-std=c++17", "-Werror", "all-warnings",
              "-Xptxas=-v,--warn-on-spills,--warning-as-error")
_PTXAS_ENTRY = re.compile(r"Compiling entry function '(\w+)' for '(sm_\d+)'")
_PTXAS_USAGE = re.compile(r"Used (\d+) registers.*?(?:(\d+) bytes smem|$)")
_PTXAS_SPILLS = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")


def instantiation_unit() -> str:
    """A translation unit that includes every kernel source and instantiates each specialisation
    the planner can choose (taking its address), so that nvcc compiles all of them."""
    kernels = every_kernel()
    includes = sorted({k.source for k in kernels})
    lines = [f'#include "{source}"' for source in includes]
    lines.append("void* qbench_instantiated[] = {")
    lines += [f"    reinterpret_cast<void*>(&{k.expression})," for k in kernels]
    lines.append("};")
    return "\n".join(lines) + "\n"


def compile_for(capability: int, workdir: Path) -> subprocess.CompletedProcess[str]:
    """nvcc's run for sm_<capability> over `instantiation_unit()` (stdout and stderr merged)."""
    unit = workdir / "instantiate.cu"
    unit.write_text(instantiation_unit())
    command = ["nvcc", *NVCC_FLAGS, f"-arch=sm_{capability}", f"-I{KERNEL_DIR}", "-c", str(unit),
               "-o", str(workdir / f"kernels_sm{capability}.o")]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def demangle(symbol: str) -> str:
    """`qbench::conv_mma<...>` for a mangled kernel name (the name itself without c++filt)."""
    if shutil.which("c++filt") is None:
        return symbol
    result = subprocess.run(["c++filt", symbol], capture_output=True, text=True, check=False)
    return result.stdout.strip().removeprefix("void ").split("(")[0] or symbol


def resource_usage(ptxas_log: str) -> list[str]:
    """One line per compiled kernel: architecture, kernel, registers, shared memory, spills."""
    lines, entry = [], None
    for line in ptxas_log.splitlines():
        if match := _PTXAS_ENTRY.search(line):
            entry = f"{match.group(2)} {demangle(match.group(1))}"
        elif entry and (match := _PTXAS_SPILLS.search(line)):
            spills = f"spills {match.group(1)}+{match.group(2)} B"
        elif entry and (match := _PTXAS_USAGE.search(line)):
            lines.append(f"{entry}: {match.group(1)} registers, {match.group(2) or 0} B shared, "
                         f"{spills}")
            entry = None
    return lines


def main(capabilities: list[int]) -> int:
    if shutil.which("nvcc") is None:
        print("nvcc is not on PATH", file=sys.stderr)
        return 2
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for capability in capabilities:
            result = compile_for(capability, Path(tmp))
            print("\n".join(resource_usage(result.stdout + result.stderr)))
            if result.returncode != 0:
                failed = True
                print(f"sm_{capability}: nvcc failed\n{result.stdout}{result.stderr}",
                      file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main([int(arg) for arg in sys.argv[1:]] or [80, 90]))
