"""ImageNet-style data (an ImageFolder tree) and torchvision's Inception V3, for Table 2.

Data set ``imagefolder`` reads ``DATA_DIR/train/<class>/*`` and ``DATA_DIR/val/<class>/*``
(torchvision's ImageFolder layout; ``--data-dir`` names ``DATA_DIR``), resizes each image's
shorter side to the image size and centre-crops it square, and returns the splits as in-memory
tensors like every other genlab data set. ``imagefolder`` is 299x299 (Inception V3's input);
``imagefolder-SIZE`` (e.g. ``imagefolder-32``) is the same tree at SIZE x SIZE, registered on
first use through :func:`imagefolder_name` (the ``table2`` experiment does this for
``--set image_size=SIZE``).

Honest limit: the one trainer keeps the data resident as tensors, so this loader only suits trees
that fit in memory. All of ImageNet (1,281,167 training images) at 299x299x3 is about 344 GB as
uint8 and 1.4 TB as float32; it cannot be held, and no streaming path is implemented yet. The
loader refuses (one-line error) when the decoded tree would exceed ``$GENLAB_IMAGEFOLDER_MAX_GB``
(default 32 GB of float32), instead of running out of memory. Use a subset tree (a few hundred
classes at a smaller size, or a few images per class) until a streaming loader exists.

Model ``inception-v3`` is ``torchvision.models.inception_v3(weights=None, aux_logits=False,
init_weights=True)``. Its dropout before the classifier comes from the run spec (``--dropout``,
default 0 like every genlab model; torchvision's own default, and Table 2's, is 0.5). It needs
inputs of at least 75x75.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .datasets import Dataset, _build, list_datasets, register_dataset
from .errors import GenlabError
from .models import register_model

#: Inception V3's native input size.
DEFAULT_SIZE = 299
#: torchvision's Inception V3 fails below this input size (its stem and reductions).
INCEPTION_MIN_SIZE = 75
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SPLITS = ("train", "val")


def imagefolder_name(size: int = DEFAULT_SIZE) -> str:
    """The data-set name for the ImageFolder tree at ``size`` x ``size``; registers it if new."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise GenlabError(f"image_size must be an integer >= 8, got {size!r}")
    name = "imagefolder" if size == DEFAULT_SIZE else f"imagefolder-{size}"
    if name not in list_datasets():
        register_dataset(name, _loader(size), f"ImageFolder tree in --data-dir at {size}x{size}")
    return name


def ensure_registered(name: str) -> None:
    """Register ``imagefolder-SIZE`` if ``name`` is one (so ``--dataset imagefolder-64`` works)."""
    m = re.fullmatch(r"imagefolder-(\d+)", name.strip().lower())
    if m:
        imagefolder_name(int(m.group(1)))


def _loader(size: int):
    def load(data_dir: Path | None, download: bool) -> Dataset:
        return load_imagefolder(data_dir, size)

    return load


def _check_tree(data_dir: Path | None) -> Path:
    if data_dir is None:
        raise GenlabError("imagefolder needs --data-dir DIR with DIR/train/<class>/*.jpg and "
                          "DIR/val/<class>/*.jpg (torchvision ImageFolder layout)")
    root = Path(data_dir).expanduser()
    for split in SPLITS:
        d = root / split
        if not d.is_dir() or not any(p.is_dir() for p in d.iterdir()):
            raise GenlabError(f"--data-dir {root} is not an ImageFolder tree: {d} must hold one "
                              "folder of images per class (DIR/train/<class>/*.jpg, "
                              "DIR/val/<class>/*.jpg)")
    return root


def _index(folder: Path, classes: Sequence[str] | None = None
           ) -> tuple[list[str], list[tuple[Path, int]]]:
    """(class names, [(file, class index)]) in ImageFolder's order (sorted classes, files)."""
    names = sorted(p.name for p in folder.iterdir() if p.is_dir())
    classes = list(classes) if classes is not None else names
    lookup = {c: i for i, c in enumerate(classes)}
    samples = []
    for c in names:
        if c not in lookup:
            raise GenlabError(f"class folder {folder / c} is not among the training classes")
        for f in sorted((folder / c).rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS:
                samples.append((f, lookup[c]))
    return classes, samples


def _read(path: Path, size: int) -> np.ndarray:
    """One image -> uint8 (3, size, size): shorter side resized to ``size``, centre crop."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            scale = size / min(w, h)
            nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
            im = im.resize((nw, nh), Image.BILINEAR)
            left, top = (nw - size) // 2, (nh - size) // 2
            im = im.crop((left, top, left + size, top + size))
            return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
    except OSError as e:
        raise GenlabError(f"cannot read image {path}: {e}") from None


def load_imagefolder(data_dir: Path | None, size: int = DEFAULT_SIZE) -> Dataset:
    """Both splits of an ImageFolder tree as float32 tensors in [0, 1], (N, 3, size, size)."""
    root = _check_tree(data_dir)
    classes, train = _index(root / "train")
    _, val = _index(root / "val", classes)
    if not train or not val:
        raise GenlabError(f"--data-dir {root} is not an ImageFolder tree: no images "
                          f"({', '.join(IMAGE_EXTENSIONS)}) under train/ or val/")
    gb = (len(train) + len(val)) * 3 * size * size * 4 / 1e9
    limit = float(os.environ.get("GENLAB_IMAGEFOLDER_MAX_GB", "32"))
    if gb > limit:
        raise GenlabError(f"{root}: {len(train) + len(val)} images at {size}x{size} take "
                          f"{gb:.0f} GB in memory (limit {limit:g} GB, "
                          "$GENLAB_IMAGEFOLDER_MAX_GB); genlab holds data in memory and has no "
                          "streaming loader yet: use a smaller subset tree or image size")

    def split(samples: list[tuple[Path, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        x = np.stack([_read(f, size) for f, _ in samples])
        y = torch.tensor([c for _, c in samples], dtype=torch.int64)
        return torch.from_numpy(x).to(torch.float32).div_(255.0), y

    x_tr, y_tr = split(train)
    x_te, y_te = split(val)
    return _build(f"imagefolder-{size}", x_tr, y_tr, x_te, y_te, classes,
                  f"ImageFolder tree {root} ({len(train)} train / {len(val)} val images, "
                  f"{size}x{size} centre crops)")


def inception_v3(input_shape: Sequence[int], num_classes: int, dropout: float = 0.0
                 ) -> nn.Module:
    """torchvision's Inception V3 (no pretrained weights, no auxiliary head)."""
    from torchvision.models import inception_v3 as tv_inception_v3

    c, h, w = (int(s) for s in input_shape)
    if c != 3 or min(h, w) < INCEPTION_MIN_SIZE:
        raise GenlabError(f"inception-v3 needs 3-channel images of at least "
                          f"{INCEPTION_MIN_SIZE}x{INCEPTION_MIN_SIZE} (299x299 in the paper), "
                          f"got {c}x{h}x{w}; use --set image_size=299")
    return tv_inception_v3(weights=None, aux_logits=False, init_weights=True,
                           num_classes=num_classes, dropout=dropout)


imagefolder_name(DEFAULT_SIZE)
register_model("inception-v3", inception_v3,
               description="torchvision Inception V3 (Table 2; input >= 75x75; --dropout)")
