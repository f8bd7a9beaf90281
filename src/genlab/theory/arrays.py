"""Inputs as float tensors and kernel matrices computed in row blocks, so that memory stays
bounded: the pieces the kernels and the NTK share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from genlab.errors import GenlabError

#: Default element budget for one block of intermediate results (2**24 floats = 64 MiB float32).
BLOCK_ELEMENTS = 2**24


def as_tensor(x: Any, name: str = "input") -> Tensor:
    """Convert a tensor, NumPy array or nested list to a tensor (no copy when possible)."""
    if isinstance(x, Tensor):
        return x
    try:
        return torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as e:
        raise GenlabError(f"{name} is not numeric array data ({type(x).__name__}): {e}") from e


def as_matrix(x: Any, name: str = "input") -> Tensor:
    """Flatten ``(n, ...)`` data to a floating ``(n, d)`` tensor (integers become float32)."""
    t = as_tensor(x, name)
    if t.ndim == 0:
        raise GenlabError(f"{name} is a scalar; pass an array of shape (n, ...) with one row each")
    t = t.reshape(t.shape[0], -1)
    if not t.is_floating_point():
        t = t.to(torch.float32)
    # one cheap reduction first; the elementwise test only when the sum is not finite
    if t.numel() and not bool(torch.isfinite(t.sum())) and not bool(torch.isfinite(t).all()):
        raise GenlabError(f"{name} contains NaN or infinite values; clean the data first")
    return t


def out_dtype(*ts: Tensor) -> torch.dtype:
    dtype = torch.promote_types(ts[0].dtype, ts[-1].dtype)
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def rows_per_block(cols: int, budget: int = BLOCK_ELEMENTS) -> int:
    """How many rows of a ``(rows, cols)`` intermediate fit in ``budget`` elements (>= 1)."""
    return max(1, budget // max(1, cols))


def pair(X: Any, Z: Any | None) -> tuple[Tensor, Tensor]:
    Xm = as_matrix(X, "X")
    Zm = Xm if Z is None else as_matrix(Z, "Z")
    if Xm.shape[1] != Zm.shape[1]:
        raise GenlabError(
            f"X has {Xm.shape[1]} features per row but Z has {Zm.shape[1]}; "
            "pass inputs of the same shape"
        )
    if Xm.device != Zm.device:
        raise GenlabError(f"X is on {Xm.device} but Z is on {Zm.device}; move them together")
    return Xm, Zm


def blockwise(X: Tensor, Z: Tensor, block: Callable[[Tensor], Tensor], chunk: int | None,
               dtype: torch.dtype) -> Tensor:
    """Fill an ``(n, m)`` matrix row block by row block with ``block(X[i:j]) -> (j - i, m)``."""
    n, m = X.shape[0], Z.shape[0]
    rows = chunk or rows_per_block(m + X.shape[1])
    out = torch.empty(n, m, dtype=dtype, device=X.device)
    for i in range(0, n, rows):
        out[i:i + rows] = block(X[i:i + rows])
    return out
