"""MNIST and Fashion-MNIST from their IDX files (plain or gzipped), read by genlab's own
streaming reader, which checks every size against the header before it allocates."""

from __future__ import annotations

import gzip
import math
import os
import struct
import threading
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlab.data.locations import (
    CHUNK,
    MAX_DATA_BYTES,
    debian_fashion_mnist_dirs,
    download_root,
    how_to_get,
    images_u8,
    is_file,
    not_found,
    os_error,
    read_up_to,
    search_roots,
    torchvision_fetch,
)
from genlab.data.registry import Dataset, build_dataset
from genlab.errors import GenlabError

_IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _magic_ok(magic: bytes) -> bool:
    """An IDX magic number: two zero bytes, a known dtype code, at least one dimension."""
    return (len(magic) == 4 and magic[0] == 0 and magic[1] == 0 and magic[2] in _IDX_DTYPES
            and magic[3] != 0)


def _layout(magic: bytes, raw_dims: bytes) -> tuple[tuple[int, ...], np.dtype, int]:
    """(dims, stored dtype, bytes of data) that a header (magic number, dims) declares."""
    dims = struct.unpack(f">{magic[3]}I", raw_dims)
    dtype = _IDX_DTYPES[magic[2]]
    return dims, dtype, math.prod(dims) * dtype.itemsize  # Python ints: no overflow


def _as_array(data: bytearray, dtype: np.dtype, dims: tuple[int, ...]) -> np.ndarray:
    array = np.frombuffer(data, dtype=dtype).reshape(dims)  # writable: shares ``data``
    return array if dtype.isnative else array.astype(dtype.newbyteorder("="))


def _read_idx_stream(stream: Any, path: Path, gz: bool, on_disk: int, redo: str) -> np.ndarray:
    """The array of an open IDX stream (gunzipped when ``gz``; ``on_disk``: the file's size).

    The header's dims fix the data's length, so no more than that (plus one byte, to tell a
    longer body) is ever read or decompressed: a gzip bomb is refused after at most
    ``CHUNK`` bytes past the size its header claims.
    """
    what = "its decompressed data" if gz else "the file"
    magic = read_up_to(stream, 4, path, gz, redo)
    if not _magic_ok(magic):
        shown = magic.hex() or "(empty file)"
        raise GenlabError(f"{path} is not an IDX file (magic number {shown}); {redo}")
    ndim = magic[3]
    header = 4 + 4 * ndim
    raw_dims = read_up_to(stream, 4 * ndim, path, gz, redo)
    if len(raw_dims) < 4 * ndim:
        raise GenlabError(f"corrupt IDX file {path}: header needs {header} bytes, {what} has "
                          f"{4 + len(raw_dims)}; {redo}")
    dims, dtype, expected = _layout(magic, raw_dims)
    if expected > MAX_DATA_BYTES:
        raise GenlabError(f"corrupt IDX file {path}: its header claims dims "
                          f"{' x '.join(map(str, dims))} ({expected} bytes of data), more than "
                          f"genlab reads from one file ({MAX_DATA_BYTES} bytes); {redo}")
    if not gz and on_disk - header != expected:
        raise GenlabError(f"corrupt IDX file {path}: expected {expected} bytes of data, found "
                          f"{on_disk - header}; {redo}")
    data = bytearray()
    while len(data) < expected:
        chunk = read_up_to(stream, min(CHUNK, expected - len(data)), path, gz, redo)
        if not chunk:
            break
        data += chunk
    if len(data) < expected:
        raise GenlabError(f"corrupt IDX file {path}: expected {expected} bytes of data, found "
                          f"{len(data)}; {redo}")
    if read_up_to(stream, 1, path, gz, redo):  # at a gzip file's end: checks its CRC too
        raise GenlabError(f"corrupt IDX file {path}: expected {expected} bytes of data (dims "
                          f"{' x '.join(map(str, dims))}), {what} holds more; {redo}")
    return _as_array(data, dtype, dims)


#: A gzipped file at most this large on disk is read whole and decompressed in one zlib call.
ONE_SHOT_BYTES = 1 << 28


def _gunzip_idx(fh: Any, on_disk: int) -> np.ndarray | None:
    """The array of an open gzipped IDX file, read whole and decompressed in a few large zlib
    calls, or None when it is anything but one well-formed gzip member holding a well-formed
    IDX file (the streaming reader then reads it, and names the problem).

    zlib lets go of the GIL while it inflates, so a read on a background thread
    (:func:`read_ahead`) overlaps with imports on the main one; the streaming reader hands the
    GIL back and forth thousands of times. The limits are the streaming reader's: no more than
    the header's size plus one byte is ever decompressed, and the CRC is checked.
    """
    if on_disk > ONE_SHOT_BYTES:
        return None
    d = zlib.decompressobj(wbits=31)  # gzip wrapper: header, CRC-32 and length checked
    try:
        raw = fh.read()
        magic = d.decompress(raw, 4)
        if not _magic_ok(magic):
            return None
        raw_dims = d.decompress(d.unconsumed_tail, 4 * magic[3])
        if len(raw_dims) < 4 * magic[3]:
            return None
        dims, dtype, expected = _layout(magic, raw_dims)
        if expected > MAX_DATA_BYTES:
            return None
        body = d.decompress(d.unconsumed_tail, expected + 1)
    except (OSError, zlib.error):
        return None
    if len(body) != expected or not d.eof or d.unused_data or d.unconsumed_tail:
        return None
    return _as_array(bytearray(body), dtype, dims)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (raw or gzipped) into a native-endian array of the stored shape.

    Validates the magic number (two zero bytes, a known dtype code, ndim >= 1) and that the data
    is exactly as long as the header says (at most :data:`MAX_DATA_BYTES`), reading a gzipped
    file chunk by chunk so that no more than that is ever decompressed; anything else raises
    GenlabError naming ``path``.
    """
    path = Path(path)
    redo = "delete it and download again"
    try:
        fh = path.open("rb")
    except (OSError, ValueError) as exc:
        raise os_error(path, exc, redo) from exc
    with fh:
        try:
            on_disk = os.fstat(fh.fileno()).st_size
            gz = fh.read(2) == b"\x1f\x8b"
            fh.seek(0)
        except OSError as exc:
            raise os_error(path, exc, redo) from exc
        if not gz:
            return _read_idx_stream(fh, path, False, on_disk, redo)
        array = _gunzip_idx(fh, on_disk)
        if array is not None:
            return array
        try:
            fh.seek(0)
        except OSError as exc:
            raise os_error(path, exc, redo) from exc
        with gzip.GzipFile(fileobj=fh, mode="rb") as stream:
            return _read_idx_stream(stream, path, True, on_disk, redo)


_IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
              "t10k-labels-idx1-ubyte")


def _idx_file(folder: Path, base: str) -> Path | None:
    for name in (base, base + ".gz"):  # the uncompressed copy is faster to read
        if is_file(folder / name):
            return folder / name
    return None


#: Files being read ahead of their load (:func:`read_ahead`), by path: a Future of the array,
#: and the file's (size, mtime) when the read began.
_AHEAD: dict[Path, tuple[Future, tuple[int, int]]] = {}
_AHEAD_LOCK = threading.Lock()


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except (OSError, ValueError):
        return None
    return st.st_size, st.st_mtime_ns


def _read(path: Path) -> np.ndarray:
    """:func:`read_idx`, taking a read started ahead when the file is unchanged since."""
    with _AHEAD_LOCK:
        ahead = _AHEAD.pop(path, None)
    if ahead is not None and ahead[1] == _stamp(path):
        return ahead[0].result()  # waits for it; a GenlabError it raised is raised here
    return read_idx(path)


def _read_all(paths: Sequence[Path], futures: Sequence[Future]) -> None:
    for path, future in zip(paths, futures, strict=True):
        try:
            future.set_result(read_idx(path))
        except BaseException as exc:  # handed to the load, which raises it
            future.set_exception(exc)


def _start_reading(folder: Path) -> None:
    paths = [p for p in (_idx_file(folder, base) for base in _IDX_NAMES) if p is not None]
    jobs = []
    with _AHEAD_LOCK:
        for path in paths:
            stamp = _stamp(path)
            if path not in _AHEAD and stamp is not None:
                _AHEAD[path] = (Future(), stamp)
                jobs.append((path, _AHEAD[path][0]))
    if jobs:
        threading.Thread(target=_read_all, args=([p for p, _ in jobs], [f for _, f in jobs]),
                         name="genlab-read-ahead", daemon=True).start()


def _idx_images_labels(images_path: Path, labels_path: Path,
                       num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = _read(images_path), _read(labels_path)
    redo = "delete them and download again"
    if images.ndim != 3 or images.dtype != np.uint8:
        raise GenlabError(f"{images_path} should hold uint8 images (N, H, W), found "
                          f"{images.dtype} {images.shape}; {redo}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise GenlabError(f"{labels_path} holds {labels.shape} labels for {len(images)} images "
                          f"in {images_path}; {redo}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise GenlabError(f"{labels_path} has labels outside 0..{num_classes - 1}; {redo}")
    return images_u8(images[:, None]), torch.from_numpy(labels.astype(np.int64))


def _find_folder(roots: Sequence[Path], tv_class: str, looked: list[Path],
                 partial: list[tuple[Path, list[str]]]) -> Path | None:
    """The first folder (``root`` or ``root/<tv_class>/raw``) holding all four IDX files;
    appends each folder tried to ``looked`` and each one holding some but not all (with the
    names it lacks) to ``partial``."""
    for root in roots:
        for folder in (root, root / tv_class / "raw"):
            looked.append(folder)
            files = [_idx_file(folder, base) for base in _IDX_NAMES]
            if all(files):
                return folder
            if any(files):
                partial.append((folder, [b for b, f in zip(_IDX_NAMES, files, strict=True)
                                         if f is None]))
    return None


def _read_ahead(tv_class: str,
                extra: Callable[[], Sequence[Path]]) -> Callable[[Path | None], None]:
    def start(data_dir: Path | None) -> None:
        folder = _find_folder(search_roots(data_dir, extra()), tv_class, [], [])
        if folder is not None:
            _start_reading(folder)
    return start


def _load_idx_set(name: str, title: str, tv_class: str, classes: Sequence[str],
                  data_dir: Path | None, download: bool, extra: Sequence[Path],
                  hint: str) -> Dataset:
    """Find the four IDX files (flat or ``ROOT/<tv_class>/raw``), downloading if allowed."""
    looked: list[Path] = []
    partial: list[tuple[Path, list[str]]] = []
    folder = _find_folder(search_roots(data_dir, extra), tv_class, looked, partial)
    if folder is None and download:
        root = download_root(data_dir)
        torchvision_fetch(lambda tvd, r: getattr(tvd, tv_class)(str(r), download=True), root,
                           title, looked, hint)
        folder = _find_folder([root], tv_class, looked, partial)
    if folder is None:
        if partial:
            where, missing = partial[0]
            split = ("training split" if all(m.startswith("train") for m in missing)
                     else "test split" if all(m.startswith("t10k") for m in missing)
                     else "data")
            others = ", ".join(str(p) for p in looked if p != where)
            raise GenlabError(f"{title} {split} is missing: {where} lacks "
                              f"{', '.join(m + '[.gz]' for m in missing)} (genlab also looked "
                              f"in: {others}); {how_to_get(hint, '')}")
        raise not_found(title, looked, hint)
    paths = [_idx_file(folder, base) for base in _IDX_NAMES]
    x_train, y_train = _idx_images_labels(paths[0], paths[1], len(classes))
    x_test, y_test = _idx_images_labels(paths[2], paths[3], len(classes))
    return build_dataset(name, x_train, y_train, x_test, y_test, classes,
                         f"{title} IDX files in {folder}")


FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")
DIGIT_CLASSES = tuple(str(i) for i in range(10))


def load_fashion_mnist(data_dir: Path | None, download: bool) -> Dataset:
    hint = ("pass --data-dir DIR holding the four IDX files (train-images-idx3-ubyte[.gz], ...), "
            "set GENLAB_DATA, `apt-get install dataset-fashion-mnist`")
    return _load_idx_set("fashion-mnist", "Fashion-MNIST", "FashionMNIST", FASHION_MNIST_CLASSES,
                         data_dir, download, debian_fashion_mnist_dirs(), hint)


def load_mnist(data_dir: Path | None, download: bool) -> Dataset:
    hint = ("pass --data-dir DIR holding the four IDX files (train-images-idx3-ubyte[.gz], ...), "
            "set GENLAB_DATA")
    return _load_idx_set("mnist", "MNIST", "MNIST", DIGIT_CLASSES, data_dir, download, (), hint)


#: ``start(data_dir)``: begin reading a set's four files on a background thread, for
#: :func:`genlab.data.registry.read_ahead` (the registry entries' ``read_ahead`` meta).
read_ahead_fashion_mnist = _read_ahead("FashionMNIST", lambda: debian_fashion_mnist_dirs())
read_ahead_mnist = _read_ahead("MNIST", tuple)
