#!/usr/bin/env bash
# One prepared call on a GPU machine: install qbench over the machine's own torch, run the GPU tests,
# then the suites on the CUDA backends; everything lands in $OUT/gpu-check.tgz (one file, so that
# it comes back from the device tool) besides the log on stdout. Without $OUT: ./gpu-out.
# The archive is rewritten after every step, and each step gets what is left of
# QBENCH_GPU_BUDGET_S seconds (default 540, inside the device tool's 600 s per command), so a slow
# step costs the steps after it, never what was already measured. Steps run most important first.
# Missing wheels may be carried in .whl/ (git-ignored) and are installed first. The device image has
# no nvidia-cudnn-frontend; fetch it here with
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --platform manylinux_2_28_x86_64 -d .whl nvidia-cudnn-frontend==1.22.1
# and name .whl in the device call's carry.
# Within a task's 15 minutes of device time (a start costs 1 to 2 of them), two calls back to back
# on one warm machine: first what decides the open questions (the nine Triton changes since
# 50e7c51, split-K, the flushes, int8 against the autotuned and fused fp16 of torch-fp16 and
# cudnn-fp16),
#   QBENCH_GPU_BUDGET_S=420 QBENCH_GPU_SET="batch=32" \
#   QBENCH_GPU_BACKENDS=torch-cuda,torch-fp16,cudnn-fp16,triton,cudnn QBENCH_GPU_STEPS="gpu \
#   resnet-qint8 resnet-qint8-split padding-narrow flush-probe depthwise" bash scripts/gpu-check.sh
# (its suite runs check every row of the fused fp16 backends against the reference too), then,
# with QBENCH_GPU_BUDGET_S=300 and the same set and backends, QBENCH_GPU_STEPS="pytest-triton
# counters resnet-qint8-cold-read" QBENCH_GPU_CAPS="pytest-triton=120 counters=60"; its
# cold-read run has no cold one beside it to compare with: `qbench compare` the first call's.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
WORK=$(mktemp -d)
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 COLUMNS=${COLUMNS:-180}  # rich's tables, in full in the logs
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
deadline=$((SECONDS + ${QBENCH_GPU_BUDGET_S:-540}))

# step NAME COMMAND...: run COMMAND with what is left of the budget, its output in $WORK/NAME.txt,
# its seconds and exit status in $WORK/steps.txt (for planning the next call's budget), then
# rewrite the archive. QBENCH_GPU_STEPS="NAME ..." runs only the steps named;
# QBENCH_GPU_CAPS="NAME=SECONDS ..." gives step NAME at most SECONDS, so that a slow early step
# (the GPU tests) leaves time to the later ones.
# selected NAME: whether step NAME runs (QBENCH_GPU_STEPS names it, or names no step)
selected() {
    [ -z "${QBENCH_GPU_STEPS:-}" ] || [[ " $QBENCH_GPU_STEPS " == *" $1 "* ]]
}
step() {
    local name=$1 left=$((deadline - SECONDS)) start=$SECONDS cap status
    shift
    selected "$name" || return
    if [ "$left" -le 15 ]; then
        echo "$name: not run, the time budget is spent" | tee -a "$WORK/skipped.txt"
        return
    fi
    for cap in ${QBENCH_GPU_CAPS:-}; do
        if [ "${cap%%=*}" = "$name" ] && [ "${cap#*=}" -lt "$left" ]; then
            left=${cap#*=}
        fi
    done
    timeout -s INT -k 15 "$left" "$@" 2>&1 | tee "$WORK/$name.txt"  # SIGINT: qbench and pytest
    # keep what they finished (qbench writes its report); 124: stopped at its time limit
    status=${PIPESTATUS[0]}
    echo "$name: $((SECONDS - start)) s of $left, exit $status" | tee -a "$WORK/steps.txt"
    tar -czf "$OUT/gpu-check.tgz" -C "$WORK" .
}

python3 -m pip install -q --no-deps --no-build-isolation -e . || exit 1
step gpu nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu \
    --format=csv
step backends python3 -m qbench backends
# the GPU tests, and the backend, API and timing tests that run compiled on a GPU (the Hopper test
# of test_triton_gluon.py forces each Gluon tile against the reference), one process per backend
# (test_triton*.py together), so that a sticky CUDA error in one backend cannot fail the others'
# tests (the reference tests need hypothesis; they ran in CI, as did what needs no GPU: the compile
# checks and the Gluon emulator's tests, the tests named "compile" and "emulator"; a GPU test's
# name must say neither)
for tests in gpu triton cudnn cupy api measurement floor; do
    step "pytest-$tests" python3 -m pytest -q -p no:cacheprovider tests/test_"$tests"*.py \
        -k "not compile and not emulator"
done
# every Triton tuning's candidates and their medians, a JSON line per shape (which tiles win)
export QBENCH_TRITON_TUNING_LOG="$WORK/triton-tuning.jsonl"
backends=${QBENCH_GPU_BACKENDS:-torch-cuda,torch-fp16,cudnn-fp16,triton,cudnn,cupy}
# QBENCH_GPU_SET="FIELD=VALUE ...": more --set for every suite, e.g. "batch=32"
sets=()
for field in ${QBENCH_GPU_SET:-}; do
    sets+=(--set "$field")
done
# ResNet-50 first as PyTorch's CUDA path computes it right (qint8 in and out, per-tensor weights,
# and an output zero point of 0, as it ignores any other), so that every backend is compared with
# torch-cuda; then depthwise and grouped layers, where cuDNN is weakest, ResNet-50 as written
# (quint8, per-channel), which torch-cuda refuses, and last the padding cases (their 51 cases
# left no time for all of ResNet-50 as written on the H200).
qint8=(--set in_dtype=qint8 --set out_dtype=qint8 --set weight_qscheme=per_tensor
       --set out_zero_point=0)
step resnet-qint8 python3 -m qbench run suites/resnet.toml --device cuda \
    --out "$WORK/resnet-qint8" "${qint8[@]}" "${sets[@]}" --backends "$backends"
# the same with split-K on (QBENCH_TRITON_SPLIT_K=1: on layers of fewer tiles than two an SM, the
# Gluon kernel's tiles over 2 or 3 programs each; off by default until measured): the tuning log
# has its candidates beside the others'. triton and fp16 cuDNN alone, the rest measured above
# (cuDNN's first calls took 69 s of the H200's run)
step resnet-qint8-split env QBENCH_TRITON_SPLIT_K=1 python3 -m qbench run suites/resnet.toml \
    --device cuda --out "$WORK/resnet-qint8-split" "${qint8[@]}" "${sets[@]}" \
    --backends triton,torch-fp16
# the padding suite's input channels alone (its 13 in-channels cases a batch): a 3x3 of 3 to 5
# channels takes the GEMM's merged rows since a59a9b1 (the direct kernel before: 34.8 to 49.9 us
# on the H200, slower than fp16 cuDNN on 4 channels)
step padding-narrow python3 -m qbench run suites/padding.toml --device cuda \
    --out "$WORK/padding-narrow" --case in-channels "${sets[@]}" --backends "$backends"
# what the zeroing L2 flush leaves the timed call: reads, writes and copies of 2 to 32 MiB timed
# cold, cold-read (the flush reads) and hot (qbench/flush_probe.py; under 20 s)
step flush-probe python3 -m qbench.flush_probe
# Nsight Compute's counters of the Gluon kernel's main tiles, with and without L1 reuse and
# split-K, each launched once on layer3.conv2 and layer4.conv2, then of the GEMM kernel's winning
# tiles on two 1x1 layers of ResNet-50 and MobileNetV2's 16 -> 96 and 24 -> 144, the last in
# 32x256x32 too (qbench_triton/counters.py: its table lists the launches in ncu's order), as CSV
# in counters.txt and some of them in counters.md (below): durations, throughputs against their
# peaks, hit rates, occupancy, stalls.
# The clocks left alone, as the device's METHOD.md asks.
ncu=$(command -v ncu || compgen -G "/opt/nvidia/nsight-compute/*/ncu" | head -n 1)
step counters env -u QBENCH_TRITON_TUNING_LOG "${ncu:-ncu}" --clock-control none --set full \
    --csv --page details --kernel-name regex:conv_gemm python3 -m qbench_triton.counters
# ResNet-50 qint8 with the L2 cache left warm (--timing hot), then flushed by reading
# (--timing cold-read, which leaves it no dirty lines to write back): against the cold run above,
# what each backend's time owes to reading from memory (triton's 1x1 layers took 1.2 to 1.5
# times int8 cuDNN's, cold, on the H200), and what the zeroing flush added to it
for mode in hot cold-read; do
    step "resnet-qint8-$mode" python3 -m qbench run suites/resnet.toml --device cuda \
        --timing "$mode" --out "$WORK/resnet-qint8-$mode" "${qint8[@]}" "${sets[@]}" \
        --backends triton,cudnn,torch-fp16
done
for suite in depthwise grouped resnet padding; do
    step "$suite" python3 -m qbench run "suites/$suite.toml" --device cuda --out "$WORK/$suite" \
        "${sets[@]}" --backends "$backends"
done
# correctness at scale: 60 problems drawn at random (qbench random-suite: dense, grouped and
# depthwise, every pair, dtype, zero point and weight scheme) through the compiled kernels, each
# checked against the reference before and after its (short) timing; every shape tunes on its
# first call, which is most of the step's time
if selected random; then
    python3 -m qbench random-suite 60 --seed 1 --out "$WORK/random.toml"
fi
step random python3 -m qbench run "$WORK/random.toml" --device cuda --out "$WORK/random" \
    --max-time 0.002 --backends triton,cudnn,cupy,torch-fp16
# qbench's own cost per call over the bare cuDNN plan and the bare kernel launch
step overhead python3 -m pytest -q -p no:cacheprovider benchmarks/test_gpu_overhead.py \
    --benchmark-group-by=group --benchmark-json "$WORK/overhead.json"
# where a stream-K launch's time goes: two deep ResNet-50 layers, two tiles each, launched a
# program per tile and shared by several numbers of programs (qbench_triton/stream_probe.py;
# its forced configs are no tuning)
step stream-probe env -u QBENCH_TRITON_TUNING_LOG python3 -m qbench_triton.stream_probe
# triton against cudnn and fp16 where the run has them (and the faster fp16 per layer), and the
# layers' floors, per suite run, in Markdown for the notes (a second each; without the floors
# where the run could not measure the card's rates)
for results in "$WORK"/*/results.csv; do
    [ -e "$results" ] || continue
    run=$(dirname "$results")
    ratios=(python3 -m qbench ratios "$run" triton --markdown)
    fp16=()
    for other in cudnn torch-fp16 cudnn-fp16; do
        if grep -q ",$other," "$results"; then
            ratios+=(--against "$other")
            [ "$other" = cudnn ] || fp16+=("$other")
        fi
    done
    if [ "${#fp16[@]}" -eq 2 ]; then  # the fp16 figure: per layer the faster of the two
        ratios+=(--against "${fp16[0]},${fp16[1]}")
    fi
    "${ratios[@]}" --floor > "$WORK/ratios-$(basename "$run").md" 2>&1 \
        || "${ratios[@]}" >> "$WORK/ratios-$(basename "$run").md" 2>&1
done
# each suite run against the same suite's in the first of the committed runs QBENCH_GPU_BASELINE
# that has it (default: the H200's of 50e7c51, then of 6b3a359, the last with padding), row by row
# (`qbench compare`, which says so if the card differs), in compare-RUN.txt and .html; a run of
# some of a suite's cases, or with split-K, against the whole suite's; the warm run and the one
# flushed by reading against this call's cold one
committed=${QBENCH_GPU_BASELINE:-results/h200-2026-11-27-50e7c51 results/h200-2026-11-27-6b3a359}
for results in "$WORK"/*/results.csv; do
    run=$(basename "$(dirname "$results")")
    suite=$run baselines=$committed
    case $run in
        padding-narrow) suite=padding ;;
        resnet-qint8-split) suite=resnet-qint8 ;;
        resnet-qint8-hot | resnet-qint8-cold-read) suite=resnet-qint8 baselines=$WORK ;;
    esac
    for baseline in $baselines; do
        if [ -e "$baseline/$suite/results.json" ]; then
            python3 -m qbench compare "$baseline/$suite" "$WORK/$run" \
                --html "$WORK/compare-$run.html" > "$WORK/compare-$run.txt" 2>&1
            break
        fi
    done
done
# the counters step's kernels, some of ncu's metrics a launch
if [ -s "$WORK/counters.txt" ]; then
    python3 -m qbench_triton.counters --summary "$WORK/counters.txt" > "$WORK/counters.md" 2>&1
fi
# what stream-K (with QBENCH_TRITON_STREAM_K=1), the Gluon kernels, their split-K, their L1
# reuse and their persistent programs, and the direct kernel's unrolled taps did: per shape whose
# tuning tried them, their best against the best plain config (a program per tile, taps a loop)
if [ -s "$WORK/triton-tuning.jsonl" ]; then
    python3 -m qbench_triton.tuning_log "$WORK/triton-tuning.jsonl" > "$WORK/tuning-kinds.md" 2>&1
fi
tar -czf "$OUT/gpu-check.tgz" -C "$WORK" .  # with skipped.txt, if steps were skipped
