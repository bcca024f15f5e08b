"""Pictures for notebooks and the demo (matplotlib, imported lazily).

Every function draws on a given ``ax`` (or a new figure) and returns the
axes, so notebooks stay free of plotting logic.
"""

from __future__ import annotations

import numpy as np

__all__ = ["plot_reconstruction", "plot_scores", "plot_zscore", "shade_intervals"]


def _axes(ax, figsize=(12, 3)):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize)[1]


def shade_intervals(ax, starts, ends, color="orange", alpha=0.25, label="labelled anomaly"):
    """Shade ``[start, end]`` intervals (e.g. labelled anomalies) on ``ax``."""
    for i, (a, b) in enumerate(zip(starts, ends, strict=True)):
        ax.axvspan(a, b, color=color, alpha=alpha, label=label if i == 0 else None)
    return ax


def plot_reconstruction(t, x, recon, ax=None, title="original vs K-Means reconstruction"):
    """The series, its stitched reconstruction and the error between them."""
    ax = _axes(ax)
    ax.plot(t, x, lw=0.8, color="k", label="original")
    ax.plot(t, recon, lw=0.8, color="tab:blue", label="reconstruction")
    ax.plot(t, np.asarray(recon) - np.asarray(x), lw=0.6, color="tab:red", label="error")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    return ax


def plot_scores(t, scores, threshold=None, ax=None, label="max |error| per segment",
                title="segment scores (higher = more anomalous)"):
    """Scores over time, the threshold, and the flagged points."""
    ax = _axes(ax)
    t, scores = np.asarray(t), np.asarray(scores)
    ax.plot(t, scores, lw=0.8, label=label)
    if threshold is not None:
        ax.axhline(threshold, color="r", ls="--", lw=1, label=f"threshold {threshold:.3g}")
        hit = scores > threshold
        ax.plot(t[hit], scores[hit], "r.", ms=4, label="flagged")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    return ax


def plot_zscore(t, x, z, alert, threshold=3.0, axes=None,
                title="rolling z-score with the streak guard"):
    """A sensor series above, its z-score and alert samples below."""
    if axes is None:
        import matplotlib.pyplot as plt

        axes = plt.subplots(2, 1, figsize=(12, 5), sharex=True)[1]
    ax1, ax2 = axes
    t, z, alert = np.asarray(t), np.asarray(z), np.asarray(alert, bool)
    ax1.plot(t, x, lw=0.8, color="k")
    ax1.set_title(title)
    ax2.plot(t, z, lw=0.8, label="z")
    for s in (threshold, -threshold):
        ax2.axhline(s, color="r", ls="--", lw=0.8)
    ax2.plot(t[alert], z[alert], "r.", ms=5, label="alert")
    ax2.legend(loc="upper left", fontsize=8)
    return axes
