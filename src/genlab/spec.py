"""Run specifications: everything that determines a training run, and its stable hash.

A :class:`RunSpec` is plain data. Two specs with the same fields are the same run, whatever
experiment asked for them, so a results store can skip what it already holds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import GenlabError

#: Bumped when the meaning of a field changes, so old results never pass for new ones.
SPEC_VERSION = 1


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
    the same architecture and input shape (:mod:`genlab.compiled`).
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

    def validate(self) -> None:
        checks = [
            (self.lr > 0, f"--lr must be > 0, got {self.lr}"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (0 < self.lr_decay <= 1, f"lr decay must be in (0, 1], got {self.lr_decay}"),
            (self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}"),
            (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
            (self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (self.max_steps >= 0, f"--max-steps must be >= 0, got {self.max_steps}"),
            (self.decay_every >= 0, f"--decay-every must be >= 0, got {self.decay_every}"),
            (0 <= self.target_train_acc <= 1,
             f"--target must be in [0, 1] (0: never stop early), got {self.target_train_acc}"),
            (self.eval_every >= 1, f"eval_every must be >= 1, got {self.eval_every}"),
            (self.eval_steps >= 0, f"--eval-steps must be >= 0, got {self.eval_steps}"),
            (self.target_margin >= 0 and math.isfinite(self.target_margin),
             f"--target-margin must be a finite number >= 0, got {self.target_margin}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise GenlabError(msg)
        if self.compile:
            from .compiled import check_backend

            check_backend(self.compile)


#: recipe fields added after the first release: left out of the spec (and its hash) while at
#: their defaults, so every earlier run keeps its hash
RECIPE_OPTIONAL: dict[str, Any] = {"target_margin": 0.0, "compile": ""}


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
    #: input preprocessing (genlab.preprocess): normalize (per channel), paper, none
    preprocess: str = "normalize"
    #: on-device training augmentation (genlab.augment), e.g. "", crop, crop+flip, crop+color
    augment: str = ""
    #: dropout probability, for models with a place for it (alexnet-small)
    dropout: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        # the regularizer fields appear only when set, so runs without them keep their hashes
        for k, default in (("preprocess", "normalize"), ("augment", ""), ("dropout", 0.0)):
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
        if self.train_size < 0:
            raise GenlabError(f"--train-size must be >= 0 (0 = whole split), got {self.train_size}")
        if self.test_size < 0:
            raise GenlabError(f"--test-size must be >= 0 (0 = whole split), got {self.test_size}")
        if self.seed < 0:
            raise GenlabError(f"--seeds must be >= 0, got {self.seed}")
        if not 0.0 <= self.dropout < 1.0:
            raise GenlabError(f"--dropout must be in [0, 1), got {self.dropout}")
        from .augment import parse_augment
        from .preprocess import check_preprocess

        check_preprocess(self.preprocess)
        parse_augment(self.augment)
        self.recipe.validate()
