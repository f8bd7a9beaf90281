"""The ``genlab`` command line: demo, run, report, list, export.

Bad input of any kind ends with one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from genlab.errors import GenlabError

DEMO = {
    # Small and offline: scikit-learn's 8x8 digits ship with a dependency. The larger learning
    # rate and slower decay stand in for the paper's many steps per epoch on CIFAR10's 50k images.
    "dataset": "digits", "models": ["mlp1x512"], "lr": 0.05, "lr_decay": 0.97,
    "batch_size": 32, "epochs": 300,
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2 (argparse prints usage too)
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _csv(kind: Callable[[str], Any], what: str) -> Callable[[str], list]:
    def parse(text: str) -> list:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"empty list of {what}")
        try:
            return [kind(t) for t in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad list of {what}: {text!r}") from None

    return parse


def _none_or(parse: Callable[[str], list]) -> Callable[[str], list]:
    """``parse``, except that the word ``none`` is the empty list."""
    return lambda text: [] if text.strip().lower() == "none" else parse(text)


def _int_at_least(lo: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"{what} must be >= {lo}, got {v}")
        return v

    return parse


def _positive_float(what: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not v > 0:
            raise argparse.ArgumentTypeError(f"{what} must be > 0, got {v}")
        return v

    return parse


def _nonneg_float(what: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not v >= 0:
            raise argparse.ArgumentTypeError(f"{what} must be >= 0, got {v}")
        return v

    return parse


def _key_value(text: str) -> tuple[str, Any]:
    import json

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"--set wants KEY=VALUE, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="training device (auto: CUDA when available)")
    p.add_argument("--data-dir", help="folder holding the data sets (default: $GENLAB_DATA)")
    p.add_argument("--download", action="store_true",
                   help="download a missing data set with torchvision (needs the network)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--workers", type=_int_at_least(0, "--workers"), default=0,
                   help="worker processes for the runs (default 0: one per core on the CPU, "
                   "one thread each; 1: all in this process)")
    p.add_argument("--batched", choices=["auto", "on", "off"], default="off",
                   help="with one process (--workers 1 or on a GPU): train same-shaped MLPs and "
                   "paper CNNs as one stacked model (auto: when a short probe says it is "
                   "faster). Off by default: in float32 a stack matches one-by-one training "
                   "only to rounding; results record it")
    p.add_argument("--executor", choices=["local", "ray", "slurm", "submitit-local"],
                   default="local", help="local processes (default), Ray tasks (pip install "
                   "'genlab[ray]'), one SLURM job per run (slurm, from a login node) or the "
                   "same jobs on this machine (submitit-local; both pip install "
                   "'genlab[slurm]'; job logs in OUT/slurm)")
    p.add_argument("--ray-address", help="address of a running Ray cluster (default: start a "
                   "local Ray instance)")
    p.add_argument("--gpus-per-run", type=_positive_float("--gpus-per-run"), default=1.0,
                   help="with --executor ray on GPUs: GPU fraction per run (e.g. 0.25 puts four "
                   "small runs on one GPU)")
    p.add_argument("--slurm-partition", metavar="NAME", help="with --executor slurm: the "
                   "partition to submit to (default: the cluster's)")
    p.add_argument("--slurm-time", type=_int_at_least(1, "--slurm-time"), default=60,
                   metavar="MINUTES", help="with --executor slurm or submitit-local: each job's "
                   "time limit (default 60; a run cut short resumes on the next run of the "
                   "command)")
    p.add_argument("--slurm-gpus-per-task", type=_int_at_least(0, "--slurm-gpus-per-task"),
                   default=0, metavar="N", help="GPUs per job (default 0: the runs train on "
                   "the CPU)")
    p.add_argument("--slurm-cpus-per-task", type=_int_at_least(1, "--slurm-cpus-per-task"),
                   default=1, metavar="N", help="CPUs per job (default 1)")
    p.add_argument("--slurm-mem", type=_positive_float("--slurm-mem"), metavar="GB",
                   help="memory per job in GB (default: the cluster's)")
    p.add_argument("--slurm-array-parallelism",
                   type=_int_at_least(1, "--slurm-array-parallelism"), default=16,
                   metavar="N", help="most jobs running at once (default 16; submitit-local: "
                   "also at most one per core)")
    p.add_argument("--checkpoint-every", type=_nonneg_float("--checkpoint-every"), default=30.0,
                   metavar="SECONDS", help="checkpoint a run at the first epoch end after this "
                   "many seconds (default 30; 0: every epoch)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="genlab", description="Randomization tests, capacity measures and "
                     "bounds for 'Understanding deep learning requires rethinking "
                     "generalization'.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    d = sub.add_parser("demo", help="run Figure 1 on scikit-learn's digits (offline, ~1 min)",
                       description="Figure 1 on scikit-learn's 8x8 digits with MLP 1x512: "
                       "true, corrupted and random labels, shuffled and random pixels, Gaussian "
                       "inputs. Offline, CPU, about a minute; writes report.html.")
    d.add_argument("--out", default="genlab-demo", help="output folder (default: genlab-demo)")
    _add_common(d)

    r = sub.add_parser("run", help="run an experiment (genlab list shows them)",
                       description="Run an experiment's grid into a results folder. Finished "
                       "runs in --out are skipped and interrupted ones resumed.")
    r.add_argument("experiment", help="experiment name, e.g. figure1 or grid")
    r.add_argument("--dataset", help="data set name (genlab list datasets), or "
                   "package.module:factory for your own torch Dataset of (image, label)")
    r.add_argument("--model", dest="models", type=_csv(str, "models"),
                   help="model(s), comma-separated: registry names, mlp:WxW, timm:NAME, or "
                   "package.module:callable returning an nn.Module (given num_classes, "
                   "input_shape, in_channels where it takes them; e.g. "
                   "torchvision.models:resnet18). A module in the working folder is found")
    r.add_argument("--image-size", type=_int_at_least(8, "--image-size"), metavar="PIXELS",
                   help="side of the images for data whose size is an option (an ImageFolder "
                   "tree: --dataset imagefolder); default: the model's input size (32 for "
                   "most, 299 for inception-v3)")
    r.add_argument("--conditions", type=_csv(str, "conditions"),
                   help="conditions, comma-separated: true, random-labels, shuffled-pixels, "
                   "random-pixels, gaussian, corrupt:p, and label noise pairflip:p, "
                   "instance:p, transition:FILE (a K x K .npy or .csv); genlab list "
                   "conditions")
    r.add_argument("--corruptions", type=_none_or(_csv(float, "corruption levels")),
                   help="label-corruption levels p in [0,1], comma-separated, or none "
                   "(figure1: added to --conditions; left out when only --conditions is given)")
    r.add_argument("--seeds", type=_csv(int, "seeds"), help="seeds, comma-separated")
    r.add_argument("--train-size", type=_int_at_least(0, "--train-size"),
                   help="training examples, stratified subset (0: all)")
    r.add_argument("--test-size", type=_int_at_least(0, "--test-size"),
                   help="test examples, stratified subset (0: all; default all, except "
                   "table1 with --train-size: 2000)")
    r.add_argument("--epochs", type=_int_at_least(1, "--epochs"), help="maximum epochs")
    r.add_argument("--max-steps", type=_int_at_least(0, "--max-steps"),
                   help="maximum SGD steps (0: no limit)")
    r.add_argument("--lr", type=_positive_float("--lr"), help="initial learning rate")
    r.add_argument("--lr-decay", type=_positive_float("--lr-decay"),
                   help="learning-rate factor per epoch (paper: 0.95)")
    r.add_argument("--decay-every", type=_int_at_least(0, "--decay-every"),
                   help="apply --lr-decay every this many steps (0: every epoch)")
    r.add_argument("--optimizer", choices=["sgd", "adam", "adamw"],
                   help="sgd (the paper's, default), adam or adamw; the learning-rate schedule "
                   "is the same")
    r.add_argument("--momentum", type=_nonneg_float("--momentum"), help="SGD momentum")
    r.add_argument("--weight-decay", type=_nonneg_float("--weight-decay"), help="weight decay")
    r.add_argument("--batch-size", type=_int_at_least(1, "--batch-size"), help="batch size")
    r.add_argument("--target", dest="target_train_acc", type=_nonneg_float("--target"),
                   help="stop when training accuracy reaches this (default 1.0; 0: never)")
    r.add_argument("--target-margin", type=_nonneg_float("--target-margin"),
                   help="count a training point as fitted only when its logit margin is at "
                   "least this (default 0: plain accuracy)")
    r.add_argument("--set", dest="extra", action="append", type=_key_value, default=[],
                   metavar="KEY=VALUE", help="an experiment-specific parameter (repeatable); "
                   "VALUE is parsed as JSON when it can be, e.g. --set ridge=0.001")
    r.add_argument("--fast", action="store_true", default=None,
                   help="fast path: bf16 autocast, channels_last, fused SGD, train-set "
                   "evaluation only once the running accuracy reaches the target")
    r.add_argument("--compile", nargs="?", const="inductor", metavar="BACKEND",
                   help="train with torch.compile (default backend inductor; e.g. aot_eager), "
                   "compiled once per process and reused by every run of the same model and "
                   "input shape")
    r.add_argument("--eval-steps", type=_int_at_least(0, "--eval-steps"),
                   help="also evaluate every this many steps (default 0: at epoch ends only)")
    r.add_argument("--preset", choices=["paper"],
                   help="paper: the paper's preprocessing and each model's recipe (Inception lr "
                   "0.1, AlexNet/MLP 0.01); other flags still override")
    r.add_argument("--preprocess", choices=["normalize", "paper", "none"],
                   help="input preprocessing: normalize (per channel, default), paper (centre "
                   "crop 32->28 and per-image whitening), none")
    r.add_argument("--augment", help="training augmentation on the device: crop, flip, color "
                   "joined with +, e.g. crop+flip (default: none)")
    r.add_argument("--dropout", type=_nonneg_float("--dropout"),
                   help="dropout probability (models with a place for it: alexnet-small)")
    r.add_argument("--out", help="output folder (default: genlab-runs/EXPERIMENT)")
    r.add_argument("--no-report", action="store_true", help="do not write report.html")
    r.add_argument("--config", metavar="FILE.toml", help="read the experiment and options from "
                   "a TOML file: the key experiment, every long option as a key (dashes to "
                   "underscores) and a [set] table; flags given as well win over the file")
    r.add_argument("--dump-config", action="store_true", help="print the resolved config "
                   "(file and flags merged) as TOML and exit without running")
    _add_common(r)

    rep = sub.add_parser("report", help="write report.html for a results folder")
    rep.add_argument("out", help="a results folder (the --out of genlab run), finished or "
                     "with a sweep still running")
    rep.add_argument("--watch", action="store_true", help="on a live folder: rewrite the "
                     "report as runs finish, until no run is training (the page reloads "
                     "itself in the browser)")

    ls = sub.add_parser("list", help="list experiments, data sets, models and conditions")
    ls.add_argument("what", nargs="?", choices=["experiments", "datasets", "models", "conditions"],
                    help="only this kind")

    ex = sub.add_parser("export", help="export runs and curves as csv, parquet, json, or to "
                        "TensorBoard / MLflow")
    ex.add_argument("out", help="a results folder")
    ex.add_argument("--format", choices=["csv", "parquet", "json", "tensorboard", "mlflow"],
                    default="csv", help="tensorboard and mlflow need pip install "
                    "'genlab[tracking]' (default: csv)")
    ex.add_argument("--dest", help="folder for the files (default: OUT/export, or "
                    "OUT/export/tensorboard, OUT/export/mlflow)")

    me = sub.add_parser("measure", help="every capacity measure and bound for one saved model",
                        description="Compute every measure and bound (VC, Dziugaite-Roy, "
                        "compression) for one weights file written by genlab "
                        "(OUT/models/HASH.safetensors; its metadata holds the run spec).")
    me.add_argument("checkpoint", help="a .safetensors weights file written by genlab")
    me.add_argument("--dataset", help="data set to measure on (default: the run's)")
    me.add_argument("--model", help="model name (default: the run's)")
    me.add_argument("--train-size", type=_int_at_least(0, "--train-size"),
                    help="training examples (default: the run's subset)")
    me.add_argument("--test-size", type=_int_at_least(0, "--test-size"),
                    help="test examples (default: the run's subset)")
    me.add_argument("--set", dest="extra", action="append", type=_key_value, default=[],
                    metavar="KEY=VALUE", help="bound options as in 'genlab run bounds', e.g. "
                    "--set dr=false --set dr_samples=500")
    me.add_argument("--json", action="store_true", help="print the result as JSON")
    me.add_argument("--data-dir", help="folder holding the data sets (default: $GENLAB_DATA)")
    me.add_argument("--download", action="store_true", help="download a missing data set")
    return parser


#: library parameters whose flag is not the parameter's name with dashes
_FLAG_NAMES = {"target_train_acc": "--target", "seed": "--seeds", "models": "--model",
               "model": "--model", "conditions": "--conditions", "condition": "--conditions"}


def _in_flags(e: GenlabError, parser: argparse.ArgumentParser, command: str,
              given: dict | None = None) -> str:
    """The message of ``e`` with its Python parameter written as the CLI's flag: a library
    error names ``train_size``, the command line says ``--train-size`` (``--set name=`` for an
    experiment's own parameters)."""
    msg = str(e)
    if not e.param or not msg.startswith(e.param):
        return msg
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)),
               None)
    dests = set()
    if sub is not None and command in sub.choices:
        dests = {a.dest for a in sub.choices[command]._actions}
    flag = _FLAG_NAMES.get(e.param)
    if given and e.param in given:  # the user gave it as --set name=VALUE: say so
        flag = f"--set {e.param}="
    if flag is None:
        flag = (f"--{e.param.replace('_', '-')}" if e.param in dests
                else f"--set {e.param}=")
    return flag + msg[len(e.param):]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"] and any(a == "--config" or a.startswith("--config=") for a in argv):
        try:
            argv = expand_config(argv, parser)
        except GenlabError as e:
            print(f"genlab run: error: {e}", file=sys.stderr)
            return 2
    args = parser.parse_args(argv)
    if getattr(args, "dump_config", False):
        print(dump_config(args, parser), end="")
        return 0
    try:
        from genlab.validation import check_path

        for name in ("out", "data_dir", "dest", "checkpoint"):
            if getattr(args, name, None):
                check_path(getattr(args, name), f"--{name.replace('_', '-')}")
        command, needs = COMMANDS[args.command]
        preload(needs, args)
        return command(args)
    except GenlabError as e:
        msg = _in_flags(e, parser, args.command, dict(getattr(args, "extra", [])))
        print(f"genlab {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except OSError as e:  # the file system failed (full, read-only, gone): a fault, not a bug
        where = f" ({e.filename})" if e.filename else ""
        print(f"genlab {args.command}: error: {e.strerror or e}{where}; fix it and run the "
              "same command again (finished runs are kept)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("genlab: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


def preload(modules: Sequence[str], args: argparse.Namespace | None = None) -> None:
    """Import ``modules`` (genlab's own, named in :data:`COMMANDS`) with Python's cycle
    collector paused, then move everything they built to the permanent generation. Once
    ``genlab.data`` is in, the data set that ``args`` trains on starts reading in the
    background (:func:`read_ahead`) while the other modules import.

    Importing torch builds about a million long-lived objects and no garbage; the collector
    would walk them over and over while they appear, and once more at exit (about a third of
    a bare ``python -c "import torch"`` on the 2-core machine). Frozen, they are never walked
    again. Objects made afterwards are collected as usual.
    """
    gc.disable()
    try:
        for name in modules:
            importlib.import_module(name)
            if name == "genlab.data" and args is not None:
                read_ahead(args)
    finally:
        gc.freeze()
        gc.enable()


def read_ahead(args: argparse.Namespace) -> None:
    """Start reading the files of the data set a command trains on, on a background thread.

    zlib inflates without the GIL, so Fashion-MNIST's 26 MB of gzip (about 0.6 s on the 2-core
    machine) decompress while the main thread imports pandas and genlab's upper layers. Only
    for runs trained in this process (the local executor, at most one worker): other processes
    read their own.
    """
    dataset = getattr(args, "dataset", None)
    if (isinstance(dataset, str) and getattr(args, "executor", "local") == "local"
            and getattr(args, "workers", 0) <= 1):
        from genlab.data.registry import read_ahead as start

        start(dataset, getattr(args, "data_dir", None))


def _check_device(device: str) -> None:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise GenlabError("--device cuda asked for, but CUDA is not available; use --device cpu")


def options_from_args(args: argparse.Namespace):
    """The :class:`genlab.experiments.Options` a parsed ``genlab run`` command line asks for."""
    from genlab.experiments import Options

    keys = [f for f in Options.__dataclass_fields__ if f in vars(args)
            and f not in ("extra", "explicit")]
    return Options(**{k: getattr(args, k) for k in keys}, extra=dict(args.extra))


# --- experiments as files (genlab run --config FILE.toml) ----------------------------------------

#: run options that are not experiment options, and so not config keys
_NOT_CONFIG = {"help", "config", "dump_config"}


def _run_options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """``genlab run``'s long options by config key (``--train-size`` -> ``train_size``)."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    keys = {}
    for a in sub.choices["run"]._actions:
        longs = [o for o in a.option_strings if o.startswith("--")]
        if longs:
            key = longs[0][2:].replace("-", "_")
            if key not in _NOT_CONFIG:
                keys[key] = a
    return keys


def expand_config(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """``run ... --config FILE ...`` with the file's keys written out as the flags they stand
    for, before the flags given on the command line (which therefore win)."""
    rest = list(argv[1:])
    path = None
    for i, a in enumerate(rest):
        if a == "--config" and i + 1 < len(rest):
            path = rest[i + 1]
            del rest[i:i + 2]
            break
        if a.startswith("--config="):
            path = a.partition("=")[2]
            del rest[i]
            break
    if not path:
        raise GenlabError("--config needs a FILE.toml")
    doc = read_toml(path)
    experiment = doc.pop("experiment", None)
    if rest and not rest[0].startswith("-"):
        experiment = rest.pop(0)  # an experiment named on the command line wins
    if not isinstance(experiment, str) or not experiment:
        raise GenlabError(f"{path} has no experiment: add a line experiment = \"figure1\" "
                          "(or name it on the command line)")
    options = _run_options(parser)
    flags: list[str] = []
    for key, value in doc.items():
        if key == "set":
            if not isinstance(value, dict):
                raise GenlabError(f"{path}: set must be a table ([set]) of KEY = VALUE")
            import json

            flags += [x for k, v in value.items() for x in ("--set", f"{k}={json.dumps(v)}")]
            continue
        action = options.get(key)
        if action is None:
            raise GenlabError(f"{path}: unknown key {key!r}; keys are genlab run's long "
                              "options with dashes as underscores (genlab run --help), "
                              "experiment, and a [set] table")
        flag = next(o for o in action.option_strings if o.startswith("--"))
        if action.nargs == 0:  # a switch: true gives it, false leaves it out
            if not isinstance(value, bool):
                raise GenlabError(f"{path}: {key} must be true or false, got {value!r}")
            flags += [flag] if value else []
        elif isinstance(value, list):
            flags += [flag, ",".join(str(v) for v in value) if value else "none"]
        elif isinstance(value, dict | bool):
            raise GenlabError(f"{path}: {key} must be a value or a list, got {value!r}")
        else:
            flags += [flag, str(value)]
    return ["run", experiment, *flags, *rest]


def read_toml(path: str) -> dict:
    """The TOML document at ``path`` (stdlib tomllib; tomli on Python 3.10)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise GenlabError(f"cannot read --config {path}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise GenlabError(f"--config {path} is not valid TOML: {e}") from None


def dump_config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    """The invocation as a config file: the experiment, every option given (in the file or as a
    flag) and the [set] table. ``genlab run --config`` on it asks for the same runs."""
    lines = [f"# genlab {_version()}: genlab run --config FILE.toml", "",
             f"experiment = {_toml(args.experiment)}"]
    for key, action in _run_options(parser).items():
        value = getattr(args, action.dest, None)
        if key == "set" or value is None or value == action.default:
            continue
        lines.append(f"{key} = {_toml(value)}")
    if args.extra:
        lines += ["", "[set]"] + [f"{k} = {_toml(v)}" for k, v in dict(args.extra).items()]
    return "\n".join(lines) + "\n"


def _toml(v: Any) -> str:
    import json

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml(x)}" for k, x in v.items()) + "}"
    return json.dumps(str(v))  # a TOML basic string: JSON's escapes are TOML's


def _version() -> str:
    from genlab.spec import __version__

    return __version__


def _cmd_run(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    out = args.out or str(Path("genlab-runs") / args.experiment)
    return _run(args.experiment, options, out, args, report=not args.no_report)


def _cmd_demo(args: argparse.Namespace) -> int:
    from genlab.experiments import Options

    return _run("figure1", Options(**DEMO), args.out, args, report=True, demo=True)


def _run(name: str, options, out: str, args: argparse.Namespace, *, report: bool,
         demo: bool = False) -> int:
    from genlab.execution.sweep import execute_plan
    from genlab.experiments import Results, get_experiment, plan

    if args.executor != "slurm":  # jobs run on the cluster's nodes, not on the login node
        _check_device(args.device)
    p = plan(name, options, data_dir=args.data_dir, download=args.download)
    config = dump_config(args, build_parser()) if not demo else None
    main = execute_plan(p, out, config=config, device=args.device, data_dir=args.data_dir,
                        download=args.download, quiet=args.quiet,
                        checkpoint_every_s=args.checkpoint_every,
                        workers=args.workers, executor=args.executor,
                        ray_address=args.ray_address, gpus_per_run=args.gpus_per_run,
                        batched=args.batched, slurm_partition=args.slurm_partition,
                        slurm_time_min=args.slurm_time,
                        slurm_gpus_per_task=args.slurm_gpus_per_task,
                        slurm_array_parallelism=args.slurm_array_parallelism,
                        slurm_cpus_per_task=args.slurm_cpus_per_task,
                        slurm_mem_gb=args.slurm_mem)
    if not main:  # torchrun: rank 0 summarises and writes the report
        return 0
    results = Results.stored(out, name)  # read as the summary needs it: rows need no pandas
    _print_summary(get_experiment(p.experiment).summary(results))
    if report:
        from genlab.report import write_report

        print(f"report: {write_report(out)}")
    if demo:
        _print_demo_verdict(results.rows)
    return _failures(p, out)


def _failures(p, out: str) -> int:
    """1 (and one line per distinct reason) when any run or task of the plan ended in error."""
    from genlab.execution.store import Store

    wanted = {s.hash for s in p.specs} | {t.hash for t in p.tasks}
    store = Store.open(out)
    failed = [r for r in store.runs() + store.tasks()
              if r["hash"] in wanted and r["status"] == "error"]
    if not failed:
        return 0
    reasons: dict[str, int] = {}
    for r in failed:
        reason = str(r.get("reason") or "unknown")
        reasons[reason] = reasons.get(reason, 0) + 1
    print(f"genlab: {len(failed)} of {len(wanted)} runs and tasks failed; fix the cause and run "
          "the same command again (finished runs are kept):", file=sys.stderr)
    for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
        print(f"  {n} x {reason.splitlines()[0] if reason else 'unknown'}", file=sys.stderr)
    return 1


def _print_summary(table) -> None:
    """An experiment's summary: a :class:`genlab.experiments.Table` as it lays itself out, a
    DataFrame through pandas in the same layout."""
    from genlab.experiments import Table
    from genlab.experiments.base import number

    if isinstance(table, Table):
        print(table.to_string())
        return
    import pandas as pd

    with pd.option_context("display.width", 160, "display.max_columns", 20,
                           "display.float_format", number):
        print(table.to_string(index=False))


def _print_demo_verdict(rows: list[dict]) -> None:
    from genlab.experiments.base import missing

    def mean(condition: str, key: str) -> float:
        values = [r[key] for r in rows if r["condition"] == condition and not missing(r.get(key))]
        return sum(values) / len(values) if values else float("nan")

    rl = [r for r in rows if r["condition"] == "random-labels"]
    if not rl or not any(r["condition"] == "true" for r in rows):
        return
    k = int(rl[0]["num_classes"]) if not missing(rl[0].get("num_classes")) else 10
    print(f"\nrandom labels: train accuracy {mean('random-labels', 'train_acc'):.3f}, test "
          f"accuracy {mean('random-labels', 'test_acc'):.3f} (chance {1 / k:.3f}); true "
          f"labels: test accuracy {mean('true', 'test_acc'):.3f}")


def _cmd_report(args: argparse.Namespace) -> int:
    from genlab.report import watch, write_report

    if args.watch:
        watch(args.out)
        return 0
    print(f"report: {write_report(args.out)}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from genlab.data.conditions import list_conditions
    from genlab.data.registry import list_datasets
    from genlab.experiments import list_experiments
    from genlab.models.registry import list_models

    kinds = {"experiments": list_experiments, "datasets": list_datasets,
             "models": list_models, "conditions": list_conditions}
    for kind, lister in kinds.items():
        if args.what in (None, kind):
            print(f"{kind}:")
            for name, desc in lister().items():
                print(f"  {name:24s} {desc}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from genlab.execution.results import export

    report = None
    if args.format == "mlflow":  # each MLflow run carries the report; execution cannot write it
        from genlab.execution.store import Store
        from genlab.execution.trackers import require
        from genlab.report import write_report

        require("mlflow")
        report = Path(args.out) / "report.html"
        if (not report.is_file()
                or report.stat().st_mtime < Store.open(args.out).path.stat().st_mtime):
            report = write_report(args.out)  # none yet, or older than the last result
    for p in export(args.out, args.format, args.dest, report=report):
        print(p)
    return 0


def _cmd_measure(args: argparse.Namespace) -> int:
    import json

    from genlab.experiments.bound_sweep import (
        BOUND_PREDICTORS,
        DEFAULTS,
        bound_status,
        measure_checkpoint,
    )
    from genlab.experiments.bound_sweep import (
        check_extra as _check_extra,
    )

    params = {**DEFAULTS["extra"], **dict(args.extra)}
    _check_extra(params)
    res = measure_checkpoint(args.checkpoint, args.dataset, args.model,
                             train_size=args.train_size, test_size=args.test_size,
                             params=params, data_dir=args.data_dir, download=args.download)
    if args.json:
        print(json.dumps(res, indent=1, default=str))
        return 0
    for k, v in res.items():
        if k == "notes":
            continue
        text = f"{v:.6g}" if isinstance(v, float) else str(v)
        if k in BOUND_PREDICTORS:
            if text == "1" and v < 1:  # 0.9999999 is not vacuous: do not print it as 1
                text = f"{v:.12g}"
            who, col = BOUND_PREDICTORS[k]
            err = res.get(col)
            of = f"test error of {who} {err:.4f}; " if isinstance(err, float) else ""
            text += f"  ({of}{bound_status(v, res['num_classes'])})"
        print(f"{k:40s} {text}")
    for n in res["notes"]:
        print(f"note: {n}")
    return 0


_TRAINING = ("genlab.data", "genlab.report", "genlab.execution.sweep")
#: command -> (handler, the modules it needs, imported up front by :func:`preload`)
COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], tuple[str, ...]]] = {
    "demo": (_cmd_demo, _TRAINING), "run": (_cmd_run, _TRAINING),
    "report": (_cmd_report, ("genlab.report",)), "list": (_cmd_list, ("genlab.experiments",)),
    "export": (_cmd_export, ("genlab.execution.results",)),
    "measure": (_cmd_measure, ("genlab.experiments.bound_sweep",)),
}

if __name__ == "__main__":
    sys.exit(main())
