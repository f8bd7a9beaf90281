"""Image classification data sets as in-memory tensors, found on disk or built offline.

Every data set is registered under a name with a loader that returns the full train and test
splits as a :class:`Dataset`; :func:`load_dataset` resolves the name, caches the full load for the
life of the process (a sweep loads the same set many times) and returns a seeded, stratified
subset. Files are read by genlab's own readers: IDX for (Fashion-)MNIST, a restricted unpickler or
the binary records for CIFAR, ``scipy.io.loadmat`` for SVHN. Nothing arbitrary is ever unpickled.

Folders searched for files, in order: the ``data_dir`` argument, ``$GENLAB_DATA``, (Fashion-MNIST
only) the Debian ``dataset-fashion-mnist`` package folder, and genlab's download cache
(``$XDG_CACHE_HOME/genlab`` or ``~/.cache/genlab``). With ``download=True`` a missing set is
fetched by torchvision into the first of ``data_dir``, ``$GENLAB_DATA`` or that cache.
"""

from __future__ import annotations

import codecs
import dataclasses
import errno
import gzip
import math
import os
import pickle
import random
import re
import stat
import struct
import subprocess
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import GenlabError

# --------------------------------------------------------------------------------------------
# The data set container


@dataclass
class Dataset:
    """Train and test splits of one image classification data set, held in memory.

    x_train: float32 (N, C, H, W), images scaled to [0, 1] (mnist1d and gaussian are real-valued);
    for an ImageFolder tree streamed from disk, a lazy :class:`genlab.streaming.ImageFiles`;
    y_train: int64 (N,) in [0, num_classes); x_test / y_test: the same for the M test images.
    mean / std: per-channel mean and population standard deviation of x_train (length C).
    source: human-readable description of where the data came from.
    """

    name: str
    x_train: torch.Tensor = field(repr=False)
    y_train: torch.Tensor = field(repr=False)
    x_test: torch.Tensor = field(repr=False)
    y_test: torch.Tensor = field(repr=False)
    num_classes: int
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one image, (C, H, W)."""
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)

    def replace(self, **changes: Any) -> Dataset:
        """A copy with ``changes`` applied (``dataclasses.replace``); tensors are shared."""
        return dataclasses.replace(self, **changes)


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population std of images ``x`` (N, C, H, W) -> two tuples of len C.

    Images streamed from disk (:class:`genlab.streaming.ImageFiles`) compute their own.
    """
    if not isinstance(x, torch.Tensor):
        return x.channel_stats()
    std, mean = torch.std_mean(x, dim=(0, 2, 3), correction=0)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def _build(name: str, x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor,
           y_test: torch.Tensor, classes: Sequence[str], source: str) -> Dataset:
    """Assemble a :class:`Dataset`, casting dtypes and computing the training statistics."""
    x_train = x_train.to(torch.float32).contiguous()
    mean, std = channel_stats(x_train)
    return Dataset(name=name, x_train=x_train, y_train=y_train.to(torch.int64).contiguous(),
                   x_test=x_test.to(torch.float32).contiguous(),
                   y_test=y_test.to(torch.int64).contiguous(), num_classes=len(classes),
                   classes=list(classes), mean=mean, std=std, source=source)


def _images_u8(images: np.ndarray) -> torch.Tensor:
    """uint8 images (N, C, H, W) -> float32 tensor scaled to [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32).div_(255.0)


# --------------------------------------------------------------------------------------------
# Registry, cache and the public entry point

Loader = Callable[[Path | None, bool], Dataset]


@dataclass(frozen=True)
class _Entry:
    loader: Loader
    description: str
    #: the loader may return splits streamed from disk rather than resident tensors
    streams: bool = False


_REGISTRY: dict[str, _Entry] = {}
#: name families registered on first use: (full-match pattern, register(name))
_FAMILIES: list[tuple[re.Pattern[str], Callable[[str], None]]] = []
_CACHE: OrderedDict[tuple[str, str, str], Dataset] = OrderedDict()
#: Full loads kept in memory; small because one set can take ~1 GB (SVHN as float32).
CACHE_SIZE = 3


def _normalize_name(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def register_dataset(name: str, loader: Loader, description: str = "", *,
                     streams: bool = False) -> None:
    """Register ``loader(data_dir, download) -> Dataset`` (full splits) under ``name``.

    Names are case-insensitive and ``_`` equals ``-``. Re-registering a name replaces it.
    ``streams``: the loader may hand back images read from disk batch by batch
    (:class:`genlab.streaming.ImageFiles`) instead of tensors.
    """
    key = _normalize_name(name)
    _REGISTRY[key] = _Entry(loader, description, streams)
    clear_cache()


def register_family(pattern: str, register: Callable[[str], None]) -> None:
    """Names that fully match regex ``pattern`` (lower case, ``-`` for ``_``) are registered
    on first use by ``register(name)``, e.g. ``imagefolder-64``. Unlike a name registered
    interactively, a family is known to every process that imports its module, worker
    processes included."""
    _FAMILIES.append((re.compile(pattern), register))


def _entry(name: str) -> _Entry | None:
    key = _normalize_name(str(name))
    if key not in _REGISTRY:
        for pattern, register in _FAMILIES:
            if pattern.fullmatch(key):
                register(key)
                break
    return _REGISTRY.get(key)


def may_stream(name: str) -> bool:
    """Whether data set ``name`` may come streamed from disk (its images then cannot be
    stacked or indexed as one tensor). Unknown names: False."""
    entry = _entry(name)
    return bool(entry and entry.streams)


def list_datasets() -> dict[str, str]:
    """Registered data set names -> one-line descriptions."""
    return {name: entry.description for name, entry in _REGISTRY.items()}


def clear_cache() -> None:
    """Forget every cached full load (e.g. after changing module-level defaults)."""
    _CACHE.clear()


def load_dataset(name: str, *, data_dir: str | Path | None = None, train_size: int = 0,
                 test_size: int = 0, seed: int = 0, download: bool = False) -> Dataset:
    """Load data set ``name`` and return a stratified, seeded subset of its splits.

    data_dir: folder to look in first (see the module docstring for the search order).
    train_size / test_size: number of images to keep from each split; 0 keeps the whole split.
    seed: chooses the subset (same seed, same images); the splits are subset independently.
    download: fetch a missing set with torchvision (ignored for offline sets).
    Returns a :class:`Dataset` whose tensors are not shared with the in-process cache.
    """
    key = _normalize_name(str(name))
    entry = _entry(key)
    if entry is None:
        known = ", ".join(sorted(_REGISTRY))
        raise GenlabError(f"unknown data set {name!r}; choose one of: {known}")
    root = _user_path(data_dir, "--data-dir") if data_dir not in (None, "") else None
    cache_key = (key, str(root) if root else "", os.environ.get("GENLAB_DATA", ""))
    full = _CACHE.get(cache_key)
    if full is None:
        full = entry.loader(root, download)
        _CACHE[cache_key] = full
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(cache_key)
    return subset(full, train_size=train_size, test_size=test_size, seed=seed)


# --------------------------------------------------------------------------------------------
# Stratified, seeded subsets


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise GenlabError(f"seed must be a non-negative integer, got {seed!r}")


def stratified_indices(labels: torch.Tensor, size: int, rng: np.random.Generator) -> torch.Tensor:
    """Indices (size,) int64, ascending, of a stratified random sample of ``labels`` (N,).

    Each class gets ``size * n_class / N`` images rounded by largest remainder (ties broken at
    random), so class counts are proportional within one and the total is exactly ``size``.
    """
    y = labels.cpu().numpy()
    n = len(y)
    classes, counts = np.unique(y, return_counts=True)
    # Exact integer arithmetic: quota = size * count / n = floor + remainder / n.
    floors = size * counts // n
    remainders = size * counts % n
    short = size - int(floors.sum())
    order = rng.permutation(len(classes))  # random tie-break, so no class is always favoured
    ranked = order[np.argsort(-remainders[order], kind="stable")]
    take = floors.copy()
    take[ranked[:short]] += 1
    chosen = [rng.choice(np.flatnonzero(y == c), size=int(k), replace=False)
              for c, k in zip(classes, take, strict=True) if k > 0]
    idx = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
    return torch.from_numpy(idx.astype(np.int64))


def _subset_split(x: torch.Tensor, y: torch.Tensor, size: int, rng: np.random.Generator,
                  what: str, name: str, flag: str) -> tuple[torch.Tensor, torch.Tensor]:
    n = len(y)
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 0:
        raise GenlabError(f"{flag} must be a non-negative integer (0 = whole split), got {size!r}")
    if size > n:
        raise GenlabError(f"{flag} {size} is larger than the {name} {what} split ({n} images); "
                          f"use at most {n}, or 0 for the whole split")
    if size == 0 or size == n:
        # Clone so callers can never write into the cached full load.
        return x.clone(), y.clone()
    idx = stratified_indices(y, size, rng)
    return x.index_select(0, idx), y.index_select(0, idx)


def subset(data: Dataset, *, train_size: int = 0, test_size: int = 0, seed: int = 0) -> Dataset:
    """Stratified, seeded subset of both splits (0 = whole split); mean/std are recomputed.

    The train and test splits use independent random streams derived from ``seed``. The result
    never shares tensor storage with ``data``.
    """
    _check_seed(seed)
    train_rng = np.random.default_rng([int(seed), 0])
    test_rng = np.random.default_rng([int(seed), 1])
    x_tr, y_tr = _subset_split(data.x_train, data.y_train, train_size, train_rng, "training",
                               data.name, "train_size")
    x_te, y_te = _subset_split(data.x_test, data.y_test, test_size, test_rng, "test",
                               data.name, "test_size")
    mean, std = channel_stats(x_tr)
    return data.replace(x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te,
                        classes=list(data.classes), mean=mean, std=std)


# --------------------------------------------------------------------------------------------
# Where to look, and downloading


def _one_line(text: object) -> str:
    return re.sub(r"\s+", " ", str(text)).strip()


def _os_error(path: Path | str, exc: BaseException, redo: str = "") -> GenlabError:
    """A one-line GenlabError for an OSError (or a NUL byte's ValueError) on ``path``."""
    code = getattr(exc, "errno", None)
    reason = getattr(exc, "strerror", None) or _one_line(exc)
    if code == errno.ENAMETOOLONG:
        advice = "use a shorter path (every folder and file name at most 255 characters)"
    elif code in (errno.EACCES, errno.EPERM):
        advice = "check its permissions"
    elif isinstance(exc, ValueError):
        advice = "check the path"
    else:
        advice = redo or "check the path"
    return GenlabError(f"cannot read {path}: {reason}; {advice}")


def _is_kind(path: Path, want_dir: bool) -> bool:
    """Whether ``path`` is a file (a folder when ``want_dir``); False when it does not exist,
    and a one-line GenlabError naming it when it cannot be looked at (a name over 255
    characters, no permission, a symlink loop, a NUL byte) instead of pathlib's OSError."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return False
        raise _os_error(path, exc) from exc
    except ValueError as exc:
        raise _os_error(path, exc) from exc
    return stat.S_ISDIR(mode) if want_dir else stat.S_ISREG(mode)


def _is_file(path: Path) -> bool:
    return _is_kind(path, False)


def _is_dir(path: Path) -> bool:
    return _is_kind(path, True)


def _user_path(text: str | Path, what: str) -> Path:
    """``text`` (a folder the user named in ``what``) as a Path with ``~`` expanded."""
    try:
        return Path(text).expanduser()
    except RuntimeError as exc:  # ~user of an unknown user, or no home directory
        raise GenlabError(f"{what} {text}: cannot expand '~' ({_one_line(exc)}); give the "
                          "folder's full path") from exc


def default_cache_dir() -> Path:
    """genlab's download folder: ``$XDG_CACHE_HOME/genlab``, else ``~/.cache/genlab``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(_user_path("~", "home folder") / ".cache")
    return _user_path(base, "$XDG_CACHE_HOME") / "genlab"


def _env_dir() -> Path | None:
    env = os.environ.get("GENLAB_DATA", "")
    return _user_path(env, "$GENLAB_DATA") if env else None


def _search_roots(data_dir: Path | None, extra: Sequence[Path] = ()) -> list[Path]:
    """data_dir, $GENLAB_DATA, ``extra`` (system packages), then the download cache."""
    roots = [data_dir, _env_dir(), *extra, default_cache_dir()]
    seen: list[Path] = []
    for root in roots:
        if root is not None and root not in seen:
            seen.append(root)
    return seen


def _download_root(data_dir: Path | None) -> Path:
    return data_dir or _env_dir() or default_cache_dir()


#: Debian's standard location for the ``dataset-fashion-mnist`` package.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@lru_cache(maxsize=1)
def _debian_fashion_mnist_dirs() -> tuple[Path, ...]:
    """Folders of the Debian ``dataset-fashion-mnist`` package that hold the training images."""
    try:
        out = subprocess.run(["dpkg", "-L", "dataset-fashion-mnist"], capture_output=True,
                             text=True, timeout=5, check=False)
        lines = out.stdout.splitlines() if out.returncode == 0 else []
    except (OSError, subprocess.SubprocessError):
        lines = []  # no dpkg (not Debian) or it hung: fall back to the standard path
    found = [Path(s.strip()).parent for s in lines
             if Path(s.strip()).name == "train-images-idx3-ubyte.gz"]
    return tuple(dict.fromkeys(found)) or (DEBIAN_FASHION_MNIST,)


def _how_to_get(hint: str, failure: str) -> str:
    """``hint`` lists the offline ways to provide the files; add the download advice."""
    return f"{hint}, or retry --download with network access" if failure else \
        f"{hint}, or add --download"


def _not_found(what: str, looked: Sequence[Path], hint: str, failure: str = "") -> GenlabError:
    where = ", ".join(str(p) for p in dict.fromkeys(looked))
    reason = f"; download failed: {failure}" if failure else ""
    return GenlabError(f"{what} not found (genlab looked in: {where}){reason}; "
                       f"{_how_to_get(hint, failure)}")


def _torchvision_datasets() -> Any:
    import torchvision.datasets  # imported only when downloading: it is slow to import

    return torchvision.datasets


def _torchvision_fetch(fetch: Callable[[Any, Path], None], root: Path, what: str,
                       looked: Sequence[Path], hint: str) -> None:
    """Run ``fetch(torchvision.datasets, root)``; any failure becomes a one-line GenlabError."""
    try:
        tvd = _torchvision_datasets()
    except ImportError as exc:
        raise _not_found(what, looked, hint, f"torchvision is not importable ({exc})") from exc
    try:
        root.mkdir(parents=True, exist_ok=True)
        fetch(tvd, root)
    except Exception as exc:  # network and archive errors come in many types
        raise _not_found(what, looked, hint, f"into {root}: {_one_line(exc)}") from exc


# --------------------------------------------------------------------------------------------
# IDX files (MNIST, Fashion-MNIST)

_IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


#: The most data genlab reads from one IDX or .mat file (4 GiB); MNIST's training images are
#: 47 MB and all of SVHN's extra split 1.6 GB. A header claiming more is refused unread.
MAX_DATA_BYTES = 1 << 32
#: Bytes decompressed at a time, so a gzip bomb is caught after at most this much past its size.
_CHUNK = 1 << 20


def _read_up_to(stream: Any, n: int, path: Path, gz: bool, redo: str) -> bytes:
    """At most ``n`` bytes of ``stream`` (fewer at its end); read and gzip errors name ``path``."""
    try:
        return stream.read(n)
    except (OSError, EOFError, zlib.error) as exc:
        if gz:
            raise GenlabError(f"corrupt gzip file {path} ({_one_line(exc)}); {redo}") from exc
        raise _os_error(path, exc, redo) from exc


def _read_idx_stream(stream: Any, path: Path, gz: bool, on_disk: int, redo: str) -> np.ndarray:
    """The array of an open IDX stream (gunzipped when ``gz``; ``on_disk``: the file's size).

    The header's dims fix the data's length, so no more than that (plus one byte, to tell a
    longer body) is ever read or decompressed: a gzip bomb is refused after at most
    ``_CHUNK`` bytes past the size its header claims.
    """
    what = "its decompressed data" if gz else "the file"
    magic = _read_up_to(stream, 4, path, gz, redo)
    if (len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_DTYPES
            or magic[3] == 0):
        shown = magic.hex() or "(empty file)"
        raise GenlabError(f"{path} is not an IDX file (magic number {shown}); {redo}")
    ndim = magic[3]
    header = 4 + 4 * ndim
    raw_dims = _read_up_to(stream, 4 * ndim, path, gz, redo)
    if len(raw_dims) < 4 * ndim:
        raise GenlabError(f"corrupt IDX file {path}: header needs {header} bytes, {what} has "
                          f"{4 + len(raw_dims)}; {redo}")
    dims = struct.unpack(f">{ndim}I", raw_dims)
    dtype = _IDX_DTYPES[magic[2]]
    expected = math.prod(dims) * dtype.itemsize  # Python ints: no overflow for absurd dims
    if expected > MAX_DATA_BYTES:
        raise GenlabError(f"corrupt IDX file {path}: its header claims dims "
                          f"{' x '.join(map(str, dims))} ({expected} bytes of data), more than "
                          f"genlab reads from one file ({MAX_DATA_BYTES} bytes); {redo}")
    if not gz and on_disk - header != expected:
        raise GenlabError(f"corrupt IDX file {path}: expected {expected} bytes of data, found "
                          f"{on_disk - header}; {redo}")
    data = bytearray()
    while len(data) < expected:
        chunk = _read_up_to(stream, min(_CHUNK, expected - len(data)), path, gz, redo)
        if not chunk:
            break
        data += chunk
    if len(data) < expected:
        raise GenlabError(f"corrupt IDX file {path}: expected {expected} bytes of data, found "
                          f"{len(data)}; {redo}")
    if _read_up_to(stream, 1, path, gz, redo):  # at a gzip file's end: checks its CRC too
        raise GenlabError(f"corrupt IDX file {path}: expected {expected} bytes of data (dims "
                          f"{' x '.join(map(str, dims))}), {what} holds more; {redo}")
    array = np.frombuffer(data, dtype=dtype).reshape(dims)  # writable: shares ``data``
    return array if dtype.isnative else array.astype(dtype.newbyteorder("="))


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
        raise _os_error(path, exc, redo) from exc
    with fh:
        try:
            on_disk = os.fstat(fh.fileno()).st_size
            gz = fh.read(2) == b"\x1f\x8b"
            fh.seek(0)
        except OSError as exc:
            raise _os_error(path, exc, redo) from exc
        if not gz:
            return _read_idx_stream(fh, path, False, on_disk, redo)
        with gzip.GzipFile(fileobj=fh, mode="rb") as stream:
            return _read_idx_stream(stream, path, True, on_disk, redo)


_IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
              "t10k-labels-idx1-ubyte")


def _idx_file(folder: Path, base: str) -> Path | None:
    for name in (base, base + ".gz"):  # the uncompressed copy is faster to read
        if _is_file(folder / name):
            return folder / name
    return None


def _idx_images_labels(images_path: Path, labels_path: Path,
                       num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    redo = "delete them and download again"
    if images.ndim != 3 or images.dtype != np.uint8:
        raise GenlabError(f"{images_path} should hold uint8 images (N, H, W), found "
                          f"{images.dtype} {images.shape}; {redo}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise GenlabError(f"{labels_path} holds {labels.shape} labels for {len(images)} images "
                          f"in {images_path}; {redo}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise GenlabError(f"{labels_path} has labels outside 0..{num_classes - 1}; {redo}")
    return _images_u8(images[:, None]), torch.from_numpy(labels.astype(np.int64))


def _load_idx_set(name: str, title: str, tv_class: str, classes: Sequence[str],
                  data_dir: Path | None, download: bool, extra: Sequence[Path],
                  hint: str) -> Dataset:
    """Find the four IDX files (flat or ``ROOT/<tv_class>/raw``), downloading if allowed."""
    looked: list[Path] = []
    partial: tuple[Path, list[str]] | None = None

    def search(roots: Sequence[Path]) -> Path | None:
        nonlocal partial
        for root in roots:
            for folder in (root, root / tv_class / "raw"):
                looked.append(folder)
                files = [_idx_file(folder, base) for base in _IDX_NAMES]
                if all(files):
                    return folder
                if any(files) and partial is None:
                    partial = (folder, [b for b, f in zip(_IDX_NAMES, files, strict=True)
                                        if f is None])
        return None

    folder = search(_search_roots(data_dir, extra))
    if folder is None and download:
        root = _download_root(data_dir)
        _torchvision_fetch(lambda tvd, r: getattr(tvd, tv_class)(str(r), download=True), root,
                           title, looked, hint)
        folder = search([root])
    if folder is None:
        if partial is not None:
            where, missing = partial
            split = ("training split" if all(m.startswith("train") for m in missing)
                     else "test split" if all(m.startswith("t10k") for m in missing)
                     else "data")
            others = ", ".join(str(p) for p in looked if p != where)
            raise GenlabError(f"{title} {split} is missing: {where} lacks "
                              f"{', '.join(m + '[.gz]' for m in missing)} (genlab also looked "
                              f"in: {others}); {_how_to_get(hint, '')}")
        raise _not_found(title, looked, hint)
    paths = [_idx_file(folder, base) for base in _IDX_NAMES]
    x_train, y_train = _idx_images_labels(paths[0], paths[1], len(classes))
    x_test, y_test = _idx_images_labels(paths[2], paths[3], len(classes))
    return _build(name, x_train, y_train, x_test, y_test, classes, f"{title} IDX files in {folder}")


FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")
DIGIT_CLASSES = tuple(str(i) for i in range(10))


def _load_fashion_mnist(data_dir: Path | None, download: bool) -> Dataset:
    hint = ("pass --data-dir DIR holding the four IDX files (train-images-idx3-ubyte[.gz], ...), "
            "set GENLAB_DATA, `apt-get install dataset-fashion-mnist`")
    return _load_idx_set("fashion-mnist", "Fashion-MNIST", "FashionMNIST", FASHION_MNIST_CLASSES,
                         data_dir, download, _debian_fashion_mnist_dirs(), hint)


def _load_mnist(data_dir: Path | None, download: bool) -> Dataset:
    hint = ("pass --data-dir DIR holding the four IDX files (train-images-idx3-ubyte[.gz], ...), "
            "set GENLAB_DATA")
    return _load_idx_set("mnist", "MNIST", "MNIST", DIGIT_CLASSES, data_dir, download, (), hint)


# --------------------------------------------------------------------------------------------
# CIFAR: restricted unpickling of the python version, or the binary version


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
        raise _os_error(path, exc, redo) from exc
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
        raise GenlabError(f"corrupt CIFAR file {path} ({_one_line(exc)}); {redo}") from exc
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
    if not _is_file(meta):
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
        raise _os_error(path, exc, redo) from exc
    if not raw or len(raw) % 3073:
        raise GenlabError(f"corrupt CIFAR-10 binary file {path}: {len(raw)} bytes is not a "
                          f"whole number of 3073-byte records; {redo}")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3073)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= 10:
        raise GenlabError(f"corrupt CIFAR-10 binary file {path}: labels outside 0..9; {redo}")
    return records[:, 1:].reshape(-1, 3, 32, 32).copy(), labels


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck")
_CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))


def _first_folder(roots: Sequence[Path], subdirs: Sequence[str], required: Sequence[str],
                  looked: list[Path]) -> Path | None:
    """First ``root/subdir`` (``""`` = root itself) holding every ``required`` file."""
    for root in roots:
        for sub in subdirs:
            folder = root / sub if sub else root
            looked.append(folder)
            if all(_is_file(folder / f) for f in required):
                return folder
    return None


def _concat(parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return _images_u8(images), torch.from_numpy(labels)


def _fetch_cifar(cls_name: str) -> Callable[[Any, Path], None]:
    # Fetch the md5-checked archive only: constructing torchvision's CIFAR class would unpickle
    # the files with plain pickle, and genlab reads them with its own restricted reader.
    def fetch(tvd: Any, root: Path) -> None:
        from torchvision.datasets.utils import download_and_extract_archive

        cls = getattr(tvd, cls_name)
        download_and_extract_archive(cls.url, str(root), filename=cls.filename, md5=cls.tgz_md5)
    return fetch


def _load_cifar10(data_dir: Path | None, download: bool) -> Dataset:
    hint = ("pass --data-dir DIR holding cifar-10-batches-py/ (torchvision's layout) or "
            "cifar-10-batches-bin/, set GENLAB_DATA")
    py_files = (*_CIFAR10_TRAIN, "test_batch")
    bin_files = tuple(f + ".bin" for f in py_files)
    looked: list[Path] = []

    def search(roots: Sequence[Path]) -> tuple[Path | None, Path | None]:
        py = _first_folder(roots, ("cifar-10-batches-py", ""), py_files, looked)
        if py is not None:
            return py, None
        return None, _first_folder(roots, ("cifar-10-batches-bin", ""), bin_files, looked)

    py, binary = search(_search_roots(data_dir))
    if py is None and binary is None and download:
        root = _download_root(data_dir)
        _torchvision_fetch(_fetch_cifar("CIFAR10"), root, "CIFAR-10", looked, hint)
        py, binary = search([root])
    if py is not None:
        parts = [_cifar_batch(load_cifar_pickle(py / f), py / f, "labels", 10) for f in py_files]
        classes = _cifar_names(py / "batches.meta", "label_names", 10, CIFAR10_CLASSES)
        source = f"CIFAR-10 python batches in {py}"
    elif binary is not None:
        parts = [read_cifar_bin(binary / f) for f in bin_files]
        classes = list(CIFAR10_CLASSES)
        meta = binary / "batches.meta.txt"
        if _is_file(meta):
            try:
                text = meta.read_text(errors="replace")
            except OSError as exc:
                raise _os_error(meta, exc, "delete it and download again") from exc
            names = [s.strip() for s in text.splitlines() if s.strip()]
            classes = names if len(names) == 10 else classes
        source = f"CIFAR-10 binary batches in {binary}"
    else:
        raise _not_found("CIFAR-10", looked, hint)
    x_train, y_train = _concat(parts[:5])
    x_test, y_test = _concat(parts[5:])
    return _build("cifar10", x_train, y_train, x_test, y_test, classes, source)


def _load_cifar100(data_dir: Path | None, download: bool) -> Dataset:
    hint = ("pass --data-dir DIR holding cifar-100-python/ (torchvision's layout), set "
            "GENLAB_DATA")
    looked: list[Path] = []
    subdirs = ("cifar-100-python", "")
    folder = _first_folder(_search_roots(data_dir), subdirs, ("train", "test"), looked)
    if folder is None and download:
        root = _download_root(data_dir)
        _torchvision_fetch(_fetch_cifar("CIFAR100"), root, "CIFAR-100", looked, hint)
        folder = _first_folder([root], subdirs, ("train", "test"), looked)
    if folder is None:
        raise _not_found("CIFAR-100", looked, hint)
    x_train, y_train = _concat([_cifar_batch(load_cifar_pickle(folder / "train"),
                                             folder / "train", "fine_labels", 100)])
    x_test, y_test = _concat([_cifar_batch(load_cifar_pickle(folder / "test"),
                                           folder / "test", "fine_labels", 100)])
    classes = _cifar_names(folder / "meta", "fine_label_names", 100,
                           [str(i) for i in range(100)])
    return _build("cifar100", x_train, y_train, x_test, y_test, classes,
                  f"CIFAR-100 python files in {folder}")


# --------------------------------------------------------------------------------------------
# SVHN (MATLAB files)


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
            raise _os_error(path, exc, redo) from exc
        raise GenlabError(f"cannot read SVHN file {path} ({_one_line(exc)}); {redo}") from exc
    except Exception as exc:  # scipy raises many types for unreadable files
        raise GenlabError(f"cannot read SVHN file {path} ({_one_line(exc)}); {redo}") from exc
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


def _load_svhn(data_dir: Path | None, download: bool) -> Dataset:
    hint = "pass --data-dir DIR holding train_32x32.mat and test_32x32.mat, set GENLAB_DATA"
    files = ("train_32x32.mat", "test_32x32.mat")
    looked: list[Path] = []
    folder = _first_folder(_search_roots(data_dir), ("", "svhn"), files, looked)
    if folder is None and download:
        root = _download_root(data_dir)

        def fetch(tvd: Any, r: Path) -> None:
            for split in ("train", "test"):
                tvd.SVHN(str(r), split=split, download=True)

        _torchvision_fetch(fetch, root, "SVHN", looked, hint)
        folder = _first_folder([root], ("",), files, looked)
    if folder is None:
        raise _not_found("SVHN", looked, hint)
    x_train, y_train = read_svhn_mat(folder / files[0])
    x_test, y_test = read_svhn_mat(folder / files[1])
    return _build("svhn", _images_u8(x_train), torch.from_numpy(y_train), _images_u8(x_test),
                  torch.from_numpy(y_test), DIGIT_CLASSES, f"SVHN .mat files in {folder}")


# --------------------------------------------------------------------------------------------
# Offline sets: scikit-learn digits, MNIST-1D, Gaussian noise

#: Images held out as the digits test split (fixed stratified choice, seed DIGITS_SPLIT_SEED).
DIGITS_TEST_SIZE = 300
DIGITS_SPLIT_SEED = 0


def _load_digits(data_dir: Path | None, download: bool) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / np.float32(16.0)).unsqueeze(1)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    test_idx = stratified_indices(y, DIGITS_TEST_SIZE, np.random.default_rng(DIGITS_SPLIT_SEED))
    is_test = torch.zeros(len(y), dtype=torch.bool)
    is_test[test_idx] = True
    return _build("digits", x[~is_test], y[~is_test], x[is_test], y[is_test], DIGIT_CLASSES,
                  "scikit-learn load_digits (bundled, 8x8, values/16)")


#: MNIST-1D generation parameters (the package's defaults: 5000 samples, 80% train).
MNIST1D_NUM_SAMPLES = 5000
MNIST1D_TRAIN_SPLIT = 0.8
MNIST1D_SEED = 42


def _load_mnist1d(data_dir: Path | None, download: bool) -> Dataset:
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:
        raise GenlabError(f"mnist1d needs the mnist1d package ({exc}); `pip install mnist1d`"
                          ) from exc
    args = get_dataset_args()
    args.num_samples, args.train_split, args.seed = (MNIST1D_NUM_SAMPLES, MNIST1D_TRAIN_SPLIT,
                                                     MNIST1D_SEED)
    # make_dataset is the procedural generator (get_dataset would download and unpickle); it
    # reseeds the global RNGs, so restore them to keep callers' randomness untouched.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        raw = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)

    def tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = np.asarray(x, dtype=np.float32)
        return torch.from_numpy(x.reshape(len(x), 1, 1, -1)), torch.from_numpy(
            np.asarray(y, dtype=np.int64))

    x_train, y_train = tensors(raw["x"], raw["y"])
    x_test, y_test = tensors(raw["x_test"], raw["y_test"])
    return _build("mnist1d", x_train, y_train, x_test, y_test, DIGIT_CLASSES,
                  f"mnist1d.make_dataset (generated offline, seed {MNIST1D_SEED})")


#: Gaussian-noise data set parameters; change them then call clear_cache() to take effect.
GAUSSIAN_SHAPE = (1, 28, 28)
GAUSSIAN_NUM_CLASSES = 10
GAUSSIAN_TRAIN_SIZE = 5000
GAUSSIAN_TEST_SIZE = 1000
GAUSSIAN_SEED = 0


def _load_gaussian(data_dir: Path | None, download: bool) -> Dataset:
    gen = torch.Generator().manual_seed(GAUSSIAN_SEED)
    n = GAUSSIAN_TRAIN_SIZE + GAUSSIAN_TEST_SIZE
    x = torch.randn((n, *GAUSSIAN_SHAPE), generator=gen)
    y = torch.randint(GAUSSIAN_NUM_CLASSES, (n,), generator=gen)
    cut = GAUSSIAN_TRAIN_SIZE
    classes = [str(i) for i in range(GAUSSIAN_NUM_CLASSES)]
    return _build("gaussian", x[:cut], y[:cut], x[cut:], y[cut:], classes,
                  f"synthetic N(0, 1) pixels, uniform random labels (seed {GAUSSIAN_SEED})")


register_dataset("digits", _load_digits,
                 "scikit-learn 8x8 digits, 1497 train / 300 test (offline)")
register_dataset("mnist1d", _load_mnist1d, "MNIST-1D, 40-sample 1-D signals, 4000 / 1000 (offline)")
register_dataset("gaussian", _load_gaussian,
                 "N(0, 1) noise images 1x28x28 with random labels, 5000 / 1000 (offline)")
register_dataset("fashion-mnist", _load_fashion_mnist, "Fashion-MNIST 28x28 grey, 60000 / 10000")
register_dataset("mnist", _load_mnist, "MNIST 28x28 grey digits, 60000 / 10000")
register_dataset("cifar10", _load_cifar10, "CIFAR-10 32x32 colour, 50000 / 10000")
register_dataset("cifar100", _load_cifar100, "CIFAR-100 32x32 colour, fine labels, 50000 / 10000")
register_dataset("svhn", _load_svhn, "SVHN 32x32 colour digits, 73257 / 26032")
from . import hyperspheres as _hyperspheres  # noqa: E402,F401  (registers hyperspheres)
