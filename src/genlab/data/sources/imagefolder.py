"""ImageNet-style data (an ImageFolder tree), for Table 2.

Data set ``imagefolder`` reads ``DATA_DIR/train/<class>/*`` and ``DATA_DIR/val/<class>/*``
(torchvision's ImageFolder layout; ``--data-dir`` names ``DATA_DIR``) with
``torchvision.datasets.ImageFolder``, resizes each image's shorter side to the image size and
centre-crops it square. ``imagefolder`` is 299x299 (Inception V3's input); ``imagefolder-SIZE``
(e.g. ``imagefolder-32``) is the same tree at SIZE x SIZE, registered on first use in any
process (a name family of :mod:`genlab.data.registry`; ``table2 --set image_size=SIZE`` names it).

In memory or streamed: a tree whose decoded images fit in ``$GENLAB_IMAGEFOLDER_MAX_GB``
(default 32 GB of float32) is decoded once and held as tensors like every other genlab data
set. A larger tree (all of ImageNet at 299x299 is about 1.4 TB as float32) is streamed
instead: the splits are :class:`genlab.data.streaming.ImageFiles`, read batch by batch from disk by
DataLoader worker processes during training (see :mod:`genlab.data.streaming`). The names
``imagefolder-stream`` and ``imagefolder-SIZE-stream`` stream whatever the size (``table2
--set loader=stream``). Both paths decode the same pixels and index the same labels.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import torch

from genlab.data.locations import is_dir as _is_dir
from genlab.data.locations import os_error as _os_error
from genlab.data.locations import user_path as _user_path
from genlab.data.registry import (
    Dataset,
    list_datasets,
    register_dataset,
)
from genlab.data.registry import (
    build_dataset as _build,
)
from genlab.errors import GenlabError

#: Inception V3's native input size.
DEFAULT_SIZE = 299
#: the largest image size accepted (one 4096x4096 float32 image is 200 MB)
MAX_SIZE = 4096
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SPLITS = ("train", "val")


def imagefolder_name(size: int = DEFAULT_SIZE, stream: bool = False) -> str:
    """The data-set name for the ImageFolder tree at ``size`` x ``size``; registers it if new.

    ``stream``: the name that always streams from disk (else: in memory when it fits).
    """
    if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= MAX_SIZE:
        raise GenlabError(f"image_size must be an integer from 8 to {MAX_SIZE}, got {size!r}")
    name = ("imagefolder" if size == DEFAULT_SIZE else f"imagefolder-{size}") + (
        "-stream" if stream else "")
    if name not in list_datasets():
        how = "streamed from disk" if stream else "in memory, streamed when too large"
        unsized = size == DEFAULT_SIZE  # the plain names: their size is an option
        register_dataset(name, _loader(size, True if stream else None),
                         (f"ImageFolder tree in --data-dir, images --image-size x "
                          f"--image-size (default: the model's input size, 32 for most; "
                          f"{how})") if unsized else
                         f"ImageFolder tree in --data-dir at {size}x{size} ({how})",
                         streams=True, resize=resized if unsized else None)
    return name


def resized(name: str, size: int) -> str:
    """``imagefolder`` (or ``imagefolder-stream``) at ``size`` x ``size``."""
    return imagefolder_name(size, stream=name.endswith("-stream"))


#: the data-set names of ImageFolder trees: a size other than 299, and/or always streamed
FAMILY = r"imagefolder(?:-(\d+))?(-stream)?"


def register_named(name: str) -> None:
    """Register ``imagefolder[-SIZE][-stream]`` (a name matching ``FAMILY``)."""
    m = re.fullmatch(FAMILY, name)
    if m:
        digits = m.group(1) or str(DEFAULT_SIZE)
        if len(digits) > len(str(MAX_SIZE)):  # int() refuses thousands of digits
            raise GenlabError(f"image_size must be an integer from 8 to {MAX_SIZE}, got "
                              f"{digits[:20]}...")
        imagefolder_name(int(digits), stream=bool(m.group(2)))


def _loader(size: int, stream: bool | None):
    def load(data_dir: Path | None, download: bool) -> Dataset:
        return load_imagefolder(data_dir, size, stream=stream)

    return load


def _check_tree(data_dir: Path | None) -> Path:
    if data_dir is None:
        raise GenlabError("imagefolder needs --data-dir DIR with DIR/train/<class>/*.jpg and "
                          "DIR/val/<class>/*.jpg (torchvision ImageFolder layout)")
    root = _user_path(data_dir, "--data-dir")
    for split in SPLITS:
        d = root / split
        if not _is_dir(d) or not _has_subfolder(d):
            raise GenlabError(f"--data-dir {root} is not an ImageFolder tree: {d} must hold one "
                              "folder of images per class (DIR/train/<class>/*.jpg, "
                              "DIR/val/<class>/*.jpg)")
    return root


def _has_subfolder(d: Path) -> bool:
    try:
        with os.scandir(d) as entries:
            return any(e.is_dir() for e in entries)
    except OSError as exc:
        raise _os_error(d, exc) from exc


def memory_limit_gb() -> float:
    """``$GENLAB_IMAGEFOLDER_MAX_GB``: the largest tree (GB of float32 images) held in memory."""
    text = os.environ.get("GENLAB_IMAGEFOLDER_MAX_GB", "32")
    try:
        limit = float(text)
    except ValueError:
        limit = math.nan
    if not limit >= 0:  # nan too
        raise GenlabError(f"$GENLAB_IMAGEFOLDER_MAX_GB must be a number of GB >= 0, got {text!r}")
    return limit


def load_imagefolder(data_dir: Path | None, size: int = DEFAULT_SIZE,
                     stream: bool | None = None) -> Dataset:
    """Both splits of an ImageFolder tree: images (N, 3, size, size) in [0, 1], labels (N,).

    ``stream``: True streams from disk (:class:`genlab.data.streaming.ImageFiles` splits), False
    decodes into float32 tensors, None (auto) decodes unless the tree exceeds
    :func:`memory_limit_gb`.
    """
    root = _check_tree(data_dir)  # before importing torchvision: a bad tree is refused at once
    from genlab.data.streaming import ImageFiles, TreeFolder

    train = TreeFolder(root / "train", size)
    val = TreeFolder(root / "val", size, train.classes)
    if not train.samples or not val.samples:
        raise GenlabError(f"--data-dir {root} is not an ImageFolder tree: no images "
                          f"({', '.join(IMAGE_EXTENSIONS)}) under train/ or val/")
    n = len(train.samples) + len(val.samples)
    gb = n * 3 * size * size * 4 / 1e9
    if stream is None:
        stream = gb > memory_limit_gb()
    x_tr, x_te = ImageFiles(train), ImageFiles(val)
    y_tr = torch.tensor(train.targets, dtype=torch.int64)
    y_te = torch.tensor(val.targets, dtype=torch.int64)
    what = (f"ImageFolder tree {root} ({len(train.samples)} train / {len(val.samples)} val "
            f"images, {size}x{size} centre crops")
    if not stream:
        return _build(f"imagefolder-{size}", x_tr.decode(), y_tr, x_te.decode(), y_te,
                      train.classes, what + ", in memory)")
    mean, std = x_tr.channel_stats()
    return Dataset(name=f"imagefolder-{size}", x_train=x_tr, y_train=y_tr, x_test=x_te,
                   y_test=y_te, num_classes=len(train.classes), classes=list(train.classes),
                   mean=mean, std=std,
                   source=what + f", streamed from disk: {gb:.0f} GB as float32)")


imagefolder_name(DEFAULT_SIZE)
