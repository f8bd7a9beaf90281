"""Bad run-spec values and bad experiment --set values are refused up front, with one line.

Every numeric Recipe / RunSpec field must be finite, of its type and in its range, so that e.g.
``--lr inf`` is not trained into a "diverged" run and ``--seeds 18446744073709551616`` is not
stored as a failed run with exit 0. Built-in specs keep their hashes bit for bit.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest

from genlab import GenlabError, Recipe, RunSpec
from genlab.cli import main

#: RunSpec("digits", "mlp1x512").hash before model_id existed: it must never change
MLP1X512_DIGITS_HASH = "f1749a7c145b9505"


def one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert msg and "\n" not in msg, msg
    return msg


def test_builtin_spec_hash_is_unchanged():
    spec = RunSpec("digits", "mlp1x512")
    assert spec.hash == MLP1X512_DIGITS_HASH
    assert "model_id" not in spec.to_dict()
    assert spec.replace(model_id="").hash == MLP1X512_DIGITS_HASH


def test_model_id_enters_the_hash_only_when_set():
    base = RunSpec("digits", "pkg.mod:factory")
    custom = base.replace(model_id="0123456789abcdef")
    assert custom.to_dict()["model_id"] == "0123456789abcdef"
    assert custom.hash != base.hash
    assert RunSpec.from_dict(custom.to_dict()) == custom
    assert RunSpec.from_dict(base.to_dict()) == base


@pytest.mark.parametrize("change,needle", [
    (dict(lr=math.inf), "lr must"),
    (dict(lr=math.nan), "lr must"),
    (dict(lr=-math.inf), "lr must"),
    (dict(lr="0.1"), "lr must"),
    (dict(weight_decay=math.inf), "weight_decay"),
    (dict(weight_decay=math.nan), "weight_decay"),
    (dict(momentum=math.nan), "momentum"),
    (dict(momentum=1.0), "momentum"),
    (dict(lr_decay=math.nan), "lr_decay"),
    (dict(lr_decay=math.inf), "lr_decay"),
    (dict(target_margin=math.inf), "target_margin"),
    (dict(target_margin=math.nan), "target_margin"),
    (dict(target_train_acc=math.nan), "target_train_acc"),
    (dict(batch_size=32.0), "batch_size"),
    (dict(epochs=True), "epochs"),
    (dict(max_steps=-1), "max_steps"),
    (dict(decay_every=1.5), "decay_every"),
    (dict(eval_every=0), "eval_every"),
    (dict(eval_steps=math.nan), "eval_steps"),
    (dict(fast=1), "fast"),
    (dict(compile=None), "compile"),
])
def test_recipe_fields_must_be_finite_and_in_range(change, needle):
    with pytest.raises(GenlabError) as err:
        RunSpec("digits", "mlp1x512").replace(**change).validate()
    assert needle in one_line(err)


@pytest.mark.parametrize("change,needle", [
    (dict(seed=2**64), "seed"),
    (dict(seed=-1), "seed"),
    (dict(seed=1.5), "seed"),
    (dict(seed=True), "seed"),
    (dict(train_size=2.5), "train_size"),
    (dict(test_size=-2), "test_size must be >= 0"),
    (dict(dropout=math.nan), "dropout must be in"),
    (dict(dropout=math.inf), "dropout must be in"),
    (dict(model=5), "model"),
    (dict(model_id=7), "model_id"),
])
def test_runspec_fields_must_be_in_range(change, needle):
    with pytest.raises(GenlabError) as err:
        RunSpec("digits", "mlp1x512").replace(**change).validate()
    assert needle in one_line(err)


def test_largest_seed_is_accepted():
    RunSpec("digits", "mlp1x512", seed=2**64 - 1).validate()
    Recipe(lr=1, weight_decay=0, target_margin=3).validate()  # ints where floats go are fine


def refused(capsys, tmp_path: Path, argv: list[str]) -> str:
    """Run the CLI; it must exit 2 with one line on stderr and write no results folder."""
    out = tmp_path / "out"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(SystemExit) as e:  # argparse's own refusals exit, not return
            raise SystemExit(main([*argv, "--out", str(out)]))
    assert e.value.code == 2
    assert not caught, [str(w.message) for w in caught]
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err, err
    assert not out.exists() and not (out / "genlab.sqlite").exists()
    return err


GRID = ["run", "grid", "--dataset", "digits", "--model", "mlp:8", "--epochs", "1",
        "--workers", "1", "--train-size", "50", "--test-size", "20"]


@pytest.mark.parametrize("flags,needle", [
    (["--lr", "inf"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--weight-decay", "inf"], "weight"),
    (["--momentum", "nan"], "momentum"),
    (["--lr-decay", "nan"], "lr-decay"),
    (["--target-margin", "inf"], "target-margin"),
    (["--seeds", str(2**64)], "seed"),
    (["--seeds", "-1"], "seed"),
])
def test_cli_refuses_bad_numbers_before_anything_runs(capsys, tmp_path, flags, needle):
    assert needle in refused(capsys, tmp_path, [*GRID, *flags])


@pytest.mark.parametrize("value,needle", [
    ("[]", "at least one hidden width"),
    ("[0]", "widths"),
    ("[-4]", "widths"),
    ("[2.5]", "widths"),
    ("abc", "widths"),
    ("[true]", "widths"),
    ("1e400", "widths"),
])
def test_double_descent_refuses_bad_widths(capsys, tmp_path, value, needle):
    err = refused(capsys, tmp_path, ["run", "double-descent", "--dataset", "digits",
                                     "--epochs", "1", "--workers", "1", "--set",
                                     f"widths={value}"])
    assert needle in err


@pytest.mark.parametrize("setting,needle", [
    ("rf_points=abc", "rf_points"),
    ("rf_points=1", "rf_points"),
    ("rf_features=[]", "rf_features"),
    ("rf_features=[0]", "rf_features"),
    ("rf_activation=[1]", "rf_activation"),
    ("random_features=maybe", "random_features"),
])
def test_double_descent_refuses_other_bad_settings(capsys, tmp_path, setting, needle):
    err = refused(capsys, tmp_path, ["run", "double-descent", "--dataset", "digits",
                                     "--epochs", "1", "--workers", "1", "--set", setting])
    assert needle in err


@pytest.mark.parametrize("settings,needle", [
    (["image_size=abc"], "image_size"),
    (["image_size=1.5"], "image_size"),
    (["image_size=true"], "image_size"),
    (["image_size=[64]"], "image_size"),
    (["image_size=4"], "image_size"),
    (["image_size=nan"], "image_size"),
    (["loader=[1]"], "loader"),
    (["loader=disk"], "loader"),
])
def test_table2_refuses_bad_settings(capsys, tmp_path, settings, needle):
    argv = ["run", "table2", "--epochs", "1", "--workers", "1"]
    for s in settings:
        argv += ["--set", s]
    assert needle in refused(capsys, tmp_path, argv)


def test_table2_settings_apply_to_imagefolder_only(capsys, tmp_path):
    err = refused(capsys, tmp_path, ["run", "table2", "--dataset", "digits", "--model", "mlp:8",
                                     "--epochs", "1", "--workers", "1", "--set",
                                     "image_size=abc"])
    assert "image_size" in err
    err = refused(capsys, tmp_path, ["run", "table2", "--dataset", "digits", "--model", "mlp:8",
                                     "--epochs", "1", "--workers", "1", "--set",
                                     "image_size=64"])
    assert "--dataset imagefolder" in err
