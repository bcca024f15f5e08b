"""Follow mode's bookkeeping: which fan-out keys a poll reads, and the count of late points.

:class:`FollowPlan` remembers, per fan-out series, the keys to read alone at
the next poll (starved by the last grouped read) and the quiet keys (their
lone read found nothing: read alone again after :data:`QUIET_S`, sooner if
they show up in the grouped read); :func:`pipeline.fanout.plan_follow`
picks the group.  :class:`LateCheck` counts, every ``late_every`` seconds,
the points that arrived after their key had moved past them
(:func:`pipeline.fanout.count_late`, one query per series) and logs them;
:func:`late_counter` is the per-key count of scored points it compares with.

Log lines go to the logger ``pipeline.stream``, as the stream's own.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from .fanout import count_late, plan_follow
from .fleet import Fleet, LateCounter, factorize
from .influx import InfluxError
from .series import format_timestamp
from .stream_config import SeriesConfig
from .stream_summary import label

__all__ = ["FollowPlan", "LateCheck", "late_counter", "KEY_REFRESH_S", "QUIET_S", "LATE_BUCKETS"]

log = logging.getLogger("pipeline.stream")

KEY_REFRESH_S = 30.0
"""Fan-out keys are listed again this often in follow mode (new sensors appear)."""
QUIET_S = 30.0
"""A fan-out key whose lone read found nothing is read alone again after this long (sooner if
it shows up in the grouped read)."""
LATE_BUCKETS = 10
"""The late window is counted in this many buckets of data time."""

_fmt = format_timestamp


class FollowPlan:
    """Per fan-out series: the keys a poll reads together and the keys it reads alone.

    >>> import numpy as np
    >>> plan = FollowPlan()
    >>> g, a = plan.plan("t", np.array([100, 101, 102, 5]), np.ones(4, bool), 50, 0.0)
    >>> g.tolist(), a.tolist()
    ([0, 1, 2], [3])
    """

    def __init__(self):
        self.solo: dict[str, set] = {}
        """Rows to read alone at the next poll (starved by the last grouped read)."""
        self.quiet: dict[str, np.ndarray] = {}
        """Per row: until when (monotonic s) a key whose lone read found nothing is skipped."""

    def plan(self, name: str, last: np.ndarray, active: np.ndarray, half_ns: int,
             now: float) -> tuple[np.ndarray, np.ndarray]:
        """``(rows read together, rows read alone)`` at this poll
        (:func:`~pipeline.fanout.plan_follow`; ``last``: the fleet's marks)."""
        quiet = self.quiet.setdefault(name, np.zeros(0))
        if len(quiet) < len(last):
            quiet = self.quiet[name] = np.concatenate([quiet, np.zeros(len(last) - len(quiet))])
        return plan_follow(last, active, half_ns, self.solo.pop(name, set()), quiet, now)

    def after_group(self, name: str, f: Fleet, r, group: np.ndarray, admit: np.ndarray,
                    fed: set, n0: int, cut_ns: int) -> None:
        """After the grouped read ``r`` of ``group`` (``admit`` its mask, ``fed`` the rows that
        got points, ``n0`` the fleet's rows before it): a quiet key that wrote again is read
        now; when the slice was cut by its end (a point after ``cut_ns``) rather than by the
        newest data, a group key that got nothing may have a gap longer than the slice: it
        jumps it on its own at the next poll."""
        if not len(r):
            return
        seen = f.rows_of(factorize(r.groups)[1])
        woke = seen[(seen >= 0) & (seen < n0)]
        self.quiet[name][woke[~admit[woke]]] = 0.0  # a quiet key wrote again: read it now
        if int(r.times.max()) > cut_ns:
            self.solo[name] = set(group.tolist()) - fed

    def after_alone(self, name: str, row: int, r, now: float) -> None:
        """After the lone read ``r`` of ``row``: a key that gave nothing goes quiet."""
        if not len(r) and not r.n_malformed:
            self.quiet[name][row] = now + QUIET_S


def late_counter(late_window_s: float) -> LateCounter:
    """The per-key count of scored points that late points are found with."""
    width = max(1, int(late_window_s * 1e9 / LATE_BUCKETS))
    return LateCounter(width, LATE_BUCKETS)


class LateCheck:
    """Follow mode's count of late points: every ``late_every`` seconds (default: a tenth of
    ``late_window``), one query per series; the count is added to ``totals['late']``.

    Parameters
    ----------
    cfg : StreamConfig
        ``late_window`` (0: off), ``late_every`` and the series are read from it at each check.
    reader : Influx
    totals : dict
        The stream's totals.
    """

    def __init__(self, cfg, reader, totals: dict):
        self.cfg = cfg
        self.reader = reader
        self.totals = totals
        self._t = time.monotonic()

    def maybe_check(self, fleets: dict) -> None:
        """Count the late points of every fleet when ``late_every`` seconds have passed."""
        every = self.cfg.late_every
        if self.cfg.late_window <= 0:
            return
        if every is None:
            every = self.cfg.late_window / LATE_BUCKETS
        now = time.monotonic()
        if now - self._t < every:
            return
        self._t = now
        for s in self.cfg.series:
            f = fleets.get(s.name)
            if f is not None and f.late is not None and len(f):
                try:
                    self.check(s, f)
                except InfluxError as e:  # a count must not stop the stream
                    log.warning("series %s: could not count late points (%s)", s.name, e)

    def check(self, s: SeriesConfig, f: Fleet) -> int:
        """Count the points of closed buckets that arrived after their key moved past them."""
        total, per = count_late(self.reader, s, f)
        if total:
            self.totals["late"] += total
            w = f.late.width_ns
            shown = ", ".join(f"{label(s.name, f.keys[r])} {n} from {_fmt(b_ * w)}"
                              for r, (n, b_) in list(per.items())[:5])
            more = f" and {len(per) - 5} more keys" if len(per) > 5 else ""
            log.warning("series %s: %d late points in %d keys (older than their key's last "
                        "scored point when they arrived, so follow mode did not score them): "
                        "%s%s; a backfill of that range (with its own --checkpoint-dir) scores "
                        "them", s.name, total, len(per), shown, more)
        return total
