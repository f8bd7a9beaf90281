"""genlab's CPU SGD (training.sgd.MomentumSGD) against torch.optim.SGD: the same parameters,
bit for bit, after many steps, and state dicts that move between the two."""

import pytest
import torch
from torch import nn

from genlab.training.sgd import MomentumSGD

SETTINGS = [dict(momentum=0.0, weight_decay=0.0), dict(momentum=0.9, weight_decay=0.0),
            dict(momentum=0.9, weight_decay=5e-4), dict(momentum=0.5, weight_decay=1e-3,
                                                          dampening=0.1),
            dict(momentum=0.9, weight_decay=5e-4, nesterov=True)]


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 3))


def _steps(model, opt, n, seed=1, lr_at=None):
    g = torch.Generator().manual_seed(seed)
    for i in range(n):
        if lr_at is not None:
            for grp in opt.param_groups:
                grp["lr"] = lr_at(i)
        x = torch.randn(16, 7, generator=g)
        y = torch.randint(0, 3, (16,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


@pytest.mark.parametrize("kw", SETTINGS)
def test_bit_identical_to_torch_sgd(kw):
    a, b = _net(), _net()
    lr_at = lambda i: 0.1 * 0.95 ** i  # noqa: E731 (a schedule changes lr between steps)
    _steps(a, torch.optim.SGD(a.parameters(), lr=0.1, **kw), 25, lr_at=lr_at)
    _steps(b, MomentumSGD(b.parameters(), lr=0.1, **kw), 25, lr_at=lr_at)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert not torch.equal(next(_net().parameters()), next(a.parameters()))  # it did move


def test_frozen_parameter_is_left_alone():
    m = _net()
    m[0].weight.requires_grad_(False)
    before = m[0].weight.clone()
    opt = MomentumSGD(m.parameters(), lr=0.1, momentum=0.9)
    _steps(m, opt, 3)
    assert torch.equal(m[0].weight, before)
    assert m[0].weight not in opt.state


@pytest.mark.parametrize("src_cls,dst_cls", [(torch.optim.SGD, MomentumSGD),
                                             (MomentumSGD, torch.optim.SGD),
                                             (MomentumSGD, MomentumSGD)])
def test_state_dict_moves_between_the_two(src_cls, dst_cls):
    # resume after 5 steps from the other class's state dict == 10 unbroken torch steps
    ref = _net()
    _steps(ref, torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4),
           10)
    first = _net()
    opt = src_cls(first.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    _steps(first, opt, 5)
    sd = opt.state_dict()
    second = _net()
    second.load_state_dict(first.state_dict())
    opt2 = dst_cls(second.parameters(), lr=0.01, momentum=0.0)  # settings come from sd
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["momentum"] == 0.9
    g = torch.Generator().manual_seed(1)
    for _ in range(5):  # replay the first five batches' draws, then step five more
        torch.randn(16, 7, generator=g), torch.randint(0, 3, (16,), generator=g)
    for _ in range(5):
        x, y = torch.randn(16, 7, generator=g), torch.randint(0, 3, (16,), generator=g)
        opt2.zero_grad()
        nn.functional.cross_entropy(second(x), y).backward()
        opt2.step()
    for pa, pb in zip(ref.parameters(), second.parameters()):
        assert torch.equal(pa, pb)


def test_state_dict_layout_matches_torch():
    a, b = _net(), _net()
    ta = torch.optim.SGD(a.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    tb = MomentumSGD(b.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    _steps(a, ta, 2), _steps(b, tb, 2)
    sa, sb = ta.state_dict(), tb.state_dict()
    assert sorted(sa["state"]) == sorted(sb["state"])
    assert {k: v for k, v in sa["param_groups"][0].items()} == sb["param_groups"][0]


def test_mismatched_state_is_refused():
    opt = MomentumSGD(_net().parameters(), lr=0.1, momentum=0.9)
    other = MomentumSGD(nn.Linear(2, 2).parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="does not match"):
        opt.load_state_dict(other.state_dict())


def test_maximize_from_a_loaded_torch_state_matches_torch():
    # genlab never asks for maximize, but a torch SGD state dict may carry it
    a, b = _net(), _net()
    ta = torch.optim.SGD(a.parameters(), lr=0.05, momentum=0.9, maximize=True)
    tb = MomentumSGD(b.parameters(), lr=0.05, momentum=0.9)
    tb.load_state_dict(ta.state_dict())
    _steps(a, ta, 5), _steps(b, tb, 5)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
