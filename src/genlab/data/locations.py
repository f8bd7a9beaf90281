"""Where data files are found and how they are read safely: the search folders (``data_dir``,
``$GENLAB_DATA``, Debian's Fashion-MNIST package, the download cache), one-line errors for
missing or unreadable files, torchvision downloads, and the shared size limit on one file."""

from __future__ import annotations

import errno
import os
import re
import stat
import subprocess
import zlib
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlab.errors import GenlabError


def one_line(text: object) -> str:
    return re.sub(r"\s+", " ", str(text)).strip()


def os_error(path: Path | str, exc: BaseException, redo: str = "") -> GenlabError:
    """A one-line GenlabError for an OSError (or a NUL byte's ValueError) on ``path``."""
    code = getattr(exc, "errno", None)
    reason = getattr(exc, "strerror", None) or one_line(exc)
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
        raise os_error(path, exc) from exc
    except ValueError as exc:
        raise os_error(path, exc) from exc
    return stat.S_ISDIR(mode) if want_dir else stat.S_ISREG(mode)


def is_file(path: Path) -> bool:
    return _is_kind(path, False)


def is_dir(path: Path) -> bool:
    return _is_kind(path, True)


def user_path(text: str | Path, what: str) -> Path:
    """``text`` (a folder the user named in ``what``) as a Path with ``~`` expanded."""
    try:
        return Path(text).expanduser()
    except RuntimeError as exc:  # ~user of an unknown user, or no home directory
        raise GenlabError(f"{what} {text}: cannot expand '~' ({one_line(exc)}); give the "
                          "folder's full path") from exc


def default_cache_dir() -> Path:
    """genlab's download folder: ``$XDG_CACHE_HOME/genlab``, else ``~/.cache/genlab``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(user_path("~", "home folder") / ".cache")
    return user_path(base, "$XDG_CACHE_HOME") / "genlab"


def _env_dir() -> Path | None:
    env = os.environ.get("GENLAB_DATA", "")
    return user_path(env, "$GENLAB_DATA") if env else None


def search_roots(data_dir: Path | None, extra: Sequence[Path] = ()) -> list[Path]:
    """data_dir, $GENLAB_DATA, ``extra`` (system packages), then the download cache."""
    roots = [data_dir, _env_dir(), *extra, default_cache_dir()]
    seen: list[Path] = []
    for root in roots:
        if root is not None and root not in seen:
            seen.append(root)
    return seen


def download_root(data_dir: Path | None) -> Path:
    return data_dir or _env_dir() or default_cache_dir()


#: Debian's standard location for the ``dataset-fashion-mnist`` package.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@lru_cache(maxsize=1)
def debian_fashion_mnist_dirs() -> tuple[Path, ...]:
    """Folders of the Debian ``dataset-fashion-mnist`` package that hold the training images:
    its standard folder when the images are there, else the folders ``dpkg -L`` names."""
    if os.path.isfile(DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz"):
        return (DEBIAN_FASHION_MNIST,)  # found where the package puts it: no dpkg to spawn
    try:
        out = subprocess.run(["dpkg", "-L", "dataset-fashion-mnist"], capture_output=True,
                             text=True, timeout=5, check=False)
        lines = out.stdout.splitlines() if out.returncode == 0 else []
    except (OSError, subprocess.SubprocessError):
        lines = []  # no dpkg (not Debian) or it hung: fall back to the standard path
    found = [Path(s.strip()).parent for s in lines
             if Path(s.strip()).name == "train-images-idx3-ubyte.gz"]
    return tuple(dict.fromkeys(found)) or (DEBIAN_FASHION_MNIST,)


def how_to_get(hint: str, failure: str) -> str:
    """``hint`` lists the offline ways to provide the files; add the download advice."""
    return f"{hint}, or retry --download with network access" if failure else \
        f"{hint}, or add --download"


def not_found(what: str, looked: Sequence[Path], hint: str, failure: str = "") -> GenlabError:
    where = ", ".join(str(p) for p in dict.fromkeys(looked))
    reason = f"; download failed: {failure}" if failure else ""
    return GenlabError(f"{what} not found (genlab looked in: {where}){reason}; "
                       f"{how_to_get(hint, failure)}")


def _torchvision_datasets() -> Any:
    import torchvision.datasets  # imported only when downloading: it is slow to import

    return torchvision.datasets


def torchvision_fetch(fetch: Callable[[Any, Path], None], root: Path, what: str,
                       looked: Sequence[Path], hint: str) -> None:
    """Run ``fetch(torchvision.datasets, root)``; any failure becomes a one-line GenlabError."""
    try:
        tvd = _torchvision_datasets()
    except ImportError as exc:
        raise not_found(what, looked, hint, f"torchvision is not importable ({exc})") from exc
    try:
        root.mkdir(parents=True, exist_ok=True)
        fetch(tvd, root)
    except Exception as exc:  # network and archive errors come in many types
        raise not_found(what, looked, hint, f"into {root}: {one_line(exc)}") from exc


#: The most data genlab reads from one IDX or .mat file (4 GiB); MNIST's training images are
#: 47 MB and all of SVHN's extra split 1.6 GB. A header claiming more is refused unread.
MAX_DATA_BYTES = 1 << 32
#: Bytes decompressed at a time, so a gzip bomb is caught after at most this much past its size.
CHUNK = 1 << 20


def read_up_to(stream: Any, n: int, path: Path, gz: bool, redo: str) -> bytes:
    """At most ``n`` bytes of ``stream`` (fewer at its end); read and gzip errors name ``path``."""
    try:
        return stream.read(n)
    except (OSError, EOFError, zlib.error) as exc:
        if gz:
            raise GenlabError(f"corrupt gzip file {path} ({one_line(exc)}); {redo}") from exc
        raise os_error(path, exc, redo) from exc


def first_folder(roots: Sequence[Path], subdirs: Sequence[str], required: Sequence[str],
                  looked: list[Path]) -> Path | None:
    """First ``root/subdir`` (``""`` = root itself) holding every ``required`` file."""
    for root in roots:
        for sub in subdirs:
            folder = root / sub if sub else root
            looked.append(folder)
            if all(is_file(folder / f) for f in required):
                return folder
    return None


def concat(parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return images_u8(images), torch.from_numpy(labels)


def images_u8(images: np.ndarray) -> torch.Tensor:
    """uint8 images (N, C, H, W) -> float32 tensor scaled to [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32).div_(255.0)
