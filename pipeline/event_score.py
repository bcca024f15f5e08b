"""What an event-level score holds and how it prints: :class:`EventScore`, :class:`Report`.

Produced by :mod:`pipeline.events` (see its docstring for the matching rules).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["EventScore", "Report"]

S = 10**9
HOUR_NS = 3600 * S


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
                         f"{_num(s.f1, '.3f'):>6}{_num(s.false_alarms_per_hour, '.2f'):>8}"
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
