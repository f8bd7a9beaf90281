"""Batched training-time augmentation on the training device, seeded by the run's generator.

An augmentation is named by ``+``-joined parts: ``crop`` (random crop after zero padding by
``PAD`` pixels, i.e. a random shift of up to 4 pixels each way, as the usual CIFAR10 random
crop), ``flip`` (random horizontal flip), ``color`` (the paper's colour perturbations: random
brightness, saturation, hue and contrast). Every random number is drawn from the generator the
trainer passes, so augmented runs are deterministic and resume bit for bit from a checkpoint.
All operations are vectorised over the batch: no per-image Python.

Colour perturbations act on the preprocessed values; like TensorFlow's random_brightness /
random_contrast they are additive / multiplicative around the image's own statistics and do
not clip (whitened inputs have no fixed range).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from genlab.errors import GenlabError

PARTS = ("crop", "flip", "color")
PAD = 4
#: colour ranges, after TensorFlow's CIFAR10 example: brightness delta, contrast and
#: saturation factors, hue shift as a fraction of the colour wheel
BRIGHTNESS = 63 / 255
CONTRAST = (0.2, 1.8)
SATURATION = (0.5, 1.5)
HUE = 0.05

#: ``augment(x_batch, generator, share=None) -> x_batch``; see :func:`make_augment`
Augment = Callable[..., torch.Tensor]
#: a process's share of a global batch: (global batch size, the positions it holds)
Share = tuple[int, slice]


def _draws(n: int, share: Share | None) -> tuple[int, slice]:
    """How many draws to make and which of them are this batch's: every random number is drawn
    for the whole global batch, so an image gets the draw it would get in one process."""
    return (n, slice(None)) if share is None else share


def parse_augment(name: str) -> tuple[str, ...]:
    """``"crop+flip"`` -> ("crop", "flip"); "" or "none" -> (); unknown parts raise."""
    if name in ("", "none"):
        return ()
    parts = tuple(p.strip() for p in name.split("+"))
    bad = [p for p in parts if p not in PARTS]
    if bad:
        raise GenlabError(f"unknown augmentation {bad[0]!r} in {name!r}; join any of "
                          f"{', '.join(PARTS)} with '+', e.g. crop+flip")
    return parts


def _uniform(lo: float, hi: float, like: torch.Tensor, gen: torch.Generator,
             share: Share | None = None) -> torch.Tensor:
    """One uniform draw in [lo, hi) per image of ``like``, shaped (n, 1, 1, 1)."""
    total, mine = _draws(len(like), share)
    u = torch.rand(total, device=like.device, generator=gen, dtype=torch.float32)[mine]
    return (lo + (hi - lo) * u).to(like.dtype).view(-1, 1, 1, 1)


def random_crop(x: torch.Tensor, gen: torch.Generator, pad: int = PAD,
                share: Share | None = None) -> torch.Tensor:
    """Zero-pad by ``pad`` and take a random HxW window per image (a shift in [-pad, pad])."""
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    total, mine = _draws(n, share)
    off = torch.randint(0, 2 * pad + 1, (2, total), device=x.device, generator=gen)[:, mine]
    rows = off[0].view(n, 1) + torch.arange(h, device=x.device).view(1, h)  # (n, h)
    cols = off[1].view(n, 1) + torch.arange(w, device=x.device).view(1, w)  # (n, w)
    idx_r = rows.view(n, 1, h, 1).expand(n, c, h, w + 2 * pad)
    out = padded.gather(2, idx_r)
    idx_c = cols.view(n, 1, 1, w).expand(n, c, h, w)
    return out.gather(3, idx_c)


def random_flip(x: torch.Tensor, gen: torch.Generator, share: Share | None = None
                ) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    total, mine = _draws(len(x), share)
    flip = torch.rand(total, device=x.device, generator=gen)[mine] < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)


def _gray(x: torch.Tensor) -> torch.Tensor:
    w = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate each RGB image's chroma around the grey axis by ``shift`` (fraction of a turn).

    A rotation in the YIQ plane: luma is kept, hue moves by 360*shift degrees.
    """
    theta = shift.view(-1) * 2 * torch.pi
    cos, sin = torch.cos(theta).view(-1, 1, 1), torch.sin(theta).view(-1, 1, 1)
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322],
                           [0.211, -0.523, 0.312]], device=x.device, dtype=x.dtype)
    from_yiq = torch.linalg.inv(to_yiq)
    n = len(x)
    rot = torch.zeros(n, 3, 3, device=x.device, dtype=x.dtype)
    rot[:, 0, 0] = 1
    rot[:, 1:, 1:] = torch.cat([torch.cat([cos, -sin], 2), torch.cat([sin, cos], 2)], 1)
    m = from_yiq @ rot @ to_yiq  # (n, 3, 3)
    return torch.einsum("nij,njhw->nihw", m, x)


def color(x: torch.Tensor, gen: torch.Generator, share: Share | None = None) -> torch.Tensor:
    """Random brightness, saturation, hue, contrast (saturation and hue need 3 channels)."""
    x = x + _uniform(-BRIGHTNESS, BRIGHTNESS, x, gen, share)
    if x.shape[1] == 3:
        g = _gray(x)
        x = g + (x - g) * _uniform(*SATURATION, x, gen, share)
        x = adjust_hue(x, _uniform(-HUE, HUE, x, gen, share))
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return mean + (x - mean) * _uniform(*CONTRAST, x, gen, share)


def make_augment(name: str) -> Augment | None:
    """The trainer's ``augment(x_batch, generator, share=None)`` for ``name``, or None for no
    augmentation. ``x_batch`` (n, C, H, W) on the training device; ``share=(total, positions)``
    when the batch is one process's slice of a ``total``-image global batch (data-parallel
    training): the draws are made for all ``total`` images and ``positions`` of them used, so
    each image gets the draw it gets in a one-process run, and no two ranks share draws."""
    parts = parse_augment(name)
    if not parts:
        return None

    def augment(x: torch.Tensor, gen: torch.Generator, share: Share | None = None
                ) -> torch.Tensor:
        if x.dim() != 4:
            raise GenlabError(f"augmentation {name!r} needs image batches (N, C, H, W), got "
                              f"shape {tuple(x.shape)}")
        if "crop" in parts:
            x = random_crop(x, gen, share=share)
        if "flip" in parts:
            x = random_flip(x, gen, share)
        if "color" in parts:
            x = color(x, gen, share)
        return x

    return augment
