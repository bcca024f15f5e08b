"""The stream's reads of a series' source, and the new points a read brings.

:class:`SourceReader` lists a series' fan-out keys and reads its field in
time slices (:meth:`~SourceReader.slice_ns`: ``batch_samples`` points over
the keys read together); an empty slice costs one more query to find the
next point, so long gaps in the source are jumped over, not walked.  Every
read goes through the stream's retry (an unreachable InfluxDB is waited
for); a source database that does not exist is :class:`SourceMissing`
(follow mode waits for it).  Values that are not numbers are counted and
logged.

:func:`new_points` turns one read into the :class:`~pipeline.fleet.Batch` of
points a fleet has not scored yet, and :func:`drop_unscorable` takes out the
keys whose points cannot be scored (several points at one timestamp, a
sample period other than the model's).

Log lines go to the logger ``pipeline.stream``, as the stream's own.
"""

from __future__ import annotations

import logging

import numpy as np

from .fleet import Batch, Fleet, factorize
from .influx import Influx, InfluxError, InfluxQueryError
from .stream_config import SeriesConfig
from .stream_summary import label

__all__ = ["SourceReader", "SourceMissing", "from_source", "new_points", "drop_unscorable",
           "MIN_SLICE_SAMPLES"]

log = logging.getLogger("pipeline.stream")

MIN_SLICE_SAMPLES = 1000
"""A read slice is never expected to hold fewer samples (at the period the data shows)."""


class SourceMissing(InfluxQueryError):
    """The source database is not there (yet); follow mode waits for it."""


def from_source(fn):
    """Run a read of the source; a missing database becomes :class:`SourceMissing`."""
    try:
        return fn()
    except InfluxQueryError as e:
        if "not found" in str(e):
            raise SourceMissing(str(e)) from None
        raise


class SourceReader:
    """Reads the configured series for the stream.

    Parameters
    ----------
    reader : Influx
        The stream's read connection.
    cfg : StreamConfig
        ``batch_samples`` is read from it at every read.
    periods : dict
        ``{series name: sample period (ns)}``.
    fleets : dict
        The stream's ``{series name: Fleet}``: a slice is stretched while a series'
        data shows a longer period than configured.
    retry : callable
        ``retry(what, fn, *args)``: the stream's retry with backoff.
    totals : dict
        The stream's totals; ``malformed`` counts the values skipped.
    """

    def __init__(self, reader: Influx, cfg, periods: dict, fleets: dict, retry, totals: dict):
        self.reader = reader
        self.cfg = cfg
        self.periods = periods
        self.fleets = fleets
        self.retry = retry
        self.totals = totals
        self._warned_slice: set = set()

    def keys(self, s: SeriesConfig, shard) -> list[str]:
        """The keys of a series this process scores (all of them, or ``shard``'s)."""
        if not s.fan_out:
            return [""] if shard is None or shard.owns(s.name, "") else []
        keys = from_source(lambda: self.retry("listing tag values", self.reader.tag_values, s.db,
                                              s.measurement, s.fan_out, s.tags))
        if shard is not None:
            keys = [k for k, own in zip(keys, shard.owned(s.name, keys), strict=True) if own]
        return keys

    def read(self, s: SeriesConfig, start_ns, end_ns, include_start: bool, key=None):
        """One read of ``[start_ns, end_ns)`` (all keys, or fan-out key ``key``)."""
        tags = s.tags if key is None else dict(s.tags, **{s.fan_out: key})
        r = from_source(lambda: self.retry(f"reading {s.db}.{s.measurement}",
                                           self.reader.read_field, s.db, s.measurement, s.field,
                                           start_ns, end_ns, tags, s.fan_out, None, include_start))
        if r.n_malformed:
            log.warning("series %s: %d malformed values (not numbers, or beyond +-1e100) "
                        "skipped", s.name, r.n_malformed)
            self.totals["malformed"] += r.n_malformed
        return r

    def read_from(self, s: SeriesConfig, lo: int, end: int | None, include_start: bool,
                  key=None, n_keys: int = 1):
        """Read the next slice (:meth:`slice_ns`) at ``lo`` (before ``end``).

        An empty slice costs one more query to find the next point, so long
        gaps in the source are jumped over, not walked.  Returns ``(hi, r)``:
        everything before ``hi`` has been read; ``r`` is empty at the end.
        """
        step = self.slice_ns(s, n_keys)
        tags = s.tags if key is None else dict(s.tags, **{s.fan_out: key})
        while True:
            hi = lo + step if end is None else min(lo + step, end)
            r = self.read(s, lo, hi, include_start, key)
            if len(r) or r.n_malformed:
                return hi, r
            nxt = from_source(lambda hi=hi: self.retry(
                f"reading {s.db}.{s.measurement}", self.reader.first_time, s.db, s.measurement,
                s.field, hi, end, tags))
            if nxt is None:
                return hi if end is None else end, r
            lo, include_start = nxt, True

    def slice_ns(self, s: SeriesConfig, n_keys: int = 1) -> int:
        """A read's time span: ``batch_samples`` points over the ``n_keys`` keys read together,
        at least one sample period, and never fewer than :data:`MIN_SLICE_SAMPLES` samples
        expected at the period the data shows (clamped, with a warning, when that period is
        longer than the configured one)."""
        period = self.periods[s.name]
        n_keys = max(1, n_keys)
        step = max(period, period * self.cfg.batch_samples / n_keys)
        f = self.fleets.get(s.name)
        seen = f.observed_period() if f is not None and not f.checked.all() else None
        if seen and seen > period * 1.01 and step / seen * n_keys < MIN_SLICE_SAMPLES:
            want = MIN_SLICE_SAMPLES * seen / n_keys
            if s.name not in self._warned_slice:
                self._warned_slice.add(s.name)
                log.warning(
                    "series %s: the data comes every %.6g ms, not every %.6g ms as the model "
                    "(or sample_rate) says: a read of %s sample periods (%.6g s) would hold ~%.0f "
                    "samples; reading %.6g s at a time instead. Check sample_rate and the "
                    "model's rate: each key is checked and stopped if they differ", s.name,
                    seen / 1e6, period / 1e6, f"{self.cfg.batch_samples:,}", step / 1e9,
                    step / seen * n_keys, want / 1e9)
            step = want
        return max(1, int(step))

    def lag_s(self) -> float | None:
        """Seconds of source data not yet scored: the largest (newest source point - newest
        scored point) over the series; one query per series (for the progress line)."""
        lags = []
        for s in self.cfg.series:
            f = self.fleets.get(s.name)
            if f is None or not len(f):
                continue
            marks = f.last
            try:
                newest = self.reader.last_time(s.db, s.measurement, s.field, s.tags)
            except InfluxError:
                return None  # a log line must not fail the stream
            if newest is not None:
                lags.append(max(0, newest - int(marks.max())) / 1e9)
        return max(lags, default=None)


def new_points(s: SeriesConfig, f: Fleet, r, admit, add_unknown: bool,
               shard) -> tuple[Batch, bool]:
    """The points of read ``r`` that ``f`` has not scored, of the admitted keys.

    ``admit`` (a mask over the fleet's rows at call time, or None: all) limits
    the keys; keys of the read the fleet does not know are added (when
    ``shard`` owns them, at the series' origin) and admitted when
    ``add_unknown`` or without fan-out, else left for a read of their own.
    Quarantined keys are left out.  Malformed points move their key's mark
    past them (they were read and skipped), so a stretch of them is never
    read again.  Returns ``(batch, whether a mark moved so)``.
    """
    n_rows = len(f)
    if r.groups is None:
        ukeys, codes = [""], np.zeros(len(r), np.int64)
    else:
        codes, ukeys = factorize(r.groups)
    unknown = [k for k in ukeys if k not in f.index]
    for k in r.malformed_last:
        if k not in f.index and k not in unknown:
            unknown.append(k)
    if unknown:
        owned = [k for k in unknown
                 if (shard is None or shard.owns(s.name, k)) and (s.fan_out or k == "")]
        f.add(owned)  # at the series' origin
        if add_unknown or not s.fan_out:
            n_rows = len(f)
    ok_row = np.zeros(len(f), bool)
    ok_row[:n_rows] = True if admit is None else admit[:n_rows]
    if f.quarantined:
        ok_row[list(f.quarantined)] = False
    moved = False
    for k, t in r.malformed_last.items():
        row = f.index.get(k)
        if row is not None and ok_row[row] and t > f.last[row]:
            f.last[row] = t
            moved = True
            if f.late is not None:
                f.late.skip_to([row], [t])
    urows = f.rows_of(ukeys)
    prow = urows[codes] if len(r) else np.empty(0, np.int64)
    keep = prow >= 0
    keep[keep] = ok_row[prow[keep]]
    keep[keep] = r.times[keep] > f.last[prow[keep]]
    return Batch.from_points(prow[keep], r.times[keep], r.values[keep]), moved


def drop_unscorable(s: SeriesConfig, f: Fleet, b: Batch, period: float, reject) -> Batch:
    """``b`` without the keys whose points cannot be scored; ``reject(s, f, row, message)``
    stops each such key (a series without fan-out: an error; else quarantine).

    A key with several points at one timestamp (the filter matches several
    series), or whose first steps show a sample period other than
    ``period`` (the model's), cannot be scored.
    """
    bad = f.duplicate_groups(b)
    for j in np.flatnonzero(bad).tolist():
        reject(s, f, int(b.rows[j]), (
            f"series {label(s.name, f.keys[b.rows[j]])}: the source returned several points with "
            f"the same timestamp; the filter {s.tags or '{}'} matches more than one series of "
            f"{s.db}.{s.measurement}. Add tags to narrow it, or fan_out over the tag that "
            "tells them apart"))
    if bad.any():
        b = b.without(bad)
    wrong = f.period_problems(b)
    for j, observed in wrong.items():
        reject(s, f, int(b.rows[j]), (
            f"series {label(s.name, f.keys[b.rows[j]])}: the data's sample period is "
            f"{observed / 1e6:.6g} ms but the model was trained at {period / 1e6:.6g} ms; "
            "retrain the model at this rate (python -m pipeline.train), or point the series "
            "at the right data"))
    if wrong:
        drop = np.zeros(len(b.rows), bool)
        drop[list(wrong)] = True
        b = b.without(drop)
    return b
