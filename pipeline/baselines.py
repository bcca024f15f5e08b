"""Longer and wider baselines than the 15-sample window: EWMA and fleet z-scores.

The tutorial admits that fixed thresholds and 30 s windows miss a sensor
drifting 5 degC off baseline overnight.  Two baselines see what the window
cannot:

* :class:`EWMAZScore` / :func:`ewma_zscore` (long horizon): each sample is
  scored against the exponentially weighted mean of the samples *before* it
  (half-life in samples), divided by a scale.  The default scale is the
  sensor's short-term **noise**: the exponentially weighted RMS of first
  differences divided by sqrt(2).  A slow drift does not inflate it, so the
  lag of the mean behind the drift shows up as a growing z.  The classic
  alternative ``scale="ewm"`` (EW RMS of the residuals ``x - mean``) adapts
  to the drift it should detect: while a linear ramp fills any
  self-normalized baseline, the newest sample's z tends to sqrt(3) = 1.73 at
  most, so it is offered for spiky, not drifting, signals.  The noise scale
  has its own blind spot: on a smooth, strongly autocorrelated signal, normal
  slow changes are large in noise units.  Choose the half-life so the mean's
  lag behind normal slow changes stays small.
* :func:`fleet_zscore` (wide): at each time, a robust z of every sensor
  against the fleet's median and MAD (times 1.4826, which is the std for
  Gaussian data).  It sees a sensor that is off by a constant offset, which
  no per-sensor baseline can see.

Sign: ``z`` is signed (positive above the baseline), higher ``|z|`` is more
anomalous, and ``emitted`` is ``|z|`` while an alert is on.  NaN in, NaN
out: a non-finite sample scores NaN and does not count.  The streak guard and
hysteresis are those of :mod:`pipeline.zscore`.

Extreme magnitudes follow the rule of :mod:`pipeline.zscore`: a sample with
``|x| > config.Z_MAX_ABS`` (1e100) is treated exactly like NaN (counted in
:attr:`EWMAZScore.n_extreme`), so any finite number is scored or refused
without an exception.  Parameters are bounded: ``halflife`` at most
``config.Z_MAX_HALFLIFE`` (1e9 samples), ``min_periods`` at most
``config.Z_MAX_MIN_PERIODS``, ``std_floor`` at most ``Z_MAX_ABS``.
:func:`fleet_zscore` refuses an array that looks transposed (more sensors
than times).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from . import config
from .checks import _check_float, _check_guard, _check_int, _check_std_floor, _n_extreme, _usable
from .streak import (
    ZScoreBatch,
    ZScoreResult,
    _above,
    _above_limit,
    _guard,
    _guard_reset,
    _guard_step,
)

__all__ = [
    "EWMAZScore",
    "ewma_zscore",
    "fleet_zscore",
    "fleet_matrix",
    "FleetMatrix",
    "MAD_SCALE",
]

MAD_SCALE = 1.4826
"""MAD times this estimates the std of Gaussian data (1 / Phi^-1(3/4))."""
_SCALES = ("noise", "ewm")
_NAN = float("nan")
_tuple_new = tuple.__new__
_sqrt = math.sqrt
_EPS_STD = config.EPS_STD
_MAX_ABS = config.Z_MAX_ABS


# --------------------------------------------------------------------------
# long horizon: EWMA
# --------------------------------------------------------------------------
def _check_ewma(halflife, min_periods, threshold, streak, resolve, std_floor, scale):
    halflife = _check_float("halflife", halflife, lo=0.0, lo_open=True, hi=config.Z_MAX_HALFLIFE)
    if min_periods is None:
        min_periods = max(2, math.ceil(halflife))
    min_periods = _check_int("min_periods", min_periods, 2, config.Z_MAX_MIN_PERIODS)
    threshold, streak, resolve = _check_guard(threshold, streak, resolve)
    std_floor = _check_std_floor(std_floor)
    if scale not in _SCALES:
        raise ValueError(f"scale must be one of {_SCALES}, got {scale!r}")
    return halflife, min_periods, threshold, streak, resolve, std_floor, scale


def _ewma_run(x, st, alpha, minp, std_floor, noise):
    """Vectorized EWMA z over ``x`` continuing state ``st`` (a dict, updated).

    Same recurrences, in the same floating-point order, as
    :meth:`EWMAZScore.update` (``scipy.signal.lfilter`` runs them in C).
    """
    from scipy.signal import lfilter  # lazy: scipy.signal costs seconds at import

    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"x must be 1-D, got shape {x.shape}")
    fin = _usable(x)  # finite and |x| <= Z_MAX_ABS
    allfin = bool(fin.all())
    if not allfin:
        st["n_extreme"] = st.get("n_extreme", 0) + _n_extreme(x, fin)
    f = x if allfin else x[fin]
    zf = np.full(f.size, np.nan)
    c = 1.0 - alpha
    g = f
    if st["count"] == 0 and f.size:
        st.update(count=1, ref=f[0], md=0.0, v=0.0, cw=1.0, prev=f[0])
        g = f[1:]
    m = g.size
    if m:
        ref = st["ref"]
        d = g - ref
        md_after = lfilter([alpha], [1.0, -c], d, zi=[c * st["md"]])[0]
        md_before = np.concatenate(([st["md"]], md_after[:-1]))
        resid = d - md_before
        if noise:
            e = np.diff(g, prepend=st["prev"])
            e2 = e * e * 0.5
        else:
            e2 = resid * resid
        v_after = lfilter([alpha], [1.0, -c], e2, zi=[c * st["v"]])[0]
        v_before = np.concatenate(([st["v"]], v_after[:-1]))
        cw_after = lfilter([0.0], [1.0, -c], np.zeros(m), zi=[c * st["cw"]])[0]
        cw_before = np.concatenate(([st["cw"]], cw_after[:-1]))
        k0 = max(0, minp - st["count"])  # outputs before k0 are in the warm-up
        if k0 < m:
            sl = slice(k0, m)
            s = np.sqrt(v_before[sl] / (1.0 - cw_before[sl]))
            fl = std_floor + _EPS_STD * np.maximum(1.0, np.abs(ref + md_before[sl]))
            zf[f.size - m + k0:] = resid[sl] / np.maximum(s, fl)
        st.update(count=st["count"] + m, md=float(md_after[-1]), v=float(v_after[-1]),
                  cw=float(cw_after[-1]), prev=float(g[-1]))
    if allfin:
        return zf
    z = np.full(x.size, np.nan)
    z[fin] = zf
    return z


class EWMAZScore:
    """Streaming long-horizon z-score against an exponentially weighted baseline.

    For each finite sample ``x`` (after the warm-up)::

        z = (x - mean) / max(scale, std_floor + EPS_STD * max(1, |mean|))

    where ``mean`` is the EWMA of the finite samples *before* ``x``
    (``alpha = 1 - 2**(-1 / halflife)``) and ``scale`` is the
    bias-corrected EW root mean square of ``e``: the first difference
    ``x_t - x_prev`` (between consecutive finite samples) divided by sqrt(2)
    for ``scale="noise"`` (the default), or the residual ``x_t - mean`` for
    ``scale="ewm"``.  Bias correction divides the EW mean square by
    ``1 - (1 - alpha)**k`` after ``k`` updates, so early scales are not
    biased toward 0.  The streak guard and hysteresis are those of
    :class:`pipeline.zscore.RollingZScore`.

    Warm-up: ``z`` is NaN until ``min_periods`` finite samples have been
    absorbed (default ``ceil(halflife)``, about 1.44 time constants; the
    first sample only sets the mean).  A non-finite sample, or one with
    ``|x| > config.Z_MAX_ABS``, scores NaN, is not absorbed, resets the
    streak and ends an alert.

    Parameters
    ----------
    halflife : float, default=config.Z_LONG_HALFLIFE
        Half-life of the baseline in samples (900 = 30 min at 2 s); in
        (0, config.Z_MAX_HALFLIFE].
    min_periods : int or None, default=None
        Finite samples absorbed before a z is produced; in
        [2, config.Z_MAX_MIN_PERIODS].  ``None`` means ``max(2, ceil(halflife))``.
    threshold, streak, resolve : see :class:`pipeline.zscore.RollingZScore`.
    std_floor : float, default=0.0
        Absolute floor of the scale, added to ``EPS_STD * max(1, |mean|)``;
        in [0, config.Z_MAX_ABS].
    scale : {"noise", "ewm"}, default="noise"
        What the deviation from the mean is divided by (see above).

    Attributes
    ----------
    n_extreme : int
        Finite samples refused so far for ``|x| > config.Z_MAX_ABS``.

    See Also
    --------
    ewma_zscore : the vectorized batch twin.

    Examples
    --------
    >>> det = EWMAZScore(halflife=4, min_periods=3)
    >>> [round(det.update(v).z, 2) for v in [10.0, 10.5, 9.5, 10.0, 14.0]]
    [nan, nan, nan, 0.02, 8.04]
    >>> det.update_many([10.2, 9.8]).z.round(2).tolist()
    [-0.26, -0.38]
    """

    __slots__ = ("halflife", "min_periods", "threshold", "streak", "resolve", "std_floor",
                 "scale", "_thr", "_res", "_alpha", "_count", "_ref", "_md", "_v", "_cw", "_prev",
                 "_streak", "_alert", "_n_extreme")

    def __init__(self, halflife=config.Z_LONG_HALFLIFE, min_periods=None,
                 threshold=config.Z_THRESHOLD, streak=config.Z_STREAK,
                 resolve=config.Z_RESOLVE, std_floor=0.0, scale="noise"):
        (self.halflife, self.min_periods, self.threshold, self.streak, self.resolve,
         self.std_floor, self.scale) = _check_ewma(halflife, min_periods, threshold, streak,
                                                   resolve, std_floor, scale)
        self._thr = _above_limit(self.threshold)
        self._res = _above_limit(self.resolve)
        self._alpha = 1.0 - 2.0 ** (-1.0 / self.halflife)
        self._count = 0
        self._ref = self._md = self._v = self._prev = 0.0
        self._cw = 1.0
        self._streak = 0
        self._alert = False
        self._n_extreme = 0

    @property
    def n_extreme(self) -> int:
        """Finite samples refused for ``|x| > config.Z_MAX_ABS``."""
        return getattr(self, "_n_extreme", 0)  # 0 in a state pickled before it existed

    @property
    def n_seen(self) -> int:
        """Finite samples absorbed so far."""
        return self._count

    @property
    def mean(self) -> float:
        """Current baseline mean (NaN before the first sample)."""
        return self._ref + self._md if self._count else _NAN

    def update(self, x) -> ZScoreResult:
        """Score one sample against the baseline before it, then absorb it.

        Returns
        -------
        ZScoreResult
            ``(z, streak, alert, emitted)``.
        """
        x = float(x)
        if not -_MAX_ABS <= x <= _MAX_ABS:  # NaN, inf, extreme: not absorbed
            if x - x == 0.0:
                self._n_extreme = self.n_extreme + 1
            return _guard_reset(self)
        n = self._count
        if n == 0:
            self._count = 1
            self._ref = self._prev = x
            self._md = self._v = 0.0
            self._cw = 1.0
            return _guard_reset(self)
        a = self._alpha
        c = 1.0 - a
        ref = self._ref
        md = self._md
        v = self._v
        cw = self._cw
        d = x - ref
        resid = d - md
        if n >= self.min_periods:
            mean = ref + md
            fl = self.std_floor + _EPS_STD * (mean if mean > 1.0 else
                                               (-mean if mean < -1.0 else 1.0))
            s = _sqrt(v / (1.0 - cw))
            z = resid / (s if s > fl else fl)
            res = _guard_step(self, z)
        else:
            res = _guard_reset(self)
        if self.scale == "noise":
            e = x - self._prev
            e2 = e * e * 0.5
        else:
            e2 = resid * resid
        self._md = a * d + c * md
        self._v = a * e2 + c * v
        self._cw = c * cw
        self._prev = x
        self._count = n + 1
        return res

    def update_many(self, xs: Iterable[float]) -> ZScoreBatch:
        """Score a batch (vectorized), continuing the stream exactly as
        repeated :meth:`update` would, and leave the same state."""
        st = dict(count=self._count, ref=self._ref, md=self._md, v=self._v, cw=self._cw,
                  prev=self._prev)
        z = _ewma_run(xs, st, self._alpha, self.min_periods, self.std_floor,
                      self.scale == "noise")
        if st.get("n_extreme"):
            self._n_extreme = self.n_extreme + st["n_extreme"]
        s, a, e = _guard(z, _above(z, self.resolve), self.threshold, self.streak,
                         self.resolve, self._streak, self._alert)
        self._count, self._ref, self._md = st["count"], float(st["ref"]), st["md"]
        self._v, self._cw, self._prev = st["v"], st["cw"], float(st["prev"])
        if z.size:
            self._streak, self._alert = int(s[-1]), bool(a[-1])
        return ZScoreBatch(z, s, a, e)

    def __repr__(self):
        return (f"EWMAZScore(halflife={self.halflife:g}, min_periods={self.min_periods}, "
                f"threshold={self.threshold:g}, streak={self.streak}, resolve={self.resolve:g}, "
                f"std_floor={self.std_floor:g}, scale={self.scale!r})")


def ewma_zscore(x, halflife=config.Z_LONG_HALFLIFE, min_periods=None,
                threshold=config.Z_THRESHOLD, streak=config.Z_STREAK,
                resolve=config.Z_RESOLVE, std_floor=0.0, scale="noise") -> ZScoreBatch:
    """Long-horizon EWMA z-score of each sample (vectorized batch twin of :class:`EWMAZScore`).

    Parameters are those of :class:`EWMAZScore`; ``x`` is a 1-D array in
    time order (NaN/inf mark missing samples).

    Returns
    -------
    ZScoreBatch
        ``z`` (float64, signed), ``streak`` (int64), ``alert`` (bool),
        ``emitted`` (float64, ``|z|`` while alert else 0.0).

    Examples
    --------
    A slow ramp is invisible to a 15-sample window but not to the EWMA:

    >>> rng = np.random.default_rng(0)
    >>> x = 20 + 0.1 * rng.standard_normal(6000)
    >>> x[3000:] += np.linspace(0, 3, 3000)  # +3 over 3000 samples
    >>> from pipeline.zscore import rolling_zscore
    >>> bool(rolling_zscore(x).alert[3000:].any())
    False
    >>> r = ewma_zscore(x, halflife=300)
    >>> bool(r.alert[:3000].any()), round(float(np.nanmean(r.z[4000:])), 1)
    (False, 4.3)
    >>> round(float(r.alert[4000:].mean()), 2)  # fraction of the ramp's last 2000 samples
    0.96
    """
    params = _check_ewma(halflife, min_periods, threshold, streak, resolve, std_floor, scale)
    hl, minp, thr, k, res, fl, sc = params
    st = dict(count=0, ref=0.0, md=0.0, v=0.0, cw=1.0, prev=0.0)
    z = _ewma_run(x, st, 1.0 - 2.0 ** (-1.0 / hl), minp, fl, sc == "noise")
    s, a, e = _guard(z, _above(z, res), thr, k, res)
    return ZScoreBatch(z, s, a, e)


# --------------------------------------------------------------------------
# wide: the fleet
# --------------------------------------------------------------------------
class FleetMatrix(NamedTuple):
    """A fleet as a matrix: ``values[t, j]`` is sensor ``sensors[j]`` at ``times[t]``."""

    times: np.ndarray
    sensors: list
    values: np.ndarray


def fleet_matrix(df, time="time_s", sensor="sensor", value="value") -> FleetMatrix:
    """Reshape a long table (time, sensor, value) into a (T, N) matrix.

    Times and sensors are sorted; a sensor missing at a time is NaN.
    Duplicate (time, sensor) pairs raise ``ValueError`` (validate the series
    first).

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"time_s": [0, 0, 2, 2, 4], "sensor": ["b", "a", "a", "b", "a"],
    ...                    "value": [2.0, 1.0, 1.5, 2.5, 1.2]})
    >>> fm = fleet_matrix(df)
    >>> fm.times.tolist(), fm.sensors
    ([0, 2, 4], ['a', 'b'])
    >>> fm.values.tolist()
    [[1.0, 2.0], [1.5, 2.5], [1.2, nan]]
    """
    wide = df.pivot(index=time, columns=sensor, values=value).sort_index()
    wide = wide.reindex(sorted(wide.columns), axis=1)
    return FleetMatrix(wide.index.to_numpy(), list(wide.columns),
                       wide.to_numpy(dtype=np.float64, na_value=np.nan))


def fleet_zscore(values, std_floor=0.0, min_sensors=config.Z_FLEET_MIN_SENSORS) -> np.ndarray:
    """Robust z of every cell against the fleet at the same time.

    ``z[t, j] = (v[t, j] - med_t) / max(1.4826 * MAD_t, std_floor + EPS_STD * max(1, |med_t|))``
    with ``med_t`` the median and ``MAD_t`` the median absolute deviation of
    the finite values of row ``t``.  Non-finite cells and cells with
    ``|v| > config.Z_MAX_ABS`` are missing: they do not count and score NaN.
    Rows with fewer than ``min_sensors`` finite values score NaN.  Use
    :func:`pipeline.zscore.streak_guard` on a column to alert.

    Parameters
    ----------
    values : array_like of float, shape (T, N)
        N series of the same metric at the same T times (see :func:`fleet_matrix`):
        a row per time, a column per sensor.  An array with more columns
        than rows (and more than one row) is refused as probably transposed
        (``np.vstack`` of per-sensor series gives (N, T): use
        ``np.column_stack`` or ``values.T``); score fewer times than sensors
        one row at a time.
    std_floor : float, default=0.0
        Absolute floor of the scale, in the data's unit; set it to the
        sensors' resolution for quantized readings, where the MAD is often 0;
        in [0, config.Z_MAX_ABS].
    min_sensors : int, default=config.Z_FLEET_MIN_SENSORS
        Finite values a row needs; >= 3 (with 2 sensors every |z| is 0.67).

    Returns
    -------
    ndarray of float64, shape (T, N)
        Signed robust z (NaN where missing).

    Examples
    --------
    >>> v = [[20.0, 20.1, 19.9, 20.0, 23.0],
    ...      [20.1, 20.0, np.nan, 19.9, 23.1]]
    >>> fleet_zscore(v[:1]).round(1).tolist()  # one time, five sensors
    [[0.0, 0.7, -0.7, 0.0, 20.2]]
    >>> fleet_zscore(v)  # two times, five sensors: looks transposed
    Traceback (most recent call last):
    ...
    ValueError: values must be (times, sensors), a row per time; got shape (2, 5)...
    """
    std_floor = _check_std_floor(std_floor)
    min_sensors = _check_int("min_sensors", min_sensors, 3)
    v = np.array(values, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"values must be 2-D (times, sensors), got shape {v.shape}")
    n_times, n_sensors = v.shape
    if n_times > 1 and n_sensors > n_times:
        raise ValueError(
            f"values must be (times, sensors), a row per time; got shape {v.shape}: more "
            f"sensors ({n_sensors}) than times ({n_times}) looks like (sensors, times). Pass "
            "values.T (np.column_stack(series), not np.vstack(series)); to score fewer times "
            "than sensors, pass one row (one time) at a time")
    v[~_usable(v)] = np.nan
    ok = np.count_nonzero(~np.isnan(v), axis=1) >= min_sensors
    z = np.full(v.shape, np.nan)
    if not ok.any():
        return z
    w = v[ok]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(w, axis=1)
        dev = w - med[:, None]
        mad = np.nanmedian(np.abs(dev), axis=1)
    den = np.maximum(MAD_SCALE * mad, std_floor + _EPS_STD * np.maximum(1.0, np.abs(med)))
    z[ok] = dev / den[:, None]
    return z
