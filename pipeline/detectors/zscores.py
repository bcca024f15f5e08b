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

Extreme magnitudes (``docs/extremes.md``): a sample beyond
``config.Z_MAX_ABS`` (1e100) is treated like NaN by both, as by
:mod:`pipeline.zscore`: never part of a baseline, scores NaN, never alarms.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from .. import config
from ..checks import _usable
from ..zscore import RollingZScore, rolling_zscore
from .base import Detector, DetectorOutput, DetectorState, hold_alarm, register
from .flatline import resolution

__all__ = ["ZScoreDetector", "DriftDetector", "streak_min", "ewma_residuals"]

_BIG = 1e300  # a threshold no z reaches: the batch twins then only compute z
_RES = 1e299
_MIN_SCALE = 1e-200
"""The drift's smallest scale: residuals are at most ``4 * Z_MAX_ABS``, so ``long_z`` is finite."""


def _resolve(threshold: float) -> float:
    """The guard's resolve level: just below the threshold (the hold debounces instead)."""
    return float(np.nextafter(threshold, 0.0))


def _number(v) -> bool:
    """A real number (not a bool), finite."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and bool(np.isfinite(v))


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
        if not (_number(self.max_useful) and 0 < self.max_useful <= config.Z_MAX_ABS):
            raise ValueError(f"max_useful must be a finite number in (0, {config.Z_MAX_ABS:g}], "
                             f"got {self.max_useful!r}")
        if self.std_floor is not None and not (_number(self.std_floor)
                                               and 0 <= self.std_floor <= config.Z_MAX_ABS):
            raise ValueError(f"std_floor must be a finite number in [0, {config.Z_MAX_ABS:g}] or "
                             f"None, got {self.std_floor!r}")
        streaks = self.streak if self.streak is not None else self.streaks
        streaks = (streaks,) if isinstance(streaks, int) else tuple(streaks)
        if not streaks or not all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= 1000
                                  for s in streaks):
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


def ewma_residuals(x, alpha: float, state=None):
    """``x - EWMA`` of the finite samples *before* each one; returns ``(resid, state)``.

    ``state`` is ``None`` (nothing seen) or ``[count, ref, md]``: the samples
    absorbed, the first one (``ref``) and the EWMA of ``x - ref``.  A
    non-finite sample, or one beyond ``config.Z_MAX_ABS``, gets NaN and is
    not absorbed; the first sample gets NaN (nothing before it).  Chunks give the same numbers as one call
    (``scipy.signal.lfilter`` carries ``md``).

    >>> r, st = ewma_residuals([10.0, 12.0, np.nan, 12.0], 0.5)
    >>> r.tolist(), st
    ([nan, 2.0, nan, 1.0], [3, 10.0, 1.5])
    """
    x = np.asarray(x, np.float64)
    out = np.full(x.shape, np.nan)
    count, ref, md = state if state is not None else (0, 0.0, 0.0)
    fin = np.flatnonzero(_usable(x))
    if len(fin) == 0:
        return out, state
    f = x[fin]
    if count == 0:
        count, ref, md = 1, float(f[0]), 0.0
        fin, f = fin[1:], f[1:]
    if len(f):
        d = f - ref
        c = 1.0 - alpha
        after = lfilter([alpha], [1.0, -c], d, zi=[c * md])[0]
        before = np.concatenate(([md], after[:-1]))
        out[fin] = d - before
        count, md = count + len(f), float(after[-1])
    return out, [int(count), float(ref), float(md)]


@register
class DriftDetector(_ZDetector):
    """Long baseline: distance from an EWMA, in units of the normal spread learned at fit.

    ``long_z = (x - EWMA before x) / scale_``, where ``scale_`` is the
    robust spread (1.4826 x MAD) of the same residual on the *training* data,
    fixed after fit (model file: ``fitted.scale``).  A drift makes the EWMA
    lag behind, and the lag grows in these units.  (An exponentially
    weighted RMS of the residual as the scale, with the mean's half-life,
    grows with the drift it should see: a ramp's ``z`` tends to about 1.7
    and the +5 degC overnight drift of the demo was never seen; it also
    false-alarmed while its scale warmed up.)

    The first ``ceil(half-life in samples)`` samples of each run only warm
    the EWMA up (``long_z`` is NaN), at fit, calibration and in the stream.

    What it cannot see: a change as slow as the series' normal changes (a
    daily cycle lags the EWMA as much as a 2 degC drift over 6 h does), and a
    sensor that is off from the start (its EWMA starts there).  Comparing a
    sensor with its fleet sees both (docs/detectors.md, "Fleet").

    Parameters
    ----------
    halflife_s : float, default=1800
        Half-life of the baseline in seconds (converted to samples at fit).
    streak, std_floor, max_useful : as :class:`ZScoreDetector` (streaks 3 then 10).

    Examples
    --------
    >>> rng = np.random.default_rng(2)
    >>> t = np.arange(30000) * 2 * 10**9                    # a sensor every 2 s
    >>> x = 20 + 0.05 * rng.standard_normal(30000)
    >>> det = DriftDetector(halflife_s=600).fit([(t[:10000], x[:10000])], 2e9)
    >>> det = det.calibrate([(t[10000:20000], x[10000:20000])], 2e9, 1 / 24)
    >>> y = x[20000:] + np.clip((np.arange(10000) - 2000) / 3000, 0, 1)   # +1 over 100 min
    >>> out = det.new_state().update_many(t[20000:], y)
    >>> bool(out.alarm[:2000].any()), 2000 < int(np.flatnonzero(out.alarm)[0]) < 3000
    (False, True)
    """

    name = "drift"
    label = "drift"
    score_field = "long_z"
    threshold_field = "long_threshold"
    alarm_field = "long_alert"
    streaks = (3, 10)
    calibrate_on_training = True
    """Its alarms come from the slow part of normal data (a daily cycle), which a short held-out
    range does not cover; it learns one number (``scale_``)."""

    def __init__(self, halflife_s=1800.0, streak=None, std_floor=None, max_useful=8.0):
        self.halflife_s = halflife_s
        self.streak = streak
        self.std_floor = std_floor
        self.max_useful = max_useful

    def _check_own(self):
        if not (_number(self.halflife_s) and 0 < self.halflife_s <= 86400 * 365):
            raise ValueError(f"halflife_s must be in (0, 31536000] seconds, got {self.halflife_s!r}")

    def _halflife(self):
        return max(1.0, self.halflife_s * 1e9 / self.period_ns_)

    def _alpha(self):
        return 1.0 - 2.0 ** (-1.0 / self._halflife())

    def _warm(self):
        return int(np.ceil(self._halflife()))

    def fit(self, runs, period_ns: float):
        super().fit(runs, period_ns)
        warm = self._warm()
        res = [ewma_residuals(v, self._alpha())[0][warm:] for _, v in runs]
        r = np.concatenate(res) if res else np.empty(0)
        r = r[np.isfinite(r)]
        # too short to warm up: fitted, but calibration turns it off and says why
        self.scale_ = float(1.4826 * np.median(np.abs(r - np.median(r)))) if len(r) >= 100 \
            else float("nan")
        return self

    def calibrate(self, runs, period_ns, budget):
        if not np.isfinite(self.scale_):
            self.enabled_, self.threshold_ = False, float(self.max_useful)
            self.calibration_ = {"why_off": (
                f"the training data is too short for its baseline to warm up (each run needs "
                f"more than {self._warm()} samples: the {self.halflife_s:g} s half-life); give a "
                "longer training range or a shorter halflife_s")}
            return self
        return super().calibrate(runs, period_ns, budget)

    def _scale(self):
        # at least _MIN_SCALE: |x - EWMA| <= 4 * Z_MAX_ABS, so |long_z| <= 4e300 stays finite
        return max(self.scale_, self.std_floor_, _MIN_SCALE)

    def hold_ns(self, period_ns=None):
        """A tenth of the half-life (3 min at 30 min), at least the default: the statistic moves
        on the baseline's time scale, and its flickers at the threshold while the EWMA catches
        up with a change are one episode, not many."""
        return max(super().hold_ns(period_ns), int(self.halflife_s * 1e8))

    def decluster_ns(self, period_ns=None):
        """An excursion of the EWMA residual lasts about a half-life: one peak for the tail fit."""
        return max(self.hold_ns(period_ns), int(self.halflife_s * 1e9))

    def _batch_z(self, values, streak):
        return self._z(values, None)[0]

    def _z(self, values, state):
        """``long_z`` and the EWMA state after ``values``; NaN while the EWMA warms up."""
        r, after = ewma_residuals(values, self._alpha(), state)
        fin = _usable(np.asarray(values, np.float64))
        seen_before = 0 if state is None else state[0]
        before = seen_before + np.cumsum(fin) - fin  # finite samples absorbed before each one
        r[before < self._warm()] = np.nan
        return r / self._scale(), after

    def fitted_data(self):
        meta, arrays = super().fitted_data()
        return meta | {"scale": self.scale_ if np.isfinite(self.scale_) else None}, arrays

    def set_fitted(self, meta, arrays):
        super().set_fitted(meta, arrays)
        self.scale_ = float("nan") if meta.get("scale") is None else float(meta["scale"])
        if not (np.isnan(self.scale_) or self.scale_ >= 0):
            raise ValueError(f"drift detector: scale must be a number >= 0, got {self.scale_}")

    def new_state(self):
        return DriftState(self)


class DriftState(DetectorState):
    """The EWMA (count, ref, md), the last ``streak - 1`` values of ``|long_z|`` and the hold."""

    def __init__(self, det: DriftDetector):
        self.det = det
        self.ewma = None
        self.tail = []
        self.last_hit = None

    def update_many(self, times_ns, values) -> DetectorOutput:
        d = self.det
        t = np.asarray(times_ns, np.int64)
        z, self.ewma = d._z(values, self.ewma)
        k = d.streak_ - 1
        both = np.concatenate([np.asarray(self.tail, np.float64), z])
        stat = streak_min(both, d.streak_)[len(self.tail):]
        raw = stat > d.threshold_
        self.tail = [float(v) for v in np.nan_to_num(np.abs(both), nan=0.0)[max(0, len(both) - k):]] \
            if k > 0 else []
        alarm, self.last_hit = hold_alarm(t, raw, d.hold_ns(), self.last_hit)
        return DetectorOutput(d, t, z, alarm, d.threshold_)

    def get_data(self):
        return ({"ewma": self.ewma, "last_hit": self.last_hit},
                {"tail": np.asarray(self.tail, np.float64)})

    def set_data(self, meta, arrays):
        e = meta.get("ewma")
        self.ewma = None if e is None else [int(e[0]), float(e[1]), float(e[2])]
        tail = np.asarray(arrays.get("tail", np.empty(0)), np.float64)
        if tail.ndim != 1 or len(tail) > max(0, self.det.streak_ - 1):
            raise ValueError("drift state: the streak tail has the wrong shape")
        self.tail = [float(v) for v in tail]
        self.last_hit = None if meta.get("last_hit") is None else int(meta["last_hit"])
