"""The paper's convolutional networks: small AlexNet and small Inception (Zhang et al. 2017).

As described in the paper's Appendix A (Figure 3 for Inception). For 28x28x3 inputs, 10 classes:

- ``alexnet-small``: 1,387,786 parameters (28 -> 14 -> 7, flatten 7*7*64 = 3136).
- ``inception-small`` / ``inception-small-nobn``: 1,649,402 parameters (28 -> 13 -> 6).

The paper trained these in TensorFlow, so the TF conventions that change shapes or values are
reproduced exactly: SAME max-pooling pads the right/bottom first, and local response
normalization is parametrised by a depth radius with an unscaled alpha. Any (C, H, W) input
works; sizes are derived from H and W, not hard-coded.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from genlab.errors import GenlabError

__all__ = [
    "AlexNetSmall",
    "ConvBNReLU",
    "Downsample",
    "Inception",
    "InceptionSmall",
    "MaxPool2dSame",
    "TFLocalResponseNorm",
    "alexnet_small",
    "inception_small",
    "inception_small_nobn",
    "tf_same_pads",
]


def _check_input(input_shape: Sequence[int], num_classes: int) -> tuple[int, int, int]:
    if len(input_shape) != 3 or any(int(s) < 1 for s in input_shape) or num_classes < 1:
        raise GenlabError(f"CNNs need an input shape (C, H, W) of positive sizes and at least "
                          f"one class, got {tuple(input_shape)} and {num_classes}")
    c, h, w = (int(s) for s in input_shape)
    return c, h, w


# --- TensorFlow-compatible building blocks ---------------------------------------------------


def tf_same_pads(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TF 'SAME' padding along one axis: (out, pad_before, pad_after).

    out = ceil(size / stride); total = max((out - 1) * stride + kernel - size, 0); TF puts the
    odd pixel at the end (pad_before = total // 2).
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


class MaxPool2dSame(nn.MaxPool2d):
    """Max-pooling with TensorFlow's 'SAME' padding: (N, C, H, W) -> (N, C, ceil(H/s), ceil(W/s)).

    PyTorch only pads symmetrically, which shifts the windows relative to TF whenever the total
    padding is odd (28 -> 14 needs one cell, at the end). Padding is -inf so it never wins.
    """

    #: pools each channel on its own (genlab.training.stacked may stack it)
    stack_as = "channelwise"

    def __init__(self, kernel_size: int, stride: int):
        super().__init__(int(kernel_size), int(stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size, self.stride
        _, top, bottom = tf_same_pads(x.shape[-2], k, s)
        _, left, right = tf_same_pads(x.shape[-1], k, s)
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
        return F.max_pool2d(x, k, s)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding=SAME"


class TFLocalResponseNorm(nn.LocalResponseNorm):
    """``tf.nn.local_response_normalization`` as a PyTorch module; (N, C, H, W) -> same shape.

    TF: out_c = x_c / (bias + alpha * sum_{c' = c-r}^{c+r} x_{c'}^2) ** beta.
    PyTorch averages the squares over a window of size n = 2r + 1 instead of summing them, so
    its alpha is TF's alpha times n; the bias is PyTorch's k.
    """

    def __init__(self, depth_radius: int = 4, bias: float = 1.0, alpha: float = 0.001 / 9,
                 beta: float = 0.75):
        size = 2 * int(depth_radius) + 1
        super().__init__(size=size, alpha=alpha * size, beta=beta, k=bias)
        self.depth_radius, self.bias, self.tf_alpha = int(depth_radius), float(bias), float(alpha)

    def extra_repr(self) -> str:
        return (f"depth_radius={self.depth_radius}, bias={self.bias}, alpha={self.tf_alpha:.6g}, "
                f"beta={self.beta} (TF convention)")


# --- small AlexNet ----------------------------------------------------------------------------


class AlexNetSmall(nn.Sequential):
    """Small AlexNet: 2 x [conv 5x5/64 SAME, ReLU, max-pool 3x3/2 SAME, LRN] -> 384 -> 192 -> K.

    Input (N, C, H, W) -> logits (N, num_classes). The spatial size after the two pools is
    ceil(ceil(H/2)/2), so 28 -> 14 -> 7 and the first FC layer sees 7*7*64 = 3136 features.

    dropout: drop probability on the 384 and 192 hidden units (between the FC layers). The
    paper's randomization runs use none, hence the default 0; the Dropout modules are present
    either way so checkpoints have the same keys with or without it.

    A plain chain in forward order, so :mod:`genlab.capacity.measures` can walk it.
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, dropout: float = 0.0,
                 channels: int = 64):
        c, h, w = _check_input(input_shape, num_classes)
        if not 0.0 <= dropout < 1.0:
            raise GenlabError(f"dropout must be in [0, 1), got {dropout}")
        for _ in range(2):  # each block's pool halves the size, rounding up (TF SAME)
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for i, c_in in enumerate((c, channels), start=1):
            layers[f"conv{i}"] = nn.Conv2d(c_in, channels, 5, padding=2)  # SAME for stride 1
            layers[f"relu{i}"] = nn.ReLU()
            layers[f"pool{i}"] = MaxPool2dSame(3, 2)
            layers[f"norm{i}"] = TFLocalResponseNorm(depth_radius=4, bias=1.0, alpha=0.001 / 9,
                                                     beta=0.75)
        layers["flatten"] = nn.Flatten()
        layers["fc1"] = nn.Linear(channels * h * w, 384)
        layers["relu3"] = nn.ReLU()
        layers["drop1"] = nn.Dropout(dropout)
        layers["fc2"] = nn.Linear(384, 192)
        layers["relu4"] = nn.ReLU()
        layers["drop2"] = nn.Dropout(dropout)
        layers["fc3"] = nn.Linear(192, num_classes)
        super().__init__(layers)
        self.dropout = float(dropout)


# --- small Inception (the paper's Figure 3) ---------------------------------------------------


class ConvBNReLU(nn.Sequential):
    """Conv(k, c, stride): conv k x k -> BatchNorm (no affine) -> ReLU.

    (N, C_in, H, W) -> (N, c, H', W') with H' = H for SAME (stride 1) and
    floor((H - k) / stride) + 1 for VALID. BatchNorm has no learnable scale or offset (the conv
    bias plays the offset), which is what reproduces the paper's parameter count.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1,
                 valid: bool = False, batchnorm: bool = True):
        if not valid and stride != 1:
            raise GenlabError("ConvBNReLU supports SAME padding only with stride 1")
        padding = 0 if valid else kernel // 2  # TF SAME == symmetric k//2 for odd k, stride 1
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["conv"] = conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding)
        # He initialization: PyTorch's default keeps 1/6 of the variance per ReLU layer, so
        # without BatchNorm the 11-conv-deep network's output is ~0, its loss sits at ln K and
        # it never trains (measured); He keeps the scale, and BatchNorm makes it moot with BN
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        nn.init.zeros_(conv.bias)
        if batchnorm:
            layers["bn"] = nn.BatchNorm2d(c_out, affine=False)
        layers["relu"] = nn.ReLU()
        super().__init__(layers)


class Inception(nn.Module):
    """Inception(a, b): Conv(1, a) and Conv(3, b) side by side; (N, C, H, W) -> (N, a+b, H, W)."""

    #: its forward concatenates these branches (genlab.training.stacked stacks them)
    stack_branches = ("branch1", "branch3")

    def __init__(self, c_in: int, a: int, b: int, batchnorm: bool = True):
        super().__init__()
        self.branch1 = ConvBNReLU(c_in, a, 1, batchnorm=batchnorm)
        self.branch3 = ConvBNReLU(c_in, b, 3, batchnorm=batchnorm)
        self.out_channels = a + b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch3(x)], dim=1)


class Downsample(nn.Module):
    """Downsample(c): Conv(3, c, stride 2, VALID) beside max-pool 3x3/2 VALID.

    (N, C, H, W) -> (N, c + C, H', W') with H' = floor((H - 3) / 2) + 1.
    """

    #: its forward concatenates these branches (genlab.training.stacked stacks them)
    stack_branches = ("conv", "pool")

    def __init__(self, c_in: int, c: int, batchnorm: bool = True):
        super().__init__()
        self.conv = ConvBNReLU(c_in, c, 3, stride=2, valid=True, batchnorm=batchnorm)
        self.pool = nn.MaxPool2d(3, 2)
        self.out_channels = c + c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.pool(x)], dim=1)


class InceptionSmall(nn.Sequential):
    """The paper's small Inception (Figure 3); (N, C, H, W) -> logits (N, num_classes).

    Conv(3, 96) -> Inc(32,32) -> Inc(32,48) -> Down(80) -> Inc(112,48) -> Inc(96,64) ->
    Inc(80,80) -> Inc(48,96) -> Down(96) -> Inc(176,160) -> Inc(176,160) -> global mean pool ->
    FC 336 -> K. Spatially 28 -> 13 -> 6. ``batchnorm=False`` is the paper's "Inception w/o
    BatchNorm": same parameter count, since its BatchNorms carry no parameters.

    Needs H, W >= 15 so both VALID downsamples have something to pool.
    """

    # the stack after the stem: (a, b) is Inception(a, b), a single int c is Downsample(c)
    STACK: tuple[tuple[int, int] | int, ...] = (
        (32, 32), (32, 48), 80, (112, 48), (96, 64), (80, 80), (48, 96), 96, (176, 160), (176, 160),
    )

    def __init__(self, input_shape: Sequence[int], num_classes: int, batchnorm: bool = True):
        c, h, w = _check_input(input_shape, num_classes)
        if min(h, w) < 15:
            raise GenlabError(f"small Inception needs inputs of at least 15x15, got {h}x{w}")
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["stem"] = ConvBNReLU(c, 96, 3, batchnorm=batchnorm)
        c, counts = 96, {"inc": 0, "down": 0}
        for spec in self.STACK:
            if isinstance(spec, int):
                kind, block = "down", Downsample(c, spec, batchnorm=batchnorm)
            else:
                kind, block = "inc", Inception(c, *spec, batchnorm=batchnorm)
            counts[kind] += 1
            layers[f"{kind}{counts[kind]}"] = block
            c = block.out_channels
        layers["pool"] = nn.AdaptiveAvgPool2d(1)  # global mean over whatever size is left
        layers["flatten"] = nn.Flatten()
        layers["fc"] = nn.Linear(c, num_classes)
        super().__init__(layers)
        self.batchnorm = bool(batchnorm)


# --- registry ---------------------------------------------------------------------------------


def alexnet_small(input_shape: Sequence[int], num_classes: int,
                   dropout: float = 0.0) -> nn.Module:
    return AlexNetSmall(input_shape, num_classes, dropout=dropout)


def inception_small(input_shape: Sequence[int], num_classes: int) -> nn.Module:
    return InceptionSmall(input_shape, num_classes, batchnorm=True)


def inception_small_nobn(input_shape: Sequence[int], num_classes: int) -> nn.Module:
    return InceptionSmall(input_shape, num_classes, batchnorm=False)




def cnn_small(input_shape: Sequence[int], num_classes: int) -> nn.Sequential:
    """The MNIST CNN of Pérez-Ortiz et al. 2021 (risk certificates): conv 3x3 32 - ReLU - conv
    3x3 64 - ReLU - max-pool 2 - fc 128 - ReLU - fc K, as a plain ``nn.Sequential`` (every
    layer a PAC-Bayes posterior can cover). Input (C, H, W) with H, W >= 6."""
    c, h, w = _check_input(input_shape, num_classes)
    if h < 6 or w < 6:
        raise GenlabError(f"cnn-small needs images of at least 6x6, got {h}x{w}")
    flat = 64 * ((h - 4) // 2) * ((w - 4) // 2)
    return nn.Sequential(nn.Conv2d(c, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(flat, 128), nn.ReLU(),
                         nn.Linear(128, num_classes))
