"""A network as a list of linear layers (:class:`LayerInfo`): weights as matrices, convolutions
with their input sizes, BatchNorm folded into the layer before it. Every norm-based measure
reads networks through this view."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from genlab.errors import GenlabError

_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
# normalisations that use per-example statistics cannot be folded into a linear map
_UNSUPPORTED = tuple(
    t
    for t in (
        nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
        getattr(nn, "RMSNorm", None), nn.RNNBase, nn.MultiheadAttention, nn.Embedding,
        nn.EmbeddingBag, nn.Bilinear, nn.Conv1d, nn.Conv3d, nn.ConvTranspose1d,
        nn.ConvTranspose2d, nn.ConvTranspose3d,
    )
    if t is not None
)
# modules that are the identity in eval mode: a BatchNorm after them still folds
_TRANSPARENT = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
                nn.AlphaDropout)


@dataclass(frozen=True)
class LayerInfo:
    """One linear map of the network, with any following BatchNorm folded in.

    name: qualified module name; kind: "linear" or "conv2d"; weight: (out, fan_in) float64 CPU
    tensor (fan_in = in*kh*kw for convs); bias: (out,) or None; kernel: (out, in, kh, kw) for
    convs (folded) else None; stride / padding / dilation: conv hyperparameters (pairs) else
    None; input_hw: (H, W) of the conv's input when known (needed for FFT norms); folded_bn: the
    name of the BatchNorm folded into this layer, or None.
    """

    name: str
    kind: str
    weight: torch.Tensor
    bias: torch.Tensor | None
    kernel: torch.Tensor | None = None
    stride: tuple[int, int] | None = None
    padding: tuple[int, int] | None = None
    dilation: tuple[int, int] | None = None
    input_hw: tuple[int, int] | None = None
    folded_bn: str | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """(out, fan_in) of the weight matrix."""
        return (int(self.weight.shape[0]), int(self.weight.shape[1]))


def _f64(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().to("cpu", torch.float64).clone()


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _layer_from(name: str, mod: nn.Module) -> LayerInfo:
    w = _f64(mod.weight)
    if isinstance(mod, nn.Linear):
        return LayerInfo(name=name, kind="linear", weight=w, bias=_f64(mod.bias))
    if mod.groups != 1:
        raise GenlabError(f"measures do not support grouped convolution {name!r} "
                          f"(groups={mod.groups})")
    if isinstance(mod.padding, str):  # 'same' / 'valid': record as the effective padding
        pad = (0, 0) if mod.padding == "valid" else tuple(
            d * (k - 1) // 2 for d, k in zip(_pair(mod.dilation), w.shape[2:]))
    else:
        pad = _pair(mod.padding)
    return LayerInfo(
        name=name, kind="conv2d", weight=w.reshape(w.shape[0], -1), bias=_f64(mod.bias),
        kernel=w, stride=_pair(mod.stride), padding=pad, dilation=_pair(mod.dilation),
    )


def _fold_bn(layer: LayerInfo, name: str, bn: nn.Module) -> LayerInfo:
    """Fold an eval-mode BatchNorm into the preceding layer.

    scale = gamma / sqrt(running_var + eps); W' = W * scale (per output row);
    b' = (b - running_mean) * scale + beta. Exactly the eval-mode function of layer + BN.
    """
    if bn.running_mean is None or bn.running_var is None:
        raise GenlabError(f"BatchNorm {name!r} keeps no running statistics "
                          "(track_running_stats=False), so it cannot be folded")
    out = layer.shape[0]
    if bn.num_features != out:
        raise GenlabError(f"BatchNorm {name!r} has {bn.num_features} features but the layer "
                          f"{layer.name!r} before it has {out} outputs")
    mean, var = _f64(bn.running_mean), _f64(bn.running_var)
    gamma = _f64(bn.weight) if bn.weight is not None else torch.ones(out, dtype=torch.float64)
    beta = _f64(bn.bias) if bn.bias is not None else torch.zeros(out, dtype=torch.float64)
    scale = gamma / torch.sqrt(var + bn.eps)
    bias = layer.bias if layer.bias is not None else torch.zeros(out, dtype=torch.float64)
    kernel = None
    if layer.kernel is not None:
        kernel = layer.kernel * scale.view(-1, 1, 1, 1)
    return LayerInfo(
        name=layer.name, kind=layer.kind, weight=layer.weight * scale[:, None],
        bias=(bias - mean) * scale + beta, kernel=kernel, stride=layer.stride,
        padding=layer.padding, dilation=layer.dilation, input_hw=layer.input_hw, folded_bn=name,
    )


def _walk(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """(name, module) pairs in forward order, honouring ``model.measure_modules()``."""
    chosen = getattr(model, "measure_modules", None)
    if not callable(chosen):
        yield from model.named_modules()
        return
    names = {id(m): n for n, m in model.named_modules()}
    for mod in chosen():
        if id(mod) not in names:
            raise GenlabError(f"measure_modules() returned a {type(mod).__name__} that is not a "
                              "submodule of the model")
        yield from mod.named_modules(prefix=names[id(mod)])


def _branches(mod: nn.Module) -> bool:
    """A container whose own forward (not nn.Sequential's) runs parametrised submodules: its
    forward order (e.g. Inception's parallel branches) is not its registration order."""
    if next(mod.children(), None) is None or type(mod).forward is nn.Sequential.forward:
        return False
    return any(True for _ in mod.parameters())


def _own_params(mod: nn.Module) -> bool:
    return any(True for _ in mod.parameters(recurse=False))


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    # restore each submodule's own flag: a model may be deliberately in a mixed state
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, was_training in flags:
            m.training = was_training


def device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    p = next(model.parameters(), None)
    return (p.device, p.dtype) if p is not None else (torch.device("cpu"), torch.float32)


def _conv_input_sizes(model: nn.Module, names: set[str], input_shape: Sequence[int]
                      ) -> dict[str, tuple[int, int]]:
    """Spatial input size of each named conv, found by a forward pass on one zero example."""
    sizes: dict[str, tuple[int, int]] = {}
    handles = []
    for n, mod in model.named_modules():
        if n in names:
            def hook(_m, inputs, n=n):
                sizes[n] = (int(inputs[0].shape[-2]), int(inputs[0].shape[-1]))
            handles.append(mod.register_forward_pre_hook(hook))
    device, dtype = device_dtype(model)
    try:
        with eval_mode(model), torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device, dtype=dtype))
    except Exception as e:  # a wrong input shape is the user's mistake
        raise GenlabError(f"cannot run the model on input shape {tuple(input_shape)}: {e}") from e
    finally:
        for h in handles:
            h.remove()
    return sizes


def linear_layers(model: nn.Module, input_shape: Sequence[int] | None = None) -> list[LayerInfo]:
    """The network's linear maps in forward order, BatchNorms folded in (eval-mode semantics).

    input_shape: one example's shape (C, H, W) without the batch dimension; when given, each
    conv's input spatial size is recorded (``input_hw``, needed by FFT operator norms).

    Raises GenlabError for a BatchNorm that does not directly follow a Linear/Conv2d (only
    Identity/Dropout may sit between), a BatchNorm without running statistics, grouped convs,
    and any unsupported parametrised module: "measures do not support layer 'x' of type Y".
    """
    layers: list[LayerInfo] = []
    foldable: int | None = None  # index of the layer a BatchNorm here would fold into
    chain = not callable(getattr(model, "measure_modules", None))
    for name, mod in _walk(model):
        if chain and _branches(mod):
            raise GenlabError(f"measures need a chain of layers, but {name or '<model>'!r} "
                              f"({type(mod).__name__}) has its own forward over parametrised "
                              "submodules (parallel branches?); define measure_modules()")
        if isinstance(mod, (nn.Linear, nn.Conv2d)):
            layers.append(_layer_from(name, mod))
            foldable = len(layers) - 1
        elif isinstance(mod, _BATCHNORMS):
            if foldable is None:
                raise GenlabError(f"BatchNorm {name!r} does not directly follow a Linear/Conv2d "
                                  "layer, so it cannot be folded; measures do not support it")
            layers[foldable] = _fold_bn(layers[foldable], name, mod)
            foldable = None
        elif isinstance(mod, _UNSUPPORTED) or _own_params(mod):
            raise GenlabError(f"measures do not support layer {name or '<model>'!r} "
                              f"of type {type(mod).__name__}")
        elif next(mod.children(), None) is None and not isinstance(mod, _TRANSPARENT):
            foldable = None  # a nonlinearity / pooling breaks BN adjacency
    if not layers:
        raise GenlabError("the model has no Linear or Conv2d layer to measure")
    if input_shape is not None:
        convs = {lay.name for lay in layers if lay.kind == "conv2d"}
        sizes = _conv_input_sizes(model, convs, input_shape) if convs else {}
        layers = [dataclasses.replace(lay, input_hw=sizes.get(lay.name)) for lay in layers]
    return layers


def param_count(model: nn.Module) -> int:
    """Number of scalar parameters (all of them, trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def max_width(layers: Sequence[LayerInfo]) -> int:
    """Largest weight-matrix dimension max_i max(out_i, fan_in_i) (includes the input size).

    Used as h (Neyshabur et al. 2018) and W (BFT 2017's ln W); for convs this counts channels x
    kernel taps, not spatial units.
    """
    return max(max(lay.shape) for lay in layers)
