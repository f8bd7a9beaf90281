"""Synthetic data sets built offline from a fixed seed: ``gaussian`` noise images with random
labels."""

from __future__ import annotations

from pathlib import Path

import torch

from genlab.data.registry import Dataset, build_dataset

#: Gaussian-noise data set parameters; change them then call clear_cache() to take effect.
GAUSSIAN_SHAPE = (1, 28, 28)
GAUSSIAN_NUM_CLASSES = 10
GAUSSIAN_TRAIN_SIZE = 5000
GAUSSIAN_TEST_SIZE = 1000
GAUSSIAN_SEED = 0


def load_gaussian(data_dir: Path | None, download: bool) -> Dataset:
    gen = torch.Generator().manual_seed(GAUSSIAN_SEED)
    n = GAUSSIAN_TRAIN_SIZE + GAUSSIAN_TEST_SIZE
    x = torch.randn((n, *GAUSSIAN_SHAPE), generator=gen)
    y = torch.randint(GAUSSIAN_NUM_CLASSES, (n,), generator=gen)
    cut = GAUSSIAN_TRAIN_SIZE
    classes = [str(i) for i in range(GAUSSIAN_NUM_CLASSES)]
    return build_dataset("gaussian", x[:cut], y[:cut], x[cut:], y[cut:], classes,
                  f"synthetic N(0, 1) pixels, uniform random labels (seed {GAUSSIAN_SEED})")
