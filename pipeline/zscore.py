"""Rolling z-score detector: streaming state and vectorized twin, with a streak guard.

This is the Plexus tutorial's temperature detector (a 15-sample window at a
2 s cadence, ``|z| > 3`` for 3 consecutive samples emits
``temperature.zscore``) with its mistakes fixed (see ``docs/zscore.md``):

1. **The current sample was inside its own baseline.**  The tutorial took the
   mean and sample std (``ddof=1``) of the last 15 samples *including* the
   one being scored.  Then ``|z| <= (n - 1) / sqrt(n)`` always (Samuelson's
   bound with ``ddof=1``): 3.61 for ``n = 15``.  The tutorial's printed
   ``z = 5.04`` is impossible, and a spike of any size barely reaches 3.6.
   Here each sample is scored against the ``window`` finite samples *before*
   it; a spike gets the large ``z`` it deserves.
2. **A zero std silently returned ``z = 0``.**  Here the std is floored at
   ``std_floor + EPS_STD * max(1, |mean|)``: a flat signal scores 0 and a
   step after a flat stretch scores a large *finite* ``z``.
3. **An alert flapped on and off with the noise.**  Here an alert turns on
   after ``streak`` consecutive samples with ``|z| > threshold`` and stays on
   until the first sample with ``|z| <= resolve`` (hysteresis).

A fourth trap comes with scoring against the previous window: the first
outlier of a level shift enters the next baselines and inflates their std,
so a step of any size gives a streak of 2 at most: the tutorial's streak
guard can never fire on a level shift or a 3-sample spike.  ``lag`` leaves
that many samples between the baseline and the scored sample; its default,
``streak - 1``, judges every streak against a baseline none of its samples
is part of, so a step or a spike of 3 samples alerts (``lag=0`` restores
the plain previous-window semantics).

Sign convention: ``z`` is signed (positive above the baseline); higher
``|z|`` is more anomalous, and the emitted score is ``|z|`` while an alert is
on, 0 otherwise.  NaN in, NaN out: a non-finite sample gets ``z = NaN``, is
not added to the baseline, resets the streak and ends an alert.  A NaN never
raises an alert.

Extreme magnitudes: a finite sample with ``|x| > config.Z_MAX_ABS`` (1e100)
is treated exactly like NaN (and counted in :attr:`RollingZScore.n_extreme`),
so no square or sum of squares can overflow and any finite number is scored
or refused without an exception.  Subnormal numbers are ordinary samples.
The parameters are bounded too: ``window`` and ``lag`` at most
``config.Z_MAX_WINDOW`` (1,000,000), ``std_floor`` at most ``Z_MAX_ABS``.  "Above" a limit ``v`` means ``|z| > v + 1e-9 * max(1, v)``,
so that exact ties (common with quantized readings) decide the same way in
every implementation.

Numerics: both implementations work on deviations from a local reference
value, so adding 1e8 to the data changes nothing, and each bounds its own
rounding error.  :class:`RollingZScore` keeps a ring buffer with rolling sums
and rebuilds them exactly (``math.fsum``) from the ring whenever the
accumulated rounding could exceed 1e-10 of the variance (and at least every
``64 * window`` updates), so error never accumulates over a long stream.
:func:`rolling_zscore` uses blocked prefix sums (one complex ``cumsum`` for
the sums of ``d`` and ``d**2``) anchored per block, and recomputes with an
exact two-pass formula every window whose error bound is too large.  Both
agree to ~1e-10.

This module holds the two detectors; their parts live in
:mod:`pipeline.checks` (parameter checks, the usable-sample rule),
:mod:`pipeline.streak` (the streak guard, :class:`ZScoreResult`,
:class:`ZScoreBatch`) and :mod:`pipeline.zscore_kernel` (the blocked kernel).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from . import config
from .checks import _all_usable, _check_params, _n_extreme, _usable
from .streak import (
    ZScoreBatch,
    ZScoreResult,
    _above,
    _above_limit,
    _guard,
    _guard_reset,
    _guard_step,
    streak_guard,
)
from .zscore_kernel import _BLOCKED_MAX_WINDOW, _EPS, _TOL, _kernel, _Marks

__all__ = [
    "ZScoreResult",
    "ZScoreBatch",
    "RollingZScore",
    "rolling_zscore",
    "streak_guard",
]

_KACC = _TOL / (4.0 * _EPS)
_CYCLES = 64
"""The streaming sums are rebuilt from the ring at least every this many
passes over it (every ``64 * window`` updates), whatever the error bound says."""
_MAX_ABS = config.Z_MAX_ABS
_sqrt = math.sqrt
_EPS_STD = config.EPS_STD


def _run(x, buf, w, lag, minp, std_floor, resolve, threshold):
    """z for all of ``x`` (non-finite or beyond ``Z_MAX_ABS`` -> NaN), the marks
    for :func:`_guard` (``nr``, ``hit``), the new buffer (the last ``w + lag``
    usable values) and the number of finite samples refused for their magnitude."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"x must be 1-D, got shape {x.shape}")
    if w > _BLOCKED_MAX_WINDOW:
        return _run_streaming(x, buf, w, lag, minp, std_floor, resolve, threshold)
    marks = _Marks(resolve, threshold)
    n_ext = 0
    if _all_usable(x):
        f = np.ascontiguousarray(x)
        z = _kernel(f, buf, w, lag, minp, std_floor, marks)
        nr, hit = marks.arrays()
    else:
        fin = _usable(x)
        n_ext = _n_extreme(x, fin)
        f = x[fin]
        zf = _kernel(f, buf, w, lag, minp, std_floor, marks)
        z = np.full(x.size, np.nan)
        z[fin] = zf
        nr, hit = marks.arrays()
        nr = np.flatnonzero(fin)[nr]
    g = w + lag
    if f.size >= g:
        new_buf = f[-g:].tolist()
    else:
        new_buf = (list(buf) + f.tolist())[-g:]
    return z, nr, hit, new_buf, n_ext


def _run_streaming(x, buf, w, lag, minp, std_floor, resolve, threshold):
    """:func:`_run` for windows beyond the blocked kernel: the streaming
    recurrence of :meth:`RollingZScore.update`, one sample at a time."""
    det = RollingZScore(w, minp, threshold, 1, resolve, std_floor, lag)
    det._set_state(buf, 0, False)
    update = det.update
    z = np.fromiter((update(v).z for v in x.tolist()), dtype=np.float64, count=x.size)
    nr = _above(z, resolve)
    hit = np.abs(z[nr]) > _above_limit(threshold)
    return z, nr, hit, det._ring(), det.n_extreme


def rolling_zscore(x, window=config.Z_WINDOW, min_periods=config.Z_MIN_PERIODS,
                   threshold=config.Z_THRESHOLD, streak=config.Z_STREAK,
                   resolve=config.Z_RESOLVE, std_floor=0.0, lag=None) -> ZScoreBatch:
    """Rolling z-score of each sample against the samples before it (vectorized).

    The batch twin of :class:`RollingZScore`: equal to feeding ``x`` to a
    fresh ``RollingZScore(...).update`` one sample at a time (to ~1e-10).

    ``z[i] = (x[i] - mean(prev)) / max(std(prev, ddof=1), std_floor +
    EPS_STD * max(1, |mean(prev)|))`` where ``prev`` holds the up to
    ``window`` finite samples before ``i`` (skipping the ``lag`` most recent
    ones); ``z[i]`` is NaN while ``prev`` holds fewer than ``min_periods``
    samples and where ``x[i]`` is not finite or ``|x[i]| > config.Z_MAX_ABS``
    (such samples never enter a baseline; ``np.abs(x) > Z_MAX_ABS`` counts
    them).

    Parameters
    ----------
    x : array_like of float, shape (n,)
        Samples in time order; NaN/inf (and ``|x| > Z_MAX_ABS``) mark missing
        samples.
    window : int, default=config.Z_WINDOW
        Baseline length in samples; in [2, config.Z_MAX_WINDOW].
    min_periods : int, default=config.Z_MIN_PERIODS
        Baseline samples needed before a z is produced; in [2, window].
    threshold : float, default=config.Z_THRESHOLD
        ``|z|`` above this counts toward a streak; > 0.
    streak : int, default=config.Z_STREAK
        Consecutive samples above ``threshold`` that turn the alert on; >= 1.
    resolve : float, default=config.Z_RESOLVE
        An active alert turns off at the first ``|z| <= resolve`` (or NaN);
        in [0, threshold).
    std_floor : float, default=0.0
        Absolute std floor (in the data's unit), added to the relative floor
        ``EPS_STD * max(1, |mean|)``; in [0, config.Z_MAX_ABS].
    lag : int or None, default=None
        Finite samples between the baseline and the scored sample; in
        [0, config.Z_MAX_WINDOW]; None means ``streak - 1``, so a streak is
        judged against a baseline
        none of its samples is part of.  With ``lag=0`` the first outlier of
        a level shift enters the baseline of the second and inflates its std,
        so a step of any size gives a streak of 2 at most.

    Returns
    -------
    ZScoreBatch
        ``z`` (float64, signed), ``streak`` (int64), ``alert`` (bool) and
        ``emitted`` (float64, ``|z|`` while alert else 0.0).

    Examples
    --------
    A spike scores against the window before it (the tutorial's
    self-including window could never exceed 1.79 for ``n = 5``):

    >>> x = [20.0, 20.2, 19.9, 20.1, 20.0, 20.1, 25.0, 20.1, 19.9]
    >>> r = rolling_zscore(x, window=5, min_periods=5, lag=0)
    >>> np.round(r.z, 1).tolist()
    [nan, nan, nan, nan, nan, 0.5, 43.3, -0.4, -0.5]
    >>> r.streak.tolist()
    [0, 0, 0, 0, 0, 0, 1, 0, 0]
    >>> bool(r.alert.any())  # one sample is not a streak of 3
    False
    >>> rolling_zscore(x, window=5, min_periods=5, streak=1, lag=0).alert.astype(int).tolist()
    [0, 0, 0, 0, 0, 0, 1, 0, 0]

    A flat baseline gives z = 0, and a step after it a large finite z (the floor):

    >>> rolling_zscore([5.0] * 6 + [6.0], window=5, min_periods=2, lag=0).z.tolist()
    [nan, nan, 0.0, 0.0, 0.0, 0.0, 200000000.0]

    A level shift: without a lag its first sample inflates the next baselines;
    with the default lag (``streak - 1 = 2``) three samples in a row stay far
    above 3 and raise the alert:

    >>> x = [20.0, 20.2, 19.9, 20.1, 20.0, 20.1, 19.8, 20.0] + [25.0] * 4
    >>> rolling_zscore(x, window=5, lag=0).z[-4:].round(1).tolist()
    [40.8, 1.8, 1.1, 0.7]
    >>> r = rolling_zscore(x, window=5)
    >>> r.z[-4:].round(1).tolist(), r.alert[-4:].astype(int).tolist()
    ([43.3, 38.5, 40.8, 1.8], [0, 0, 1, 0])
    """
    w, minp, thr, k, res, fl, lag = _check_params(window, min_periods, threshold, streak,
                                                  resolve, std_floor, lag)
    z, nr, hit, _, _ = _run(x, [], w, lag, minp, fl, res, thr)
    s, a, e = _guard(z, nr, thr, k, res, hit=hit)
    return ZScoreBatch(z, s, a, e)


class RollingZScore:
    """Streaming rolling z-score with a streak guard (river style: ``update`` returns).

    Each call to :meth:`update` scores one sample against the up to ``window``
    finite samples before it (skipping the ``lag`` newest), then stores it.
    O(1) work per sample: a ring buffer plus rolling sums of deviations from
    a reference sample, rebuilt exactly from the ring when their rounding-error
    bound demands it (amortized O(1)).  Pickle is the checkpoint: a pickled
    object continues exactly where it stopped.

    Parameters
    ----------
    window : int, default=config.Z_WINDOW
        Baseline length in samples (15 = 30 s at a 2 s cadence); in
        [2, config.Z_MAX_WINDOW].
    min_periods : int, default=config.Z_MIN_PERIODS
        Baseline samples needed before a z is produced; in [2, window].
        Until then ``z`` is NaN (warm-up).
    threshold : float, default=config.Z_THRESHOLD
        ``|z|`` above this counts toward a streak; > 0.
    streak : int, default=config.Z_STREAK
        Consecutive samples above ``threshold`` that turn the alert on; >= 1.
    resolve : float, default=config.Z_RESOLVE
        An active alert stays on while ``|z| > resolve`` and turns off at the
        first sample with ``|z| <= resolve`` (or a non-finite sample);
        in [0, threshold).
    std_floor : float, default=0.0
        Absolute std floor, added to the relative floor
        ``EPS_STD * max(1, |mean|)``; in [0, config.Z_MAX_ABS].
    lag : int or None, default=None
        Finite samples between the baseline and the scored sample; in
        [0, config.Z_MAX_WINDOW]; None means ``streak - 1`` (see
        :func:`rolling_zscore`).

    Attributes
    ----------
    n_baseline : int
        Samples currently in the baseline (<= window).
    n_extreme : int
        Finite samples refused so far for ``|x| > config.Z_MAX_ABS`` (scored
        NaN, like a NaN).
    current_streak : int
        Streak after the last update.
    alert_on : bool
        Whether the alert is on after the last update.

    See Also
    --------
    rolling_zscore : the vectorized batch twin.

    Examples
    --------
    >>> det = RollingZScore(window=5, min_periods=5, streak=1)
    >>> for v in [20.0, 20.2, 19.9, 20.1, 20.0]:
    ...     r = det.update(v)
    >>> r  # warm-up: 4 samples in the baseline
    ZScoreResult(z=nan, streak=0, alert=False, emitted=0.0)
    >>> round(det.update(20.1).z, 2)
    0.53
    >>> r = det.update(25.0)
    >>> round(r.z, 1), r.streak, r.alert, round(r.emitted, 1)
    (43.3, 1, True, 43.3)
    >>> r = det.update(float("nan"))  # NaN in, NaN out; ends the alert
    >>> r.z, r.alert
    (nan, False)
    >>> det.update_many([20.1, 19.9]).z.round(2).tolist()
    [-0.41, -0.53]
    """

    __slots__ = ("window", "min_periods", "threshold", "streak", "resolve", "std_floor", "lag",
                 "_thr", "_res", "_buf", "_pos", "_n", "_ref", "_s1", "_s2", "_acc", "_cycles",
                 "_streak", "_alert", "_n_extreme")

    def __init__(self, window=config.Z_WINDOW, min_periods=config.Z_MIN_PERIODS,
                 threshold=config.Z_THRESHOLD, streak=config.Z_STREAK,
                 resolve=config.Z_RESOLVE, std_floor=0.0, lag=None):
        (self.window, self.min_periods, self.threshold, self.streak, self.resolve,
         self.std_floor, self.lag) = _check_params(window, min_periods, threshold, streak,
                                                   resolve, std_floor, lag)
        self._thr = _above_limit(self.threshold)
        self._res = _above_limit(self.resolve)
        self._buf = []  # ring of the last window + lag finite values, oldest at _pos once full
        self._pos = 0
        self._n = 0  # values in the baseline: the oldest min(window, len - lag) of the ring
        self._ref = 0.0
        self._s1 = 0.0  # sum of (v - ref) over the baseline
        self._s2 = 0.0  # sum of (v - ref)**2
        self._acc = 0.0  # running rounding-error scale since the last rebuild
        self._cycles = 0
        self._streak = 0
        self._alert = False
        self._n_extreme = 0

    # -- state ---------------------------------------------------------------
    @property
    def n_baseline(self) -> int:
        return self._n

    @property
    def n_extreme(self) -> int:
        return getattr(self, "_n_extreme", 0)  # 0 in a state pickled before it existed

    @property
    def current_streak(self) -> int:
        return self._streak

    @property
    def alert_on(self) -> bool:
        return self._alert

    def _ring(self):
        """Stored values, oldest first."""
        p = self._pos
        return self._buf[p:] + self._buf[:p]

    def _rebuild(self):
        """Exact sums over the baseline, around its sample nearest the mean (the first
        such sample; numpy for long baselines, the same IEEE operations)."""
        base = self._ring()[:self._n]
        m0 = math.fsum(base) / len(base)
        if len(base) > 256:
            arr = np.array(base)
            ref = base[int(np.argmin(np.abs(arr - m0)))]
            ds = (arr - ref).tolist()
            sq = (np.array(ds) ** 2).tolist()
        else:
            ref = min(base, key=lambda v: abs(v - m0))
            ds = [v - ref for v in base]
            sq = [d * d for d in ds]
        self._ref = ref
        self._s1 = math.fsum(ds)
        self._s2 = s2 = math.fsum(sq)
        self._acc = s2
        self._cycles = 0

    def _set_state(self, values, streak, alert):
        self._buf = list(values)
        self._pos = 0
        self._n = min(self.window, max(0, len(self._buf) - self.lag))
        self._streak = int(streak)
        self._alert = bool(alert)
        if self._n:
            self._rebuild()
        else:
            self._ref = self._s1 = self._s2 = self._acc = 0.0

    # -- streaming -----------------------------------------------------------
    def update(self, x) -> ZScoreResult:
        """Score one sample against the baseline before it, then store it.

        Parameters
        ----------
        x : float
            The new sample; NaN, inf or ``|x| > config.Z_MAX_ABS`` marks a
            missing sample.

        Returns
        -------
        ZScoreResult
            ``(z, streak, alert, emitted)``.
        """
        x = float(x)
        if not -_MAX_ABS <= x <= _MAX_ABS:  # NaN, inf, extreme: not stored, resets, ends alert
            if x - x == 0.0:
                self._n_extreme = self.n_extreme + 1
            return _guard_reset(self)
        n = self._n
        s1 = self._s1
        s2 = self._s2
        ref = self._ref
        if n >= self.min_periods:
            md = s1 / n
            mean = ref + md
            fl = self.std_floor + _EPS_STD * (mean if mean > 1.0 else
                                               (-mean if mean < -1.0 else 1.0))
            m2 = s2 - s1 * md
            if self._acc > _KACC * (m2 + (n - 1) * fl * fl):  # error bound too large
                self._rebuild()
                s1 = self._s1
                s2 = self._s2
                ref = self._ref
                md = s1 / n
                m2 = s2 - s1 * md
                mean = ref + md  # the floor too: the old mean may have been off (cancellation)
                fl = self.std_floor + _EPS_STD * (mean if mean > 1.0 else
                                                   (-mean if mean < -1.0 else 1.0))
            s = _sqrt(m2 / (n - 1)) if m2 > 0.0 else 0.0
            z = ((x - ref) - md) / (s if s > fl else fl)
            res = _guard_step(self, z)
        else:
            res = _guard_reset(self)
        # store x; the value `lag` places back enters the baseline
        buf = self._buf
        w = self.window
        if n == w:  # the ring is full: the oldest value leaves the baseline
            p = self._pos
            do = buf[p] - ref
            buf[p] = x
            p += 1
            c = len(buf)
            if p == c:
                p = 0
                cyc = self._cycles + 1
                self._cycles = cyc
                if cyc >= _CYCLES:
                    self._pos = p
                    self._rebuild()
                    return res
            self._pos = p
            if self.lag:
                q = p + w - 1
                d = buf[q if q < c else q - c] - ref
            else:
                d = x - ref
            s2n = s2 + (d * d - do * do)
            self._s1 = s1 + (d - do)
            self._s2 = s2n
            self._acc += s2 + s2n
        else:  # warm-up: the ring fills
            buf.append(x)
            k = len(buf) - 1 - self.lag  # index of the value entering the baseline
            if k >= 0:
                e = buf[k]
                if n == 0:
                    self._ref = ref = e
                self._n = n + 1
                d = e - ref
                self._s1 = s1 + d
                self._s2 = s2n = s2 + d * d
                self._acc += s2n
        return res

    def update_many(self, xs: Iterable[float]) -> ZScoreBatch:
        """Score a batch of samples (vectorized), continuing the stream.

        Same results as calling :meth:`update` on each sample in turn (z to
        ~1e-10, streak and alert exactly) and leaves the same state (the
        rolling sums are rebuilt exactly from the new ring).

        Parameters
        ----------
        xs : array_like of float, shape (n,)

        Returns
        -------
        ZScoreBatch
        """
        x = np.asarray(xs, dtype=np.float64)
        z, nr, hit, new_buf, n_ext = _run(x, self._ring(), self.window, self.lag,
                                          self.min_periods, self.std_floor, self.resolve,
                                          self.threshold)
        if n_ext:
            self._n_extreme = self.n_extreme + n_ext
        s, a, e = _guard(z, nr, self.threshold, self.streak, self.resolve, self._streak,
                         self._alert, hit)
        if x.size:
            self._set_state(new_buf, s[-1], a[-1])
        return ZScoreBatch(z, s, a, e)

    def __repr__(self):
        return (f"RollingZScore(window={self.window}, min_periods={self.min_periods}, "
                f"threshold={self.threshold:g}, streak={self.streak}, "
                f"resolve={self.resolve:g}, std_floor={self.std_floor:g}, lag={self.lag})")
