"""Capacity measures on tiny networks whose values are worked out by hand in the comments."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genlab.capacity import measures as M
from genlab.errors import GenlabError

W1 = [[1.0, 2.0], [3.0, 4.0]]
W2 = [[1.0, -1.0]]
M1 = [[1.0, 1.0], [1.0, 1.0]]  # "init" of layer 1
M2 = [[0.0, 0.0]]  # "init" of layer 2
# W1^T W1 = [[10, 14], [14, 20]]: trace 30, det 4, eigenvalues 15 +- sqrt(221)
SPEC1_SQ = 15.0 + math.sqrt(221.0)
SPEC2_SQ = 2.0  # W2 W2^T = [[2]]


def _net(w1, w2, b1=None, b2=None, dtype=torch.float64) -> nn.Sequential:
    w1, w2 = torch.tensor(w1, dtype=dtype), torch.tensor(w2, dtype=dtype)
    net = nn.Sequential(
        nn.Linear(w1.shape[1], w1.shape[0], bias=b1 is not None), nn.ReLU(),
        nn.Linear(w2.shape[1], w2.shape[0], bias=b2 is not None),
    ).to(dtype)
    with torch.no_grad():
        net[0].weight.copy_(w1)
        net[2].weight.copy_(w2)
        if b1 is not None:
            net[0].bias.copy_(torch.tensor(b1, dtype=dtype))
        if b2 is not None:
            net[2].bias.copy_(torch.tensor(b2, dtype=dtype))
    return net


# --- norms on the 2-layer hand example ------------------------------------------------------------


def test_norms_by_hand():
    layers = M.linear_layers(_net(W1, W2))
    assert [lay.kind for lay in layers] == ["linear", "linear"]
    assert layers[0].shape == (2, 2) and layers[1].shape == (1, 2)
    # 1 + 4 + 9 + 16 = 30, plus 1 + 1 = 2
    assert M.frobenius_sq_sum(layers) == pytest.approx(32.0)
    s = M.spectral_norms(layers)
    assert s[0] == pytest.approx(math.sqrt(SPEC1_SQ)) and s[1] == pytest.approx(math.sqrt(2.0))
    assert M.log_prod_spectral_sq(s) == pytest.approx(math.log(SPEC1_SQ * SPEC2_SQ))
    # W1 - M1 = [[0, 1], [2, 3]]: 0 + 1 + 4 + 9 = 14;  W2 - M2 = W2: 2
    init = M.linear_layers(_net(M1, M2))
    assert M.dist_from_init_sq(layers, init) == pytest.approx(16.0)
    assert M.param_count(_net(W1, W2, b1=[0, 0], b2=[0])) == 4 + 2 + 2 + 1
    assert M.max_width(layers) == 2


def test_param_dist_over_all_parameters():
    a = _net(W1, W2, b1=[1.0, -1.0], b2=[0.5])
    b = _net(M1, M2, b1=[0.0, 0.0], b2=[0.0])
    # weights 14 + 2, biases 1 + 1 + 0.25
    assert M.param_dist_sq(a, b) == pytest.approx(18.25)
    assert M.param_dist_sq(a, None) == pytest.approx(32.0 + 2.25)


def test_path_norm_by_enumerating_paths():
    # paths input i -> hidden h -> output: sum_{i,h} W1[h,i]^2 W2[0,h]^2
    #   h=0: (1 + 4) * 1;  h=1: (9 + 16) * 1  => 30
    net = _net(W1, W2)
    assert M.path_norm_sq(net, (2,)) == pytest.approx(30.0)
    assert M.path_norm(net, (2,)) == pytest.approx(math.sqrt(30.0))
    # with biases b1 = [1, -1], b2 = [0.5]: bias paths b1_h^2 W2_h^2 = 1 + 1, and b2^2 = 0.25
    nb = _net(W1, W2, b1=[1.0, -1.0], b2=[0.5])
    assert M.path_norm_sq(nb, (2,)) == pytest.approx(32.25)
    assert M.path_norm_sq(nb, (2,), include_bias=False) == pytest.approx(30.0)
    # the model itself is untouched
    assert torch.equal(nb[0].weight, torch.tensor(W1, dtype=torch.float64))


def test_path_norm_three_layers_matches_einsum_over_paths():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 5, bias=False),
                        nn.ReLU(), nn.Linear(5, 2, bias=False)).double()
    a, b, c = (net[i].weight.detach() for i in (0, 2, 4))
    paths = torch.einsum("ji,kj,ok->", a**2, b**2, c**2)  # sum over all (i, j, k, o) paths
    assert M.path_norm_sq(net, (3,)) == pytest.approx(float(paths), rel=1e-12)


def test_bft_spectral_complexity_by_hand():
    layers, init = M.linear_layers(_net(W1, W2)), M.linear_layers(_net(M1, M2))
    s1, s2 = math.sqrt(SPEC1_SQ), math.sqrt(2.0)
    # ||A^T - M^T||_{2,1} = sum of row norms of A - M: rows [0,1], [2,3] -> 1 + sqrt(13)
    a1 = 1.0 + math.sqrt(13.0)
    a2 = math.sqrt(2.0)  # the single row [1, -1]
    r_a = s1 * s2 * ((a1 / s1) ** (2 / 3) + (a2 / s2) ** (2 / 3)) ** 1.5
    assert M.bft_spectral_complexity(layers, init) == pytest.approx(r_a, rel=1e-10)
    assert M.log_bft_spectral_complexity(layers, init) == pytest.approx(math.log(r_a))
    # M = 0: a1 = ||[1,2]|| + ||[3,4]|| = sqrt(5) + 5
    r0 = s1 * s2 * (((math.sqrt(5) + 5) / s1) ** (2 / 3) + 1.0) ** 1.5
    assert M.bft_spectral_complexity(layers) == pytest.approx(r0, rel=1e-10)
    # ||X||_F R_A ln(W) / (gamma n) with ||X||_F = 2, W = 4, gamma = 0.5, n = 10
    assert M.bft_bound_measure(math.log(r_a), 2.0, 4, 0.5, 10) == pytest.approx(
        2.0 * r_a * math.log(4) / 5.0)
    assert M.bft_bound_measure(math.log(r_a), 2.0, 4, 0.0, 10) == math.inf


def test_bft_with_a_zero_layer_is_finite():
    # A_2 = 0: R_A -> ||A_1||_2 * ||A_2 - M_2||_{2,1} (limit), no 0/0
    layers = M.linear_layers(_net(W1, [[0.0, 0.0]]))
    init = M.linear_layers(_net(W1, [[3.0, 4.0]]))
    assert M.bft_spectral_complexity(layers, init) == pytest.approx(math.sqrt(SPEC1_SQ) * 5.0)


def test_neyshabur_measure_by_hand():
    layers = M.linear_layers(_net(W1, W2))
    b, gamma, m, delta, d, h = 3.0, 0.5, 100, 0.05, 2, 2
    prod = SPEC1_SQ * SPEC2_SQ
    ratio = 30.0 / SPEC1_SQ + 2.0 / SPEC2_SQ  # sum ||W||_F^2 / ||W||_2^2
    num = b**2 * d**2 * h * math.log(d * h) * prod * ratio + math.log(d * m / delta)
    hand = math.sqrt(num / (gamma**2 * m))
    assert M.neyshabur_bound_measure(layers, b, gamma, m, delta) == pytest.approx(hand, rel=1e-10)
    assert M.neyshabur_bound_measure(layers, b, -1.0, m, delta) == math.inf


# --- margins -------------------------------------------------------------------------------------


def test_margins_by_hand():
    net = _net(W1, [[1.0, -1.0], [0.0, 1.0], [1.0, 0.0]])
    X = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    y = torch.tensor([1, 0, 2, 0])
    # x=[1,0]: hidden relu([1,3]) -> f = [1-3, 3, 1] = [-2, 3, 1]; y=1: 3 - 1 = 2; y=0: -2-3 = -5
    # x=[0,1]: hidden [2,4] -> f = [-2, 4, 2]; y=2: 2 - 4 = -2
    # x=[-1,-1]: hidden [0,0] -> f = 0; y=0: 0 - 0 = 0
    margins = M.output_margins(net, X, y)
    assert margins.tolist() == pytest.approx([2.0, -5.0, -2.0, 0.0])
    # sorted [-5, -2, 0, 2]; 10th pct at position 0.3: -5 + 0.3 * 3; 5th at 0.15
    assert M.margin_percentiles(margins) == pytest.approx(
        {"margin_p5": -5 + 0.15 * 3, "margin_p10": -5 + 0.3 * 3})
    assert M.accuracy(net, X, y) == pytest.approx(0.25)  # only margin > 0 counts


def test_binary_single_logit_margin():
    net = _net(W1, W2)  # one output f = relu(W1 x) . [1, -1]
    X = torch.tensor([[1.0, 0.0]])  # hidden [1, 3] -> f = -2
    assert M.output_margins(net, X, torch.tensor([0])).tolist() == pytest.approx([2.0])
    assert M.output_margins(net, X, torch.tensor([1])).tolist() == pytest.approx([-2.0])


# --- BatchNorm folding, unsupported layers -----------------------------------------------------


def _randomize_bn(bn: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    n = bn.num_features
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(n, generator=g))
        bn.running_var.copy_(torch.rand(n, generator=g) + 0.2)
        if bn.affine:
            bn.weight.copy_(torch.randn(n, generator=g))
            bn.bias.copy_(torch.randn(n, generator=g))


@pytest.mark.parametrize("affine", [True, False])
def test_bn_folding_linear_matches_eval_model(affine):
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.BatchNorm1d(4, affine=affine),
                        nn.ReLU(), nn.Linear(4, 2)).double()
    _randomize_bn(net[2], 3)
    layers = M.linear_layers(net)
    assert len(layers) == 2 and layers[0].folded_bn == "2"
    x = torch.randn(6, 3, dtype=torch.float64)
    h = F.relu(F.linear(x, layers[0].weight, layers[0].bias))
    folded = F.linear(h, layers[1].weight, layers[1].bias)
    net.train()  # linear_layers must fold running stats whatever the mode
    assert torch.allclose(folded, net.eval()(x), atol=1e-12)


def test_bn_folding_conv_matches_eval_model():
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, bias=False), nn.BatchNorm2d(3), nn.ReLU(),
                        nn.Flatten(), nn.Linear(3 * 5 * 5, 2)).double()
    _randomize_bn(net[1], 4)
    conv, fc = M.linear_layers(net, input_shape=(2, 5, 5))
    assert conv.kind == "conv2d" and conv.weight.shape == (3, 2 * 3 * 3)
    assert conv.input_hw == (5, 5) and fc.input_hw is None
    x = torch.randn(4, 2, 5, 5, dtype=torch.float64)
    h = F.relu(F.conv2d(x, conv.kernel, conv.bias, stride=conv.stride, padding=conv.padding))
    folded = F.linear(h.flatten(1), fc.weight, fc.bias)
    assert torch.allclose(folded, net.eval()(x), atol=1e-12)
    # path norm of the BN net = squared folded network on ones
    sq = F.relu(F.conv2d(torch.ones(1, 2, 5, 5, dtype=torch.float64), conv.kernel**2,
                         conv.bias**2, padding=1))
    hand = F.linear(sq.flatten(1), fc.weight**2, fc.bias**2).sum()
    assert M.path_norm_sq(net, (2, 5, 5)) == pytest.approx(float(hand), rel=1e-12)


class _Scale(nn.Module):
    def __init__(self):
        super().__init__()
        self.s = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return x * self.s


@pytest.mark.parametrize("net,match", [
    (nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4)), "layer '1' of type LayerNorm"),
    (nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4, elementwise_affine=False)),
     "of type LayerNorm"),
    (nn.Sequential(nn.LSTM(3, 4)), "layer '0' of type LSTM"),
    (nn.Sequential(nn.Linear(3, 4), _Scale()), "layer '1' of type _Scale"),
    (nn.Sequential(nn.BatchNorm1d(3), nn.Linear(3, 2)), "BatchNorm '0'"),
    (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.BatchNorm1d(4)), "BatchNorm '2'"),
    (nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)), "grouped"),
    (nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, track_running_stats=False)),
     "running statistics"),
    (nn.Sequential(nn.ReLU()), "no Linear or Conv2d"),
])
def test_unsupported_layers_raise(net, match):
    with pytest.raises(GenlabError, match=match):
        M.linear_layers(net)


def test_measure_modules_protocol_for_non_sequential_models():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(4, 2)  # registered first, runs last
            self.body = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))

        def forward(self, x):
            return self.head(torch.relu(self.body(x)))

        def measure_modules(self):
            return [self.body, self.head]

    net = Branchy().double().eval()
    layers = M.linear_layers(net)
    assert [lay.name for lay in layers] == ["body.0", "head"]
    assert layers[0].folded_bn == "body.1"


# --- exact conv operator norms ------------------------------------------------------------------


def _dense_circular_conv(kernel, hw, dilation=(1, 1)):
    """The conv as an explicit matrix: apply it to every basis input (circular padding)."""
    out_c, in_c, kh, kw = kernel.shape
    n_in = in_c * hw[0] * hw[1]
    basis = torch.eye(n_in, dtype=torch.float64).reshape(n_in, in_c, *hw)
    ph, pw = dilation[0] * (kh - 1), dilation[1] * (kw - 1)  # total pad keeps the size
    padded = F.pad(basis, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="circular")
    cols = F.conv2d(padded, kernel, dilation=dilation)
    assert cols.shape[-2:] == hw
    return cols.reshape(n_in, -1).T  # (out*H*W, in*H*W)


@pytest.mark.parametrize("shape,hw,dil", [
    ((2, 3, 3, 3), (5, 6), (1, 1)),
    ((3, 2, 2, 3), (4, 4), (1, 1)),
    ((2, 2, 3, 3), (5, 6), (2, 2)),
    ((2, 2, 3, 3), (2, 2), (1, 1)),  # kernel larger than the input: taps wrap around
])
def test_fft_conv_norm_matches_dense_matrix(shape, hw, dil):
    g = torch.Generator().manual_seed(sum(shape))
    k = torch.randn(*shape, generator=g, dtype=torch.float64)
    dense = _dense_circular_conv(k, hw, dil)
    brute = float(np.linalg.svd(dense.numpy(), compute_uv=False).max())
    assert M.conv_operator_norm_fft(k, hw, dil) == pytest.approx(brute, rel=1e-10)


def test_fft_norm_at_least_reshaped_norm_and_used_by_spectral_norms():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(4, 5, 3, padding=1), nn.Flatten(), nn.Linear(5 * 4 * 4, 2))
    layers = M.linear_layers(net, input_shape=(3, 8, 8))
    assert [lay.input_hw for lay in layers] == [(8, 8), (4, 4), None]
    fft, flat = M.spectral_norms(layers, "fft"), M.spectral_norms(layers, "reshape")
    assert fft[0] >= flat[0] and fft[1] >= flat[1] and fft[2] == flat[2]
    assert fft[0] == pytest.approx(M.conv_operator_norm_fft(layers[0].kernel, (8, 8)))
    with pytest.raises(GenlabError, match="input size"):
        M.spectral_norms(M.linear_layers(net), "fft")


# --- sharpness ----------------------------------------------------------------------------------


def _toy_classifier():
    g = torch.Generator().manual_seed(0)
    n = 300
    x1 = torch.randn(n, generator=g)
    X = torch.stack([x1, torch.randn(n, generator=g)], dim=1)
    y = (x1 < 0).long()  # class 0 iff x1 > 0
    net = nn.Linear(2, 2)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
        net.bias.zero_()
    return net, X, y


def test_sharpness_sigma_brackets_the_target_drop():
    net, X, y = _toy_classifier()
    before = [p.detach().clone() for p in net.parameters()]
    res = M.sharpness_sigma(net, X, y, target_drop=0.1, n_draws=8, seed=1)
    assert res.acc_clean == 1.0 and res.sigma_upper is not None and res.note == ""
    assert res.sigma_upper / res.sigma <= 1.02 + 1e-12

    def drop(s):
        return res.acc_clean - M.perturbed_accuracy(net, X, y, s, n_draws=8, seed=1)

    assert drop(res.sigma) <= 0.1  # really lowers accuracy by at most 0.1
    assert drop(res.sigma_upper) > 0.1  # a slightly bigger sigma lowers it more
    drops = [drop(res.sigma * f) for f in (0.25, 0.5, 1.0, 2.0, 4.0)]
    assert all(b >= a - 0.02 for a, b in zip(drops, drops[1:])) and drops[-1] > 0.1
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))  # restored


def test_sharpness_degenerate_cases_are_reported():
    net, X, y = _toy_classifier()
    flat = M.sharpness_sigma(net, X, y, sigma_max=1e-3, sigma_init=1e-4, n_draws=2)
    assert flat.sigma_upper is None and "sigma_max" in flat.note
    sharp = M.sharpness_sigma(net, X, y, target_drop=1e-9, sigma_min=1e-1, sigma_init=0.5,
                              n_draws=2)
    assert sharp.sigma == 1e-1 and "sigma_min" in sharp.note


def test_pacbayes_measure_formula():
    # ||w - w0||^2 = 2, sigma = 0.5 (a std: variance 0.25), m = 100:
    # 2 / (4 * 0.25) + ln(100 / 0.5) + 10 = 2 + ln 200 + 10
    assert M.pacbayes_flatness_measure(2.0, 0.5, 100) == pytest.approx(12.0 + math.log(200))


# --- Rademacher, rank correlation -----------------------------------------------------------------


def test_rademacher_from_accuracies():
    # 2 * 1.0 - 1 = 1, 2 * 0.75 - 1 = 0.5: mean 0.75; chance-level fits give 0
    assert M.rademacher_from_accuracies([1.0, 0.75]) == pytest.approx(0.75)
    assert M.rademacher_from_accuracies([0.5, 0.5]) == pytest.approx(0.0)
    with pytest.raises(GenlabError):
        M.rademacher_from_accuracies([1.2])


def test_kendall_tau_by_hand():
    # pairs (1,2) concordant, (1,3) concordant, (2,3) discordant: (2 - 1) / 3
    assert M.kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    assert M.kendall_tau([1, 2, 3], [1, 3, 2], variant="a") == pytest.approx(1 / 3)
    # ties in x: concordant 2, discordant 0; tau-b = 2 / sqrt((3 - 1)(3 - 0)), tau-a = 2 / 3
    assert M.kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6))
    assert M.kendall_tau([1, 1, 2], [1, 2, 3], variant="a") == pytest.approx(2 / 3)
    assert M.kendall_tau([1, 1, 1], [1, 2, 3]) == 0.0  # undefined -> 0
    assert M.kendall_tau([math.inf, math.inf, 1], [3, 2, 1], variant="a") == pytest.approx(2 / 3)
    assert isinstance(M.kendall_tau(np.arange(4), np.arange(4)), float)


def test_granulated_kendall_by_hand():
    table = {  # (a, b): (measure, gap)
        (0, 0): (1, 1), (0, 1): (2, 2), (0, 2): (3, 3),
        (1, 0): (1, 5), (1, 1): (0, 6), (1, 2): (5, 7),
    }
    recs = [dict(a=a, b=b, mu=mu, gap=g) for (a, b), (mu, g) in table.items()]
    # psi_a: groups by b. b=0: measure tied -> 0; b=1: (2,2),(0,6) -> -1; b=2: (3,3),(5,7) -> +1
    # psi_b: groups by a. a=0: all concordant -> 1; a=1: (1,5),(0,6) -1, (1,5),(5,7) +1,
    #        (0,6),(5,7) +1 -> 1/3;  psi_b = 2/3;  Psi = (0 + 2/3) / 2
    res = M.granulated_kendall(recs, "mu", "gap", ["a", "b"])
    assert res["psi"]["a"] == pytest.approx(0.0) and res["psi"]["b"] == pytest.approx(2 / 3)
    assert res["granulated"] == pytest.approx(1 / 3)
    assert res["n_groups"] == {"a": 3, "b": 2}
    pd = pytest.importorskip("pandas")
    assert M.granulated_kendall(pd.DataFrame(recs), "mu", "gap", ["a", "b"])["granulated"] \
        == pytest.approx(1 / 3)
    with pytest.raises(GenlabError, match="lack the field"):
        M.granulated_kendall(recs, "missing", "gap", ["a"])


# --- all at once --------------------------------------------------------------------------------


def test_all_measures_small_cnn_with_bn():
    torch.manual_seed(0)

    def make():
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                             nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, 8), nn.ReLU(),
                             nn.Linear(8, 3))

    init, net = make(), make()
    net.load_state_dict(init.state_dict())
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    X = torch.randn(64, 1, 8, 8)
    with torch.no_grad():
        y = net.eval()(X).argmax(1)  # labels the net fits: every margin > 0
    out = M.all_measures(net, init, X, y, conv_norm="fft", n_draws=2)
    expected = {
        "n_params", "n_layers", "max_width", "n_examples", "train_acc", "frobenius_sq_sum",
        "log_prod_spec_sq", "prod_spec_sq", "dist_init_fro_sq", "param_dist_sq", "path_norm",
        "path_norm_sq", "margin_p5", "margin_p10", "gamma", "log_bft_spectral_complexity",
        "bft_spectral_complexity", "bft_bound_measure", "neyshabur_bound_measure",
        "sharpness_sigma", "pacbayes_init_measure", "pacbayes_flatness",
    }
    assert set(out) == expected
    assert all(isinstance(v, float) and not math.isnan(v) for v in out.values())
    assert out["n_layers"] == 3 and out["n_params"] == M.param_count(net)
    assert out["path_norm"] == pytest.approx(math.sqrt(out["path_norm_sq"]))
    assert out["pacbayes_flatness"] == pytest.approx(out["sharpness_sigma"] ** -2)
    assert out["train_acc"] == 1.0 and out["gamma"] > 0
    assert all(math.isfinite(v) for v in out.values())
    assert out["gamma"] == pytest.approx(
        float(np.percentile(M.output_margins(net, X, y).numpy(), 10)))


def test_all_measures_without_init_and_with_bad_margins():
    net = _net(W1, [[1.0, -1.0], [0.0, 1.0], [1.0, 0.0]])
    X = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
    y = torch.tensor([1, 0, 2, 0])
    with pytest.warns(UserWarning, match="margin"):
        out = M.all_measures(net, None, X, y, sharpness=False)
    assert out["dist_init_fro_sq"] == pytest.approx(out["frobenius_sq_sum"])  # w0 = 0
    # margins [2, -5, -2, 0] (test_margins_by_hand): a zero margin is an error
    assert out["train_acc"] == pytest.approx(0.25)
    # no init: w0 = 0, so ||w||^2 = 30 (W1) + 1 + 1 + 0 + 1 + 1 + 0 (W2)
    assert out["param_dist_sq"] == pytest.approx(34.0)
    assert out["bft_bound_measure"] == math.inf and out["neyshabur_bound_measure"] == math.inf
    assert "sharpness_sigma" not in out
