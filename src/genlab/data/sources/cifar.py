"""CIFAR-10 and CIFAR-100 from their python pickles (a restricted unpickler that builds only
numpy arrays, lists, dicts and strings) or CIFAR-10's binary records."""

from __future__ import annotations

import codecs
import os
import pickle
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from genlab.data.locations import (
    MAX_DATA_BYTES,
    concat,
    download_root,
    first_folder,
    is_file,
    not_found,
    one_line,
    os_error,
    search_roots,
    torchvision_fetch,
)
from genlab.data.registry import Dataset, build_dataset
from genlab.errors import GenlabError


def _numpy_internals() -> tuple[Any, Any]:
    try:  # numpy >= 2
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    return multiarray, numeric


class _RefusedError(Exception):
    """Raised while unpickling when the stream asks for something CIFAR data never contains."""


def _safe_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:  # object arrays could carry arbitrary Python objects
        raise _RefusedError(f"a numpy array of Python objects (dtype {dtype})")
    return dtype


def _safe_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise _RefusedError(f"an array subclass {subtype!r}")
    multiarray, _ = _numpy_internals()
    return multiarray._reconstruct(np.ndarray, shape, _safe_dtype(dtype))


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Protocol-2 pickles rebuild bytes as _codecs.encode(str, 'latin1'); no other codec needed.
    if encoding not in ("latin1", "latin-1"):
        raise _RefusedError(f"a call to the {encoding!r} codec")
    return codecs.encode(text, "latin1")


@lru_cache(maxsize=1)
def _safe_globals() -> dict[tuple[str, str], Any]:
    """The only globals a CIFAR pickle may name: what numpy needs to rebuild plain arrays."""
    multiarray, numeric = _numpy_internals()
    table: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _safe_dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for pkg in ("numpy.core", "numpy._core"):  # pickles from numpy 1.x and 2.x
        table[(f"{pkg}.multiarray", "_reconstruct")] = _safe_reconstruct
        table[(f"{pkg}.multiarray", "scalar")] = multiarray.scalar
        table[(f"{pkg}.numeric", "_frombuffer")] = numeric._frombuffer
    return table


class _CifarUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds dicts, lists, strings and numpy arrays and refuses anything else."""

    def __init__(self, file: Any) -> None:
        super().__init__(file, encoding="latin1")  # the real files are Python 2 pickles

    def find_class(self, module: str, name: str) -> Any:
        allowed = _safe_globals().get((module, name))
        if allowed is None:
            raise _RefusedError(f"a pickled object of type {module}.{name}")
        return allowed

    def persistent_load(self, pid: Any) -> Any:
        raise _RefusedError("a reference to an external object")


def load_cifar_pickle(path: str | Path) -> dict[str, Any]:
    """Load one CIFAR python-format file with the restricted unpickler -> dict with str keys."""
    path = Path(path)
    redo = "delete it and download again"
    try:
        fh = path.open("rb")
        size = os.fstat(fh.fileno()).st_size
    except (OSError, ValueError) as exc:
        raise os_error(path, exc, redo) from exc
    try:
        with fh:
            if size > MAX_DATA_BYTES:
                raise GenlabError(f"{path} is {size} bytes, more than genlab reads from one file "
                                  f"({MAX_DATA_BYTES} bytes): not a CIFAR file; {redo}")
            obj = _CifarUnpickler(fh).load()
    except GenlabError:
        raise
    except _RefusedError as exc:
        raise GenlabError(f"refusing to load {path}: it contains {exc}, not CIFAR data; delete it "
                          "and download the data set again") from None
    except Exception as exc:  # a corrupt pickle stream can fail in almost any way
        raise GenlabError(f"corrupt CIFAR file {path} ({one_line(exc)}); {redo}") from exc
    if not isinstance(obj, dict):
        raise GenlabError(f"corrupt CIFAR file {path}: expected a dict, found "
                          f"{type(obj).__name__}; {redo}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _cifar_batch(obj: dict[str, Any], path: Path, label_key: str,
                 num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Validated (uint8 (N, 3, 32, 32), int64 (N,)) from one unpickled batch dict."""
    redo = "delete it and download again"
    if "data" not in obj or label_key not in obj:
        raise GenlabError(f"corrupt CIFAR file {path}: keys 'data' and {label_key!r} needed, "
                          f"found {sorted(obj)}; {redo}")
    # The real files hold an array and a list of ints. Nothing else is turned into an array:
    # a list of references to one row would cost the file 2 bytes a row and the array 24 KB.
    data, labels = obj["data"], obj[label_key]
    if (not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3072
            or data.dtype.kind not in "ui"):
        found = (f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray)
                 else type(data).__name__)
        raise GenlabError(f"corrupt CIFAR file {path}: data should be an integer array "
                          f"(N, 3072), found {found}; {redo}")
    if len(data) and (data.min() < 0 or data.max() > 255):
        raise GenlabError(f"corrupt CIFAR file {path}: pixel values outside 0..255; {redo}")
    if isinstance(labels, list | tuple):
        if len(labels) != len(data) or not all(
                isinstance(v, int | np.integer) and not isinstance(v, bool) for v in labels):
            raise GenlabError(f"corrupt CIFAR file {path}: {len(data)} images but labels "
                              f"{label_key!r} are not {len(data)} integers; {redo}")
        if labels and (min(labels) < 0 or max(labels) >= num_classes):
            raise GenlabError(f"corrupt CIFAR file {path}: labels outside "
                              f"0..{num_classes - 1}; {redo}")
        labels = np.array([int(v) for v in labels], dtype=np.int64)
    if (not isinstance(labels, np.ndarray) or labels.ndim != 1 or len(labels) != len(data)
            or labels.dtype.kind not in "ui"):
        found = (f"{labels.dtype} {labels.shape}" if isinstance(labels, np.ndarray)
                 else type(labels).__name__)
        raise GenlabError(f"corrupt CIFAR file {path}: {len(data)} images but labels of "
                          f"{found}; {redo}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise GenlabError(f"corrupt CIFAR file {path}: labels outside 0..{num_classes - 1}; "
                          f"{redo}")
    return data.astype(np.uint8).reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _cifar_names(meta: Path, key: str, num_classes: int, fallback: Sequence[str]) -> list[str]:
    if not is_file(meta):
        return list(fallback)
    names = load_cifar_pickle(meta).get(key)
    if not isinstance(names, list | tuple) or len(names) != num_classes:
        raise GenlabError(f"corrupt CIFAR file {meta}: {key!r} should list {num_classes} class "
                          "names; delete it and download again")
    return [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]


def read_cifar_bin(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a CIFAR-10 binary batch (records of 1 label byte + 3072 pixel bytes).

    Returns images uint8 (N, 3, 32, 32) and labels int64 (N,).
    """
    path = Path(path)
    redo = "delete it and download again"
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > MAX_DATA_BYTES:
                raise GenlabError(f"{path} is {size} bytes, more than genlab reads from one file "
                                  f"({MAX_DATA_BYTES} bytes): not a CIFAR-10 batch; {redo}")
            raw = fh.read()
    except (OSError, ValueError) as exc:
        raise os_error(path, exc, redo) from exc
    if not raw or len(raw) % 3073:
        raise GenlabError(f"corrupt CIFAR-10 binary file {path}: {len(raw)} bytes is not a "
                          f"whole number of 3073-byte records; {redo}")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3073)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= 10:
        raise GenlabError(f"corrupt CIFAR-10 binary file {path}: labels outside 0..9; {redo}")
    return records[:, 1:].reshape(-1, 3, 32, 32).copy(), labels


def _fetch_cifar(cls_name: str) -> Callable[[Any, Path], None]:
    # Fetch the md5-checked archive only: constructing torchvision's CIFAR class would unpickle
    # the files with plain pickle, and genlab reads them with its own restricted reader.
    def fetch(tvd: Any, root: Path) -> None:
        from torchvision.datasets.utils import download_and_extract_archive

        cls = getattr(tvd, cls_name)
        download_and_extract_archive(cls.url, str(root), filename=cls.filename, md5=cls.tgz_md5)
    return fetch


def load_cifar10(data_dir: Path | None, download: bool) -> Dataset:
    hint = ("pass --data-dir DIR holding cifar-10-batches-py/ (torchvision's layout) or "
            "cifar-10-batches-bin/, set GENLAB_DATA")
    py_files = (*CIFAR10_TRAIN, "test_batch")
    bin_files = tuple(f + ".bin" for f in py_files)
    looked: list[Path] = []

    def search(roots: Sequence[Path]) -> tuple[Path | None, Path | None]:
        py = first_folder(roots, ("cifar-10-batches-py", ""), py_files, looked)
        if py is not None:
            return py, None
        return None, first_folder(roots, ("cifar-10-batches-bin", ""), bin_files, looked)

    py, binary = search(search_roots(data_dir))
    if py is None and binary is None and download:
        root = download_root(data_dir)
        torchvision_fetch(_fetch_cifar("CIFAR10"), root, "CIFAR-10", looked, hint)
        py, binary = search([root])
    if py is not None:
        parts = [_cifar_batch(load_cifar_pickle(py / f), py / f, "labels", 10) for f in py_files]
        classes = _cifar_names(py / "batches.meta", "label_names", 10, CIFAR10_CLASSES)
        source = f"CIFAR-10 python batches in {py}"
    elif binary is not None:
        parts = [read_cifar_bin(binary / f) for f in bin_files]
        classes = list(CIFAR10_CLASSES)
        meta = binary / "batches.meta.txt"
        if is_file(meta):
            try:
                text = meta.read_text(errors="replace")
            except OSError as exc:
                raise os_error(meta, exc, "delete it and download again") from exc
            names = [s.strip() for s in text.splitlines() if s.strip()]
            classes = names if len(names) == 10 else classes
        source = f"CIFAR-10 binary batches in {binary}"
    else:
        raise not_found("CIFAR-10", looked, hint)
    x_train, y_train = concat(parts[:5])
    x_test, y_test = concat(parts[5:])
    return build_dataset("cifar10", x_train, y_train, x_test, y_test, classes, source)


def load_cifar100(data_dir: Path | None, download: bool) -> Dataset:
    hint = ("pass --data-dir DIR holding cifar-100-python/ (torchvision's layout), set "
            "GENLAB_DATA")
    looked: list[Path] = []
    subdirs = ("cifar-100-python", "")
    folder = first_folder(search_roots(data_dir), subdirs, ("train", "test"), looked)
    if folder is None and download:
        root = download_root(data_dir)
        torchvision_fetch(_fetch_cifar("CIFAR100"), root, "CIFAR-100", looked, hint)
        folder = first_folder([root], subdirs, ("train", "test"), looked)
    if folder is None:
        raise not_found("CIFAR-100", looked, hint)
    x_train, y_train = concat([_cifar_batch(load_cifar_pickle(folder / "train"),
                                             folder / "train", "fine_labels", 100)])
    x_test, y_test = concat([_cifar_batch(load_cifar_pickle(folder / "test"),
                                           folder / "test", "fine_labels", 100)])
    classes = _cifar_names(folder / "meta", "fine_label_names", 100,
                           [str(i) for i in range(100)])
    return build_dataset("cifar100", x_train, y_train, x_test, y_test, classes,
                  f"CIFAR-100 python files in {folder}")


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck")


CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
