#!/usr/bin/env bash
# One prepared call on a GPU machine: install qbench over the machine's own torch, run the GPU tests,
# then the suites on the CUDA backends; everything lands in $OUT/gpu-check.tgz (one file, so that
# it comes back from the device tool) besides the log on stdout. Without $OUT: ./gpu-out.
# Missing wheels may be carried in .whl/ (git-ignored) and are installed first. The device image has
# no nvidia-cudnn-frontend; fetch it here with
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --platform manylinux_2_28_x86_64 -d .whl nvidia-cudnn-frontend==1.22.1
# and name .whl in the device call's carry.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
WORK=$(mktemp -d)
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . || exit 1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu \
    --format=csv | tee "$WORK/gpu.txt"
python3 -m qbench backends | tee "$WORK/backends.txt"
# the GPU tests, and the backend, API and timing tests that run compiled on a GPU (the device image
# has no hypothesis, which the reference tests need; they ran in CI)
python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_triton.py tests/test_cudnn.py \
    tests/test_cupy.py tests/test_api.py tests/test_measurement.py 2>&1 | tee "$WORK/pytest-gpu.txt"
# qbench's own cost per call over the bare cuDNN plan and the bare kernel launch
python3 -m pytest -q -p no:cacheprovider benchmarks/test_gpu_overhead.py \
    --benchmark-group-by=group --benchmark-json "$WORK/overhead.json" 2>&1 | tee "$WORK/overhead.txt"
for suite in resnet padding depthwise grouped; do
    python3 -m qbench run "suites/$suite.toml" --device cuda --out "$WORK/$suite" \
        --backends "${QBENCH_GPU_BACKENDS:-torch-cuda,torch-fp16,triton,cudnn,cupy}" \
        2>&1 | tee "$WORK/$suite.txt"
done
tar -czf "$OUT/gpu-check.tgz" -C "$WORK" .
