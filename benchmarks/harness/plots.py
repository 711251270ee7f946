"""Bar charts for the figures (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["bars"]


def bars(
    path: Path,
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    title: str,
    ylabel: str,
    log: bool = False,
    reference: tuple[float, str] | None = None,
) -> None:
    """Grouped bars: one group per label, one bar per series; missing values are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(labels) + 2), 4.2), dpi=110)
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(labels))]
        heights = [v if v is not None else 0.0 for v in values]
        drawn = ax.bar(xs, heights, width, label=name)
        for rect, value in zip(drawn, values, strict=True):
            if value is None:
                text = "n/a"
            else:
                text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
            ax.annotate(
                text,
                (rect.get_x() + rect.get_width() / 2, max(rect.get_height(), 1e-9)),
                ha="center",
                va="bottom",
                fontsize=7,
            )
    if reference is not None:
        ax.axhline(reference[0], color="grey", linestyle="--", linewidth=1, label=reference[1])
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
