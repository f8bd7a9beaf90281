"""Model registry: uniform constructors ``factory(input_shape, num_classes) -> nn.Module``.

Names are either registered exactly (``mlp1x512``), matched by a registered prefix
(``mlp:512x256`` -> the ``mlp:`` family), or ``package.module:factory`` for any importable
factory taking ``input_shape`` and ``num_classes`` keyword arguments.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence

from torch import nn

from .errors import GenlabError

ModelFactory = Callable[..., nn.Module]

_MODELS: dict[str, ModelFactory] = {}
_FAMILIES: dict[str, Callable[[str], ModelFactory]] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register_model(name: str, factory: ModelFactory | None = None, *, description: str = ""):
    """Register ``factory(input_shape, num_classes) -> nn.Module`` under ``name``.

    Usable as a decorator (``@register_model("mynet")``) or a call. Re-registering a name
    replaces it, so notebooks can redefine a model.
    """

    def deco(f: ModelFactory) -> ModelFactory:
        _MODELS[name] = f
        _DESCRIPTIONS[name] = description or (f.__doc__ or "").strip().split("\n")[0]
        return f

    return deco(factory) if factory is not None else deco


def register_family(prefix: str, parse: Callable[[str], ModelFactory], description: str) -> None:
    """Register a parametrised family: ``prefix:ARGS`` is built by ``parse(ARGS)``."""
    _FAMILIES[prefix] = parse
    _DESCRIPTIONS[prefix + ":..."] = description


def list_models() -> dict[str, str]:
    """Registered names (and families as ``prefix:...``) with a one-line description."""
    return dict(sorted(_DESCRIPTIONS.items()))


def resolve_model(name: str) -> ModelFactory:
    """Return the factory a model name stands for, or raise a one-line :class:`GenlabError`."""
    if name in _MODELS:
        return _MODELS[name]
    prefix, sep, args = name.partition(":")
    if sep and prefix in _FAMILIES:
        return _FAMILIES[prefix](args)
    if sep and prefix.replace(".", "").replace("_", "").isalnum() and args:
        return _import_factory(prefix, args, name)
    known = ", ".join(sorted(_MODELS) + [p + ":..." for p in _FAMILIES])
    raise GenlabError(
        f"unknown model {name!r}; known: {known}, or package.module:factory for your own"
    )


def build_model(
    name: str | ModelFactory, input_shape: Sequence[int], num_classes: int, *,
    dropout: float = 0.0,
) -> nn.Module:
    """Build a model for inputs of shape ``input_shape`` (C, H, W) and ``num_classes`` outputs.

    ``name`` is a registry name, ``package.module:factory``, or a factory callable. ``dropout``
    > 0 is passed to factories that take a ``dropout`` keyword (alexnet-small); for any other
    model it is an error, since the model has no place for it.
    """
    factory = name if callable(name) else resolve_model(name)
    shape = tuple(int(s) for s in input_shape)
    kw = {}
    if dropout:
        if not _takes_dropout(factory):
            raise GenlabError(f"model {name!r} has no place for dropout; --dropout applies to "
                              "models whose factory takes a dropout argument (alexnet-small)")
        kw["dropout"] = float(dropout)
    try:
        model = factory(input_shape=shape, num_classes=int(num_classes), **kw)
    except GenlabError:
        raise
    except Exception as e:  # a user's factory failing is bad input, not a genlab bug
        raise GenlabError(
            f"model {name!r} could not be built for input {shape} with {num_classes} classes: {e}"
        ) from e
    if not isinstance(model, nn.Module):
        raise GenlabError(f"model factory {name!r} returned {type(model).__name__}, not nn.Module")
    return model


def _takes_dropout(factory: ModelFactory) -> bool:
    import inspect

    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return "dropout" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _import_factory(module: str, attr: str, name: str) -> ModelFactory:
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise GenlabError(f"cannot import module {module!r} for model {name!r}: {e}") from e
    factory = getattr(mod, attr, None)
    if not callable(factory):
        raise GenlabError(f"module {module!r} has no callable {attr!r} (model {name!r})")
    return factory


# --- multilayer perceptrons -------------------------------------------------------------------


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


def _mlp_family(args: str) -> ModelFactory:
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


register_family("mlp", _mlp_family, "MLP with the given hidden widths, e.g. mlp:512x512")
register_model("mlp1x512", _mlp_family("512"), description="MLP 1x512 (paper: 1,209,866 params)")
register_model("mlp3x512", _mlp_family("512x512x512"),
               description="MLP 3x512 (paper: 1,735,178 params)")
# registers the paper's CNNs, and inception-v3 with the imagefolder data set
from . import cnn, imagenet  # noqa: E402,F401
