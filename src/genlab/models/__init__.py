"""Models: a registry of factories returning an ``nn.Module``, the
paper's networks, the per-family training recipes, and custom models' fingerprints.

This ``__init__`` is the one place that registers genlab's own models: a new architecture is a
module here plus one ``register_model`` line below (or a call from your own code).
"""

from genlab.models.cnn import alexnet_small, cnn_small, inception_small, inception_small_nobn
from genlab.models.inception_v3 import inception_v3
from genlab.models.mlp import MLP, mlp_family
from genlab.models.registry import (
    MODELS,
    ModelFactory,
    build_model,
    check_model,
    count_parameters,
    input_size,
    instance_factory,
    is_custom_model,
    list_models,
    model_kwargs,
    register_family,
    register_model,
    resolve_model,
)
from genlab.models.timm_models import timm_family

register_family("mlp", mlp_family, "MLP with the given hidden widths, e.g. mlp:512x512")
register_family("timm", timm_family, "any timm model, untrained, e.g. timm:resnet18 "
                "(pip install timm)")
register_model("mlp1x512", mlp_family("512"), description="MLP 1x512 (paper: 1,209,866 params)")
register_model("mlp3x512", mlp_family("512x512x512"),
               description="MLP 3x512 (paper: 1,735,178 params)")
register_model("alexnet-small", alexnet_small,
               description="small AlexNet, 2 conv+LRN blocks, FC 384-192 "
                           "(paper: 1,387,786 params)", recipe_family="alexnet")
register_model("cnn-small", cnn_small,
               description="small CNN conv32-conv64-pool-fc128 (Perez-Ortiz et al. 2021's MNIST "
                           "CNN; PAC-Bayes certificates)", recipe_family="alexnet")
register_model("inception-small", inception_small,
               description="small Inception of the paper's Figure 3 (paper: 1,649,402 params)",
               recipe_family="inception")
register_model("inception-small-nobn", inception_small_nobn,
               description="small Inception without BatchNorm (paper: 1,649,402 params)",
               recipe_family="inception-nobn")
register_model("inception-v3", inception_v3,
               description="torchvision Inception V3 (Table 2; input >= 75x75; --dropout)",
               recipe_family="inception", input_size=299)

__all__ = [
    "MLP", "MODELS", "ModelFactory", "build_model", "check_model", "count_parameters",
    "input_size", "instance_factory", "is_custom_model", "list_models", "model_kwargs",
    "register_family", "register_model", "resolve_model",
]
