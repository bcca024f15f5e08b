"""A window of a series from InfluxDB with its detectors' scores: what the pictures draw.

:func:`read_window` reads one series over ``[start, end)`` (and only that,
plus a short lead-in when scores must be computed), its reconstruction by
the model's shape detector, and every detector's score, threshold and held
alarm: from the error database the stream wrote (``ERROR`` for the shape
detector, ``zscore`` for the per-sample ones, tags ``series``, ``model`` and
the source's tags), or, where that holds none for this model, computed on
the fly from the model file with the detectors' own streaming states.  Each
:class:`Trace` says where its numbers came from.  ``python -m pipeline.plot``
and the notebooks draw it with :func:`pipeline.plot.plot_window`.

The notebooks' other steps are in :mod:`pipeline.explore`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .detectors import REGISTRY
from .influx import Influx, InfluxQueryError, quote_ident
from .model_io import ModelFile, load_model
from .series import format_timestamp, infer_period, run_breaks

__all__ = ["ExploreError", "Trace", "Window", "read_window", "alarm_episodes", "lead_in_ns",
           "DEFAULT_SPAN_S", "LEAD_IN_S"]

DEFAULT_SPAN_S = 60.0
"""The window when only one end (or neither) is given: one minute."""
LEAD_IN_S = 60.0
"""Read this much before the window when scores are computed, so the states warm up
(a drift detector gets three half-lives)."""
S = 10**9


class ExploreError(ValueError):
    """No data, an unknown series, a model that does not fit: the message says what to do."""


def alarm_episodes(times, alarm) -> tuple[np.ndarray, np.ndarray]:
    """First and last time of each maximal run of ``alarm == True`` (an alarm episode).

    >>> s, e = alarm_episodes([0, 1, 2, 3, 4, 5], [True, True, False, True, False, True])
    >>> s.tolist(), e.tolist()
    ([0, 3, 5], [1, 3, 5])
    """
    t = np.asarray(times, np.int64)
    a = np.asarray(alarm, bool)
    if len(a) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    d = np.diff(np.r_[0, a.astype(np.int8), 0])
    first, last = np.flatnonzero(d == 1), np.flatnonzero(d == -1) - 1
    return t[first], t[last]


def lead_in_ns(detectors, period_ns: float) -> int:
    """How much to read before a window so that fresh detector states are warm there.

    >>> lead_in_ns([], 1e9 / 360) / 1e9
    60.0
    """
    s = LEAD_IN_S
    for d in detectors:
        s = max(s, 3.0 * float(getattr(d, "halflife_s", 0.0) or 0.0), d.lookback_ns() / S)
    return int(max(s * S, 64 * period_ns))


@dataclass
class Trace:
    """One detector's output over the window (``times`` ascending, ns)."""

    name: str
    label: str
    score_field: str
    threshold_field: str
    alarm_field: str
    times: np.ndarray
    score: np.ndarray
    threshold: np.ndarray
    alarm: np.ndarray
    source: str
    """Where the numbers come from: ``"error_ekg.ERROR"`` or ``"computed from model <v>"``."""

    @property
    def episodes(self) -> tuple[np.ndarray, np.ndarray]:
        return alarm_episodes(self.times, self.alarm)

    @property
    def n_episodes(self) -> int:
        return len(self.episodes[0])

    @property
    def signed(self) -> bool:
        return bool(np.any(self.score < 0))


@dataclass
class Window:
    """A series over ``[start_ns, end_ns)`` with its reconstruction and detector traces."""

    db: str
    measurement: str
    field: str
    tags: dict
    start_ns: int
    end_ns: int
    times: np.ndarray
    values: np.ndarray
    period_ns: float
    recon: np.ndarray | None = None
    traces: list = field(default_factory=list)
    model_version: str | None = None
    series: str | None = None
    n_read: int = 0
    notes: list = field(default_factory=list)

    def name(self) -> str:
        tags = ",".join(f"{k}={v}" for k, v in sorted(self.tags.items()))
        return f"{self.db}.{self.measurement}.{self.field}" + (f" {{{tags}}}" if tags else "")

    def seconds(self, times=None) -> np.ndarray:
        """Times as seconds after the window's start."""
        return (np.asarray(self.times if times is None else times, np.int64) - self.start_ns) / S

    def summary(self) -> str:
        head = (f"{self.name()} {format_timestamp(self.start_ns)} .. "
                f"{format_timestamp(self.end_ns)}: {len(self.times):,} samples")
        rows = [f"  {t.label}: {t.n_episodes} alarm episode(s); {t.source}" for t in self.traces]
        return "\n".join([head, *rows, *(f"  note: {n}" for n in self.notes)])


# --------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------
def _show(ix: Influx, db: str, q: str, col: int = 0) -> list[str]:
    try:
        return sorted({str(r[col]) for s in ix.query_json(q, db) for r in s.get("values", [])})
    except InfluxQueryError:
        return []


def _no_data(ix: Influx, db, measurement, fld, tags, start_ns, end_ns) -> ExploreError:
    """Why a read came back empty: no such measurement, field or tags, or nothing in range."""
    where = f"{db}.{measurement}.{fld}" + (f" with tags {tags}" if tags else "")
    last = ix.last_time(db, measurement, fld, tags)
    if last is not None:
        first = ix.first_time(db, measurement, fld, -(2**63) + 1, None, tags)
        return ExploreError(
            f"no points of {where} in {format_timestamp(start_ns)} .. {format_timestamp(end_ns)}; "
            f"the series has points from {format_timestamp(first)} to {format_timestamp(last)}: "
            "choose --start/--end inside that")
    meas = _show(ix, db, "SHOW MEASUREMENTS")
    if measurement not in meas:
        return ExploreError(f"unknown series: database {db!r} has no measurement {measurement!r} "
                            f"(it has: {', '.join(meas) or 'none'})")
    fields = _show(ix, db, f"SHOW FIELD KEYS FROM {quote_ident(measurement)}")
    if fld not in fields:
        return ExploreError(f"unknown series: {db}.{measurement} has no field {fld!r} (fields: "
                            f"{', '.join(fields)}); choose one with --field")
    keys = _show(ix, db, f"SHOW TAG KEYS FROM {quote_ident(measurement)}")
    return ExploreError(f"unknown series: no points of {where} (tag keys of {db}.{measurement}: "
                        f"{', '.join(keys) or 'none'}); check the --tag filters")


def _read_source(ix, db, measurement, fld, tags, lo, hi):
    r = ix.read_field(db, measurement, fld, lo, hi, tags)
    if len(r.times) > 1 and np.any(np.diff(r.times) <= 0):
        keys = _show(ix, db, f"SHOW TAG KEYS FROM {quote_ident(measurement)}")
        raise ExploreError(f"the filter {tags or '{}'} matches more than one series of {db}."
                           f"{measurement} (several points share a timestamp); add --tag to pick "
                           f"one (tag keys: {', '.join(keys) or 'none'})")
    return r.times, r.values


def _error_series_names(ix, error_db, measurements, tags, version=None) -> list[str]:
    filt = dict(tags, **({"model": version} if version else {}))
    names = set()
    for m in measurements:
        try:
            names.update(ix.tag_values(error_db, m, "series", filt))
        except InfluxQueryError:  # no error database yet
            return []
    return sorted(names)


def _resolve_series(ix, error_db, measurements, tags, measurement, series, version):
    """The ``series`` tag the stream wrote for this source, or None when there are no scores."""
    known = _error_series_names(ix, error_db, measurements, tags)
    if series is not None:
        if series not in known:
            raise ExploreError(
                f"unknown series {series!r}: the error database {error_db!r} has no scores of it "
                f"for {tags or 'this source'} (series there: {', '.join(known) or 'none'})")
        return series
    mine = _error_series_names(ix, error_db, measurements, tags, version) if version else known
    if measurement in mine:  # the stream's command line names a series after its measurement
        return measurement
    if len(mine) == 1:
        return mine[0]
    if len(mine) > 1:
        raise ExploreError(f"several series in {error_db!r} match {tags or 'the filter'}: "
                           f"{', '.join(mine)}; pick one with --series")
    return None


def _align(times, other_t, other_v, fill):
    out = np.full(len(times), fill, dtype=np.asarray(other_v).dtype if len(other_v) else float)
    i = np.searchsorted(other_t, times)
    ok = i < len(other_t)
    ok[ok] = other_t[i[ok]] == times[ok]
    out[ok] = np.asarray(other_v)[i[ok]]
    return out


def _from_db(ix, det, error_db, meas, tags, lo, hi, version) -> Trace | None:
    """``det``'s points in the error database (grouped by model version; ours, or the fullest).

    A detector whose score the stream leaves out where it holds ``score_omitted`` (the
    flat line's 0) has its points where its alarm field is, the missing scores filled in.
    """
    omitted = det.score_omitted
    base = det.score_field if omitted is None else det.alarm_field
    try:
        r = ix.read_field(error_db, meas, base, lo, hi, tags, group_by="model")
    except InfluxQueryError:
        return None
    groups = r.by_group()
    if version is not None:
        g = groups.get(version)
    else:
        g = max(groups.values(), key=len) if groups and len(r) else None
        version = next((k for k, v in groups.items() if v is g), None)
    if g is None or len(g) == 0:
        return None
    t = g.times
    order = np.argsort(t, kind="stable")
    t, first = t[order], g.values[order]
    tg = dict(tags, model=version)
    thr = ix.read_field(error_db, meas, det.threshold_field, lo, hi, tg)
    if omitted is None:
        score = first
        alarm = ix.read_field(error_db, meas, det.alarm_field, lo, hi, tg)
        alarm = _align(t, alarm.times, alarm.values > 0, False)
    else:
        sc = ix.read_field(error_db, meas, det.score_field, lo, hi, tg)
        score = _align(t, sc.times, np.asarray(sc.values, float), float(omitted))
        alarm = first > 0
    return Trace(det.name, det.label, det.score_field, det.threshold_field, det.alarm_field, t,
                 score, _align(t, thr.times, thr.values, np.nan), alarm,
                 f"{error_db}.{meas} (model {version})")


def _computed(det, times, values, lo, hi, version) -> Trace:
    out = det.new_state().update_many(times, values)
    keep = (out.times >= lo) & (out.times < hi)
    return Trace(det.name, det.label, det.score_field, det.threshold_field, det.alarm_field,
                 out.times[keep], np.asarray(out.score, float)[keep],
                 np.full(int(keep.sum()), float(out.threshold)), np.asarray(out.alarm, bool)[keep],
                 f"computed from model {version}")


def _reconstruct(shape, times, values, period_ns):
    m = shape.model_
    out = np.full(len(values), np.nan)
    need = m.segment_len + m.segment_len // 2
    bounds = np.r_[0, run_breaks(times, period_ns), len(times)]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        if b - a >= need:
            out[a:b] = m.reconstruct(values[a:b])
    return out


def read_window(ix: Influx, db: str, measurement: str, field: str = "value", tags=None,
                start_ns: int | None = None, end_ns: int | None = None, *, model=None,
                error_db: str = "error_ekg", series: str | None = None, scores: str = "auto",
                error_measurement: str = "ERROR", zscore_measurement: str = "zscore") -> Window:
    """One series over ``[start_ns, end_ns)`` with its reconstruction and each detector's trace.

    Parameters
    ----------
    ix : Influx
    db, measurement, field, tags
        The source series (the tags must select one series).
    start_ns, end_ns : int, optional
        The window; given one end, the other is :data:`DEFAULT_SPAN_S` away;
        given neither, the last minute of the series.
    model : str, Path or ModelFile, optional
        Its enabled detectors are drawn, and its shape detector's
        reconstruction.  Without a model, every detector found in the error
        database for this series is drawn.
    error_db, error_measurement, zscore_measurement : str
        Where the stream wrote the scores (its defaults).
    series : str, optional
        The stream's ``series`` tag; default: the measurement's name, or the
        only series of the error database with the source's tags.
    scores : {"auto", "db", "model"}
        ``auto``: from the error database where it holds this model's scores,
        else computed; ``db``: from the error database only; ``model``: always
        computed from the model file.

    Raises
    ------
    ExploreError
        Bad range, no data in it, unknown series, a model at another sample
        rate, no scores where ``scores="db"`` asks for them.
    ModelFileError, InfluxError
        From :func:`~pipeline.model_io.load_model` and the reads.
    """
    if scores not in ("auto", "db", "model"):
        raise ExploreError(f"scores must be auto, db or model, got {scores!r}")
    tags = {str(k): str(v) for k, v in (tags or {}).items()}
    if model is not None and not isinstance(model, ModelFile):
        model = load_model(model)
    if model is None and scores == "model":
        raise ExploreError("scores computed from the model need a model file (--model)")
    span = int(DEFAULT_SPAN_S * S)
    if start_ns is None and end_ns is None:
        last = ix.last_time(db, measurement, field, tags)
        if last is None:
            raise _no_data(ix, db, measurement, field, tags, None, None)
        end_ns = last + 1
    start_ns = end_ns - span if start_ns is None else int(start_ns)
    end_ns = start_ns + span if end_ns is None else int(end_ns)
    if end_ns <= start_ns:
        raise ExploreError(f"the end must be after the start, got {format_timestamp(start_ns)} .. "
                           f"{format_timestamp(end_ns)}")
    period = model.period_ns if model is not None else None
    lead = lead_in_ns(model.enabled, period or 1e9) if model is not None else 0
    # and the samples after the end that the last points inside it need (a segment's second half)
    ahead = max((d.lookahead_ns() for d in model.enabled), default=0) if model is not None else 0
    times, values = _read_source(ix, db, measurement, field, tags, start_ns - lead,
                                 end_ns + ahead)
    inside = (times >= start_ns) & (times < end_ns)
    if not inside.any():
        raise _no_data(ix, db, measurement, field, tags, start_ns, end_ns)
    observed = infer_period(times) if len(times) >= 2 else None
    if period and observed and abs(observed / period - 1) > 0.01:
        raise ExploreError(f"the series' sample period is {observed / 1e6:.6g} ms but the model "
                           f"was trained at {period / 1e6:.6g} ms; give the model of this series")
    period = float(period or observed or 1e9)
    win = Window(db, measurement, field, tags, start_ns, end_ns, times[inside], values[inside],
                 period, n_read=len(times), model_version=model.version if model else None)
    shape = model.get("shape") if model is not None else None
    if shape is not None and getattr(shape, "model_", None) is not None:
        win.recon = _reconstruct(shape, times, values, period)[inside]
    dets = model.enabled if model is not None else [REGISTRY[n] for n in sorted(REGISTRY)]
    meas = {d.name: zscore_measurement if d.per_sample else error_measurement for d in dets}
    name = None
    if scores != "model":
        name = _resolve_series(ix, error_db, sorted(set(meas.values())), tags, measurement,
                               series, win.model_version)
    win.series = name
    for d in dets:
        tr = None
        if name is not None:
            tr = _from_db(ix, d, error_db, meas[d.name], dict(tags, series=name), start_ns,
                          end_ns, win.model_version)
        if tr is None and model is not None and scores != "db":
            tr = _computed(d, times, values, start_ns, end_ns, model.version)
        if tr is None and scores == "db":
            raise ExploreError(
                f"the error database {error_db!r} has no {d.label} scores of "
                f"{'model ' + model.version + ' for ' if model else ''}{win.name()} in this "
                "range; score it with `python -m pipeline.stream`, or draw scores computed from "
                "the model (--scores model)")
        if tr is not None:
            win.traces.append(tr)
    if model is None and not win.traces:
        win.notes.append(f"no scores of this series in {error_db!r}; give --model to compute them")
    return win
