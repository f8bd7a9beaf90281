import sys

import pytest
import torch
from torch import nn

import genlab
from genlab import GenlabError, build_model, count_parameters


@pytest.mark.parametrize("name,count", [("mlp1x512", 1_209_866), ("mlp3x512", 1_735_178)])
def test_paper_mlp_parameter_counts(name, count):
    # paper-facts 1.2: 28x28x3 input, 10 classes, biases everywhere
    assert count_parameters(build_model(name, (3, 28, 28), 10)) == count


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 1, 40), (1, 8, 8)])
def test_mlps_work_on_any_input_shape(shape):
    m = build_model("mlp:32x16", shape, 7)
    assert m(torch.zeros(5, *shape)).shape == (5, 7)


def test_custom_factory_by_import_path(tmp_path, monkeypatch):
    (tmp_path / "mynets.py").write_text(
        "from torch import nn\n"
        "def tiny(input_shape, num_classes):\n"
        "    import math\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    m = build_model("mynets:tiny", (1, 8, 8), 10)
    assert count_parameters(m) == 64 * 10 + 10
    sys.modules.pop("mynets", None)


def test_register_model_from_python():
    @genlab.register_model("test-linear")
    def linear(input_shape, num_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[-1], num_classes))

    assert "test-linear" in genlab.list_models()
    assert build_model("test-linear", (1, 1, 4), 3)(torch.zeros(2, 1, 1, 4)).shape == (2, 3)


@pytest.mark.parametrize("name", ["nope", "mlp:", "mlp:12xab", "mlp:0", "no_such_mod.x:f",
                                  "genlab.models.registry:no_such_factory"])
def test_bad_model_names_raise_one_line_errors(name):
    with pytest.raises(GenlabError) as e:
        build_model(name, (1, 8, 8), 10)
    assert "\n" not in str(e.value)
