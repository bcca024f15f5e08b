"""Fan-out helpers of the stream: one encode for every key of a batch, and which keys to read.

:func:`encode_rows` writes the line protocol of many series keys at once:
each key's escaped ``measurement,tags`` prefix is computed (and every name
checked) once per key and kept (:class:`Prefixes`), a field whose value is
the same on every point (a threshold) is formatted once, and every line is
one ``%`` template.  The bytes are those of
:func:`pipeline.influx.encode_lines` for each key apart (``tests/test_fanout.py``).

:func:`plan_follow` picks, at each poll of a fan-out series, the keys read
together (one grouped read from their lowest mark) and the keys read one by
one (new keys from their origin, stalled keys, keys with a clock far ahead).
"""

from __future__ import annotations

import numpy as np

from .line_protocol import _columns, _render, series_prefix

__all__ = ["Prefixes", "encode_rows", "plan_follow", "feed_alerts", "count_late"]


class Prefixes:
    """The line-protocol prefix of each row of a fleet, per measurement, computed once.

    ``tags_of(row)`` gives a row's tags; :meth:`get` returns the prefixes of
    some rows, or raises ``(row, InfluxNameError)`` via ``bad`` for rows whose
    names InfluxDB could not store.
    """

    def __init__(self, tags_of):
        self.tags_of = tags_of
        self._cache: dict[str, list] = {}
        self._fields: dict[str, list] = {}

    def get(self, measurement: str, rows, field_keys) -> tuple[np.ndarray, dict]:
        """``(prefixes as an object array by row, {row: error})`` for ``rows``."""
        cache = self._cache.setdefault(measurement, [])
        fk = sorted(field_keys)
        if self._fields.get(measurement) != fk:  # new fields: key lengths change
            cache.clear()
            self._fields[measurement] = fk
        errors = {}
        need = int(np.max(rows)) + 1 if len(rows) else 0
        if len(cache) < need:
            cache.extend([None] * (need - len(cache)))
        for r in np.unique(rows).tolist():
            if cache[r] is None:
                try:
                    cache[r] = series_prefix(measurement, self.tags_of(r), fk)
                except ValueError as e:
                    errors[r] = e
        return np.array(cache, dtype=object), errors

    def clear(self) -> None:
        self._cache.clear()
        self._fields.clear()


def encode_rows(prefix: np.ndarray, rows, times, fields: dict, single: bool = False) -> list[str]:
    """Line protocol for points of many keys: ``prefix[rows[i]] fields times[i]``.

    As :func:`~pipeline.line_protocol.encode_lines` for each key apart, in
    the order of the points: non-finite floats are left out of their line
    (a point with no field left is dropped); the points lacking the same
    fields are rendered with one ``%`` template, in which a column that holds
    one value throughout (a threshold) is a literal.  ``single``: floats at
    float32's digits (:func:`~pipeline.line_protocol.float_texts`).

    >>> p = np.array(["m,k=a", "m,k=b"], dtype=object)
    >>> encode_rows(p, np.array([1, 0]), np.array([5, 6]),
    ...             {"x": np.array([0.5, np.nan]), "t": np.array([2.0, 2.0])})
    ['m,k=b t=2.0,x=0.5 5', 'm,k=a t=2.0 6']
    """
    times, cols = _columns(times, fields)
    if len(times) == 0:
        return []
    return _render(prefix[np.asarray(rows, np.int64)], cols, times, single)


def plan_follow(last: np.ndarray, active: np.ndarray, half_ns: int, solo: set,
                quiet: np.ndarray, now: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows read together and rows read alone at this poll.

    The group is the keys whose marks lie within ``half_ns`` above the lowest
    mark near the median (so a few keys far behind or ahead do not hold the
    others back or get starved by them); ``solo`` rows (starved in the last
    grouped read) and every other active key are read alone, except quiet
    ones (their last lone read found nothing) until ``quiet[row] <= now``.

    >>> last = np.array([100, 101, 102, 5, 10**9])
    >>> g, a = plan_follow(last, np.ones(5, bool), 50, set(), np.zeros(5), 0.0)
    >>> g.tolist(), a.tolist()
    ([0, 1, 2], [3, 4])
    """
    rows = np.flatnonzero(active)
    if len(rows) == 0:
        return rows, rows
    marks = last[rows]
    srt = np.sort(marks)
    m0 = srt[np.searchsorted(srt, srt[len(srt) // 2] - half_ns, side="left")]
    in_group = (marks >= m0) & (marks <= m0 + half_ns)
    if solo:
        in_group &= ~np.isin(rows, np.fromiter(solo, np.int64, len(solo)))
    group = rows[in_group]
    alone = rows[~in_group]
    alone = alone[quiet[alone] <= now]
    return group, alone


def feed_alerts(alerts, series: str, f, outs, tags_of) -> None:
    """Give the alert engine one batch of a fleet: only the keys whose alarms changed.

    A key is fed a detector's output when that output has an alarm point, or
    when the key's previous output ended in alarm (an episode may end here);
    the key with the newest output is always fed, so the engine's clock (its
    per-minute summaries) moves.  Keys with neither would change nothing in
    the engine.  Every key is fed when a Plexus forwarder takes the series'
    scores (it forwards them all).  ``f.open`` carries each key's last alarm
    (True when unknown, after a restart: then the key is fed once).
    """
    every = any(fw.series == series for fw in alerts.forwarders)
    for i, out in enumerate(outs):
        has = np.diff(out.starts) > 0
        if not has.any():
            continue
        ends = np.maximum(out.starts[1:] - 1, 0)
        if every:
            feed = has
        else:
            any_alarm = np.zeros(len(has), bool)
            any_alarm[has] = np.add.reduceat(out.alarm, out.starts[:-1][has]) > 0
            feed = has & (any_alarm | f.open[out.rows, i])
            newest = np.flatnonzero(has)[int(np.argmax(out.times[ends[has]]))]
            feed[newest] = True
        for j in np.flatnonzero(feed).tolist():
            row = int(out.rows[j])
            o = out.key_output(j)
            o.measurement = out.measurement
            alerts.feed(series, f.keys[row], tags_of(row), f.version, [o])
        f.open[out.rows[has], i] = out.alarm[ends[has]]


def count_late(reader, s, f) -> tuple[int, dict]:
    """Late points of a fleet: InfluxDB's counts per key and closed bucket beyond what the
    stream scored there (:class:`~pipeline.fleet.LateCounter`); one query.

    Returns ``(total, {row: [late points, first bucket]})``.
    """
    lc = f.late
    rows = np.flatnonzero(f.active() & (lc.first != np.iinfo(np.int64).min))
    if not len(rows):
        return 0, {}
    lo, hi = lc.window(f.last, rows)
    ok = lo < hi
    ok &= hi >= hi.max() - lc.n_buckets  # keys far behind the others are not counted
    rows, lo, hi = rows[ok], lo[ok], hi[ok]
    if not len(rows):
        return 0, {}
    w = lc.width_ns
    groups, times, counts = reader.count_buckets(s.db, s.measurement, s.field, int(lo.min()) * w,
                                                 int(hi.max()) * w, w, s.tags, s.fan_out)
    if not len(times):
        return 0, {}
    grow = f.rows_of(groups.tolist()) if s.fan_out else np.zeros(len(times), np.int64)
    lo_all = np.full(len(f), np.iinfo(np.int64).max)
    hi_all = np.full(len(f), np.iinfo(np.int64).min)
    lo_all[rows], hi_all[rows] = lo, hi
    bk = times // w
    known = grow >= 0
    inwin = np.zeros(len(times), bool)
    inwin[known] = (bk[known] >= lo_all[grow[known]]) & (bk[known] < hi_all[grow[known]])
    late = lc.compare(grow[inwin], bk[inwin], counts[inwin])
    hit = late > 0
    per: dict = {}
    for r, b, n in zip(grow[inwin][hit].tolist(), bk[inwin][hit].tolist(), late[hit].tolist(),
                       strict=True):
        k = per.setdefault(r, [0, b])
        k[0] += n
        k[1] = min(k[1], b)
    return int(late.sum()), per
