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
