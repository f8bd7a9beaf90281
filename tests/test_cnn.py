import pytest
import torch
import torch.nn.functional as F
from torch import nn

import genlab
from genlab import GenlabError, build_model, count_parameters
from genlab.models.cnn import AlexNetSmall, MaxPool2dSame, TFLocalResponseNorm, tf_same_pads

CNNS = ["alexnet-small", "inception-small", "inception-small-nobn"]


@pytest.mark.parametrize("name,count", [("alexnet-small", 1_387_786),
                                        ("inception-small", 1_649_402),
                                        ("inception-small-nobn", 1_649_402)])
def test_paper_cnn_parameter_counts(name, count):
    # paper-facts 1.2: 28x28x3 input, 10 classes
    assert count_parameters(build_model(name, (3, 28, 28), 10)) == count


def test_cnns_are_registered_with_their_paper_counts():
    models = genlab.list_models()
    assert "1,387,786" in models["alexnet-small"]
    assert "1,649,402" in models["inception-small"]
    assert "1,649,402" in models["inception-small-nobn"]


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 28, 28), (1, 32, 32), (3, 32, 32)])
@pytest.mark.parametrize("name", CNNS)
def test_cnns_build_and_run_on_paper_input_sizes(name, shape):
    torch.manual_seed(0)
    m = build_model(name, shape, 7)
    out = m(torch.randn(2, *shape))
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    print(f"{name} {shape}: {count_parameters(m):,} parameters")
    assert count_parameters(m) > 0


def test_inception_batchnorm_has_no_affine_and_nobn_has_none():
    bn = build_model("inception-small", (3, 28, 28), 10)
    nobn = build_model("inception-small-nobn", (3, 28, 28), 10)
    bns = [mod for mod in bn.modules() if isinstance(mod, nn.modules.batchnorm._BatchNorm)]
    convs = [mod for mod in bn.modules() if isinstance(mod, nn.Conv2d)]
    assert len(bns) == len(convs) == 19  # stem + 8 inceptions x 2 + 2 downsamples
    assert all(not b.affine for b in bns)
    assert not any(isinstance(mod, nn.modules.batchnorm._BatchNorm) for mod in nobn.modules())
    assert sum(isinstance(mod, nn.Conv2d) for mod in nobn.modules()) == 19


def test_inception_spatial_sizes():
    sizes = {}
    m = build_model("inception-small", (3, 28, 28), 10)
    for name in ("down1", "down2"):
        m.get_submodule(name).register_forward_hook(
            lambda _m, _i, out, name=name: sizes.__setitem__(name, tuple(out.shape[1:])))
    m(torch.zeros(1, 3, 28, 28))
    assert sizes == {"down1": (80 + 80, 13, 13), "down2": (96 + 144, 6, 6)}


@pytest.mark.parametrize("n,k,s,expected", [(28, 3, 2, (14, 0, 1)), (14, 3, 2, (7, 0, 1)),
                                            (7, 3, 2, (4, 1, 1)), (32, 3, 2, (16, 0, 1)),
                                            (5, 1, 1, (5, 0, 0)), (10, 4, 1, (10, 1, 2))])
def test_tf_same_pads(n, k, s, expected):
    assert tf_same_pads(n, k, s) == expected


def test_alexnet_pools_follow_tf_same():
    sizes = []
    m = build_model("alexnet-small", (3, 28, 28), 10)
    for name in ("pool1", "pool2"):
        m.get_submodule(name).register_forward_hook(
            lambda _m, _i, out: sizes.append(tuple(out.shape[-2:])))
    m(torch.zeros(1, 3, 28, 28))
    assert sizes == [(14, 14), (7, 7)]
    assert m.fc1.in_features == 7 * 7 * 64


def test_maxpool_same_pads_at_the_end_like_tensorflow():
    # x[r, c] = 4r + c; TF SAME 3x3/2 windows are rows/cols [0, 3) and [2, 4)
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert MaxPool2dSame(3, 2)(x).flatten().tolist() == [10.0, 11.0, 14.0, 15.0]
    # odd size: one cell of padding on each side (tf_same_pads(7, 3, 2) == (4, 1, 1))
    x = -torch.rand(2, 3, 7, 7)  # all negative, so a zero-padded pool would be wrong
    y = MaxPool2dSame(3, 2)(x)
    assert y.shape == (2, 3, 4, 4)
    for i in range(4):
        for j in range(4):
            r, c = 2 * i - 1, 2 * j - 1
            want = x[..., max(r, 0):r + 3, max(c, 0):c + 3].amax(dim=(-2, -1))
            assert torch.equal(y[..., i, j], want)


def test_lrn_matches_tensorflow_formula():
    torch.manual_seed(0)
    x = torch.randn(2, 13, 3, 3, dtype=torch.float64) * 3
    r, bias, alpha, beta = 4, 1.0, 0.001 / 9, 0.75
    want = torch.empty_like(x)
    for d in range(x.shape[1]):
        sqr_sum = x[:, max(d - r, 0):d + r + 1].pow(2).sum(dim=1)
        want[:, d] = x[:, d] / (bias + alpha * sqr_sum) ** beta
    got = TFLocalResponseNorm(depth_radius=r, bias=bias, alpha=alpha, beta=beta)(x)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # a large alpha makes the normalisation bite, so a wrong window or scale would show
    got = TFLocalResponseNorm(depth_radius=2, bias=2.0, alpha=0.5, beta=0.5)(x)
    for d in range(x.shape[1]):
        sqr_sum = x[:, max(d - 2, 0):d + 3].pow(2).sum(dim=1)
        torch.testing.assert_close(got[:, d], x[:, d] / (2.0 + 0.5 * sqr_sum) ** 0.5)


def test_alexnet_dropout_is_optional_and_keeps_the_parameters():
    plain, drop = AlexNetSmall((3, 28, 28), 10), AlexNetSmall((3, 28, 28), 10, dropout=0.5)
    assert plain.state_dict().keys() == drop.state_dict().keys()
    assert count_parameters(drop) == 1_387_786
    assert [m.p for m in drop.modules() if isinstance(m, nn.Dropout)] == [0.5, 0.5]
    drop.load_state_dict(plain.state_dict())
    x = torch.randn(4, 3, 28, 28)
    torch.testing.assert_close(drop.eval()(x), plain.eval()(x))
    with pytest.raises(GenlabError):
        AlexNetSmall((3, 28, 28), 10, dropout=1.0)


def test_alexnet_is_a_chain_the_measures_can_walk():
    from genlab.capacity.layers import linear_layers

    layers = linear_layers(build_model("alexnet-small", (3, 28, 28), 10), (3, 28, 28))
    assert [lay.name for lay in layers] == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert [lay.input_hw for lay in layers[:2]] == [(28, 28), (14, 14)]


@pytest.mark.parametrize("name", ["alexnet-small", "inception-small"])
def test_cnns_give_the_same_output_in_channels_last(name):
    torch.manual_seed(0)
    m = build_model(name, (3, 28, 28), 10).eval()
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        want = m(x)
        got = m.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_inception_rejects_inputs_too_small_to_downsample_twice():
    with pytest.raises(GenlabError, match="15x15"):
        build_model("inception-small", (3, 12, 12), 10)


def test_alexnet_training_smoke():
    torch.manual_seed(0)
    m = build_model("alexnet-small", (3, 28, 28), 2)
    x, y = torch.randn(64, 3, 28, 28), torch.randint(0, 2, (64,))
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    losses = []
    for _ in range(3):  # memorising the random labels starts at once; more steps only cost time
        loss = F.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        losses.append(F.cross_entropy(m(x), y).item())
    assert losses[-1] < losses[0] - 0.005, losses


def test_inception_without_batchnorm_keeps_its_signal_at_initialization():
    # PyTorch's default conv init shrinks the variance ~6x per ReLU layer: without BatchNorm the
    # logits of the 11-conv-deep network would be ~0 and training would never start
    torch.manual_seed(0)
    m = genlab.build_model("inception-small-nobn", (1, 28, 28), 10)
    x = torch.randn(64, 1, 28, 28)
    with torch.no_grad():
        assert 0.1 < m(x).std().item() < 10
