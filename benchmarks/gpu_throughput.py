"""GPU benchmark: training throughput of the paper's networks, fast path vs faithful vs plain.

For each of inception-small, alexnet-small and mlp1x512 on N CIFAR-shaped images (3x28x28
after the paper's crop; Gaussian data, since CIFAR10 cannot be downloaded on an offline GPU
machine), one epoch of training is timed three ways after a warm-up epoch:

  fast      genlab's trainer with ``Recipe(fast=True)``: bf16 autocast, channels_last, fused
            SGD, data resident on the GPU in bf16
  faithful  genlab's trainer, fp32, batch 128 (what the paper presets use)
  plain     a torchvision-style loop: a Dataset of CPU tensors, DataLoader(batch_size=128,
            shuffle=True, num_workers=0), copy of each batch to the GPU

All three evaluate train and test accuracy at the end of the epoch, as genlab's trainer does.

Reports images/s and the fraction of the GPU's peak FLOP/s (FLOPs per image counted with
torch.utils.flop_counter for forward + backward; peak from --peak-tflops, or a table of known
GPUs for the precision used). Also times K=6 MLP 1x512 models batched vs one by one.

    python benchmarks/gpu_throughput.py                        # N = 50000 on CUDA
    python benchmarks/gpu_throughput.py --device cpu --n 512   # a smoke test of the script
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import genlab
from genlab.batched import train_batched
from genlab.train import train

#: Dense peak TFLOP/s (no sparsity) by device-name substring: (bf16 tensor core, fp32 non-tensor)
PEAK_TFLOPS = {"H100": (989.0, 67.0), "H200": (989.0, 67.0), "A100": (312.0, 19.5)}
MODELS = ("inception-small", "alexnet-small", "mlp1x512")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def flops_per_image(model_name: str, device: torch.device) -> float:
    """Forward + backward FLOPs of one training image (counted on a batch of 8)."""
    torch.manual_seed(0)
    model = genlab.build_model(model_name, (3, 28, 28), 10).to(device)
    x = torch.randn(8, 3, 28, 28, device=device)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), torch.zeros(8, dtype=torch.long, device=device)).backward()
    return counter.get_total_flops() / 8


def genlab_epoch(model_name: str, x, y, xt, yt, fast: bool) -> float:
    torch.manual_seed(0)
    model = genlab.build_model(model_name, (3, 28, 28), 10).to(x.device)
    lr = 0.1 if model_name.startswith("inception") else 0.01
    recipe = genlab.Recipe(lr=lr, batch_size=128, epochs=1, target_train_acc=0.0, fast=fast)
    train(model, x, y, xt, yt, recipe)  # warm-up (cuDNN autotuning, allocator)
    sync(x.device)
    t = time.perf_counter()
    train(model, x, y, xt, yt, recipe)
    sync(x.device)
    return time.perf_counter() - t


def plain_epoch(model_name: str, x, y, xt, yt, device: torch.device) -> float:
    torch.manual_seed(0)
    model = genlab.build_model(model_name, (3, 28, 28), 10).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    data = torch.utils.data.TensorDataset(x.cpu(), y.cpu())
    loader = torch.utils.data.DataLoader(data, batch_size=128, shuffle=True)
    evals = [torch.utils.data.DataLoader(data, batch_size=1000),
             torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xt.cpu(), yt.cpu()),
                                         batch_size=1000)]

    def epoch() -> None:
        model.train()
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            loss.item()  # the usual per-step logging
        model.eval()  # and train/test accuracy each epoch, as genlab's trainer does
        with torch.no_grad():
            for ev in evals:
                for xb, yb in ev:
                    (model(xb.to(device)).argmax(1) == yb.to(device)).sum().item()

    epoch()
    sync(device)
    t = time.perf_counter()
    epoch()
    sync(device)
    return time.perf_counter() - t


def batched_vs_sequential(x, y, xt, yt, k: int = 6) -> tuple[float, float]:
    recipe = genlab.Recipe(lr=0.01, batch_size=128, epochs=1, target_train_acc=0.0)

    def models():
        out = []
        for s in range(k):
            torch.manual_seed(s)
            out.append(genlab.build_model("mlp1x512", (3, 28, 28), 10).to(x.device))
        return out

    labels = torch.stack([torch.randint(10, y.shape, device=y.device) for _ in range(k)])
    xs, xts, yts = x.expand(k, *x.shape), xt.expand(k, *xt.shape), yt.expand(k, *yt.shape)
    for _ in range(2):  # warm-up, then timed
        sync(x.device)
        t = time.perf_counter()
        train_batched(models(), xs, labels, xts, yts, [recipe] * k, list(range(k)))
        sync(x.device)
        t_batched = time.perf_counter() - t
        t = time.perf_counter()
        for m, lab, s in zip(models(), labels, range(k)):
            train(m, x, lab, xt, yt, recipe, seed=s)
        sync(x.device)
        t_seq = time.perf_counter() - t
    return t_batched, t_seq


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=50000, help="training images")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--peak-tflops", type=float, nargs=2, metavar=("BF16", "FP32"),
                    help="the GPU's dense peak TFLOP/s (default: from a table of known GPUs)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(args.n, 3, 28, 28, device=device, generator=g)
    y = torch.randint(10, (args.n,), device=device, generator=g)
    xt, yt = x[:1000], y[:1000]

    print(f"GPU throughput benchmark, {datetime.date.today()}: {name}, torch {torch.__version__}"
          f", {args.n} CIFAR-shaped images (3x28x28, Gaussian), batch 128, one epoch after a "
          f"warm-up epoch\n")
    print("| model | path | images/s | fraction of peak FLOP/s |")
    print("|---|---|---:|---:|")
    for model_name in MODELS:
        fpi = flops_per_image(model_name, device)
        for path, secs, precision in [
            ("fast", genlab_epoch(model_name, x, y, xt, yt, fast=True), 0),
            ("faithful", genlab_epoch(model_name, x, y, xt, yt, fast=False), 1),
            ("plain", plain_epoch(model_name, x, y, xt, yt, device), 1),
        ]:
            ips = args.n / secs
            frac = f"{ips * fpi / (peak[precision] * 1e12):.1%}" if peak else "n/a"
            print(f"| {model_name} | {path} | {ips:,.0f} | {frac} |")
    t_b, t_s = batched_vs_sequential(x, y, xt, yt)
    print(f"\nK=6 MLP 1x512, one epoch each: batched {t_b:.2f} s, one by one {t_s:.2f} s, "
          f"ratio {t_s / t_b:.2f}x")
    print(f"\nCommand: `python {' '.join(sys.argv)}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
