import subprocess
import sys

import pytest

from genlab import GenlabError, Recipe, RunSpec


def test_hash_is_stable_across_processes():
    spec = RunSpec("digits", "mlp1x512", "corrupt:0.4", seed=3, recipe=Recipe(lr=0.05))
    code = ("from genlab import RunSpec, Recipe; print(RunSpec('digits', 'mlp1x512', "
            "'corrupt:0.4', seed=3, recipe=Recipe(lr=0.05)).hash)")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout.strip()
    assert other == spec.hash and len(spec.hash) == 16


def test_hash_changes_with_every_field():
    base = RunSpec("digits", "mlp1x512")
    variants = [base.replace(seed=1), base.replace(condition="random-labels"),
                base.replace(model="mlp3x512"), base.replace(train_size=10),
                base.replace(lr=0.1), base.replace(batch_size=64), base.replace(dataset="mnist")]
    assert len({v.hash for v in variants} | {base.hash}) == len(variants) + 1


def test_round_trip_through_dict():
    spec = RunSpec("digits", "mlp:64x64", "shuffled-pixels", 100, 50, 7, Recipe(epochs=3))
    assert RunSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("change", [dict(train_size=-1), dict(lr=0.0), dict(batch_size=0),
                                    dict(target_train_acc=1.5), dict(lr_decay=0.0)])
def test_validation_rejects_bad_values(change):
    with pytest.raises(GenlabError):
        RunSpec("digits", "mlp1x512").replace(**change).validate()


def test_optional_recipe_fields_enter_the_spec_only_when_set():
    base = RunSpec("digits", "mlp1x512")
    assert "target_margin" not in base.to_dict()["recipe"]
    wide = base.replace(target_margin=2.0)
    assert wide.to_dict()["recipe"]["target_margin"] == 2.0 and wide.hash != base.hash
    assert RunSpec.from_dict(wide.to_dict()) == wide
    assert RunSpec.from_dict(base.to_dict()) == base
    with pytest.raises(GenlabError, match="target_margin"):
        base.replace(target_margin=-1.0).validate()
