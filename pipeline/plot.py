"""Pictures, and ``python -m pipeline.plot``: one PNG of a series and its detectors from InfluxDB.

Every drawing function returns a :class:`matplotlib.figure.Figure` (or draws
on the ``ax`` it is given and returns it) and never touches pyplot's global
state, so notebooks show the figure a call returns and hold no plotting
logic, and the command needs no display.

Command line::

    python -m pipeline.plot --db ekg --measurement ekg --tag source=synthetic \\
        --model models/ekg.npz --start 2026-01-01T00:03:00Z --end 2026-01-01T00:04:00Z \\
        --out ekg.png

draws the signal and the model's reconstruction (if it has a shape
detector), then one panel per enabled detector: its score against its
threshold, with every alarm episode (a maximal run of alarm points) shaded.
Scores come from the error database the stream wrote, or, where it holds
none for this model, are computed from the model; each panel's title says
which (:func:`pipeline.window.read_window`).  Only the window (plus a
minute of lead-in when computing) is read.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

__all__ = ["plot_reconstruction", "plot_scores", "plot_zscore", "shade_intervals", "new_figure",
           "plot_window", "plot_segmenting", "plot_centroids", "plot_thresholds", "plot_tail",
           "plot_budgets", "plot_series", "plot_gallery", "plot_fleet", "main"]

ALARM = "tab:red"
COLORS = ("tab:red", "tab:purple", "tab:orange", "tab:brown", "tab:pink")


def new_figure(nrows=1, ncols=1, figsize=(12, 3), **kw):
    """A figure and its axes array, without pyplot (``squeeze`` as in ``plt.subplots``)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(nrows, ncols, **kw)


def _axes(ax, figsize=(12, 3)):
    return ax if ax is not None else new_figure(figsize=figsize)[1]


def shade_intervals(ax, starts, ends, color="orange", alpha=0.25, label="labelled anomaly",
                    gid=None):
    """Shade ``[start, end]`` intervals (e.g. labelled anomalies) on ``ax``."""
    for i, (a, b) in enumerate(zip(starts, ends, strict=True)):
        ax.axvspan(a, b, color=color, alpha=alpha, label=label if i == 0 else None, gid=gid)
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
                title="segment scores (higher = more anomalous)", flagged=None):
    """Scores over time, the threshold, and the flagged points: ``flagged`` (the alarms as
    written, e.g. the stream's ``anomaly``), else the scores above the threshold."""
    ax = _axes(ax)
    t, scores = np.asarray(t), np.asarray(scores)
    ax.plot(t, scores, lw=0.8, label=label)
    if threshold is not None:
        ax.axhline(threshold, color="r", ls="--", lw=1, label=f"threshold {threshold:.3g}")
    if flagged is not None or threshold is not None:
        hit = np.asarray(flagged, bool) if flagged is not None else scores > threshold
        ax.plot(t[hit], scores[hit], "r.", ms=4, label="flagged")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    return ax


def plot_zscore(t, x, z, alert, threshold=3.0, axes=None, title="rolling z-score with the streak guard",
                bound=None, z_other=None, other_label="tutorial z", xlim=None, xlabel=""):
    """A sensor series above; its z-score, the threshold and the alert samples below.

    ``z_other`` adds a second z (e.g. the tutorial's), ``bound`` a line at
    the largest |z| that one can ever reach, ``xlim`` zooms both panels.
    """
    if axes is None:
        axes = new_figure(2, 1, figsize=(12, 4.6), sharex=True)[1]
    ax1, ax2 = axes
    t, z, alert = np.asarray(t), np.asarray(z), np.asarray(alert, bool)
    ax1.plot(t, x, lw=0.8, color="k")
    ax1.set_title(title)
    if z_other is not None:
        ax2.plot(t, z_other, lw=0.8, color="tab:gray", label=other_label)
    ax2.plot(t, z, lw=0.8, label="z")
    for s in (threshold, -threshold):
        ax2.axhline(s, color="r", ls="--", lw=0.8)
    if bound is not None:
        ax2.axhline(bound, color="tab:gray", ls=":", lw=1, label=f"|z| bound {bound:.3g}")
    ax2.plot(t[alert], z[alert], "r.", ms=5, label="alert")
    ax2.legend(loc="upper left", fontsize=8)
    ax2.set_xlabel(xlabel)
    if xlim is not None:
        ax2.set_xlim(*xlim)
        inside = (t >= xlim[0]) & (t <= xlim[1])
        for ax, y in ((ax1, np.asarray(x)), (ax2, z)):
            y = y[inside & np.isfinite(y)]
            if len(y):
                pad = 0.05 * (np.ptp(y) or 1.0)
                ax.set_ylim(y.min() - pad, y.max() + pad)
    return axes[0].figure


def plot_series(t, x, title="", ylabel="", xlabel="seconds", ax=None, labels=None, figsize=(12, 2.6)):
    """A plain line plot; ``labels`` = ``(starts, ends)`` shaded.  Returns the figure."""
    ax = _axes(ax, figsize)
    ax.plot(t, x, lw=0.7, color="k")
    if labels is not None:
        shade_intervals(ax, *labels)
        ax.legend(loc="upper right", fontsize=8)
    ax.set(title=title, ylabel=ylabel, xlabel=xlabel)
    return ax.figure


# --------------------------------------------------------------------------
# the K-Means tutorial, step by step
# --------------------------------------------------------------------------
def plot_segmenting(x, window, slide: int, n: int = 6, first: int = 0):
    """``n`` raw segments, the window (and its overlap-add at ``slide``), the windowed segments."""
    w = np.asarray(window)
    L = len(w)
    fig, (a, b, c) = new_figure(1, 3, figsize=(12, 4.2))
    off = 0.0
    span = float(np.ptp(x[first:first + n * slide + L])) or 1.0
    for i in range(n):
        seg = np.asarray(x[first + i * slide:first + i * slide + L])
        a.plot(np.arange(L), seg + off, lw=1)
        c.plot(np.arange(L), seg * w + off, lw=1)
        off -= 1.05 * span
    a.set_title(f"{n} segments of {L} samples, every {slide}\n(stacked)")
    c.set_title("the same segments times the window")
    b.plot(np.arange(L), w, lw=1.5, label="sin² window")
    if slide and L % slide == 0:
        total = sum(np.roll(w, k * slide) for k in range(L // slide))
        b.plot(np.arange(L), total, lw=1, ls="--", label=f"sum of the windows every {slide}")
    b.set_title("the sin² window")
    b.legend(loc="lower center", fontsize=8)
    for ax in (a, c):
        ax.set_yticks([])
    return fig


def plot_centroids(centroids, n: int = 40, ncols: int = 10):
    """A grid of the first ``n`` centroids (each a windowed segment shape)."""
    cen = np.asarray(centroids)[:n]
    nrows = int(np.ceil(len(cen) / ncols))
    fig, axes = new_figure(nrows, ncols, figsize=(12, 1.1 * nrows), sharey=True, squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        if i < len(cen):
            ax.plot(cen[i], lw=1)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{len(cen)} of {len(np.asarray(centroids))} centroids (shared y axis)")
    return fig


def plot_thresholds(scores, thresholds: dict, title="held-out segment scores", bins=60):
    """A histogram of scores with named thresholds; ones far off the scale are named at the edge."""
    s = np.asarray(scores, float)
    s = s[np.isfinite(s)]
    fig, ax = new_figure(figsize=(12, 3))
    ax.hist(s, bins=bins, color="tab:blue", alpha=0.7, log=True)
    right = 1.08 * max(float(s.max()), *(v for v in thresholds.values() if v < 5 * s.max()))
    for i, (name, v) in enumerate(thresholds.items()):
        color = COLORS[i % len(COLORS)]
        if v <= right:
            ax.axvline(v, color=color, ls="--", lw=1.2, label=f"{name}: {v:.3g}")
        else:
            ax.annotate(f"{name}: {v:.3g} (x{v / s.max():.0f} the largest score) ->",
                        xy=(1, 0.9 - 0.1 * i), xycoords="axes fraction", ha="right", color=color)
    ax.set_xlim(0, right)
    ax.set(title=title, xlabel="score", ylabel="segments (log)")
    ax.legend(loc="upper center", fontsize=8)
    return fig


def plot_gallery(items, buckets=2000):
    """One row per ``(kind, (start_ns, end_ns), Window)``: the signal, then each detector's score.

    The labelled fault is shaded gold, alarm episodes in the detector's colour
    (``gid="alarm"``); the row's title says which detectors raised an alarm.
    """
    ncol = 1 + max(len(w.traces) for _, _, w in items)
    fig, axes = new_figure(len(items), ncol, figsize=(12, 1.9 * len(items)), squeeze=False,
                           width_ratios=[2] + [1] * (ncol - 1))
    for row, (kind, (lo, hi), win) in zip(axes, items, strict=True):
        sec = win.seconds()
        row[0].plot(*_envelope(sec, win.values, buckets), lw=0.7, color="k")
        if win.recon is not None:
            row[0].plot(sec, win.recon, lw=0.7, color="tab:blue", alpha=0.8)
        seen = []
        for i, tr in enumerate(win.traces):
            a = row[1 + i]
            ts = win.seconds(tr.times)
            a.plot(ts, np.abs(tr.score) if tr.signed else tr.score, lw=0.8, color="tab:blue")
            a.plot(ts, tr.threshold, ls="--", lw=1, color=ALARM)
            step = float(np.median(np.diff(ts))) if len(ts) > 1 else 0.0
            for s0, e0 in zip(*(win.seconds(e) for e in tr.episodes), strict=True):
                a.axvspan(s0, e0 + step, color=COLORS[i % len(COLORS)], alpha=0.25, gid="alarm")
            a.set_title(f"{tr.label}: {tr.score_field}", fontsize=8)
            if tr.n_episodes:
                seen.append(tr.label)
        for a in row[:1 + len(win.traces)]:
            a.axvspan(*win.seconds([lo, hi]) + np.array([0, win.period_ns / 1e9]), color="gold",
                      alpha=0.35, gid="label")
            a.tick_params(labelsize=7)
        for a in row[1 + len(win.traces):]:
            a.set_axis_off()
        row[0].set_title(f"{kind}: alarm from {', '.join(seen) or 'no detector'}", loc="left",
                         fontsize=9)
    fig.suptitle("each fault (gold) and what every detector made of it (score, threshold "
                 "dashed, alarm episodes shaded)", fontsize=10)
    return fig


def plot_fleet(hours, values, sensors, title="the fleet", ylabel="degC", z=None, threshold=None):
    """Every sensor's series over hours (or, with ``z``, its |fleet z| on a log scale)."""
    fig, ax = new_figure(figsize=(12, 3.2))
    y = np.asarray(values if z is None else np.abs(z))
    for j, name in enumerate(sensors):
        ax.plot(hours, y[:, j], lw=0.6, label=name)
    if threshold is not None:
        ax.axhline(threshold, color=ALARM, ls="--", lw=0.8, label=f"{threshold:g}")
    if z is not None:
        ax.set_yscale("log")
    ax.set(title=title, xlabel="hours", ylabel=ylabel if z is None else "|fleet z| (log)")
    ax.legend(loc="upper left", fontsize=8, ncol=len(sensors))
    return fig


# --------------------------------------------------------------------------
# calibration
# --------------------------------------------------------------------------
def plot_tail(tail, marks=None):
    """Alarm events per hour above each threshold: counted on held-out data, and the GPD fit.

    ``marks`` adds named thresholds (``{name: value}``) as vertical lines.
    """
    fig, ax = new_figure(figsize=(12, 3.4))
    ax.step(tail.grid, tail.counted, where="post", color="k", label="counted on held-out data")
    if np.isfinite(tail.fitted).any():
        ax.plot(tail.grid, tail.fitted, color="tab:blue", label="GPD fit of the peaks")
    ax.axhline(tail.budget_per_hour, color="tab:green", ls=":",
               label=f"budget {tail.budget_per_hour * 24:.3g} per day")
    ax.axvline(tail.threshold, color=ALARM, ls="--", label=f"threshold {tail.threshold:.3g}")
    for i, (name, v) in enumerate((marks or {}).items()):
        ax.axvline(v, color=COLORS[(i + 1) % len(COLORS)], ls="-.", label=f"{name}: {v:.3g}")
    ax.plot(tail.peaks, np.full(len(tail.peaks), tail.counted.max() * 1.5), "|", color="gray",
            ms=10, label=f"{len(tail.peaks)} peaks above the level")
    ax.set_yscale("log")
    ax.set(xlabel="threshold", ylabel="alarm events per hour",
           title=f"{tail.label}: how often normal data crosses each threshold")
    ax.legend(loc="upper right", fontsize=8)
    return fig


def plot_budgets(table):
    """Threshold against the alarm budget, one line per detector (a :func:`budget_sweep` table)."""
    fig, ax = new_figure(figsize=(12, 3))
    for label, part in table.groupby("detector", sort=False):
        ax.plot(part["budget per day"], part["threshold"], "o-", label=label)
        off = part[~part["on"]]
        ax.plot(off["budget per day"], off["threshold"], "x", color="k", ms=9)
    ax.set_xscale("log")
    ax.set(xlabel="alarm budget (events per day, shared by the detectors)",
           ylabel="threshold (in its score's unit)",
           title="thresholds calibrated to each budget (x: the detector is off at that budget)")
    ax.legend(fontsize=8)
    return fig


# --------------------------------------------------------------------------
# a window of a series with its detectors (the command's picture)
# --------------------------------------------------------------------------
def _envelope(x, y, buckets: int):
    """Min and max of ``y`` per bucket, interleaved: what a line of many points looks like."""
    n = len(y)
    if n <= 2 * buckets:
        return x, y
    edges = np.linspace(0, n, buckets + 1).astype(int)
    lo = np.minimum.reduceat(y, edges[:-1])
    hi = np.maximum.reduceat(y, edges[:-1])
    xs = np.repeat(x[edges[:-1]], 2)
    return xs, np.column_stack([lo, hi]).ravel()


def _headline(win) -> str:
    """The figure's title: window, model, and where the scores came from."""
    from .series import format_timestamp

    kinds = {"computed" if t.source.startswith("computed") else "db" for t in win.traces}
    where = {frozenset(): "no scores" + ("" if win.model_version else " (no model given)"),
             frozenset({"db"}): f"scores from the error database ({win.traces[0].source.split('.')[0]})"
             if win.traces else "", frozenset({"computed"}): "scores computed from the model",
             frozenset({"db", "computed"}): "scores from the error database and computed "
             "from the model (see each panel)"}[frozenset(kinds)]
    model = f"model {win.model_version}; " if win.model_version else ""
    return (f"{format_timestamp(win.start_ns)} + {(win.end_ns - win.start_ns) / 1e9:g} s; "
            f"{model}{where}")


def plot_window(win, labels=None, title=None, width=12.0, buckets=4000):
    """The signal (and reconstruction), then each detector's score, threshold and alarm episodes.

    Parameters
    ----------
    win : pipeline.window.Window
    labels : (starts_ns, ends_ns), optional
        Labelled intervals, shaded on every panel.

    Returns
    -------
    Figure
        Axis 0 is the signal; axis ``i`` the ``i``-th trace.  Alarm episodes
        are ``axvspan`` patches with ``gid="alarm"`` on the detector's axis
        (and ``gid="alarm:<name>"`` on the signal's).
    """
    from .series import format_timestamp

    n = len(win.traces)
    fig, axes = new_figure(1 + n, 1, figsize=(width, 2.8 + 1.9 * n), sharex=True, squeeze=False,
                           height_ratios=[1.5] + [1] * n)
    axes = axes[:, 0]
    ax = axes[0]
    dur = (win.end_ns - win.start_ns) / 1e9
    unit, per = (("hours", 3600.0) if dur > 7200 else ("minutes", 60.0) if dur > 900
                 else ("seconds", 1.0))
    sec = win.seconds() / per
    ax.plot(*_envelope(sec, win.values, buckets), lw=0.7, color="k", label="signal")
    if win.recon is not None:
        ax.plot(*_envelope(sec, win.recon, buckets), lw=0.8, color="tab:blue", alpha=0.8,
                label="reconstruction (shape detector)")
    ax.set_title(f"{win.name()}: {len(win.times):,} samples at {1e9 / win.period_ns:.4g} Hz",
                 loc="left", fontsize=10)
    for i, tr in enumerate(win.traces):
        a = axes[1 + i]
        ts = win.seconds(tr.times) / per
        y = np.abs(tr.score) if tr.signed else tr.score
        a.plot(*_envelope(ts, y, buckets), lw=0.8, color="tab:blue",
               label=f"|{tr.score_field}|" if tr.signed else tr.score_field)
        a.plot(*_envelope(ts, tr.threshold, buckets), ls="--", lw=1, color=ALARM,
               label=tr.threshold_field)
        step = float(np.median(np.diff(ts))) if len(ts) > 1 else win.period_ns / 1e9 / per
        starts, ends = tr.episodes
        color = COLORS[i % len(COLORS)]
        for s0, e0 in zip(win.seconds(starts) / per, win.seconds(ends) / per, strict=True):
            a.axvspan(s0, e0 + step, color=color, alpha=0.25, gid="alarm")
            ax.axvspan(s0, e0 + step, color=color, alpha=0.2, gid=f"alarm:{tr.name}")
        thr = tr.threshold[np.isfinite(tr.threshold)]
        a.set_title(f"{tr.label}: {tr.score_field} vs {tr.threshold_field}"
                    + (f" = {thr[-1]:.4g}" if len(thr) else "")
                    + f"; {len(starts)} alarm episode(s); scores {tr.source}", loc="left",
                    fontsize=9)
        a.legend(loc="upper right", fontsize=7)
    if labels is not None:
        for a in axes:
            shade_intervals(a, win.seconds(labels[0]) / per, win.seconds(labels[1]) / per,
                            color="gold", alpha=0.3, label="labelled", gid="label")
    ax.legend(loc="upper right", fontsize=7)
    axes[-1].set_xlim(0, dur / per)
    axes[-1].set_xlabel(f"{unit} after {format_timestamp(win.start_ns)}")
    fig.suptitle(title or _headline(win), fontsize=10)
    return fig


# --------------------------------------------------------------------------
# python -m pipeline.plot
# --------------------------------------------------------------------------
def _save(fig, out: Path, dpi: int) -> tuple[int, int]:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp.png")
    try:
        fig.savefig(tmp, dpi=dpi, format="png")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    w, h = fig.get_size_inches() * dpi
    return int(round(w)), int(round(h))


def main(argv=None) -> int:
    from .influx import InfluxError, InfluxUnavailableError
    from .load import LoadError, add_influx_args, parse_tags, settings_from_args
    from .model_io import ModelFileError
    from .series import parse_timestamp
    from .window import ExploreError, read_window

    p = argparse.ArgumentParser(prog="python -m pipeline.plot", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--db", required=True, help="database of the series")
    p.add_argument("--measurement", required=True)
    p.add_argument("--field", default="value", help="default: %(default)s")
    p.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                   help="tag filter selecting one series (repeat for more)")
    p.add_argument("--start", help="window start (ISO 8601 or ns); default: --end minus 1 min")
    p.add_argument("--end", help="window end, exclusive; default: --start plus 1 min (neither: "
                   "the series' last minute)")
    p.add_argument("--model", help="model file: its detectors and the reconstruction")
    p.add_argument("--error-db", default="error_ekg", help="where the stream wrote scores "
                   "(default: %(default)s)")
    p.add_argument("--series", help="the stream's series name (default: the measurement, or the "
                   "only one with these tags)")
    p.add_argument("--scores", choices=("auto", "db", "model"), default="auto",
                   help="auto: from the error database where it has this model's, else computed "
                   "from the model; db / model: only that (default: %(default)s)")
    p.add_argument("--error-measurement", default="ERROR", help="default: %(default)s")
    p.add_argument("--zscore-measurement", default="zscore", help="default: %(default)s")
    p.add_argument("--out", default="plot.png", help="PNG file (default: %(default)s)")
    p.add_argument("--width", type=float, default=12.0, help="inches (default: %(default)s)")
    p.add_argument("--dpi", type=int, default=100, help="default: %(default)s")
    add_influx_args(p)
    args = p.parse_args(argv)

    def fail(msg, code):
        print(f"error: {msg}", file=sys.stderr)
        return code

    if not (1 <= args.dpi <= 1000 and 1 <= args.width <= 100):
        return fail(f"--dpi must be in [1, 1000] and --width in [1, 100] inches, got {args.dpi} "
                    f"and {args.width}", 2)
    try:
        settings = settings_from_args(args)
        tags = parse_tags(args.tag)
        start = parse_timestamp(args.start, what="--start") if args.start else None
        end = parse_timestamp(args.end, what="--end") if args.end else None
    except (LoadError, ValueError) as e:
        return fail(e, 2)
    from .influx import Influx

    try:
        win = read_window(Influx(settings), args.db, args.measurement, args.field, tags, start,
                          end, model=args.model, error_db=args.error_db, series=args.series,
                          scores=args.scores, error_measurement=args.error_measurement,
                          zscore_measurement=args.zscore_measurement)
    except (ExploreError, ModelFileError) as e:
        return fail(e, 2)
    except InfluxUnavailableError as e:
        return fail(e, 1)
    except InfluxError as e:  # database not found, refused query
        return fail(e, 2 if "not found" in str(e) else 1)
    fig = plot_window(win, width=args.width)
    try:
        w, h = _save(fig, Path(args.out), args.dpi)
    except OSError as e:
        return fail(f"cannot write {args.out}: {e.strerror or e}; choose another --out", 1)
    print(f"wrote {args.out} ({w}x{h} px)\n{win.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
