"""``python -m pipeline.stream``: score InfluxDB series into the error database.

Two modes share one loop:

* **backfill** (``--start`` and ``--end``): score a historical range in large
  time slices and exit with a summary;
* **follow** (default): poll for points newer than the last processed one
  every ``--poll-interval`` seconds, score the segments that became
  complete (the overlap is carried between polls) and every new sample's
  z-score, until SIGINT/SIGTERM.

Each series has a model file (``python -m pipeline.train``): a list of
detectors, each calibrated to an alarm budget.  The stream runs exactly the
detectors the model keeps on and names none of them: a segment detector
(shape) writes one point per complete segment to ``<out db>.<out
measurement>`` (tutorial defaults: ``error_ekg.ERROR.max_error``), and the
per-sample detectors (flat line, z-score, drift) write their fields together,
one point per sample, to ``<out db>.<zscore measurement>``.  Each detector's
score, threshold and alarm have their own field names (README, "What it
writes"), so every alarm says which detector raised it; a per-sample point
holds each detector's score and alarm (its threshold on alarm points only;
the flat line's ``flat_s`` not where it is 0), and its diagnostics (the
z-score's ``streak`` and ``zscore``) only with ``[output] diagnostics =
true`` (``--diagnostics``); floats at float32's digits unless ``[output]
precision = "float64"`` (``--precision``).  Output points carry
the source's tags, ``series`` (the config name) and ``model`` (the model
version), and are timestamped from the source points (a segment by its
centre sample), so re-running a range overwrites instead of duplicating (a
field the new run leaves out keeps what an earlier run wrote: README, "What it
writes").

Fleets (fan-out)
----------------
A series with ``fan_out`` is one :class:`~pipeline.fleet.Fleet`: every key's
mark and detector state live in arrays, so a poll of 10,000 sensors is one
grouped read, a few numpy calls per detector (:mod:`pipeline.detectors.block`,
equal to the per-key states to the bit), one encode, one write and one
checkpoint file.  Keys far behind the others (new, stalled, a clock ahead)
are read on their own; a key whose own read found nothing waits 30 s (or
until it shows up in the grouped read).  A read holds ``batch_samples``
points over all the keys read together.  ``--shard K/N`` scores the keys of
shard K of N only (:mod:`pipeline.shard`).

Delivery guarantees
-------------------
Scores are written first and the checkpoint (last processed time plus all
rolling state, one file per series) is saved after, atomically.  A backfill
writes one slice while it scores the next (:mod:`pipeline.stream_write`),
and the checkpoint saved after a write is the state its slice left, taken
when that slice was scored.  ``kill -9`` between the two
makes the restart redo that batch, which rewrites identical points: no gap,
no duplicate.  An unreachable or restarting InfluxDB is retried with
exponential backoff (0.5 s doubling to 30 s) without advancing anything.
SIGINT/SIGTERM finish the current batch, checkpoint and exit 0.

Gaps, bad values, late points
-----------------------------
* A gap in the source (a step of >= 1.5 sample periods) or an irregular
  step ends the segment run: segments spanning it are skipped and the gap is
  logged.  A flat run ends at a gap; the z-score baselines simply continue
  with the samples present.
* Values that are not numbers (strings, booleans) are skipped and counted;
  InfluxDB cannot store NaN.
* The data's own sample period is checked per key: the median of its first
  16 steps (across reads) must be within 1 % of the model's period, else the
  series stops with an error (a fan-out key is quarantined, the others go
  on).  While steps show a longer period than configured, read slices are
  stretched to hold at least 1000 samples, with a warning.
* Follow mode reads ``time > last processed``.  A point that arrives after
  a newer point of the same key was already processed is *late*: not scored
  by follow mode, but counted.  Points are counted per key and bucket of data
  time as they are scored (``late_window`` / 10 s buckets, default 60 s);
  every bucket's worth of seconds, one ``COUNT ... GROUP BY time(), tag``
  query per series compares InfluxDB's counts of the buckets each key has
  closed (its mark has left them) within the window with what was scored.
  The excess is logged per key, added to the progress line and the summary.
  Points later than the window (600 s by default) are not counted.
  Re-run a backfill over the range to score them (it overwrites the affected
  outputs; use a separate ``--checkpoint-dir``).
* Checkpoints win over ``--start`` in follow mode; ``--reset`` deletes them.

Where the parts live
--------------------
Here: :class:`Stream` (read, score, write, checkpoint) and the entry point.
``stream_read`` (reads, the new points of a read), ``stream_output`` (which
fields go where, the lines of a batch), ``stream_summary`` (totals, progress,
summary), ``stream_state`` (models, fleets from checkpoints), ``stream_follow``
(follow mode's key plan, late points), ``stream_write`` (the backfill's
write-behind), ``stream_cli``, ``stream_config``.
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .checkpoint import CheckpointStore
from .fanout import Prefixes, feed_alerts
from .fleet import Batch, Fleet
from .influx import WRITE_PARALLEL, Influx, InfluxUnavailableError
from .series import format_timestamp
from .stream_cli import build_parser, main, parse_time
from .stream_config import (
    ConfigError,
    OutputConfig,
    SeriesConfig,
    StreamConfig,
    check_output_names,
    load_config,
)
from .stream_follow import KEY_REFRESH_S, FollowPlan, LateCheck, late_counter
from .stream_output import (
    batch_prefixes,
    encode_outputs,
    measurement_of,
    output_fields,
    output_rows,
    output_tags,
)
from .stream_read import SourceMissing, SourceReader, drop_unscorable, new_points
from .stream_state import load_models, restore_fleet
from .stream_summary import Tally, label, summary_text
from .stream_write import WriteBehind

__all__ = ["Stream", "StreamConfig", "SeriesConfig", "OutputConfig", "ConfigError",
           "load_config", "main", "build_parser", "parse_time", "summary_text"]

log = logging.getLogger("pipeline.stream")

BACKOFF_START, BACKOFF_MAX = 0.5, 30.0


class Stream:
    """Orchestrates reading, scoring, writing and checkpointing.

    Parameters
    ----------
    cfg : StreamConfig
    influx : Influx
        Connection used for writes; reads use a second connection with the
        same settings so the next slice can be fetched while one is scored.
    stop : threading.Event, optional
        Set it to finish the current batch, checkpoint and return.
    """

    def __init__(self, cfg: StreamConfig, influx: Influx, stop: threading.Event | None = None):
        check_output_names(cfg)  # before anything is written (load_config checked it too)
        self.cfg = cfg
        self.influx = influx
        self.reader = Influx(influx.settings)
        self.stop = stop or threading.Event()
        self.shard = cfg.shard
        self.root = Path(cfg.checkpoint_dir) / (cfg.shard.dirname if cfg.shard else "")
        self.store = CheckpointStore(self.root)
        self.models, self._periods = load_models(cfg)
        self.fleets: dict[str, Fleet] = {}
        self._legacy_files: dict[str, list] = {}  # series -> version 2 files, until its fleet is saved
        self._prefixes: dict[str, Prefixes] = {}
        self.tally = Tally()
        self.totals = self.tally.totals  # what backfill and follow return
        self.flagged = self.tally.flagged
        self.source = SourceReader(self.reader, cfg, self._periods, self.fleets, self._retry,
                                   self.totals)
        self._t_keys: dict[str, float] = {}
        self._plan = FollowPlan()
        self._late = LateCheck(cfg, self.reader, self.totals)
        self._t_missing = 0.0
        self._following = False
        self.alerts = None
        self.notifications = 0
        if cfg.alerts is not None:
            from .alerts import AlertManager

            self.alerts = AlertManager(cfg.alerts, influx=influx, state_path=(
                cfg.alerts.outbox or self.root / "alerts.json"), start=False)

    # -- retry -----------------------------------------------------------
    def _retry(self, what: str, fn, *args, **kwargs):
        delay = BACKOFF_START
        while True:
            try:
                return fn(*args, **kwargs)
            except InfluxUnavailableError as e:
                if self.stop.is_set():
                    raise
                self.totals["retries"] += 1
                log.warning("%s failed: %s; retrying in %.1f s (nothing is lost: the checkpoint "
                            "has not moved)", what, e, delay)
                if self.stop.wait(delay):
                    raise
                delay = min(delay * 2, BACKOFF_MAX)

    # -- state -----------------------------------------------------------
    def marks(self) -> dict:
        """``{(series, key): last processed time (ns)}`` of every key known so far."""
        return {(name, k): int(t) for name, f in self.fleets.items()
                for k, t in zip(f.keys, f.last.tolist(), strict=True)}

    def _fleet(self, s: SeriesConfig, origin: int, resume: bool,
               fresh_on_change: bool = False) -> Fleet:
        """The fleet of a series: in memory, else from its checkpoint, else new at ``origin``."""
        f = self.fleets.get(s.name)
        if f is not None:
            return f
        f = Fleet(s.name, self.models[s.name], origin)
        f.period_ns = self._periods[s.name]
        if self._following and self.cfg.late_window > 0:
            f.late = late_counter(self.cfg.late_window)
        old = restore_fleet(self.store, s, f, resume, fresh_on_change)
        if old:  # version 2 files: this series' only checkpoint until its fleet is saved
            self._legacy_files[s.name] = old
        self.fleets[s.name] = f
        self._prefixes[s.name] = Prefixes(output_tags(s, f))
        return f

    def _keys(self, s: SeriesConfig) -> list[str]:
        """The keys of a series this process scores (all of them, or this shard's)."""
        return self.source.keys(s, self.shard)

    def _slice_ns(self, s: SeriesConfig, n_keys: int = 1) -> int:
        """A read's time span (:meth:`pipeline.stream_read.SourceReader.slice_ns`)."""
        return self.source.slice_ns(s, n_keys)

    # -- one read of one series ---------------------------------------------
    def _reject(self, s: SeriesConfig, f: Fleet, row: int, msg: str) -> None:
        """A key whose data cannot be scored: an error without fan-out, else quarantined."""
        if not s.fan_out:
            raise ConfigError(msg)
        f.quarantined[row] = msg
        self.totals["quarantined"] += 1
        log.error("%s; this key is skipped from now on (the others go on)", msg)

    def _process_read(self, s: SeriesConfig, f: Fleet, r, admit=None,
                      add_unknown: bool = False,
                      writer: WriteBehind | None = None) -> tuple[int, set]:
        """Score every admitted key of one read, write, then checkpoint.

        ``admit`` (a mask over the fleet's rows at call time) limits the keys
        scored; keys of the read the fleet does not know are added when
        ``add_unknown`` (and owned by this shard), else left for a read of their own
        (:func:`~pipeline.stream_read.new_points`).  With a ``writer``, the write
        and the checkpoint go through it (a backfill's: behind, while the caller goes on to the
        next read).
        Returns the number of new samples and the rows that got new points.
        """
        b, moved = new_points(s, f, r, admit, add_unknown, self.shard)
        b = drop_unscorable(s, f, b, self._periods[s.name], self._reject)
        lines: list = []
        got = self._score(s, f, b, lines)
        snapshots = [self.store.snapshot(f)] if (got or moved) else []
        if writer is None:
            self._commit(lines, snapshots)
        else:
            writer.submit(lines, snapshots)
        return got, set(b.rows.tolist())

    def _score(self, s: SeriesConfig, f: Fleet, b: Batch, lines: list,
               finish: bool = False) -> int:
        """Score a batch of one fleet into ``lines``; return the number of samples.

        ``finish``: the end of the data (``b`` empty): what the blocks held back (a cross-key
        detector's open time bins) is scored and written.
        """
        if len(b) == 0 and not finish:
            return 0
        out_cfg = self.cfg.output
        pre = self._prefixes[s.name]
        fields = output_fields(f.model.enabled, out_cfg)
        prefix, errors = batch_prefixes(pre, fields, b.rows)
        for row, e in errors:
            self._reject(s, f, row, f"series {label(s.name, f.keys[row])}: {e}")
        if f.quarantined:
            drop = np.isin(b.rows, list(f.quarantined))
            if drop.any():
                b = b.without(drop)
                if len(b) == 0:
                    return 0
        outs = f.finish() if finish else f.score(b)
        dets = [blk.det for blk in f.blocks]
        point_rows = b.point_rows()
        rows = [output_rows(d, out, point_rows) for d, out in zip(dets, outs, strict=True)]
        for det, out, orows in zip(dets, outs, rows, strict=True):
            out.measurement = measurement_of(det, out_cfg)
            self.tally.add(s.name, f.keys, det, out, orows)
        lines += encode_outputs(dets, outs, rows, b.times, point_rows, pre, prefix, fields,
                                out_cfg)
        if self.alerts is not None:
            feed_alerts(self.alerts, s.name, f, outs, output_tags(s, f))
        self.totals["samples"] += len(b)
        return len(b)

    def _commit(self, lines: list, snapshots: list, parallel: int = 1) -> None:
        """Write the scores (``parallel`` requests at once: a backfill's), then save the
        checkpoint snapshots taken when they were scored (:meth:`CheckpointStore.snapshot`):
        the order that makes a crash safe."""
        if lines:
            self._retry("writing scores", self.influx.write_lines, self.cfg.output.db, lines,
                        parallel=parallel)
            self.totals["points_written"] += len(lines)
        if self.alerts is not None:  # after the scores, before the checkpoints (manager docs)
            self.notifications += len(self.alerts.commit())
        for snap in snapshots:
            self.store.save(snap)
            for p in self._legacy_files.pop(snap[0], ()):
                p.unlink(missing_ok=True)

    def _ensure_output_db(self):
        if self.cfg.output.db not in self._retry("listing databases", self.influx.databases):
            self._retry("creating the error database", self.influx.create_database,
                        self.cfg.output.db)

    # -- modes -----------------------------------------------------------
    def backfill(self, start_ns: int, end_ns: int, resume: bool = True,
                 progress: bool = False) -> dict:
        """Score ``[start_ns, end_ns)`` of every configured series; return totals.

        Reads time slices of ``batch_samples`` points (all fan-out keys of the
        slice together); the next slice is fetched while the current one is
        scored, and a slice's scores are written (then checkpointed) while the
        next one is scored (:mod:`pipeline.stream_write`; not with alerts
        configured, whose notifications follow each write).  Checkpoints live in
        ``<checkpoint_dir>/backfill-<start>-<end>``, apart from follow mode's:
        an interrupted backfill of the same range resumes, a finished one
        removes them, so running it again re-scores (and overwrites).
        """
        if end_ns <= start_ns:
            raise ConfigError(f"the end must be after the start, got {_fmt(start_ns)} .. "
                              f"{_fmt(end_ns)}")
        self.store = CheckpointStore(self.root / f"backfill-{start_ns}-{end_ns}")
        self.store.probe()
        self._ensure_output_db()
        self._start_alerts()
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=round((end_ns - start_ns) / 1e9 * len(self.cfg.series)),
                       unit="s", unit_scale=True, dynamic_ncols=True, desc="backfill (data time)")
        t_start = time.monotonic()
        # alerts are fed and committed around each write (AlertManager): those write in step
        writer = WriteBehind(functools.partial(self._commit, parallel=WRITE_PARALLEL),
                             behind=self.alerts is None)
        with ThreadPoolExecutor(1, thread_name_prefix="prefetch") as pool, writer:
            for s in self.cfg.series:
                f = self._fleet(s, start_ns, resume, fresh_on_change=True)
                f.add(self._keys(s), start_ns)
                active = f.active()
                if not active.any():
                    continue
                # fresh keys stand at start - 1; resumed ones where their checkpoint says
                pos = max(start_ns, int(f.last[active].min()) + 1)
                k = int(active.sum())
                done = pos
                if bar is not None:
                    bar.update(round(pos / 1e9) - round(start_ns / 1e9))
                nxt = pool.submit(self.source.read_from, s, pos, end_ns, True, None, k) \
                    if pos < end_ns else None
                while nxt is not None and not self.stop.is_set():
                    hi, r = nxt.result()
                    # fetch the next slice while this one is scored and written
                    nxt = pool.submit(self.source.read_from, s, hi, end_ns, True, None, k) \
                        if hi < end_ns and (len(r) or r.n_malformed) else None
                    self._process_read(s, f, r, add_unknown=True, writer=writer)
                    if bar is not None:
                        bar.update(round(hi / 1e9) - round(done / 1e9))
                    done = hi
                    self.tally.maybe_log(self.cfg.log_every, self._following)
                if nxt is not None:
                    nxt.cancel()
                elif not self.stop.is_set():
                    self._finish_range(s, f, writer)
        if bar is not None:
            bar.close()
        if self.alerts is not None and not self.stop.is_set():
            self.notifications += len(self.alerts.commit(final=True))  # the last minute's summary
        if not self.stop.is_set():
            self.store.remove()  # finished: a re-run re-scores the range
        return self._finish(t_start)

    def _finish_range(self, s: SeriesConfig, f: Fleet, writer: WriteBehind) -> None:
        """The end of a backfill's range: score and write what the detectors held back."""
        e = np.empty(0, np.int64)
        lines: list = []
        self._score(s, f, Batch(e, np.zeros(1, np.int64), e, np.empty(0)), lines, finish=True)
        writer.submit(lines, [self.store.snapshot(f)])

    def _follow_series(self, s: SeriesConfig, start_ns: int, resume: bool) -> int:
        """One poll of one series; return the number of new samples scored."""
        # a key without a checkpoint starts where this series' stream started, so a sensor
        # that first reported while the stream was down loses nothing
        f = self._fleet(s, start_ns, resume)
        if not s.fan_out:
            if not len(f):
                f.add(self._keys(s))
            if not len(f) or f.quarantined:
                return 0
            _, r = self.source.read_from(s, int(f.last[0]), None, False)
            return self._process_read(s, f, r)[0]
        now = time.monotonic()
        if now - self._t_keys.get(s.name, -1e9) >= KEY_REFRESH_S:  # new keys appear over time
            f.add(self._keys(s))
            self._t_keys[s.name] = now
        active = f.active()
        n_active = int(active.sum())
        if not n_active:
            return 0
        half = self._slice_ns(s, n_active) // 2
        group, alone = self._plan.plan(s.name, f.last, active, half, now)
        got = 0
        if len(group):
            admit = np.zeros(len(f), bool)
            admit[group] = True
            lo = int(f.last[group].min())
            hi, r = self.source.read_from(s, lo, None, False, n_keys=len(group))
            n0 = len(f)
            n, fed = self._process_read(s, f, r, admit)
            got += n
            self._plan.after_group(s.name, f, r, group, admit, fed, n0, hi - half)
        for row in alone.tolist():
            if self.stop.is_set():
                break
            admit = np.zeros(len(f), bool)
            admit[row] = True
            _, r = self.source.read_from(s, int(f.last[row]), None, False, key=f.keys[row])
            n, _ = self._process_read(s, f, r, admit)
            got += n
            self._plan.after_alone(s.name, row, r, now)
        return got

    def follow(self, start_ns: int | None = None, resume: bool = True,
               max_polls: int | None = None) -> dict:
        """Poll until stopped (or ``max_polls`` polls); return totals.

        Without checkpoints, scoring starts at ``start_ns`` (default: now).
        A source database that does not exist yet is waited for.
        """
        self._following = True
        self.store.probe()
        self._ensure_output_db()
        self._start_alerts()
        if start_ns is None:
            start_ns = time.time_ns()
        polls = 0
        t_start = time.monotonic()
        while not self.stop.is_set():
            got = 0
            for s in self.cfg.series:
                try:
                    got += self._follow_series(s, start_ns, resume)
                except SourceMissing as e:
                    if time.monotonic() - self._t_missing > 60:
                        log.warning("series %s: %s; waiting for it", s.name, e)
                        self._t_missing = time.monotonic()
            polls += 1
            self._late.maybe_check(self.fleets)
            if max_polls is not None and polls >= max_polls:
                break
            self.tally.maybe_log(self.cfg.log_every, self._following, lag=self.source.lag_s)
            if got == 0:
                self.stop.wait(self.cfg.poll_interval)
        return self._finish(t_start)

    def _finish(self, t_start: float) -> dict:
        self.totals["seconds"] = time.monotonic() - t_start
        self.totals["notifications"] = self.notifications
        return self.totals

    def _start_alerts(self) -> None:
        if self.alerts is not None and not getattr(self, "_alerts_started", False):
            self.alerts.start()  # what the outbox still holds goes out first
            self._alerts_started = True

    def close(self, drain_s: float = 10.0) -> None:
        """Give the alert senders ``drain_s`` to deliver, then stop them (the outbox keeps the
        rest for the next start)."""
        if self.alerts is not None:
            if getattr(self, "_alerts_started", False) and not self.alerts.drain(drain_s):
                log.warning("alerts not yet delivered after %.0f s wait in the outbox and go out "
                            "at the next start", drain_s)
            self.alerts.close()
            self.alerts = None


_fmt = format_timestamp

if __name__ == "__main__":
    sys.exit(main())
