"""Data: named data sets, randomization conditions, preprocessing and augmentation.

The registries (:mod:`genlab.data.registry`, :mod:`genlab.data.conditions`,
:mod:`genlab.data.preprocess`) hold names; the modules in :mod:`genlab.data.sources` hold the
loaders. This ``__init__`` is the one place that registers genlab's own entries: a new data
set is a loader in ``sources/`` plus one ``register_dataset`` line here (or a call from your
own code), a new condition one ``register_condition`` call.
"""

from genlab.data import conditions as _conditions
from genlab.data import preprocess as _preprocess
from genlab.data.augment import parse_augment
from genlab.data.conditions import (
    CONDITIONS,
    ConditionInfo,
    apply_condition,
    canonical_condition,
    check_condition,
    corruption_level,
    list_conditions,
    register_condition,
)
from genlab.data.preprocess import PREPROCESSING
from genlab.data.randomized import RandomizedDataset
from genlab.data.registry import (
    DATASETS,
    Dataset,
    clear_cache,
    list_datasets,
    load_dataset,
    may_stream,
    register_dataset,
    register_family,
    register_import_path,
    subset,
)
from genlab.data.sources import hyperspheres, imagefolder
from genlab.data.sources.cifar import load_cifar10, load_cifar100
from genlab.data.sources.idx import (
    load_fashion_mnist,
    load_mnist,
    read_ahead_fashion_mnist,
    read_ahead_mnist,
)
from genlab.data.sources.packaged import load_digits, load_mnist1d
from genlab.data.sources.svhn import load_svhn
from genlab.data.sources.synthetic import load_gaussian
from genlab.registry import IMPORT_PATH
from genlab.spec import NAME_CHECKS, RunSpec

# --- data sets --------------------------------------------------------------------------------
register_dataset("digits", load_digits,
                 "scikit-learn 8x8 digits, 1497 train / 300 test (offline)")
register_dataset("mnist1d", load_mnist1d, "MNIST-1D, 40-sample 1-D signals, 4000 / 1000 (offline)")
register_dataset("gaussian", load_gaussian,
                 "N(0, 1) noise images 1x28x28 with random labels, 5000 / 1000 (offline)")
register_dataset("fashion-mnist", load_fashion_mnist, "Fashion-MNIST 28x28 grey, 60000 / 10000",
                 read_ahead=read_ahead_fashion_mnist)
register_dataset("mnist", load_mnist, "MNIST 28x28 grey digits, 60000 / 10000",
                 read_ahead=read_ahead_mnist)
register_dataset("cifar10", load_cifar10, "CIFAR-10 32x32 colour, 50000 / 10000")
register_dataset("cifar100", load_cifar100, "CIFAR-100 32x32 colour, fine labels, 50000 / 10000")
register_dataset("svhn", load_svhn, "SVHN 32x32 colour digits, 73257 / 26032")
for _d in hyperspheres.REGISTERED_D:
    hyperspheres.register_hyperspheres(_d)
register_family(hyperspheres.FAMILY, hyperspheres.register_named)
for _b in hyperspheres.BINARY_BASES:
    register_dataset(f"{_b}-binary", hyperspheres.binary_loader(_b),
                     f"{_b} with binary labels y >= K/2 (Dziugaite & Roy 2017 style)")
register_family(imagefolder.FAMILY, imagefolder.register_named)
DATASETS.register_family(IMPORT_PATH, register_import_path,
                         "your torch Dataset of (image, label), or a factory returning one",
                         label="package.module:attr", raw=True)

# --- randomization conditions (Zhang et al. 2017, section 2) -----------------------------------
register_condition("true", _conditions.true, changes="labels", level=0.0,
                   description="the data set as it is")
register_condition("corrupt", _conditions.corrupt, changes="labels", argument="probability",
                   expected=_conditions.corrupt_expected,
                   description="corrupt:p - each training label replaced by a uniform class "
                               "w.p. p")
register_condition("random-labels", _conditions.random_labels, changes="labels", level=1.0,
                   expected=_conditions.random_expected,
                   description="every training label i.i.d. uniform over the classes")
register_condition("shuffled-pixels", _conditions.shuffled_pixels, changes="pixels",
                   description="one random permutation of pixel positions, train and test")
register_condition("random-pixels", _conditions.random_pixels, changes="pixels",
                   description="an independent random permutation of pixel positions per image")
register_condition("gaussian", _conditions.gaussian, changes="pixels",
                   description="images replaced by Gaussian noise with the data set's mean and "
                               "std")
# --- label noise of the noisy-label literature -------------------------------------------------
register_condition("pairflip", _conditions.pairflip, changes="labels", argument="probability",
                   expected=_conditions.pairflip_expected,
                   description="pairflip:p - label k becomes (k+1) mod K w.p. p (asymmetric)")
register_condition("transition", _conditions.transition, changes="labels", argument="file",
                   expected=_conditions.transition_expected,
                   description="transition:FILE - label i becomes j w.p. T[i, j], T a K x K "
                               "row-stochastic matrix in .npy or .csv")
register_condition("instance", _conditions.instance, changes="labels", argument="probability",
                   expected=_conditions.instance_expected,
                   description="instance:p - instance-dependent noise at rate p (Xia et al. "
                               "2020)")

# --- preprocessing ----------------------------------------------------------------------------
PREPROCESSING.register("normalize", _preprocess.normalize,
                       description="per-channel normalization (training-set mean and std)")
PREPROCESSING.register("paper", _preprocess.paper, shape=_preprocess.paper_shape,
                       description="paper: centre crop 32->28 (32x32 inputs), per-image "
                                   "whitening")
PREPROCESSING.register("none", _preprocess.identity, description="none (values as loaded)")


# --- the names a RunSpec refers to that live here -----------------------------------------------
def _check_spec_names(spec: RunSpec) -> None:
    _preprocess.check_preprocess(spec.preprocess)
    parse_augment(spec.augment)


NAME_CHECKS.append(_check_spec_names)

__all__ = [
    "CONDITIONS", "DATASETS", "PREPROCESSING", "ConditionInfo", "Dataset", "RandomizedDataset",
    "apply_condition", "canonical_condition", "check_condition", "clear_cache",
    "corruption_level", "list_conditions", "list_datasets", "load_dataset", "may_stream",
    "register_condition", "register_dataset", "register_family", "subset",
]
