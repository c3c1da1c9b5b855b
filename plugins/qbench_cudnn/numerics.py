"""The arithmetic that turns PyTorch's quantized conv into cuDNN's int8 graph, in plain PyTorch.

cuDNN's int8 conv knows no zero points and no quint8: it sums raw signed products over the window,
with zeros at padded positions. The exact accumulator is recovered from it as

    acc = sum (x - zx)(w - 0) = raw - zx' * sum(w)     with x' = x ^ 0x80 for quint8,
                                                          zx' = zx - 128 for quint8,

where every tap of the window reads the image: when zx' != 0 the spatial padding is written into
the staged activations as the zero point (a padded tap then adds nothing) and the graph's conv runs
unpadded; when zx' == 0 cuDNN's own zero padding is the zero point. The graph adds a float offset
f32(b/aw) - zx' * sum(w) per channel, multiplies by M = f32(aw / s_y), applies ReLU, adds the
output zero point and saturates to int8. A quint8 output is computed as int8 with zero point
zp - 128, and its bytes flipped back (q ^ 0x80). Weights with non-zero zero points would need a
second convolution (sum(x) per pixel) and are refused.

The offset is never made to vary over the image (sum over the taps inside it, per output pixel):
on an H200 (cuDNN 9.19, 2026-11-27) graphs with such a (1, K, OH, OW) operand gave wrong outputs
at every padded problem of qbench's suites, and one of their engines a misaligned address.

Channels: cuDNN's int8 engines want C and K in multiples of 4. Weights are padded once; activations
are padded per call into a staged buffer (the zero point in the padded channels, where the weights
are 0), which is also where a quint8 input gets its bytes flipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


CHANNEL_ALIGNMENT = 4
SIGN_FLIP = 0x80  # x ^ 0x80 maps uint8 v to the int8 byte of v - 128


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


@dataclass(frozen=True)
class ChannelLayout:
    """Input and output channels as cuDNN sees them: the problem's, or padded to CHANNEL_ALIGNMENT.

    Padding applies to groups == 1 only (as PyTorch's cuDNN path, which has no groups); a grouped
    problem is given to cuDNN as it is.
    """

    in_channels: int
    out_channels: int
    padded_in: int
    padded_out: int

    @classmethod
    def of(cls, in_channels: int, out_channels: int, groups: int, pad: bool) -> ChannelLayout:
        if not pad or groups != 1:
            return cls(in_channels, out_channels, in_channels, out_channels)
        return cls(in_channels, out_channels, round_up(in_channels, CHANNEL_ALIGNMENT),
                   round_up(out_channels, CHANNEL_ALIGNMENT))

    @property
    def pads_input(self) -> bool:
        return self.padded_in != self.in_channels

    @property
    def pads_output(self) -> bool:
        return self.padded_out != self.out_channels


def pack_weight(weight: torch.Tensor, layout: ChannelLayout) -> torch.Tensor:
    """int8 (K, C/g, R, S) weights zero-padded to (K', C'/g, R, S), channels_last in memory."""
    k, group_in, r, s = weight.shape
    padded = weight.new_zeros((layout.padded_out, group_in + layout.padded_in - layout.in_channels,
                               r, s))
    padded[:k, :group_in] = weight
    return padded.contiguous(memory_format=torch.channels_last)


def signed_zero_point(zero_point: int, unsigned: bool) -> int:
    """The input zero point of the int8 bytes cuDNN reads (zx - 128 after a quint8 flip)."""
    return zero_point - SIGN_FLIP if unsigned else zero_point


def offsets(weight: torch.Tensor, x_zero_point: int, bias_terms: torch.Tensor) -> torch.Tensor:
    """The float32 (1, K, 1, 1) term added to f32(raw accumulator): f32(b/aw)[k] - zx' * sum(w)[k],
    for a conv whose every tap reads the image or zx' (see the module's docstring).

    weight: the problem's int8 (K, C/g, R, S) weights (unpadded); bias_terms: f32(b/aw), (K,).
    The product is exact in float64 and rounded once to float32.
    """
    k = weight.shape[0]
    sums = weight.to(device="cpu", dtype=torch.float64).sum(dim=(1, 2, 3))
    return (bias_terms.to(torch.float64) - x_zero_point * sums).to(torch.float32).view(1, k, 1, 1)


def output_zero_point(out_zero_point: int, unsigned: bool, out_channels: int) -> torch.Tensor:
    """The float32 (1, K, 1, 1) zero point the graph adds: zp - 128 for a quint8 output, whose
    int8 result is flipped back afterwards."""
    zero_point = out_zero_point - SIGN_FLIP if unsigned else out_zero_point
    return torch.full((1, out_channels, 1, 1), float(zero_point))


def scale_first_offset(offset: torch.Tensor, multiplier: torch.Tensor,
                       zero_point: torch.Tensor) -> torch.Tensor:
    """The "scale first" graph's offset: f32(f32(offset * M) + zero point), (1, K, ., .) float32.

    That graph computes f32(acc) * M + offset': the same value as the reference's
    (f32(acc) + offset) * M + zero point, rounded in another order (within 1 LSB)."""
    return offset * multiplier.view(1, -1, 1, 1) + zero_point


def staged_buffer(x: torch.Tensor, channels: int, padding: tuple[int, int],
                  zero_point: int) -> torch.Tensor:
    """An int8 NHWC buffer for `x` (N, H, W, C) with `channels` >= C channels and `padding` rows
    and columns on each side, filled with the (int8-domain) input zero point."""
    n, h, w, _ = x.shape
    ph, pw = padding
    return torch.full((n, h + 2 * ph, w + 2 * pw, channels), zero_point, dtype=torch.int8,
                      device=x.device)


def stage_input(x: torch.Tensor, staged: torch.Tensor, unsigned: bool,
                padding: tuple[int, int]) -> None:
    """Write NHWC activations `x` into the interior of `staged` (see `staged_buffer`; its border
    and extra channels keep the zero point), flipping quint8 bytes to int8."""
    _, h, w, c = x.shape
    ph, pw = padding
    target = staged[:, ph: ph + h, pw: pw + w, :c]
    if unsigned:
        torch.bitwise_xor(x, SIGN_FLIP, out=target.view(torch.uint8))
    else:
        target.copy_(x)


def finish_output(result: torch.Tensor, out: torch.Tensor, unsigned: bool) -> None:
    """Copy the graph's int8 NHWC `result` (K' >= K channels) into the NHWC output `out`,
    flipping bytes back for a quint8 output."""
    source = result[..., : out.shape[-1]]
    if unsigned:
        torch.bitwise_xor(source.view(torch.uint8), SIGN_FLIP, out=out)
    else:
        out.copy_(source)
