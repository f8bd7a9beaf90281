"""Nagarajan & Kolter 2019's two-hypersphere task, its S' construction, and binary wrappers.

``hyperspheres``: inputs uniform on the sphere of radius 1 (class 0) or 1.1 (class 1) in d = 1000
dimensions, stored as images of shape (1, 1, d). ``hyperspheres-d{d}`` for other d (a fixed list
is registered on import; :func:`register_hyperspheres` adds more). S' (:func:`flip_to_other_sphere`)
projects every training point onto the other sphere and flips its label.

Binary variants ``NAME-binary`` of the label sets (mnist, fashion-mnist, digits, mnist1d, cifar10,
svhn): label y -> 1 if y >= K/2 else 0 (Dziugaite & Roy 2017's binary MNIST is labels > 4 vs
<= 4, the same split for K = 10). They are ordinary registered data sets, so a spec names them
and every condition (corrupt:p, random-labels) acts on the binary labels.
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path

import torch

from genlab.data.registry import (
    Dataset,
    load_dataset,
    register_dataset,
)
from genlab.data.registry import (
    build_dataset as _build,
)
from genlab.errors import GenlabError

RADII = (1.0, 1.1)
DEFAULT_D = 1000
#: full split sizes (subsets are drawn by train_size / test_size, stratified); 65536 is the
#: largest training set of Nagarajan & Kolter's plots
N_TRAIN = 65536
N_TEST = 4000
REGISTERED_D = (2, 10, 50, 100, 200, 500, 1000, 2000, 5000)
#: the largest dimension accepted: both splits then take 28 GB as float32
MAX_D = 100_000


def sample_hyperspheres(n: int, d: int = DEFAULT_D, seed: int = 0,
                        radii: tuple[float, float] = RADII) -> tuple[torch.Tensor, torch.Tensor]:
    """n points (n, d), half on each sphere (class i on radius radii[i]), shuffled; float64 exact.

    Returns float32 x (n, d) and int64 labels; row norms equal the radius up to float32 rounding.
    """
    if n < 2 or d < 2:
        raise GenlabError(f"hyperspheres need n >= 2 and d >= 2, got n={n}, d={d}")
    g = torch.Generator().manual_seed(int(seed))
    y = torch.arange(n) % 2
    y = y[torch.randperm(n, generator=g)]
    r = torch.tensor(radii, dtype=torch.float64)[y]
    x = torch.empty(n, d, dtype=torch.float32)
    chunk = max(1, 2**24 // d)  # float64 rows in blocks of ~128 MB, so large n*d fits
    for i in range(0, n, chunk):
        z = torch.randn(min(chunk, n - i), d, generator=g, dtype=torch.float64)
        x[i:i + chunk] = z / z.norm(dim=1, keepdim=True) * r[i:i + chunk, None]
    return x, y.to(torch.int64)


def flip_to_other_sphere(x: torch.Tensor, y: torch.Tensor,
                         radii: tuple[float, float] = RADII) -> tuple[torch.Tensor, torch.Tensor]:
    """S': each point x (label y) projected onto the other sphere, x * r_{1-y} / ||x||, label 1-y.

    ``x`` is (n, d) or (n, 1, 1, d) raw (un-normalised) points; the shape is kept.
    """
    shape = x.shape
    flat = x.reshape(len(x), -1).to(torch.float64)
    target = torch.tensor(radii, dtype=torch.float64)[1 - y]
    out = flat / flat.norm(dim=1, keepdim=True) * target[:, None]
    return out.to(x.dtype).reshape(shape), (1 - y).to(torch.int64)


def _loader(d: int):
    def load(data_dir: Path | None, download: bool) -> Dataset:
        xtr, ytr = sample_hyperspheres(N_TRAIN, d, seed=1_000_003)
        xte, yte = sample_hyperspheres(N_TEST, d, seed=2_000_003)
        return _build(f"hyperspheres-d{d}", xtr.view(-1, 1, 1, d), ytr, xte.view(-1, 1, 1, d),
                      yte, ["radius 1", "radius 1.1"],
                      f"uniform on spheres of radius 1 / 1.1 in d={d} (Nagarajan & Kolter 2019)")
    return load


def hyperspheres_name(d: int) -> str:
    return "hyperspheres" if d == DEFAULT_D else f"hyperspheres-d{d}"


def register_hyperspheres(d: int) -> str:
    """Register ``hyperspheres-d{d}`` (in this process) and return its name."""
    whole = not isinstance(d, bool) and (isinstance(d, numbers.Integral) or (
        isinstance(d, numbers.Real) and math.isfinite(d) and float(d).is_integer()))
    if not whole or d < 2:
        raise GenlabError(f"hypersphere dimension d must be an integer >= 2, got {d}")
    if d > MAX_D:
        gb = (N_TRAIN + N_TEST) * int(d) * 4 / 1e9
        raise GenlabError(f"hypersphere dimension d={int(d)} is too large ({gb:.0f} GB of "
                          f"float32 points); use d <= {MAX_D}")
    name = hyperspheres_name(int(d))
    register_dataset(name, _loader(int(d)), f"two hyperspheres, radii 1 and 1.1, d={d} "
                     f"(Nagarajan & Kolter 2019), {N_TRAIN} / {N_TEST}")
    return name


def register_named(name: str) -> None:
    """Register ``hyperspheres-d{d}`` for a name of that family (any d on first use, so that
    spawned worker processes resolve names like hyperspheres-d300)."""
    digits = name.removeprefix("hyperspheres-d")
    if len(digits) > len(str(MAX_D)):  # int() refuses thousands of digits with a ValueError
        raise GenlabError(f"hypersphere dimension d={digits[:20]}... is too large; use d <= "
                          f"{MAX_D}")
    register_hyperspheres(int(digits))


#: the names of the hyperspheres family
FAMILY = r"hyperspheres-d\d+"


# --- binary variants ------------------------------------------------------------------------------

BINARY_BASES = ("mnist", "fashion-mnist", "digits", "mnist1d", "cifar10", "svhn")


def binarize(data: Dataset) -> Dataset:
    """Labels y -> (y >= K/2): two classes."""
    k = data.num_classes
    half = (k + 1) // 2
    return data.replace(name=f"{data.name}-binary", y_train=(data.y_train >= half).long(),
                        y_test=(data.y_test >= half).long(), num_classes=2,
                        classes=[f"label < {half}", f"label >= {half}"],
                        source=f"{data.source}; binary labels y >= {half}")


def binary_loader(base: str):
    """The loader of ``{base}-binary``: data set ``base`` with labels y >= K/2."""
    def load(data_dir: Path | None, download: bool) -> Dataset:
        return binarize(load_dataset(base, data_dir=data_dir, download=download))
    return load

