"""The CLI imports a command's modules with the cycle collector paused, then freezes them."""

from __future__ import annotations

import gc
import importlib.util
import subprocess
import sys

import pytest

from genlab.cli import COMMANDS, preload


def test_every_command_preloads_importable_genlab_modules():
    for name, (handler, modules) in COMMANDS.items():
        assert callable(handler) and modules, name
        assert all(m.startswith("genlab.") and importlib.util.find_spec(m) for m in modules), name


def test_preload_freezes_what_it_imports_and_leaves_the_collector_on():
    code = ("import gc, sys; from genlab.cli import preload; assert 'torch' not in sys.modules;"
            "preload(['genlab.training.rules']); assert 'torch' in sys.modules;"
            "print(gc.isenabled(), gc.get_freeze_count() > 100000)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["True", "True"]


def test_preload_turns_the_collector_back_on_when_an_import_fails():
    assert gc.isenabled()
    with pytest.raises(ModuleNotFoundError):
        preload(["genlab.no_such_module"])
    assert gc.isenabled()
