"""Small models for `qbench suite`'s tests (tests/test_model_suite.py), each conv's expected case
named in a comment: input 3 x 16 x 16."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Mixed(nn.Module):
    """A ResNet-like block and the cases around it: BatchNorms to fold, ReLUs to fuse (a shared
    module, a function, a method, ReLU6), a shared conv, an output used twice, and convs that
    qbench cannot measure."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)  # BN, ReLU: both
        self.stem_bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)  # called after stem_bn and after the sum
        self.reduce = nn.Conv2d(8, 8, 1, bias=False)  # BN, then F.relu: both
        self.reduce_bn = nn.BatchNorm2d(8)
        self.depthwise = nn.Conv2d(8, 8, 3, padding="same", groups=8)  # ReLU6, its own bias
        self.act6 = nn.ReLU6()
        self.expand = nn.Conv2d(8, 16, 1, bias=False)  # BN, then a sum: a bias, no ReLU
        self.expand_bn = nn.BatchNorm2d(16)
        self.downsample = nn.Sequential(nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16))
        self.wide = nn.Conv2d(16, 16, (1, 3), padding=(0, 2), dilation=(1, 2), bias=False)
        self.shared = nn.Conv2d(16, 16, 1)  # on 8 x 8, then on 4 x 4 (`relu_` after it there)
        self.uneven = nn.Conv2d(16, 4, 2, padding="same")  # left out: pads one side more
        self.reflect = nn.Conv2d(16, 16, 3, padding=1, padding_mode="reflect")  # left out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.stem_bn(self.stem(x)))
        y = F.relu(self.reduce_bn(self.reduce(x)))
        y = self.act6(self.depthwise(y))
        x = self.relu(self.expand_bn(self.expand(y)) + self.downsample(x))
        wide = self.wide(x)  # used twice: neither folded nor fused
        x = wide + wide.sigmoid()
        x = self.shared(x)
        x = self.shared(F.max_pool2d(x, 2)).relu_()
        return self.uneven(x).sum() + self.reflect(x).sum()


class Branchy(nn.Module):
    """A conv, then control flow on values, which torch.fx cannot trace."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return x.relu() if x.sum() >= 0 else x


def mixed() -> nn.Module:
    return Mixed()


def raising() -> nn.Module:
    raise RuntimeError("no weights here")


def not_a_model() -> list:
    return []


linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 10))  # a model of no conv
reflecting = nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular")  # no conv qbench can measure
