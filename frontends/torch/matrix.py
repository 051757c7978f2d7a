"""The PyTorch layers and functions hgqir imports, for the support matrix (see
:mod:`hgqir.frontends.support`); ``importer/ops.py`` is what decides, this list documents it
and its examples are imported by the consistency test."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..support import Support

DENSE = (4,)
IMAGE = (2, 6, 6)
SEQUENCE = (2, 8)


class _Fn(nn.Module):
    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def _after_linear(layer: Callable[[], nn.Module]) -> Callable[[], tuple[Any, tuple[int, ...]]]:
    return lambda: (nn.Sequential(nn.Linear(4, 4), layer()), DENSE)


def _after_conv(layer: Callable[[], nn.Module], nd: int = 2) -> Callable[[], tuple[Any, tuple[int, ...]]]:
    conv = nn.Conv2d if nd == 2 else nn.Conv1d
    return lambda: (nn.Sequential(conv(2, 2, 3), layer()), IMAGE if nd == 2 else SEQUENCE)


def _function(fn: Callable[..., Any], shape: tuple[int, ...]) -> Callable[[], tuple[Any, tuple[int, ...]]]:
    return lambda: (_Fn(fn), shape)


_SMOOTH = {
    "nn.ELU (alpha=1), F.elu": nn.ELU,
    "nn.SELU, F.selu": nn.SELU,
    "nn.SiLU, F.silu": nn.SiLU,
    "nn.GELU (erf and tanh), F.gelu": nn.GELU,
    "nn.Softplus (beta=1, threshold=20), F.softplus": nn.Softplus,
    "nn.Mish, F.mish": nn.Mish,
    "nn.Hardswish, F.hardswish": nn.Hardswish,
    "nn.Hardsigmoid, F.hardsigmoid": nn.Hardsigmoid,
    "nn.ReLU6, F.relu6": nn.ReLU6,
    "nn.Hardtanh (range [-1, 1]), F.hardtanh": nn.Hardtanh,
}

SUPPORT: tuple[Support, ...] = (
    Support("nn.Linear", ("dense",), "on the last axis of any rank", lambda: (nn.Linear(4, 3), DENSE)),
    Support(
        "nn.Conv1d",
        ("conv1d",),
        "groups=1, zero padding (integer, 'same', 'valid'); dilation as a zero-stuffed kernel",
        lambda: (nn.Conv1d(2, 3, 3, padding=1), SEQUENCE),
    ),
    Support("nn.Conv2d", ("conv2d",), "as nn.Conv1d", lambda: (nn.Conv2d(2, 3, 3, stride=2), IMAGE)),
    Support(
        "nn.Conv1d with groups = in_channels",
        ("depthwise_conv1d",),
        "depthwise, any channel multiplier",
        lambda: (nn.Conv1d(2, 4, 3, groups=2), SEQUENCE),
        True,
    ),
    Support(
        "nn.Conv2d with groups = in_channels",
        ("depthwise_conv2d",),
        "depthwise (MobileNet), any channel multiplier",
        lambda: (nn.Conv2d(2, 2, 3, groups=2), IMAGE),
        True,
    ),
    Support("nn.BatchNorm1d", ("batchnorm",), "running statistics", _after_linear(lambda: nn.BatchNorm1d(4))),
    Support("nn.BatchNorm2d", ("batchnorm",), "running statistics", _after_conv(lambda: nn.BatchNorm2d(2))),
    Support("nn.ReLU, F.relu, torch.relu, Tensor.relu", ("relu",), "", _after_linear(nn.ReLU)),
    Support(
        "nn.LeakyReLU, F.leaky_relu",
        ("prelu",),
        "the slope a quantized constant",
        _after_linear(lambda: nn.LeakyReLU(0.1)),
        True,
    ),
    Support("nn.PReLU", ("prelu",), "slopes are weights (learned bitwidths)", _after_linear(lambda: nn.PReLU(4)), True),
    Support(
        "nn.Sigmoid, torch.sigmoid, F.sigmoid", ("lut",), "table over the quantized input", _after_linear(nn.Sigmoid)
    ),
    Support("nn.Tanh, torch.tanh, F.tanh", ("lut",), "table over the quantized input", _after_linear(nn.Tanh)),
    *(Support(name, ("lut",), "exact table", _after_linear(cls), True) for name, cls in _SMOOTH.items()),
    Support(
        "nn.Softmax, F.softmax, torch.softmax", ("softmax",), "explicit dim", _after_linear(lambda: nn.Softmax(-1))
    ),
    Support(
        "nn.LogSoftmax, F.log_softmax, torch.log_softmax",
        ("softmax",),
        "softmax with log = true",
        _after_linear(lambda: nn.LogSoftmax(-1)),
        True,
    ),
    Support("nn.MaxPool1d", ("maxpool1d",), "no ceil mode, no dilation", _after_conv(lambda: nn.MaxPool1d(2), 1)),
    Support("nn.MaxPool2d", ("maxpool2d",), "no ceil mode, no dilation", _after_conv(lambda: nn.MaxPool2d(2))),
    Support(
        "F.max_pool1d, F.max_pool2d, torch.max_pool1d/2d",
        ("maxpool2d",),
        "as the modules",
        _function(lambda x: F.max_pool2d(x, 2), IMAGE),
        True,
    ),
    Support("nn.AvgPool1d", ("avgpool1d",), "no divisor_override", _after_conv(lambda: nn.AvgPool1d(2), 1)),
    Support("nn.AvgPool2d", ("avgpool2d",), "both count_include_pad", _after_conv(lambda: nn.AvgPool2d(2, padding=1))),
    Support(
        "F.avg_pool1d, F.avg_pool2d, torch.avg_pool1d",
        ("avgpool2d",),
        "as the modules",
        _function(lambda x: F.avg_pool2d(x, 2, count_include_pad=False, padding=1), IMAGE),
        True,
    ),
    Support(
        "nn.AdaptiveAvgPool1d/2d(1)",
        ("global_avgpool",),
        "output size 1",
        _after_conv(lambda: nn.AdaptiveAvgPool2d(1)),
    ),
    Support(
        "nn.AdaptiveMaxPool1d/2d(1)",
        ("global_maxpool",),
        "output size 1",
        _after_conv(lambda: nn.AdaptiveMaxPool1d(1), 1),
    ),
    Support(
        "F.adaptive_avg_pool1d/2d(x, 1), F.adaptive_max_pool1d/2d(x, 1)",
        ("global_avgpool",),
        "output size 1",
        _function(lambda x: F.adaptive_avg_pool2d(x, 1), IMAGE),
        True,
    ),
    Support(
        "nn.Flatten (any start_dim > 0), nn.Unflatten, torch.flatten, view, reshape, squeeze, unsqueeze",
        ("reshape",),
        "the batch axis stays first",
        _after_conv(lambda: nn.Flatten(2)),
    ),
    Support("torch.cat, torch.concat", ("concat",), "", _function(lambda x: torch.cat([x, x * 2], dim=1), DENSE)),
    Support(
        "torch.stack",
        ("reshape", "concat"),
        "not along the batch axis",
        _function(lambda x: torch.stack([x, x * 2], dim=1), DENSE),
        True,
    ),
    Support(
        "nn.Conv1d / nn.Conv2d with dilation",
        ("conv2d",),
        "the convolution with the zero-stuffed kernel (zero weights cost nothing); groups=1",
        lambda: (nn.Conv2d(2, 2, 3, dilation=2, padding=2), IMAGE),
        True,
    ),
    Support(
        "+, -, * (torch.add/sub/mul, methods)",
        ("add", "mul"),
        "tensors, numbers, parameters",
        _function(lambda x: x * 0.5 + x, DENSE),
    ),
    Support(
        "torch.maximum, torch.minimum, torch.max(a, b), torch.min(a, b)",
        ("maximum", "minimum"),
        "two tensors (the reductions are refused)",
        _function(lambda x: torch.minimum(torch.maximum(x, x * 0.5), x + 1), DENSE),
        True,
    ),
    Support(
        "Tensor.permute, torch.permute, transpose",
        ("transpose",),
        "",
        _function(lambda x: x.permute(0, 2, 1) * 2, SEQUENCE),
    ),
    Support(
        "x[..., a:b] (tensor slicing)",
        ("slice",),
        "slices with step 1; the batch axis whole",
        _function(lambda x: x[:, :, 1:-1] * 2, SEQUENCE),
        True,
    ),
    Support(
        "F.pad, nn.ZeroPad1d/2d, nn.ConstantPad1d/2d (value 0)",
        ("concat",),
        "zero padding (hls4ml: ZeroPadding layers)",
        _after_conv(lambda: nn.ZeroPad2d((1, 0, 2, 1))),
        True,
    ),
    Support(
        "nn.Upsample, F.interpolate (mode='nearest')",
        ("reshape", "concat"),
        "integer scale factors",
        _after_conv(lambda: nn.Upsample(scale_factor=2)),
        True,
    ),
    Support(
        "nn.Threshold(t, t), F.threshold",
        ("maximum",),
        "value == threshold: max(x, t)",
        _after_linear(lambda: nn.Threshold(0.5, 0.5)),
        True,
    ),
    Support(
        "nn.Threshold(t, v), F.threshold",
        ("lut",),
        "other values: an exact table",
        _after_linear(lambda: nn.Threshold(0.5, -1.0)),
        True,
    ),
    Support(
        "nn.Dropout*, F.dropout, nn.Identity, contiguous", (), "the identity at inference", _after_linear(nn.Dropout)
    ),
)
"""Every PyTorch layer and function hgqir imports."""
