"""Baseline step: the level of the last second against the level of the second before it.

A lead that moves on the skin, a loose connector or a sensor knocked out of
place shifts the baseline of a signal at once.  On a signal with fast
structure (an EKG) neither the shape detector nor the z-score sees it well:
a step inside a segment is an edge much like a QRS slope (at 90 Hz a
32-sample segment spans 0.36 s), and every heartbeat is many standard
deviations from the samples before it, so the z-score is off there.  The
*median* of a window that holds a beat or more sits on the baseline between
the beats, whatever the beats do, so

    ``step(e) = median(x[e-w:e]) - median(x[e-2w:e-w])``

jumps by the size of a baseline step and stays near zero for beats, noise
and slow wander.  It is stamped at the first sample of the later window,
where a step would have happened, and evaluated at about one sample in
``stride``: where that sample is the first of a time bin of ``stride``
sample periods (bins counted from the epoch), so the points are the same
however the stream chunks the series and wherever a reading starts.  Its threshold on ``|step|`` is calibrated to the budget like
every detector's (its unit is the series' own), and it is never below three
steps of the data's resolution.

A window holding a NaN (or a value beyond ``config.Z_MAX_ABS``) scores NaN;
a gap (a step of >= 1.5 sample periods) starts a new run, which scores
after ``2 w`` samples.

Slow signals.  On a signal whose level moves more from window to window
than within a window (a temperature sensor: ``has_shape`` of
:mod:`pipeline.detectors.shape` at the scale of ``2 w``), a step of the
level is what the z-score (a sample against the 15 before it), the drift
and the fleet detectors watch; ``slow="off"`` (the default) turns this
detector off there at calibration, with the reason in the model file.
"""

from __future__ import annotations

import numpy as np

from ..series import GAP_FACTOR
from .base import Detector, DetectorOutput, DetectorState, hold_alarm, register
from .flatline import _as_usable, resolution
from .shape import SHAPE_RATIO, has_shape

__all__ = ["StepDetector", "level_steps"]


def level_steps(times, values, w: int, stride: int, period_ns: float, carry=None):
    """``(times, step, carry)``: the level step of every scored point of a chunk.

    A point is scored where its stamp (the first sample of the later window) is the first
    sample of a time bin of ``round(stride * period_ns)`` ns.

    ``carry`` (``None`` at the start) is ``(last_t, n_run, tail_t, tail_v)``: the last
    sample's time, the samples seen in the current run and its last ``2 w - 1`` samples.

    >>> t = np.arange(12) * 10
    >>> x = np.array([0, 0, 0, 0, 0, 0, 5, 5, 5, 5, 5, 5], float)
    >>> ts, s, _ = level_steps(t, x, 3, 1, 10)
    >>> ts.tolist(), s.tolist()
    ([30, 40, 50, 60, 70, 80, 90], [0.0, 0.0, 5.0, 5.0, 5.0, 0.0, 0.0])
    """
    t = np.asarray(times, np.int64)
    v = _as_usable(values)
    keep = 2 * w - 1
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
        ends = np.arange(max(2 * w, n_run + 1), n_run + (b - a) + 1) - first
        if len(ends):  # keep the points stamped at the first sample of a time bin
            stamp = ext_t[ends - w]
            ends = ends[stamp // bin_ns != ext_t[ends - w - 1] // bin_ns]
        if len(ends):
            win = ext_v[ends[:, None] - 2 * w + np.arange(2 * w)]
            before = np.median(win[:, :w], axis=1)
            after = np.median(win[:, w:], axis=1)
            out_t.append(ext_t[ends - w])
            out_s.append(after - before)
        n_run += b - a
        tail_t, tail_v = ext_t[-keep:], ext_v[-keep:]
        last_t = int(t[b - 1])
    carry = (last_t, n_run, tail_t, tail_v)
    if not out_t:
        return np.empty(0, np.int64), np.empty(0), carry
    return np.concatenate(out_t), np.concatenate(out_s), carry


@register
class StepDetector(Detector):
    """Baseline step: ``median`` of the last ``window_s`` against the ``window_s`` before it.

    Parameters
    ----------
    window_s : float, default=0.5
        Each window's length in seconds (an EKG window should hold a beat: 1 s holds one
        from 60 beats per minute); at least ``min_samples`` samples.
    min_samples : int, default=5
    stride : int or None, default=None
        Samples between scored points; ``None``: an eighth of the window (at least 1).
    slow : {"off", "on"}, default="off"
        What to do on a slow signal (see the module doc).

    Examples
    --------
    A beat-like signal at 90 Hz; a baseline step of 0.5 one minute into the scored part:

    >>> rng = np.random.default_rng(0)
    >>> n = 90 * 600
    >>> t = np.arange(n, dtype=np.int64) * round(1e9 / 90)
    >>> x = np.round(np.sin(np.arange(n) * 2 * np.pi / 75) ** 15 + 0.01 * rng.standard_normal(n), 2)
    >>> det = StepDetector().fit([(t[:18000], x[:18000])], 1e9 / 90)
    >>> det = det.calibrate([(t[18000:36000], x[18000:36000])], 1e9 / 90, 1.0)
    >>> y = x[36000:].copy(); y[5400:] += 0.5
    >>> out = det.new_state().update_many(t[36000:], y)
    >>> hit = out.times[out.alarm]
    >>> bool(abs((hit[0] - t[36000 + 5400]) / 1e9) < 0.5), bool(out.alarm[out.times < t[41000]].any())
    (True, False)
    """

    name = "step"
    label = "baseline step"
    per_sample = False
    score_field = "step"
    threshold_field = "step_threshold"
    alarm_field = "step_alert"
    calibrate_on_training = True
    """It learns no more than the data's resolution and whether the signal is slow, so the
    training runs are held-out data for it too: more normal data for a rare statistic."""

    def __init__(self, window_s=0.5, min_samples=5, stride=None, slow="off"):
        self.window_s = window_s
        self.min_samples = min_samples
        self.stride = stride
        self.slow = slow

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

    def fit(self, runs, period_ns: float) -> StepDetector:
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
        values = [_as_usable(v) for _, v in runs]
        values = [v[np.isfinite(v)] for v in values]
        self.slow_, self.ratio_ = False, None
        if any(len(v) >= 2 * self.w_ for v in values):
            fast, ratio = has_shape([v for v in values if len(v) >= 2 * self.w_], 2 * self.w_,
                                    max(1, self.stride_))
            self.slow_, self.ratio_ = (not fast), (None if not np.isfinite(ratio) else ratio)
        return self

    def calibration_scores(self, times_ns, values):
        ts, s, _ = level_steps(times_ns, values, self.w_, self.stride_, self.period_ns_)
        return ts, np.abs(s)

    def _min_threshold(self) -> float:
        return 3 * self.resolution_

    def _after_calibrate(self) -> None:
        if self.slow == "off" and self.slow_:
            self.enabled_ = False
            self.calibration_["why_off"] = (
                f"a slow signal (its {2 * self.w_}-sample windows' means vary {self.ratio_:.0f} x "
                f"more than within, above {SHAPE_RATIO:g}): a step of its level is what the "
                "z-score, drift and fleet detectors watch (slow='off')")

    def decluster_ns(self, period_ns=None) -> int:
        # one step lifts the statistic for 2 w samples: one excursion, not many peaks
        return max(self.hold_ns(period_ns), int(2 * self.w_ * (period_ns or self.period_ns_)))

    def output_period_ns(self) -> float:
        return float(self.period_ns_) * self.stride_

    def lookahead_ns(self) -> int:
        return int(np.ceil((self.w_ - 1) * float(self.period_ns_)))

    def new_state(self) -> StepState:
        return StepState(self)

    def fitted_data(self):
        return {"w": self.w_, "stride": self.stride_, "resolution": self.resolution_,
                "slow": bool(self.slow_), "ratio": self.ratio_}, {}

    def set_fitted(self, meta, arrays):
        self.w_, self.stride_ = int(meta["w"]), int(meta["stride"])
        self.resolution_ = float(meta["resolution"])
        self.slow_, self.ratio_ = bool(meta["slow"]), meta.get("ratio")


class StepState(DetectorState):
    def __init__(self, det: StepDetector):
        self.det = det
        self.carry = None
        self.last_hit = None

    def update_many(self, times_ns, values) -> DetectorOutput:
        d = self.det
        ts, s, self.carry = level_steps(times_ns, values, d.w_, d.stride_, d.period_ns_,
                                        self.carry)
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
