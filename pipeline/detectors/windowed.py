"""Detectors that score a short window of samples now and then: the engine they share.

A *windowed* detector (the baseline step, the noise level) looks at the last
``span`` samples of a run and turns them into one number.  It is evaluated
at about one sample in ``stride``: where its *stamp* (sample ``offset`` of
the window) is the first sample of a time bin of ``round(stride * period)``
ns, bins counted from the epoch.  So the points are the same however the
stream chunks a series and wherever a reading starts (what the explorer and
a restarted stream rely on), and they lie on the detector's own times, not
one per sample (the stream writes them to the segment measurement).

A window holding a NaN (or a value beyond ``config.Z_MAX_ABS``) scores NaN;
a gap (a step of >= 1.5 sample periods) starts a new run, which scores once
it holds ``span`` samples.  A score may bring a fast path,
``fn.at_ends(x, ends, span)``: the step's two half-window medians come from
the running medians of the whole run (:func:`running_median`, scipy's rank
filter), the same numbers as ``fn`` on each window, 2.4x faster.  (The
noise level's median of a window's changes costs the same either way, and
keeps the plain path.)

:class:`WindowDetector` is their common life cycle: the window in seconds
(at least ``min_samples``), the data's resolution (the threshold is never
below ``min_quanta`` steps of it), calibration on training data too (it
learns no more than those), and ``slow="off"``: off, at calibration, for a
signal whose level moves more from window to window than within a window
(``has_shape`` of :mod:`pipeline.detectors.shape`), where the level and its
noise are what the z-score, drift and fleet detectors watch.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..series import GAP_FACTOR
from .base import Detector, DetectorOutput, DetectorState, hold_alarm
from .flatline import _as_usable, resolution
from .shape import SHAPE_RATIO, _usable_runs, has_shape

__all__ = ["window_scores", "running_median", "WindowDetector", "WindowState"]

_BLOCK = 1 << 21
"""Samples of windows scored at once (16 MB of float64, twice that in a median's copy)."""


def running_median(x: np.ndarray, w: int) -> np.ndarray:
    """``m[s] = np.median(x[s:s + w])`` for every ``s`` with the block inside ``x``; NaN where
    the block holds a NaN.

    Two rank filters (one for an odd ``w``) over the whole array, in C: a median of an even
    count is the mean of its two middle values, as ``np.median`` computes it.  Among equal
    values 0.0 and -0.0 either may be picked (as a partition may): a caller that wants the
    sign of a zero fixed adds 0.0.

    >>> running_median(np.array([3.0, 1.0, 2.0, 5.0, np.nan, 4.0]), 2).tolist()
    [2.0, 1.5, 3.5, nan, nan]
    >>> running_median(np.array([3.0, 1.0, 2.0, 5.0]), 3).tolist()
    [2.0, 2.0]
    """
    x = np.asarray(x, np.float64)
    m = len(x) - w + 1
    if m <= 0:
        return np.empty(0)
    nan = np.isnan(x)
    any_nan = bool(nan.any())
    xx = np.where(nan, 0.0, x) if any_nan else x
    k = w // 2  # the filter's window for output i starts at i - w // 2
    if w % 2:
        med = ndimage.rank_filter(xx, w // 2, size=w, mode="nearest")[k:k + m]
    else:
        lo = ndimage.rank_filter(xx, w // 2 - 1, size=w, mode="nearest")[k:k + m]
        hi = ndimage.rank_filter(xx, w // 2, size=w, mode="nearest")[k:k + m]
        med = (lo + hi) / 2
    if any_nan:
        c = np.concatenate(([0], np.cumsum(nan)))
        med[c[w:] - c[:-w] > 0] = np.nan
    return med


def window_scores(times, values, span: int, offset: int, stride: int, period_ns: float, fn,
                  carry=None):
    """``(stamps, scores, carry)``: ``fn`` of the last ``span`` samples at every scored point.

    ``fn`` maps a ``(points, span)`` array of windows to one score per row.  A point is
    stamped at the window's sample ``offset`` (``1 <= offset < span``) and scored where
    that sample is the first of its time bin.  ``carry`` (``None`` at the start) is
    ``(last_t, n_run, tail_t, tail_v)``: the last sample's time, the samples seen in the
    current run and its last ``span - 1`` samples.

    >>> t = np.arange(8) * 10
    >>> ts, s, _ = window_scores(t, np.arange(8.0), 3, 1, 1, 10, lambda m: m.sum(axis=1))
    >>> ts.tolist(), s.tolist()
    ([10, 20, 30, 40, 50, 60], [3.0, 6.0, 9.0, 12.0, 15.0, 18.0])
    """
    t = np.asarray(times, np.int64)
    v = _as_usable(values)
    keep = span - 1
    if carry is None:
        carry = (None, 0, np.empty(0, np.int64), np.empty(0))
    last_t, n_run, tail_t, tail_v = carry
    if not len(t):
        return np.empty(0, np.int64), np.empty(0), carry
    gap = GAP_FACTOR * period_ns
    bin_ns = max(1, int(round(stride * period_ns)))
    cuts = np.flatnonzero(np.diff(t) >= gap) + 1
    bounds = [0, *cuts.tolist(), len(t)]
    out_t, out_s = [], []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        if last_t is None or t[a] - last_t >= gap:  # a new run
            n_run, tail_t, tail_v = 0, tail_t[:0], tail_v[:0]
        ext_t = np.concatenate((tail_t, t[a:b]))
        ext_v = np.concatenate((tail_v, v[a:b]))
        first = n_run - len(tail_t)  # run index of ext[0]
        ends = np.arange(max(span, n_run + 1), n_run + (b - a) + 1) - first
        at = ends - span + offset  # the stamp of each window
        if len(ends):  # keep the points stamped at the first sample of a time bin
            keep_pt = ext_t[at] // bin_ns != ext_t[at - 1] // bin_ns
            ends, at = ends[keep_pt], at[keep_pt]
        if len(ends):
            out_t.append(ext_t[at])
            fast = getattr(fn, "at_ends", None)
            if fast is not None:
                out_s.append(np.asarray(fast(ext_v, ends, span), np.float64))
            else:
                offs = np.arange(span)
                step = max(1, _BLOCK // span)  # windows per block: bounded memory for any run
                out_s.append(np.concatenate([
                    np.asarray(fn(ext_v[e[:, None] - span + offs]), np.float64)
                    for e in (ends[i:i + step] for i in range(0, len(ends), step))]))
        n_run += b - a
        cut = max(0, len(ext_t) - keep)
        tail_t, tail_v = ext_t[cut:], ext_v[cut:]
        last_t = int(t[b - 1])
    carry = (last_t, n_run, tail_t, tail_v)
    if not out_t:
        return np.empty(0, np.int64), np.empty(0), carry
    return np.concatenate(out_t), np.concatenate(out_s), carry


class WindowDetector(Detector):
    """The common part of the windowed detectors (see the module doc).

    Subclasses set ``_span(w)``, ``_offset(w)``, ``_score(windows)`` and ``_why_slow``;
    the alarm statistic is ``|score|``.

    Parameters
    ----------
    window_s : float, default=0.5
        The window's length in seconds (``w``); at least ``min_samples`` samples.
    min_samples : int, default=5
    stride : int or None, default=None
        Samples between scored points; ``None``: an eighth of the window (at least 1).
    slow : {"off", "on"}, default="off"
        What to do on a slow signal (see the module doc).
    """

    per_sample = False
    calibrate_on_training = True
    """It learns no more than the data's resolution and whether the signal is slow, so the
    training runs are held-out data for it too: more normal data for a rare statistic."""
    min_quanta = 3
    _why_slow = "its level is what the z-score, drift and fleet detectors watch"

    def __init__(self, window_s=0.5, min_samples=5, stride=None, slow="off"):
        self.window_s = window_s
        self.min_samples = min_samples
        self.stride = stride
        self.slow = slow

    # -- what a subclass says ------------------------------------------------
    @staticmethod
    def _span(w: int) -> int:
        raise NotImplementedError

    @staticmethod
    def _offset(w: int) -> int:
        raise NotImplementedError

    def _score(self, windows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # -- fit -------------------------------------------------------------------
    def _check(self):
        ws = self.window_s
        if isinstance(ws, bool) or not isinstance(ws, (int, float)) or not 0 < ws <= 86400:
            raise ValueError(f"window_s must be a number of seconds in (0, 86400], got {ws!r}")
        for name, lo, hi, none_ok in (("min_samples", 2, 10**6, False),
                                      ("stride", 1, 10**6, True)):
            v = getattr(self, name)
            if v is None and none_ok:
                continue
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {v!r}")
        if self.slow not in ("off", "on"):
            raise ValueError(f"slow must be 'off' or 'on', got {self.slow!r}")

    def fit(self, runs, period_ns: float):
        self._check()
        if not (isinstance(period_ns, (int, float)) and period_ns >= 1):
            raise ValueError(f"period_ns must be >= 1 ns, got {period_ns!r}")
        self.period_ns_ = float(period_ns)
        self.w_ = int(max(self.min_samples, round(self.window_s * 1e9 / self.period_ns_)))
        if self.w_ > 10**6:
            raise ValueError(f"window_s = {self.window_s:g} s is {self.w_:,} samples at this "
                             "rate; give at most 1,000,000")
        self.stride_ = int(self.stride) if self.stride is not None else max(1, self.w_ // 8)
        self.resolution_ = resolution(runs)
        values = _usable_runs([np.asarray(v, np.float64) for _, v in runs])
        n = 2 * self.w_
        self.slow_, self.ratio_ = False, None
        if any(len(v) >= n for v in values):
            fast, ratio = has_shape([v for v in values if len(v) >= n], n, self.stride_)
            self.slow_, self.ratio_ = (not fast), (None if not np.isfinite(ratio) else ratio)
        return self

    def scores(self, times_ns, values, carry=None):
        """``(stamps, scores, carry)`` of a chunk (the batch twin with ``carry=None``)."""
        return window_scores(times_ns, values, self._span(self.w_), self._offset(self.w_),
                             self.stride_, self.period_ns_, self._score, carry)

    def calibration_scores(self, times_ns, values):
        ts, s, _ = self.scores(times_ns, values)
        return ts, np.abs(s)

    def _min_threshold(self) -> float:
        return self.min_quanta * self.resolution_

    def _after_calibrate(self) -> None:
        if self.slow == "off" and self.slow_:
            self.enabled_ = False
            ratio = "infinitely" if self.ratio_ is None else f"{self.ratio_:.0f} x"
            self.calibration_["why_off"] = (
                f"a slow signal (its {2 * self.w_}-sample windows' means vary {ratio} more than "
                f"within, above {SHAPE_RATIO:g}): {self._why_slow} (slow='off')")

    def decluster_ns(self, period_ns=None) -> int:
        # one event lifts the statistic for a window's span: one excursion, not many peaks
        return max(self.hold_ns(period_ns),
                   int(self._span(self.w_) * (period_ns or self.period_ns_)))

    def output_period_ns(self) -> float:
        return float(self.period_ns_) * self.stride_

    def lookback_ns(self) -> int:
        return int(np.ceil(self._offset(self.w_) * float(self.period_ns_)))

    def lookahead_ns(self) -> int:
        after = self._span(self.w_) - 1 - self._offset(self.w_)
        return int(np.ceil(after * float(self.period_ns_)))

    def new_state(self) -> WindowState:
        return WindowState(self)

    def fitted_data(self):
        return {"w": self.w_, "stride": self.stride_, "resolution": self.resolution_,
                "slow": bool(self.slow_), "ratio": self.ratio_}, {}

    def set_fitted(self, meta, arrays):
        self.w_, self.stride_ = int(meta["w"]), int(meta["stride"])
        self.resolution_ = float(meta["resolution"])
        self.slow_, self.ratio_ = bool(meta["slow"]), meta.get("ratio")


class WindowState(DetectorState):
    """Streaming state of a :class:`WindowDetector`: the last ``span - 1`` samples of the run."""

    def __init__(self, det: WindowDetector):
        self.det = det
        self.carry = None
        self.last_hit = None

    def update_many(self, times_ns, values) -> DetectorOutput:
        d = self.det
        ts, s, self.carry = d.scores(times_ns, values, self.carry)
        with np.errstate(invalid="ignore"):
            raw = np.abs(s) > d.threshold_
        alarm, self.last_hit = hold_alarm(ts, raw, d.hold_ns(), self.last_hit)
        return DetectorOutput(d, ts, s, alarm, d.threshold_)

    def get_data(self):
        if self.carry is None:
            return {"carry": None, "last_hit": self.last_hit}, {}
        last_t, n_run, tail_t, tail_v = self.carry
        return ({"carry": [last_t, n_run], "last_hit": self.last_hit},
                {"tail_t": np.asarray(tail_t, np.int64), "tail_v": np.asarray(tail_v, np.float64)})

    def set_data(self, meta, arrays):
        c = meta.get("carry")
        self.carry = None if c is None else (
            None if c[0] is None else int(c[0]), int(c[1]),
            np.asarray(arrays["tail_t"], np.int64), np.asarray(arrays["tail_v"], np.float64))
        self.last_hit = None if meta.get("last_hit") is None else int(meta["last_hit"])
