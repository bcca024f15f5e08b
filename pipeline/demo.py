"""``python -m pipeline.demo``: the README's first command, end to end.

1. starts a local influxd (unless ``INFLUXDB_HOST``/``--port`` point at a
   running server);
2. loads the shipped synthetic EKG (``datasets/synthetic_ekg.csv``, 5 min at
   360 Hz, labelled anomalies after 3 min) and a generated fleet of
   temperature sensors (2 s cadence);
3. trains every detector (shape, flat line, baseline step, z-score, drift) on the first
   120 s of the EKG and calibrates each on the next 60 s (both normal) to an
   alarm budget of one false alarm per day; the same for the temperature
   fleet on two normal sensors;
4. runs ``pipeline.stream`` in backfill mode over everything, writing
   each detector's scores and alarms into the ``error_ekg`` database, with
   an ``[alerts]`` table (the Python alert path): a ``log`` destination
   (written to ``<out>/alerts.log``) and the ``chronograf`` history;
5. reads the scores back and prints what was flagged, scored honestly
   against the labels (found, missed, false alarms), and saves a picture;
6. prints the alert notifications the stream raised and reads them back
   from ``chronograf.autogen.alerts`` (Chronograf's Alert History).

Each run starts with an empty alert outbox (``<out>/checkpoints/alerts.json``),
so a second run alerts again; the history points it writes replace the first
run's (same times and tags).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .alerts import parse_alerts_config
from .alerts.messages import format_duration, format_time
from .baselines import fleet_zscore
from .datasets import synthetic_temperature
from .evaluate import flag_events, match_events
from .influx import Influx, InfluxError, InfluxSettings, quote_ident
from .influxd import DEFAULT_DIR, InfluxdError, LocalInfluxd, ping
from .load import LoadError, read_csv_series
from .model_io import ModelFileError, load_model
from .stream import Stream
from .stream_config import ConfigError, OutputConfig, SeriesConfig, StreamConfig
from .train import TrainError, train

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "datasets" / "synthetic_ekg.csv"
LABELS = ROOT / "datasets" / "synthetic_ekg_anomalies.csv"
START = "2026-01-01T00:00:00Z"
T0 = int(pd.Timestamp(START).value)
S = 10**9


def ensure_server(port: int | None, root: Path) -> InfluxSettings:
    """Settings from the environment (``port`` overrides); start a local influxd if none answers.

    Raises ``ValueError`` on bad settings (``INFLUXDB_PORT=abc``, port 0...).
    """
    settings = InfluxSettings.from_env(port=port)
    if settings.host in ("127.0.0.1", "localhost") and not ping(settings.port):
        srv = LocalInfluxd(root, http_port=settings.port, detach=True).start()
        print(f"started a local influxd at {srv.url} (data in {srv.root}); "
              f"stop it with `python -m pipeline.influxd stop --dir {root}`")
    return settings


def _step(text: str) -> float:
    print(f"\n== {text}")
    return time.perf_counter()


def _plot(path: Path, ekg_t, ekg_v, seg_t, seg_e, seg_alarm, threshold, labels,
          window_s=(175, 215)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plot import plot_scores, shade_intervals

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12, 6), sharex=True)
    sec, ssec = (ekg_t - T0) / S, (seg_t - T0) / S
    m = (sec >= window_s[0]) & (sec < window_s[1])
    ms = (ssec >= window_s[0]) & (ssec < window_s[1])
    ax1.plot(sec[m], ekg_v[m], lw=0.7, color="k")
    ax1.set_title("synthetic EKG: normal until 180 s, labelled anomalies shaded")
    ax1.set_ylabel("mV")
    plot_scores(ssec[ms], seg_e[ms], threshold, ax=ax2, flagged=seg_alarm[ms])
    ax2.set_xlabel("seconds")
    inside = labels[(labels.end_s >= window_s[0]) & (labels.start_s < window_s[1])]
    for ax in (ax1, ax2):
        shade_intervals(ax, inside.start_s, inside.end_s)
        ax.set_xlim(*window_s)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(settings: InfluxSettings, out: Path, db: str = "ekg", error_db: str = "error_ekg",
        clusters: int = 150) -> int:
    ix = Influx(settings)
    t = _step("1. load the data into InfluxDB")
    ekg = read_csv_series(DATA, start=START)
    ix.create_database(db)
    n = ix.write_series(db, "ekg", ekg.times_ns, {"value": ekg.values}, {"source": "synthetic"})
    print(f"   {db}.ekg: {n:,} points ({ekg.summary()})")
    temp = synthetic_temperature(hours=6)
    temp_t = T0 + np.round(temp["time_s"].to_numpy() * S).astype(np.int64)
    ix.create_database("sensors")
    n_temp = 0
    for sensor, part in temp.groupby("sensor"):
        m = (temp["sensor"] == sensor).to_numpy()
        n_temp += ix.write_series("sensors", "temperature", temp_t[m],
                                  {"value": part["value"].to_numpy()}, {"sensor": sensor})
    print(f"   sensors.temperature: {n_temp:,} points from {temp['sensor'].nunique()} sensors "
          f"at a 2 s cadence ({time.perf_counter() - t:.1f} s)")

    _step("2. train: every detector on 0-120 s, each calibrated on 120-180 s (held out, "
          "normal) to a budget of 1 false alarm per day")
    tr = ekg.times_ns < T0 + 120 * S
    va = (ekg.times_ns >= T0 + 120 * S) & (ekg.times_ns < T0 + 180 * S)
    model_path = out / "ekg.npz"
    res = train(ekg.times_ns[tr], ekg.values[tr], ekg.times_ns[va], ekg.values[va],
                n_clusters=clusters, out=str(model_path),
                extra_metadata={"source": f"{db}.ekg.value"})
    print("   " + res.summary().replace("\n", "\n   "))
    normal = [k for k in sorted(temp["sensor"].unique()) if k not in ("s00", "s01", "s02")]
    half = T0 + 3 * 3600 * S
    parts = [(temp_t[(temp["sensor"] == k).to_numpy()],
              temp["value"].to_numpy()[(temp["sensor"] == k).to_numpy()]) for k in normal]
    sensor_path = out / "temperature.npz"
    sres = train([t[t < half] for t, _ in parts], [v[t < half] for t, v in parts],
                 [t[t >= half] for t, _ in parts], [v[t >= half] for t, v in parts],
                 detectors=("flatline", "zscore", "drift"), out=str(sensor_path),
                 extra_metadata={"source": "sensors.temperature.value"})
    print(f"   temperature fleet, trained on the normal sensors {', '.join(normal)}:")
    print("   " + sres.summary().replace("\n", "\n   "))

    t = _step(f"3. stream (backfill) both series into {error_db}, alerting through [alerts]")
    cfg = StreamConfig(
        series=[SeriesConfig(name="ekg", db=db, measurement="ekg", tags={"source": "synthetic"},
                             model=str(model_path)),
                SeriesConfig(name="temperature", db="sensors", measurement="temperature",
                             fan_out="sensor", model=str(sensor_path))],
        output=OutputConfig(db=error_db), checkpoint_dir=str(out / "checkpoints"))
    # what [alerts] in a stream config file says, given as the parsed table
    cfg.alerts = parse_alerts_config({"max_per_minute": 5, "destination": [
        {"type": "log", "logger": ALERT_LOGGER}, {"type": "chronograf"}]}, environ={})
    alert_log = _alert_log(out / "alerts.log")
    _clear_outbox(Path(cfg.checkpoint_dir) / "alerts.json")
    stream = Stream(cfg, ix)
    raised: list = []
    stream.alerts.subscribe(raised.extend)
    try:
        totals = stream.backfill(T0, T0 + 24 * 3600 * S, resume=False)
    finally:
        stream.close(drain_s=30)  # the history is written before it is read back below
        alert_log.close()
    print(f"   {totals['samples']:,} samples scored, {totals['points_written']:,} points written, "
          f"{len(raised)} alert notifications in {totals['seconds']:.1f} s")

    _step("4. what was flagged (read back from InfluxDB)")
    labels = pd.read_csv(LABELS)
    model = load_model(model_path)
    flags_t, flags_det = [], []
    for det in model.enabled:
        meas = cfg.output.zscore_measurement if det.per_sample else cfg.output.measurement
        r = ix.read_field(error_db, meas, det.alarm_field, tags={"series": "ekg"})
        flags_t.append(r.times[r.values > 0])
        flags_det += [det.label] * int(np.count_nonzero(r.values > 0))
    ft = np.concatenate(flags_t)
    order = np.argsort(ft, kind="stable")
    ft, fdet = ft[order], np.asarray(flags_det)[order]
    ev = flag_events(ft, np.ones(len(ft)), 0.5, merge_ns=S // 2)
    match = match_events(ev, T0 + (labels.start_s * S).astype(np.int64),
                         T0 + (labels.end_s * S).astype(np.int64), tolerance_ns=S // 2)
    normal_fa = int(np.count_nonzero(ev.starts < T0 + 180 * S))
    print(f"   EKG, {', '.join(d.label for d in model.enabled)} (alarms of any detector, "
          "merged when closer than 0.5 s):")
    print(f"     {match.summary()}")
    print(f"     false alarms in the normal first 180 s: {normal_fa}")
    for (_, row), hit in zip(labels.iterrows(), match.found, strict=True):
        lo, hi = T0 + int((row.start_s - 0.5) * S), T0 + int((row.end_s + 0.5) * S)
        by = sorted(set(fdet[(ft >= lo) & (ft <= hi)]))
        print(f"     {row.kind:8s} at {row.start_s:7.2f} s: "
              f"{'found by ' + ', '.join(by) if hit else 'MISSED'}")
    sensor_model = load_model(sensor_path)
    raw = ix.read_field("sensors", "temperature", "value", group_by="sensor").by_group()
    sensors = sorted(raw)
    fleet = fleet_zscore(np.column_stack([raw[k].values for k in sensors]))
    print("   temperature fleet (s00: a 3-sample +4 degC spike at 1 h; s01: drifting +5 degC; "
          "s02: +3 degC off the others):")
    dets = sensor_model.enabled
    print("     sensor  " + "".join(f"{d.label + ' alarm points':<26s}" for d in dets)
          + "median |fleet z|")
    cols = {d.name: ix.read_field(error_db, cfg.output.zscore_measurement, d.alarm_field,
                                  tags={"series": "temperature"}, group_by="sensor").by_group()
            for d in dets}
    for i, k in enumerate(sensors):
        row = ""
        for d in dets:
            g = cols[d.name].get(k)
            hits = g.times[g.values > 0] if g is not None else np.empty(0, np.int64)
            when = f" from {(hits[0] - T0) / 3600 / S:.2f} h" if len(hits) else ""
            row += f"{len(hits):6d}{when:<20s}"
        print(f"     {k:6s}  {row}{np.nanmedian(np.abs(fleet[:, i])):6.1f}")
    print("     (median |fleet z|: pipeline.baselines.fleet_zscore; the stream's fleet detector "
          "learns each sensor's relation to the fleet from at least 3 normal sensors, and this "
          "demo has 2)")
    seg = ix.read_field(error_db, "ERROR", "max_error", tags={"series": "ekg"})
    alarm = ix.read_field(error_db, "ERROR", "anomaly", tags={"series": "ekg"})
    flagged = np.isin(seg.times, alarm.times[alarm.values > 0])
    res_threshold = model.get("shape").threshold_
    png = out / "ekg_anomalies.png"
    ekg_t = ekg.times_ns
    # flagged as the stream decided (on the float64 score), not re-decided on the stored digits
    _plot(png, ekg_t, ekg.values, seg.times, seg.values, flagged, res_threshold, labels)
    _step("5. alerts raised by the stream (the Python path: docs/alerts.md)")
    _print_alerts(raised, out / "alerts.log")
    _print_history(ix, raised)
    print(f"\npicture: {png}")
    print(f"scores: database {error_db!r}, measurements ERROR (per segment) and zscore "
          "(per sample); alerts: Chronograf > Alerting > Alert History (database chronograf), "
          "or Kapacitor with tickscripts/*.tick")
    return 0


ALERT_LOGGER = "pipeline.demo.alerts"
"""The demo's log destination writes here; :func:`_alert_log` sends it to a file."""


def _alert_log(path: Path) -> logging.Handler:
    """Route the log destination's lines to ``path`` (not the terminal): one line each."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger(ALERT_LOGGER)
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return handler


def _clear_outbox(path: Path) -> None:
    """A fresh demo run alerts again: the engine state (what it saw) lives in the outbox."""
    for p in (path, path.with_name(path.name + ".journal"), path.with_name(path.name + ".tmp")):
        p.unlink(missing_ok=True)


def _episodes(raised: list) -> list[tuple]:
    """Pair each ALERT with its RECOVERY: ``(alert, recovery or None)`` in time order."""
    open_, out = {}, []
    for n in raised:
        if n.kind == "alert":
            open_[n.alert_id] = len(out)
            out.append([n, None])
        elif n.kind == "recovery" and n.alert_id in open_:
            out[open_.pop(n.alert_id)][1] = n
    return [tuple(e) for e in out]


def _print_alerts(raised: list, log_path: Path, limit: int = 30) -> None:
    kinds = [n.kind for n in raised]
    people = [n for n in raised if not n.suppressed]
    print(f"   {len(raised)} notifications: {kinds.count('alert')} alerts, "
          f"{kinds.count('recovery')} recoveries, {kinds.count('summary')} flood summaries; "
          f"{len(raised) - len(people)} suppressed by the flood guard (history only); the log "
          f"destination wrote the {len(people)} for people to {log_path}")
    eps = _episodes(raised)
    print(f"   {len(eps)} episodes (one ALERT, then one RECOVERY each): start (UTC), detector, "
          "series, peak score / threshold, duration:")
    width = max((len(a.label) for a, _ in eps[:limit]), default=10)
    for a, r in eps[:limit]:
        where = a.series + (f" {a.key}" if a.key else "")
        peak = a.value if r is None or r.peak is None else r.peak
        lasted = "still on" if r is None else format_duration(r.duration_ns)
        flag = "  (suppressed)" if a.suppressed else ""
        print(f"     {format_time(a.time_ns):<28s} {a.label:<{width}s} {where:<16s} "
              f"{a.score_field:<9s} {peak:>8.4g} / {a.threshold:<8.4g} {lasted}{flag}")
    if len(eps) > limit:
        print(f"     ... {len(eps) - limit} more")
    for n in raised:
        if n.kind == "summary":
            print(f"   {n.text}")


def _print_history(ix: Influx, raised: list) -> None:
    """Count the history points per level and detector, as written to chronograf.autogen.alerts."""
    series = sorted({n.series for n in raised})
    if not series:
        return
    q = (f"SELECT count({quote_ident('value')}) FROM {quote_ident('alerts')} WHERE "
         + " OR ".join(f"{quote_ident('series')} = $s{i}" for i in range(len(series)))
         + f" GROUP BY {quote_ident('level')}, {quote_ident('detector')}")
    res = ix.query_json(q, "chronograf", {f"s{i}": s for i, s in enumerate(series)})
    got = {(r["tags"]["level"], r["tags"]["detector"]): r["values"][0][1] for r in res}
    want: dict = {}
    for n in raised:
        if n.kind != "summary":
            want[(n.level, n.detector)] = want.get((n.level, n.detector), 0) + 1
    print("   read back from chronograf.autogen.alerts (Chronograf's Alert History), points per "
          "level and detector:")
    for (level, det), c in sorted(got.items()):
        print(f"     {level:<9s} {det:<9s} {c:5d}"
              + ("" if c == want.get((level, det)) else f"   (raised {want.get((level, det), 0)})"))
    ok = got == want
    print(f"     {'the same as raised' if ok else 'NOT the same as raised'}: "
          f"{sum(want.values())} alerts and recoveries, suppressed ones included")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=None,
                   help="InfluxDB HTTP port (default: $INFLUXDB_PORT or 8086)")
    p.add_argument("--dir", default=str(DEFAULT_DIR), help="local influxd directory (default: %(default)s)")
    p.add_argument("--out", default="var/demo", help="model, checkpoints and picture (default: %(default)s)")
    p.add_argument("--clusters", type=int, default=150, help="K-Means clusters (default: %(default)s)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        InfluxSettings.from_env(port=args.port)
    except ValueError as e:  # INFLUXDB_PORT=abc, INFLUXDB_SSL=maybe, --port 0...
        print(f"error: InfluxDB settings: {e}", file=sys.stderr)
        return 2
    try:
        settings = ensure_server(args.port, Path(args.dir))
        return run(settings, Path(args.out), clusters=args.clusters)
    except (InfluxError, InfluxdError, LoadError, TrainError, ConfigError, ModelFileError,
            OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
