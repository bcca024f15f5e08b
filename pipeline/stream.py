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
writes"), so every alarm says which detector raised it.  Output points carry
the source's tags, ``series`` (the config name) and ``model`` (the model
version), and are timestamped from the source points (a segment by its
centre sample), so re-running a range overwrites instead of duplicating.

Delivery guarantees
-------------------
Scores are written first and the checkpoint (last processed time plus all
rolling state) is saved after, atomically.  ``kill -9`` between the two
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
* Follow mode reads ``time > last processed``.  A point that arrives after
  a newer point of the same series was already processed is *not* scored
  by follow mode; re-run a backfill over that range to include it (it
  overwrites the affected outputs; use a separate ``--checkpoint-dir``).
* Checkpoints win over ``--start`` in follow mode; ``--reset`` deletes them.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .checkpoint import CheckpointStore, SeriesState
from .influx import (
    Influx,
    InfluxError,
    InfluxQueryError,
    InfluxUnavailableError,
    encode_lines,
)
from .load import add_influx_args, settings_from_args
from .model_io import ModelFile, ModelFileError, load_model
from .series import format_timestamp, parse_timestamp
from .stream_config import (
    ConfigError,
    OutputConfig,
    SeriesConfig,
    StreamConfig,
    load_config,
)

__all__ = ["Stream", "StreamConfig", "SeriesConfig", "OutputConfig", "ConfigError",
           "load_config", "main"]

log = logging.getLogger("pipeline.stream")

MAX_FLAGGED = 1000
"""Anomalous segments remembered for the summary (memory stays flat)."""
BACKOFF_START, BACKOFF_MAX = 0.5, 30.0
KEY_REFRESH_S = 30.0
"""Fan-out keys are listed again this often in follow mode (new sensors appear)."""
EVENT_GAP_S = 1.0
"""Flagged segments closer than this are one event in the summary."""


def _load_model(path: str) -> ModelFile:
    m = load_model(path)
    if not m.enabled:
        raise ConfigError(f"model file {path} has no detector switched on (calibration turned "
                          "them all off); retrain with python -m pipeline.train on more or "
                          "other normal data")
    return m


class _SourceMissing(InfluxQueryError):
    """The source database is not there (yet); follow mode waits for it."""


def _source(fn):
    """Run a read of the source; a missing database becomes :class:`_SourceMissing`."""
    try:
        return fn()
    except InfluxQueryError as e:
        if "not found" in str(e):
            raise _SourceMissing(str(e)) from None
        raise


def _label(s: SeriesConfig, key: str) -> str:
    return f"{s.name}[{key}]" if key else s.name


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
        self.cfg = cfg
        self.influx = influx
        self.reader = Influx(influx.settings)
        self.stop = stop or threading.Event()
        self.store = CheckpointStore(cfg.checkpoint_dir)
        self.models = {s.name: _load_model(s.model) for s in cfg.series}
        for s in cfg.series:
            m = self.models[s.name]
            if s.sample_period_ns and m.period_ns and abs(s.sample_period_ns / m.period_ns - 1) > 0.01:
                raise ConfigError(
                    f"series {s.name}: sample_rate gives a period of {s.sample_period_ns / 1e6:.6g} "
                    f"ms but the model was trained at {m.period_ns / 1e6:.6g} ms; retrain the "
                    "model at this rate (python -m pipeline.train) or fix sample_rate")
            if not (s.sample_period_ns or m.period_ns):
                raise ConfigError(f"series {s.name}: the model file does not record its sample "
                                  "period; give sample_rate (Hz) or sample_period (s)")
        self.states: dict[tuple[str, str], SeriesState] = {}
        self.quarantined: dict[tuple[str, str], str] = {}
        # the sample period of each series where it is known up front (always, with a model);
        # the others are probed from the data once (_series_period)
        self._periods: dict[str, float] = {
            s.name: s.sample_period_ns or self.models[s.name].period_ns
            for s in cfg.series if s.sample_period_ns or self.models[s.name]}
        self._t_log = time.monotonic()
        self._n_logged = 0
        self._t_keys: dict[str, float] = {}
        self._origins: dict[str, int] = {}
        self._solo: dict[str, set] = {}
        self._t_missing = 0.0
        self.totals = {"samples": 0, "segments": 0, "malformed": 0, "gaps": 0,
                       "skipped_samples": 0, "points_written": 0, "retries": 0,
                       "quarantined": 0, "alarm_points": {}}
        self.flagged: list[tuple[str, str, str, int, float]] = []
        self.alerts = None
        self.notifications = 0
        if cfg.alerts is not None:
            from .alerts import AlertManager

            self.alerts = AlertManager(cfg.alerts, influx=influx, state_path=(
                cfg.alerts.outbox or Path(cfg.checkpoint_dir) / "alerts.json"), start=False)

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
    def _state(self, s: SeriesConfig, key: str, origin: int, resume: bool,
               fresh_on_change: bool = False) -> SeriesState:
        """The state of one series key: in memory, else from its checkpoint, else new at ``origin``."""
        k = (s.name, key)
        st = self.states.get(k)
        if st is not None:
            return st
        st = self.store.load(s.name, key) if resume else None
        label = _label(s, key)
        m = self.models[s.name]
        if st is not None and st.model_version != m.version:
            if fresh_on_change:
                log.warning("series %s: the model changed (%s -> %s); the checkpoint is dropped "
                            "and the range re-scored", label, st.model_version, m.version)
                st = None
            else:
                log.warning("series %s: the model changed (%s -> %s); the rolling state "
                            "restarts at %s", label, st.model_version, m.version,
                            _fmt(st.last_time_ns))
                st.saved, st.period_checked = None, False
        if st is not None:
            log.info("series %s: resuming after %s", label, _fmt(st.last_time_ns))
        else:
            st = SeriesState(series=s.name, key=key, origin_ns=origin, last_time_ns=origin - 1)
        st.model_version = m.version
        try:
            st.restore(m.enabled)
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"checkpoint {self.store.path(s.name, key)} does not fit the model "
                              f"({e}); run with --reset to start over") from None
        self.states[k] = st
        return st

    def _tags(self, s: SeriesConfig, key: str) -> dict:
        tags = dict(s.tags)
        if s.fan_out:
            tags[s.fan_out] = key
        tags["series"] = s.name
        return tags

    def _series_period(self, s: SeriesConfig, near_ns: int) -> float | None:
        """The sample period: configured, else the model's, else probed once from the data."""
        if s.name not in self._periods:
            r = _source(lambda: self._retry(
                f"reading {s.db}.{s.measurement}", self.reader.read_field, s.db, s.measurement,
                s.field, near_ns, None, s.tags, s.fan_out, None, True, 64))
            diffs = [np.diff(p.times) for p in r.by_group().values() if len(p) >= 3]
            if not diffs:
                return None  # no data yet: ask again next time
            self._periods[s.name] = float(np.median(np.concatenate(diffs)))
            log.info("series %s: sample period %.6g ms (inferred from the data)", s.name,
                     self._periods[s.name] / 1e6)
        return self._periods[s.name]

    def _check_period(self, s: SeriesConfig, st: SeriesState, times: np.ndarray) -> None:
        """Once per key: the data's own median step must match the model's period."""
        if st.period_checked or len(times) < 3:
            return
        observed = float(np.median(np.diff(times)))
        expected = self._periods[s.name]
        if abs(observed / expected - 1) > 0.01:
            raise ConfigError(
                f"series {_label(s, st.key)}: the data's sample period is {observed / 1e6:.6g} ms "
                f"but the model was trained at {expected / 1e6:.6g} ms; retrain the model at this "
                "rate (python -m pipeline.train), or point the series at the right data")
        st.period_checked = True

    # -- one batch of one series key ---------------------------------------
    def _process(self, s: SeriesConfig, st: SeriesState, times, values, lines: list) -> None:
        """Score the new points of one key into ``lines`` (nothing for a quarantined key)."""
        k = (s.name, st.key)
        if k in self.quarantined:
            return
        keep = times > st.last_time_ns
        times, values = times[keep], values[keep]
        if len(times) == 0:
            return
        try:
            if np.any(times[1:] <= times[:-1]):
                raise ConfigError(
                    f"series {_label(s, st.key)}: the source returned several points with the same "
                    f"timestamp; the filter {s.tags or '{}'} matches more than one series of "
                    f"{s.db}.{s.measurement}. Add tags to narrow it, or fan_out over the tag that "
                    "tells them apart")
            self._check_period(s, st, times)
        except ConfigError as e:
            if not s.fan_out:
                raise
            self.quarantined[k] = str(e)
            self.totals["quarantined"] += 1
            log.error("%s; this key is skipped from now on (the others go on)", e)
            return
        tags = dict(self._tags(s, st.key), model=st.model_version)
        per_sample = {}
        outs = []
        for ds in st.detectors:
            skipped = getattr(ds, "n_skipped_samples", 0)
            out = ds.update_many(times, values)
            out.measurement = (self.cfg.output.zscore_measurement if out.detector.per_sample
                               else self.cfg.output.measurement)
            outs.append(out)
            self.totals["skipped_samples"] += getattr(ds, "n_skipped_samples", 0) - skipped
            self._log_gaps(s, st, ds)
            det = out.detector
            n_alarm = int(np.count_nonzero(out.alarm))
            alarms = self.totals["alarm_points"]
            alarms[det.label] = alarms.get(det.label, 0) + n_alarm
            if det.per_sample:
                per_sample.update(out.fields())
            elif len(out):
                lines += encode_lines(self.cfg.output.measurement, out.times, out.fields(), tags)
                self.totals["segments"] += len(out)
            if n_alarm:
                room = MAX_FLAGGED - len(self.flagged)
                for i in np.flatnonzero(out.alarm)[:max(room, 0)]:
                    self.flagged.append((s.name, st.key, det.label, int(out.times[i]),
                                         float(abs(out.score[i]))))
        if per_sample:
            lines += encode_lines(self.cfg.output.zscore_measurement, times, per_sample, tags)
        if self.alerts is not None:
            self.alerts.feed(s.name, st.key, tags, st.model_version, outs)
        st.last_time_ns = int(times[-1])
        st.n_samples += len(times)
        self.totals["samples"] += len(times)

    def _log_gaps(self, s: SeriesConfig, st: SeriesState, ds) -> None:
        """Count and log the breaks a detector state found (segment detectors report them)."""
        gaps = getattr(ds, "gaps", None)
        if not gaps:
            return
        self.totals["gaps"] += len(gaps)
        more = (f"; {len(gaps) - 1} more up to the one between {_fmt(gaps[-1].before_ns)} "
                f"and {_fmt(gaps[-1].after_ns)}") if len(gaps) > 1 else ""
        log.warning("series %s: %s between %s and %s%s; segments spanning a gap are skipped",
                    _label(s, st.key), gaps[0].kind, _fmt(gaps[0].before_ns),
                    _fmt(gaps[0].after_ns), more)

    def _process_read(self, s: SeriesConfig, r, make_state) -> tuple[int, set]:
        """Process every key of one read, write, then checkpoint.

        Returns the number of new samples and the keys that got new points.
        Malformed points move their key's mark past them (they were read and
        skipped), so a stretch of them is never read again.
        """
        lines, touched, got, fed = [], {}, 0, set()
        parts = r.by_group()
        for key in dict.fromkeys([*parts, *r.malformed_last]):
            st = make_state(key)
            if st is None:
                continue
            before, mark = st.n_samples, st.last_time_ns
            if key in parts:
                self._process(s, st, parts[key].times, parts[key].values, lines)
            st.last_time_ns = max(st.last_time_ns, r.malformed_last.get(key, st.last_time_ns))
            if st.n_samples != before:
                got += st.n_samples - before
                fed.add(key)
            if st.last_time_ns != mark:
                touched[key] = st
        self._commit(lines, list(touched.values()))
        return got, fed

    def _read(self, s: SeriesConfig, start_ns, end_ns, include_start: bool, key=None):
        tags = s.tags if key is None else dict(s.tags, **{s.fan_out: key})
        r = _source(lambda: self._retry(f"reading {s.db}.{s.measurement}", self.reader.read_field,
                                        s.db, s.measurement, s.field, start_ns, end_ns, tags,
                                        s.fan_out, None, include_start))
        if r.n_malformed:
            log.warning("series %s: %d malformed values (not numbers) skipped", s.name,
                        r.n_malformed)
            self.totals["malformed"] += r.n_malformed
        return r

    def _read_from(self, s: SeriesConfig, lo: int, end: int | None, include_start: bool,
                   key=None):
        """Read the next slice of ``batch_samples`` periods at ``lo`` (before ``end``).

        An empty slice costs one more query to find the next point, so long
        gaps in the source are jumped over, not walked.  Returns ``(hi, r)``:
        everything before ``hi`` has been read; ``r`` is empty at the end.
        """
        step = self._slice_ns(s, lo)
        tags = s.tags if key is None else dict(s.tags, **{s.fan_out: key})
        while True:
            hi = lo + step if end is None else min(lo + step, end)
            r = self._read(s, lo, hi, include_start, key)
            if len(r) or r.n_malformed:
                return hi, r
            nxt = _source(lambda hi=hi: self._retry(
                f"reading {s.db}.{s.measurement}", self.reader.first_time, s.db, s.measurement,
                s.field, hi, end, tags))
            if nxt is None:
                return hi if end is None else end, r
            lo, include_start = nxt, True

    def _commit(self, lines: list, touched: list) -> None:
        """Write the scores, then checkpoint: the order that makes a crash safe."""
        if lines:
            self._retry("writing scores", self.influx.write_lines, self.cfg.output.db, lines)
            self.totals["points_written"] += len(lines)
        if self.alerts is not None:  # after the scores, before the checkpoints (manager docs)
            self.notifications += len(self.alerts.commit())
        for st in touched:
            self.store.save(st)

    def _ensure_output_db(self):
        if self.cfg.output.db not in self._retry("listing databases", self.influx.databases):
            self._retry("creating the error database", self.influx.create_database,
                        self.cfg.output.db)

    def _slice_ns(self, s: SeriesConfig, near_ns: int) -> int:
        period = self._series_period(s, near_ns)
        return max(1, int((period or 1e9) * self.cfg.batch_samples))

    def _keys(self, s: SeriesConfig) -> list[str]:
        if not s.fan_out:
            return [""]
        return _source(lambda: self._retry("listing tag values", self.reader.tag_values, s.db,
                                           s.measurement, s.fan_out, s.tags))

    # -- modes -----------------------------------------------------------
    def backfill(self, start_ns: int, end_ns: int, resume: bool = True,
                 progress: bool = False) -> dict:
        """Score ``[start_ns, end_ns)`` of every configured series; return totals.

        Reads time slices of ``batch_samples`` sample periods; the next slice
        is fetched while the current one is scored and written.  Checkpoints
        live in ``<checkpoint_dir>/backfill-<start>-<end>``, apart from follow
        mode's: an interrupted backfill of the same range resumes, a finished
        one removes them, so running it again re-scores (and overwrites).
        """
        if end_ns <= start_ns:
            raise ConfigError(f"the end must be after the start, got {_fmt(start_ns)} .. "
                              f"{_fmt(end_ns)}")
        self.store = CheckpointStore(Path(self.cfg.checkpoint_dir) / f"backfill-{start_ns}-{end_ns}")
        self.store.probe()
        self._ensure_output_db()
        self._start_alerts()
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=round((end_ns - start_ns) / 1e9 * len(self.cfg.series)),
                       unit="s", unit_scale=True, dynamic_ncols=True, desc="backfill (data time)")
        t_start = time.monotonic()
        with ThreadPoolExecutor(1, thread_name_prefix="prefetch") as pool:
            for s in self.cfg.series:
                def state(key, s=s):
                    return self._state(s, key, start_ns, resume, fresh_on_change=True)

                sts = [state(k) for k in self._keys(s)]
                # fresh keys stand at start - 1; resumed ones where their checkpoint says
                pos = max(start_ns, min((st.last_time_ns + 1 for st in sts), default=start_ns))
                done = pos
                if bar is not None:
                    bar.update(round(pos / 1e9) - round(start_ns / 1e9))
                nxt = pool.submit(self._read_from, s, pos, end_ns, True) if pos < end_ns else None
                while nxt is not None and not self.stop.is_set():
                    hi, r = nxt.result()
                    # fetch the next slice while this one is scored and written
                    nxt = pool.submit(self._read_from, s, hi, end_ns, True) \
                        if hi < end_ns and (len(r) or r.n_malformed) else None
                    self._process_read(s, r, state)
                    if bar is not None:
                        bar.update(round(hi / 1e9) - round(done / 1e9))
                    done = hi
                    self._maybe_log()
                if nxt is not None:
                    nxt.cancel()
        if bar is not None:
            bar.close()
        if self.alerts is not None and not self.stop.is_set():
            self.notifications += len(self.alerts.commit(final=True))  # the last minute's summary
        if not self.stop.is_set():
            self.store.remove()  # finished: a re-run re-scores the range
        return self._finish(t_start)

    def _follow_series(self, s: SeriesConfig, start_ns: int, resume: bool) -> int:
        """One poll of one series; return the number of new samples scored."""
        if s.name not in self._origins:
            # a key without a checkpoint starts where this series' stream started, so a sensor
            # that first reported while the stream was down loses nothing
            loaded = [self.store.load(s.name, k) for k in self._keys(s)] if resume else []
            self._origins[s.name] = min([st.origin_ns for st in loaded if st is not None],
                                        default=start_ns)

        def state(key):
            return self._state(s, key, self._origins[s.name], resume)

        if not s.fan_out:
            st = state("")
            _, r = self._read_from(s, st.last_time_ns, None, False)
            return self._process_read(s, r, state)[0]
        now = time.monotonic()
        if now - self._t_keys.get(s.name, -1e9) >= KEY_REFRESH_S:  # new keys appear over time
            for key in self._keys(s):
                state(key)
            self._t_keys[s.name] = now
        sts = [st for (name, key), st in self.states.items()
               if name == s.name and (name, key) not in self.quarantined]
        if not sts:
            return 0
        # One grouped read serves the keys whose marks lie within half a slice above the lowest
        # mark near the median; every other key (new, stalled, with a slow clock, far ahead, or
        # starved in the last grouped read) is read on its own from its own mark, so no key loses
        # points, holds the others back, or is starved by them.
        marks = sorted(st.last_time_ns for st in sts)
        half = self._slice_ns(s, marks[0]) // 2
        m0 = min(m for m in marks if m >= marks[len(marks) // 2] - half)
        solo = self._solo.pop(s.name, set())
        group = [st for st in sts if m0 <= st.last_time_ns <= m0 + half and st.key not in solo]
        alone = [st for st in sts if st not in group]
        got = 0
        if group:
            known = {st.key for st in group}

            def group_state(key):
                if key in known:
                    return state(key)
                state(key)  # a new key: read on its own from its start at the next poll
                return None

            lo = min(st.last_time_ns for st in group)
            hi, r = self._read_from(s, lo, None, False)
            n, fed = self._process_read(s, r, group_state)
            got += n
            if len(r) and int(r.times.max()) > hi - half:
                # the slice was cut by its end, not by the newest data: a group key that got
                # nothing may have a gap longer than the slice; it jumps it on its own next time
                self._solo[s.name] = known - fed
        for st in alone:
            if not self.stop.is_set():
                _, r = self._read_from(s, st.last_time_ns, None, False, key=st.key)
                got += self._process_read(s, r, state)[0]
        return got

    def follow(self, start_ns: int | None = None, resume: bool = True,
               max_polls: int | None = None) -> dict:
        """Poll until stopped (or ``max_polls`` polls); return totals.

        Without checkpoints, scoring starts at ``start_ns`` (default: now).
        A source database that does not exist yet is waited for.
        """
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
                except _SourceMissing as e:
                    if time.monotonic() - self._t_missing > 60:
                        log.warning("series %s: %s; waiting for it", s.name, e)
                        self._t_missing = time.monotonic()
            polls += 1
            if max_polls is not None and polls >= max_polls:
                break
            self._maybe_log(lag=self._source_lag)
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

    def _source_lag(self) -> float | None:
        """Seconds of source data not yet scored: the largest (newest source point - newest
        scored point) over the series; one query per series, asked only when a line is logged."""
        lags = []
        for s in self.cfg.series:
            marks = [st.last_time_ns for (name, _), st in self.states.items() if name == s.name]
            if not marks:
                continue
            try:
                newest = self.reader.last_time(s.db, s.measurement, s.field, s.tags)
            except InfluxError:
                return None  # a log line must not fail the stream
            if newest is not None:
                lags.append(max(0, newest - max(marks)) / 1e9)
        return max(lags, default=None)

    def _maybe_log(self, lag=None):
        """A progress line every ``log_every`` seconds; ``lag`` is called only then."""
        now = time.monotonic()
        if now - self._t_log < self.cfg.log_every:
            return
        dt, self._t_log = now - self._t_log, now
        n, self._n_logged = self.totals["samples"] - self._n_logged, self.totals["samples"]
        msg = (f"{n / dt:,.0f} samples/s, {self.totals['samples']:,} samples, "
               f"{self.totals['segments']:,} segments, alarm points: "
               f"{_alarm_counts(self.totals)}")
        behind = lag() if lag is not None else None
        if behind is not None:
            msg += f", {behind:.2f} s of source data behind"
        log.info(msg)


_fmt = format_timestamp


def parse_time(text: str, what: str = "time") -> int:
    """ISO 8601 (no zone means UTC), integer ns since the epoch, or ``now``.

    >>> parse_time("2026-01-01T00:00:00Z")
    1767225600000000000
    """
    try:
        return parse_timestamp(text, what=what)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.stream",
                                description=__doc__.split("\n\n")[0].replace("``", ""),
                                epilog="Modes: --start and --end = backfill; otherwise follow. "
                                       "See the README for a worked example.")
    p.add_argument("--config", help="TOML file with [[series]], [output], [stream] tables")
    p.add_argument("--start", help="backfill/follow start (ISO 8601, ns, or now)")
    p.add_argument("--end", help="backfill end, exclusive; given -> backfill mode, else follow")
    p.add_argument("--reset", action="store_true", help="delete checkpoints and start over")
    p.add_argument("--max-polls", type=int, default=None, help=argparse.SUPPRESS)
    g = p.add_argument_group("one series from the command line (instead of --config)")
    g.add_argument("--db")
    g.add_argument("--measurement")
    g.add_argument("--field", default="value")
    g.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                   help="source tag filter (repeatable)")
    g.add_argument("--fan-out", metavar="TAG", help="one state per value of this tag")
    g.add_argument("--sample-rate", type=float, help="Hz (default: from the model, or inferred)")
    g.add_argument("--model", help="model file from python -m pipeline.train")
    o = p.add_argument_group("output and loop (override the config file)")
    o.add_argument("--out-db", help="error database (default error_ekg)")
    o.add_argument("--out-measurement", help="segment score measurement (default ERROR)")
    o.add_argument("--zscore-measurement",
                   help="per-sample detectors' measurement (default zscore)")
    o.add_argument("--checkpoint-dir", help="default var/checkpoints")
    o.add_argument("--poll-interval", type=float, help="seconds between polls (default 1)")
    o.add_argument("--batch-samples", type=int, help="samples per read (default 200000)")
    add_influx_args(p)
    p.add_argument("-v", "--verbose", action="store_true", help="debug log lines")
    return p


def summary_text(totals: dict, flagged, limit: int = 20) -> str:
    secs = totals.get("seconds", 0) or 1e-9
    lines = [
        f"scored {totals['samples']:,} samples in {totals.get('seconds', 0):.2f} s "
        f"({totals['samples'] / secs:,.0f} samples/s)",
        f"  segments: {totals['segments']:,}",
        f"  alarm points per detector: {_alarm_counts(totals)}",
        f"  gaps: {totals['gaps']}, samples skipped at gaps: {totals.get('skipped_samples', 0)}, "
        f"malformed values skipped: {totals['malformed']}, InfluxDB retries: {totals['retries']}",
        f"  points written: {totals['points_written']:,}"
        + (f", alert notifications: {totals['notifications']:,}" if totals.get("notifications")
           else ""),
    ]
    if flagged:
        events = _events(flagged)
        more = " (from the first 1,000 alarm points)" if len(flagged) >= MAX_FLAGGED else ""
        lines.append(f"  alarm events{more}: alarm points of one detector less than "
                     f"{EVENT_GAP_S:g} s apart, merged; series, detector, start .. end, points, "
                     "peak |score|:")
        for name, det, t0, t1, n, peak in events[:limit]:
            lines.append(f"    {name}  {det:<9s} {_fmt(t0)} .. {_fmt(t1)}  {n:5d}  {peak:.4g}")
        if len(events) > limit:
            lines.append(f"    ... {len(events) - limit} more")
    return "\n".join(lines)


def _alarm_counts(totals) -> str:
    counts = totals.get("alarm_points") or {}
    return ", ".join(f"{k} {v:,}" for k, v in counts.items()) or "none"


def _events(flagged):
    """Merge alarm points of one series key and detector that lie less than EVENT_GAP_S apart."""
    out, cur = [], None
    for name, key, det, t, e in sorted(flagged):
        label = f"{name}[{key}]" if key else name
        if cur and cur[0] == label and cur[1] == det and t - cur[3] < EVENT_GAP_S * 1e9:
            cur[3], cur[4], cur[5] = t, cur[4] + 1, max(cur[5], e)
        else:
            cur = [label, det, t, t, 1, e]
            out.append(cur)
    return [tuple(c) for c in out]


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    stop = threading.Event()

    def _on_signal(signum, _frame):
        log.info("received %s: finishing the current batch, then exiting",
                 signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    closers = []
    try:
        return _main(args, stop, closers)
    finally:
        for close in closers:
            close()


def _main(args, stop, closers) -> int:
    try:
        cfg = load_config(args.config, args)
        start = parse_time(args.start, "--start") if args.start else None
        end = parse_time(args.end, "--end") if args.end else None
        if end is not None and start is None:
            raise ConfigError("--end needs --start (backfill mode)")
        if end is not None and end <= start:
            raise ConfigError(f"--end must be after --start, got {args.start} .. {args.end}")
        influx = Influx(settings_from_args(args))
        influx.ping()  # fail fast: a one-shot command must not wait forever for a wrong address
        stream = Stream(cfg, influx, stop)
        closers.append(stream.close)
        if args.reset:
            log.info("removed %d checkpoints from %s", stream.store.reset(), cfg.checkpoint_dir)
        if end is not None:
            log.info("backfill %s .. %s", _fmt(start), _fmt(end))
            totals = stream.backfill(start, end, progress=sys.stderr.isatty())
        else:
            log.info("follow mode from %s, polling every %.3g s",
                     "the checkpoints, else " + ("now" if start is None else _fmt(start)),
                     cfg.poll_interval)
            totals = stream.follow(start, max_polls=args.max_polls)
    except (ConfigError, ModelFileError) as e:
        log.error("%s", e)
        return 2
    except ValueError as e:  # settings from the environment (INFLUXDB_PORT=abc, ...)
        log.error("%s", e)
        return 2
    except InfluxUnavailableError as e:
        if stop.is_set():
            log.error("stopped while InfluxDB was unreachable: %s", e)
            return 0
        log.error("%s", e)
        return 1
    except InfluxQueryError as e:
        log.error("%s", e)
        return 1
    except OSError as e:  # a checkpoint could not be written (disk full, permissions)
        log.error("cannot write a checkpoint: %s; the scores of the last batch were written and "
                  "will be rewritten identically on restart", e)
        return 1
    print(summary_text(totals, stream.flagged))
    return 0


if __name__ == "__main__":
    sys.exit(main())
