"""Short and long baselines: the rolling z-score (streak guard) and the EWMA drift score.

Both compare each sample with a baseline of the samples before it and alarm
when ``|z|`` stays above a threshold for ``streak`` samples.  Neither the
threshold nor the streak is a global default: calibration tries each
candidate streak (shortest first), sets the threshold that keeps held-out
normal data within the alarm budget, and keeps the first streak whose
threshold is at most ``max_useful``.  When none is, the detector is *off*
for this series, with the reason in the model file: on an EKG every
heartbeat is many standard deviations from the 15 samples before it, so a
z-score calibrated not to flood would only see faults the shape and
flat-line detectors see anyway.

The alarm's statistic for calibration is the smallest ``|z|`` over the last
``streak`` samples (an alarm starts where it exceeds the threshold); the
stream's guard uses ``resolve = threshold``, and the alarm is held like every
detector's (:func:`~pipeline.detectors.base.hold_alarm`).

The std floor is learned too: half the data's resolution
(:func:`~pipeline.detectors.flatline.resolution`), so quantized readings
that repeat do not make a zero std and an infinite ``z``.
"""

from __future__ import annotations

import numpy as np

from .. import config
from ..baselines import EWMAZScore, ewma_zscore
from ..zscore import RollingZScore, rolling_zscore
from .base import Detector, DetectorOutput, DetectorState, hold_alarm, register
from .flatline import resolution

__all__ = ["ZScoreDetector", "DriftDetector", "streak_min"]

_BIG = 1e300  # a threshold no z reaches: the batch twins then only compute z
_RES = 1e299


def _resolve(threshold: float) -> float:
    """The guard's resolve level: just below the threshold (the hold debounces instead)."""
    return float(np.nextafter(threshold, 0.0))


def streak_min(z, streak: int) -> np.ndarray:
    """``min |z|`` over the last ``streak`` samples (NaN counts as 0): the alarm statistic.

    >>> streak_min([1.0, -5.0, 4.0, np.nan, 6.0], 2).tolist()
    [0.0, 1.0, 4.0, 0.0, 0.0]
    """
    a = np.nan_to_num(np.abs(np.asarray(z, np.float64)), nan=0.0)
    if streak <= 1:
        return a
    out = np.zeros_like(a)
    if len(a) >= streak:
        out[streak - 1:] = np.lib.stride_tricks.sliding_window_view(a, streak).min(axis=1)
    return out


class _ZDetector(Detector):
    """Shared calibration of the two z-score detectors."""

    per_sample = True
    streaks: tuple = (1, 3)

    def _check_common(self):
        if not (isinstance(self.max_useful, (int, float)) and self.max_useful > 0):
            raise ValueError(f"max_useful must be a positive number, got {self.max_useful!r}")
        streaks = self.streak if self.streak is not None else self.streaks
        streaks = (streaks,) if isinstance(streaks, int) else tuple(streaks)
        if not streaks or not all(isinstance(s, int) and 1 <= s <= 1000 for s in streaks):
            raise ValueError(f"streak must be an integer in [1, 1000] or None, got {self.streak!r}")
        return streaks

    def fit(self, runs, period_ns: float):
        self._candidates = self._check_common()
        self._check_own()
        self.std_floor_ = (float(self.std_floor) if self.std_floor is not None
                           else 0.5 * resolution(runs))
        self.period_ns_ = float(period_ns)
        self.streak_ = self._candidates[0]
        return self

    def calibration_scores(self, times_ns, values):
        return (np.asarray(times_ns, np.int64),
                streak_min(self._batch_z(values, self.streak_), self.streak_))

    def calibrate(self, runs, period_ns, budget):
        z = [self._batch_z(v, self._candidates[0]) for _, v in runs]
        n = sum(len(a) for a in z)
        warm = sum(int(np.count_nonzero(np.isfinite(a))) for a in z) / max(1, n)
        if warm < 0.5:
            self.enabled_, self.threshold_ = False, float(self.max_useful)
            self.calibration_ = {"why_off": (
                f"the held-out data is too short for its baseline to warm up ({100 * warm:.0f} "
                "% of samples scored); give a longer validation range")}
            return self
        best = None
        for s in getattr(self, "_candidates", (self.streak_,)):
            self.streak_ = s
            super().calibrate(runs, period_ns, budget)
            if best is None:
                best = (s, self.threshold_, self.calibration_)
            if self.threshold_ <= self.max_useful:
                best = (s, self.threshold_, self.calibration_)
                break
        self.streak_, self.threshold_, self.calibration_ = best
        self.calibration_["streak"] = self.streak_
        self.enabled_ = self.threshold_ <= self.max_useful
        if not self.enabled_:
            self.calibration_["why_off"] = (
                f"normal data needs |{self.score_field}| > {self.threshold_:.3g} to stay within "
                f"the budget, above max_useful = {self.max_useful:g}")
        return self

    def fitted_data(self):
        return {"std_floor": self.std_floor_, "streak": self.streak_}, {}

    def set_fitted(self, meta, arrays):
        self.std_floor_ = float(meta["std_floor"])
        self.streak_ = int(meta["streak"])


class _ZState(DetectorState):
    slots: tuple = ()

    def __init__(self, det):
        self.det = det
        self.inner = det._make()
        self.last_hit = None

    def update_many(self, times_ns, values) -> DetectorOutput:
        d = self.det
        t = np.asarray(times_ns, np.int64)
        r = self.inner.update_many(np.asarray(values, np.float64))
        alarm, self.last_hit = hold_alarm(t, r.alert, d.hold_ns(), self.last_hit)
        return DetectorOutput(d, t, r.z, alarm, d.threshold_, d._extra(r))

    def get_data(self):
        meta = {k: getattr(self.inner, k) for k in self.slots if k != "_buf"}
        meta["last_hit"] = self.last_hit
        arrays = {}
        if "_buf" in self.slots:
            arrays["buf"] = np.asarray(self.inner._buf, np.float64)
        return meta, arrays

    def set_data(self, meta, arrays):
        for k in self.slots:
            if k == "_buf":
                self.inner._buf = [float(v) for v in np.asarray(arrays["buf"], np.float64)]
            else:
                cur = getattr(self.inner, k)
                setattr(self.inner, k, type(cur)(meta[k]))
        self.last_hit = None if meta.get("last_hit") is None else int(meta["last_hit"])


class ZScoreState(_ZState):
    slots = ("_buf", "_pos", "_n", "_ref", "_s1", "_s2", "_acc", "_cycles", "_streak", "_alert")


class DriftState(_ZState):
    slots = ("_count", "_ref", "_md", "_v", "_cw", "_prev", "_streak", "_alert")


@register
class ZScoreDetector(_ZDetector):
    """Rolling z-score against the ``window`` samples before each one (the Plexus tutorial's).

    Parameters
    ----------
    window : int, default=15
    min_periods : int, default=5
    streak : int, tuple of int or None, default=None
        Candidate streaks, shortest first (``None``: 1 then 3).
    std_floor : float or None, default=None
        ``None`` learns half the data's resolution.
    max_useful : float, default=8.0
        A calibrated threshold above this turns the detector off.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> t = np.arange(20000) * 2 * 10**9                    # a sensor every 2 s
    >>> x = 20 + 0.1 * rng.standard_normal(20000)
    >>> det = ZScoreDetector().fit([(t[:10000], x[:10000])], 2e9)
    >>> det = det.calibrate([(t[10000:], x[10000:])], 2e9, 1 / 24)
    >>> det.enabled_, det.streak_
    (True, 1)
    """

    name = "zscore"
    label = "z-score"
    score_field = "z"
    threshold_field = "z_threshold"
    alarm_field = "alert"
    extra_fields = ("streak", "zscore")

    def __init__(self, window=config.Z_WINDOW, min_periods=config.Z_MIN_PERIODS, streak=None,
                 std_floor=None, max_useful=8.0):
        self.window = window
        self.min_periods = min_periods
        self.streak = streak
        self.std_floor = std_floor
        self.max_useful = max_useful

    def get_params(self):
        return {"window": self.window, "min_periods": self.min_periods, "streak": self.streak,
                "std_floor": self.std_floor, "max_useful": self.max_useful}

    def _check_own(self):
        RollingZScore(window=self.window, min_periods=self.min_periods)  # validates

    def _batch_z(self, values, streak):
        return rolling_zscore(values, window=self.window, min_periods=self.min_periods,
                              threshold=_BIG, streak=streak, resolve=_RES,
                              std_floor=self.std_floor_).z

    def _make(self):
        return RollingZScore(window=self.window, min_periods=self.min_periods,
                             threshold=self.threshold_, streak=self.streak_,
                             resolve=_resolve(self.threshold_), std_floor=self.std_floor_)

    @staticmethod
    def _extra(r):
        return {"streak": r.streak, "zscore": r.emitted}

    def new_state(self):
        return ZScoreState(self)


@register
class DriftDetector(_ZDetector):
    """Long baseline: distance from an EWMA, scaled by how far the residual normally strays.

    The scale is the exponentially weighted RMS of the residual itself
    (``scale="ewm"`` of :class:`~pipeline.baselines.EWMAZScore`), not the
    short-term noise: a daily cycle keeps the value away from a 30-minute
    average all day, and that is normal.

    Parameters
    ----------
    halflife_s : float, default=1800
        Half-life of the baseline in seconds (converted to samples at fit).
    streak, std_floor, max_useful : as :class:`ZScoreDetector` (streaks 3 then 10).
    """

    name = "drift"
    label = "drift"
    score_field = "long_z"
    threshold_field = "long_threshold"
    alarm_field = "long_alert"
    streaks = (3, 10)

    def __init__(self, halflife_s=1800.0, streak=None, std_floor=None, max_useful=8.0):
        self.halflife_s = halflife_s
        self.streak = streak
        self.std_floor = std_floor
        self.max_useful = max_useful

    def get_params(self):
        return {"halflife_s": self.halflife_s, "streak": self.streak,
                "std_floor": self.std_floor, "max_useful": self.max_useful}

    def _check_own(self):
        if not (isinstance(self.halflife_s, (int, float)) and 0 < self.halflife_s <= 86400 * 365):
            raise ValueError(f"halflife_s must be in (0, 31536000] seconds, got {self.halflife_s!r}")

    def _halflife(self):
        return max(1.0, self.halflife_s * 1e9 / self.period_ns_)

    def _batch_z(self, values, streak):
        return ewma_zscore(values, halflife=self._halflife(), threshold=_BIG, streak=streak,
                           resolve=_RES, std_floor=self.std_floor_, scale="ewm").z

    def _make(self):
        return EWMAZScore(halflife=self._halflife(), threshold=self.threshold_,
                          streak=self.streak_, resolve=_resolve(self.threshold_),
                          std_floor=self.std_floor_, scale="ewm")

    @staticmethod
    def _extra(r):
        return {}

    def new_state(self):
        return DriftState(self)
