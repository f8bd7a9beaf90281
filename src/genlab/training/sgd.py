"""SGD with momentum, written out: the update of ``torch.optim.SGD`` without its import cost.

Why: building the first ``torch.optim`` optimizer imports ``torch._dynamo`` (about 2 s on a
2-core CPU, as long as a whole small run). On the CPU genlab steps with this class instead. It
performs the same arithmetic in the same order as torch's single-tensor SGD, the one torch
uses on the CPU, so runs are bit-identical to ``torch.optim.SGD`` (a test checks it), and its
``state_dict`` has torch's layout, so checkpoints move between the two.

Per parameter p with gradient g (skipped when g is None), with weight decay wd, momentum mu,
dampening tau and learning rate lr::

    g = g + wd p                           (if wd != 0)
    b = g.clone() on the first step, else b = mu b + (1 - tau) g      (if mu != 0)
    g = g + mu b if nesterov else b         (if mu != 0)
    p = p - lr g
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

#: the group fields torch.optim.SGD keeps, with its defaults (so state dicts match)
_GROUP_DEFAULTS: dict[str, Any] = {"lr": 1e-3, "momentum": 0.0, "dampening": 0.0,
                                   "weight_decay": 0.0, "nesterov": False, "maximize": False,
                                   "foreach": None, "differentiable": False, "fused": None}


class MomentumSGD:
    """SGD with momentum over ``params`` (one parameter group), torch.optim.SGD's interface
    as genlab uses it: ``defaults``, ``param_groups``, ``state``, ``zero_grad``, ``step``,
    ``state_dict`` and ``load_state_dict``. ``lr`` is in units of the loss's gradient."""

    def __init__(self, params: Iterable[torch.Tensor], *, lr: float, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False):
        group = {**_GROUP_DEFAULTS, "lr": lr, "momentum": momentum, "dampening": dampening,
                 "weight_decay": weight_decay, "nesterov": nesterov}
        self.defaults: dict[str, Any] = dict(group)  # as torch.optim.Optimizer.defaults
        group["params"] = list(params)
        self.param_groups: list[dict[str, Any]] = [group]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop (or zero) every parameter's gradient."""
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient (the module docstring's rule)."""
        for g in self.param_groups:
            wd, mu, tau, lr = g["weight_decay"], g["momentum"], g["dampening"], g["lr"]
            for p in g["params"]:
                if p.grad is None:
                    continue
                d = p.grad if not g["maximize"] else -p.grad
                if wd != 0:
                    d = d.add(p, alpha=wd)
                if mu != 0:
                    st = self.state.setdefault(p, {})
                    buf = st.get("momentum_buffer")
                    if buf is None:
                        buf = st["momentum_buffer"] = d.detach().clone()
                    else:
                        buf.mul_(mu).add_(d, alpha=1 - tau)
                    d = d.add(buf, alpha=mu) if g["nesterov"] else buf
                p.add_(d, alpha=-lr)

    def state_dict(self) -> dict[str, Any]:
        """``{"state": {index: {"momentum_buffer": tensor}}, "param_groups": [...]}``, the
        layout of ``torch.optim.SGD.state_dict()`` (parameters by index)."""
        state, groups, i = {}, [], 0
        for g in self.param_groups:
            ids = []
            for p in g["params"]:
                if p in self.state:
                    state[i] = dict(self.state[p])
                ids.append(i)
                i += 1
            groups.append({**{k: v for k, v in g.items() if k != "params"}, "params": ids})
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` (or from torch.optim.SGD's): group settings and
        momentum buffers, cast to each parameter's device and dtype."""
        saved = sd["param_groups"]
        if len(saved) != len(self.param_groups) or any(
                len(s["params"]) != len(g["params"]) for s, g in zip(saved, self.param_groups)):
            raise ValueError("the optimizer state does not match these parameters")
        self.state = {}
        for s, g in zip(saved, self.param_groups):
            g.update({k: v for k, v in s.items() if k != "params"})
            for i, p in zip(s["params"], g["params"]):
                buf = sd["state"].get(i, {}).get("momentum_buffer")
                if buf is not None:
                    self.state[p] = {"momentum_buffer": buf.to(p.device, p.dtype)}
