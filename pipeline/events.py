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
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["EventRules", "Labels", "EventScore", "Report", "alarm_episodes", "group_episodes",
           "score_episodes", "score_alarms", "score_keyed", "compare",
           "Events", "flag_events", "Match", "match_events"]

S = 10**9
HOUR_NS = 3600 * S


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
# scores
# ---------------------------------------------------------------------------
@dataclass
class EventScore:
    """Event-level outcome of one detector (or one pool of cases/keys).

    Per label: ``label_type``, ``found``, ``delay_ns`` (NaN when missed).
    Per alarm event: ``event_start_ns``, ``event_end_ns``, ``event_false`` and
    ``event_peak`` (the largest ``|score|`` of its flagged points; NaN when no
    score was given, and for the union of detectors).
    Times: ``normal_ns`` (scored time outside widened labels) and
    ``alarm_normal_ns`` (alarm-event time inside it).
    """

    label_type: np.ndarray
    found: np.ndarray
    delay_ns: np.ndarray
    event_start_ns: np.ndarray
    event_end_ns: np.ndarray
    event_false: np.ndarray
    normal_ns: int
    alarm_normal_ns: int
    name: str = ""
    notes: list = field(default_factory=list)
    event_peak: np.ndarray | None = None

    n_labels = property(lambda self: len(self.found))
    n_found = property(lambda self: int(np.count_nonzero(self.found)))
    n_events = property(lambda self: len(self.event_false))
    n_false_alarms = property(lambda self: int(np.count_nonzero(self.event_false)))

    def __post_init__(self):
        if self.event_peak is None:
            self.event_peak = np.full(len(self.event_false), np.nan)

    @property
    def recall(self) -> float:
        """Share of labels found; NaN without labels."""
        return self.n_found / self.n_labels if self.n_labels else math.nan

    @property
    def precision(self) -> float:
        """Share of alarm events that match a label; NaN without alarm events."""
        return (self.n_events - self.n_false_alarms) / self.n_events if self.n_events else math.nan

    @property
    def f1(self) -> float:
        """Harmonic mean of event recall and precision (0 when both are 0, NaN when either is NaN)."""
        r, p = self.recall, self.precision
        if math.isnan(r) or math.isnan(p):
            return math.nan
        return 2 * r * p / (r + p) if r + p > 0 else 0.0

    @property
    def normal_hours(self) -> float:
        return self.normal_ns / HOUR_NS

    @property
    def false_alarms_per_hour(self) -> float:
        """False alarm events per hour of normal time; NaN without normal time."""
        return self.n_false_alarms / self.normal_hours if self.normal_ns > 0 else math.nan

    @property
    def alarm_share(self) -> float:
        """Share of normal time inside alarm events; NaN without normal time."""
        return self.alarm_normal_ns / self.normal_ns if self.normal_ns > 0 else math.nan

    @property
    def median_delay_s(self) -> float:
        """Median detection delay over the found labels, in seconds; NaN when none was found."""
        d = self.delay_ns[self.found]
        return float(np.median(d)) / S if len(d) else math.nan

    def recall_by_type(self) -> dict[str, tuple[int, int]]:
        """``{type: (found, labelled)}``, types sorted."""
        return {str(ty): (int(np.count_nonzero(self.found[self.label_type == ty])),
                          int(np.count_nonzero(self.label_type == ty)))
                for ty in sorted(set(self.label_type.tolist()))}

    @classmethod
    def pool(cls, scores, name: str = "") -> EventScore:
        """One score over several cases or keys: labels, events and times added up."""
        scores = list(scores)

        def cat(attr, dtype):
            parts = [getattr(s, attr) for s in scores]
            return np.concatenate(parts).astype(dtype) if parts else np.empty(0, dtype)

        return cls(cat("label_type", object), cat("found", bool), cat("delay_ns", float),
                   cat("event_start_ns", np.int64), cat("event_end_ns", np.int64),
                   cat("event_false", bool), sum(s.normal_ns for s in scores),
                   sum(s.alarm_normal_ns for s in scores), name or (scores[0].name if scores else ""),
                   [n for s in scores for n in s.notes], cat("event_peak", float))

    def to_dict(self) -> dict:
        """Plain numbers (JSON-ready): counts, rates, delays, recall by type."""
        def num(v):
            return None if isinstance(v, float) and math.isnan(v) else v

        return {"name": self.name, "labels": self.n_labels, "found": self.n_found,
                "events": self.n_events, "false_alarms": self.n_false_alarms,
                "recall": num(self.recall), "precision": num(self.precision), "f1": num(self.f1),
                "normal_hours": self.normal_hours,
                "false_alarms_per_hour": num(self.false_alarms_per_hour),
                "alarm_share": num(self.alarm_share), "median_delay_s": num(self.median_delay_s),
                "recall_by_type": {k: list(v) for k, v in self.recall_by_type().items()}}

    def summary(self) -> str:
        """One line: found, false alarms and their rate, delay."""
        return (f"{self.name + ': ' if self.name else ''}found {self.n_found} of {self.n_labels} "
                f"labelled events (recall {_pct(self.recall)}); {self.n_events} alarm events, "
                f"{self.n_false_alarms} false ({_num(self.false_alarms_per_hour, '.2f')} per hour of "
                f"{self.normal_hours:.2f} normal hours, {_pct(self.alarm_share, 2)} of it in alarm); "
                f"median delay {_num(self.median_delay_s, '.2f')} s")

    def table(self) -> str:
        return Report({self.name or "detector": self}).table()


def _pct(v: float, digits: int = 0) -> str:
    return "-" if math.isnan(v) else f"{100 * v:.{digits}f}%"


def _num(v: float, fmt: str) -> str:
    return "-" if math.isnan(v) else format(v, fmt)


@dataclass
class Report:
    """Rows of :class:`EventScore` by name (detectors, and ``any``: their union)."""

    rows: dict[str, EventScore]
    title: str = ""

    def table(self) -> str:
        """A fixed-width text table, then recall by fault type."""
        head = (f"{'detector':<16}{'found':>9}{'recall':>8}{'events':>8}{'false':>7}{'prec.':>7}"
                f"{'F1':>6}{'FA/h':>8}{'alarm%':>8}{'delay s':>9}")
        lines = [self.title] if self.title else []
        lines += [head, "-" * len(head)]
        for name, s in self.rows.items():
            lines.append(f"{name:<16}{f'{s.n_found}/{s.n_labels}':>9}{_pct(s.recall):>8}"
                         f"{s.n_events:>8}{s.n_false_alarms:>7}{_pct(s.precision):>7}"
                         f"{_num(s.f1, '.2f'):>6}{_num(s.false_alarms_per_hour, '.2f'):>8}"
                         f"{_pct(s.alarm_share, 2):>8}{_num(s.median_delay_s, '.2f'):>9}")
        any_row = next(iter(self.rows.values()), None)
        if any_row is not None and any_row.n_labels:
            lines.append(f"(normal time {any_row.normal_hours:.2f} h)")
            types = list(any_row.recall_by_type())
            width = [max(7, len(t)) + 2 for t in types]
            lines.append(f"{'found by type':<16}" + "".join(f"{t:>{w}}" for t, w in zip(types, width, strict=True)))
            for name, s in self.rows.items():
                by = s.recall_by_type()
                cells = ("/".join(map(str, by.get(t, (0, 0)))) for t in types)
                lines.append(f"{name:<16}" + "".join(f"{c:>{w}}" for c, w in zip(cells, width, strict=True)))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"title": self.title, "rows": {k: v.to_dict() for k, v in self.rows.items()}}


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


# ---------------------------------------------------------------------------
# point-level helpers used by the demo and the notebook (symmetric tolerance)
# ---------------------------------------------------------------------------
@dataclass
class Events:
    """Flagged points merged into events: ``starts``/``ends`` (ns) and their peak score."""

    starts: np.ndarray
    ends: np.ndarray
    peaks: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)


def flag_events(times_ns, scores, threshold: float, merge_ns: int) -> Events:
    """Merge points with ``score > threshold`` that lie within ``merge_ns`` of each other.

    Examples
    --------
    >>> ev = flag_events([0, 10, 20, 30, 100, 110], [5, 9, 9, 1, 9, 2], threshold=8, merge_ns=15)
    >>> ev.starts.tolist(), ev.ends.tolist(), ev.peaks.tolist()
    ([10, 100], [20, 100], [9.0, 9.0])
    """
    t = np.asarray(times_ns, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    if t.shape != s.shape:
        raise ValueError(f"times_ns and scores must have the same shape, got {t.shape} and {s.shape}")
    hit = s > threshold  # NaN never flags
    th, sh = t[hit], s[hit]
    if len(th) == 0:
        return Events(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))
    new = np.flatnonzero(np.diff(th) > merge_ns) + 1
    first = np.r_[0, new]
    last = np.r_[new - 1, len(th) - 1]
    peaks = np.maximum.reduceat(sh, first)
    return Events(th[first], th[last], peaks)


@dataclass
class Match:
    """The outcome of :func:`match_events`."""

    n_labelled: int
    n_found: int
    n_events: int
    n_false_alarms: int
    found: np.ndarray  # bool per labelled interval
    false_alarm: np.ndarray  # bool per event

    @property
    def recall(self) -> float:
        return self.n_found / self.n_labelled if self.n_labelled else float("nan")

    @property
    def precision(self) -> float:
        return (self.n_events - self.n_false_alarms) / self.n_events if self.n_events else float("nan")

    def summary(self) -> str:
        return (f"found {self.n_found} of {self.n_labelled} labelled anomalies "
                f"(recall {self.recall:.0%}); {self.n_events} flagged events, "
                f"{self.n_false_alarms} of them false alarms")


def match_events(events: Events, label_starts_ns, label_ends_ns, tolerance_ns: int = 0) -> Match:
    """Match flagged events with labelled intervals (overlap, widened by ``tolerance_ns``).

    Examples
    --------
    >>> ev = Events(np.array([10, 100]), np.array([20, 100]), np.array([9.0, 9.0]))
    >>> m = match_events(ev, [15, 50], [30, 60])
    >>> m.n_found, m.n_false_alarms, m.summary()
    (1, 1, 'found 1 of 2 labelled anomalies (recall 50%); 2 flagged events, 1 of them false alarms')
    """
    ls = np.asarray(label_starts_ns, dtype=np.int64) - tolerance_ns
    le = np.asarray(label_ends_ns, dtype=np.int64) + tolerance_ns
    # overlap[i, j]: event i overlaps label j
    overlap = (events.starts[:, None] <= le[None, :]) & (events.ends[:, None] >= ls[None, :])
    found = overlap.any(axis=0) if len(events) else np.zeros(len(ls), bool)
    false_alarm = ~overlap.any(axis=1) if len(ls) else np.ones(len(events), bool)
    return Match(len(ls), int(found.sum()), len(events), int(false_alarm.sum()), found, false_alarm)
