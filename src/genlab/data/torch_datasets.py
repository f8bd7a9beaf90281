"""A user's torch ``Dataset`` as genlab's tensors: the door for data genlab does not ship.

Any map-style data set whose items are ``(image, label)`` (image a tensor (C, H, W) or (H, W),
a numpy array, or a PIL image; label an int) is read once, item by item, into float32 images
in [0, 1] when they come as 8-bit (uint8 tensors and PIL images are divided by 255; float
images are kept as they are) and int64 labels. :func:`genlab.register_dataset` uses it; this
module only converts, the registry assembles the splits.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from genlab.errors import GenlabError
from genlab.registry import describe_error


def is_torch_dataset(obj: Any) -> bool:
    """Whether ``obj`` is a map-style data set (``__getitem__`` and ``__len__``), not a class."""
    return (not isinstance(obj, type) and hasattr(obj, "__getitem__")
            and hasattr(obj, "__len__"))


def is_loader(fn: Any) -> bool:
    """Whether ``fn`` is a genlab loader ``loader(data_dir, download) -> genlab Dataset`` (two
    positional parameters, or ones named ``data_dir``/``download``) rather than a factory of
    torch data sets."""
    if not callable(fn) or isinstance(fn, type) or is_torch_dataset(fn):
        return False
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    if {"data_dir", "download"} & {p.name for p in params}:
        return True
    required = [p for p in params if p.default is p.empty
                and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(required) == 2


def call_factory(factory: Callable[..., Any], *, train: bool | None, data_dir: Any,
                 download: bool, what: str) -> Any:
    """``factory(...)`` with ``train``, ``root`` (the data folder) and ``download`` passed
    where its signature names them, as torchvision's data set classes take them."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    offer = {"train": train, "root": str(data_dir) if data_dir else ".",
             "download": download}
    kw = {k: v for k, v in offer.items() if k in params and v is not None}
    try:
        return factory(**kw)
    except (Exception, SystemExit) as e:
        raise GenlabError(f"{what}: its factory failed (called with "
                          f"{', '.join(kw) or 'no arguments'}): {describe_error(e)}") from e


def takes_train(factory: Callable[..., Any]) -> bool:
    """Whether ``factory`` takes ``train`` (True: the training split, False: the test split)."""
    try:
        return "train" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def image_tensor(x: Any, what: str) -> torch.Tensor:
    """One image as float32 (C, H, W): 8-bit values (PIL, uint8) scaled to [0, 1]."""
    if hasattr(x, "convert") and hasattr(x, "size") and not isinstance(x, torch.Tensor):
        from torchvision.transforms.functional import pil_to_tensor

        x = pil_to_tensor(x)
    elif isinstance(x, np.ndarray):
        arr = x
        if arr.ndim == 3 and arr.shape[-1] in (1, 3, 4) and arr.shape[0] not in (1, 3, 4):
            arr = arr.transpose(2, 0, 1)  # H, W, C as numpy images come
        x = torch.from_numpy(np.ascontiguousarray(arr))
    if not isinstance(x, torch.Tensor):
        raise GenlabError(f"{what}: an item's image is {type(x).__name__}; give a tensor "
                          "(C, H, W), a numpy array or a PIL image")
    if x.dim() == 2:
        x = x.unsqueeze(0)
    if x.dim() != 3:
        raise GenlabError(f"{what}: an item's image has shape {tuple(x.shape)}; give (C, H, W) "
                          "or (H, W)")
    if x.dtype == torch.uint8:
        return x.to(torch.float32) / 255.0
    return x.to(torch.float32)


def read_split(ds: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Every ``(image, label)`` of map-style ``ds``: images float32 (N, C, H, W), labels int64
    (N,). All images must share one shape (resize them in the data set's transform)."""
    if not is_torch_dataset(ds):
        raise GenlabError(f"{what}: got {type(ds).__name__}; a data set must be a map-style "
                          "torch Dataset (with __getitem__ and __len__) of (image, label)")
    n = len(ds)
    if n == 0:
        raise GenlabError(f"{what}: the data set is empty")
    xs, ys = [], []
    shape = None
    for i in range(n):
        try:
            item = ds[i]
        except Exception as e:
            raise GenlabError(f"{what}: item {i} cannot be read: {describe_error(e)}") from e
        if not (isinstance(item, tuple | list) and len(item) >= 2):
            raise GenlabError(f"{what}: item {i} is {type(item).__name__}; items must be "
                              "(image, label) pairs")
        x = image_tensor(item[0], what)
        if shape is None:
            shape = tuple(x.shape)
        elif tuple(x.shape) != shape:
            raise GenlabError(f"{what}: item {i} has shape {tuple(x.shape)}, item 0 {shape}; "
                              "every image must have one shape (resize in its transform)")
        y = item[1]
        try:
            label = int(y.item() if isinstance(y, torch.Tensor | np.ndarray) else y)
        except (TypeError, ValueError):
            raise GenlabError(f"{what}: item {i} has label {y!r}; labels must be integers "
                              "from 0") from None
        if label < 0:
            raise GenlabError(f"{what}: item {i} has label {label}; labels must be integers "
                              "from 0")
        xs.append(x)
        ys.append(label)
    return torch.stack(xs), torch.tensor(ys, dtype=torch.int64)


def class_names(*datasets: Any, num_classes: int) -> list[str]:
    """The first data set's ``classes`` attribute (torchvision's) if it has ``num_classes``
    or more names, else "0", "1", ..."""
    for ds in datasets:
        names = getattr(ds, "classes", None)
        if isinstance(names, list | tuple) and len(names) >= num_classes:
            return [str(c) for c in names]
    return [str(i) for i in range(num_classes)]
