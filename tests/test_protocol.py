"""The paper's protocol: preprocessing, augmentation, recipes, presets, Table 1 and Figure 2."""

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import genlab
from genlab.cli import main
from genlab.data import augment, preprocess
from genlab.data import registry as datasets
from genlab.errors import GenlabError
from genlab.execution.execute import save_checkpoint
from genlab.execution.prepare import prepare
from genlab.experiments import Options, plan
from genlab.models import recipes
from genlab.spec import Recipe, RunSpec
from genlab.training.checkpoint import load_checkpoint
from genlab.training.loop import train

# --- preprocessing ----------------------------------------------------------------------------


def test_whitening_matches_hand_computation():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4) / 100.0
    out = preprocess.whiten(x)
    for i in range(2):
        v = x[i].numpy().ravel().astype(np.float64)
        want = (v - v.mean()) / max(v.std(), 1 / math.sqrt(v.size))
        np.testing.assert_allclose(out[i].numpy().ravel(), want, rtol=1e-5, atol=1e-5)


def test_whitening_floors_the_std_at_one_over_sqrt_numel():
    x = torch.full((1, 3, 4, 4), 0.5)
    x[0, 0, 0, 0] = 0.5 + 1e-4  # std far below 1/sqrt(48)
    out = preprocess.whiten(x)
    v = x.numpy().ravel().astype(np.float64)
    np.testing.assert_allclose(out.numpy().ravel(), (v - v.mean()) * math.sqrt(48), rtol=1e-4,
                               atol=1e-6)
    assert torch.equal(preprocess.whiten(torch.ones(1, 1, 2, 2)), torch.zeros(1, 1, 2, 2))


def test_paper_preprocessing_crops_32_to_28_at_2_30_then_whitens():
    x = torch.rand(3, 3, 32, 32)
    out = preprocess.apply("paper", x, (0.0,) * 3, (1.0,) * 3)
    assert out.shape == (3, 3, 28, 28)
    torch.testing.assert_close(out, preprocess.whiten(x[:, :, 2:30, 2:30]))
    assert preprocess.output_shape("paper", (3, 32, 32)) == (3, 28, 28)
    small = torch.rand(2, 1, 28, 28)  # 28x28 is not cropped
    assert preprocess.apply("paper", small, (0.0,), (1.0,)).shape == small.shape
    assert preprocess.output_shape("paper", (1, 28, 28)) == (1, 28, 28)


def test_normalize_and_none():
    x = torch.rand(4, 2, 5, 5)
    out = preprocess.apply("normalize", x, (0.5, 0.25), (2.0, 0.5))
    torch.testing.assert_close(out[:, 1], (x[:, 1] - 0.25) / 0.5)
    assert preprocess.apply("none", x, (0.0, 0.0), (1.0, 1.0)) is x
    with pytest.raises(GenlabError, match="unknown preprocessing 'zca'"):
        preprocess.apply("zca", x, (0.0,), (1.0,))


def test_normalize_stays_on_the_batchs_device():
    # streamed batches are normalized on the GPU; the meta device stands in for it on the CPU
    x = torch.rand(4, 2, 5, 5, device="meta")
    assert preprocess.apply("normalize", x, (0.5, 0.25), (2.0, 0.5)).device == x.device


def test_prepare_applies_the_specs_preprocessing():
    spec = RunSpec("digits", "mlp:8", train_size=50, test_size=20, preprocess="paper")
    prep = prepare(spec)
    flat = prep.x_train.reshape(len(prep.x_train), -1)
    torch.testing.assert_close(flat.mean(1), torch.zeros(len(flat)), atol=1e-5, rtol=0)
    torch.testing.assert_close(flat.std(1, unbiased=False), torch.ones(len(flat)), atol=1e-4,
                               rtol=0)


# --- augmentation -----------------------------------------------------------------------------


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", ["crop", "flip", "crop+flip", "color", "crop+flip+color"])
def test_augmentation_is_seeded_and_keeps_shapes(name):
    f = augment.make_augment(name)
    x = torch.rand(16, 3, 28, 28)
    a, b = f(x, _gen(1)), f(x, _gen(1))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert not torch.equal(f(x, _gen(2)), a)


def test_crop_shifts_content_within_the_padding():
    x = torch.zeros(64, 1, 12, 12)
    x[:, 0, 6, 6] = 1.0  # one bright pixel in the middle
    out = augment.random_crop(x, _gen(0), pad=4)
    pos = out.reshape(64, -1).argmax(1)
    rows, cols = pos // 12, pos % 12
    assert (out.reshape(64, -1).sum(1) == 1).all()  # never cropped away from the middle
    assert ((rows - 6).abs() <= 4).all() and ((cols - 6).abs() <= 4).all()
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 10  # really shifts
    # content moves as a whole: a crop is a translation of the zero-padded image
    img = torch.rand(1, 3, 10, 10)
    c = augment.random_crop(img, _gen(5), pad=2)
    padded = torch.nn.functional.pad(img, (2, 2, 2, 2))
    hits = [(i, j) for i in range(5) for j in range(5)
            if torch.equal(padded[..., i:i + 10, j:j + 10], c)]
    assert len(hits) == 1


def test_flip_mirrors_whole_images():
    x = torch.rand(32, 3, 6, 6)
    out = augment.random_flip(x, _gen(0))
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(3)).flatten(1).all(1)
    assert (same | mirrored).all() and same.any() and mirrored.any()


def test_colour_perturbations_keep_range_semantics():
    g = torch.rand(8, 1, 1, 1).expand(8, 3, 5, 5).clone()  # grey images
    shift = torch.full((8, 1, 1, 1), 0.3)
    # hue rotation keeps grey pixels grey and keeps luma
    torch.testing.assert_close(augment.adjust_hue(g, shift.view(-1)), g, atol=1e-5, rtol=0)
    x = torch.rand(8, 3, 5, 5)
    h = augment.adjust_hue(x, shift.view(-1))
    torch.testing.assert_close(augment._gray(h), augment._gray(x), atol=1e-5, rtol=0)
    full = augment.adjust_hue(x, torch.ones(8))  # a whole turn is the identity
    torch.testing.assert_close(full, x, atol=1e-5, rtol=0)
    out = augment.color(x, _gen(0))
    # brightness is bounded, contrast scales around each image's mean: moderate values
    assert out.abs().max() < 4
    assert torch.isfinite(out).all()
    one = augment.color(torch.rand(4, 1, 5, 5), _gen(0))  # grey images: no saturation/hue
    assert one.shape == (4, 1, 5, 5)


@pytest.mark.parametrize("world", [2, 3])
def test_each_rank_augments_its_share_as_one_process_would(world):
    """Data-parallel ranks draw for the whole global batch and keep their positions: together
    they augment every image as one process does, and no two ranks share a draw."""
    aug = augment.make_augment("crop+flip+color")
    x = torch.rand(12, 3, 8, 8)
    whole = aug(x, _gen(3))
    for rank in range(world):
        mine = slice(rank, None, world)
        torch.testing.assert_close(aug(x[mine], _gen(3), (len(x), mine)), whole[mine])
    # without the share each rank would redo the first draws: rank 1 would copy rank 0's
    assert not torch.allclose(aug(x[1::world], _gen(3)), whole[1::world])


def test_bad_augmentation_names():
    with pytest.raises(GenlabError, match="unknown augmentation 'rotate'"):
        augment.parse_augment("crop+rotate")
    assert augment.make_augment("") is None and augment.make_augment("none") is None


# --- specs, models, recipes -------------------------------------------------------------------


def test_spec_validation_errors():
    with pytest.raises(GenlabError, match="dropout must be in"):
        RunSpec("digits", "mlp1x512", dropout=1.5).validate()
    with pytest.raises(GenlabError, match="unknown preprocessing"):
        RunSpec("digits", "mlp1x512", preprocess="zca").validate()
    with pytest.raises(GenlabError, match="unknown augmentation"):
        RunSpec("digits", "mlp1x512", augment="blur").validate()
    RunSpec("digits", "mlp1x512", preprocess="paper", augment="crop+flip", dropout=0.5).validate()


def test_new_fields_change_the_hash_only_when_set():
    base = RunSpec("digits", "mlp1x512")
    assert "preprocess" not in base.to_dict()  # default runs keep their old hashes
    hashes = {base.hash, base.replace(preprocess="paper").hash,
              base.replace(augment="crop").hash, base.replace(dropout=0.5).hash}
    assert len(hashes) == 4
    again = RunSpec.from_dict(base.replace(augment="crop", dropout=0.5).to_dict())
    assert again.augment == "crop" and again.dropout == 0.5


def test_dropout_reaches_models_with_a_place_for_it():
    m = genlab.build_model("alexnet-small", (3, 28, 28), 10, dropout=0.3)
    assert m.dropout == 0.3
    with pytest.raises(GenlabError, match="no place for dropout"):
        genlab.build_model("mlp1x512", (3, 28, 28), 10, dropout=0.3)
    with pytest.raises(GenlabError, match="no place for dropout"):
        genlab.build_model("inception-small", (3, 28, 28), 10, dropout=0.3)


def test_recipes_resolve_per_model_and_flags_override():
    assert recipes.recipe_for("inception-small").lr == 0.1
    assert recipes.recipe_for("inception-small-nobn").lr == 0.003  # 0.1 diverges without BN
    for m in ("alexnet-small", "mlp1x512", "mlp3x512"):
        r = recipes.recipe_for(m)
        assert (r.lr, r.momentum, r.lr_decay, r.batch_size, r.weight_decay) == (
            0.01, 0.9, 0.95, 128, 0.0)
    assert recipes.recipe_for("alexnet-small", weight_decay=True).weight_decay == 5e-4
    assert recipes.recipe_for("mlp1x512", weight_decay=True).weight_decay == 1e-4
    r = recipes.recipe_for("inception-small", {"lr": 0.05, "batch_size": 64, "epochs": None})
    assert (r.lr, r.batch_size, r.epochs) == (0.05, 64, 1000)
    with pytest.raises(GenlabError, match="unknown preset"):
        recipes.check_preset("fast")


# --- training with augmentation ---------------------------------------------------------------


def _aug_setup(epochs):
    spec = RunSpec("digits", "mlp:32", "true", train_size=200, test_size=50, seed=0,
                   recipe=Recipe(lr=0.05, batch_size=32, epochs=epochs, target_train_acc=0.0),
                   preprocess="paper", augment="crop+flip+color")
    prep = prepare(spec)
    torch.manual_seed(0)
    model = genlab.build_model(spec.model, prep.data.input_shape, prep.data.num_classes)
    return spec, prep, model


def _train(spec, prep, model, **kw):
    return train(model, prep.x_train, prep.y_train, prep.x_test, prep.y_test, spec.recipe,
                 seed=spec.seed, augment=augment.make_augment(spec.augment), **kw)


def test_checkpoint_resume_is_bit_identical_with_augmentation(tmp_path):
    spec, prep, full_model = _aug_setup(5)
    full = _train(spec, prep, full_model)
    spec, prep, part = _aug_setup(2)
    path = tmp_path / "ck.safetensors"
    _train(spec, prep, part, checkpoint=lambda m, o, g, s: save_checkpoint(path, m, o, g, s))
    spec, prep, fresh = _aug_setup(5)
    state, opt_state, gen_state = load_checkpoint(path, fresh)
    resumed = _train(spec, prep, fresh, state=state, optimizer_state=opt_state,
                     generator_state=gen_state)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in full.history]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in resumed.history]
    for a, b in zip(full_model.parameters(), fresh.parameters()):
        assert torch.equal(a, b)
    # and augmentation really changes training
    spec2, prep2, plain = _aug_setup(5)
    plain_run = train(plain, prep2.x_train, prep2.y_train, prep2.x_test, prep2.y_test,
                      spec2.recipe, seed=0)
    assert plain_run.history[-1]["train_loss"] != full.history[-1]["train_loss"]


# --- experiments ------------------------------------------------------------------------------


def _write_cifar10(folder: Path, n_per_batch=3, n_test=6) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = n_test if name == "test_batch" else n_per_batch
        batch = {"batch_label": name, "labels": [int(v) for v in rng.integers(0, 10, n)],
                 "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
                 "filenames": [f"img{j}.png" for j in range(n)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    (folder / "batches.meta").write_bytes(
        pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}, protocol=2))


@pytest.fixture
def cifar_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("GENLAB_DATA", raising=False)
    datasets.clear_cache()
    _write_cifar10(tmp_path / "data" / "cifar-10-batches-py")
    yield tmp_path / "data"
    datasets.clear_cache()


def test_figure1_preset_paper_plans_the_papers_protocol(cifar_dir):
    o = Options(dataset="cifar10", models=["inception-small", "alexnet-small", "mlp1x512"],
                preset="paper")
    p = plan("figure1", o, data_dir=cifar_dir)
    by_model = {}
    for s in p.specs:
        assert s.preprocess == "paper" and s.augment == "" and s.dropout == 0.0
        assert s.recipe.momentum == 0.9 and s.recipe.lr_decay == 0.95
        assert s.recipe.batch_size == 128 and s.recipe.weight_decay == 0.0
        by_model.setdefault(s.model, set()).add(s.recipe.lr)
    assert by_model == {"inception-small": {0.1}, "alexnet-small": {0.01}, "mlp1x512": {0.01}}
    assert len(p.specs) == 3 * 9
    # a flag still wins over the preset
    p2 = plan("figure1", Options(dataset="cifar10", models=["inception-small"], preset="paper",
                                 lr=0.02, preprocess="normalize"), data_dir=cifar_dir)
    assert {(s.recipe.lr, s.preprocess) for s in p2.specs} == {(0.02, "normalize")}
    # without the preset nothing changes
    p3 = plan("figure1", Options(dataset="cifar10", models=["inception-small"]),
              data_dir=cifar_dir)
    assert {(s.recipe.lr, s.preprocess) for s in p3.specs} == {(0.01, "normalize")}


def test_figure1_runs_just_the_named_conditions_unless_levels_are_named_too(cifar_dir):
    def conditions(**kw):
        o = Options(dataset="cifar10", models=["inception-small"], preset="paper", **kw)
        return sorted(s.condition for s in plan("figure1", o, data_dir=cifar_dir).specs)

    # the GPU check: Gaussian inputs alone, not four label-corruption runs besides
    assert conditions(conditions=["gaussian"]) == ["gaussian"]
    assert conditions(conditions=["gaussian"], corruptions=[0.5]) == ["corrupt:0.5", "gaussian"]
    assert len(conditions()) == 9 and len(conditions(corruptions=[])) == 5
    assert conditions(corruptions=[0.2]) == sorted(
        ["true", "random-labels", "shuffled-pixels", "random-pixels", "gaussian", "corrupt:0.2"])
    with pytest.raises(GenlabError, match="no conditions"):
        conditions(conditions=[], corruptions=[])


def test_cli_corruptions_none_is_an_empty_list(cifar_dir, tmp_path, capsys):
    rc = main(["run", "figure1", "--dataset", "cifar10", "--conditions", "true,gaussian",
               "--corruptions", "none", "--model", "mlp:8", "--train-size", "10",
               "--test-size", "5", "--epochs", "1", "--data-dir", str(cifar_dir),
               "--out", str(tmp_path / "o"), "--quiet", "--no-report", "--device", "cpu"])
    assert rc == 0
    assert sorted(genlab.load(tmp_path / "o")["condition"]) == ["gaussian", "true"]


def test_cli_bad_protocol_flags_are_one_line_errors(cifar_dir, tmp_path, capsys):
    rc = main(["run", "figure1", "--dataset", "cifar10", "--model", "mlp1x512", "--dropout",
               "0.5", "--data-dir", str(cifar_dir), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "no place for dropout" in err and len(err.strip().splitlines()) == 1
    rc = main(["run", "figure1", "--dataset", "cifar10", "--augment", "rotate",
               "--data-dir", str(cifar_dir), "--out", str(tmp_path / "o")])
    assert rc == 2 and "unknown augmentation" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_table1_end_to_end_on_tiny_cifar10(cifar_dir, tmp_path, capsys, one_thread):
    out = tmp_path / "t1"
    rc = main(["run", "table1", "--dataset", "cifar10", "--data-dir", str(cifar_dir),
               "--epochs", "1", "--batch-size", "8", "--out", str(out), "--workers", "1",
               "--quiet"])
    text = capsys.readouterr().out
    assert rc == 0
    runs = genlab.load(out, "table1")
    assert len(runs) == 19 and set(runs["status"]) == {"done"}
    assert set(runs["preprocessing"]) == {preprocess.describe("paper")}
    assert set(runs["input_shape"].map(tuple)) == {(3, 28, 28)}
    crop = runs[runs["augment"] == "crop"]
    assert len(crop) == 4 and set(crop["model"]) == {"inception-small", "alexnet-small"}
    wd = runs[runs["weight_decay"] > 0].groupby("model")["weight_decay"].first().to_dict()
    assert wd == {"inception-small": 5e-4, "inception-small-nobn": 5e-4,
                  "alexnet-small": 5e-4, "mlp3x512": 1e-4, "mlp1x512": 1e-4}
    assert runs["best_test_acc"].notna().all()
    for p_test in ("89.05", "9.78", "10.61", "50.39"):
        assert p_test in text
    html = (out / "report.html").read_text()
    assert "Table 1" in html and "89.05" in html and "NOT COMPARABLE" not in html
    assert "centre crop" in html and "Recipe inception-small: SGD lr 0.1" in html
    assert html.count("random labels") >= 5


def test_table1_on_other_data_marks_the_paper_column(tmp_path, monkeypatch, one_thread):
    def loader(data_dir, download):
        g = torch.Generator().manual_seed(0)
        x = torch.rand(40, 1, 28, 28, generator=g)
        y = torch.arange(40) % 4
        return datasets.build_dataset("tiny28", x, y, x[:12], y[:12], list("abcd"), "test")

    datasets.register_dataset("tiny28", loader, "tiny")
    datasets.clear_cache()
    out = tmp_path / "t1"
    genlab.run("table1", out, dataset="tiny28", models=["mlp1x512"], epochs=1, batch_size=16,
               train_size=32, test_size=8)
    from genlab.experiments import Results
    from genlab.experiments.table1 import report, table

    runs = genlab.load(out, "table1")
    assert len(runs) == 3
    t = table(runs)
    assert len(t) == 19 and set(t["comparable"]) == {"no"}
    assert t["genlab test"].notna().sum() == 3
    sec = report(Results(runs, genlab.load(out, curves=True), genlab.load(out, tasks=True)),
                 tmp_path)
    assert "NOT COMPARABLE" in sec.tables[0][0]
    assert any("subset of the test split (8 images" in n and "17.7 points" in n
               for n in sec.notes), sec.notes
    datasets.clear_cache()


def test_table1_evaluates_a_test_subset_by_default_only_for_training_subsets():
    from genlab.experiments.table1 import DEFAULTS, SUBSET_TEST_SIZE, grid

    def sizes(**kw):
        o = Options(dataset="cifar10", models=["mlp1x512"], **kw).with_defaults(DEFAULTS)
        return {s.test_size for s in grid(o)}

    assert sizes() == {0}  # full size, the paper's protocol: the whole test split
    assert sizes(train_size=2000) == {SUBSET_TEST_SIZE} == {2000}
    assert sizes(train_size=2000, test_size=0) == {0}  # --test-size 0: the whole split
    assert sizes(train_size=2000, test_size=500) == {500}


def test_figure2_end_to_end_tiny(cifar_dir, tmp_path, one_thread):
    out = tmp_path / "f2"
    df = genlab.run("figure2", out, data_dir=cifar_dir, dataset="cifar10", epochs=2,
                    batch_size=4, eval_steps=2)
    assert set(df["model"]) == {"inception-small", "inception-small-nobn"}
    assert set(df["status"]) == {"done"}
    curves = genlab.load(out, curves=True)
    assert curves.groupby("hash").size().min() >= 3  # evaluated within epochs too
    from genlab.report import write_report

    html = Path(write_report(out)).read_text()
    assert "Figure 2b" in html and "early stopping" in html
