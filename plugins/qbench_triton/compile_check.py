"""Compile the kernels for a GPU architecture without a GPU (Triton ships ptxas): `python -m
qbench_triton.compile_check 80 90`. Prints each kernel's tensor-core instruction and shared memory,
then, for sm_90 (H100, H200), every GEMM tuning config's registers and instructions a reduction
step, every direct kernel config's registers, and the Gluon kernel's (`wgmma`) with how many of a
step's loads it issues while a wgmma runs and how many of its programs fit an SM: exits non-zero
when a kernel fails to compile, spills registers, has a float multiply-add (its requantization
would not round as the reference does), packs a masked load's default wrongly, the Gluon kernel
issues a load after a step's wgmma has ended, or a persistent config asks for more programs an SM
than fit. Run without TRITON_INTERPRET."""

from __future__ import annotations

import multiprocessing
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor

import triton
from triton import knobs
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.experimental.gluon._runtime import GluonASTSource

from qbench_triton import _config_label, kernels, tuning, wgmma, wgmma_configs

_POINTERS = {"x_ptr": "*u8", "w_ptr": "*i8", "out_ptr": "*u8", "corr_ptr": "*i32",
             "wzp_ptr": "*i32", "bias_ptr": "*fp32", "mult_ptr": "*fp32",
             "partial_ptr": "*i32", "counter_ptr": "*i32"}
_FLOATS = ("out_zp", "lo", "hi")  # every other argument is a pointer, an i32 or a constexpr
_DIVISIBLE = ("M", "C", "K", "CG", "KG", "SPAN", "WSTRIDE")
_SHAPE = dict(R=3, S=3, HAS_WZP=True, BORDER=True)
_EVEN = dict(EVEN_N=True, EVEN_SPAN=True)  # tiles that divide the layer, as ResNet-50's 3x3 do
# conv1 (C = 3): its merged rows start at any byte; only rows, output channels and the weights'
# tap stride divide by 16
_CONV1 = dict(R=7, S=7, HAS_WZP=False, BORDER=True, MERGE_S=True, SHARED=False, EVEN_N=True,
              EVEN_SPAN=False)
_CONV1_DIVISIBLE = ("M", "K", "KG", "WSTRIDE")
_DEPTHWISE = dict(R=3, S=3, HAS_WZP=False, CG=1, KG=1)  # the direct kernel's: a channel a group
# A vector of bytes that a masked load starts from, when `other` is a byte over 127: Triton 3.6
# sign-extends it into the 32-bit word (0xffffff80) instead of repeating it (0x80808080); the
# kernels must use other=0 on byte loads.
_MISPACKED_OTHER = re.compile(r"mov\.u32 %r\d+, 0xf{6,}[89a-f][0-9a-f];")


def compile_kernel(kernel, constants: dict, capability: int, unsigned: bool, warps: int,
                   stages: int = 3, divisible_args: tuple[str, ...] = _DIVISIBLE):
    """The compiled kernel for `capability` (80, 90, ...), with the pointers and
    `divisible_args` specialised as divisible by 16."""
    constants = dict(constants, X_UNSIGNED=unsigned)
    signature = {name: ("constexpr" if name in constants else _POINTERS.get(name) or
                        ("fp32" if name in _FLOATS else "i32")) for name in kernel.arg_names}
    if not unsigned:
        signature.update(x_ptr="*i8", out_ptr="*i8")
    # as Triton's launcher specialises a ResNet layer: aligned pointers, channel counts and rows
    # divisible by 16
    divisible = {(kernel.arg_names.index(name),): [["tt.divisibility", 16]]
                 for name in [*_POINTERS, *divisible_args] if name in kernel.arg_names}
    source_type = GluonASTSource if kernel.is_gluon() else ASTSource
    source = source_type(fn=kernel, signature=signature, constexprs=constants, attrs=divisible)
    return triton.compile(source, target=GPUTarget("cuda", capability, 32),
                          options={"num_warps": warps, "num_stages": stages})


def _cuobjdump(compiled, option: str) -> str:
    """What cuobjdump (which Triton ships) prints of a compiled kernel's cubin with `option`."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(compiled.asm["cubin"])
        cubin.flush()
        return subprocess.run([knobs.nvidia.cuobjdump.path, option, cubin.name],
                              capture_output=True, text=True, check=True).stdout


def registers_and_stack(compiled) -> tuple[int, int]:
    """(registers, stack bytes) a thread of a compiled kernel takes: stack is where ptxas spills
    registers, as Triton's kernels have no local arrays."""
    match = re.search(r"REG:(\d+) STACK:(\d+)", _cuobjdump(compiled, "--dump-resource-usage"))
    return int(match[1]), int(match[2])


def sass(compiled) -> str:
    """A compiled kernel's SASS."""
    return _cuobjdump(compiled, "-sass")


def fused_multiply_adds(code: str) -> int:
    """The float multiply-adds (FFMA) in a kernel's SASS. The requantization must round
    (acc + bias) * scale before anything is added to it, as the reference does: fused with an
    addition, the product is not rounded on its own. The floor-and-fraction rounding of every
    H200 run up to 50e7c51 took its fraction so (Triton contracted v - floor(v) into one FMA with
    the multiply): where rounding the product to float32 made a tie or unmade one, it rounded the
    other way, 1 LSB off on up to 10 outputs in a million (`results/`, the exact_pct column)."""
    return len(re.findall(r"\bFFMA\b", code))


def reduction_step(code: str) -> list[str]:
    """The SASS instructions of a compiled GEMM kernel's reduction loop (the innermost loop around
    its tensor-core instructions), from its SASS: what a step costs besides the tensor cores."""
    addresses = [(int(address, 16), text) for address, text in
                 re.findall(r"/\*([0-9a-f]{4,})\*/\s+([^;]*);", code)]
    mma = [address for address, text in addresses if re.search(r"\b[HI]?[GIH]MMA\b", text)]
    loops = [(target, address) for address, text in addresses if "BRA" in text
             for target in [int(found, 16) for found in re.findall(r"0x([0-9a-f]+)", text)]
             if target < address and any(target <= at <= address for at in mma)]
    start, end = min(loops, key=lambda loop: loop[1] - loop[0])
    return [text.strip() for address, text in addresses if start <= address <= end]


# a global load, cp.async or into registers, predicated or not (not LDGDEPBAR, a commit)
_GLOBAL_LOAD = re.compile(r"(@!?U?P\w+ )?(LDGSTS|LDG)\b")
_CP_ASYNC = re.compile(r"(@!?U?P\w+ )?LDGSTS\b")
# sm_90's registers and shared memory an SM, the shared memory the system takes a program, and
# the registers a warp takes at a time
_SM90_REGISTERS = 65536
_SM90_SHARED = 228 * 1024
_SHARED_RESERVED = 1024
_REGISTER_UNIT = 256


def loads_beside_wgmma(step: list[str], load: re.Pattern = _GLOBAL_LOAD) -> tuple[int, int]:
    """(global loads (`load`: cp.async or into registers) a reduction step issues while one of
    its wgmma groups runs, all its global loads), from its sm_90 SASS in order, the loop's end
    leading to its start: a wgmma runs from its `IGMMA ... gsb0` until a
    `WARPGROUP.DEPBAR.LE gsb0, 0x0` (a wait that leaves some running keeps it so). None beside,
    as Triton 3.6 compiles int8 dots: each step's loads wait for its wgmma."""
    running, beside = False, 0
    for lap in range(2):  # the first lap finds what runs when the loop comes round
        for line in step:
            if re.search(r"\bIGMMA\b.*\bgsb0\b", line):
                running = True
            elif re.search(r"WARPGROUP\.DEPBAR\.LE gsb0, 0x0\b", line):
                running = False
            elif lap and load.match(line):
                beside += running
    return beside, sum(bool(load.match(line)) for line in step)


def programs_an_sm(registers: int, shared: int, warps: int) -> int:
    """How many programs of a kernel fit on an sm_90 SM at once: by their registers (allocated
    a warp at a time, in units of _REGISTER_UNIT) and by their shared memory."""
    warp_registers = -(-registers * 32 // _REGISTER_UNIT) * _REGISTER_UNIT
    by_registers = _SM90_REGISTERS // warp_registers // warps
    return min(by_registers, _SM90_SHARED // (shared + _SHARED_RESERVED))


def gemm_config_usage(capability: int) -> list[tuple[str, int, int, int, int]]:
    """(config, registers, stack bytes, instructions a reduction step, float multiply-adds
    (`fused_multiply_adds`)) of each GEMM tuning config, compiled as it runs (warps, stages) for
    ResNet-50's 3x3 layers as PyTorch quantizes them: quint8 activations with a zero point (a border
    table), symmetric weights, tiles that divide the layer. Each tile also shared (stream-K: any
    programs per SM are one variant), whether or not tuning tries it (`stream.ENABLED`). Weight zero
    points with quint8 take more registers (Triton 3.9 spilled 16 and 144 B a thread in two configs
    there, 3.6 none)."""
    usage = []
    for bm, bn, bk, warps, stages, shared in gemm_variants():
        constants = dict(_SHAPE, **_EVEN, HAS_WZP=False, MERGE_S=False, SHARED=shared, BM=bm,
                         BN=bn, BK=bk)
        compiled = compile_kernel(kernels.conv_gemm_kernel, constants, capability, True, warps,
                                  stages)
        label = f"{bm}x{bn}x{bk}/{warps}w/{stages}s" + ("/shared" if shared else "")
        code = sass(compiled)
        usage.append((label, *registers_and_stack(compiled), len(reduction_step(code)),
                      fused_multiply_adds(code)))
    return usage


def wgmma_config_usage() -> list[tuple[str, int, int, int, tuple[int, int], tuple[int, int],
                                      int]]:
    """(config, registers, stack bytes, instructions a reduction step, its loads beside a wgmma and
    all its loads (`loads_beside_wgmma`), its programs that fit an SM (`programs_an_sm`) and those
    it asks for an SM (PERSIST; 0 for a program per tile), float multiply-adds
    (`fused_multiply_adds`)) of each tuning config of the Gluon kernels (`wgmma`, sm_90 only;
    split-K's whether or not tuning tries them, `wgmma_configs.splitting`; L1 reuse's; persistent
    programs', whose reduction loop holds a tile's epilogue, so that only its cp.async loads count),
    qint8 and quint8, compiled for ResNet-50's 3x3 layers (a border table, tiles that divide the
    layer) and, merged rows, for its conv1 (7x7 of 3 channels) and, in the blocks of 32 that divide
    their stride, for the padding suite's 3x3 of 4 channels (rows of 12 lanes)."""
    usage = []
    kernels_configs = [("", wgmma.conv_gemm_wgmma_kernel, config, dict(R=3, S=3), _DIVISIBLE)
                       for config in wgmma_configs.WGMMA_CONFIGS + wgmma_configs.SPLIT_CONFIGS
                       + wgmma_configs.REUSE_CONFIGS + wgmma_configs.PERSISTENT_CONFIGS]
    kernels_configs += [(" merged", wgmma.conv_merged_wgmma_kernel, config,
                         dict(R=7, S=7, SPAN=21), _CONV1_DIVISIBLE)
                        for config in wgmma_configs.MERGED_CONFIGS]
    kernels_configs += [(" merged narrow", wgmma.conv_merged_wgmma_kernel, config,
                         dict(R=3, S=3, SPAN=12), _CONV1_DIVISIBLE)
                        for config in narrow_merged_configs()]
    for name, kernel, config, taps, divisible in kernels_configs:
        for unsigned in (False, True):
            constants = dict(taps, BORDER=True, **config.kwargs)
            compiled = compile_kernel(kernel, constants, 90, unsigned, config.num_warps,
                                      config.num_stages, divisible)
            code = sass(compiled)
            step = reduction_step(code)
            registers, stack = registers_and_stack(compiled)
            persist = config.kwargs.get("PERSIST", 0)
            load = _CP_ASYNC if persist else _GLOBAL_LOAD
            label = f"{_config_label(config)}{name} {'quint8' if unsigned else 'qint8'}"
            fit = programs_an_sm(registers, compiled.metadata.shared, config.num_warps)
            usage.append((label, registers, stack, len(step), loads_beside_wgmma(step, load),
                          (fit, persist), fused_multiply_adds(code)))
    return usage


def direct_config_usage() -> list[tuple[str, int, int, int, int]]:
    """(config, registers, stack bytes, programs that fit an SM (`programs_an_sm`), float
    multiply-adds (`fused_multiply_adds`)) of each tuning config of the direct kernel, compiled
    for sm_90 as it runs MobileNetV2's depthwise 3x3 layers: quint8, a channel a group."""
    usage = []
    for config in tuning.DIRECT_CONFIGS:
        compiled = compile_kernel(kernels.conv_direct_kernel, dict(_DEPTHWISE, **config.kwargs),
                                  90, True, config.num_warps, config.num_stages)
        registers, stack = registers_and_stack(compiled)
        usage.append((_config_label(config), registers, stack,
                      programs_an_sm(registers, compiled.metadata.shared, config.num_warps),
                      fused_multiply_adds(sass(compiled))))
    return usage


def narrow_merged_configs() -> list[triton.Config]:
    """The merged-row configs that tuning tries on rows of 12 lanes (a 3x3 of 4 channels, its
    weights' tap stride 32) to up to 128 output channels (`wgmma_configs.dividing`)."""
    return wgmma_configs.dividing(wgmma_configs.MERGED_CONFIGS, 32, 128)


def gemm_variants() -> list[tuple[int, ...]]:
    """(BM, BN, BK, warps, stages, shared) of every GEMM tile, alone and shared."""
    return [(*tile, shared) for tile in dict.fromkeys(tuning.GEMM_TILES)
            for shared in (False, True)]


def main(capabilities: list[int]) -> int:
    variants = [("gemm", kernels.conv_gemm_kernel,
                 dict(_SHAPE, **_EVEN, MERGE_S=False, SHARED=False, BM=128, BN=128, BK=64),
                 _DIVISIBLE),
                ("gemm merged", kernels.conv_gemm_kernel, dict(_CONV1, BM=128, BN=64, BK=32),
                 _CONV1_DIVISIBLE),
                ("direct", kernels.conv_direct_kernel,  # depthwise: vectorised loads
                 dict(_DEPTHWISE, BM=64, BN=64, UNROLL_TAPS=False), _DIVISIBLE)]
    if 90 not in capabilities:
        return _check_kernels(capabilities, variants)
    # the Gluon configs, the longest part, compile in a process of their own beside the rest
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        wgmma_usage = pool.submit(wgmma_config_usage)
        status = _check_kernels(capabilities, variants)
        return status | _check_wgmma_configs(wgmma_usage.result())


def _check_wgmma_configs(usage: list[tuple]) -> int:
    """Print each Gluon config's `wgmma_config_usage`; 1 where one fails a check, else 0."""
    status = 0
    for label, registers, stack, step, (beside, loads), (fit, persist), fused in usage:
        print(f"sm_90 wgmma config {label}: {registers} registers, {step} instructions a "
              f"reduction step, {beside} of {loads} loads beside a wgmma, {fit} programs "
              f"an SM, {f'{stack} B of spills' if stack else 'no spills'}")
        status |= _spills(label, stack)
        if not loads or beside < loads:
            print(f"  {label} issues loads after a step's wgmma ends", file=sys.stderr)
            status = 1
        if persist > fit:
            print(f"  {label}: {persist} persistent programs an SM, but {fit} fit at once",
                  file=sys.stderr)
            status = 1
        status |= _fused(label, fused)
    return status


def _check_kernels(capabilities: list[int], variants: list[tuple]) -> int:
    """Print each kernel of `variants` compiled for each capability and, for sm_90, the GEMM and
    direct kernels' tuning configs; 1 where one fails a check, else 0."""
    status = 0
    for capability in capabilities:
        for name, kernel, constants, divisible_args in variants:
            for unsigned in (True, False):
                compiled = compile_kernel(kernel, constants, capability, unsigned, warps=4,
                                          divisible_args=divisible_args)
                ptx = compiled.asm["ptx"]
                mma = sorted({line.split()[0] for line in ptx.splitlines()
                              if "mma" in line and line.strip().startswith(("mma", "wgmma"))})
                print(f"sm_{capability} {name} {'quint8' if unsigned else 'qint8'}: "
                      f"shared {compiled.metadata.shared} B, {' '.join(mma) or 'no mma'}")
                if _MISPACKED_OTHER.search(ptx):
                    print(f"  a masked byte load's default is packed wrongly: {_MISPACKED_OTHER}",
                          file=sys.stderr)
                    status = 1
                status |= _fused(name, fused_multiply_adds(sass(compiled)))
    if 90 in capabilities:
        for label, registers, stack, step, fused in gemm_config_usage(90):
            print(f"sm_90 gemm config {label}: {registers} registers, {step} instructions a "
                  f"reduction step, {f'{stack} B of spills' if stack else 'no spills'}")
            status |= _spills(label, stack) | _fused(label, fused)
        for label, registers, stack, fit, fused in direct_config_usage():
            print(f"sm_90 direct config {label}: {registers} registers, {fit} programs an SM, "
                  f"{f'{stack} B of spills' if stack else 'no spills'}")
            status |= _spills(label, stack) | _fused(label, fused)
    return status


def _spills(label: str, stack: int) -> int:
    """1, saying so, if a kernel spills registers (`stack` bytes a thread), else 0."""
    if stack:
        print(f"  {label} spills registers", file=sys.stderr)
    return int(stack > 0)


def _fused(label: str, multiply_adds: int) -> int:
    """1, saying so, if a kernel has float multiply-adds (`fused_multiply_adds`), else 0."""
    if multiply_adds:
        print(f"  {label}: {multiply_adds} float multiply-adds (FFMA): its requantization would "
              "not round the product on its own, as the reference does", file=sys.stderr)
    return int(multiply_adds > 0)


if __name__ == "__main__":
    sys.exit(main([int(arg) for arg in sys.argv[1:]] or [80, 90]))
