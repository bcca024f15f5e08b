"""The notebooks' steps, each one call, so that notebooks hold calls and prose only.

Connect (starting a local influxd if none answers), load through
``pipeline.load``, inject faults with :mod:`pipeline.ekg_faults`, train,
stream, read windows back (:func:`read_window`, from :mod:`pipeline.window`,
re-exported here), calibrate to budgets and look at the GPD tail.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .influx import Influx, InfluxSettings
from .series import infer_period
from .window import (
    DEFAULT_SPAN_S,
    LEAD_IN_S,
    ExploreError,
    Trace,
    Window,
    alarm_episodes,
    lead_in_ns,
    read_window,
)

__all__ = ["ExploreError", "Trace", "Window", "read_window", "alarm_episodes", "lead_in_ns",
           "DEFAULT_SPAN_S", "LEAD_IN_S", "connect", "out_dir", "shown", "Loaded", "load_ekg",
           "inject_faults", "stream", "train", "fault_windows", "match_table", "alarm_table",
           "fleet_summary", "Fleet", "load_fleet", "budget_sweep", "Tail", "tail_fit",
           "per_day", "EKG_FILES"]

S = 10**9

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
