"""The streak guard with hysteresis, vectorized and streaming, and its result types.

An alert turns on after ``streak`` consecutive samples with ``|z| > threshold``
and stays on until the first sample with ``|z| <= resolve`` or a NaN.  "Above"
a limit ``v`` means ``|z| > v + 1e-9 * max(1, v)`` (``_TIE``) in every
implementation.  :func:`streak_guard` applies it to an array and
:func:`_guard` continues a state over one; :func:`_guard_step` is one sample of
a streaming detector (:class:`pipeline.zscore.RollingZScore`,
:class:`pipeline.baselines.EWMAZScore`).  :mod:`pipeline.zscore` re-exports
the public names.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import config
from .checks import _check_guard

__all__ = ["ZScoreResult", "ZScoreBatch", "streak_guard"]

_FEW_ONSETS = 256
"""Up to this many alert onsets in a batch, each alert's end is found by a
short forward scan instead of run-length analysis of all ``|z| > resolve``."""
_TIE = 1e-9
"""``|z|`` counts as above ``threshold`` (or ``resolve``) only beyond
``threshold + _TIE * max(1, threshold)``: exact ties (common with quantized
readings, e.g. ``z = -1.5`` exactly for three equal values and one other, or
``z = 0`` exactly) then decide the same way in every implementation, whatever
their last-bit rounding (they agree to 1e-10 relative to ``max(1, |z|)``)."""
_NAN = float("nan")


class ZScoreResult(NamedTuple):
    """One sample's result from :meth:`RollingZScore.update`."""

    z: float
    """Signed z-score (NaN during warm-up and for a non-finite sample)."""
    streak: int
    """Consecutive samples with ``|z| > threshold`` ending here (0 otherwise)."""
    alert: bool
    """True while the alert is on (streak guard plus hysteresis)."""
    emitted: float
    """``|z|`` while the alert is on, else 0.0 (the tutorial's ``temperature.zscore``)."""


class ZScoreBatch(NamedTuple):
    """Per-sample arrays, the batch form of :class:`ZScoreResult`."""

    z: np.ndarray
    """float64, signed."""
    streak: np.ndarray
    """int64."""
    alert: np.ndarray
    """bool."""
    emitted: np.ndarray
    """float64, ``|z|`` where ``alert`` else 0.0."""

def _ranges(starts, stops):
    """Concatenation of ``arange(a, b)`` for each pair (all ``b > a``)."""
    lengths = stops - starts
    total = int(lengths.sum())
    offs = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return np.arange(total, dtype=np.int64) + offs


def _guard(z, nr, threshold, k, resolve, carry_streak=0, carry_alert=False, hit=None):
    """Streak and hysteresis, continuing a state; returns ``(streak, alert, emitted)``.

    ``nr`` are the sorted indices where ``|z| > resolve`` (NaN excluded): the
    only places where a streak or an alert can be non-zero, so the work
    beyond allocating the outputs is proportional to ``nr.size``.  ``hit``
    (optional) is ``|z[nr]| > threshold``.
    """
    n = z.size
    streak = np.zeros(n, dtype=np.int64)
    alert = np.zeros(n, dtype=bool)
    emitted = np.zeros(n, dtype=np.float64)
    if nr.size == 0:
        return streak, alert, emitted
    # hits (|z| > threshold) are a subset of nr; streak = position in a run of hits
    h = nr[np.abs(z[nr]) > _above_limit(threshold) if hit is None else hit]
    if h.size:
        pos = np.arange(h.size, dtype=np.int64)
        first = np.empty(h.size, dtype=bool)
        first[0] = True
        np.not_equal(np.diff(h), 1, out=first[1:])
        run0 = np.maximum.accumulate(np.where(first, pos, 0))
        s = pos - run0 + 1
        if h[0] == 0 and carry_streak:
            s[run0 == 0] += carry_streak
        streak[h] = s
        onsets = h[s >= k]
    else:
        onsets = h
    if onsets.size == 0 and not carry_alert:
        return streak, alert, emitted
    if onsets.size <= _FEW_ONSETS:  # scan forward from each onset to its resolve
        starts = onsets.tolist()
        if carry_alert:
            starts.insert(0, 0)
        end = 0
        for a in starts:
            if a < end:  # already inside this alert
                continue
            end = _next_resolve(z, a, resolve)
            alert[a:end] = True
            np.abs(z[a:end], out=emitted[a:end])
        return streak, alert, emitted
    # runs of consecutive indices above `resolve`: an alert lasts to its run's end
    brk = np.flatnonzero(np.diff(nr) != 1) + 1
    run_start = nr[np.concatenate(([0], brk))]
    run_end = nr[np.concatenate((brk - 1, [nr.size - 1]))] + 1  # exclusive
    rid = np.searchsorted(run_start, onsets, side="right") - 1
    keep = np.ones(rid.size, dtype=bool)
    keep[1:] = rid[1:] != rid[:-1]  # first onset of each run
    a_start, a_rid = onsets[keep], rid[keep]
    if carry_alert and run_start[0] == 0:  # an alert carried in holds through the first run
        if a_rid.size and a_rid[0] == 0:
            a_start = a_start.copy()
            a_start[0] = 0
        else:
            a_start = np.concatenate(([0], a_start))
            a_rid = np.concatenate(([0], a_rid))
    if a_start.size:
        idx = _ranges(a_start, run_end[a_rid])
        alert[idx] = True
        emitted[idx] = np.abs(z[idx])
    return streak, alert, emitted


def _above_limit(v):
    """What ``|z|`` must exceed to count as above ``v`` (see ``_TIE``)."""
    return v + _TIE * max(1.0, v)


def _next_resolve(z, a, resolve):
    """First index >= ``a`` where ``|z| <= resolve`` or ``z`` is NaN (or ``z.size``)."""
    resolve = _above_limit(resolve)
    n = z.size
    step = 64
    while a < n:
        seg = z[a:a + step]
        i = np.flatnonzero(~((seg > resolve) | (seg < -resolve)))
        if i.size:
            return a + int(i[0])
        a += step
        step *= 2
    return n


def _above(z, resolve):
    """Sorted indices where ``|z| > resolve`` (NaN excluded)."""
    return np.flatnonzero(np.abs(z) > _above_limit(resolve))


def streak_guard(z, threshold=config.Z_THRESHOLD, streak=config.Z_STREAK,
                 resolve=config.Z_RESOLVE) -> ZScoreBatch:
    """Apply the streak guard and hysteresis to a 1-D array of z-scores.

    ``streak[i]`` counts the consecutive samples with ``|z| > threshold``
    ending at ``i`` (0 where ``|z| <= threshold`` or ``z`` is NaN).  The alert
    turns on where ``streak >= streak`` (the parameter), stays on while
    ``|z| > resolve`` and turns off at the first sample with
    ``|z| <= resolve`` or a NaN.  Usable on any score, e.g. a column of
    :func:`pipeline.baselines.fleet_zscore`.

    Parameters
    ----------
    z : array_like of float, shape (n,)
        Signed or absolute scores; NaN allowed.
    threshold : float, default=config.Z_THRESHOLD
        ``|z|`` above this counts toward a streak; > 0.
    streak : int, default=config.Z_STREAK
        Consecutive samples above ``threshold`` that turn the alert on; >= 1.
    resolve : float, default=config.Z_RESOLVE
        The alert turns off at the first ``|z| <= resolve``; in [0, threshold).

    Returns
    -------
    ZScoreBatch
        ``z`` (the input as float64), ``streak``, ``alert``, ``emitted``.

    Examples
    --------
    >>> r = streak_guard([0, 4, 4, 0, 4, 4, 4, 2.5, 1.0, 5.0])
    >>> r.streak.tolist()
    [0, 1, 2, 0, 1, 2, 3, 0, 0, 1]
    >>> r.alert.astype(int).tolist()
    [0, 0, 0, 0, 0, 0, 1, 1, 0, 0]
    >>> r.emitted.tolist()
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 4.0, 2.5, 0.0, 0.0]
    """
    threshold, streak, resolve = _check_guard(threshold, streak, resolve)
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 1:
        raise ValueError(f"z must be 1-D, got shape {z.shape}")
    s, a, e = _guard(z, _above(z, resolve), threshold, streak, resolve)
    return ZScoreBatch(z, s, a, e)


# --------------------------------------------------------------------------
# the streaming twin: one sample at a time
# --------------------------------------------------------------------------
_tuple_new = tuple.__new__


_NAN_RESULT = ZScoreResult(_NAN, 0, False, 0.0)


def _guard_step(det, z: float) -> ZScoreResult:
    """One sample of the streak guard with hysteresis, on a streaming detector's state.

    ``det`` has ``streak`` (the parameter), ``_thr``/``_res`` (the limits with
    their tie margin) and the state ``_streak``/``_alert``.  Shared by
    :class:`RollingZScore` and :class:`pipeline.baselines.EWMAZScore`; the
    vectorized twin is :func:`_guard`.
    """
    az = z if z >= 0.0 else -z
    if az > det._thr:
        st = det._streak + 1
        al = True if st >= det.streak else det._alert
    else:
        st = 0
        al = det._alert and az > det._res
    det._streak = st
    det._alert = al
    return _tuple_new(ZScoreResult, (z, st, al, az if al else 0.0))


def _guard_reset(det) -> ZScoreResult:
    """A sample that cannot be scored (NaN in, or warm-up): no z, the streak and alert end."""
    det._streak = 0
    det._alert = False
    return _NAN_RESULT
