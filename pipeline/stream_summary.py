"""What a run of ``python -m pipeline.stream`` counted, and how it says so.

:class:`Tally` holds the run's totals (samples, gaps, malformed values,
points and alarm points per detector, retries, quarantined keys, late
points, points written) and the first alarm points of each detector; the
stream adds each detector's output of a batch to it (:meth:`Tally.add`).  It
logs the breaks the detectors report and, every ``log_every`` seconds, the
progress line (:meth:`Tally.maybe_log`).  :func:`summary_text` is what the
command prints at the end: the totals and the alarm points merged into
episodes (:func:`_events`).

Log lines go to the logger ``pipeline.stream``, as the stream's own.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from .series import format_timestamp
from .stream_output import stamps_own_times

__all__ = ["Tally", "summary_text", "label", "MAX_FLAGGED"]

log = logging.getLogger("pipeline.stream")

MAX_FLAGGED = 1000
"""Alarm points remembered for the summary, per detector (memory stays flat)."""

_fmt = format_timestamp


def label(name: str, key: str) -> str:
    """How logs and messages name a series key.

    >>> label("temperature", "s01"), label("ekg", "")
    ('temperature[s01]', 'ekg')
    """
    return f"{name}[{key}]" if key else name


class Tally:
    """The totals of one stream, the first alarm points of each detector, the progress line.

    Parameters
    ----------
    max_flagged : int
        Alarm points remembered per detector for the summary's list of alarm events.

    Attributes
    ----------
    totals : dict
        What :meth:`pipeline.stream.Stream.backfill` and ``follow`` return.
    flagged : list
        ``(series, key, detector label, time ns, |score|, output spacing ns)`` of the first
        ``max_flagged`` alarm points of each detector.

    >>> Tally().totals["samples"]
    0
    """

    def __init__(self, max_flagged: int = MAX_FLAGGED):
        self.max_flagged = max_flagged
        self.totals = {"samples": 0, "malformed": 0, "gaps": 0,
                       "skipped_samples": 0, "points_written": 0, "retries": 0,
                       "quarantined": 0, "late": 0, "alarm_points": {}, "points": {}}
        self.flagged: list[tuple[str, str, str, int, float, float]] = []
        self._n_flagged: dict[str, int] = {}
        self._t_log = time.monotonic()
        self._n_logged = 0

    def add(self, series: str, keys: list, det, out, rows: np.ndarray) -> None:
        """Count one detector's output of a batch of the fleet of ``series``.

        ``rows`` gives each output point's row (its key: ``keys[row]``).  The
        points of a detector that stamps its own times are counted (those of the
        per-sample detectors are the samples), every alarm point, and the
        first alarm points of each detector are remembered.
        """
        totals = self.totals
        totals["skipped_samples"] += out.skipped
        totals["late"] += out.late
        for row, gaps in out.gaps:
            self.log_gaps(label(series, keys[row]), gaps)
        n_alarm = int(np.count_nonzero(out.alarm))
        alarms = totals["alarm_points"]
        alarms[det.label] = alarms.get(det.label, 0) + n_alarm
        if stamps_own_times(det) and len(out):
            pts = totals["points"]  # of the detectors that stamp their own times
            pts[det.label] = pts.get(det.label, 0) + len(out)
        have = self._n_flagged.get(det.label, 0)
        if n_alarm and have < self.max_flagged:  # the first alarm points of each detector
            idx = np.flatnonzero(out.alarm)[:self.max_flagged - have]
            self._n_flagged[det.label] = have + len(idx)
            step = det.output_period_ns()
            self.flagged += [(series, keys[r], det.label, t, abs(e), step)
                             for r, t, e in zip(rows[idx].tolist(), out.times[idx].tolist(),
                                                out.score[idx].tolist(), strict=True)]

    def log_gaps(self, name: str, gaps) -> None:
        """Count and log the breaks a detector found (segment detectors report them)."""
        self.totals["gaps"] += len(gaps)
        more = (f"; {len(gaps) - 1} more up to the one between {_fmt(gaps[-1].before_ns)} "
                f"and {_fmt(gaps[-1].after_ns)}") if len(gaps) > 1 else ""
        log.warning("series %s: %s between %s and %s%s; segments spanning a gap are skipped",
                    name, gaps[0].kind, _fmt(gaps[0].before_ns), _fmt(gaps[0].after_ns), more)

    def maybe_log(self, every_s: float, following: bool, lag=None) -> None:
        """A progress line every ``every_s`` seconds; ``lag`` (seconds of source data not yet
        scored, or None) is called only then; ``following`` adds the late points."""
        now = time.monotonic()
        if now - self._t_log < every_s:
            return
        dt, self._t_log = now - self._t_log, now
        n, self._n_logged = self.totals["samples"] - self._n_logged, self.totals["samples"]
        msg = (f"{n / dt:,.0f} samples/s, {self.totals['samples']:,} samples, "
               f"points of the detectors that stamp their own times: "
               f"{_point_counts(self.totals)}, alarm points: "
               f"{_alarm_counts(self.totals)}")
        if following:
            msg += f", late points: {self.totals['late']:,}"
        behind = lag() if lag is not None else None
        if behind is not None:
            msg += f", {behind:.2f} s of source data behind"
        log.info(msg)


def summary_text(totals: dict, flagged, limit: int = 20, max_flagged: int = MAX_FLAGGED) -> str:
    """The summary ``python -m pipeline.stream`` prints: totals, then up to ``limit`` alarm
    events (consecutive alarm points of one detector and key)."""
    secs = totals.get("seconds", 0) or 1e-9
    lines = [
        f"scored {totals['samples']:,} samples in {totals.get('seconds', 0):.2f} s "
        f"({totals['samples'] / secs:,.0f} samples/s)",
        f"  points of the detectors that stamp their own times: {_point_counts(totals)}",
        f"  alarm points per detector: {_alarm_counts(totals)}",
        f"  gaps: {totals['gaps']}, samples skipped at gaps: {totals.get('skipped_samples', 0)}, "
        f"malformed values skipped: {totals['malformed']}, late points (not scored live): "
        f"{totals.get('late', 0):,}, InfluxDB retries: {totals['retries']}",
        f"  points written: {totals['points_written']:,}"
        + (f", alert notifications: {totals['notifications']:,}" if totals.get("notifications")
           else ""),
    ]
    if flagged:
        events = _events(flagged)
        counts = {}
        for f in flagged:
            counts[f[2]] = counts.get(f[2], 0) + 1
        more = (f" (from the first {max_flagged:,} alarm points of each detector)"
                if max(counts.values()) >= max_flagged else "")
        width = max(len(e[1]) for e in events)
        lines.append(f"  alarm events{more}: consecutive alarm points of one detector and key "
                     "(as the alert path counts episodes); series, detector, start .. end, "
                     "points, peak |score|:")
        for name, det, t0, t1, n, peak in events[:limit]:
            lines.append(f"    {name}  {det:<{width}s} {_fmt(t0)} .. {_fmt(t1)}  {n:5d}  {peak:.4g}")
        if len(events) > limit:
            lines.append(f"    ... {len(events) - limit} more")
    return "\n".join(lines)


def _point_counts(totals) -> str:
    """``shape 6,749, baseline step 4,892``: the points of each detector that stamps its own
    times (segments, windows, a fleet's bins)."""
    counts = totals.get("points") or {}
    return ", ".join(f"{k} {v:,}" for k, v in counts.items()) or "none"


def _alarm_counts(totals) -> str:
    counts = totals.get("alarm_points") or {}
    return ", ".join(f"{k} {v:,}" for k, v in counts.items()) or "none"


def _events(flagged):
    """Merge the alarm points of one series key and detector into episodes.

    Each entry is ``(series, key, detector label, time ns, |score|, output spacing ns)``.  The
    alarm is held, so an episode is a run of consecutive output points; two points less than
    1.5 output spacings apart are consecutive (episodes then match the alert path's, except
    across a gap in the data).

    >>> s = 2e9  # a 2 s cadence: 0, 2, 4 s are one episode, 8 s another
    >>> [(e[2], e[3], e[4]) for e in _events([("t", "", "z-score", int(x * 1e9), 1.0, s)
    ...                                       for x in (0, 2, 4, 8)])]
    [(0, 4000000000, 3), (8000000000, 8000000000, 1)]
    """
    out, cur = [], None
    for name, key, det, t, e, step in sorted(flagged):
        who = label(name, key)
        if cur and cur[0] == who and cur[1] == det and t - cur[3] < 1.5 * step:
            cur[3], cur[4], cur[5] = t, cur[4] + 1, max(cur[5], e)
        else:
            cur = [who, det, t, t, 1, e]
            out.append(cur)
    return [tuple(c) for c in out]
