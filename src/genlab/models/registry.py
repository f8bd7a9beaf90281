"""Model registry: factories that return an ``nn.Module`` for a data set's inputs and classes.

Names are either registered exactly (``mlp1x512``), matched by a registered prefix
(``mlp:512x256`` -> the ``mlp:`` family; ``timm:resnet18`` -> timm's model of that name), or
``package.module:callable`` for any importable callable returning an ``nn.Module``
(``torchvision.models:resnet18``). genlab passes a factory ``input_shape`` (C, H, W),
``num_classes`` and ``in_channels`` only where its signature takes them (:func:`model_kwargs`).

:func:`check_model` builds a model once and runs one probe forward pass, so that a factory that
fails, or builds something that cannot train on the data, is refused before any run starts.
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn.parameter import is_lazy

from genlab.errors import GenlabError
from genlab.registry import Registry, caller_module, describe_error, import_object, is_import_path

ModelFactory = Callable[..., nn.Module]

#: ``factory(input_shape, num_classes) -> nn.Module`` by name; families are ``prefix:ARGS``.
#: An entry registered from outside genlab is a custom model (:func:`is_custom_model`).
MODELS: Registry[ModelFactory] = Registry("model")


#: the image size (pixels) a model is given when the data set's size is an option (ImageFolder)
DEFAULT_INPUT_SIZE = 32


def register_model(name: str, factory: ModelFactory | None = None, *, description: str = "",
                   recipe_family: str = "mlp", input_size: int = DEFAULT_INPUT_SIZE):
    """Register ``factory(input_shape, num_classes) -> nn.Module`` under ``name``.

    Usable as a decorator (``@register_model("mynet")``) or a call. Re-registering a name
    replaces it, so notebooks can redefine a model. A model registered from outside genlab is
    a custom model: its runs are identified by what it builds (:mod:`genlab.models.identity`),
    so a redefinition gives new runs instead of reusing the old results. ``recipe_family``:
    whose named recipe ``--preset paper`` gives it (:mod:`genlab.models.recipes`).
    ``input_size``: the image side in pixels it is built for, which an ImageFolder tree is
    resized to unless the user gives ``image_size`` (Inception V3: 299).
    """
    return MODELS.register(name, factory, description=description, origin=caller_module(),
                           recipe_family=recipe_family, input_size=input_size)


def input_size(name: str) -> int:
    """The image side (pixels) model ``name`` is built for (:func:`register_model`'s
    ``input_size``; :data:`DEFAULT_INPUT_SIZE` for families and users' callables)."""
    entry = MODELS.find(name) if isinstance(name, str) else None
    return int(entry.meta.get("input_size", DEFAULT_INPUT_SIZE)) if entry else DEFAULT_INPUT_SIZE


def register_family(prefix: str, parse: Callable[[str], ModelFactory], description: str, *,
                    recipe_family: str = "mlp") -> None:
    """Register a parametrised family: ``prefix:ARGS`` is built by ``parse(ARGS)``."""
    origin = caller_module()

    def make(name: str) -> ModelFactory:
        args = name.partition(":")[2]
        try:
            return parse(args)
        except GenlabError:
            raise
        except Exception as e:  # a user's family parser failing
            raise GenlabError(f"model family {prefix!r} cannot make {name!r}: "
                              f"{describe_error(e)}") from e

    MODELS.register_family(re.escape(prefix) + r":.+", make, description,
                           label=prefix + ":...", origin=origin, recipe_family=recipe_family)


def is_custom_model(name: str) -> bool:
    """Whether ``name`` is the user's model rather than one of genlab's own: a
    ``package.module:factory`` path, or a name or family registered from outside genlab.

    genlab's own models are fixed by their names (and SPEC_VERSION); a custom model's code can
    change under the same name, so its runs carry a fingerprint of what it builds.
    """
    entry = MODELS.registered(name)
    if entry is not None:
        return not entry.builtin
    fam = MODELS.family_of(name)
    return fam is None or not (fam.origin == "genlab" or fam.origin.startswith("genlab."))


def list_models() -> dict[str, str]:
    """Registered names (and families as ``prefix:...``) with a one-line description."""
    return dict(sorted(MODELS.list().items()))


def resolve_model(name: str) -> ModelFactory:
    """Return the factory a model name stands for, or raise a one-line :class:`GenlabError`."""
    entry = MODELS.find(name)
    if entry is not None:
        return entry.value
    prefix, sep, args = name.partition(":")
    if is_import_path(name):
        return import_factory(prefix, args, name)
    known = ", ".join(list_models())
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
    kw = model_kwargs(factory, shape, int(num_classes))
    if dropout:
        if not takes_dropout(factory):
            raise GenlabError(f"model {name!r} has no place for dropout; --dropout applies to "
                              "models whose factory takes a dropout argument (alexnet-small)")
        kw["dropout"] = float(dropout)
    try:
        model = factory(**kw)
    except GenlabError:
        raise
    except (Exception, SystemExit) as e:  # a user's factory failing is bad input, not a bug
        raise GenlabError(
            f"model {name!r} could not be built for input {shape} with {num_classes} classes "
            f"(called with {', '.join(kw) or 'no arguments'}): {describe_error(e)}; fix its "
            "factory"
        ) from e
    if not isinstance(model, nn.Module):
        raise GenlabError(f"model factory {name!r} returned {type(model).__name__}, not a "
                          "torch.nn.Module; a factory must return the network as an nn.Module")
    return model


def check_model(name: str, input_shape: Sequence[int], num_classes: int,
                dropout: float = 0.0) -> nn.Module:
    """Build ``name``'s model and check it can train on inputs of ``input_shape`` (C, H, W).

    The model is built under ``torch.manual_seed(0)`` in a forked RNG (the caller's random
    state is left as it was), then one probe forward pass on one random example of shape
    ``(1, *input_shape)``, on the CPU, in eval mode and without gradients, must give float
    logits of shape ``(1, num_classes)``. Refused with a one-line :class:`GenlabError`: a
    factory that fails or returns no ``nn.Module``, a model with no trainable parameters, a
    forward pass that raises, and output of another shape. Returns the model (seed-0 weights,
    back in training mode).
    """
    shape = tuple(int(s) for s in input_shape)
    k = int(num_classes)
    x_shape = (1, *shape)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(name, shape, k, dropout=dropout)
        if any(is_lazy(t) for t in (*model.parameters(), *model.buffers())):
            raise GenlabError(f"model {name!r} has uninitialized (lazy) parameters, e.g. from "
                              "nn.LazyLinear; genlab builds the optimizer before the first "
                              "forward pass, so give every layer its sizes (input_shape is "
                              "passed to the factory)")
        if count_parameters(model) == 0:
            raise GenlabError(f"model {name!r} has no trainable parameters; its factory must "
                              "return a network with parameters to train")
        x = torch.randn(x_shape)
        training = model.training
        model.eval()
        try:
            with torch.no_grad():
                out = model(x)
        except GenlabError:
            raise
        except (Exception, SystemExit) as e:
            raise GenlabError(
                f"model {name!r} fails on one input of shape {x_shape} (a batch of one of "
                f"the data set's preprocessed inputs): {describe_error(e)}; make it accept "
                "that shape"
            ) from e
        finally:
            model.train(training)
    if not isinstance(out, torch.Tensor):
        raise GenlabError(f"model {name!r} returns {type(out).__name__} for one input of shape "
                          f"{x_shape}; it must return a tensor of logits of shape (1, {k})")
    if tuple(out.shape) != (1, k):
        width = out.shape[-1] if out.dim() else "none"
        raise GenlabError(
            f"model {name!r} gives output of shape {tuple(out.shape)} for one input of shape "
            f"{x_shape}, width {width}; wanted (1, {k}), one logit per class: give its last "
            f"layer {k} outputs (num_classes)"
        )
    if not out.is_floating_point():
        raise GenlabError(f"model {name!r} gives {out.dtype} output; it must return float "
                          "logits")
    return model


def model_kwargs(factory: ModelFactory, input_shape: tuple[int, ...],
                 num_classes: int) -> dict:
    """The keyword arguments genlab gives ``factory``: ``input_shape`` (C, H, W),
    ``num_classes`` and ``in_channels`` (C), each only if the signature names it.

    A factory taking only ``**kwargs`` (torchvision's ``resnet18(*, weights=None,
    **kwargs)``) gets ``num_classes``, the one keyword every classifier constructor shares. A
    callable whose signature cannot be read gets ``input_shape`` and ``num_classes``.
    """
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {"input_shape": input_shape, "num_classes": num_classes}
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    named = {n for n, p in params.items()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    offer = {"input_shape": input_shape, "num_classes": num_classes,
             "in_channels": input_shape[0]}
    kw = {k: v for k, v in offer.items() if k in named}
    if var_kw:
        kw.setdefault("num_classes", num_classes)
    return kw


def instance_factory(module: nn.Module) -> ModelFactory:
    """A factory returning a fresh copy of ``module`` (its weights as given) on each call, so
    that a model instance handed to genlab from Python is never trained in place and every run
    starts from the same weights (the run's seed then changes only the data order)."""
    if not isinstance(module, nn.Module):
        raise GenlabError(f"model must be a name, a factory or an nn.Module, not "
                          f"{type(module).__name__}")
    frozen = copy.deepcopy(module)

    def factory() -> nn.Module:
        return copy.deepcopy(frozen)

    factory.__qualname__ = f"copy of {type(module).__name__}"
    return factory


def takes_dropout(factory: ModelFactory) -> bool:
    import inspect

    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return "dropout" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def import_factory(module: str, attr: str, name: str) -> ModelFactory:
    """The callable ``module:attr`` (see :func:`genlab.registry.import_object`)."""
    factory = import_object(f"{module}:{attr}", f"model {name!r}")
    if not callable(factory):
        raise GenlabError(f"module {module!r} has no callable {attr!r} (model {name!r}); "
                          "name a callable returning an nn.Module")
    return factory
