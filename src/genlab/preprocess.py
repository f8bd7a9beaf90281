"""Named input preprocessing, applied once to a run's tensors before training.

``normalize``: per-channel normalisation with the clean training subset's mean and std (the
default). ``paper``: Zhang et al.'s CIFAR10 preprocessing (Appendix A): a centre crop 32x32 ->
28x28 (pixels [2:30, 2:30]) when the input is 32x32, then per-image whitening
``(x - mean(x)) / max(std(x), 1/sqrt(numel(x)))`` over each image (TensorFlow's
``per_image_standardization``). ``none``: the data set's values as loaded.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .errors import GenlabError

PREPROCESSING = {
    "normalize": "per-channel normalization (training-set mean and std)",
    "paper": "paper: centre crop 32->28 (32x32 inputs), per-image whitening",
    "none": "none (values as loaded)",
}


def check_preprocess(name: str) -> None:
    if name not in PREPROCESSING:
        raise GenlabError(f"unknown preprocessing {name!r}; choose one of "
                          f"{', '.join(PREPROCESSING)}")


def describe(name: str) -> str:
    check_preprocess(name)
    return PREPROCESSING[name]


def centre_crop(x: torch.Tensor) -> torch.Tensor:
    """(N, C, 32, 32) -> (N, C, 28, 28), pixels [2:30, 2:30]; other sizes are returned as is."""
    if x.dim() == 4 and x.shape[-2:] == (32, 32):
        return x[:, :, 2:30, 2:30]
    return x


def whiten(x: torch.Tensor) -> torch.Tensor:
    """Per-image standardization: each image to mean 0 and std 1, std floored at 1/sqrt(n)."""
    flat = x.reshape(len(x), -1).to(torch.float32)
    n = flat.shape[1]
    mean = flat.mean(1, keepdim=True)
    std = flat.std(1, unbiased=False, keepdim=True).clamp_min(1.0 / n ** 0.5)
    return ((flat - mean) / std).reshape(x.shape)


def output_shape(name: str, input_shape: Sequence[int]) -> tuple[int, ...]:
    """The shape of one image after preprocessing ``name``."""
    shape = tuple(int(s) for s in input_shape)
    if name == "paper" and len(shape) == 3 and shape[1:] == (32, 32):
        return (shape[0], 28, 28)
    return shape


def apply(name: str, x: torch.Tensor, mean: Sequence[float], std: Sequence[float]
          ) -> torch.Tensor:
    """Preprocess a batch ``x`` (N, C, H, W); ``mean``/``std`` are per channel (normalize).

    Images streamed from disk (:class:`genlab.streaming.ImageFiles`) are preprocessed batch by
    batch as they are read.
    """
    check_preprocess(name)
    if not isinstance(x, torch.Tensor):
        return x.preprocessed(name, mean, std)
    if name == "none":
        return x
    if name == "paper":
        return whiten(centre_crop(x)).contiguous()
    shape = (1, -1, *([1] * (x.dim() - 2)))
    # on x's device: streamed batches are normalized on the GPU
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(shape)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).clamp_min(1e-6).view(shape)
    return (x - m) / s
