"""Named training recipes per architecture, as Zhang et al. state them, and the ``paper`` preset.

The paper (Section 2 and Appendix A): SGD with momentum 0.9, initial learning rate 0.1 for
Inception and 0.01 for AlexNet and the MLPs, multiplied by 0.95 after every epoch. Where the
paper is silent genlab chooses, and every choice is a flag:

- batch size 128 (``--batch-size``), as the public reproductions;
- the decay counted in steps, 391 per "epoch" (one CIFAR10 epoch at batch 128;
  ``--decay-every``), so a subset gets the paper's schedule in steps;
- at most 25,000 steps (``--max-steps``), stopping at 100% training accuracy (``--target``);
- weight decay, where a row turns it on: 5e-4 for the CNNs, 1e-4 for the MLPs
  (``--weight-decay``); off otherwise, as in the randomization experiments;
- Inception without BatchNorm at learning rate 0.003: the paper gives one rate for
  "Inception", but without BatchNorm 0.1 diverges and 0.01 ends at chance after 3 epochs on
  2,000 Fashion-MNIST images, while 0.003 reaches 58% train and test (the ``genlab run grid``
  command in the README). ``--lr 0.1`` restores the paper's rate.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from genlab.errors import GenlabError
from genlab.models.registry import MODELS
from genlab.spec import Recipe

PRESETS = ("paper",)

#: the recipe every architecture shares (the paper's, plus genlab's choices where it is silent)
COMMON: dict[str, Any] = {"momentum": 0.9, "lr_decay": 0.95, "decay_every": 391,
                          "batch_size": 128, "epochs": 1000, "max_steps": 25000,
                          "target_train_acc": 1.0, "weight_decay": 0.0}
#: per family: the paper's learning rate, and genlab's weight-decay coefficient when it is on
FAMILIES: dict[str, dict[str, float]] = {
    "inception": {"lr": 0.1, "weight_decay_on": 5e-4},
    "inception-nobn": {"lr": 0.003, "weight_decay_on": 5e-4},
    "alexnet": {"lr": 0.01, "weight_decay_on": 5e-4},
    "mlp": {"lr": 0.01, "weight_decay_on": 1e-4},
}


def family(model: str) -> str:
    """The recipe family of a model: what its registry entry declares (``recipe_family``:
    inception, inception-nobn, alexnet or mlp); mlp's for a model that declares none."""
    try:
        entry = MODELS.find(model)
    except GenlabError:  # a family member with bad arguments: refused when it is built
        entry = None
    return entry.meta.get("recipe_family", "mlp") if entry is not None else "mlp"


def weight_decay_on(model: str) -> float:
    """genlab's weight-decay coefficient for ``model`` when weight decay is turned on."""
    return FAMILIES[family(model)]["weight_decay_on"]


def recipe_for(model: str, overrides: dict[str, Any] | None = None, *,
               weight_decay: bool = False) -> Recipe:
    """The named recipe for ``model``; ``overrides`` (recipe field -> value) win, flag by flag.

    ``weight_decay=True`` turns weight decay on at the model's coefficient (unless overridden).
    """
    fam = FAMILIES[family(model)]
    kw = {**COMMON, "lr": fam["lr"]}
    if weight_decay:
        kw["weight_decay"] = fam["weight_decay_on"]
    names = {f.name for f in dataclasses.fields(Recipe)}
    kw.update({k: v for k, v in (overrides or {}).items() if k in names and v is not None})
    return Recipe(**kw)


def check_preset(name: str | None) -> None:
    if name is not None and name not in PRESETS:
        raise GenlabError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")


def describe(recipe: Recipe) -> str:
    """One line for reports."""
    decay = (f"x{recipe.lr_decay} every {recipe.decay_every} steps" if recipe.decay_every
             else f"x{recipe.lr_decay} per epoch")
    return (f"SGD lr {recipe.lr:g} momentum {recipe.momentum:g} {decay}, batch "
            f"{recipe.batch_size}, weight decay {recipe.weight_decay:g}, up to "
            f"{recipe.epochs} epochs / {recipe.max_steps or 'unlimited'} steps, stop at "
            f"{recipe.target_train_acc:.0%} train accuracy")
