"""Writing only the files genlab owns: atomic, exclusive, and never through a planted symlink.

Every file genlab writes inside a results folder goes through :func:`atomic_write`: the bytes
land in a temporary file created exclusively (``O_EXCL | O_NOFOLLOW``) in the destination's
folder, are flushed, and the temporary file is renamed over the destination. A rename replaces
a symlink at the destination instead of writing through it, and an exclusive create refuses a
name someone planted, so a link in ``--out`` can never make genlab write outside it. A reader
sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from genlab.errors import GenlabError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


#: The longest file or folder name most file systems take (bytes).


def owned_dir(path: str | Path) -> Path:
    """Create folder ``path`` (and its parents) if needed; refuse it if it is a symlink.

    Only the last component is checked: the caller chose the folders above it (``--out``).
    """
    path = Path(path)
    if path.is_symlink():
        raise GenlabError(f"{path} is a symbolic link; genlab writes only real folders it "
                          "owns: remove the link or choose another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise GenlabError(f"{path} exists and is not a folder; remove it or choose another "
                          "--out") from None
    except OSError as e:
        raise GenlabError(f"cannot create folder {path}: {e.strerror or e}") from None
    return path


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` atomically through an exclusive temporary file beside it."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    folder = owned_dir(path.parent)
    tmp = folder / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
    except OSError as e:
        raise GenlabError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise GenlabError(f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
