"""GPU checks of the PyTorch CUDA backends (skipped without a CUDA device).

torch-cuda must be exact where PyTorch accepts the problem and report PyTorch's refusals as
unsupported; torch-fp16 must run and be judged like any other backend, autotuned, and with ReLU
fused where cuDNN can.
"""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import ROOT, requires_cuda

pytestmark = [pytest.mark.gpu, requires_cuda]


def test_torch_cuda_and_fp16_on_the_smoke_suite(run_cli, tmp_path):
    out = tmp_path / "out"
    run_cli("run", ROOT / "suites" / "smoke.toml", "--device", "cuda", "--out", out,
            "--backends", "torch-cuda,torch-fp16")
    rows = pd.read_csv(out / "results.csv")
    cuda = rows[rows.backend == "torch-cuda"]
    assert not (cuda.status == "error").any(), cuda.error.tolist()
    # PyTorch's CUDA path takes only qint8 activations, groups = 1 and per-tensor weights
    accepted = cuda[cuda.status != "unsupported"]
    assert set(accepted.case.str.split("[").str[0]) <= {"qint8"}
    assert (cuda[cuda.status == "unsupported"].error.str.len() > 0).all()
    fp16 = rows[rows.backend == "torch-fp16"]
    assert set(fp16.status) <= {"ok", "mismatch"} and (fp16.median_us > 0).all()
    # cuDNN autotuned; with ReLU, fused where cuDNN has an engine, else saying why not
    assert fp16.details.str.contains("algorithms=cudnn.benchmark").all()
    relu = fp16[fp16.relu].details
    assert relu.str.contains("relu=fused: cudnn_convolution_relu|relu=conv2d then relu_ "
                             r"\(cudnn_convolution_relu raised: .+\)").all(), relu.tolist()
