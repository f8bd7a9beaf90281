"""genlab.data.sources.packaged: split from genlab.data.registry. TODO docstring."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from genlab.data.registry import (
    Dataset,
    build_dataset,
    stratified_indices,
)
from genlab.data.sources.idx import DIGIT_CLASSES
from genlab.errors import GenlabError

#: Images held out as the digits test split (fixed stratified choice, seed DIGITS_SPLIT_SEED).
DIGITS_TEST_SIZE = 300
DIGITS_SPLIT_SEED = 0
def load_digits(data_dir: Path | None, download: bool) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / np.float32(16.0)).unsqueeze(1)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    test_idx = stratified_indices(y, DIGITS_TEST_SIZE, np.random.default_rng(DIGITS_SPLIT_SEED))
    is_test = torch.zeros(len(y), dtype=torch.bool)
    is_test[test_idx] = True
    return build_dataset("digits", x[~is_test], y[~is_test], x[is_test], y[is_test], DIGIT_CLASSES,
                  "scikit-learn load_digits (bundled, 8x8, values/16)")
def load_mnist1d(data_dir: Path | None, download: bool) -> Dataset:
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
    return build_dataset("mnist1d", x_train, y_train, x_test, y_test, DIGIT_CLASSES,
                  f"mnist1d.make_dataset (generated offline, seed {MNIST1D_SEED})")


#: MNIST-1D generation parameters (the package's defaults: 5000 samples, 80% train).
MNIST1D_NUM_SAMPLES = 5000


MNIST1D_TRAIN_SPLIT = 0.8


MNIST1D_SEED = 42
