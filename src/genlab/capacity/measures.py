"""Capacity / complexity measures of trained networks (norms, margins, sharpness) and the rank
correlations used to judge them against generalization gaps (Jiang et al. 2019).

Which networks: sequential ReLU networks made of ``Linear`` / ``Conv2d`` layers (optionally each
followed directly by a ``BatchNorm``, which is folded in) and parameter-free modules (ReLU,
Flatten, pooling, Dropout, Identity, LocalResponseNorm ...). Modules are walked in registration
order, which is the forward order for ``nn.Sequential``-like models. A model whose forward order
differs (parallel branches, residuals) can define ``measure_modules()`` returning its
``Linear`` / ``Conv2d`` / ``BatchNorm`` modules (or blocks of them) in forward order; those are
walked instead. Any other parametrised module raises :class:`~genlab.errors.GenlabError` naming
it: nothing is skipped silently.

Conventions: a layer's weight matrix is ``out x fan_in`` (a conv kernel ``out x in x kh x kw``
reshaped to ``out x (in*kh*kw)``), held as float64 on the CPU; "weights" excludes biases unless
stated; m = n = number of examples in ``X``; logs are natural. Measures marked "measure" are
bound terms with their constants omitted, as Jiang et al. 2019 do; they are for ranking, not
certified bounds.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from genlab.capacity.correlation import granulated_kendall, kendall_tau
from genlab.capacity.layers import (
    LayerInfo,
    device_dtype,
    eval_mode,
    linear_layers,
    max_width,
    param_count,
)
from genlab.errors import GenlabError

__all__ = [
    "LayerInfo",
    "SharpnessResult",
    "accuracy",
    "all_measures",
    "bft_bound_measure",
    "bft_spectral_complexity",
    "conv_operator_norm_fft",
    "dist_from_init_sq",
    "frobenius_sq_sum",
    "granulated_kendall",
    "kendall_tau",
    "linear_layers",
    "log_bft_spectral_complexity",
    "log_prod_spectral_sq",
    "margin_percentiles",
    "max_width",
    "neyshabur_bound_measure",
    "output_margins",
    "pacbayes_flatness_measure",
    "param_count",
    "param_dist_sq",
    "path_norm",
    "path_norm_sq",
    "perturbed_accuracy",
    "rademacher_from_accuracies",
    "sharpness_sigma",
    "spectral_norms",
]


def frobenius_sq_sum(layers: Sequence[LayerInfo]) -> float:
    """sum_i ||W_i||_F^2 over the (folded) weight matrices, biases excluded."""
    return float(sum(lay.weight.pow(2).sum() for lay in layers))


def conv_operator_norm_fft(
    kernel: torch.Tensor, input_hw: tuple[int, int], dilation: tuple[int, int] = (1, 1)
) -> float:
    """Exact operator (spectral) norm of a stride-1 2-D convolution with CIRCULAR padding.

    kernel: (out, in, kh, kw); input_hw: the input's (H, W). Sedghi, Gupta & Long ("The
    singular values of convolutional layers", ICLR 2019): the singular values of the circular
    conv are those of the out x in matrices
    P(u, v) = sum_{a,b} K[:, :, a, b] e^{-2 pi i (au/H + bv/W)}, i.e. of the 2-D FFT of the
    kernel zero-padded to H x W, over all H*W frequencies. Taps that fall beyond H or W (kernel
    or dilation larger than the input) wrap around and add, as circular padding does. For
    stride s > 1 the strided conv is a subsampling of this map, so the value is an upper bound;
    zero-padded convs differ slightly at the border.
    """
    k = kernel.detach().to("cpu", torch.float64)
    if k.dim() != 4:
        raise GenlabError(f"conv kernel must be (out, in, kh, kw), got shape {tuple(k.shape)}")
    h, w = int(input_hw[0]), int(input_hw[1])
    if h < 1 or w < 1:
        raise GenlabError(f"input size must be positive, got {input_hw}")
    out_c, in_c, kh, kw = k.shape
    full = torch.zeros(out_c, in_c, h, w, dtype=torch.float64)
    for a in range(kh):
        for b in range(kw):
            full[:, :, (a * dilation[0]) % h, (b * dilation[1]) % w] += k[:, :, a, b]
    per_freq = torch.fft.fft2(full).permute(2, 3, 0, 1)  # (H, W, out, in) complex
    return float(_largest_singular_value(per_freq).max())


def _largest_singular_value(a: torch.Tensor) -> torch.Tensor:
    """sigma_max of each matrix in a (..., r, c) batch: sqrt of the top eigenvalue of the
    smaller Gram matrix (eigvalsh on min(r, c)^2 is much cheaper than a full SVD, and the top
    eigenvalue keeps full relative precision)."""
    at = a.transpose(-2, -1).conj()
    gram = a @ at if a.shape[-2] <= a.shape[-1] else at @ a
    return torch.linalg.eigvalsh(gram)[..., -1].clamp_min(0.0).sqrt()


def _spectral_norm(layer: LayerInfo, conv_norm: str) -> float:
    if layer.kind == "conv2d" and conv_norm == "fft":
        if layer.input_hw is None:
            raise GenlabError(f"FFT norm of conv {layer.name!r} needs its input size: pass "
                              "input_shape to linear_layers")
        return conv_operator_norm_fft(layer.kernel, layer.input_hw, layer.dilation)
    return float(_largest_singular_value(layer.weight))


def spectral_norms(layers: Sequence[LayerInfo], conv_norm: str = "reshape") -> list[float]:
    """||W_i||_2 per layer (largest singular value).

    conv_norm: "reshape" uses the out x (in*kh*kw) matrix (Jiang et al. 2019's convention);
    "fft" the exact circular-conv operator norm (:func:`conv_operator_norm_fft`), which is >= the
    reshaped one when the kernel fits in the input (Parseval).
    """
    if conv_norm not in ("reshape", "fft"):
        raise GenlabError(f"conv_norm must be 'reshape' or 'fft', got {conv_norm!r}")
    return [_spectral_norm(lay, conv_norm) for lay in layers]


def _log(x: float) -> float:
    return math.log(x) if x > 0 else -math.inf


def _logsumexp(xs: Sequence[float]) -> float:
    top = max(xs)
    if top == -math.inf or top == math.inf:
        return top
    return top + math.log(sum(math.exp(x - top) for x in xs))


def _exp(x: float) -> float:
    return math.exp(x) if x < 709.0 else math.inf  # float64 overflow -> inf, never an error


def log_prod_spectral_sq(norms: Sequence[float]) -> float:
    """ln prod_i ||W_i||_2^2 = 2 sum_i ln ||W_i||_2, in log space (products overflow)."""
    return 2.0 * sum(_log(s) for s in norms)


def dist_from_init_sq(layers: Sequence[LayerInfo], init_layers: Sequence[LayerInfo]) -> float:
    """sum_i ||W_i - W_i^0||_F^2 over the (folded) weight matrices, biases excluded."""
    _check_same_layers(layers, init_layers)
    return float(sum((a.weight - b.weight).pow(2).sum() for a, b in zip(layers, init_layers)))


def _check_same_layers(layers: Sequence[LayerInfo], ref: Sequence[LayerInfo]) -> None:
    if len(layers) != len(ref) or any(a.shape != b.shape for a, b in zip(layers, ref)):
        raise GenlabError("the init model's layers do not match the trained model's "
                          f"({[a.shape for a in layers]} vs {[b.shape for b in ref]})")


def param_dist_sq(model: nn.Module, init_model: nn.Module | None) -> float:
    """||w - w0||^2 over the flat vector of ALL parameters (biases, BN affine too).

    init_model None means w0 = 0, giving ||w||^2. This is the vector that the sharpness noise
    perturbs, so it is the distance used in :func:`pacbayes_flatness_measure`.
    """
    cur = dict(model.named_parameters())
    if init_model is None:
        return float(sum(p.detach().double().pow(2).sum() for p in cur.values()))
    ref = dict(init_model.named_parameters())
    if cur.keys() != ref.keys() or any(cur[k].shape != ref[k].shape for k in cur):
        raise GenlabError("the init model's parameters do not match the trained model's")
    return float(sum(
        (cur[k].detach().double().cpu() - ref[k].detach().double().cpu()).pow(2).sum()
        for k in cur
    ))


def path_norm_sq(model: nn.Module, input_shape: Sequence[int], include_bias: bool = True) -> float:
    """sum_outputs f_{w^2}(1): the network with every (BN-folded) weight squared, run on an
    all-ones input, outputs summed (Jiang et al. 2019's "path.norm").

    For a ReLU network this equals sum over input->output paths of prod of squared weights
    (Neyshabur et al. 2015): all signals are >= 0 so every ReLU is the identity. Convention: with
    ``include_bias`` biases are squared too, i.e. each bias is an edge from a constant-1 unit and
    its paths count; otherwise biases are zeroed. Max-pooling, average pooling and other
    parameter-free layers are applied as they are (the network-evaluation definition). Runs a
    float64 CPU copy; the model is not modified.
    """
    net = copy.deepcopy(model).to(device="cpu", dtype=torch.float64).eval()
    for lay in linear_layers(net):
        mod = net.get_submodule(lay.name)
        w = lay.kernel if lay.kernel is not None else lay.weight
        mod.weight = nn.Parameter(w.pow(2).reshape(mod.weight.shape), requires_grad=False)
        bias = lay.bias.pow(2) if (include_bias and lay.bias is not None) else None
        mod.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
        if lay.folded_bn is not None:  # its affine map now lives in the layer
            parent, _, child = lay.folded_bn.rpartition(".")
            setattr(net.get_submodule(parent), child, nn.Identity())
    with torch.no_grad():
        out = net(torch.ones(1, *input_shape, dtype=torch.float64))
    return float(out.sum())


def path_norm(model: nn.Module, input_shape: Sequence[int], include_bias: bool = True) -> float:
    """l2 path norm sqrt(sum over paths prod w^2) (Neyshabur, Tomioka & Srebro 2015);
    the square root of :func:`path_norm_sq`."""
    return math.sqrt(max(path_norm_sq(model, input_shape, include_bias), 0.0))


def _logits(model: nn.Module, X: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Model outputs on X in eval mode, (n, K) float64 on the CPU."""
    device, dtype = device_dtype(model)
    outs = []
    with eval_mode(model), torch.no_grad():
        for i in range(0, len(X), batch_size):
            xb = X[i:i + batch_size].to(device=device, dtype=dtype)
            outs.append(model(xb).detach().to("cpu", torch.float64))
    out = torch.cat(outs)
    return out.reshape(len(out), -1)


def _check_xy(X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    y = torch.as_tensor(y).reshape(-1).long().cpu()
    if len(X) != len(y) or len(y) == 0:
        raise GenlabError(f"need as many labels as inputs (> 0), got {len(X)} and {len(y)}")
    return y


def _margins_from_logits(f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if f.shape[1] == 1:  # one logit for classes {0, 1}: margin (2y - 1) f
        return (2.0 * y.double() - 1.0) * f[:, 0]
    if int(y.min()) < 0 or int(y.max()) >= f.shape[1]:
        raise GenlabError(f"labels must lie in [0, {f.shape[1] - 1}]")
    true = f.gather(1, y[:, None])[:, 0]
    other = f.scatter(1, y[:, None], -math.inf).max(dim=1).values
    return true - other


def output_margins(model: nn.Module, X: torch.Tensor, y: torch.Tensor,
                   batch_size: int = 1024) -> torch.Tensor:
    """Output margins f_y(x) - max_{j != y} f_j(x), shape (n,), float64 CPU, eval mode.

    For a single-logit binary model (labels 0/1) the margin is (2y - 1) f(x).
    """
    y = _check_xy(X, y)
    return _margins_from_logits(_logits(model, X, batch_size), y)


def margin_percentiles(margins: torch.Tensor, qs: Sequence[float] = (5.0, 10.0)
                       ) -> dict[str, float]:
    """{"margin_p5": ..., "margin_p10": ...}: percentiles (linear interpolation) of margins."""
    arr = np.asarray(torch.as_tensor(margins, dtype=torch.float64).cpu())
    return {f"margin_p{q:g}": float(np.percentile(arr, q)) for q in qs}


def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Fraction of examples whose margin is > 0 (argmax correct; ties count as errors)."""
    return float((output_margins(model, X, y, batch_size) > 0).double().mean())


def _l21_rows(a: torch.Tensor) -> float:
    """||A^T||_{2,1} = sum of the l2 norms of the ROWS of A (BFT's (2,1) norm of A^T sums the l2
    norms of the columns of A^T, i.e. the rows of the out x in matrix A)."""
    return float(a.pow(2).sum(dim=1).sqrt().sum())


def log_bft_spectral_complexity(
    layers: Sequence[LayerInfo],
    init_layers: Sequence[LayerInfo] | None = None,
    conv_norm: str = "reshape",
    norms: Sequence[float] | None = None,
) -> float:
    """ln R_A, Bartlett, Foster & Telgarsky 2017 (NeurIPS) spectral complexity:

        R_A = prod_i ||A_i||_2 * ( sum_i ||A_i^T - M_i^T||_{2,1}^{2/3} / ||A_i||_2^{2/3} )^{3/2}

    with reference matrices M_i = the init weights (zeros when ``init_layers`` is None) and
    ||A^T||_{2,1} = sum of row l2 norms of A. Evaluated as
    1.5 * logsumexp_i [ (2/3) ln ||A_i - M_i||_{2,1} + (2/3) sum_{j != i} ln ||A_j||_2 ],
    an identity that avoids dividing by a zero spectral norm and overflowing products.
    ``norms``: the layers' spectral norms if already computed (:func:`spectral_norms`).
    """
    ref = init_layers if init_layers is not None else [None] * len(layers)
    if init_layers is not None:
        _check_same_layers(layers, init_layers)
    norms = spectral_norms(layers, conv_norm) if norms is None else norms
    log_s = [_log(s) for s in norms]
    terms = []
    for i, (lay, r) in enumerate(zip(layers, ref)):
        diff = lay.weight if r is None else lay.weight - r.weight
        rest = sum(x for j, x in enumerate(log_s) if j != i)  # ln prod_{j != i} ||A_j||_2
        terms.append((2.0 / 3.0) * (_log(_l21_rows(diff)) + rest))
    return 1.5 * _logsumexp(terms)


def bft_spectral_complexity(
    layers: Sequence[LayerInfo],
    init_layers: Sequence[LayerInfo] | None = None,
    conv_norm: str = "reshape",
) -> float:
    """R_A of :func:`log_bft_spectral_complexity` (inf if it overflows float64)."""
    return _exp(log_bft_spectral_complexity(layers, init_layers, conv_norm))


def bft_bound_measure(log_r_a: float, x_fro: float, width: int, gamma: float, n: int) -> float:
    """BFT 2017 Thm 1.1 complexity term ||X||_F R_A ln(W) / (gamma n), constants and log
    factors of the O~ omitted (a "measure", as in Jiang et al. 2019).

    log_r_a: ln R_A; x_fro: ||X||_F = sqrt(sum_i ||x_i||^2); width: W, the maximum layer width
    (:func:`max_width`); gamma: the margin; n: number of examples. inf when gamma <= 0.
    """
    if gamma <= 0:
        return math.inf
    if width <= 1 or x_fro <= 0 or log_r_a == -math.inf:
        return 0.0
    return _exp(log_r_a + math.log(x_fro) + math.log(math.log(width)) - math.log(gamma)
                - math.log(n))


def neyshabur_bound_measure(
    layers: Sequence[LayerInfo],
    input_norm_max: float,
    gamma: float,
    m: int,
    delta: float = 0.05,
    conv_norm: str = "reshape",
    norms: Sequence[float] | None = None,
) -> float:
    """Neyshabur, Bhojanapalli & Srebro 2018 (Thm 1) complexity term, O() constant omitted:

        sqrt( (B^2 d^2 h ln(d h) prod_i ||W_i||_2^2 sum_i ||W_i||_F^2 / ||W_i||_2^2
               + ln(d m / delta)) / (gamma^2 m) )

    B = input_norm_max = max_i ||x_i||_2; d = number of layers; h = :func:`max_width`. The
    product-times-sum is evaluated as sum_i ||W_i||_F^2 prod_{j != i} ||W_j||_2^2 in log space.
    inf when gamma <= 0. ``norms``: precomputed spectral norms, as in
    :func:`log_bft_spectral_complexity`.
    """
    if gamma <= 0:
        return math.inf
    d, h = len(layers), max_width(layers)
    norms = spectral_norms(layers, conv_norm) if norms is None else norms
    log_s = [_log(s) for s in norms]
    log_f2 = [_log(float(lay.weight.pow(2).sum())) for lay in layers]
    terms = []
    for i in range(d):
        rest = sum(2.0 * log_s[j] for j in range(d) if j != i)
        terms.append(log_f2[i] + rest)
    dh = d * h
    log_main = (_log(input_norm_max**2) + 2.0 * math.log(d) + math.log(h)
                + _log(math.log(dh)) + _logsumexp(terms))
    log_num = _logsumexp([log_main, _log(math.log(d * m / delta))])  # adds ln(dm/delta)
    return _exp(0.5 * (log_num - 2.0 * math.log(gamma) - math.log(m)))


def _noise_generator(seed: int, draw: int) -> torch.Generator:
    state = np.random.SeedSequence([int(seed), int(draw)]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


def perturbed_accuracy(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    sigma: float,
    n_draws: int = 5,
    seed: int = 0,
    batch_size: int = 1024,
) -> float:
    """Mean accuracy of w + u, u ~ N(0, sigma^2 I) on ALL parameters, over ``n_draws`` draws.

    sigma is the noise STANDARD DEVIATION. Draw k uses the noise direction z_k fixed by
    (seed, k), scaled by sigma (common random numbers), so calls with different sigma are
    comparable and the result is reproducible. Eval mode; the weights are restored afterwards.
    """
    params = list(model.parameters())
    saved = [p.detach().clone() for p in params]
    accs = []
    try:
        with torch.no_grad():
            for k in range(n_draws):
                gen = _noise_generator(seed, k)
                for p, p0 in zip(params, saved):
                    z = torch.randn(p.shape, generator=gen, dtype=torch.float64)
                    p.copy_(p0 + sigma * z.to(device=p.device, dtype=p.dtype))
                accs.append(accuracy(model, X, y, batch_size))
    finally:
        with torch.no_grad():
            for p, p0 in zip(params, saved):
                p.copy_(p0)
    return float(np.mean(accs))


@dataclass(frozen=True)
class SharpnessResult:
    """Result of :func:`sharpness_sigma`.

    sigma: largest std found whose mean accuracy drop is <= target_drop; sigma_upper: the
    smallest std found whose drop exceeds it (None if never reached up to sigma_max);
    acc_clean / acc_at_sigma / acc_at_upper: accuracies; n_evals: perturbed evaluations used;
    note: why the search stopped early, if it did.
    """

    sigma: float
    sigma_upper: float | None
    acc_clean: float
    acc_at_sigma: float
    acc_at_upper: float | None
    target_drop: float
    n_evals: int
    note: str = ""


def sharpness_sigma(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    target_drop: float = 0.1,
    n_draws: int = 5,
    seed: int = 0,
    sigma_init: float = 1e-2,
    sigma_min: float = 1e-6,
    sigma_max: float = 1e2,
    rtol: float = 0.02,
    batch_size: int = 1024,
) -> SharpnessResult:
    """Largest noise std sigma whose isotropic Gaussian weight noise lowers the training
    accuracy by at most ``target_drop`` (Jiang et al. 2019, "Fantastic generalization
    measures", sharpness / PAC-Bayes measures; target 0.1).

    Bracketing by doubling / halving from ``sigma_init``, then bisection on log sigma until
    sigma_upper / sigma <= 1 + rtol. Each evaluation averages ``n_draws`` seeded noise draws
    (:func:`perturbed_accuracy`). If even sigma_min breaks the target, returns sigma_min with a
    note; if sigma_max does not, returns sigma_max with sigma_upper None.
    """
    if not (0 < target_drop < 1 and 0 < sigma_min <= sigma_init <= sigma_max and rtol > 0):
        raise GenlabError("sharpness search needs 0 < target_drop < 1, 0 < sigma_min <= "
                          "sigma_init <= sigma_max and rtol > 0")
    acc0 = accuracy(model, X, y, batch_size)
    evals = 0
    cache: dict[float, float] = {}

    def acc_at(s: float) -> float:
        nonlocal evals
        if s not in cache:
            evals += 1
            cache[s] = perturbed_accuracy(model, X, y, s, n_draws, seed, batch_size)
        return cache[s]

    def ok(s: float) -> bool:
        return acc0 - acc_at(s) <= target_drop

    lo: float | None = None
    hi: float | None = None
    s = sigma_init
    if ok(s):
        lo = s
        while hi is None:
            s = s * 2.0
            if s > sigma_max:
                return SharpnessResult(lo, None, acc0, acc_at(lo), None, target_drop, evals,
                                       f"accuracy drop stays <= {target_drop} up to sigma_max")
            if ok(s):
                lo = s
            else:
                hi = s
    else:
        hi = s
        while lo is None:
            s = s / 2.0
            if s < sigma_min:
                return SharpnessResult(sigma_min, hi, acc0, acc_at(sigma_min), acc_at(hi),
                                       target_drop, evals,
                                       f"accuracy drop exceeds {target_drop} even at sigma_min")
            if ok(s):
                lo = s
            else:
                hi = s
    while hi / lo > 1.0 + rtol:
        mid = math.sqrt(lo * hi)
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return SharpnessResult(lo, hi, acc0, acc_at(lo), acc_at(hi), target_drop, evals)


def pacbayes_flatness_measure(dist_sq: float, sigma: float, m: int) -> float:
    """Jiang et al. 2019 PAC-Bayes measure ||w - w0||^2 / (4 sigma^2) + ln(m / sigma) + 10.

    sigma is the noise STANDARD DEVIATION from :func:`sharpness_sigma` (so sigma^2 is its
    variance: do not pass the variance here); dist_sq = ||w - w0||^2 (:func:`param_dist_sq`).
    """
    if not (sigma > 0):
        raise GenlabError(f"sigma must be > 0, got {sigma}")
    return dist_sq / (4.0 * sigma**2) + math.log(m / sigma) + 10.0


def rademacher_from_accuracies(accuracies: Iterable[float]) -> float:
    """Empirical Rademacher complexity estimate from fits to random +-1 labels.

    For labels sigma_i in {-1, +1} and a classifier h(x) in {-1, +1}, (1/n) sum_i sigma_i h(x_i)
    = (#agree - #disagree) / n = 2 acc - 1. So with acc_k the training accuracy of the model
    class fitted (by the trainer) to the k-th random labelling,
    R_hat(H) = E_sigma[sup_h (1/n) sum_i sigma_i h(x_i)] ~= mean_k (2 acc_k - 1). A fit only
    approximates the sup, so this estimates R_hat from below; ~1 means the class fits noise
    (Zhang et al. 2017, Sec. 2.1).
    """
    accs = np.asarray(list(accuracies), dtype=np.float64)
    if accs.size == 0 or np.any(~np.isfinite(accs)) or np.any((accs < 0) | (accs > 1)):
        raise GenlabError("need at least one accuracy, each in [0, 1]")
    return float(np.mean(2.0 * accs - 1.0))


def all_measures(
    model: nn.Module,
    init_model: nn.Module | None,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    conv_norm: str = "reshape",
    margin_percentile: float = 10.0,
    delta: float = 0.05,
    sharpness: bool = True,
    target_drop: float = 0.1,
    n_draws: int = 5,
    seed: int = 0,
    batch_size: int = 1024,
) -> dict[str, float]:
    """All measures of a trained ``model`` on its training data X (n, *input_shape), y (n,).

    init_model: the same architecture at initialization (None = zero reference weights).
    gamma is the ``margin_percentile``-th percentile of the training margins (Jiang et al.: 10th).
    Keys (floats; "log_" keys are natural logs):
      n_params, n_layers, max_width, n_examples, train_acc,
      frobenius_sq_sum, log_prod_spec_sq, prod_spec_sq, dist_init_fro_sq, param_dist_sq,
      path_norm (l2, sqrt), path_norm_sq (Jiang's path.norm), margin_p5, margin_p10, gamma,
      log_bft_spectral_complexity, bft_spectral_complexity, bft_bound_measure,
      neyshabur_bound_measure, and with ``sharpness``: sharpness_sigma, pacbayes_init_measure
      (||w-w0||^2/(4 sigma^2) + ln(m/sigma) + 10), pacbayes_flatness (1/sigma^2).
    Margin-normalised measures are inf (with a warning) when gamma <= 0.
    """
    y = _check_xy(X, y)
    input_shape = tuple(X.shape[1:])
    layers = linear_layers(model, input_shape if conv_norm == "fft" else None)
    init_layers = linear_layers(init_model) if init_model is not None else None
    n = len(X)
    logits = _logits(model, X, batch_size)
    margins = _margins_from_logits(logits, y)
    pct = margin_percentiles(margins, sorted({5.0, 10.0, float(margin_percentile)}))
    gamma = pct[f"margin_p{float(margin_percentile):g}"]
    if gamma <= 0:
        warnings.warn(f"the {margin_percentile:g}th-percentile margin is {gamma:.4g} <= 0: "
                      "margin-normalised measures are reported as inf", stacklevel=2)
    xf = X.detach().to("cpu", torch.float64).reshape(n, -1)
    row_norms = xf.pow(2).sum(dim=1).sqrt()
    norms = spectral_norms(layers, conv_norm)
    log_ps = log_prod_spectral_sq(norms)
    log_ra = log_bft_spectral_complexity(layers, init_layers, norms=norms)
    width = max_width(layers)
    out: dict[str, float] = {
        "n_params": float(param_count(model)),
        "n_layers": float(len(layers)),
        "max_width": float(width),
        "n_examples": float(n),
        "train_acc": float((margins > 0).double().mean()),
        "frobenius_sq_sum": frobenius_sq_sum(layers),
        "log_prod_spec_sq": log_ps,
        "prod_spec_sq": _exp(log_ps),
        "dist_init_fro_sq": (dist_from_init_sq(layers, init_layers) if init_layers is not None
                             else frobenius_sq_sum(layers)),
        "param_dist_sq": param_dist_sq(model, init_model),
        "path_norm_sq": path_norm_sq(model, input_shape),
        **{k: v for k, v in pct.items() if k in ("margin_p5", "margin_p10")},
        "gamma": gamma,
        "log_bft_spectral_complexity": log_ra,
        "bft_spectral_complexity": _exp(log_ra),
        "bft_bound_measure": bft_bound_measure(
            log_ra, float(row_norms.pow(2).sum().sqrt()), width, gamma, n),
        "neyshabur_bound_measure": neyshabur_bound_measure(
            layers, float(row_norms.max()), gamma, n, delta, norms=norms),
    }
    out["path_norm"] = math.sqrt(max(out["path_norm_sq"], 0.0))
    if sharpness:
        res = sharpness_sigma(model, X, y, target_drop, n_draws, seed, batch_size=batch_size)
        out["sharpness_sigma"] = res.sigma
        out["pacbayes_init_measure"] = pacbayes_flatness_measure(out["param_dist_sq"],
                                                                 res.sigma, n)
        out["pacbayes_flatness"] = 1.0 / res.sigma**2
    return out
