"""K models of one architecture as one module: grouped convolutions and batched matmuls.

:func:`stack_models` turns K ordinary models (same layer shapes, e.g. one architecture under K
corruption levels or seeds) into one :class:`StackedModels` that computes all K forward passes
in one call, with each model's parameters, gradients and BatchNorm statistics kept apart:

- Conv2d -> one grouped convolution (groups = K x the model's groups) over the K weight tensors
  concatenated; the activations are (B, K*C, H, W) with model k in channels [k*C, (k+1)*C).
- BatchNorm2d -> one BatchNorm over K*C channels: its statistics are per channel, hence per
  model, running statistics included (``torch.func.vmap`` cannot update those).
- Linear -> one batched matmul over (K, B, F) activations.
- ReLU, pooling -> unchanged (they act on each channel on its own).
- LocalResponseNorm mixes neighbouring channels, so it runs on a (B*K, C, H, W) view: model
  k's first channel never sees model k-1's last one.
- genlab's Inception and Downsample blocks concatenate their branches per model.

Every stacked parameter has the model axis first, (K, ...), so one SGD update with per-model
learning rates, momentum and masks serves all of them
(:func:`genlab.training.batched.train_batched`). :meth:`StackedModels.write_back` copies the trained
weights and buffers back into the K models.
Anything else (dropout with p > 0, unknown module types, custom forward methods) is refused with
a :class:`~genlab.errors.GenlabError` rather than stacked wrongly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from genlab.errors import GenlabError

__all__ = ["StackedModels", "check_stackable", "stack_models"]

#: blocks whose forward is torch.cat([branch(x) for branch], dim=1), by branch attribute names
#: (a model's block declares this itself: a class attribute ``stack_branches``, the names of
#: its branch submodules, as genlab's Inception and Downsample blocks do)
#: parameterless modules acting on each element: any layout
_ELEMENTWISE = (nn.ReLU, nn.Identity, nn.Tanh, nn.Sigmoid, nn.GELU, nn.LeakyReLU, nn.ELU)
#: parameterless modules acting on each channel of an image on its own: image layout
#: (a model's own such module says so with a class attribute ``stack_as = "channelwise"``)
_CHANNELWISE = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
                nn.AdaptiveMaxPool2d)

# Layouts passed between stages: "raw" (K, B, *example_shape) as the trainer gathers a batch,
# "image" (B, K*C, H, W) with per-model channel blocks, "flat" (K, B, F) for linear layers.


class _ToImage(nn.Module):
    """(K, B, C, H, W) -> (B, K*C, H, W)."""

    def __init__(self, k: int):
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise GenlabError(f"stacked convolutional models need inputs (K, B, C, H, W), got "
                              f"shape {tuple(x.shape)}")
        return x.transpose(0, 1).flatten(1, 2)


class _Flatten(nn.Module):
    """Per-model flatten: image (B, K*C, H, W) or raw (K, B, ...) -> flat (K, B, F)."""

    def __init__(self, k: int, layout: str):
        super().__init__()
        self.k, self.layout = k, layout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == "raw":
            return x.flatten(2)
        return x.reshape(x.shape[0], self.k, -1).transpose(0, 1)


class _PerModel(nn.Module):
    """Apply a parameterless module to each model's channels alone: (B, K*C, H, W) via a
    (B*K, C, H, W) view, so a channel-mixing module (LRN) never mixes two models."""

    def __init__(self, module: nn.Module, k: int):
        super().__init__()
        self.module, self.k = module, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, kc = x.shape[:2]
        y = self.module(x.reshape(b * self.k, kc // self.k, *x.shape[2:]))
        return y.reshape(b, -1, *y.shape[2:])


class _Concat(nn.Module):
    """Branches side by side, concatenated per model: (B, K*C, H, W) -> (B, K*sum(Ci), H, W)."""

    def __init__(self, branches: Sequence[nn.Module], k: int):
        super().__init__()
        self.branches, self.k = nn.ModuleList(branches), k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [br(x) for br in self.branches]
        b, hw = x.shape[0], outs[0].shape[2:]
        return torch.cat([o.reshape(b, self.k, -1, *hw) for o in outs], 2).reshape(b, -1, *hw)


class _StackedWeights(nn.Module):
    """Layers whose parameters are ``weight`` (K, ...) and optional ``bias`` (K, ...)."""

    weight: nn.Parameter
    bias: nn.Parameter | None

    @torch.no_grad()
    def write_back(self, mods: Sequence[nn.Module], which: Sequence[int]) -> None:
        for k in which:
            mods[k].weight.copy_(self.weight[k])
            if self.bias is not None:
                mods[k].bias.copy_(self.bias[k])


class _StackedConv2d(_StackedWeights):
    """K Conv2d as one grouped convolution; weight (K, out, in/groups, kh, kw), bias (K, out)."""

    def __init__(self, convs: Sequence[nn.Conv2d]):
        super().__init__()
        c = convs[0]
        if c.padding_mode != "zeros":
            raise GenlabError(f"cannot stack Conv2d with padding_mode={c.padding_mode!r}; "
                              "train these runs one by one (--batched off)")
        self.k = len(convs)
        self.stride, self.padding, self.dilation, self.groups = (c.stride, c.padding,
                                                                 c.dilation, c.groups)
        self.weight = nn.Parameter(torch.stack([m.weight.detach().clone() for m in convs]))
        self.bias = (nn.Parameter(torch.stack([m.bias.detach().clone() for m in convs]))
                     if c.bias is not None else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias.flatten() if self.bias is not None else None
        return F.conv2d(x, self.weight.flatten(0, 1), bias, self.stride, self.padding,
                        self.dilation, self.groups * self.k)


class _StackedBatchNorm2d(nn.Module):
    """K BatchNorm2d as one over K*C channels (statistics per channel are per model).

    Mirrors ``nn.BatchNorm2d.forward`` exactly (momentum, cumulative average when momentum is
    None, batch statistics in eval mode without running statistics).
    """

    def __init__(self, bns: Sequence[nn.BatchNorm2d]):
        super().__init__()
        b = bns[0]
        self.k, self.c = len(bns), b.num_features
        self.eps, self.momentum = b.eps, b.momentum
        self.affine, self.track_running_stats = b.affine, b.track_running_stats
        if b.affine:
            self.weight = nn.Parameter(torch.stack([m.weight.detach().clone() for m in bns]))
            self.bias = nn.Parameter(torch.stack([m.bias.detach().clone() for m in bns]))
        if b.track_running_stats:
            counts = {int(m.num_batches_tracked) for m in bns}
            if len(counts) != 1:  # the counter is shared; it drives momentum=None averaging
                raise GenlabError("cannot stack BatchNorm layers that have seen different "
                                  "numbers of batches; stack freshly built models")
            self.register_buffer("running_mean", torch.cat([m.running_mean for m in bns]))
            self.register_buffer("running_var", torch.cat([m.running_var for m in bns]))
            self.register_buffer("num_batches_tracked", bns[0].num_batches_tracked.clone())
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        bn_training = self.training or self.running_mean is None
        use_stats = not self.training or self.track_running_stats
        return F.batch_norm(
            x, self.running_mean if use_stats else None, self.running_var if use_stats else None,
            self.weight.flatten() if self.affine else None,
            self.bias.flatten() if self.affine else None, bn_training, factor, self.eps)

    @torch.no_grad()
    def write_back(self, mods: Sequence[nn.Module], which: Sequence[int]) -> None:
        for k in which:
            m = mods[k]
            if self.affine:
                m.weight.copy_(self.weight[k])
                m.bias.copy_(self.bias[k])
            if self.track_running_stats:
                m.running_mean.copy_(self.running_mean.view(self.k, self.c)[k])
                m.running_var.copy_(self.running_var.view(self.k, self.c)[k])
                m.num_batches_tracked.copy_(self.num_batches_tracked)


class _StackedLinear(_StackedWeights):
    """K Linear layers as one batched matmul on (K, B, in); weight (K, out, in), bias (K, out)."""

    def __init__(self, lins: Sequence[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([m.weight.detach().clone() for m in lins]))
        self.bias = (nn.Parameter(torch.stack([m.bias.detach().clone() for m in lins]))
                     if lins[0].bias is not None else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            return torch.bmm(x, self.weight.transpose(1, 2))
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))


def _refuse(what: str, name: str) -> GenlabError:
    return GenlabError(f"cannot train these models stacked: {what} at {name or 'the top'}; "
                       "train them one by one (--batched off)")


def _to_image(layout: str, k: int, name: str) -> list[nn.Module]:
    if layout == "flat":
        raise _refuse("an image layer after a Flatten/Linear", name)
    return [_ToImage(k)] if layout == "raw" else []


def _convert(mods: list[nn.Module], layout: str, name: str,
             leaves: list[tuple[str, nn.Module]]) -> tuple[list[nn.Module], str]:
    """Stages computing ``mods[k]`` for every k on ``layout``; returns (stages, new layout)."""
    k, m0, t = len(mods), mods[0], type(mods[0])
    if any(type(m) is not t for m in mods):
        raise _refuse("the models differ in layer type", name)
    if any(sum(1 for _ in m.parameters(recurse=False)) != sum(1 for _ in m0.parameters(
            recurse=False)) for m in mods):
        raise _refuse("the models differ in parameters", name)
    for p in zip(*(list(m.parameters(recurse=False)) for m in mods)):
        if len({tuple(q.shape) for q in p}) != 1:
            raise _refuse("the models differ in parameter shapes", name)

    def sub(child: str) -> str:
        return f"{name}.{child}" if name else child

    if isinstance(m0, nn.Sequential) and t.forward is nn.Sequential.forward:
        keys = list(m0._modules)
        if any(list(m._modules) != keys for m in mods):
            raise _refuse("the models differ in layers", name)
        stages: list[nn.Module] = []
        for key in keys:
            more, layout = _convert([m._modules[key] for m in mods], layout, sub(key), leaves)
            stages += more
        return stages, layout
    if getattr(t, "stack_branches", None):
        pre = _to_image(layout, k, name)
        branches = []
        for attr in t.stack_branches:
            st, out = _convert([getattr(m, attr) for m in mods], "image", sub(attr), leaves)
            if out != "image":
                raise _refuse("a branch that does not end in an image", sub(attr))
            branches.append(nn.Sequential(*st))
        return pre + [_Concat(branches, k)], "image"
    if t is nn.Conv2d:
        if len({(m.stride, m.padding, m.dilation, m.groups, m.padding_mode) for m in mods}) != 1:
            raise _refuse("the models differ in convolution settings", name)
        leaf = _StackedConv2d(mods)
        leaves.append((name, leaf))
        return _to_image(layout, k, name) + [leaf], "image"
    if t is nn.BatchNorm2d:
        if len({(m.eps, m.momentum, m.affine, m.track_running_stats) for m in mods}) != 1:
            raise _refuse("the models differ in BatchNorm settings", name)
        leaf = _StackedBatchNorm2d(mods)
        leaves.append((name, leaf))
        return _to_image(layout, k, name) + [leaf], "image"
    if t is nn.Linear:
        if layout != "flat":
            raise _refuse("a Linear layer without a Flatten before it", name)
        leaf = _StackedLinear(mods)
        leaves.append((name, leaf))
        return [leaf], "flat"
    if t is nn.Flatten:
        if (m0.start_dim, m0.end_dim) != (1, -1):
            raise _refuse(f"Flatten({m0.start_dim}, {m0.end_dim})", name)
        if layout == "flat":
            return [], "flat"
        return [_Flatten(k, layout)], "flat"
    if t is nn.Dropout:
        if any(m.p > 0 for m in mods):
            # each run draws its dropout masks from one global random stream in its own order
            raise _refuse(f"dropout (p={max(m.p for m in mods)}), which stacked training "
                          "cannot draw as K separate runs would", name)
        return [], layout
    _same_config(mods, name)
    if t in _ELEMENTWISE:
        return [m0], layout
    if t in _CHANNELWISE or getattr(t, "stack_as", "") == "channelwise":
        return _to_image(layout, k, name) + [m0], "image"
    if issubclass(t, nn.LocalResponseNorm) and t.forward is nn.LocalResponseNorm.forward:
        return _to_image(layout, k, name) + [_PerModel(m0, k)], "image"
    raise _refuse(f"unsupported layer {t.__name__} (stacking knows Conv2d, BatchNorm2d, "
                  "Linear, Flatten, ReLU, pooling, LocalResponseNorm, Dropout(0), Sequential "
                  "and genlab's Inception blocks)", name)


def _same_config(mods: list[nn.Module], name: str) -> None:
    if any(list(m.parameters()) or list(m.buffers()) for m in mods):
        raise _refuse(f"{type(mods[0]).__name__} with parameters or buffers", name)
    if len({repr(m) for m in mods}) != 1:
        raise _refuse("the models differ in layer settings", name)


class StackedModels(nn.Module):
    """K models of one architecture as one module (see the module docstring).

    forward: x (K, B, *example_shape) -> logits (K, B, num_classes); model k sees x[k] only.
    Every parameter has the model axis first: shape (K, *the original parameter's shape).
    """

    def __init__(self, models: Sequence[nn.Module]):
        super().__init__()
        models = list(models)
        if not models:
            raise GenlabError("stack_models needs at least one model")
        leaves: list[tuple[str, nn.Module]] = []
        stages, layout = _convert(models, "raw", "", leaves)
        if layout != "flat":
            raise _refuse("a model that does not end in a Linear layer", "the output")
        self.net = nn.Sequential(*stages)
        self.k = len(models)
        # plain list: the leaves are registered once, inside self.net
        self._leaves = [(n, leaf) for n, leaf in leaves]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != self.k:
            raise GenlabError(f"stacked input must have {self.k} models on its first axis, got "
                              f"shape {tuple(x.shape)}")
        return self.net(x)

    def write_back(self, models: Sequence[nn.Module], which: Sequence[int] | None = None
                   ) -> None:
        """Copy model k's weights and buffers into ``models[k]`` for each k in ``which``
        (default: all). ``models`` are the ones stacked, or any of the same architecture."""
        if len(models) != self.k:
            raise GenlabError(f"write_back needs {self.k} models, got {len(models)}")
        which = range(self.k) if which is None else which
        for name, leaf in self._leaves:
            leaf.write_back([m.get_submodule(name) for m in models], which)


def stack_models(models: Sequence[nn.Module]) -> StackedModels:
    """One :class:`StackedModels` computing the K ``models`` at once, with copies of their
    weights and buffers (the models themselves are left untouched)."""
    return StackedModels(models)


def check_stackable(model: nn.Module) -> None:
    """Raise a :class:`GenlabError` naming the layer if ``model`` cannot be stacked."""
    StackedModels([model])
