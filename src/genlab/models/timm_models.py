"""timm's models by name: ``timm:resnet18`` is ``timm.create_model("resnet18")``, built
untrained for the data set's channels and classes. timm is imported only when such a name is
used, and a missing timm is a one-line error saying how to install it."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from genlab.errors import GenlabError


def timm_family(name: str) -> Callable[..., nn.Module]:
    """The factory for timm model ``name``: ``factory(input_shape, num_classes)`` builds it
    with random weights (``pretrained=False``), ``in_chans`` = the input's channels C."""
    try:
        import timm
    except ImportError:
        raise GenlabError(f"model 'timm:{name}' needs timm; install it with: pip install timm"
                          ) from None
    if not timm.is_model(name):
        raise GenlabError(f"timm has no model {name!r}; timm.list_models() lists its names")

    def factory(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        return timm.create_model(name, pretrained=False, num_classes=num_classes,
                                 in_chans=int(input_shape[0]))

    return factory
