"""User models are checked before anything runs, and their runs are identified by what they build.

Each test writes its own small user module into tmp_path under a name of its own, and drops it
from sys.modules afterwards, so tests never see each other's modules.
"""

from __future__ import annotations

import importlib
import sys
import uuid
import warnings
from pathlib import Path

import pytest
import torch

import genlab
from genlab import RunSpec
from genlab.cli import main
from genlab.execution.tasks import retarget_tasks
from genlab.experiments import Options, Task, plan
from genlab.models.identity import fingerprint
from genlab.models.registry import check_model, is_custom_model

#: RunSpec("digits", "mlp1x512").hash before model_id existed (also in test_spec_validation)
MLP1X512_DIGITS_HASH = "f1749a7c145b9505"

MLP = """
import math
from torch import nn

def factory(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), {width}), nn.{act}(),
                         nn.Linear({width}, num_classes))
"""


class UserModules:
    """Writes modules into a folder on sys.path; forgets every one of them at the end."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.names: list[str] = []

    def write(self, source: str, name: str | None = None) -> str:
        name = name or f"genlab_user_{uuid.uuid4().hex[:10]}"
        (self.folder / f"{name}.py").write_text(source)
        self.forget(name)
        if name not in self.names:
            self.names.append(name)
        return name

    def forget(self, name: str) -> None:
        sys.modules.pop(name, None)
        importlib.invalidate_caches()

    def close(self) -> None:
        for name in self.names:
            self.forget(name)


@pytest.fixture
def user_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = tmp_path / "usermods"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # a rewrite must be re-read
    mods = UserModules(folder)
    yield mods
    mods.close()


def refused(capsys, tmp_path: Path, model: str) -> str:
    """``genlab run grid --model MODEL`` on digits: exit 2, one line, no results folder."""
    out = tmp_path / "out"
    argv = ["run", "grid", "--dataset", "digits", "--model", model, "--epochs", "1",
            "--workers", "1", "--train-size", "50", "--test-size", "20", "--out", str(out)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(SystemExit) as e:  # a SystemExit from user code must not escape
            raise SystemExit(main(argv))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err, err
    assert not caught, [str(w.message) for w in caught]
    assert not out.exists() and not (out / "genlab.sqlite").exists()
    return err


# --- importing the factory --------------------------------------------------------------------


@pytest.mark.parametrize("source,needle", [
    ("raise RuntimeError('no GPU here')\n", "RuntimeError: no GPU here"),
    ("raise ValueError('two\\nlines')\n", "ValueError: two lines"),
    ("def factory(:\n", "SyntaxError"),
    ("import sys\nsys.exit(3)\n", "sys.exit(3)"),
    ("import sys\nsys.exit()\n", "sys.exit()"),
    ("import genlab_no_such_dependency\n", "No module named 'genlab_no_such_dependency'"),
    ("x = 1\n", "no callable 'factory'"),
])
def test_a_module_that_fails_on_import_is_one_line(capsys, tmp_path, user_modules, source,
                                                   needle):
    name = user_modules.write(source)
    err = refused(capsys, tmp_path, f"{name}:factory")
    assert repr(name) in err and needle in err


def test_a_factory_that_raises_is_one_line(capsys, tmp_path, user_modules):
    name = user_modules.write("def factory(input_shape, num_classes):\n"
                              "    raise KeyError('width')\n")
    err = refused(capsys, tmp_path, f"{name}:factory")
    assert f"{name}:factory" in err and "KeyError" in err


def test_a_factory_that_exits_is_one_line(capsys, tmp_path, user_modules):
    name = user_modules.write("import sys\ndef factory(input_shape, num_classes):\n"
                              "    sys.exit(4)\n")
    assert "sys.exit(4)" in refused(capsys, tmp_path, f"{name}:factory")


# --- the probe forward pass -------------------------------------------------------------------


PROBED = """
import math
from torch import nn

def not_a_module(input_shape, num_classes):
    return [nn.Linear(2, 2)]

def no_parameters(input_shape, num_classes):
    return nn.Flatten()

def wrong_width(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 7))

def wrong_channels(input_shape, num_classes):
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, num_classes))

def lazy(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))

class Pair(nn.Module):
    def __init__(self, d, k):
        super().__init__()
        self.fc = nn.Linear(d, k)
    def forward(self, x):
        y = self.fc(x.flatten(1))
        return y, y

def returns_tuple(input_shape, num_classes):
    return Pair(math.prod(input_shape), num_classes)
"""


@pytest.mark.parametrize("factory,needles", [
    ("not_a_module", ["returned list", "nn.Module"]),
    ("no_parameters", ["no trainable parameters"]),
    ("wrong_width", ["(1, 7)", "width 7", "(1, 10)"]),
    ("wrong_channels", ["(1, 1, 8, 8)", "channels"]),
    ("lazy", ["lazy"]),
    ("returns_tuple", ["returns tuple", "(1, 10)"]),
])
def test_the_probe_refuses_models_that_cannot_train(capsys, tmp_path, user_modules, factory,
                                                    needles):
    name = user_modules.write(PROBED)
    err = refused(capsys, tmp_path, f"{name}:{factory}")
    assert f"{name}:{factory}" in err
    for needle in needles:
        assert needle in err, err


def test_check_model_leaves_the_random_state_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    model = check_model("mlp:16", (1, 8, 8), 10)
    assert torch.equal(torch.get_rng_state(), before)
    assert model.training and isinstance(model, torch.nn.Module)
    # built under seed 0: the same weights every time
    again = check_model("mlp:16", (1, 8, 8), 10)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))


def test_check_model_passes_dropout_on():
    model = check_model("alexnet-small", (3, 28, 28), 10, dropout=0.5)
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.5 for m in model.modules())


# --- the identity of a custom model's runs -----------------------------------------------------


def grid_specs(model: str) -> list[RunSpec]:
    return plan("grid", Options(dataset="digits", models=[model], seeds=[0], train_size=50,
                                test_size=20, epochs=1)).specs


def test_editing_a_factory_gives_new_runs(user_modules):
    name = user_modules.write(MLP.format(width=64, act="ReLU"))
    first = grid_specs(f"{name}:factory")
    again = grid_specs(f"{name}:factory")
    assert len(first) == 1 and first[0].model_id and len(first[0].model_id) == 16
    assert [s.hash for s in first] == [s.hash for s in again]  # unchanged module: same runs

    user_modules.write(MLP.format(width=256, act="ReLU"), name)
    wider = grid_specs(f"{name}:factory")
    assert wider[0].model_id != first[0].model_id and wider[0].hash != first[0].hash

    user_modules.write(MLP.format(width=64, act="Tanh"), name)  # same shapes, other function
    tanh = grid_specs(f"{name}:factory")
    assert tanh[0].hash not in (first[0].hash, wider[0].hash)

    user_modules.write(MLP.format(width=64, act="ReLU"), name)  # back as it was
    assert grid_specs(f"{name}:factory")[0].hash == first[0].hash


def test_builtin_models_keep_their_hashes():
    for model in ("mlp1x512", "mlp:32x16", "alexnet-small"):
        assert not is_custom_model(model)
        (spec,) = grid_specs(model)
        assert spec.model_id == ""
        assert spec.hash == spec.replace(model_id="").hash
    assert not is_custom_model("inception-v3") and not is_custom_model("inception-small")
    assert RunSpec("digits", "mlp1x512").hash == MLP1X512_DIGITS_HASH


def test_models_registered_by_users_are_custom():
    @genlab.register_model("test-model-checks-linear")
    def linear(input_shape, num_classes):
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, num_classes))

    assert is_custom_model("test-model-checks-linear")
    assert is_custom_model("some.module:factory")
    (spec,) = grid_specs("test-model-checks-linear")
    assert spec.model_id

    @genlab.register_model("test-model-checks-linear")  # redefined in a notebook
    def wider(input_shape, num_classes):
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                   torch.nn.Linear(32, num_classes))

    (redefined,) = grid_specs("test-model-checks-linear")
    assert redefined.hash != spec.hash


def test_fingerprint_covers_layer_settings_and_weights():
    a = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.Flatten())
    b = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1, stride=2), torch.nn.Flatten())
    b.load_state_dict(a.state_dict())
    assert fingerprint(a, (1, 8, 8)) != fingerprint(b, (1, 8, 8))  # same weights, other stride
    c = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.Flatten())
    c.load_state_dict(a.state_dict())
    assert fingerprint(a, (1, 8, 8)) == fingerprint(c, (1, 8, 8))
    with torch.no_grad():
        c[0].bias.add_(1e-3)
    assert fingerprint(a, (1, 8, 8)) != fingerprint(c, (1, 8, 8))


def test_tasks_follow_the_runs_they_name(user_modules):
    name = user_modules.write(MLP.format(width=16, act="ReLU"))
    p = plan("table2", Options(dataset="digits", models=[f"{name}:factory"], train_size=50,
                               test_size=20, epochs=1))
    hashes = {s.hash for s in p.specs}
    assert all(s.model_id for s in p.specs) and len(p.tasks) == len(p.specs)
    assert {t.params["run"] for t in p.tasks} == hashes


def test_retarget_tasks_rewrites_hashes_and_spec_dicts():
    before = [RunSpec("digits", "m:f", seed=s) for s in (0, 1)]
    after = [s.replace(model_id=f"{i:016x}") for i, s in enumerate(before, 1)]
    tasks = [Task("t", {"spec": b.to_dict(), "hash": b.hash, "runs": [b.hash], "k": 3},
                  lambda p, c: {}) for b in before]
    new = retarget_tasks(tasks, before, after)
    for t, a in zip(new, after):
        assert t.params == {"spec": a.to_dict(), "hash": a.hash, "runs": [a.hash], "k": 3}
    assert retarget_tasks(tasks, before, before) is tasks


def test_an_edited_factory_is_trained_again_not_already_done(capsys, tmp_path, user_modules):
    name = user_modules.write(MLP.format(width=8, act="ReLU"))
    out = tmp_path / "out"
    argv = ["run", "grid", "--dataset", "digits", "--model", f"{name}:factory", "--epochs", "1",
            "--workers", "1", "--train-size", "40", "--test-size", "20", "--target", "0",
            "--out", str(out), "--no-report"]
    assert main(argv) == 0
    assert main(argv) == 0
    assert "already done" in capsys.readouterr().err
    user_modules.write(MLP.format(width=12, act="ReLU"), name)
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "already done" not in err
    runs = genlab.load(out)
    assert len(runs) == 2 and runs["hash"].nunique() == 2

