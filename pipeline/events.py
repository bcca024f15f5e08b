"""Event-level scoring of alarms against labelled events: what an alert path shows a person.

A detector flags points; a person is paged per *event*.  This module turns
alarm flags into alarm events, matches them with labelled events, and counts
what matters before trusting a detector: how many labelled events were
found, how many alarm events were false, how often that happens per hour of
normal time, and how late.  The rules (also in ``docs/evaluation.md``):

* **Coverage.** A flagged point at time ``t`` covers ``[t, t + period)``, where
  ``period`` is the spacing of the detector's points (its sample period, or
  the slide of a segment detector); by default the median step of ``times_ns``.
  Flags outside the scored span ``[start_ns, end_ns)`` are ignored and
  coverage is clipped to the span.
* **Episodes and events.** Touching coverage forms an *episode* (a run of
  consecutive alarm points, as an alert path sees it).  Episodes separated
  by a silence of at most ``merge_gap`` form one *alarm event*
  ``[first flag, last flag + period)``.  The silences inside an event count
  as alarm time but never match a label.
* **Matching.** A label ``[start, end)`` (at least 1 ns long) is widened to
  ``[start - tol_before, end + tol_after)``.  It is *found* when an episode
  overlaps its widened interval.  An alarm event none of whose episodes
  overlaps any widened label is a *false alarm*.  One event may find
  several labels; several events may find one label (all of them true).
* **Normal time** is the span minus the union of the widened labels.  False
  alarms per hour = false alarms / normal hours; the alarm share = the time
  of the union of alarm events inside normal time / normal time.
* **Delay** of a found label: the first time covered by an episode inside
  its widened interval, minus the label's start, clipped at 0.

Defaults (:class:`EventRules`), for EKG at 90-360 Hz:

* ``merge_gap_s = 1.0``: a fault that disturbs one beat is often flagged at
  the QRS and again at the T wave, 0.2-0.5 s apart; a person sees one
  incident.  Much longer gaps would merge separate false alarms into one and
  flatter the false-alarm rate; the suites space faults far more than 1 s
  apart.
* ``tol_before_s = 0.5``: a segment detector stamps a segment at its centre
  (32 samples = 0.09-0.36 s) and a label edge drawn by hand is not exact.
* ``tol_after_s = 2.0``: detectors need samples to see a fault (a whole
  32-sample segment, a streak of 3, a flat run long enough to be unusual), so
  an alarm up to 2 s after the label still counts as finding it.  It is not
  counted as a false alarm either.

Sensors at a 2 s cadence need wider rules (``pipeline.suites`` gives each
suite its own: 60 s gap, 10 s before, 30 s after).

Examples
--------
>>> S = 10**9
>>> labels = Labels.from_seconds([10.0], [11.0], ["spike"])
>>> t = np.arange(0, 60 * S, S // 10)               # 10 Hz for 60 s
>>> alarm = ((t >= 11 * S) & (t < 11.5 * S)) | ((t >= 40 * S) & (t < 40.2 * S))
>>> sc = score_alarms(t, alarm, labels, 0, 60 * S)
>>> sc.n_found, sc.n_events, sc.n_false_alarms, sc.median_delay_s
(1, 2, 1, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .event_score import EventScore, Report

__all__ = ["EventRules", "Labels", "EventScore", "Report", "alarm_episodes", "group_episodes",
           "score_episodes", "score_alarms", "score_keyed", "compare"]

S = 10**9


@dataclass(frozen=True)
class EventRules:
    """Merge gap and matching tolerances, in seconds (see the module docstring)."""

    merge_gap_s: float = 1.0
    tol_before_s: float = 0.5
    tol_after_s: float = 2.0

    def __post_init__(self):
        for name in ("merge_gap_s", "tol_before_s", "tol_after_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0 (seconds), got {v!r}")

    @property
    def ns(self) -> tuple[int, int, int]:
        """``(merge_gap, tol_before, tol_after)`` in integer nanoseconds."""
        return tuple(int(round(v * S)) for v in (self.merge_gap_s, self.tol_before_s, self.tol_after_s))


@dataclass(frozen=True)
class Labels:
    """Labelled events: ``[start_ns, end_ns)``, a ``type`` each and an optional ``key`` (e.g. sensor)."""

    start_ns: np.ndarray
    end_ns: np.ndarray
    type: np.ndarray
    key: np.ndarray | None = None

    def __post_init__(self):
        s = np.asarray(self.start_ns, dtype=np.int64).ravel()
        e = np.asarray(self.end_ns, dtype=np.int64).ravel()
        ty = np.asarray(self.type, dtype=object).ravel()
        if not (len(s) == len(e) == len(ty)):
            raise ValueError(f"labels need as many starts, ends and types, got {len(s)}, {len(e)}, {len(ty)}")
        if np.any(e < s):
            i = int(np.flatnonzero(e < s)[0])
            raise ValueError(f"label {i} ends before it starts ({e[i]} < {s[i]} ns)")
        object.__setattr__(self, "start_ns", s)
        object.__setattr__(self, "end_ns", e)
        object.__setattr__(self, "type", ty)
        if self.key is not None:
            k = np.asarray(self.key, dtype=object).ravel()
            if len(k) != len(s):
                raise ValueError(f"labels need one key each, got {len(k)} keys for {len(s)} labels")
            object.__setattr__(self, "key", k)

    def __len__(self) -> int:
        return len(self.start_ns)

    @classmethod
    def from_seconds(cls, start_s, end_s, types, t0_ns: int = 0, key=None) -> Labels:
        """Labels from times in seconds after ``t0_ns`` (rounded to the nanosecond)."""
        s = t0_ns + np.round(np.asarray(start_s, dtype=np.float64) * S).astype(np.int64)
        e = t0_ns + np.round(np.asarray(end_s, dtype=np.float64) * S).astype(np.int64)
        return cls(s, e, types, key)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, t0_ns: int = 0, key_column: str | None = None) -> Labels:
        """Labels from an events table with columns ``start``, ``end`` (seconds) and ``type``."""
        missing = {"start", "end", "type"} - set(frame.columns)
        if missing:
            raise ValueError(f"an events table needs columns start, end, type; missing {sorted(missing)}")
        key = frame[key_column].to_numpy(object) if key_column else None
        return cls.from_seconds(frame["start"], frame["end"], frame["type"].astype(str), t0_ns, key)

    def select(self, mask) -> Labels:
        """The labels where ``mask`` is true."""
        m = np.asarray(mask, dtype=bool)
        return Labels(self.start_ns[m], self.end_ns[m], self.type[m],
                      None if self.key is None else self.key[m])

    def within(self, start_ns: int, end_ns: int) -> Labels:
        """The labels that overlap ``[start_ns, end_ns)`` (a zero-length label: lies in it)."""
        return self.select((self.start_ns < end_ns) & (np.maximum(self.end_ns, self.start_ns + 1) > start_ns))


# ---------------------------------------------------------------------------
# intervals
# ---------------------------------------------------------------------------
def _merge(starts, ends, gap: int = 0):
    """Sort intervals and merge those whose silence is <= ``gap``; returns (starts, ends, group id)."""
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    if len(starts) == 0:
        return starts, ends, np.empty(0, np.intp)
    order = np.argsort(starts, kind="stable")
    s, e = starts[order], ends[order]
    reach = np.maximum.accumulate(e)
    new = np.r_[True, s[1:] - reach[:-1] > gap]
    gid = np.cumsum(new) - 1
    first = np.flatnonzero(new)
    out_e = np.maximum.reduceat(e, first)
    ids = np.empty(len(s), np.intp)
    ids[order] = gid
    return s[first], out_e, ids


def _measure_before(starts, ends, t):
    """Length of ``union([starts, ends)) ∩ (-inf, t)`` for each ``t``; intervals disjoint and sorted."""
    t = np.asarray(t, dtype=np.int64)
    if len(starts) == 0:
        return np.zeros(t.shape, np.int64)
    cum = np.r_[0, np.cumsum(ends - starts)]
    k = np.searchsorted(starts, t, side="right")
    j = np.maximum(k - 1, 0)
    part = np.clip(np.minimum(t, ends[j]) - starts[j], 0, None)
    return np.where(k > 0, cum[j] + part, 0)


def _measure_inside(a_s, a_e, b_s, b_e) -> int:
    """``|A ∩ B|`` for two sorted disjoint interval sets."""
    if len(a_s) == 0 or len(b_s) == 0:
        return 0
    return int(np.sum(_measure_before(b_s, b_e, a_e) - _measure_before(b_s, b_e, a_s)))


def _overlaps(a_s, a_e, b_s, b_e):
    """For each interval of A: index of the first interval of B (sorted, disjoint) it overlaps, or -1."""
    if len(b_s) == 0:
        return np.full(len(a_s), -1, np.intp)
    k = np.searchsorted(b_e, a_s, side="right")  # first B ending after a's start
    ok = k < len(b_s)
    kk = np.minimum(k, len(b_s) - 1)
    ok &= b_s[kk] < a_e
    return np.where(ok, kk, -1)


def alarm_episodes(times_ns, alarm, period_ns: int | None = None, start_ns: int | None = None,
                   end_ns: int | None = None):
    """Coverage of the alarm flags as episodes: sorted disjoint ``(starts, ends)`` in ns.

    Each flag covers ``[t, t + period_ns)``; touching or overlapping
    coverage is one episode.  Flags outside ``[start_ns, end_ns)`` are
    dropped and coverage is clipped to ``end_ns``.

    Examples
    --------
    >>> s, e = alarm_episodes([0, 10, 20, 30, 40], [1, 1, 0, 1, 0])
    >>> s.tolist(), e.tolist()
    ([0, 30], [20, 40])
    """
    t = np.asarray(times_ns, dtype=np.int64).ravel()
    a = np.asarray(alarm).ravel()
    if a.shape != t.shape:
        raise ValueError(f"times_ns and alarm must have the same length, got {len(t)} and {len(a)}")
    if a.dtype.kind not in "biu":
        raise ValueError(f"alarm must be booleans (or 0/1), got dtype {a.dtype}")
    if len(t) > 1 and np.any(np.diff(t) <= 0):
        raise ValueError("times_ns must be strictly increasing; sort the points and drop duplicate times")
    if period_ns is None:
        if len(t) < 2:
            raise ValueError("pass period_ns: it cannot be inferred from fewer than 2 points")
        period_ns = int(np.median(np.diff(t)))
    if int(period_ns) <= 0:
        raise ValueError(f"period_ns must be > 0, got {period_ns!r}")
    keep = a.astype(bool)
    if start_ns is not None:
        keep &= t >= start_ns
    if end_ns is not None:
        keep &= t < end_ns
    ts = t[keep]
    s, e, _ = _merge(ts, ts + int(period_ns), 0)
    if end_ns is not None:
        e = np.minimum(e, end_ns)
    return s, e


def group_episodes(starts, ends, merge_gap_ns: int):
    """Event id of each episode: episodes whose silence is <= ``merge_gap_ns`` share one.

    Examples
    --------
    >>> group_episodes([0, 30, 100], [20, 40, 110], 10).tolist()
    [0, 0, 1]
    """
    return _merge(starts, ends, int(merge_gap_ns))[2]


# ---------------------------------------------------------------------------
# scoring
# ---------------------------------------------------------------------------
def score_episodes(ep_starts, ep_ends, labels: Labels, start_ns: int, end_ns: int,
                   rules: EventRules = EventRules(), name: str = "", flags=None) -> EventScore:
    """Score episodes (sorted, disjoint, inside the span) of one key against its labels.

    ``flags``: optional ``(times_ns, score)`` of the flagged points, for the events' peaks.
    """
    if not end_ns > start_ns:
        raise ValueError(f"the scored span must not be empty, got [{start_ns}, {end_ns})")
    gap, before, after = rules.ns
    ep_s = np.asarray(ep_starts, dtype=np.int64)
    ep_e = np.asarray(ep_ends, dtype=np.int64)
    # a zero-length label is taken as 1 ns long, so that it can be found with zero tolerances
    w_s = labels.start_ns - before
    w_e = np.maximum(labels.end_ns, labels.start_ns + 1) + after
    # widened labels as a disjoint union inside the span, for normal time and false alarms
    u_s, u_e, _ = _merge(w_s, w_e, 0)
    u_s, u_e = np.clip(u_s, start_ns, end_ns), np.clip(u_e, start_ns, end_ns)
    u_s, u_e = u_s[u_e > u_s], u_e[u_e > u_s]
    normal_ns = (end_ns - start_ns) - int(np.sum(u_e - u_s))
    # labels: the first episode overlapping each widened label
    k = _overlaps(w_s, w_e, ep_s, ep_e)
    found = k >= 0
    first = np.maximum(ep_s[np.maximum(k, 0)] if len(ep_s) else w_s, w_s)
    delay = np.where(found, np.maximum(first - labels.start_ns, 0).astype(float), np.nan)
    # events: episodes grouped by the merge gap; true when any episode touches a widened label
    ev_s, ev_e, gid = _merge(ep_s, ep_e, gap)
    ep_true = _overlaps(ep_s, ep_e, u_s, u_e) >= 0
    ev_true = np.zeros(len(ev_s), bool)
    np.logical_or.at(ev_true, gid, ep_true)
    in_span = _measure_inside(ev_s, ev_e, np.array([start_ns]), np.array([end_ns]))
    alarm_normal = in_span - _measure_inside(ev_s, ev_e, u_s, u_e)
    peak = np.full(len(ev_s), np.nan)
    if flags is not None and len(flags[0]) and len(ev_s):
        ft, fs = flags
        inside = np.searchsorted(ev_s, ft, side="right") - 1
        ok = (inside >= 0) & np.isfinite(fs)
        peak[:] = -np.inf
        np.maximum.at(peak, inside[ok], np.abs(fs[ok]))
        peak[np.isneginf(peak)] = np.nan
    return EventScore(labels.type, found, delay, ev_s, ev_e, ~ev_true, int(normal_ns),
                      int(alarm_normal), name, event_peak=peak)


def _as_run(run, period_ns):
    """``(times, alarm, period_ns, score)`` of a run: a tuple ``(times, alarm[, period_ns])`` or any
    object with ``times`` and ``alarm`` (and optionally ``period_ns``, ``score``), such as a
    detector's output."""
    if hasattr(run, "times") and hasattr(run, "alarm"):
        return run.times, run.alarm, getattr(run, "period_ns", period_ns), getattr(run, "score", None)
    if isinstance(run, tuple) and len(run) in (2, 3):
        return run[0], run[1], run[2] if len(run) == 3 else period_ns, None
    raise ValueError("a detector run is (times_ns, alarm), (times_ns, alarm, period_ns) or an object "
                     f"with .times and .alarm, got {type(run).__name__}")


def _run_episodes(run, start_ns, end_ns, period_ns):
    """Episodes of a run and its flagged ``(times, score)`` inside the span (score None: no peaks)."""
    times, alarm, period_ns, score = _as_run(run, period_ns)
    s, e = alarm_episodes(times, alarm, period_ns, start_ns, end_ns)
    flags = None
    if score is not None:
        t = np.asarray(times, dtype=np.int64).ravel()
        sc = np.asarray(score, dtype=np.float64).ravel()
        if sc.shape != t.shape:
            raise ValueError(f"score must have one value per point, got {len(sc)} for {len(t)} points")
        m = np.asarray(alarm, dtype=bool).ravel() & (t >= start_ns) & (t < end_ns)
        flags = (t[m], sc[m])
    return s, e, flags


def score_alarms(times_ns, alarm, labels: Labels, start_ns: int, end_ns: int,
                 rules: EventRules = EventRules(), period_ns: int | None = None,
                 name: str = "", score=None) -> EventScore:
    """Score one detector run (``times_ns`` + bool ``alarm``) against labels over ``[start_ns, end_ns)``.

    ``end_ns`` is usually the last sample's time plus one period.  Labels
    must overlap the span (see :meth:`Labels.within`).  ``score`` (one per
    point, optional) gives each alarm event its peak ``|score|``.
    """
    _check_within(labels, start_ns, end_ns)
    run = (times_ns, alarm, period_ns) if score is None else _Run(times_ns, alarm, period_ns, score)
    s, e, flags = _run_episodes(run, start_ns, end_ns, period_ns)
    return score_episodes(s, e, labels, start_ns, end_ns, rules, name, flags)


@dataclass
class _Run:
    times: np.ndarray
    alarm: np.ndarray
    period_ns: int | None
    score: np.ndarray


def _check_within(labels: Labels, start_ns: int, end_ns: int) -> None:
    outside = len(labels) - len(labels.within(start_ns, end_ns))
    if outside:
        raise ValueError(f"{outside} label(s) lie outside the scored span [{start_ns}, {end_ns}) ns; "
                         "pass labels.within(start_ns, end_ns)")


def _is_keyed(run) -> bool:
    return isinstance(run, Mapping)


def score_keyed(runs: Mapping, labels: Labels, start_ns: int, end_ns: int,
                rules: EventRules = EventRules(), period_ns: int | None = None,
                name: str = "") -> EventScore:
    """Score a detector run per key (``{sensor: (times_ns, alarm)}``) and pool over the keys.

    Each key is scored against the labels of that key over the same span;
    keys with labels but no run count their labels as missed and their time
    as normal.
    """
    return _score_detectors({name or "detector": runs}, labels, start_ns, end_ns, rules, period_ns,
                            union=None).rows[name or "detector"]


def compare(detectors: Mapping, labels: Labels, start_ns: int, end_ns: int,
            rules: EventRules = EventRules(), period_ns: int | None = None,
            union: str | None = "any", title: str = "") -> Report:
    """Score several detectors and their union (an alert fires when any of them fires).

    ``detectors`` maps a name to a run ``(times_ns, alarm)`` (or
    ``(times_ns, alarm, period_ns)``, or an object with ``times``, ``alarm``
    and optionally ``period_ns`` and ``score``, like a detector's output),
    or, for fleets, to ``{key: run}``
    (then ``labels.key`` names the key of each label).  The union row merges
    the detectors' episodes per key before grouping them into events.

    Examples
    --------
    >>> S = 10**9
    >>> labels = Labels.from_seconds([10.0, 30.0], [11.0, 31.0], ["spike", "hold"])
    >>> t = np.arange(0, 60 * S, S)
    >>> a, b = (t == 10 * S), (t == 31 * S) | (t == 50 * S)
    >>> rep = compare({"a": (t, a), "b": (t, b)}, labels, 0, 60 * S)
    >>> [(k, r.n_found, r.n_false_alarms) for k, r in rep.rows.items()]
    [('a', 1, 0), ('b', 1, 1), ('any', 2, 1)]
    """
    return _score_detectors(detectors, labels, start_ns, end_ns, rules, period_ns, union, title)


def _score_detectors(detectors, labels, start_ns, end_ns, rules, period_ns, union, title=""):
    _check_within(labels, start_ns, end_ns)
    keyed = {_is_keyed(r) for r in detectors.values()}
    if len(keyed) > 1:
        raise ValueError("either every detector run is keyed ({key: run}) or none is")
    if keyed == {True}:
        if labels.key is None and len(labels):
            raise ValueError("keyed runs need labels with a key (Labels(..., key=...))")
        runs = {name: dict(r) for name, r in detectors.items()}
        keys = set().union(*[set(r) for r in runs.values()]) if runs else set()
        if labels.key is not None:
            keys |= set(labels.key.tolist())
    else:
        runs = {name: {None: r} for name, r in detectors.items()}
        keys = {None}
    keys = sorted(keys, key=str)
    per = {name: [] for name in runs}
    if union:
        per[union] = []
    for key in keys:
        lab = labels if key is None else labels.select(labels.key == key)
        eps = {}
        for name, r in runs.items():
            eps[name] = (_run_episodes(r[key], start_ns, end_ns, period_ns) if key in r
                         else (np.empty(0, np.int64), np.empty(0, np.int64), None))
            per[name].append(score_episodes(*eps[name][:2], lab, start_ns, end_ns, rules, name,
                                            eps[name][2]))
        if union:
            us = np.concatenate([v[0] for v in eps.values()]) if eps else np.empty(0, np.int64)
            ue = np.concatenate([v[1] for v in eps.values()]) if eps else np.empty(0, np.int64)
            s, e, _ = _merge(us, ue, 0)
            per[union].append(score_episodes(s, e, lab, start_ns, end_ns, rules, union))
    return Report({name: EventScore.pool(v, name) for name, v in per.items()}, title)
