import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

# matplotlib writes its font cache under $XDG_CACHE_HOME when pyplot is first imported. `import
# genlab` no longer imports it (names load lazily), but the mnist1d package does, inside tests that
# point XDG_CACHE_HOME at their tmp_path and check that nothing was written there; import it
# here, once, as importing genlab used to.
import matplotlib.pyplot  # noqa: E402,F401


@pytest.fixture
def digits_small():
    """A small stratified subset of scikit-learn's digits (offline, instant)."""
    import genlab

    return genlab.load_dataset("digits", train_size=400, test_size=100, seed=0)


@pytest.fixture
def one_thread():
    """Run a test on one torch thread: many small LAPACK calls thrash on 2 threads when the
    cores are shared with other jobs (10x slower). Restored afterwards."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def isolated_data(monkeypatch, tmp_path):
    """No GENLAB_DATA, a private download cache, no Debian folder, an empty in-process cache."""
    from genlab.data import registry as datasets
    from genlab.data.sources import idx

    monkeypatch.delenv("GENLAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setattr(idx, "debian_fashion_mnist_dirs", lambda: ())
    datasets.clear_cache()
    yield
    datasets.clear_cache()
    for future, _ in list(idx._AHEAD.values()):  # reads ahead a test started and left
        future.exception(timeout=30)
    idx._AHEAD.clear()
