"""Matplotlib helpers: every report figure is written as PNG and SVG with one call.

matplotlib loads on the first figure (0.7 s of import), not with the experiments, so that a
command that trains and writes no report never pays for it.
"""

from __future__ import annotations

import io
import warnings
from functools import cache
from pathlib import Path
from typing import Any

from genlab.execution.files import atomic_write
from genlab.experiments.base import Figure


@cache
def pyplot() -> Any:
    """``matplotlib.pyplot`` on the headless Agg backend, imported once."""
    import matplotlib

    matplotlib.use("Agg")  # reports are written headless
    # a panel with no run yet (a live folder, a failed run) has an empty legend: not worth a
    # warning
    warnings.filterwarnings("ignore", message="No artists with labels found",
                            category=UserWarning)
    import matplotlib.pyplot as plt

    return plt


def new_figure(n_panels: int, width: float = 4.5, height: float = 3.4):
    """A row of ``n_panels`` axes; returns (figure, list of axes)."""
    n = max(n_panels, 1)
    fig, axes = pyplot().subplots(1, n, figsize=(width * n, height), squeeze=False)
    return fig, list(axes[0])


def save_figure(fig, outdir: Path, name: str, caption: str) -> Figure:
    """Save ``fig`` as ``name.png`` and ``name.svg`` in ``outdir`` and close it."""
    fig.tight_layout()
    png, svg = outdir / f"{name}.png", outdir / f"{name}.svg"
    for path, kw in ((png, {"format": "png", "dpi": 110}), (svg, {"format": "svg"})):
        buf = io.BytesIO()  # rendered in memory, then written atomically (no symlink followed)
        fig.savefig(buf, **kw)
        atomic_write(path, buf.getvalue())
    pyplot().close(fig)
    return Figure(str(png), str(svg), caption)
