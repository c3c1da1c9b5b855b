"""Small models for `qbench suite`'s tests (tests/test_model_suite.py), each conv's expected case
named in a comment: input 3 x 16 x 16."""

from __future__ import annotations

import math

import torch
import torch.ao.nn.intrinsic.quantized as nniq
import torch.ao.nn.quantized as nnq
import torch.nn.functional as F
from torch import nn


class SamePadding(nn.Conv2d):
    """A conv that pads its input by itself as TensorFlow's 'SAME' does (the odd pixel at the
    bottom and right), from the input's size, which torch.fx cannot trace (as timm's
    Conv2dSame): its attributes say padding 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = [max((math.ceil(size / s) - 1) * s + k - size, 0)
                for size, k, s in zip(x.shape[-2:], self.kernel_size, self.stride)]
        return super().forward(F.pad(x, (pads[1] // 2, pads[1] - pads[1] // 2,
                                         pads[0] // 2, pads[0] - pads[0] // 2)))


class BatchNormAct(nn.BatchNorm2d):
    """A BatchNorm2d with its ReLU, as timm's BatchNormAct2d: an assert on its input's shape,
    `F.batch_norm`, a Dropout (nothing in eval mode), then the ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels)
        self.drop = nn.Dropout(0.1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch._assert(x.ndim == 4, "expected N, C, H, W")
        x = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias)
        return self.act(self.drop(x))


class Functional(nn.Module):
    """A conv of its own weight through `F.conv2d`, then a ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, 16, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(F.conv2d(x, self.weight, None, 1, 0))


class Mixed(nn.Module):
    """A ResNet-like block and the cases around it: BatchNorms to fold, ReLUs to fuse (a shared
    module, a function, a method, ReLU6, one within a BatchNorm), a shared conv, an output used
    twice, convs that pad by themselves, functional convs and a conv that qbench cannot
    measure."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)  # BN, ReLU: both
        self.stem_bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)  # called after stem_bn and after the sum
        self.reduce = nn.Conv2d(8, 8, 1, padding="valid", bias=False)  # BN with its ReLU: both
        self.reduce_bn = BatchNormAct(8)
        self.depthwise = nn.Conv2d(8, 8, 3, padding="same", groups=8)  # ReLU6, its own bias
        self.act6 = nn.ReLU6()
        self.expand = nn.Conv2d(8, 16, 1, bias=False)  # BN, then a sum: a bias, no ReLU
        self.expand_bn = nn.BatchNorm2d(16)
        self.downsample = nn.Sequential(nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16))
        self.wide = nn.Conv2d(16, 16, (1, 3), padding=(0, 2), dilation=(1, 2), bias=False)
        self.shared = nn.Conv2d(16, 16, 1)  # on 8 x 8, then on 4 x 4 (`relu_` after it there)
        self.uneven = nn.Conv2d(16, 4, 2, padding="same")  # left out: pads one side more
        self.reflect = nn.Conv2d(16, 16, 3, padding=1, padding_mode="reflect")  # on 6 x 6, no pad
        self.padded = SamePadding(16, 4, 3, stride=2)  # on 5 x 5, no pad; then a ReLU
        self.functional = Functional()  # functional.conv2d
        self.kernel = nn.Parameter(torch.randn(4, 16, 3, 3))  # conv2d: F.conv2d in forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.stem_bn(self.stem(x)))
        y = self.reduce_bn(self.reduce(x))
        y = self.act6(self.depthwise(y))
        x = self.relu(self.expand_bn(self.expand(y)) + self.downsample(x))
        wide = self.wide(x)  # used twice: neither folded nor fused
        x = wide + wide.sigmoid()
        x = self.shared(x)
        x = self.shared(F.max_pool2d(x, 2)).relu_()
        return (self.uneven(x).sum() + self.reflect(x).sum() + self.padded(x).relu().sum()
                + self.functional(x).sum() + F.conv2d(x, self.kernel, stride=2).sum())


class Branchy(nn.Module):
    """A conv, then control flow on values, which torch.fx cannot trace."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return x.relu() if x.sum() >= 0 else x


class Quantized(nn.Module):
    """A model as PyTorch's quantization converts one (a Quantize stub, a fused ConvReLU2d, a
    conv of per-tensor weights and no bias, one that pads by reflection), a quantized conv that
    qbench cannot measure, and a float conv after the DeQuantize."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.quant = nnq.Quantize(0.05, 7, torch.quint8)
        self.stem = nniq.ConvReLU2d(3, 8, 3, stride=2, padding=1)  # in zero point 7, ReLU
        self.stem.set_weight_bias(torch.quantize_per_channel(
            torch.randn(8, 3, 3, 3, generator=gen), torch.full((8,), 0.02),
            torch.zeros(8, dtype=torch.long), 0, torch.qint8), torch.randn(8, generator=gen))
        self.project = nnq.Conv2d(8, 16, 1, bias=False)  # per-tensor weights of zero point 3
        self.project.set_weight_bias(torch.quantize_per_tensor(
            torch.randn(16, 8, 1, 1, generator=gen), 0.02, 3, torch.qint8), None)
        self.project.zero_point = 64  # the next conv's input zero point
        self.reflect = nnq.Conv2d(16, 16, 3, padding=1, padding_mode="reflect")  # 10 x 10, no pad
        self.skewed = nnq.Conv2d(16, 16, 1)  # left out: weight zero points 0, 1, 2 by channel
        self.skewed.set_weight_bias(torch.quantize_per_channel(
            torch.randn(16, 16, 1, 1, generator=gen), torch.full((16,), 0.02),
            torch.arange(16) % 3, 0, torch.qint8), None)
        self.dequant = nnq.DeQuantize()
        self.head = nn.Conv2d(16, 4, 3, padding=1)  # float, then F.relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.skewed(self.reflect(self.project(self.stem(self.quant(x)))))
        return F.relu(self.head(self.dequant(x)))


class Adding(nn.Module):
    """A quantized conv that adds a second input to its output (PyTorch's onednn engine)."""

    def __init__(self) -> None:
        super().__init__()
        self.quant = nnq.Quantize(0.05, 0, torch.quint8)
        self.conv_add = nniq.ConvAdd2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.quant(x)
        return self.conv_add(x, x)


class HoldingScript(nn.Module):
    """A TorchScript module, whose convs qbench cannot see run, before a conv."""

    def __init__(self) -> None:
        super().__init__()
        self.scripted = torch.jit.script(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()))
        self.conv = nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.scripted(x))


def scripted() -> nn.Module:
    return torch.jit.script(nn.Conv2d(3, 4, 3))


def compiled() -> nn.Module:
    return torch.compile(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()))


def mixed() -> nn.Module:
    return Mixed()


def sized(channels: int, *, kernel: int = 3) -> nn.Module:
    """A conv of `channels` outputs and a `kernel` x `kernel` window, then a ReLU."""
    return nn.Sequential(nn.Conv2d(3, channels, kernel), nn.ReLU())


def raising() -> nn.Module:
    raise RuntimeError("no weights here\nits second line, as PyTorch's dispatcher errors have")


def not_a_model() -> list:
    return []


bfloat16 = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).to(torch.bfloat16)  # takes bfloat16
linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 10))  # a model of no conv
uneven = nn.Conv2d(3, 4, 2, padding="same")  # no conv qbench can measure
