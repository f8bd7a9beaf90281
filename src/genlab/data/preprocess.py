"""Named input preprocessing, applied once to a run's tensors before training.

``normalize``: per-channel normalisation with the clean training subset's mean and std (the
default). ``paper``: Zhang et al.'s CIFAR10 preprocessing (Appendix A): a centre crop 32x32 ->
28x28 (pixels [2:30, 2:30]) when the input is 32x32, then per-image whitening
``(x - mean(x)) / max(std(x), 1/sqrt(numel(x)))`` over each image (TensorFlow's
``per_image_standardization``). ``none``: the data set's values as loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from genlab.registry import Registry

#: ``fn(x, mean, std) -> x`` on a batch (N, C, H, W), by name; meta ``shape(input_shape) ->
#: output shape`` for those that change it
PREPROCESSING: Registry[Callable[..., torch.Tensor]] = Registry("preprocessing")


def check_preprocess(name: str) -> None:
    """Raise a one-line GenlabError unless ``name`` is registered preprocessing."""
    PREPROCESSING.get(name)


def describe(name: str) -> str:
    """The one-line description of preprocessing ``name``."""
    return PREPROCESSING.get(name).description


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
    reshape = PREPROCESSING.get(name).meta.get("shape")
    return tuple(reshape(shape)) if reshape else shape


def apply(name: str, x: torch.Tensor, mean: Sequence[float], std: Sequence[float]
          ) -> torch.Tensor:
    """Preprocess a batch ``x`` (N, C, H, W); ``mean``/``std`` are per channel (normalize).

    Images streamed from disk (:class:`genlab.data.streaming.ImageFiles`) are preprocessed batch
    by batch as they are read.
    """
    fn = PREPROCESSING.get(name).value
    if not isinstance(x, torch.Tensor):
        return x.preprocessed(name, mean, std)
    return fn(x, mean, std)


def identity(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``none``: the values as loaded."""
    return x


def paper(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``paper``: centre crop of 32x32 inputs, then per-image whitening."""
    return whiten(centre_crop(x)).contiguous()


def paper_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape after ``paper``: 32x32 images are cropped to 28x28."""
    return (shape[0], 28, 28) if len(shape) == 3 and shape[1:] == (32, 32) else shape


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``normalize``: (x - mean) / std per channel, on x's device (streamed batches are
    normalized on the GPU)."""
    shape = (1, -1, *([1] * (x.dim() - 2)))
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(shape)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).clamp_min(1e-6).view(shape)
    return (x - m) / s
