"""The original tutorials' methods, exactly as published, as baselines: ``python -m pipeline.tutorials``.

Both return alarm flags (:class:`Flags`) that go through the same event
scoring (:mod:`pipeline.events`) as the project's detectors.

* :func:`kmeans_tutorial` (InfluxData's K-Means EKG posts, after Amid
  Fish): 150 clusters of sin^2-windowed 32-sample segments taken every 2
  samples of the training data; threshold = the largest absolute error of
  the *stitched* reconstruction of the training data
  (:func:`pipeline.threshold.tutorial_threshold`); each segment (slide 16)
  is flagged when its *signed* error ``max(window * segment - nearest
  centroid)`` exceeds it.  One flag per segment, at its centre sample.
* :func:`plexus_tutorial` (Plexus's ``detector.py``): z of the newest
  sample against the mean and sample std (``ddof=1``) of the last 15
  samples *including itself*; no z until 15 samples (NaN); z = 0 when the
  std is 0; an alarm once ``|z| > 3`` for 3 samples in a row.  (Plexus's
  docs page shows a variant: population std, from 5 samples, 0 below a std
  of 0.01; the blog's, reproduced here, is the one the project's
  ``tests/naive.py`` follows.)

``python -m pipeline.tutorials [--split dev|test|all]`` generates the suites
(:mod:`pipeline.suites`) and prints what both methods score on them.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .events import EventScore, Report, compare
from .kmeans import KMeansReconstructor
from .segment import sliding_segments
from .threshold import tutorial_threshold

__all__ = ["Flags", "kmeans_tutorial", "plexus_zscore", "plexus_tutorial", "evaluate_suite",
           "tutorial_runs"]


@dataclass
class Flags:
    """One detector run: point ``times`` (ns), bool ``alarm``, its ``score``, ``threshold`` and point spacing.

    :func:`pipeline.events.compare` takes it as a run (event peaks from ``score``).
    """

    times: np.ndarray
    alarm: np.ndarray
    score: np.ndarray
    threshold: float
    period_ns: int


def kmeans_tutorial(train, x, period_ns: int, t0_ns: int = 0, n_clusters: int = 150, segment_len: int = 32,
                    train_slide: int = 2, random_state=0) -> Flags:
    """The K-Means tutorial: fit on ``train``, flag the segments of ``x`` (sampled from ``t0_ns``).

    Examples
    --------
    >>> beat = np.r_[np.zeros(24), np.hanning(8)]
    >>> x = np.tile(beat, 40)
    >>> y = x.copy(); y[640:644] += 3.0
    >>> f = kmeans_tutorial(x, y, period_ns=10, n_clusters=4)
    >>> f.period_ns, int(f.times[0])      # 16 samples of 10 ns; the first centre is sample 16
    (160, 160)
    >>> (f.times[f.alarm] // 10).tolist()  # the segment centred on the bump at samples 640-643
    [640]
    """
    model = KMeansReconstructor(n_clusters=n_clusters, segment_len=segment_len, train_slide=train_slide,
                                random_state=random_state).fit(np.asarray(train, dtype=np.float64))
    threshold = tutorial_threshold(model, np.asarray(train, dtype=np.float64))
    slide = segment_len // 2
    segs = sliding_segments(np.asarray(x, dtype=np.float64), segment_len, slide)
    idx = model.nearest(segs)
    score = np.max(segs * model.window_ - model.cluster_centers_[idx], axis=1)  # signed, as published
    times = t0_ns + (np.arange(len(segs)) * slide + segment_len // 2) * int(period_ns)
    return Flags(times.astype(np.int64), score > threshold, score, float(threshold), slide * int(period_ns))


def plexus_zscore(x, window: int = 15) -> np.ndarray:
    """The tutorial's z: the newest sample inside its own window (NaN until full, 0 for a zero std).

    Examples
    --------
    >>> plexus_zscore([0, 0, 0, 10, 20, 0], window=4).round(4).tolist()
    [nan, nan, nan, 1.5, 1.3056, -0.7833]
    """
    x = np.asarray(x, dtype=np.float64)
    z = np.full(x.shape, np.nan)
    if len(x) < window:
        return z
    w = sliding_window_view(x, window)
    d = w - w[:, :1]  # deviations from the window's first value: no cancellation at large offsets
    dm = d.mean(axis=1)
    sd = np.sqrt(((d - dm[:, None]) ** 2).sum(axis=1) / (window - 1))
    # a constant window has std exactly 0 (the tutorial's statistics.stdev), whatever the rounding
    flat = np.ptp(w, axis=1) == 0
    with np.errstate(invalid="ignore", divide="ignore"):
        z[window - 1:] = np.where(flat, 0.0, (d[:, -1] - dm) / sd)
    return z


def plexus_tutorial(x, period_ns: int, t0_ns: int = 0, window: int = 15, threshold: float = 3.0,
                    streak: int = 3) -> Flags:
    """The Plexus tutorial: alarm at each sample that ends a run of ``streak`` samples with ``|z| > threshold``.

    Examples
    --------
    >>> f = plexus_tutorial([0, 0, 0, 0, 10, 20, 0], period_ns=1, window=4, threshold=1.2, streak=2)
    >>> f.alarm.tolist()
    [False, False, False, False, False, True, False]
    """
    z = plexus_zscore(x, window)
    with np.errstate(invalid="ignore"):
        above = np.abs(z) > threshold  # NaN is never above
    # length of the run of `above` ending at each sample
    idx = np.arange(len(above))
    last_break = np.maximum.accumulate(np.where(above, -1, idx))
    run = np.where(above, idx - last_break, 0)
    times = t0_ns + idx.astype(np.int64) * int(period_ns)
    return Flags(times, run >= streak, z, float(threshold), int(period_ns))


def tutorial_runs(times_ns, values, train_end_ns: int, period_ns: float) -> dict:
    """Both tutorials on one regular series: K-Means fitted on ``times < train_end_ns``.

    Returns ``{name: (times_ns, alarm, point_spacing_ns)}`` as :func:`pipeline.events.compare`
    takes it; ``pipeline.evaluate --tutorial-train-end`` uses it.
    """
    t = np.asarray(times_ns, np.int64)
    x = np.asarray(values, np.float64)
    train = x[t < train_end_ns]
    p = int(round(period_ns))
    out = {"plexus tutorial": plexus_tutorial(x, p, int(t[0]))}
    if len(train) >= 64:
        out["k-means tutorial"] = kmeans_tutorial(train, x, p, int(t[0]))
    return out


# ---------------------------------------------------------------------------
# both methods over the suites
# ---------------------------------------------------------------------------
def _case_runs(case) -> dict:
    p = int(round(case.period_s * 1e9))
    runs = {}
    if case.suite == "ekg":
        _, train = case.part("train")
        runs["kmeans_tutorial"] = kmeans_tutorial(train, case.values, p)
        runs["plexus_tutorial"] = plexus_tutorial(case.values, p)
    else:
        runs["plexus_tutorial"] = {k: plexus_tutorial(v, p) for k, v in zip(case.keys, case.values,
                                                                              strict=True)}
    return runs


def evaluate_suite(suite, split: str | None = None) -> dict:
    """Both tutorials on every case (labelled part only): ``{case key: Report}``, plus pooled reports.

    Keys are ``"<split>/<case>"``; pooled reports ``"<split>/all <rate> Hz"`` (EKG) add up the
    cases of one split and rate.
    """
    out, pools = {}, {}
    for case in suite.cases:
        if split and case.split != split:
            continue
        start, end = case.span_ns("labelled")
        rep = compare(_case_runs(case), case.labels().within(start, end), start, end, suite.rules,
                      title=f"{case.split}/{case.name}")
        out[f"{case.split}/{case.name}"] = rep
        if case.suite == "ekg":
            pools.setdefault(f"{case.split}/all {1 / case.period_s:g} Hz", []).append(rep)
    for key, reps in pools.items():
        names = list(reps[0].rows)
        out[key] = Report({n: EventScore.pool([r.rows[n] for r in reps], n) for n in names}, title=key)
    return out


def main(argv=None) -> int:
    from .suites import ekg_suite, sensor_suite

    p = argparse.ArgumentParser(prog="python -m pipeline.tutorials", description=__doc__.split("\n\n")[0])
    p.add_argument("--split", choices=["dev", "test", "all"], default="test")
    p.add_argument("--suite", choices=["ekg", "sensors", "all"], default="all")
    p.add_argument("--mitdb", default=None, help="folder of the record 208 excerpt")
    p.add_argument("--false-alarms", action="store_true", help="list the false alarm times of each case")
    args = p.parse_args(argv)
    makers = []
    if args.suite in ("ekg", "all"):
        makers.append(lambda: ekg_suite(args.split, mitdb=args.mitdb))
    if args.suite in ("sensors", "all"):
        makers.append(lambda: sensor_suite(args.split))
    try:
        for make in makers:
            t = time.perf_counter()
            suite = make()
            for note in suite.notes:
                print(f"note: {note}")
            reports = evaluate_suite(suite)
            for key, rep in reports.items():
                print(f"\n== {suite.name} {key}  (rules: merge gap {suite.rules.merge_gap_s:g} s, "
                      f"tolerance -{suite.rules.tol_before_s:g} s / +{suite.rules.tol_after_s:g} s)")
                print(rep.table())
                if args.false_alarms and "/all " not in key:
                    for name, row in rep.rows.items():
                        fa = row.event_start_ns[row.event_false] / 1e9
                        print(f"  false alarms of {name} (s): {np.round(fa, 2).tolist()[:40]}"
                              + (" ..." if len(fa) > 40 else ""))
            print(f"({suite.name}: {time.perf_counter() - t:.0f} s)")
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
