"""Point-level helpers for the demo and the notebooks: flagged points merged into events.

The event-level scoring of record is :mod:`pipeline.events`; these are the
simple symmetric-tolerance versions the demo prints.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Events", "flag_events", "Match", "match_events"]


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
