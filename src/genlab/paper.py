"""Published numbers and claims, printed beside genlab's measurements in reports.

Sources: Zhang et al. 2017 (ICLR), "Understanding deep learning requires rethinking
generalization", and the notes in the project's reference facts.
"""

#: Figure 1: steps to fit random labels relative to true labels (small Inception, CIFAR10).
RANDOM_LABEL_SLOWDOWN = (1.5, 3.5)

#: Figure 1a, one public reproduction (small Inception, CIFAR10, batch 128): thousands of steps
#: until the training loss is <= 0.1. Indicative only; the paper gives the curves, not numbers.
FIGURE1A_REPRODUCTION_KSTEPS = {
    "true": 4.0, "shuffled-pixels": 5.6, "gaussian": 8.8, "random-pixels": 11.9,
    "random-labels": 16.6,
}

#: The five conditions of Figure 1a, in the paper's legend order.
FIGURE1A_CONDITIONS = ("true", "random-labels", "shuffled-pixels", "random-pixels", "gaussian")

#: Figure 1b/c corruption levels.
FIGURE1_CORRUPTIONS = (0.2, 0.4, 0.6, 0.8)

#: Table 2 (Inception V3 on ImageNet), top-1 / top-5 accuracy in %; None where the paper gives
#: no number. Keys: (condition, augmentation, dropout, weight decay). "best" is the best test
#: accuracy during training (the paper's parentheses). 59.80, 72.95 and 80.38 are in the text;
#: the other rows come from secondary notes (reference facts, section 1.7).
TABLE2 = {
    ("true", True, True, True): {"test_top1": 77.84},
    ("true", True, False, False): {"test_top1": 72.95},
    ("true", False, False, True): {"test_top1": 67.18, "best_test_top1": 72.57},
    ("true", False, False, False): {"test_top1": 59.80, "best_test_top1": 63.16,
                                    "test_top5": 80.38},
    ("random-labels", False, False, False): {"train_top1": 95.20, "test_top1": 0.1},
    ("random-labels", True, True, True): {"train_top1": 90.0, "test_top1": 0.1},
}

#: Table 1 (CIFAR10): (label, model, random crop, weight decay, condition, train %, test %).
#: genlab's models: small Inception, small Inception without BatchNorm, small AlexNet, MLPs.
TABLE1 = (
    ("Inception", "inception-small", True, True, "true", 100.0, 89.05),
    ("Inception", "inception-small", True, False, "true", 100.0, 89.31),
    ("Inception", "inception-small", False, True, "true", 100.0, 86.03),
    ("Inception", "inception-small", False, False, "true", 100.0, 85.75),
    ("Inception", "inception-small", False, False, "random-labels", 100.0, 9.78),
    ("Inception w/o BatchNorm", "inception-small-nobn", False, True, "true", 100.0, 83.00),
    ("Inception w/o BatchNorm", "inception-small-nobn", False, False, "true", 100.0, 82.00),
    ("Inception w/o BatchNorm", "inception-small-nobn", False, False, "random-labels",
     100.0, 10.12),
    ("AlexNet", "alexnet-small", True, True, "true", 99.90, 81.22),
    ("AlexNet", "alexnet-small", True, False, "true", 99.82, 79.66),
    ("AlexNet", "alexnet-small", False, True, "true", 100.0, 77.36),
    ("AlexNet", "alexnet-small", False, False, "true", 100.0, 76.07),
    ("AlexNet", "alexnet-small", False, False, "random-labels", 99.82, 9.86),
    ("MLP 3x512", "mlp3x512", False, True, "true", 100.0, 53.35),
    ("MLP 3x512", "mlp3x512", False, False, "true", 100.0, 52.39),
    ("MLP 3x512", "mlp3x512", False, False, "random-labels", 100.0, 10.48),
    ("MLP 1x512", "mlp1x512", False, True, "true", 99.80, 50.39),
    ("MLP 1x512", "mlp1x512", False, False, "true", 100.0, 50.51),
    ("MLP 1x512", "mlp1x512", False, False, "random-labels", 99.34, 10.61),
)

#: Section 5: test error of the min-norm Gaussian-kernel interpolant (gamma 0.02, pixels / 255),
#: solving K alpha = Y (one-hot). MNIST: 1.2% on pixels (sample code: 1.22%), 0.6% after a Gabor
#: wavelet transform. CIFAR10: 46% on pixels, 17% on a random conv net's features (32,000 random
#: filters), 15% with l2 regularization added.
KERNEL_MNIST_ERROR = 0.012
KERNEL_MNIST_WAVELET_ERROR = 0.006
KERNEL_CIFAR10_PIXELS_ERROR = 0.46
KERNEL_CIFAR10_RANDOM_CONV_ERROR = 0.17
KERNEL_CIFAR10_RANDOM_CONV_L2_ERROR = 0.15
KERNEL_CIFAR10_RANDOM_CONV_FILTERS = 32000
#: Section 5: RKHS norm of the MNIST min-norm solution, about 220 on pixels and 390 with wavelets
#: (the error halves while the norm grows).
KERNEL_MNIST_NORM = 220.0
KERNEL_MNIST_WAVELET_NORM = 390.0

# Dziugaite & Roy 2017: binary MNIST, one hidden layer of 600 units
DR_BINARY_MNIST_BOUND = 0.16
DR_BINARY_MNIST_TEST_ERROR = 0.02
# Lotfi et al. 2022: compression error bounds (data-independent prior)
LOTFI_MNIST_BOUND = 0.116
LOTFI_FASHION_MNIST_BOUND = 0.328
LOTFI_CIFAR10_BOUND = 0.582
LOTFI_CIFAR100_BOUND = 0.946
