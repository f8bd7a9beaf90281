"""Experiments as files: ``genlab run --config exp.toml`` asks for exactly the runs the same
flags ask for, ``--dump-config`` prints the merged file, and the store keeps every
invocation's config."""

from __future__ import annotations

import textwrap

import pytest

import genlab
from genlab.cli import build_parser, expand_config, main

FLAGS = ["--dataset", "digits", "--model", "mlp:16,mlp:8", "--conditions",
         "true,random-labels", "--corruptions", "0.5", "--seeds", "0,1", "--epochs", "1",
         "--train-size", "200", "--test-size", "100", "--lr", "0.05", "--target", "0.9",
         "--optimizer", "adamw", "--fast", "--workers", "1", "--quiet", "--no-report"]

CONFIG = """
experiment = "figure1"
dataset = "digits"
model = ["mlp:16", "mlp:8"]
conditions = "true,random-labels"
corruptions = [0.5]
seeds = [0, 1]
epochs = 1
train_size = 200
test_size = 100
lr = 0.05
target = 0.9
optimizer = "adamw"
fast = true
workers = 1
quiet = true
no_report = true
"""


def hashes(argv):
    from genlab.cli import options_from_args
    from genlab.experiments import plan

    args = build_parser().parse_args(argv)
    p = plan(args.experiment, options_from_args(args))
    return sorted(s.hash for s in p.specs)


def test_a_config_file_and_the_same_flags_ask_for_the_same_runs(tmp_path):
    f = tmp_path / "exp.toml"
    f.write_text(CONFIG)
    from_flags = hashes(["run", "figure1", *FLAGS])
    from_file = hashes(expand_config(["run", "--config", str(f)], build_parser()))
    assert len(from_flags) == 2 * 2 * 3 and from_file == from_flags
    # a flag given as well wins over the file
    changed = hashes(expand_config(["run", "--config", str(f), "--lr", "0.1"], build_parser()))
    assert set(changed).isdisjoint(from_flags)


def test_dump_config_round_trips_and_set_tables(tmp_path, capsys):
    f = tmp_path / "exp.toml"
    f.write_text(CONFIG + "\n[set]\n")
    assert main(["run", "--config", str(f), "--seeds", "3", "--dump-config"]) == 0
    dumped = capsys.readouterr().out
    assert 'experiment = "figure1"' in dumped and "seeds = [3]" in dumped
    g = tmp_path / "dumped.toml"
    g.write_text(dumped)
    argv = ["run", "figure1", *FLAGS]
    argv[argv.index("0,1")] = "3"
    assert hashes(expand_config(["run", "--config", str(g)], build_parser())) == hashes(argv)
    k = tmp_path / "kernels.toml"
    k.write_text('experiment = "kernels"\n[set]\nridge = 0.001\nkernel = "gaussian"\n')
    assert main(["run", "--config", str(k), "--dump-config"]) == 0
    out = capsys.readouterr().out
    assert "[set]" in out and "ridge = 0.001" in out and 'kernel = "gaussian"' in out


@pytest.mark.parametrize("text, words", [
    ('experiment = "figure1"\nbogus = 1\n', "unknown key 'bogus'"),
    ('dataset = "digits"\n', "no experiment"),
    ('experiment = "figure1"\nquiet = 3\n', "true or false"),
    ('experiment = "figure1"\nepochs = [1\n', "not valid TOML"),
    ('experiment = "figure1"\nepochs = 0\n', "--epochs must be >= 1"),
])
def test_bad_config_files_are_one_line_and_exit_2(tmp_path, capsys, text, words):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(SystemExit) as e:  # argparse's own refusals exit too
        raise SystemExit(main(["run", "--config", str(f), "--out", str(tmp_path / "o")]))
    err = capsys.readouterr().err
    assert e.value.code == 2 and words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_the_store_keeps_every_invocation_s_config(tmp_path):
    out = tmp_path / "out"
    f = tmp_path / "exp.toml"
    f.write_text(textwrap.dedent("""
        experiment = "figure1"
        dataset = "digits"
        model = "mlp:8"
        conditions = "true"
        corruptions = []
        seeds = [0]
        epochs = 1
        train_size = 100
        test_size = 50
        workers = 1
        quiet = true
        no_report = true
    """))
    assert main(["run", "--config", str(f), "--out", str(out)]) == 0
    assert main(["run", "--config", str(f), "--out", str(out), "--seeds", "1"]) == 0
    kept = sorted((out / "configs").glob("*.toml"))
    assert len(kept) == 2
    assert "seeds = [1]" in kept[1].read_text() or "seeds = [1]" in kept[0].read_text()
    runs = genlab.load(out)
    assert sorted(runs["seed"]) == [0, 1]
