"""torchvision's Inception V3 for Table 2: ``inception_v3(weights=None, aux_logits=False,
init_weights=True)``. Its dropout before the classifier comes from the run spec (``--dropout``,
default 0 like every genlab model; torchvision's own default, and Table 2's, is 0.5). It needs
inputs of at least 75x75."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from genlab.errors import GenlabError

#: torchvision's Inception V3 fails below this input size (its stem and reductions).
INCEPTION_MIN_SIZE = 75


def inception_v3(input_shape: Sequence[int], num_classes: int, dropout: float = 0.0
                 ) -> nn.Module:
    """torchvision's Inception V3 (no pretrained weights, no auxiliary head)."""
    from torchvision.models import inception_v3 as tv_inception_v3

    c, h, w = (int(s) for s in input_shape)
    if c != 3 or min(h, w) < INCEPTION_MIN_SIZE:
        raise GenlabError(f"inception-v3 needs 3-channel images of at least "
                          f"{INCEPTION_MIN_SIZE}x{INCEPTION_MIN_SIZE} (299x299 in the paper), "
                          f"got {c}x{h}x{w}; use --set image_size=299")
    return tv_inception_v3(weights=None, aux_logits=False, init_weights=True,
                           num_classes=num_classes, dropout=dropout)
