"""Users' own models and data through figure1: torchvision and timm names, factories that take
only some of genlab's arguments, module instances, torch Datasets registered from Python or
named on the command line, a module beside the working folder, and the refusals (exit 2)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import genlab
from genlab.cli import main
from genlab.errors import GenlabError
from genlab.models.registry import build_model, model_kwargs


@pytest.fixture(autouse=True)
def forget_user_modules(monkeypatch):
    """The users' modules these tests write are forgotten after each test, and the working
    folders genlab added to ``sys.path`` dropped, so that another test's module of the same
    name is imported afresh."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in ("mynets", "mydata"):
        sys.modules.pop(name, None)
    yield
    for name in ("mynets", "mydata"):
        sys.modules.pop(name, None)


SMALL = ["--conditions", "true,random-labels", "--corruptions", "none", "--seeds", "0",
         "--epochs", "1", "--workers", "1", "--no-report", "--quiet"]


def image_tree(root: Path, classes=("a", "b"), train: int = 6, val: int = 2) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("val", val)):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)).save(
                    d / f"{i}.png")
    return root


class Pairs(torch.utils.data.Dataset):
    """A torchvision-style map-style data set: (uint8 image tensor (1, 8, 8), int label)."""

    classes = ["even", "odd"]

    def __init__(self, n: int = 60, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8)
        self.y = [i % 2 for i in range(n)]

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


# --- which arguments a factory gets -------------------------------------------------------------

def test_a_factory_gets_only_the_arguments_its_signature_names():
    shape = (3, 8, 8)

    def only_classes(num_classes):
        return None

    def channels_and_classes(in_channels, num_classes=2):
        return None

    def nothing():
        return None

    def kwargs_only(**kw):
        return None

    assert model_kwargs(only_classes, shape, 5) == {"num_classes": 5}
    assert model_kwargs(channels_and_classes, shape, 5) == {"in_channels": 3, "num_classes": 5}
    assert model_kwargs(nothing, shape, 5) == {}
    # torchvision's resnet18(*, weights=None, progress=True, **kwargs): num_classes only
    assert model_kwargs(kwargs_only, shape, 5) == {"num_classes": 5}
    assert model_kwargs(lambda input_shape, num_classes: None, shape, 5) == {
        "input_shape": shape, "num_classes": 5}


def test_torchvision_and_timm_names_build_for_the_data():
    m = build_model("torchvision.models:resnet18", (3, 32, 32), 7)
    assert m.fc.out_features == 7
    pytest.importorskip("timm")
    t = build_model("timm:resnet18", (1, 32, 32), 4)
    assert t.conv1.in_channels == 1 and t.fc.out_features == 4


def test_a_module_instance_is_copied_for_each_run():
    from genlab.api import model_name
    from genlab.models.registry import MODELS

    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    name = model_name(net)
    a, b = MODELS.get(name).value(), MODELS.get(name).value()
    assert a is not net and a is not b
    with torch.no_grad():
        a[1].weight.add_(1.0)  # training one copy changes neither the others nor the original
    assert torch.equal(b[1].weight, net[1].weight)
    net[1].weight.data.zero_()  # nor does a later edit of the instance
    assert not torch.equal(MODELS.get(name).value()[1].weight, net[1].weight)


# --- end to end through figure1 -----------------------------------------------------------------

@pytest.mark.slow
def test_torchvision_resnet18_on_a_colour_imagefolder_tree(tmp_path, capsys):
    tree = image_tree(tmp_path / "tree")
    out = tmp_path / "out"
    rc = main(["run", "figure1", "--dataset", "imagefolder", "--data-dir", str(tree),
               "--model", "torchvision.models:resnet18", "--out", str(out), *SMALL])
    assert rc == 0, capsys.readouterr().err
    runs = genlab.load(out)
    assert sorted(runs["condition"]) == ["random-labels", "true"]
    assert set(runs["status"]) == {"done"}
    # the tree was sized to the model's default input (32), not Inception's 299
    assert set(runs["dataset"]) == {"imagefolder-32"}
    assert set(runs["n_params"]) == {11_177_538}  # ResNet-18 with a 2-class head


def test_image_size_is_an_option_and_refused_where_it_does_not_apply(tmp_path, capsys):
    tree = image_tree(tmp_path / "tree", train=2, val=1)
    p = genlab.plan("figure1", genlab.Options(dataset="imagefolder", models=["mlp:8"],
                                              image_size=12, conditions=["true"],
                                              corruptions=[], seeds=[0]),
                    data_dir=tree)
    assert {s.dataset for s in p.specs} == {"imagefolder-12"}
    assert p.specs[0].model_id == "" and "imagefolder-12" in genlab.list_datasets()
    out = tmp_path / "o"
    rc = main(["run", "figure1", "--dataset", "digits", "--image-size", "16", "--model",
               "mlp:8", "--out", str(out), *SMALL])
    err = capsys.readouterr().err
    assert rc == 2 and "--image-size" in err and "imagefolder" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.slow
def test_a_factory_taking_only_num_classes_and_a_module_beside_the_working_folder(
        tmp_path, monkeypatch, capsys):
    (tmp_path / "mynets.py").write_text(textwrap.dedent("""
        from torch import nn

        def small(num_classes):
            return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(),
                                 nn.Linear(32, num_classes))

        def three_channels(num_classes):
            return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(),
                                 nn.Linear(4 * 6 * 6, num_classes))

        def wrong_width(num_classes):
            return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes + 1))

        def no_parameters():
            return nn.Flatten()
    """))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    sys.modules.pop("mynets", None)
    rc = main(["run", "figure1", "--dataset", "digits", "--model", "mynets:small",
               "--out", "out", "--train-size", "200", "--test-size", "100", *SMALL])
    assert rc == 0, capsys.readouterr().err
    assert set(genlab.load("out")["status"]) == {"done"}
    for factory, words in (("three_channels", "channels"), ("wrong_width", "width"),
                           ("no_parameters", "no trainable parameters")):
        rc = main(["run", "figure1", "--dataset", "digits", "--model", f"mynets:{factory}",
                   "--out", f"bad-{factory}", *SMALL])
        err = capsys.readouterr().err
        assert rc == 2, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert not Path(f"bad-{factory}").exists()
        assert words in err, err


@pytest.mark.slow
def test_a_torch_dataset_registered_from_python_runs_like_a_builtin(tmp_path):
    genlab.register_dataset("pairs", Pairs(80), test=Pairs(20, seed=1))
    d = genlab.load_dataset("pairs")
    assert d.input_shape == (1, 8, 8) and d.num_classes == 2 and d.classes == ["even", "odd"]
    ds = Pairs(80)
    assert torch.equal(d.x_train[5], ds.x[5].float() / 255) and d.y_train[5] == ds.y[5]
    df = genlab.run("figure1", tmp_path / "out", dataset="pairs", models=["mlp:16"],
                    conditions=["true", "random-labels"], corruptions=[], seeds=[0], epochs=2)
    assert set(df["status"]) == {"done"} and len(df) == 2
    rl = df[df["condition"] == "random-labels"].iloc[0]
    # the condition changed about half of the 80 labels (2 classes)
    assert 20 <= rl["labels_changed"] <= 60
    genlab.DATASETS.remove("pairs")


def test_one_dataset_is_split_and_a_factory_with_train_is_called_per_split():
    from genlab.data.registry import torch_loader

    whole = torch_loader("w", Pairs(50))(None, False)
    assert len(whole.y_train) == 40 and len(whole.y_test) == 10
    assert whole.y_test.bincount().tolist() == [5, 5]  # stratified
    calls = []

    def factory(train: bool):
        calls.append(train)
        return Pairs(30 if train else 10)

    d = torch_loader("f", factory)(None, False)
    assert calls == [True, False] and len(d.y_train) == 30 and len(d.y_test) == 10


def test_dataset_named_as_an_import_path_on_the_command_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "mydata.py").write_text(textwrap.dedent("""
        import torch

        class Squares(torch.utils.data.Dataset):
            def __len__(self):
                return 40

            def __getitem__(self, i):
                return torch.full((1, 4, 4), i / 40.0), i % 4

        def make(train):
            return Squares()

        def ragged():
            return [(torch.zeros(1, 4, 4), 0), (torch.zeros(1, 5, 5), 1)]
    """))
    monkeypatch.chdir(tmp_path)
    sys.modules.pop("mydata", None)
    d = genlab.load_dataset("mydata:make")
    assert d.num_classes == 4 and d.input_shape == (1, 4, 4)
    # in worker processes too, which know the name only from the spec (case kept)
    rc = main(["run", "figure1", "--dataset", "mydata:Squares", "--model", "mlp:4", "--out",
               "ok", *SMALL[:8], "--workers", "2", "--quiet", "--no-report"])
    assert rc == 0, capsys.readouterr().err
    runs = genlab.load("ok")
    assert set(runs["status"]) == {"done"} and set(runs["n_train"]) == {32}
    rc = main(["run", "figure1", "--dataset", "mydata:ragged", "--model", "mlp:4",
               "--out", "bad", *SMALL])
    err = capsys.readouterr().err
    assert rc == 2 and "one shape" in err and len(err.strip().splitlines()) == 1
    assert not Path("bad").exists()
    with pytest.raises(GenlabError, match="no data set or factory 'nope'"):
        genlab.load_dataset("mydata:nope")


@pytest.mark.slow
def test_the_quickstart_notebook_executes(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    path = Path(__file__).parent.parent / "examples" / "quickstart.ipynb"
    nb = nbformat.read(path, as_version=4)
    monkeypatch.setenv("GENLAB_QUICKSTART_EPOCHS", "20")
    monkeypatch.setenv("GENLAB_QUICKSTART_OUT", str(tmp_path / "runs"))
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                     for o in c.get("outputs", []))
    assert "refused:" in text and "width" in text
    assert "random labels: train" in text and (tmp_path / "runs" / "report.html").exists()
    runs = genlab.load(tmp_path / "runs")
    assert len(runs) == 4 and set(runs["status"]) == {"done"}


def test_names_registered_in_this_process_train_here_not_in_workers(tmp_path, capsys):
    genlab.register_dataset("pairs-here", Pairs(40), test=Pairs(10, seed=1))

    @genlab.register_model("tiny-here")
    def tiny(input_shape, num_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes))

    try:
        # --workers left at its default (one per core): worker processes would not know them
        rc = main(["run", "figure1", "--dataset", "pairs-here", "--model", "tiny-here",
                   "--conditions", "true,random-labels", "--corruptions", "none", "--seeds",
                   "0", "--epochs", "1", "--no-report", "--out", str(tmp_path)])
        err = capsys.readouterr().err
        assert rc == 0, err
        assert "this process (data set 'pairs-here' is registered only in this process" in err
        assert set(genlab.load(tmp_path)["status"]) == {"done"}
    finally:
        genlab.DATASETS.remove("pairs-here")
        genlab.models.MODELS.remove("tiny-here")
