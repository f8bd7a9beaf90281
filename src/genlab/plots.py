"""Matplotlib helpers: every report figure is written as PNG and SVG with one call."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # reports are written headless
import matplotlib.pyplot as plt  # noqa: E402

from .experiments.base import Figure  # noqa: E402


def new_figure(n_panels: int, width: float = 4.5, height: float = 3.4):
    """A row of ``n_panels`` axes; returns (figure, list of axes)."""
    n = max(n_panels, 1)
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False)
    return fig, list(axes[0])


def save_figure(fig, outdir: Path, name: str, caption: str) -> Figure:
    """Save ``fig`` as ``name.png`` and ``name.svg`` in ``outdir`` and close it."""
    outdir.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    png, svg = outdir / f"{name}.png", outdir / f"{name}.svg"
    fig.savefig(png, dpi=110)
    fig.savefig(svg)
    plt.close(fig)
    return Figure(str(png), str(svg), caption)
