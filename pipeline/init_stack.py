"""``python -m pipeline.init_stack``: prepare the compose stack's InfluxDB and models, once.

The ``init`` service of ``docker-compose.yml`` runs this before the stream
starts, and it is safe to run again: every step checks first and skips what
is already done.

1. wait for InfluxDB (``--wait`` seconds);
2. create the error database and Chronograf's alert-history database, so
   that Kapacitor (started after this) subscribes to them from its start;
3. load the demo data, unless ``--no-demo`` (``PIPELINE_INIT_NO_DEMO=1``):
   ``datasets/synthetic_ekg.csv`` into ``ekg.ekg`` (tag ``source=synthetic``,
   5 min at 360 Hz) and a generated temperature fleet
   (:func:`pipeline.datasets.synthetic_temperature`, 12 h of 5 sensors at 2 s) into ``sensors.temperature`` (tag ``sensor``),
   both ending at the time of the first run, so a dashboard showing the last
   hours shows them.  Already present (every point counted): skipped; found
   partly loaded: loaded again at the same times (writes overwrite);
4. train the models with ``python -m pipeline.train`` into ``--models``:
   ``ekg.npz`` (every detector, trained on the first 120 s, calibrated on the
   next 60 s) and ``temperature.npz`` (``--fan-out sensor --detectors
   flatline,zscore,drift``, trained on 1.5-3 h, calibrated on 3-4 h, where no
   demo fault lies).  A model is kept when it loads and ``init.json`` beside
   it says it was trained by the same command (same data, same ranges);
   otherwise it is trained again;
5. check the stream's config (``--stream-config``): every series' model file
   must exist and load, else exit 1 saying how to train it.

The fleet is not trimmed for tests: its sensor ``s01`` drifts over the last 8 h, so a
fleet shorter than 12 h would put the drift into the training ranges.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

from . import train as train_cli
from .datasets import synthetic_temperature
from .influx import Influx, InfluxError, InfluxSettings, InfluxUnavailableError, quote_ident
from .load import LoadedSeries, LoadError, read_csv_series, write_loaded
from .model_io import ModelFileError, load_model
from .series import MIN_TIME_NS
from .stream_config import ConfigError, load_config

__all__ = ["InitError", "DEMO_EKG", "DEMO_FLEET", "iso", "run", "main"]

log = logging.getLogger("pipeline.init_stack")

ROOT = Path(__file__).resolve().parent.parent
S = 10**9
DEMO_EKG = {"db": "ekg", "measurement": "ekg", "field": "value", "tags": {"source": "synthetic"}}
DEMO_FLEET = {"db": "sensors", "measurement": "temperature", "field": "value", "tag": "sensor",
              "n_sensors": 5, "cadence_s": 2.0, "seed": 7}
FLEET_HOURS = 12.0
STAMP = "init.json"
"""Beside the models: the command each model was trained with, and its version."""


class InitError(RuntimeError):
    """The stack cannot be prepared; the message says what to do."""


def iso(t_ns: int) -> str:
    """A whole-second time in ns as ISO 8601 UTC.

    >>> iso(1767225600 * 10**9)
    '2026-01-01T00:00:00Z'
    """
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t_ns // S))


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def wait_for(ix: Influx, seconds: float) -> str:
    """Ping until the server answers (at most ``seconds``); return its version."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return ix.ping()
        except InfluxUnavailableError as e:
            if time.monotonic() >= deadline:
                raise InfluxError(f"{e} (waited {seconds:.0f} s)") from None
            log.info("waiting for InfluxDB at %s ...", ix.settings.url)
            time.sleep(1.0)


def _count(ix: Influx, spec: dict, lo: int, hi: int, tags: dict | None = None) -> int:
    """Points of the spec's field in ``[lo, hi)`` (0 when the database is missing)."""
    if spec["db"] not in ix.databases():
        return 0
    conds = ["time >= $lo", "time < $hi"]
    params = {"lo": int(lo), "hi": int(hi)}
    for i, (k, v) in enumerate((tags or {}).items()):
        conds.append(f"{quote_ident(k)} = $tag{i}")
        params[f"tag{i}"] = v
    q = (f"SELECT COUNT({quote_ident(spec['field'])}) FROM {quote_ident(spec['measurement'])} "
         f"WHERE {' AND '.join(conds)}")
    series = ix.query_json(q, spec["db"], params)
    return int(series[0]["values"][0][1]) if series else 0


def _first(ix: Influx, spec: dict, tags: dict | None) -> int | None:
    if spec["db"] not in ix.databases():
        return None
    return ix.first_time(spec["db"], spec["measurement"], spec["field"], MIN_TIME_NS, None, tags)


def ensure_ekg(ix: Influx, csv: Path, now_ns: int) -> tuple[int, int]:
    """Load the demo EKG unless every point is there; return its ``(start, end)`` in ns.

    The first run places it to end at ``now_ns`` (whole seconds); later runs
    find it where it is.
    """
    spec = DEMO_EKG
    raw = read_csv_series(csv)
    n = len(raw.times_ns)
    span = int(raw.times_ns[-1] - raw.times_ns[0]) + int(np.median(np.diff(raw.times_ns)))
    span = -(-span // S) * S  # whole seconds, so that the training ranges fall on them
    first = _first(ix, spec, spec["tags"])
    start = first if first is not None else (now_ns // S) * S - span
    series = LoadedSeries(raw.times_ns + np.int64(start - int(raw.times_ns[0])), raw.values,
                          raw.path)
    have = _count(ix, spec, start, start + span, spec["tags"])
    where = f"{spec['db']}.{spec['measurement']}"
    if have == n:
        log.info("%s: the demo EKG is there (%s points from %s), skipped", where, f"{n:,}", iso(start))
        return start, start + span
    log.info("%s: loading %s (%s points from %s%s)", where, csv.name, f"{n:,}", iso(start),
             f"; {have:,} found, loading again" if have else "")
    write_loaded(ix, spec["db"], spec["measurement"], series, spec["field"], spec["tags"])
    return start, start + span


def ensure_fleet(ix: Influx, end_ns: int, hours: float) -> int:
    """Load the demo temperature fleet ending at ``end_ns`` unless it is there; return its start."""
    spec = DEMO_FLEET
    start = end_ns - int(hours * 3600) * S
    temp = synthetic_temperature(hours=hours, n_sensors=spec["n_sensors"],
                                 cadence_s=spec["cadence_s"], seed=spec["seed"])
    where = f"{spec['db']}.{spec['measurement']}"
    have = _count(ix, spec, start, end_ns)
    if have == len(temp):
        log.info("%s: the demo fleet is there (%s points from %s), skipped", where,
                 f"{len(temp):,}", iso(start))
        return start
    log.info("%s: loading %s sensors x %g h at %g s (%s points from %s%s)", where,
             spec["n_sensors"], hours, spec["cadence_s"], f"{len(temp):,}", iso(start),
             f"; {have:,} found, loading again" if have else "")
    ix.create_database(spec["db"])
    times = start + np.round(temp["time_s"].to_numpy() * S).astype(np.int64)
    for sensor, part in temp.groupby(spec["tag"]):
        m = (temp[spec["tag"]] == sensor).to_numpy()
        ix.write_series(spec["db"], spec["measurement"], times[m],
                        {spec["field"]: part["value"].to_numpy()}, {spec["tag"]: sensor})
    return start


def train_commands(models: Path, ekg_start: int, fleet_start: int) -> dict[str, list[str]]:
    """The ``python -m pipeline.train`` arguments of each demo model, by file name."""
    e, f, h = ekg_start, fleet_start, 3600 * S
    ekg = DEMO_EKG
    fleet = DEMO_FLEET
    return {
        "ekg.npz": [
            "--db", ekg["db"], "--measurement", ekg["measurement"], "--field", ekg["field"],
            *[a for k, v in ekg["tags"].items() for a in ("--tag", f"{k}={v}")],
            "--train-start", iso(e), "--train-end", iso(e + 120 * S),
            "--val-start", iso(e + 120 * S), "--val-end", iso(e + 180 * S),
            "--out", str(models / "ekg.npz")],
        "temperature.npz": [
            "--db", fleet["db"], "--measurement", fleet["measurement"], "--field", fleet["field"],
            "--fan-out", fleet["tag"], "--detectors", "flatline,zscore,drift",
            "--train-start", iso(f + 3 * h // 2), "--train-end", iso(f + 3 * h),
            "--val-start", iso(f + 3 * h), "--val-end", iso(f + 4 * h),
            "--out", str(models / "temperature.npz")],
    }


def _read_stamp(models: Path) -> dict:
    try:
        stamp = json.loads((models / STAMP).read_text())
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def _write_stamp(models: Path, stamp: dict) -> None:
    tmp = models / f".{STAMP}.tmp"
    tmp.write_text(json.dumps(stamp, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, models / STAMP)


def ensure_model(models: Path, name: str, argv: list[str]) -> str:
    """Train ``models/name`` with ``argv`` unless the same command already made it; return its version."""
    stamp = _read_stamp(models)
    entry = stamp.get(name) or {}
    path = models / name
    if entry.get("argv") == argv:
        try:
            version = load_model(path).version
        except ModelFileError as e:
            log.info("%s: %s; training again", path, e)
        else:
            if version == entry.get("version"):
                log.info("%s: model %s was trained by the same command, kept", path, version)
                return version
            log.info("%s: model %s is not the one init trained (%s); training again", path,
                     version, entry.get("version"))
    log.info("training %s: python -m pipeline.train %s", name, " ".join(argv))
    rc = train_cli.main(argv)
    if rc != 0:
        raise InitError(f"python -m pipeline.train failed (exit {rc}) for {path}; its message is "
                        "above")
    version = load_model(path).version
    stamp = _read_stamp(models)
    stamp[name] = {"argv": argv, "version": version}
    _write_stamp(models, stamp)
    return version


def check_stream_config(path: str) -> list[str]:
    """Every series of the stream config has a model file that loads; return their versions."""
    try:
        cfg = load_config(path)
    except ConfigError as e:
        raise InitError(f"the stream config is invalid: {e}") from None
    out = []
    for s in cfg.series:
        try:
            m = load_model(s.model)
        except ModelFileError as e:
            raise InitError(
                f"series {s.name!r} of {path}: {e}. Train it first, e.g. docker compose run --rm "
                f"init python -m pipeline.train --db {s.db} --measurement {s.measurement} ... "
                f"--out {s.model}") from None
        out.append(f"{s.name}: {s.model} (model {m.version})")
    return out


def run(ix: Influx, models: Path, demo: bool = True,
        csv: Path = ROOT / "datasets" / "synthetic_ekg.csv", stream_config: str | None = None,
        error_db: str = "error_ekg", history_db: str = "chronograf", wait_s: float = 120.0,
        now_ns: int | None = None) -> dict:
    """Do every step (see the module docstring); return what was found or made."""
    t0 = time.perf_counter()
    version = wait_for(ix, wait_s)
    log.info("InfluxDB %s at %s", version, ix.settings.url)
    for db in (error_db, history_db):
        if db not in ix.databases():
            ix.create_database(db)
            log.info("created database %s", db)
    out: dict = {"models": {}}
    if demo:
        now = time.time_ns() if now_ns is None else now_ns
        ekg_start, ekg_end = ensure_ekg(ix, csv, now)
        fleet_start = ensure_fleet(ix, ekg_end, FLEET_HOURS)
        models.mkdir(parents=True, exist_ok=True)
        for name, argv in train_commands(models, ekg_start, fleet_start).items():
            out["models"][name] = ensure_model(models, name, argv)
        out.update(ekg_start=ekg_start, ekg_end=ekg_end, fleet_start=fleet_start)
    if stream_config:
        for line in check_stream_config(stream_config):
            log.info("stream series %s", line)
    log.info("init done in %.1f s", time.perf_counter() - t0)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.init_stack",
                                description=__doc__.split("\n\n")[0].replace("``", ""),
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Connection: INFLUXDB_HOST, INFLUXDB_PORT, INFLUXDB_USERNAME, "
                                       "INFLUXDB_PASSWORD, INFLUXDB_SSL (README, Settings).")
    p.add_argument("--models", default="models", help="model folder (default: %(default)s)")
    p.add_argument("--ekg-csv", default=str(ROOT / "datasets" / "synthetic_ekg.csv"),
                   help="the demo EKG (default: %(default)s)")
    p.add_argument("--stream-config", help="check that every series of this stream config has "
                                           "a model that loads")
    p.add_argument("--no-demo", action="store_true", default=_flag("PIPELINE_INIT_NO_DEMO"),
                   help="load no demo data and train no demo model (default: "
                        "$PIPELINE_INIT_NO_DEMO)")
    p.add_argument("--error-db", default="error_ekg", help="the stream's error database "
                                                          "(default: %(default)s)")
    p.add_argument("--wait", type=float, default=120.0,
                   help="seconds to wait for InfluxDB (default: %(default)s)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        ix = Influx(InfluxSettings.from_env())
    except ValueError as e:
        print(f"error: InfluxDB settings: {e}", file=sys.stderr)
        return 2
    try:
        run(ix, Path(args.models), demo=not args.no_demo, csv=Path(args.ekg_csv), stream_config=args.stream_config, error_db=args.error_db,
            wait_s=args.wait)
    except (InitError, LoadError, InfluxError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
