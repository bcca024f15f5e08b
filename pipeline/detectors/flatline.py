"""Flat line: a stuck sensor, a held value, a dropout to zero, a lead come off.

A shape model cannot see a flat line (each segment of it looks like the quiet
baseline between beats), and a z-score only sees its first sample.  This
detector measures, at every sample, how long the series has stayed on one
value: ``flat_s``, the seconds since the current *flat run* began.  A run
continues while consecutive samples differ by at most ``tol`` and no gap
(a step of >= 1.5 sample periods) or non-finite value breaks it.

``tol`` is learned from the normal data: half its *resolution*, the 1st
percentile of the non-zero steps between consecutive samples.  With an
ADC's quantization that is half a quantum, so a run is a stretch of
identical readings; with float data it is a tiny fraction of the normal
variation.  Normal data has flat runs too (quantized readings repeat), and
calibration learns how long they get at this sample rate: the threshold on
``flat_s`` is set so that normal data stays within the alarm budget, and it
is never shorter than 3 samples.

A sample beyond ``config.Z_MAX_ABS`` (1e100) in magnitude is treated like
NaN (``docs/extremes.md``): it breaks the run and scores NaN.
"""

from __future__ import annotations

import numpy as np

from .. import config
from ..checks import _usable
from ..series import GAP_FACTOR
from .base import Detector, DetectorOutput, DetectorState, hold_alarm, register

__all__ = ["FlatLineDetector", "resolution"]


def resolution(runs) -> float:
    """The smallest typical step of the data: the 1st percentile of its non-zero |steps|.

    >>> x = np.round(np.sin(np.arange(1000) / 50.0), 2)   # quantized to 0.01
    >>> float(round(resolution([(None, x)]), 6))
    0.01
    """
    steps = [np.abs(np.diff(_as_usable(v))) for _, v in runs]
    d = np.concatenate(steps) if steps else np.empty(0)
    d = d[np.isfinite(d) & (d > 0)]
    return float(np.percentile(d, 1)) if len(d) else 0.0


def _as_usable(values) -> np.ndarray:
    """float64 values with those beyond ``Z_MAX_ABS`` (and inf) as NaN: then no step overflows.

    >>> _as_usable([1.0, 1.7e308, -np.inf, -1e100]).tolist()
    [1.0, nan, nan, -1e+100]
    """
    v = np.asarray(values, np.float64)
    ok = _usable(v)
    return v if ok.all() else np.where(ok, v, np.nan)


def flat_runs(times, values, tol: float, period_ns: float, carry=None):
    """``flat_s`` per sample and the carry ``(run_start_ns, last_t, last_v)`` for the next chunk.

    >>> s, _ = flat_runs([0, 10, 20, 30, 40], [1.0, 1.0, 1.0, 2.0, 2.0], 0.0, 10)
    >>> (s * 1e9).tolist()
    [0.0, 10.0, 20.0, 0.0, 10.0]
    """
    t = np.asarray(times, np.int64)
    v = _as_usable(values)
    n = len(t)
    if n == 0:
        return np.empty(0), carry
    run_start, last_t, last_v = carry if carry is not None else (None, None, np.nan)
    prev_t = np.empty(n, np.int64)
    prev_v = np.empty(n)
    prev_t[1:], prev_v[1:] = t[:-1], v[:-1]
    prev_t[0] = t[0] if last_t is None else last_t
    prev_v[0] = last_v
    with np.errstate(invalid="ignore"):
        cont = ((np.abs(v - prev_v) <= tol) & (t - prev_t < GAP_FACTOR * period_ns)
                & np.isfinite(v))
    if last_t is None or run_start is None:
        cont[0] = False
    idx = np.where(cont, -1, np.arange(n))
    start_idx = np.maximum.accumulate(idx)
    starts = np.where(start_idx >= 0, t[np.maximum(start_idx, 0)],
                      run_start if run_start is not None else 0)
    flat = (t - starts) / 1e9
    finite = np.isfinite(v)
    flat[~finite] = np.nan
    last = n - 1
    carry = (int(starts[last]) if finite[last] else None, int(t[last]), float(v[last]))
    return flat, carry


@register
class FlatLineDetector(Detector):
    """Seconds on one value (within ``tol``), calibrated to the alarm budget.

    Parameters
    ----------
    tol : float or None, default=None
        Largest step that continues a flat run; ``None`` learns half the
        data's resolution (:func:`resolution`) at fit.
    min_samples : int, default=3
        The threshold is never below this many sample periods.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> t = np.arange(20000) * 10**7                       # 100 Hz
    >>> x = np.round(rng.standard_normal(20000), 2)
    >>> det = FlatLineDetector().fit([(t[:10000], x[:10000])], 1e7)
    >>> det = det.calibrate([(t[10000:], x[10000:])], 1e7, 1.0)
    >>> y = x[10000:].copy(); y[5000:5100] = 0.0           # one second stuck at zero
    >>> out = det.new_state().update_many(t[10000:], y)
    >>> int(np.flatnonzero(out.alarm)[0]) > 5000, bool(out.alarm[:5000].any())
    (True, False)
    """

    name = "flatline"
    label = "flat line"
    per_sample = True
    score_field = "flat_s"
    threshold_field = "flat_threshold"
    alarm_field = "flat_alert"
    score_omitted = 0.0
    """The stream writes ``flat_s`` only where a sample continues a run (or is in alarm):
    a point without it started a run (it differs from the sample before), 0 s."""

    def __init__(self, tol=None, min_samples=3):
        self.tol = tol
        self.min_samples = min_samples

    def fit(self, runs, period_ns: float) -> FlatLineDetector:
        if self.tol is not None and not (
                isinstance(self.tol, (int, float)) and not isinstance(self.tol, bool)
                and 0 <= self.tol <= config.Z_MAX_ABS):
            raise ValueError(f"tol must be a finite number in [0, {config.Z_MAX_ABS:g}] or None, "
                             f"got {self.tol!r}")
        if not (isinstance(self.min_samples, int) and not isinstance(self.min_samples, bool)
                and 2 <= self.min_samples <= 10**6):
            raise ValueError(f"min_samples must be an integer in [2, 1000000], "
                             f"got {self.min_samples!r}")
        self.tol_ = float(self.tol) if self.tol is not None else 0.5 * resolution(runs)
        self.period_ns_ = float(period_ns)
        return self

    def calibration_scores(self, times_ns, values):
        flat, _ = flat_runs(times_ns, values, self.tol_, self.period_ns_)
        return np.asarray(times_ns, np.int64), flat

    def _min_threshold(self) -> float:
        return (self.min_samples - 1) * self.period_ns_ / 1e9

    def new_state(self) -> FlatLineState:
        return FlatLineState(self)

    def fitted_data(self):
        return {"tol": self.tol_}, {}

    def set_fitted(self, meta, arrays):
        self.tol_ = float(meta["tol"])


class FlatLineState(DetectorState):
    def __init__(self, det: FlatLineDetector):
        self.det = det
        self.carry = None
        self.last_hit = None

    def update_many(self, times_ns, values) -> DetectorOutput:
        d = self.det
        t = np.asarray(times_ns, np.int64)
        flat, self.carry = flat_runs(t, values, d.tol_, d.period_ns_, self.carry)
        with np.errstate(invalid="ignore"):
            raw = flat > d.threshold_
        alarm, self.last_hit = hold_alarm(t, raw, d.hold_ns(), self.last_hit)
        return DetectorOutput(d, t, flat, alarm, d.threshold_)

    def get_data(self):
        c = self.carry
        return {"carry": None if c is None else [c[0], c[1], None if not np.isfinite(c[2])
                                                 else c[2]],
                "last_hit": self.last_hit}, {}

    def set_data(self, meta, arrays):
        c = meta.get("carry")
        self.carry = None if c is None else (
            None if c[0] is None else int(c[0]), int(c[1]), np.nan if c[2] is None else float(c[2]))
        self.last_hit = None if meta.get("last_hit") is None else int(meta["last_hit"])
