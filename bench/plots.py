"""PNG plots for bench/ scripts (matplotlib, Agg backend: no display needed).

Each function writes one PNG, creating its folder, and returns the path written.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
from matplotlib.ticker import StrMethodFormatter  # noqa: E402

BENCH_PLOTS = Path(__file__).resolve().parent.parent / "var" / "bench"


def _save(figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_cdf(series: dict[str, list[float]], path, title: str, xlabel: str) -> Path:
    """One empirical CDF line per series (label -> samples), x on a log scale.

    Empty series are skipped; the y axis is the fraction of samples <= x.
    """
    figure, axes = plt.subplots(figsize=(7, 4.5))
    positive = True
    for label, samples in series.items():
        if not samples:
            continue
        ordered = sorted(samples)
        positive = positive and ordered[0] > 0
        fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
        axes.step(
            ordered, fractions, where="post", label=f"{label} (n={len(ordered):,})"
        )
    if positive:
        axes.set_xscale("log")
    for p in (0.5, 0.99):
        axes.axhline(p, color="grey", linewidth=0.6, linestyle=":")
    axes.set_ylim(0, 1.01)
    axes.set_xlabel(xlabel)
    axes.set_ylabel("fraction of samples <= x")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="lower right", fontsize="small")
    return _save(figure, path)


def plot_grouped_bars(
    groups: dict[str, dict[str, float]],
    path,
    title: str,
    xlabel: str,
    ylabel: str,
    reference: float | None = None,
) -> Path:
    """Bars grouped on x (group label -> {bar label -> value}), one colour per bar label.

    ``reference`` draws a dashed horizontal line (the naive or 1x1 figure).
    Missing values leave a gap; each bar is labelled with its value.
    """
    bar_labels = list(dict.fromkeys(b for bars in groups.values() for b in bars))
    width = 0.8 / max(len(bar_labels), 1)
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for i, bar_label in enumerate(bar_labels):
        xs, heights = [], []
        for g, bars in enumerate(groups.values()):
            if bar_label in bars:
                xs.append(g - 0.4 + width * (i + 0.5))
                heights.append(bars[bar_label])
        drawn = axes.bar(xs, heights, width, label=bar_label)
        axes.bar_label(drawn, fmt="{:,.0f}", fontsize="x-small", padding=2)
    if reference is not None:
        axes.axhline(
            reference, color="grey", linestyle="--", linewidth=0.8, label="reference"
        )
    axes.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    axes.set_xticks(range(len(groups)), list(groups))
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(True, axis="y", alpha=0.3)
    axes.legend(fontsize="small")
    return _save(figure, path)
