"""SVHN from its MATLAB files (``scipy.io.loadmat``), sizes checked before loading."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlab.data.locations import (
    MAX_DATA_BYTES,
    download_root,
    first_folder,
    images_u8,
    not_found,
    one_line,
    os_error,
    search_roots,
    torchvision_fetch,
)
from genlab.data.registry import Dataset, build_dataset
from genlab.data.sources.idx import DIGIT_CLASSES
from genlab.errors import GenlabError


def read_svhn_mat(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read torchvision's SVHN ``*_32x32.mat``: images uint8 (N, 3, H, W), labels int64 (N,).

    The file stores X as (H, W, 3, N) and digit 0 as label 10, which is mapped to 0.
    """
    from scipy.io import loadmat, whosmat

    path = Path(path)
    redo = "delete it and download again"
    try:
        # The variables' headers first: sizes are checked before any data is read or inflated.
        for var, shape, cls in whosmat(str(path)):
            if var not in ("X", "y"):
                continue
            try:
                itemsize = np.dtype(cls).itemsize
            except TypeError:
                itemsize = 8  # cell, struct, char...: refused below if they get that far
            nbytes = math.prod(int(n) for n in shape) * itemsize
            if nbytes > MAX_DATA_BYTES:
                raise GenlabError(f"corrupt SVHN file {path}: its header claims {var} of shape "
                                  f"{tuple(shape)} ({nbytes} bytes), more than genlab reads "
                                  f"from one file ({MAX_DATA_BYTES} bytes); {redo}")
        mat = loadmat(str(path), variable_names=["X", "y"])
    except GenlabError:
        raise
    except (OSError, ValueError) as exc:
        if getattr(exc, "errno", None) is not None or "null byte" in str(exc):
            raise os_error(path, exc, redo) from exc
        raise GenlabError(f"cannot read SVHN file {path} ({one_line(exc)}); {redo}") from exc
    except Exception as exc:  # scipy raises many types for unreadable files
        raise GenlabError(f"cannot read SVHN file {path} ({one_line(exc)}); {redo}") from exc
    x, y = mat.get("X"), mat.get("y")
    if not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[2] != 3:
        shape = getattr(x, "shape", None)
        raise GenlabError(f"corrupt SVHN file {path}: X should be (H, W, 3, N), found {shape}; "
                          f"{redo}")
    n = x.shape[3]
    if not isinstance(y, np.ndarray) or y.size != n or y.dtype.kind not in "uif":
        raise GenlabError(f"corrupt SVHN file {path}: y should hold {n} labels; {redo}")
    labels = y.reshape(-1).astype(np.int64)
    labels[labels == 10] = 0
    if n and (labels.min() < 0 or labels.max() > 9):
        raise GenlabError(f"corrupt SVHN file {path}: labels outside 1..10; {redo}")
    if x.dtype != np.uint8:
        raise GenlabError(f"corrupt SVHN file {path}: X should be uint8, found {x.dtype}; {redo}")
    return np.transpose(x, (3, 2, 0, 1)), labels


def load_svhn(data_dir: Path | None, download: bool) -> Dataset:
    hint = "pass --data-dir DIR holding train_32x32.mat and test_32x32.mat, set GENLAB_DATA"
    files = ("train_32x32.mat", "test_32x32.mat")
    looked: list[Path] = []
    folder = first_folder(search_roots(data_dir), ("", "svhn"), files, looked)
    if folder is None and download:
        root = download_root(data_dir)

        def fetch(tvd: Any, r: Path) -> None:
            for split in ("train", "test"):
                tvd.SVHN(str(r), split=split, download=True)

        torchvision_fetch(fetch, root, "SVHN", looked, hint)
        folder = first_folder([root], ("",), files, looked)
    if folder is None:
        raise not_found("SVHN", looked, hint)
    x_train, y_train = read_svhn_mat(folder / files[0])
    x_test, y_test = read_svhn_mat(folder / files[1])
    return build_dataset("svhn", images_u8(x_train), torch.from_numpy(y_train), images_u8(x_test),
                  torch.from_numpy(y_test), DIGIT_CLASSES, f"SVHN .mat files in {folder}")
