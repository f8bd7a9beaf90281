"""Run specifications: everything that determines a training run, and its stable hash.

A :class:`RunSpec` is plain data. Two specs with the same fields are the same run, whatever
experiment asked for them, so a results store can skip what it already holds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from genlab.errors import GenlabError
from genlab.validation import check_backend, is_real, is_whole

#: Bumped when the meaning of a field changes, so old results never pass for new ones.
SPEC_VERSION = 1
#: genlab's version, recorded with every run
__version__ = "0.1.0"


@dataclass(frozen=True)
class Recipe:
    """How a network is trained (SGD with momentum, the paper's per-epoch decay).

    lr: initial learning rate; lr_decay: factor applied after every epoch (paper: 0.95), or
    every ``decay_every`` steps when that is > 0 (the paper's CIFAR10 epoch is 391 steps at
    batch 128, so ``decay_every=391`` gives a subset the paper's schedule in steps);
    epochs / max_steps: whichever limit comes first ends the run (max_steps 0 = no limit);
    target_train_acc: stop at the first evaluation whose training accuracy reaches it
    (0 = never stop early); eval_every: evaluate train and test sets every this many epochs;
    eval_steps: also evaluate every this many steps within epochs (0 = only at epoch ends);
    fast: the fast path instead of the paper-faithful one (bf16 autocast with BatchNorm and the
    loss in fp32, channels_last, fused SGD where the device has it, and the full training-set
    evaluation skipped until the running training accuracy reaches the target).
    target_margin: when > 0, the stopping rule counts a training point as fitted only when its
    logit margin (true-class logit minus the largest other logit, in logits) is at least this
    (Nagarajan & Kolter train until nearly every point has margin 10); 0 = plain accuracy.
    compile: a ``torch.compile`` backend (``inductor``, ``aot_eager``, ``eager``...) to train
    with, "" for none; the compiled module is cached per process and reused by later runs of
    the same architecture and input shape (:mod:`genlab.training.compiled`).
    optimizer: ``sgd`` (the paper's: momentum, the default), ``adam`` or ``adamw`` (betas
    (0.9, 0.999); ``momentum`` is then unused; AdamW's decoupled decay is ``weight_decay``).
    The learning-rate schedule is the same for all three.
    """

    lr: float = 0.01
    momentum: float = 0.9
    lr_decay: float = 0.95
    decay_every: int = 0
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int = 100
    max_steps: int = 0
    target_train_acc: float = 1.0
    eval_every: int = 1
    eval_steps: int = 0
    fast: bool = False
    target_margin: float = 0.0
    compile: str = ""
    optimizer: str = "sgd"

    def validate(self) -> None:
        """Raise a one-line :class:`GenlabError` unless every field has its type and range.

        Numbers must be finite: ``lr=inf`` or ``weight_decay=inf`` would train a diverged run.
        """
        checks = [
            (is_real(self.lr) and self.lr > 0, f"lr must be a finite number > 0, got {self.lr!r}"),
            (is_real(self.momentum) and 0 <= self.momentum < 1,
             f"momentum must be a number in [0, 1), got {self.momentum!r}"),
            (is_real(self.lr_decay) and 0 < self.lr_decay <= 1,
             f"lr_decay must be a number in (0, 1], got {self.lr_decay!r}"),
            (is_real(self.weight_decay) and self.weight_decay >= 0,
             f"weight_decay must be a finite number >= 0, got "
             f"{self.weight_decay!r}"),
            (is_whole(self.batch_size) and self.batch_size >= 1,
             f"batch_size must be a whole number >= 1, got {self.batch_size!r}"),
            (is_whole(self.epochs) and self.epochs >= 1,
             f"epochs must be a whole number >= 1, got {self.epochs!r}"),
            (is_whole(self.max_steps) and self.max_steps >= 0,
             f"max_steps must be a whole number >= 0 (0: no limit), got "
             f"{self.max_steps!r}"),
            (is_whole(self.decay_every) and self.decay_every >= 0,
             f"decay_every must be a whole number >= 0 (0: every epoch), got "
             f"{self.decay_every!r}"),
            (is_real(self.target_train_acc) and 0 <= self.target_train_acc <= 1,
             f"target_train_acc must be a number in [0, 1] (0: never stop early), "
             f"got {self.target_train_acc!r}"),
            (is_whole(self.eval_every) and self.eval_every >= 1,
             f"eval_every must be a whole number >= 1, got {self.eval_every!r}"),
            (is_whole(self.eval_steps) and self.eval_steps >= 0,
             f"eval_steps must be a whole number >= 0, got {self.eval_steps!r}"),
            (isinstance(self.fast, bool), f"fast must be True or False, got "
                                          f"{self.fast!r}"),
            (is_real(self.target_margin) and self.target_margin >= 0,
             f"target_margin must be a finite number >= 0, got {self.target_margin!r}"),
            (isinstance(self.compile, str),
             f"compile must be a torch.compile backend name, or '' for none, got "
             f"{self.compile!r}"),
            (self.optimizer in OPTIMIZERS,
             f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise GenlabError(msg, param=msg.split(" ", 1)[0])
        if self.compile:
            check_backend(self.compile)


#: seeds go to torch.manual_seed and torch.Generator.manual_seed, which take [0, 2**64)
SEED_LIMIT = 2**64


#: recipe fields added after the first release: left out of the spec (and its hash) while at
#: their defaults, so every earlier run keeps its hash
RECIPE_OPTIONAL: dict[str, Any] = {"target_margin": 0.0, "compile": "", "optimizer": "sgd"}

#: the optimizers a recipe may name (genlab.training.loop.OPTIMIZERS builds them)
OPTIMIZERS = ("sgd", "adam", "adamw")


#: run-spec fields added after the first release, left out of the spec (and its hash) while at
#: their defaults, like :data:`RECIPE_OPTIONAL`
SPEC_OPTIONAL: dict[str, Any] = {"preprocess": "normalize", "augment": "", "dropout": 0.0,
                                 "model_id": ""}


#: ``check(spec)`` for the names a spec refers to that live in the registries of the layers
#: above it (preprocessing, augmentation): genlab.data appends its own on import, so that
#: :meth:`RunSpec.validate` checks them without spec importing data
NAME_CHECKS: list[Callable[[RunSpec], None]] = []


@dataclass(frozen=True)
class RunSpec:
    """One training run: data set, subset, randomization condition, model, recipe and seed.

    train_size / test_size: 0 means the whole split. The seed fixes the subset, the condition's
    randomness, the initialization and the batch order.
    """

    dataset: str
    model: str
    condition: str = "true"
    train_size: int = 0
    test_size: int = 0
    seed: int = 0
    recipe: Recipe = field(default_factory=Recipe)
    #: input preprocessing (genlab.data.preprocess): normalize (per channel), paper, none
    preprocess: str = "normalize"
    #: on-device training augmentation (genlab.data.augment), e.g. "", crop, crop+flip, crop+color
    augment: str = ""
    #: dropout probability, for models with a place for it (alexnet-small)
    dropout: float = 0.0
    #: a custom model's fingerprint (genlab.models.identity): what its factory builds, so that
    #: editing the factory makes new runs; "" for genlab's own models (left out of the hash)
    model_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        # the regularizer fields appear only when set, so runs without them keep their hashes
        for k, default in SPEC_OPTIONAL.items():
            if d[k] == default:
                del d[k]
        for k, default in RECIPE_OPTIONAL.items():
            if d["recipe"].get(k) == default:
                del d["recipe"][k]
        d["spec_version"] = SPEC_VERSION
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunSpec:
        d = dict(d)
        d.pop("spec_version", None)
        recipe = Recipe(**d.pop("recipe", {}))
        return cls(recipe=recipe, **d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def hash(self) -> str:
        """A stable 16-hex-digit id: the same spec gives the same hash in every process."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def replace(self, **changes: Any) -> RunSpec:
        recipe_fields = {f.name for f in dataclasses.fields(Recipe)}
        rc = {k: v for k, v in changes.items() if k in recipe_fields}
        rest = {k: v for k, v in changes.items() if k not in recipe_fields}
        recipe = dataclasses.replace(self.recipe, **rc) if rc else self.recipe
        return dataclasses.replace(self, recipe=recipe, **rest)

    def validate(self) -> None:
        """Raise a one-line :class:`GenlabError` unless every field has its type and range."""
        for name in ("dataset", "model", "condition", "preprocess", "augment", "model_id"):
            if not isinstance(getattr(self, name), str):
                raise GenlabError(f"{name} must be a string, got {getattr(self, name)!r}")
        for name in ("train_size", "test_size"):
            v = getattr(self, name)
            if not is_whole(v):
                raise GenlabError(f"{name} must be a whole number >= 0 (0 = whole split), got "
                                  f"{v!r}", param=name)
            if v < 0:
                raise GenlabError(f"{name} must be >= 0 (0 = whole split), got {v}", param=name)
        if not (is_whole(self.seed) and 0 <= self.seed < SEED_LIMIT):
            raise GenlabError(f"seed must be a whole number from 0 to 2**64 - 1, got "
                              f"{self.seed!r}")
        if not (is_real(self.dropout) and 0.0 <= self.dropout < 1.0):
            raise GenlabError(f"dropout must be in [0, 1), got {self.dropout!r}", param="dropout")
        if not isinstance(self.recipe, Recipe):
            raise GenlabError(f"recipe must be a genlab.Recipe, got {type(self.recipe).__name__}")
        for check in NAME_CHECKS:  # names that live in registries of the layers above
            check(self)
        self.recipe.validate()
