"""Fully connected ReLU networks: the paper's MLP 1x512 and 3x512, and ``mlp:WxW...``."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from genlab.errors import GenlabError
from genlab.models.registry import ModelFactory


class MLP(nn.Sequential):
    """Fully connected ReLU network on flattened inputs: in -> widths... -> num_classes."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, widths: Sequence[int]):
        dims = [math.prod(input_shape), *widths]
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(dims[-1], num_classes))
        super().__init__(*layers)
        self.widths = tuple(widths)


def mlp_family(args: str) -> ModelFactory:
    """The factory of ``mlp:ARGS``: hidden widths ``WxWx...`` (positive integers)."""
    try:
        widths = [int(w) for w in args.split("x")] if args else []
    except ValueError:
        widths = []
    if not widths or any(w < 1 for w in widths):
        raise GenlabError(
            f"bad MLP widths {args!r}: write mlp:W or mlp:WxWx... with positive integers"
        )

    def factory(input_shape: Sequence[int], num_classes: int) -> nn.Module:
        return MLP(input_shape, num_classes, widths)

    return factory
