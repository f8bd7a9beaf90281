import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def digits_small():
    """A small stratified subset of scikit-learn's digits (offline, instant)."""
    import genlab

    return genlab.load_dataset("digits", train_size=400, test_size=100, seed=0)
