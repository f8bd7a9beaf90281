"""Theory side of genlab: expressivity (Theorem 1), kernels, NTK / NNGP and double descent.

Pure math on torch tensors, device-agnostic and chunked so that memory stays bounded.
"""

from genlab.theory.interpolation import (
    DeepTheorem1Net,
    Theorem1DeepResult,
    Theorem1Net,
    Theorem1Result,
    interleaved_biases,
    interleaved_condition,
    interleaved_matrix,
    random_direction,
    solve_interleaved,
    theorem1,
    theorem1_deep,
)
from genlab.theory.kernels import (
    CGResult,
    InterpolationResult,
    SGDPath,
    conjugate_gradient,
    gaussian_kernel,
    implicit_kernel_matvec,
    kernel_matrix,
    kernel_matvec,
    linear_kernel,
    min_norm_interpolate,
    min_norm_lstsq,
    predict,
    random_conv_features,
    sgd_least_squares,
)
from genlab.theory.ntk import NTKMLP, NTKLinear, empirical_ntk, relu_nngp, relu_ntk
from genlab.theory.random_feature_models import (
    RandomFeaturesPoint,
    random_features,
    random_features_curve,
)

__all__ = [
    "CGResult",
    "DeepTheorem1Net",
    "InterpolationResult",
    "NTKLinear",
    "NTKMLP",
    "RandomFeaturesPoint",
    "SGDPath",
    "Theorem1DeepResult",
    "Theorem1Net",
    "Theorem1Result",
    "conjugate_gradient",
    "empirical_ntk",
    "gaussian_kernel",
    "implicit_kernel_matvec",
    "interleaved_biases",
    "interleaved_condition",
    "interleaved_matrix",
    "kernel_matrix",
    "kernel_matvec",
    "linear_kernel",
    "min_norm_interpolate",
    "min_norm_lstsq",
    "predict",
    "random_conv_features",
    "random_direction",
    "random_features",
    "random_features_curve",
    "relu_nngp",
    "relu_ntk",
    "sgd_least_squares",
    "solve_interleaved",
    "theorem1",
    "theorem1_deep",
]
