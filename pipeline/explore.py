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

The notebooks' other steps (connect, load through ``pipeline.load``, inject
faults with :mod:`pipeline.ekg_faults`, stream, calibrate to budgets, the GPD
tail) are the small functions at the end of this module, so that notebooks
hold calls and prose only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .detectors import REGISTRY
from .influx import Influx, InfluxQueryError, InfluxSettings, quote_ident
from .model_io import ModelFile, load_model
from .series import format_timestamp, infer_period, run_breaks

__all__ = ["ExploreError", "Trace", "Window", "read_window", "alarm_episodes", "lead_in_ns",
           "DEFAULT_SPAN_S", "LEAD_IN_S", "connect", "out_dir", "shown", "Loaded", "load_ekg",
           "inject_faults", "stream", "train", "fault_windows", "match_table", "alarm_table", "fleet_summary", "Fleet", "load_fleet", "budget_sweep", "Tail", "tail_fit",
           "per_day", "EKG_FILES"]

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
        s = max(s, 3.0 * float(getattr(d, "halflife_s", 0.0) or 0.0))
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
    """``det``'s points in the error database (grouped by model version; ours, or the fullest)."""
    try:
        r = ix.read_field(error_db, meas, det.score_field, lo, hi, tags, group_by="model")
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
    t, score = t[order], g.values[order]
    tg = dict(tags, model=version)
    thr = ix.read_field(error_db, meas, det.threshold_field, lo, hi, tg)
    alarm = ix.read_field(error_db, meas, det.alarm_field, lo, hi, tg)
    return Trace(det.name, det.label, det.score_field, det.threshold_field, det.alarm_field, t,
                 score, _align(t, thr.times, thr.values, np.nan),
                 _align(t, alarm.times, alarm.values > 0, False),
                 f"{error_db}.{meas} (model {version})")


def _computed(det, times, values, lo, version) -> Trace:
    out = det.new_state().update_many(times, values)
    keep = out.times >= lo
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
    times, values = _read_source(ix, db, measurement, field, tags, start_ns - lead, end_ns)
    inside = times >= start_ns
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
            tr = _computed(d, times, values, start_ns, model.version)
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


# --------------------------------------------------------------------------
# notebook steps: each one call, so that notebooks hold no logic
# --------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parent.parent
START = "2026-01-01T00:00:00Z"
T0 = 1_767_225_600_000_000_000  # START in ns
OUT_ENV = "PIPELINE_NOTEBOOK_OUT"
"""Where the notebooks write models and checkpoints (default ``var/notebooks``)."""
EKG_FILES = {
    "synthetic": ("datasets/synthetic_ekg.csv", "datasets/synthetic_ekg_anomalies.csv",
                  "python -m pipeline.datasets"),
    "a02": ("var/datasets/a02/a02.csv", "var/datasets/a02/a02_events.csv",
            "python -m pipeline.datasets fetch a02"),
    "mitdb208": ("var/datasets/mitdb208/mitdb208.csv", "var/datasets/mitdb208/mitdb208_events.csv",
                 "python -m pipeline.datasets fetch mitdb"),
}
"""CSV series, events and the command that writes them, by name: the shipped synthetic EKG, and
Apnea-ECG a02 / MIT-BIH 208 as ``python -m pipeline.datasets fetch`` writes them."""


def shown(path) -> str:
    """A path as people should see it: relative to the repository when inside it.

    >>> shown(ROOT / "var" / "x.npz")
    'var/x.npz'
    """
    p = Path(path).resolve()
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(path)


def out_dir(*parts) -> Path:
    """``$PIPELINE_NOTEBOOK_OUT`` (default ``var/notebooks`` in the repository), created."""
    p = Path(os.environ.get(OUT_ENV) or ROOT / "var" / "notebooks").joinpath(*parts)
    p.mkdir(parents=True, exist_ok=True)
    return p


def connect(port: int | None = None) -> tuple[Influx, str]:
    """The InfluxDB of ``INFLUXDB_HOST``/``INFLUXDB_PORT``; a local influxd is started if none answers.

    As ``python -m pipeline.demo`` does: the server keeps running under
    ``var/influxdb`` (stop it with ``python -m pipeline.influxd stop``).
    Returns the connection and one line saying which server it is.
    """
    from .influxd import DEFAULT_DIR, LocalInfluxd, ping

    settings = InfluxSettings.from_env(port=port)
    how = "the server of INFLUXDB_HOST/INFLUXDB_PORT"
    if settings.host in ("127.0.0.1", "localhost") and not ping(settings.port):
        LocalInfluxd(ROOT / DEFAULT_DIR, http_port=settings.port, detach=True).start()
        how = (f"a local influxd started now (data in {DEFAULT_DIR}; stop it with "
               "`python -m pipeline.influxd stop`)")
    ix = Influx(settings)
    return ix, f"InfluxDB {ix.ping()}: {how}"


@dataclass
class Loaded:
    """A series written to InfluxDB and read back from it (times from :data:`T0`)."""

    name: str
    db: str
    measurement: str
    tags: dict
    times: np.ndarray
    values: np.ndarray
    period_ns: float
    labels: pd.DataFrame
    note: str = ""

    @property
    def sec(self) -> np.ndarray:
        return (self.times - T0) / S

    def part(self, a_s: float, b_s: float) -> tuple[np.ndarray, np.ndarray]:
        """``(times, values)`` with ``a_s <= seconds < b_s``."""
        m = (self.sec >= a_s) & (self.sec < b_s)
        return self.times[m], self.values[m]

    def seconds(self, a_s: float, b_s: float) -> tuple[np.ndarray, np.ndarray]:
        """``(seconds, values)`` with ``a_s <= seconds < b_s`` (for pictures)."""
        t, v = self.part(a_s, b_s)
        return (t - T0) / S, v

    def ns(self, s: float) -> int:
        return T0 + int(round(s * S))

    def at(self, s: float) -> int:
        """The index of the sample at ``s`` seconds."""
        return int(np.searchsorted(self.times, self.ns(s)))

    def label_ns(self) -> tuple[np.ndarray, np.ndarray]:
        """The labelled intervals in ns (what :func:`pipeline.plot.plot_window` shades)."""
        return (T0 + np.round(self.labels.start_s.to_numpy(float) * S).astype(np.int64),
                T0 + np.round(self.labels.end_s.to_numpy(float) * S).astype(np.int64))

    def summary(self) -> str:
        tags = ",".join(f"{k}={v}" for k, v in self.tags.items())
        return (f"{self.db}.{self.measurement} {{{tags}}}: {len(self.times):,} points read back, "
                f"{len(self.times) * self.period_ns / 1e9:.0f} s at {1e9 / self.period_ns:.4g} Hz, "
                f"{len(self.labels)} labelled event(s)" + (f"\n{self.note}" if self.note else ""))


def _labels(path, seconds) -> pd.DataFrame:
    cols = ["start_s", "end_s", "kind"]
    if path is None or not Path(path).is_file():
        return pd.DataFrame(columns=cols)
    ev = pd.read_csv(path)
    ev = ev.rename(columns={"start": "start_s", "end": "end_s", "type": "kind"})[cols]
    return ev[ev.start_s < seconds].reset_index(drop=True)


def load_ekg(ix: Influx, data: str = "synthetic", seconds: float = 300.0, db: str = "explore",
             measurement: str = "ekg") -> Loaded:
    """Load the first ``seconds`` of an EKG CSV into InfluxDB (``pipeline.load``) and read it back.

    ``data`` is a name of :data:`EKG_FILES` or a CSV path (``time_s,value``,
    relative to the repository); a file that is not there falls back to the
    synthetic EKG, and the note says so.  Points are tagged ``source=<name>``,
    from 2026-01-01.
    """
    from .load import LoadedSeries, read_csv_series, write_loaded

    note = ""
    csv, events, how = EKG_FILES.get(data, (data, None, "python -m pipeline.datasets fetch"))
    name = data if data in EKG_FILES else Path(data).stem
    if not (ROOT / csv).is_file():
        note = f"{csv} is not there (`{how}` writes it): using the synthetic EKG instead"
        name, (csv, events, _) = "synthetic", EKG_FILES["synthetic"]
    s = read_csv_series(ROOT / csv, start=START)
    n = int(np.searchsorted(s.times_ns, T0 + int(seconds * S)))
    tags = {"source": name}
    write_loaded(ix, db, measurement, LoadedSeries(s.times_ns[:n], s.values[:n], csv), "value",
                 tags)
    r = ix.read_field(db, measurement, "value", T0, T0 + int(seconds * S), tags)
    return Loaded(name, db, measurement, tags, r.times, r.values, float(infer_period(r.times)),
                  _labels(ROOT / events if events else None, seconds), note)


def train(name: str, train_times, train_values, val_times, val_values, **kw):
    """:func:`pipeline.train.train` into ``out_dir()/<name>.npz``; the summary shows a short path."""
    from .train import train as _train

    path = out_dir() / f"{name}.npz"
    res = _train(train_times, train_values, val_times, val_values, out=path, **kw)
    res.path = shown(path)
    return res


def inject_faults(ix: Influx, base: Loaded, kinds=None, seconds: float = 120.0,
                  seed: int = 5) -> Loaded:
    """One fault of each kind (:data:`pipeline.ekg_faults.EKG_FAULTS`) in normal EKG, loaded too.

    The normal EKG is new data from the synthetic generator when ``base`` is
    the synthetic EKG (its own last minutes hold anomalies), else the last
    ``seconds`` of ``base``.  Written with tag ``source=<name>-faults``.
    """
    from scipy.signal import resample_poly

    from . import ekg_faults as ekf

    kinds = tuple(kinds or ekf.EKG_FAULTS)
    rate = int(round(1e9 / base.period_ns))
    n = int(seconds * rate)
    if base.name == "synthetic" and rate == ekf.RATE:
        x, where = ekf.synthetic_clean(seconds, seed), "new normal synthetic EKG"
    else:
        if len(base.values) < 2 * n:
            raise ExploreError(f"{base.name}: load at least {2 * seconds:g} s to inject faults "
                               f"into its last {seconds:g} s")
        x, where = base.values[-n:], f"the last {seconds:g} s of {base.name}"
    x360 = x if rate == ekf.RATE else resample_poly(x, ekf.RATE, rate)
    faults = ekf.plan_faults(x360, 0.0, seconds, {k: 1 for k in kinds},
                             np.random.default_rng(seed))
    y, ev = ekf.inject(x, rate, faults)
    y = np.round(y, 4)
    times = T0 + np.round(np.arange(len(y)) * (1e9 / rate)).astype(np.int64)
    tags = {"source": f"{base.name}-faults"}
    ix.write_series(base.db, base.measurement, times, {"value": y}, tags)
    r = ix.read_field(base.db, base.measurement, "value", T0, int(times[-1]) + 1, tags)
    labels = ev.rename(columns={"start": "start_s", "end": "end_s", "type": "kind"})
    return Loaded(tags["source"], base.db, base.measurement, tags, r.times, r.values,
                  base.period_ns, labels, f"faults injected into {where}: {', '.join(kinds)}")


def stream(ix: Influx, model_path, sources, error_db: str = "error_explore",
           fan_out: str | None = None) -> dict:
    """Backfill every source (a :class:`Loaded` or :class:`Fleet`) with ``pipeline.stream``.

    Each source is one ``[[series]]`` named after its ``source`` tag (a fleet:
    its measurement, fanned out over ``sensor``); returns the stream's totals.
    """
    from .stream import Stream
    from .stream_config import OutputConfig, SeriesConfig, StreamConfig

    series = [SeriesConfig(name=src.tags.get("source", src.measurement), db=src.db,
                           measurement=src.measurement, tags=dict(src.tags),
                           fan_out="sensor" if isinstance(src, Fleet) else fan_out,
                           model=str(model_path)) for src in sources]
    cfg = StreamConfig(series=series, output=OutputConfig(db=error_db),
                       checkpoint_dir=str(out_dir("checkpoints")))
    lo = min(int(src.times[0]) for src in sources)
    hi = max(int(src.times[-1]) for src in sources) + 1
    return Stream(cfg, ix).backfill(lo, hi, resume=False)


def fault_windows(ix: Influx, faults: Loaded, model, error_db: str = "error_explore",
                  pad_s: float = 1.5) -> list:
    """``[(kind, (start_ns, end_ns), Window), ...]``: each labelled fault with ``pad_s`` around it."""
    a, b = faults.label_ns()
    out = []
    for kind, lo, hi in zip(faults.labels.kind, a, b, strict=True):
        win = read_window(ix, faults.db, faults.measurement, tags=faults.tags,
                          start_ns=int(lo - pad_s * S), end_ns=int(hi + pad_s * S), model=model,
                          error_db=error_db)
        out.append((kind, (int(lo), int(hi)), win))
    return out


def match_table(win: Window, labels: Loaded, tol_s: float = 0.5) -> tuple[pd.DataFrame, dict]:
    """Which detector's alarm episodes meet each labelled interval (within ``tol_s``), and the
    episodes that meet none (false alarms), per detector."""
    a, b = labels.label_ns()
    inside = (b >= win.start_ns) & (a < win.end_ns)
    tol = int(tol_s * S)
    rows = labels.labels[inside].reset_index(drop=True)
    false = {}
    for tr in win.traces:
        s0, e0 = tr.episodes
        meets = (s0[None, :] <= b[inside][:, None] + tol) & (e0[None, :] >= a[inside][:, None] - tol)
        rows[tr.label] = meets.any(axis=1)
        false[tr.label] = int((~meets.any(axis=0)).sum())
    return rows, false


@dataclass
class Fleet:
    """Sensors of one measurement, read back from InfluxDB: ``values[t, j]`` of ``sensors[j]``."""

    db: str
    measurement: str
    times: np.ndarray
    sensors: list
    values: np.ndarray
    period_ns: float
    tags: dict = field(default_factory=dict)

    @property
    def hours(self) -> np.ndarray:
        return (self.times - T0) / 3.6e12

    def column(self, sensor: str) -> np.ndarray:
        return self.values[:, self.sensors.index(sensor)]

    def ns(self, h: float) -> int:
        return T0 + int(round(h * 3.6e12))

    def parts(self, sensors, a_h: float, b_h: float) -> tuple[list, list]:
        """``([times...], [values...])`` of ``sensors`` with ``a_h <= hours < b_h`` (for train)."""
        m = (self.hours >= a_h) & (self.hours < b_h)
        return [self.times[m] for _ in sensors], [self.column(k)[m] for k in sensors]


def load_fleet(ix: Influx, hours: float = 6.0, db: str = "explore",
               measurement: str = "temperature") -> Fleet:
    """The synthetic temperature fleet (:func:`pipeline.datasets.synthetic_temperature`) in InfluxDB.

    Written one sensor at a time (tag ``sensor``) and read back in one query.
    """
    from .datasets import synthetic_temperature

    df = synthetic_temperature(hours=hours)
    t = T0 + np.round(df["time_s"].to_numpy() * S).astype(np.int64)
    ix.create_database(db)
    for k in sorted(df["sensor"].unique()):
        m = (df["sensor"] == k).to_numpy()
        ix.write_series(db, measurement, t[m], {"value": df["value"].to_numpy()[m]}, {"sensor": k})
    groups = ix.read_field(db, measurement, "value", T0, int(t.max()) + 1,
                           group_by="sensor").by_group()
    sensors = sorted(groups)
    times = groups[sensors[0]].times
    values = np.column_stack([groups[k].values for k in sensors])
    return Fleet(db, measurement, times, sensors, values, float(infer_period(times)))


def alarm_table(ix: Influx, fleet: Fleet, model, error_db: str = "error_explore") -> pd.DataFrame:
    """Alarm episodes per sensor and detector, read back from the error database (first in hours)."""
    rows = []
    for k in fleet.sensors:
        win = read_window(ix, fleet.db, fleet.measurement, tags={"sensor": k},
                          start_ns=int(fleet.times[0]), end_ns=int(fleet.times[-1]) + 1,
                          model=model, error_db=error_db)
        row = {"sensor": k}
        for tr in win.traces:
            first = tr.episodes[0]
            row[f"{tr.label} episodes"] = tr.n_episodes
            row[f"{tr.label} first (h)"] = round((first[0] - T0) / 3.6e12, 2) if len(first) else None
        rows.append(row)
    return pd.DataFrame(rows).set_index("sensor")


def fleet_summary(fleet: Fleet, z, threshold: float = 3.0) -> pd.DataFrame:
    """Per sensor: median |z| and the share of readings with |z| above ``threshold``."""
    a = np.abs(np.asarray(z, float))
    with np.errstate(invalid="ignore"):
        above = np.nanmean(a > threshold, axis=0)
    return pd.DataFrame({"median |z|": np.nanmedian(a, axis=0).round(2),
                         f"share |z| > {threshold:g}": above.round(3)},
                        index=pd.Index(fleet.sensors, name="sensor"))


def budget_sweep(train_parts, val_parts, budgets_per_day, detectors, name="budget") -> pd.DataFrame:
    """Train the same detectors at several budgets; one row per budget and detector.

    Columns: budget (per day), detector, on, threshold, method, events (held
    out, at the threshold), held-out hours, hours that would confirm the budget.
    """
    from .detectors import Budget
    from .train import train

    rows = []
    for b in budgets_per_day:
        res = train(*train_parts, *val_parts, detectors=detectors, budget=Budget.per_day(b),
                    out=out_dir() / f"{name}_{b:g}.npz")
        for d in res.detectors:
            c = d.calibration_ or {}
            rows.append({"budget per day": b, "detector": d.label, "on": bool(d.enabled_),
                         "threshold": d.threshold_, "method": c.get("method"),
                         "held-out events": c.get("n_events"), "held-out hours": c.get("hours"),
                         "hours to confirm": c.get("hours_to_confirm")})
    return pd.DataFrame(rows)


@dataclass
class Tail:
    """A detector's calibration on held-out data: the events above each threshold, counted and fitted."""

    label: str
    grid: np.ndarray
    counted: np.ndarray
    """Alarm events per hour at each threshold of ``grid``, counted on the held-out data."""
    fitted: np.ndarray
    """The same from the GPD fit of the peaks (NaN without a fit)."""
    peaks: np.ndarray
    threshold: float
    budget_per_hour: float
    evidence: dict

    def per_day(self, threshold: float) -> float:
        """Alarm events per day above ``threshold`` by the GPD fit (NaN without one, or below
        the fit's level)."""
        from scipy import stats as sps

        c = self.evidence
        if c.get("shape") is None or threshold < c["level"]:
            return float("nan")
        return float(24 * len(self.peaks) / c["hours"]
                     * sps.genpareto.sf(threshold - c["level"], c["shape"], 0.0, c["scale"]))


def tail_fit(det, times, values) -> Tail:
    """Counted vs fitted alarm-event rate above each threshold, from ``det.calibration_``.

    ``times``, ``values``: the held-out data the detector was calibrated on
    (arrays, or lists of arrays for a fleet).
    """
    from scipy import stats as sps

    from .calibrate import cluster_peaks, count_events

    c = dict(det.calibration_ or {})
    if "level" not in c:
        raise ExploreError(f"{det.label} has no tail fit: {c.get('why_off', 'not calibrated')}")
    if not isinstance(times, (list, tuple)):
        times, values = [times], [values]
    stats = [det.calibration_scores(t, v) for t, v in zip(times, values, strict=True)]
    gap = det.hold_ns(det.period_ns_)
    level, hours = c["level"], c["hours"]
    top = max(det.threshold_, c.get("max_stat") or det.threshold_) * 1.15
    grid = np.linspace(level, top, 160)
    counted = np.array([count_events(stats, g, gap) for g in grid]) / hours
    peaks = np.concatenate([cluster_peaks(t, s, level, gap) for t, s in stats])
    if c.get("shape") is not None:
        fitted = len(peaks) / hours * sps.genpareto.sf(grid - level, c["shape"], 0.0, c["scale"])
    else:
        fitted = np.full(len(grid), np.nan)
    return Tail(det.label, grid, counted, fitted, peaks, float(det.threshold_),
                float(c["budget_per_hour"]), c)


def per_day(rate_per_point: float, period_ns: float, every: int = 1) -> float:
    """Alarms per day of a per-point false-alarm rate, with one point every ``every`` samples.

    >>> round(per_day(1e-3, 1e9 / 360, every=16))   # the shape detector's segments at 360 Hz
    1944
    """
    return rate_per_point * 86400e9 / (period_ns * every)
