"""Input checks of the z-score family: its parameters and which samples it scores.

A parameter check returns the value (``int`` or ``float``) or raises ``ValueError``
naming the parameter, the allowed range and the value received.  The sample rule:
a sample is *usable* when ``|x| <= config.Z_MAX_ABS`` (1e100); NaN, inf and larger
magnitudes are missing (``docs/extremes.md``).  Shared by :mod:`pipeline.zscore`,
:mod:`pipeline.baselines` and the detectors.

Examples
--------
>>> _check_params(15, 10, 3.0, 3, 1.0, 0.0, None)  # lag None: streak - 1
(15, 10, 3.0, 3, 1.0, 0.0, 2)
>>> _check_guard(3.0, 3, 3.5)
Traceback (most recent call last):
...
ValueError: resolve must be a finite number in [0, threshold=3), got 3.5
>>> x = np.array([1.0, np.nan, np.inf, 1e120])
>>> _usable(x).tolist(), _n_extreme(x, _usable(x))  # 1e120: finite, refused
([True, False, False, False], 1)
"""

from __future__ import annotations

import math

import numpy as np

from . import config

_MAX_ABS = config.Z_MAX_ABS


def _check_int(name, value, lo, hi=None, hi_name=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi_name or hi}]"
        raise ValueError(f"{name} must be {rng}, got {value}")
    return value


def _check_float(name, value, lo=None, lo_open=False, hi=None, hi_open=False, hi_name=None):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    bad = not math.isfinite(v)
    if lo is not None:
        bad = bad or (v <= lo if lo_open else v < lo)
    if hi is not None:
        bad = bad or (v >= hi if hi_open else v > hi)
    if bad:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        lo_s = "-inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else (hi_name or f"{hi:g}")
        raise ValueError(f"{name} must be a finite number in {left}{lo_s}, {hi_s}{right}, got {value!r}")
    return v


def _check_guard(threshold, streak, resolve):
    threshold = _check_float("threshold", threshold, lo=0.0, lo_open=True)
    streak = _check_int("streak", streak, 1)
    resolve = _check_float("resolve", resolve, lo=0.0, hi=threshold, hi_open=True,
                           hi_name=f"threshold={threshold:g}")
    return threshold, streak, resolve


def _check_std_floor(std_floor):
    return _check_float("std_floor", std_floor, lo=0.0, hi=config.Z_MAX_ABS)


def _check_params(window, min_periods, threshold, streak, resolve, std_floor, lag):
    window = _check_int("window", window, 2, config.Z_MAX_WINDOW)
    min_periods = _check_int("min_periods", min_periods, 2, window, f"window={window}")
    threshold, streak, resolve = _check_guard(threshold, streak, resolve)
    std_floor = _check_std_floor(std_floor)
    lag = streak - 1 if lag is None else _check_int("lag", lag, 0, config.Z_MAX_WINDOW)
    return window, min_periods, threshold, streak, resolve, std_floor, lag


def _usable(x):
    """``|x| <= Z_MAX_ABS`` (False for NaN and inf): the samples a detector scores."""
    return (x >= -_MAX_ABS) & (x <= _MAX_ABS)


def _all_usable(x) -> bool:
    """Every sample usable (two passes, no temporary; NaN makes max/min NaN)."""
    return x.size == 0 or (float(x.max()) <= _MAX_ABS and float(x.min()) >= -_MAX_ABS)


def _n_extreme(x, usable) -> int:
    """Finite samples refused for their magnitude."""
    return int(np.count_nonzero(~usable & np.isfinite(x)))

