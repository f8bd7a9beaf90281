"""GPU benchmark: training throughput of the paper's networks, batched sweeps, and memory.

Four parts (``--only`` picks some; each prints its markdown table as soon as it is measured):

throughput  For each of inception-small, alexnet-small and mlp1x512 on N CIFAR-shaped images
            (3x28x28, the paper's crop; Gaussian pixels and random labels: throughput does not
            depend on the values), one epoch of training is timed after a warm-up epoch, three
            ways:

              fast      genlab's trainer with the fast path (``Recipe.fast``): bf16 autocast,
                        channels_last, fused SGD, training data resident on the GPU in bf16
              faithful  genlab's trainer, fp32 (what the paper presets use)
              plain     a torchvision-style loop: a Dataset of CPU tensors,
                        DataLoader(batch_size=128, shuffle=True), each batch copied to the GPU,
                        ``loss.item()`` every step

compile     ``fast + compile``: the fast path trained through ``torch.compile`` (genlab's
            ``Recipe.compile``, backend ``--compile-backend``, inductor by default). Its first
            epoch includes compiling (training and evaluation graphs); the warm-up column
            (first epoch minus a steady epoch) is the compile time.

batched     K=6 models (mlp1x512, alexnet-small) on K label sets, one epoch each:
            stacked and trained at once (``genlab.training.batched.train_batched``, fp32) vs
            the K runs one by one (fp32, and with the fast path). A short warm-up of each first.

memory      ``torch.cuda.max_memory_allocated`` above what was allocated before: the N-image
            training set and N/5-image test set resident on the GPU (float32, as genlab keeps
            preprocessed data) plus K=12 stacked MLP 1x512 trained for one epoch; once with one
            shared copy of the data, once with K copies (what ``genlab run --batched`` stacks).
            n/a on the CPU.

Every genlab epoch and every plain epoch ends with the evaluation of the whole training and
test sets, as genlab's trainer does each epoch; the evaluation time is measured on its own and
"train img/s" excludes it. The fraction of peak FLOP/s is training images/s times the forward +
backward FLOPs of one image (``torch.utils.flop_counter``) over the GPU's dense peak for the
precision used: bf16 for the fast paths; TF32 for fp32 CNN rows when cuDNN may use TF32 for
convolutions (PyTorch's default), else fp32. Peaks come from a table of known GPUs or
``--peak-tflops``.

Output: the machine, date and exact command, then one markdown table per part, then the issue's
targets met or not, ready to paste into BENCHMARKS.md.

    python benchmarks/gpu_throughput.py                                # everything, N = 50000
    python benchmarks/gpu_throughput.py --only throughput,batched,memory
    python benchmarks/gpu_throughput.py --only compile
    python benchmarks/gpu_throughput.py --device cpu --n 256 --models mlp1x512 \\
        --compile-backend eager                                        # a CPU smoke test
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

# this checkout's genlab, installed or not (a GPU machine may have no network to install it)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import genlab  # noqa: E402
from genlab.models.recipes import recipe_for  # noqa: E402
from genlab.training.batched import train_batched  # noqa: E402
from genlab.training.loop import synced_clock, train  # noqa: E402

#: Dense peak TFLOP/s (no sparsity) by device-name substring, first match wins:
#: (bf16 tensor core, TF32 tensor core, fp32 non-tensor). NVIDIA's data sheets.
PEAK_TFLOPS = {"H100 PCIe": (756.0, 378.0, 51.2), "H100": (989.4, 494.7, 66.9),
               "H200": (989.4, 494.7, 66.9), "A100": (312.0, 156.0, 19.5)}
PRECISIONS = ("bf16", "tf32", "fp32")
MODELS = ("inception-small", "alexnet-small", "mlp1x512")
BATCHED_MODELS = ("mlp1x512", "alexnet-small")
PARTS = ("throughput", "compile", "batched", "memory")
SHAPE = (3, 28, 28)  # CIFAR10 after the paper's centre crop
TARGET_IMAGES_PER_S = 50_000  # inception-small, fast path, one H100
TARGET_BATCHED_RATIO = 5.0  # K=6 MLP 1x512 batched vs one by one
TARGET_MEMORY_GB = 20.0  # data set + K=12 stacked MLP 1x512


@dataclass
class Data:
    """A CIFAR-shaped training and test set on the device."""

    x: torch.Tensor
    y: torch.Tensor
    xt: torch.Tensor
    yt: torch.Tensor


@dataclass
class Timing:
    """Seconds of a first (warm-up) epoch, a steady epoch, and the evaluation in the latter."""

    first: float
    epoch: float
    eval: float


# --------------------------------------------------------------------------------------------
# Helpers


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def machine(device: torch.device) -> str:
    """One line: the device, torch and CUDA versions, the host's CPU and cores."""
    cuda = f", CUDA {torch.version.cuda}" if device.type == "cuda" else ""
    cpu = platform.processor() or platform.machine()
    return (f"{device_name(device)}, torch {torch.__version__}{cuda}, host {cpu} with "
            f"{os.cpu_count()} cores, Python {platform.python_version()}")


def command_line(argv: list[str] | None) -> str:
    args = sys.argv[1:] if argv is None else argv
    return shlex.join(["python", "benchmarks/gpu_throughput.py", *args])


def peaks(device: torch.device, given: list[float] | None) -> dict[str, float] | None:
    """Dense peak FLOP/s per precision for the device, or None when unknown."""
    name = device_name(device)
    values = given or next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    return dict(zip(PRECISIONS, (t * 1e12 for t in values))) if values else None


def precision(model_name: str, fast: bool) -> str:
    """The precision the bulk of a training step's FLOPs run in."""
    if fast:
        return "bf16"
    if model_name.startswith("mlp"):
        return "tf32" if torch.backends.cuda.matmul.allow_tf32 else "fp32"
    return "tf32" if torch.backends.cudnn.allow_tf32 else "fp32"


def flops_per_image(model_name: str, device: torch.device) -> float:
    """Forward + backward FLOPs of one training image (counted on a batch of 8)."""
    torch.manual_seed(0)
    model = genlab.build_model(model_name, SHAPE, 10).to(device)
    x = torch.randn(8, *SHAPE, device=device)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), torch.zeros(8, dtype=torch.long, device=device)).backward()
    return counter.get_total_flops() / 8


def cifar_shaped(n: int, n_test: int, device: torch.device, seed: int = 0) -> Data:
    """Gaussian CIFAR-shaped images with random labels, float32 on the device."""
    g = torch.Generator(device=device).manual_seed(seed)
    return Data(torch.randn(n, *SHAPE, device=device, generator=g),
                torch.randint(10, (n,), device=device, generator=g),
                torch.randn(n_test, *SHAPE, device=device, generator=g),
                torch.randint(10, (n_test,), device=device, generator=g))


def bench_recipe(model_name: str, **fields) -> genlab.Recipe:
    """The model's paper recipe for one epoch with no early stop, with ``fields`` changed."""
    return recipe_for(model_name, {"epochs": 1, "max_steps": 0, "target_train_acc": 0.0,
                                   **fields})


def build(model_name: str, device: torch.device, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return genlab.build_model(model_name, SHAPE, 10).to(device)


def failure(e: Exception) -> str:
    """One line for a table cell."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text[:150]}".replace("|", "/")


def timed(fn: Callable[[], object], device: torch.device) -> float:
    t = synced_clock(device)
    fn()
    return synced_clock(device) - t


# --------------------------------------------------------------------------------------------
# Part 1 and 2: one model's epoch, genlab's paths and the plain idiom


def genlab_epoch(model_name: str, data: Data, fast: bool, compile: str = "") -> Timing:
    """A warm-up epoch, then a timed epoch, of genlab's trainer (one model, one process)."""
    device = data.x.device
    model = build(model_name, device)
    recipe = bench_recipe(model_name, fast=fast, compile=compile)

    eval_s = [0.0]

    def epoch() -> None:
        result = train(model, data.x, data.y, data.xt, data.yt, recipe)
        eval_s[0] = result.state.eval_seconds  # the trainer times its evaluations, synced

    first = timed(epoch, device)  # cuDNN autotuning, the allocator, compiling
    steady = timed(epoch, device)
    return Timing(first, steady, eval_s[0])


def plain_epoch(model_name: str, data: Data) -> Timing:
    """A warm-up epoch, then a timed epoch, of the torchvision/DataLoader idiom."""
    device = data.x.device
    model = build(model_name, device)
    r = bench_recipe(model_name)
    opt = torch.optim.SGD(model.parameters(), lr=r.lr, momentum=r.momentum)
    train_set = torch.utils.data.TensorDataset(data.x.cpu(), data.y.cpu())
    test_set = torch.utils.data.TensorDataset(data.xt.cpu(), data.yt.cpu())
    loader = torch.utils.data.DataLoader(train_set, batch_size=r.batch_size, shuffle=True)
    evals = [torch.utils.data.DataLoader(s, batch_size=1000) for s in (train_set, test_set)]

    def train_pass() -> None:
        model.train()
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            loss.item()  # the usual per-step logging

    def evaluate() -> None:  # train and test accuracy each epoch, as genlab's trainer does
        model.eval()
        with torch.no_grad():
            for ev in evals:
                for xb, yb in ev:
                    (model(xb.to(device)).argmax(1) == yb.to(device)).sum().item()

    first = timed(lambda: (train_pass(), evaluate()), device)
    train_s, eval_s = timed(train_pass, device), timed(evaluate, device)
    return Timing(first, train_s + eval_s, eval_s)


def throughput_table(models: list[str], data: Data, peak: dict[str, float] | None,
                     variants: list[tuple[str, bool, str]], backend: str) -> dict:
    """Time each model under each variant (label, fast, "genlab"|"plain"|"compile"); print a
    markdown table row by row; return {(model, label): train images/s}."""
    n = len(data.x)
    print("| model | path | first epoch s | warm-up s (first - steady) | s/epoch | of which "
          "eval s | train img/s (excl. eval) | img/s (incl. eval) | fraction of peak "
          "(training) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    out, gflop = {}, {}
    for model_name in models:
        fpi = flops_per_image(model_name, data.x.device)
        gflop[model_name] = fpi / 1e9
        for label, fast, kind in variants:
            try:
                t = (plain_epoch(model_name, data) if kind == "plain" else
                     genlab_epoch(model_name, data, fast, backend if kind == "compile" else ""))
            except Exception as e:  # one failing variant (e.g. a compiler error) is a result
                print(f"| {model_name} | {label} | failed: {failure(e)} |" + " |" * 6,
                      flush=True)
                continue
            train_ips = n / max(t.epoch - t.eval, 1e-9)
            prec = precision(model_name, fast)
            frac = (f"{train_ips * fpi / peak[prec]:.1%} of {prec} {peak[prec] / 1e12:g} TFLOP/s"
                    if peak else "n/a")
            out[(model_name, label)] = train_ips
            print(f"| {model_name} | {label} | {t.first:.2f} | {t.first - t.epoch:.2f} | "
                  f"{t.epoch:.2f} | {t.eval:.2f} | {train_ips:,.0f} | {n / t.epoch:,.0f} | "
                  f"{frac} |", flush=True)
    print("\nForward + backward GFLOP per training image: "
          + ", ".join(f"{m} {g:.3f}" for m, g in gflop.items()))
    return out


# --------------------------------------------------------------------------------------------
# Part 3: K models stacked vs one by one


def batched_vs_sequential(model_name: str, data: Data, k: int) -> dict[str, float]:
    """Seconds for one epoch of K models on K label sets: stacked, and one by one (fp32 and
    fast path). Each way runs a 3-step warm-up first (cuDNN autotuning, evaluation)."""
    device = data.x.device
    g = torch.Generator(device=device).manual_seed(1)
    labels = torch.stack([torch.randint(10, data.y.shape, device=device, generator=g)
                          for _ in range(k)])
    xs, xts, yts = (t.expand(k, *t.shape) for t in (data.x, data.xt, data.yt))

    def batched(recipe: genlab.Recipe) -> None:
        models = [build(model_name, device, seed) for seed in range(k)]
        train_batched(models, xs, labels, xts, yts, [recipe] * k, list(range(k)))

    def one_by_one(recipe: genlab.Recipe) -> None:
        for seed in range(k):
            train(build(model_name, device, seed), data.x, labels[seed], data.xt, data.yt,
                  recipe, seed=seed)

    ways = {"batched": (batched, False), "one by one": (one_by_one, False),
            "one by one, fast": (one_by_one, True)}
    out = {}
    for name, (fn, fast) in ways.items():
        fn(bench_recipe(model_name, fast=fast, max_steps=3))  # warm-up
        out[name] = timed(lambda fn=fn, fast=fast: fn(bench_recipe(model_name, fast=fast)),
                          device)
    return out


def batched_table(models: list[str], data: Data, k: int) -> dict[str, float]:
    """Print the batched-vs-sequential table; return {model: one by one / batched}."""
    print(f"| {k} x model, one epoch each | batched (fp32) s | one by one (fp32) s | one by "
          f"one (fast path) s | one by one (fp32) / batched |")
    print("|---|---:|---:|---:|---:|", flush=True)
    ratios = {}
    for model_name in models:
        try:
            t = batched_vs_sequential(model_name, data, k)
        except Exception as e:
            print(f"| {k} x {model_name} | failed: {failure(e)} | | | |", flush=True)
            continue
        ratios[model_name] = t["one by one"] / t["batched"]
        print(f"| {k} x {model_name} | {t['batched']:.2f} | {t['one by one']:.2f} | "
              f"{t['one by one, fast']:.2f} | {ratios[model_name]:.2f}x |", flush=True)
    return ratios


# --------------------------------------------------------------------------------------------
# Part 4: memory of a resident data set plus K stacked models


def memory_peak(n: int, n_test: int, k: int, device: torch.device, copies: bool
                ) -> float | None:
    """Peak bytes allocated on the GPU above what was allocated before, for an n-image data
    set resident on the device plus K stacked MLP 1x512 trained for one epoch (train and test
    evaluation included). ``copies``: the layout ``genlab run --batched`` trains from
    (genlab.execution.prepare.prepare_stacked: every run's data copied into one (K, N, ...)
    stack, each run's own tensors then dropped); else one shared copy, expanded. None on the CPU
    (it still trains, as a smoke test)."""
    base = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    data = cifar_shaped(n, n_test, device, seed=2)
    labels = [torch.randint(10, data.y.shape, device=device) for _ in range(k)]
    x, xt = data.x.expand(k, *data.x.shape), data.xt.expand(k, *data.xt.shape)
    y, yt = torch.stack(labels), data.yt.expand(k, *data.yt.shape)
    if copies:
        x, xt, yt = x.clone(), xt.clone(), yt.clone()
        del data
    models = [build("mlp1x512", device, seed) for seed in range(k)]
    train_batched(models, x, y, xt, yt, [bench_recipe("mlp1x512")] * k, list(range(k)))
    synced_clock(device)  # the queued work done before reading the peak
    return torch.cuda.max_memory_allocated(device) - base if device.type == "cuda" else None


def memory_table(n: int, n_test: int, k: int, device: torch.device) -> float | None:
    """Print the memory table; return the peak GB of the genlab-sweep layout (None on CPU)."""
    print(f"| {n:,} + {n_test:,} CIFAR-shaped images (float32, 3x28x28) resident + {k} x "
          f"mlp1x512 stacked, one epoch | peak GPU memory (GB = 1e9 bytes) |")
    print("|---|---:|", flush=True)
    peak_gb = None
    for copies, label in ((False, "one shared copy of the data"),
                          (True, f"{k} copies, stacked as `genlab run --batched` does")):
        peak = memory_peak(n, n_test, k, device, copies)
        peak_gb = peak / 1e9 if peak is not None else None
        shown = f"{peak_gb:.2f}" if peak_gb is not None else "n/a (CPU)"
        print(f"| {label} | {shown} |", flush=True)
    return peak_gb


# --------------------------------------------------------------------------------------------
# Driver


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default=",".join(PARTS),
                    help=f"comma-separated parts to run (default all): {', '.join(PARTS)}")
    ap.add_argument("--models", default=",".join(MODELS),
                    help="models for throughput and compile; batched uses those of them in "
                    f"{', '.join(BATCHED_MODELS)} (default: {','.join(MODELS)})")
    ap.add_argument("--n", type=int, default=50000, help="training images (default 50000)")
    ap.add_argument("--n-test", type=int, help="test images (default n / 5)")
    ap.add_argument("--k", type=int, default=6, help="models in the batched part (default 6)")
    ap.add_argument("--k-memory", type=int, default=12,
                    help="stacked MLPs in the memory part (default 12)")
    ap.add_argument("--compile-backend", default="inductor",
                    help="torch.compile backend of the compile part (default inductor; eager "
                    "or aot_eager for a quick CPU smoke test)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--peak-tflops", type=float, nargs=3, metavar=("BF16", "TF32", "FP32"),
                    help="the GPU's dense peak TFLOP/s (default: from a table of known GPUs)")
    args = ap.parse_args(argv)
    args.parts = [p.strip() for p in args.only.split(",") if p.strip()]
    args.model_list = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = sorted(set(args.parts) - set(PARTS)) + sorted(set(args.model_list) - set(MODELS))
    if bad:
        ap.error(f"unknown part or model: {', '.join(bad)}")
    args.n_test = args.n_test or max(args.n // 5, 1)
    return args


def met(ok: bool) -> str:
    return "met" if ok else "not met"


def targets(results: dict, device: torch.device, default_sizes: bool) -> list[str]:
    """The issue's targets, met or not, for the figures measured in this run."""
    lines = []
    ips = {k: v for k, v in results.get("ips", {}).items() if k[0] == "inception-small"}
    for (_, label), v in ips.items():
        if label.startswith("fast"):
            lines.append(f"inception-small {label}: {v:,.0f} train img/s "
                         f"(target >= {TARGET_IMAGES_PER_S:,} on one H100): "
                         f"{met(v >= TARGET_IMAGES_PER_S)}")
    if "mlp1x512" in results.get("ratios", {}):
        r = results["ratios"]["mlp1x512"]
        lines.append(f"batched MLP 1x512 vs one by one: {r:.2f}x (target >= "
                     f"{TARGET_BATCHED_RATIO:g}x): {met(r >= TARGET_BATCHED_RATIO)}")
    if "memory_gb" in results:
        gb = results["memory_gb"]
        lines.append(f"memory, data set + {results['memory_k']} stacked MLP 1x512: " + (
            f"{gb:.2f} GB (target <= {TARGET_MEMORY_GB:g} GB): {met(gb <= TARGET_MEMORY_GB)}"
            if gb is not None
            else "n/a on the CPU"))
    if device.type != "cuda":
        lines.append("(measured on the CPU: a smoke test of this script, not GPU figures)")
    if not default_sizes:
        lines.append("(sizes other than the targets' N = 50,000, K = 6, K = 12: the targets "
                     "do not apply)")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    peak = peaks(device, args.peak_tflops)
    print(f"### GPU throughput ({datetime.date.today()})\n")
    print(f"Machine: {machine(device)}. cuDNN TF32 convolutions "
          f"{'allowed' if torch.backends.cudnn.allow_tf32 else 'off'}, TF32 matmuls "
          f"{'allowed' if torch.backends.cuda.matmul.allow_tf32 else 'off'}."
          f" {args.n:,} training + {args.n_test:,} test CIFAR-shaped images (3x28x28, "
          "Gaussian pixels, random labels), batch 128, each model's paper recipe.\n")
    print(f"Command: `{command_line(argv)}`\n", flush=True)
    t0 = time.perf_counter()
    results: dict = {}
    data = cifar_shaped(args.n, args.n_test, device) if set(args.parts) - {"memory"} else None
    if "throughput" in args.parts:
        variants = [("fast", True, "genlab"), ("faithful", False, "genlab"),
                    ("plain", False, "plain")]
        results.setdefault("ips", {}).update(
            throughput_table(args.model_list, data, peak, variants, args.compile_backend))
        print()
    if "compile" in args.parts:
        print(f"`fast + compile`: the first epoch includes compiling with torch.compile "
              f"(backend {args.compile_backend}); warm-up is about the compile time.\n")
        variants = [(f"fast + compile ({args.compile_backend})", True, "compile")]
        results.setdefault("ips", {}).update(
            throughput_table(args.model_list, data, peak, variants, args.compile_backend))
        print()
    batched_models = [m for m in args.model_list if m in BATCHED_MODELS]
    if "batched" in args.parts and batched_models:
        results["ratios"] = batched_table(batched_models, data, args.k)
        print()
    if "memory" in args.parts:
        del data
        results["memory_gb"] = memory_table(args.n, args.n_test, args.k_memory, device)
        results["memory_k"] = args.k_memory
        print()
    default_sizes = (args.n, args.k, args.k_memory) == (50000, 6, 12)
    for line in targets(results, device, default_sizes):
        print(f"- {line}")
    print(f"\nTotal time of this command: {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
