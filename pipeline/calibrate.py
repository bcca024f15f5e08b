"""Thresholds for an alarm budget in events per hour, extrapolated with extreme-value theory.

A person thinks in alarms per hour or per day, not in a quantile of segment
scores.  :func:`calibrate_threshold` takes a detector's alarm statistic on
held-out *normal* data (``stat > threshold`` is where an alarm starts) and
returns the threshold at which the alarm **events** stay within a budget:
hits the detector's held alarm (held ``gap_ns`` after each hit) joins are
one event, exactly the maximal runs of the alarm that the stream writes and
the alert path turns into one alert.

Two estimates, the larger wins:

* **Empirical**: the lowest threshold at which the held-out data has at most
  ``floor(budget * hours)`` events.
* **Extreme-value (POT, as SPOT does; Siffer et al., KDD 2017)**: the events
  above a high level ``u`` are declustered into one peak each; their
  excesses over ``u`` are fitted with an exponential or a generalized Pareto
  distribution.  The event rate above ``t`` is then
  ``N_u / hours * P(excess > t - u)``, and the threshold is the ``t`` where
  it equals the budget.  This is what lets a budget of one event per day be
  set from an hour of data: the tail is extrapolated, not counted.

The level ``u`` is the ``q_init`` (98 %) quantile of the statistic, lowered
(95 %, 90 %) until there are :data:`TARGET_PEAKS` peaks to fit when the
held-out data is short, then raised (99 %, 99.5 %, 99.9 %) when there are
still too few, because exceedances closer than the hold merge into one
cluster; failing that, the level with the most peaks.  The tail's shape is **exponential** (``xi = 0``,
the Gumbel domain of maxima of Gaussian-like errors) unless the peaks show a
heavier tail: with at least :data:`GPD_MIN_PEAKS` peaks, the GPD is used when
its maximum-likelihood ``xi > 0`` fits significantly better (likelihood-ratio
test at 5 %).  A *bounded* tail
(``xi < 0``) is never extrapolated: from a few dozen peaks its end point is
an estimate of the largest value *seen*, and a threshold just above it
floods on the next hour of normal data.

A statistic on a *lattice* (a flat run's length: whole sample periods) has
a geometric tail, and many peaks tie on one lattice point, which a
continuous fit reads as "nothing lies above": :func:`lattice_step` detects
it, and the tail is then fitted as geometric steps above the level
(method ``evt-lattice``).  Its level is a lattice point and its peaks lie
at least a step above it: values on the level's own point (a median of
quantized readings, 0.015 and 0.015000000000000008) differ from it by
rounding only, and are never counted as peaks nor fitted as a continuous
tail.

Confirming a budget by counting needs data: seeing no false alarm in ``3 /
budget`` hours bounds the rate below the budget with 95 % confidence (the
rule of three).  The result says how much normal data would confirm the
budget and warns when the held-out data is shorter; with fewer than
``MIN_PEAKS`` peaks there is no tail to fit, the threshold is the largest
held-out statistic times ``FALLBACK_MARGIN``, and the warning says so.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

__all__ = ["Calibration", "calibrate_threshold", "count_events", "cluster_peaks", "fit_tail",
           "lattice_step",
           "CalibrationWarning", "MIN_PEAKS", "TARGET_PEAKS", "Q_INIT", "Q_LOWER",
           "Q_HIGHER", "FALLBACK_MARGIN", "LR_CRITICAL", "GPD_MIN_PEAKS"]

Q_INIT = 0.98
"""The level ``u`` of the peaks-over-threshold fit, as a quantile of the statistic."""
Q_LOWER = (0.95, 0.9)
"""Lower levels tried, in order, while there are fewer than ``TARGET_PEAKS`` peaks."""
Q_HIGHER = (0.99, 0.995, 0.999)
"""Higher levels tried after the lower ones, while there are still fewer than ``TARGET_PEAKS``
peaks: when the statistic is above the level more often than the hold, its exceedances merge
into a few long clusters (a flat run's length on a noisy 360 Hz signal: runs of two samples come
several times a second), and only a higher level separates them into peaks."""
TARGET_PEAKS = 30
"""Peaks wanted for the tail fit (the exponential scale then has a ~18 % standard error)."""
LR_CRITICAL = 3.841
"""The chi-square(1) 95 % point: a GPD with ``xi > 0`` must beat the exponential by this much."""
GPD_MIN_PEAKS = 50
"""Fewer peaks than this: the tail's shape is not estimated (one outlier among 30 peaks makes a
significant but meaningless ``xi``); the exponential is used."""
MIN_PEAKS = 10
"""Fewer declustered peaks than this: no tail fit (too little data to say anything)."""
FALLBACK_MARGIN = 1.25
"""Without a tail fit, the threshold is this times the largest held-out statistic."""


class CalibrationWarning(UserWarning):
    """The held-out data is too short to confirm the alarm budget."""


def cluster_peaks(times, stat, level: float, gap_ns: int) -> np.ndarray:
    """Maxima of the clusters of ``stat > level``: the episodes of the detector's held alarm.

    A hit continues the previous hit's cluster when no sample between them lies more than
    ``gap_ns`` after the previous hit, i.e. when the alarm held for ``gap_ns``
    (:func:`~pipeline.detectors.base.hold_alarm`) is still on at the sample before it: the
    clusters are exactly the maximal runs of the held alarm.

    >>> cluster_peaks(range(9), [5, 1, 6, 0, 0, 0, 0, 7, 0], level=2, gap_ns=3).tolist()
    [6.0, 7.0]
    >>> cluster_peaks([0, 1, 2], [1.0, 0.0, 1.0], level=0.5, gap_ns=1).tolist()  # held at 1
    [1.0]
    """
    t = np.asarray(times, np.int64)
    s = np.asarray(stat, np.float64)
    idx = np.flatnonzero(s > level)  # NaN never hits
    if len(idx) == 0:
        return np.empty(0)
    # the sample just before each later hit, against the hit before it
    new = t[idx[1:] - 1] - t[idx[:-1]] > gap_ns
    first = np.r_[0, np.flatnonzero(new) + 1]
    return np.maximum.reduceat(s[idx], first)


def count_events(stats, threshold: float, gap_ns: int) -> int:
    """Alarm events at ``threshold`` over several runs ``[(times, stat), ...]``.

    >>> count_events([(range(8), [5, 1, 6, 0, 0, 0, 0, 7])], threshold=2, gap_ns=3)
    2
    """
    return sum(len(cluster_peaks(t, s, threshold, gap_ns)) for t, s in stats)


@dataclass
class Calibration:
    """The outcome of :func:`calibrate_threshold`: the threshold and its evidence."""

    threshold: float
    method: str
    budget_per_hour: float
    hours: float
    n_events: int
    n_peaks: int
    level: float | None
    shape: float | None
    scale: float | None
    max_stat: float | None
    hours_to_confirm: float
    warning: str | None

    def evidence(self) -> dict:
        """JSON-able evidence for the model file."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in self.__dict__.items()} | {"budget_per_day": self.budget_per_hour * 24}


def fit_tail(excess) -> tuple[float, float]:
    """``(xi, scale)`` of the tail of positive excesses: exponential unless a heavier tail is clear.

    The exponential (``xi = 0``, scale = mean excess) is the default.  With
    at least :data:`GPD_MIN_PEAKS` excesses, the generalized Pareto's
    maximum-likelihood fit replaces it when its ``xi`` is positive and its
    log-likelihood beats the exponential's by ``LR_CRITICAL / 2`` (a
    likelihood-ratio test at 5 %); ``xi`` is then capped at 0.5.  Negative
    ``xi`` (a bounded tail) is never used.

    >>> rng = np.random.default_rng(0)
    >>> xi, scale = fit_tail(rng.exponential(2.0, 200))
    >>> xi, bool(1.7 < scale < 2.3)
    (0.0, True)
    >>> fit_tail(rng.pareto(2.0, 400) + 1e-9)[0] > 0.3      # a heavy tail is seen
    True
    """
    x = np.asarray(excess, np.float64)
    scale0 = float(max(np.mean(x), 1e-300)) if len(x) else 1e-300
    if len(x) < GPD_MIN_PEAKS or not np.ptp(x) > 0:
        return 0.0, scale0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            c, _, scale = sps.genpareto.fit(x, floc=0.0)
            if not (np.isfinite(c) and np.isfinite(scale) and scale > 0 and c > 0):
                return 0.0, scale0
            c = float(min(c, 0.5))
            ll_gpd = float(np.sum(sps.genpareto.logpdf(x, c, 0.0, scale)))
            ll_exp = float(np.sum(sps.expon.logpdf(x, 0.0, scale0)))
    except Exception:  # scipy's optimiser can fail on degenerate samples
        return 0.0, scale0
    if np.isfinite(ll_gpd) and 2.0 * (ll_gpd - ll_exp) > LR_CRITICAL:
        return c, float(scale)
    return 0.0, scale0


def lattice_step(values, tol: float = 1e-3) -> float | None:
    """The step ``d`` when every value is a whole multiple of ``d`` (within ``tol * d``), else None.

    A flat run's length (whole sample periods, up to the rounding of the timestamps) is such a
    *lattice* statistic; its tail is geometric, not continuous.  Gaps between neighbouring values
    more than 10 times smaller than the next larger gap are rounding, not steps: float rounding
    (0.015 and 0.015000000000000008), or the microsecond rounding of times read from a CSV (a
    1/360 s period is 2777 or 2778 µs).  The step is refined over the whole span, so that such
    jitter does not add up along the lattice.  A lattice spans at most 100 of its points per
    distinct value (and 10**6 in all): a continuous statistic's smallest gap (1e-30 between two
    values near 0) would make every value a "whole" multiple in floating point.

    >>> lattice_step(np.array([0.0, 1 / 90, 2 / 90 + 1e-10, 5 / 90])) * 90
    1.0
    >>> float(round(1 / lattice_step(np.array([0.0, 0.002777, 0.002778, 0.005556, 0.033333])), 3))
    360.0
    >>> lattice_step(np.array([1.0, 2.0, 3.0, 4.0, 44.0]))   # a long run far out is still on it
    1.0
    >>> lattice_step(np.random.default_rng(0).exponential(size=100)) is None
    True
    """
    v = np.unique(np.asarray(values, np.float64)[np.isfinite(values)])
    if len(v) < 2 or not v[-1] > v[0]:
        return None
    g = np.sort(np.diff(v))
    # rounding gaps lie below a jump of 10x; try the first few such jumps, then every gap
    cands = [int(i) + 1 for i in np.flatnonzero(g[1:] > 10 * g[:-1])[:3]] + [0]
    for i in cands:
        step = float(g[i])
        span = (v[-1] - v[0]) / step
        if span > min(100 * len(v), 10**6):
            continue
        if v[-1] > 0:
            step = float(v[-1] / max(1, round(v[-1] / step)))  # refined over the span
        k = v / step
        if bool(np.all(np.abs(k - np.round(k)) < tol)):
            return step
    return None


def _lattice_tail(peaks, level, step, per_hour, hours):
    """``(threshold, p)`` for a lattice statistic: geometric excesses above the level.

    ``level`` is a lattice point and ``peaks`` the clusters above half a step over it
    (:func:`_lattice_level`), so rounding noise never makes a peak; each peak is ``j`` whole
    steps above the first point over it, ``P(j >= m) = p**m`` with ``p`` estimated as
    ``(sum j + 1/2) / (n + sum j + 1/2)`` (never 0 from a short run); the threshold is the half
    step under the lowest point where ``n / hours * p**m`` is within the budget.
    """
    k_u = math.floor(level / step + 0.5)
    n = len(peaks)
    j = np.maximum(np.round(peaks / step) - k_u - 1, 0)
    p = (j.sum() + 0.5) / (n + j.sum() + 0.5)
    if not 0 < p < 1:
        return None, None
    m = 0
    if n / hours > per_hour:
        m = max(0, math.ceil(math.log(per_hour * hours / n) / math.log(p) - 1e-12))
    return (k_u + m + 0.5) * step, float(p)


def _lattice_level(value, step) -> tuple[float, float]:
    """``(level, above)``: the lattice point nearest ``value``, and half a step over it (where
    peaks begin: values on the point differ from it by rounding only).

    >>> _lattice_level(0.015000000000000008, 0.0025)
    (0.015, 0.01625)
    """
    k = math.floor(value / step + 0.5)
    return k * step, (k + 0.5) * step


def _empirical(stats, allowed: int, gap_ns: int, values: np.ndarray) -> float:
    """The lowest candidate threshold with at most ``allowed`` events (binary search)."""
    cand = np.unique(values)
    lo, hi = 0, len(cand) - 1  # count_events(cand[-1]) == 0: nothing is above the maximum
    while lo < hi:
        mid = (lo + hi) // 2
        if count_events(stats, float(cand[mid]), gap_ns) <= allowed:
            hi = mid
        else:
            lo = mid + 1
    return float(cand[lo])


def calibrate_threshold(stats, hours: float, budget, gap_ns: int, q_init: float = Q_INIT,
                        warn: bool = True, decluster_ns: int | None = None) -> Calibration:
    """The threshold that keeps alarm events on held-out normal data within ``budget``.

    Parameters
    ----------
    stats : list of (times_ns, stat)
        The alarm statistic on each held-out normal run.
    hours : float
        Duration of the held-out data.
    budget : Budget or float
        Events per hour (a :class:`~pipeline.detectors.base.Budget` or a number).
    gap_ns : int
        The detector's hold: hits its held alarm joins are one event (:func:`cluster_peaks`).
    q_init : float, default=0.98
        Quantile of the statistic above which peaks are fitted (lowered to
        :data:`Q_LOWER` while there are fewer than :data:`TARGET_PEAKS` peaks).
    decluster_ns : int, optional
        For the tail fit only, peaks are clusters joined over ``max(gap_ns, decluster_ns)``:
        a slow statistic (an EWMA residual) wanders around a level for a while, and its
        flickers there are one excursion, not many independent peaks (which would make the
        tail look short).  Events are still counted with ``gap_ns``.

    Returns
    -------
    Calibration

    Examples
    --------
    Two hours of unit Gaussian noise at 1 Hz, a budget of one event per hour:

    >>> rng = np.random.default_rng(0)
    >>> t = np.arange(7200) * 10**9
    >>> c = calibrate_threshold([(t, np.abs(rng.standard_normal(7200)))], 2.0, 1.0, 10**9,
    ...                         warn=False)
    >>> c.n_events <= 2, 3.0 < c.threshold < 4.5, c.method
    (True, True, 'evt')
    """
    per_hour = float(getattr(budget, "per_hour", budget))
    if not (0 < per_hour and math.isfinite(per_hour)):
        raise ValueError(f"budget must be a positive number of events per hour, got {budget!r}")
    stats = [(np.asarray(t, np.int64), np.asarray(s, np.float64)) for t, s in stats]
    finite = np.concatenate([s[np.isfinite(s)] for _, s in stats] or [np.empty(0)])
    to_confirm = 3.0 / per_hour
    if len(finite) == 0 or hours <= 0:
        raise ValueError("no held-out scores to calibrate on: give a longer validation range of "
                         "normal data")
    allowed = math.floor(per_hour * hours)
    max_stat = float(finite.max())
    fit_gap = max(int(gap_ns), int(decluster_ns or 0))
    # the first level with TARGET_PEAKS peaks, going down then up; else the one with the most (a
    # lower level can have fewer: its clusters merge)
    step = lattice_step(finite)
    level, peaks = None, np.empty(0)
    for q in (q_init, *(q for q in Q_LOWER if q < q_init), *(q for q in Q_HIGHER if q > q_init)):
        lv = above = float(np.quantile(finite, q))
        if step is not None:
            lv, above = _lattice_level(lv, step)
        pk = np.concatenate([cluster_peaks(t, s, above, fit_gap) for t, s in stats])
        if level is None or len(pk) > len(peaks):
            level, peaks = lv, pk
        if len(peaks) >= TARGET_PEAKS:
            break
    # events above the level: the top candidates suffice for the empirical search
    top = finite[finite >= level]
    t_emp = _empirical(stats, allowed, gap_ns, top) if allowed < len(peaks) else level
    shape = scale = None
    t_lat = None
    if step is not None and len(peaks) >= MIN_PEAKS:
        t_lat, p_lat = _lattice_tail(peaks, level, step, per_hour, hours)
    if t_lat is not None:
        # reported as the equivalent exponential: P(> x) = p ** (x / step)
        shape, scale = 0.0, float(-step / math.log(p_lat))
        threshold, method = (t_lat, "evt-lattice") if t_lat > t_emp else (t_emp, "empirical")
    elif step is None and len(peaks) >= MIN_PEAKS:
        shape, scale = fit_tail(peaks - level)
        p = per_hour * hours / len(peaks)  # the share of peaks the budget allows
        t_evt = level + float(sps.genpareto.isf(p, shape, 0.0, scale)) if p < 1 else level
        threshold, method = (t_evt, "evt") if t_evt > t_emp else (t_emp, "empirical")
    else:
        threshold = max(t_emp, max_stat * FALLBACK_MARGIN if max_stat > 0 else max_stat)
        method = "max"
    msg = None
    if hours < to_confirm:
        msg = (f"held-out normal data covers {hours:.3g} h; confirming a budget of "
               f"{per_hour:.3g} alarm events per hour needs about {to_confirm:.3g} h "
               "(rule of three)")
        if method == "max":
            msg += (f"; with only {len(peaks)} peaks there is no tail to extrapolate: the "
                    f"threshold is {FALLBACK_MARGIN}x the largest held-out score, too short to "
                    "say anything about the budget. Give more normal data")
        else:
            msg += f"; the threshold is extrapolated from {len(peaks)} peaks ({method})"
        if warn:
            warnings.warn(msg, CalibrationWarning, stacklevel=2)
    n_events = count_events(stats, threshold, gap_ns)
    return Calibration(float(threshold), method, per_hour, float(hours), int(n_events),
                       int(len(peaks)), level, shape, scale, max_stat, to_confirm, msg)
