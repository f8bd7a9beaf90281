"""Streaming ImageFolder trees from disk: same pixels, labels and training as in memory."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

import genlab
from genlab.data import registry as datasets
from genlab.data.conditions import apply_condition
from genlab.data.sources.imagefolder import imagefolder_name
from genlab.data.streaming import ImageFiles, OrderShard
from genlab.errors import GenlabError
from genlab.execution.prepare import prepare
from genlab.spec import Recipe, RunSpec
from genlab.training.loop import train

CLASSES = ("ant", "bee", "cat")


def _tree(root: Path, train: int = 10, val: int = 4) -> Path:
    """A tiny ImageFolder tree: odd-sized PNGs and JPEGs, some grey, one class folder missing
    from val."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("val", val)):
        for c in CLASSES if split == "train" else CLASSES[:2]:
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                h, w = (40, 36) if i % 2 else (33, 50)
                img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
                if i % 3 == 0:
                    img = img.convert("L")
                img.save(d / (f"{i}.jpg" if i % 2 else f"{i}.png"))
    return root


@pytest.fixture
def tree(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLAB_LOADER_WORKERS", "2")  # real worker processes, few of them
    datasets.clear_cache()
    yield _tree(tmp_path / "tree")
    datasets.clear_cache()


def _spec(dataset: str, condition: str = "random-labels", **kw) -> RunSpec:
    recipe = Recipe(lr=0.05, batch_size=8, epochs=2, target_train_acc=0.0)
    return RunSpec(dataset, "mlp:16", condition, train_size=24, test_size=6, seed=3,
                   recipe=recipe, **kw)


def test_streamed_data_equals_in_memory_data(tree):
    mem = prepare(_spec(imagefolder_name(32)), data_dir=tree)
    st = prepare(_spec(imagefolder_name(32, stream=True)), data_dir=tree)
    assert isinstance(st.x_train, ImageFiles) and isinstance(mem.x_train, torch.Tensor)
    assert "streamed from disk" in st.data.source and "in memory" in mem.data.source
    assert st.x_train.shape == mem.x_train.shape == (24, 3, 32, 32)
    assert st.data.classes == mem.data.classes == list(CLASSES)
    # the same stratified subset, the same seeded random labels (not the true ones)
    assert torch.equal(st.y_train, mem.y_train) and torch.equal(st.y_test, mem.y_test)
    assert st.info.labels_changed == mem.info.labels_changed > 0
    assert st.data.mean == mem.data.mean and st.data.std == mem.data.std
    # one epoch's batches: the same images in the same order, whole or shared by two ranks
    perm = torch.randperm(24, generator=torch.Generator().manual_seed(0))
    got = list(st.x_train.batches(perm, 8))
    assert [len(b) for b in got] == [8, 8, 8]
    assert torch.equal(torch.cat(got), mem.x_train[perm])
    for rank in (0, 1):
        shares = list(st.x_train.batches(perm, 8, (rank, 2)))
        want = [mem.x_train[perm[i:i + 8][rank::2]] for i in range(0, 24, 8)]
        assert all(torch.equal(a, b) for a, b in zip(shares, want, strict=True))
    assert list(OrderShard([5, 6, 7, 8], 1, 2)) == [6, 8]
    with pytest.raises(GenlabError, match="multiples of the number of processes"):
        next(st.x_train[:23].batches(torch.arange(23), 8, (0, 2)))


def test_streaming_trains_the_same_network_as_in_memory(tree):
    runs = []
    for stream in (False, True):
        spec = _spec(imagefolder_name(32, stream=stream))
        prep = prepare(spec, data_dir=tree)
        torch.manual_seed(spec.seed)
        model = genlab.build_model(spec.model, tuple(prep.x_train.shape[1:]), 3)
        res = train(model, prep.x_train, prep.y_train, prep.x_test, prep.y_test, spec.recipe,
                    seed=spec.seed)
        runs.append((res, model))
    (a, ma), (b, mb) = runs
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in a.history]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in b.history]
    assert len(strip) == 2 and b.state.step == 6
    for p, q in zip(ma.parameters(), mb.parameters(), strict=True):
        assert torch.equal(p, q)
    from genlab.experiments.table2 import topk_accuracy

    st = prepare(_spec(imagefolder_name(32, stream=True)), data_dir=tree)
    mem = prepare(_spec(imagefolder_name(32)), data_dir=tree)
    assert topk_accuracy(mb, st.x_test, st.y_test, batch=4) == topk_accuracy(
        ma, mem.x_test, mem.y_test, batch=4)


def test_large_trees_stream_automatically_and_pixels_conditions_refuse(tree, monkeypatch):
    monkeypatch.setenv("GENLAB_IMAGEFOLDER_MAX_GB", "0.0001")  # our tree: 0.0005 GB
    data = datasets.load_dataset(imagefolder_name(32), data_dir=tree)
    assert isinstance(data.x_train, ImageFiles) and "streamed from disk" in data.source
    noisy, info = apply_condition(data, "corrupt:0.5", 0)
    assert info.labels_changed > 0 and noisy.x_train is data.x_train
    with pytest.raises(GenlabError, match="changes pixels.*streamed from disk"):
        apply_condition(data, "shuffled-pixels", 0)
    monkeypatch.setenv("GENLAB_LOADER_WORKERS", "two")
    with pytest.raises(GenlabError, match="GENLAB_LOADER_WORKERS"):
        next(data.x_test.in_order(4))


def test_unreadable_image_is_a_one_line_error(tree):
    (tree / "val" / "ant" / "broken.jpg").write_bytes(b"not a jpeg")
    data = datasets.load_dataset(imagefolder_name(32, stream=True), data_dir=tree)
    with pytest.raises(GenlabError, match=r"^cannot read image .*broken\.jpg") as e:
        data.x_test.decode()
    assert "\n" not in str(e.value)


def test_evaluating_mid_epoch_does_not_disturb_the_epoch_being_read(tree):
    """eval_steps evaluates the training split while its epoch is half read: each purpose has
    its own loader, so streamed training still equals in-memory training step for step."""
    histories = []
    for stream in (False, True):
        spec = _spec(imagefolder_name(32, stream=stream))
        spec = dataclasses.replace(spec, recipe=dataclasses.replace(spec.recipe, eval_steps=2))
        prep = prepare(spec, data_dir=tree)
        torch.manual_seed(spec.seed)
        model = genlab.build_model(spec.model, tuple(prep.x_train.shape[1:]), 3)
        res = train(model, prep.x_train, prep.y_train, prep.x_test, prep.y_test, spec.recipe,
                    seed=spec.seed)
        histories.append([{k: v for k, v in r.items() if k != "seconds"}
                          for r in res.history])
    assert [r["step"] for r in histories[1]] == [2, 3, 4, 6]
    assert histories[0] == histories[1]


def test_loader_workers_are_not_forked_persist_and_stop_cleanly(tree):
    """Workers come from a fork server (a fork of a process running gloo's threads can hang),
    serve every epoch of a view, and stop when it is dropped (exit code 0: asked, not
    killed after the DataLoader's 5 s wait)."""
    import gc

    data = datasets.load_dataset(imagefolder_name(32, stream=True), data_dir=tree)
    x = data.x_train
    for _ in range(2):  # two passes, as two epochs
        assert sum(len(b) for b in x.batches(torch.arange(len(x)), 8)) == len(x)
    (plan,) = x._plans.values()
    assert plan.loader.multiprocessing_context.get_start_method() != "fork"
    workers = list(plan.loader._iterator._workers)
    assert len(workers) == 2 and all(w.is_alive() for w in workers)
    del x, plan, data
    gc.collect()
    for w in workers:
        w.join(timeout=30)
    assert [w.exitcode for w in workers] == [0, 0]


def test_imagefolder_names_resolve_in_fresh_worker_processes(tree, tmp_path):
    """`genlab run table2` on the CPU trains in spawned worker processes, which know only
    what import registers: imagefolder-SIZE[-stream] must resolve there too."""
    import sqlite3
    import subprocess
    import sys

    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "genlab.cli", "run", "table2", "--data-dir",
                        str(tree), "--out", str(out), "--set", "image_size=32", "--set",
                        "loader=stream", "--model", "mlp:16", "--epochs", "1", "--workers",
                        "2", "--device", "cpu", "--no-report"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "2 worker processes" in r.stdout + r.stderr
    with sqlite3.connect(out / "genlab.sqlite") as db:
        assert {s for (s,) in db.execute("SELECT status FROM runs")} == {"done"}
        assert {s for (s,) in db.execute("SELECT status FROM tasks")} == {"done"}


@pytest.mark.parametrize("nhwc", [False, True])
def test_resident_batches_are_the_indexed_rows_in_their_layout(nhwc):
    from genlab.training.images import Resident

    x = torch.randn(50, 3, 4, 4)
    if nhwc:
        x = x.contiguous(memory_format=torch.channels_last)
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(0))
    got = list(Resident(x).batches(perm, 16))
    assert [len(b) for b in got] == [16, 16, 16, 2]
    for i, b in enumerate(got):
        want = x[perm[16 * i:16 * i + 16]]
        assert torch.equal(b, want) and b.stride() == want.stride()
    shares = list(Resident(x).batches(perm, 16, (1, 2)))
    assert torch.equal(shares[0], x[perm[1:16:2]])
