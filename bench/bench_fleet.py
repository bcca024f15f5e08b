"""Fleet benchmark of ``python -m pipeline.stream`` against a real, throwaway influxd.

Run ``python bench/bench_fleet.py`` (not a test).  It starts its own
:class:`~pipeline.influxd.LocalInfluxd` in a temporary directory under /tmp
(stopped and deleted at the end, also on errors), trains a sensor model at
1 Hz with the detectors flat line, z-score, drift and fleet (6 h of
:func:`pipeline.datasets.synthetic_temperature`: 3 h to fit, 3 h to calibrate)
and measures, in one run:

1. **Follow** (``--sensors`` at 1 Hz for ``--follow-seconds``): the stream runs
   as its own process (``python -m pipeline.stream --config ...``, fan-out over
   the ``sensor`` tag) while this script writes one point per sensor every
   second, stamped with that second, in one write.  An InfluxDB subscription
   on the error database pushes every write of the stream to a loopback HTTP
   receiver here, which counts the per-sample points per timestamp.  Lag of a
   second = when its last sensor's scores arrived - when the write of that
   second returned.  The stream process's CPU time (``/proc/PID/stat``) and
   RSS are sampled every ``--sample-every`` s: CPU share of one core and
   memory over time (slope after the warm-up).
2. **Fan-out backfill** (``--backfill-sensors`` x ``--backfill-hours`` at
   1 Hz): ``Stream.backfill`` in this process, beside the raw InfluxDB bound
   of the same points: read the same time slices grouped by sensor
   (``Influx.read_field``), encode exactly the points the stream wrote for
   that slice (read back from its database before, not timed) in one
   :func:`~pipeline.fanout.encode_rows` call, and write them, with no
   scoring.  Printed as a ratio (target >= 50 %), with the CPU seconds of
   this process and of influxd for both.

The machine is shared and noisy: the script prints what it measured in the
same run and says whether each target is met; it never fails on a time.
"""

from __future__ import annotations

import argparse
import gzip
import http.server
import io
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.calibrate import CalibrationWarning  # noqa: E402
from pipeline.datasets import synthetic_temperature  # noqa: E402
from pipeline.fanout import encode_rows  # noqa: E402
from pipeline.influx import Influx, InfluxSettings, series_prefix  # noqa: E402
from pipeline.influxd import LocalInfluxd  # noqa: E402
from pipeline.model_io import load_model  # noqa: E402
from pipeline.stream import Stream  # noqa: E402
from pipeline.stream_config import OutputConfig, SeriesConfig, StreamConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
SEC = 10**9
MEAS, SRC_DB = "temp", "fleet"


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def sensor_names(n: int) -> list[str]:
    return [f"s{i:05d}" for i in range(n)]


def fleet_values(k: int, n: int) -> np.ndarray:
    """Readings of ``n`` sensors at second ``k``: 21 degC, a daily cycle, noise, 3 decimals."""
    rng = np.random.default_rng(k)
    base = 21.0 + 0.5 * np.sin(2 * np.pi * k / 86400) + 0.01 * np.arange(n) % 1.0
    return np.round(base + 0.1 * rng.standard_normal(n), 3)


def fleet_lines(names_prefix: list[str], t: int, values: np.ndarray) -> list[str]:
    return [f"{p}{v!r} {t}" for p, v in zip(names_prefix, values.tolist(), strict=True)]


def proc_cpu_s(pid: int) -> float:
    """user + system CPU seconds of a process (and its waited-for children)."""
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(parts[11]) + int(parts[12])) / tick


def proc_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def pct(a, q) -> float:
    return float(np.percentile(a, q)) if len(a) else float("nan")


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def train_model(path: Path, detectors=("flatline", "zscore", "drift", "fleet")) -> str:
    """Train the sensor model at 1 Hz: 3 h to fit, 3 h to calibrate.

    Without the fleet detector, on one sensor of :func:`synthetic_temperature`; with it, on
    the first 20 sensors of the bench's own fleet (:func:`fleet_values`, named as the
    stream's keys), so the fleet detector knows 20 of the keys and scores the rest as new.
    """
    from pipeline.train import train

    detectors = list(detectors)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        if "fleet" in detectors:
            n, secs = 20, 6 * 3600
            vals = np.stack([fleet_values(10**6 + k, n) for k in range(secs)])  # other seeds
            t = T0 + (np.arange(secs, dtype=np.int64) - 7 * 86400) * SEC  # a week before
            half = secs // 2
            res = train([t[:half]] * n, [vals[:half, j] for j in range(n)],
                        [t[half:]] * n, [vals[half:, j] for j in range(n)],
                        detectors=detectors, out=str(path), keys=sensor_names(n))
        else:
            temp = synthetic_temperature(hours=6, n_sensors=1, cadence_s=1.0, seed=11)
            v = temp["value"].to_numpy()
            t = T0 - 7 * 86400 * SEC + np.round(temp["time_s"].to_numpy() * 1e9).astype(np.int64)
            half = len(v) // 2
            res = train(t[:half], v[:half], t[half:], v[half:], detectors=detectors,
                        out=str(path))
    on = [d.name for d in res.detectors if d.enabled_]
    print(f"model: {', '.join(on)} on (of {', '.join(detectors)}), 1 Hz, version "
          f"{res.version}", flush=True)
    return str(path)


# --------------------------------------------------------------------------
# 1: follow
# --------------------------------------------------------------------------
class _Receiver(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802 - http.server's naming
        now = time.perf_counter()
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.count(now, body)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


class Counter(http.server.ThreadingHTTPServer):
    """Counts per-sample points per timestamp; a second is complete when all sensors arrived.

    The fleet detector's points (``fleet_z``) come in their own lines, when their time bin
    closes for the whole fleet (a poll later): they are counted apart (``fleet_done``).
    """

    daemon_threads = True

    def __init__(self, n_sensors: int):
        super().__init__(("127.0.0.1", 0), _Receiver)
        self.n = n_sensors
        self.counts: dict[int, int] = {}
        self.done: dict[int, float] = {}
        self.fleet_counts: dict[int, int] = {}
        self.fleet_done: dict[int, float] = {}
        self.points = 0
        self.lock = threading.Lock()

    def count(self, now: float, body: bytes) -> None:
        seen: dict[int, int] = {}
        fleet: dict[int, int] = {}
        for line in body.split(b"\n"):
            if line.startswith(b"zscore,"):
                ts = int(line[line.rfind(b" ") + 1:])
                d = fleet if line.split(b" ", 2)[1].startswith(b"fleet_") else seen
                d[ts] = d.get(ts, 0) + 1
        with self.lock:
            self.points += sum(seen.values())
            for part, counts, done in ((seen, self.counts, self.done),
                                       (fleet, self.fleet_counts, self.fleet_done)):
                for ts, c in part.items():
                    got = counts.get(ts, 0) + c
                    if got >= self.n and ts not in done:
                        done[ts] = now
                        counts.pop(ts, None)
                    elif ts not in done:
                        counts[ts] = got


def follow_run(args, root: Path, srv: LocalInfluxd, settings, model_path: str) -> dict:
    ix = Influx(settings)
    n, secs = args.sensors, int(args.follow_seconds)
    err = "fleet_err"
    ix.create_database(SRC_DB)
    ix.create_database(err)
    counter = Counter(n)
    threading.Thread(target=counter.serve_forever, daemon=True).start()
    ix.query_json(f'CREATE SUBSCRIPTION "bench" ON "{err}"."autogen" DESTINATIONS ALL '
                  f"'http://127.0.0.1:{counter.server_address[1]}'")
    cfg = root / "follow.toml"
    cfg.write_text(f"""
[output]
db = "{err}"
[stream]
checkpoint_dir = "{root / 'ck_follow'}"
poll_interval = {args.poll}
log_every = 10.0
[[series]]
name = "temp"
db = "{SRC_DB}"
measurement = "{MEAS}"
fan_out = "sensor"
model = "{model_path}"
""")
    names = sensor_names(n)
    prefixes = [f"{MEAS},sensor={s} value=" for s in names]
    # the first second is written before the stream starts, so every key is known at its start
    t_start = (time.time_ns() // SEC + 2) * SEC
    env = dict(os.environ, INFLUXDB_HOST="127.0.0.1", INFLUXDB_PORT=str(settings.port),
               PYTHONPATH=str(ROOT))
    log = open(root / "follow.log", "w")
    written = {}  # second's timestamp -> perf_counter when its write returned
    proc = None
    samples = []  # (t since start, cpu s, rss MB)
    try:
        wix = Influx(settings)
        k = 0
        t_first = t_start
        while time.time_ns() < t_first:
            time.sleep(0.005)
        wix.write_lines(SRC_DB, fleet_lines(prefixes, t_first, fleet_values(0, n)))
        written[t_first] = time.perf_counter()
        prof = ["-m", "cProfile", "-o", args.profile] if args.profile else []
        proc = subprocess.Popen([sys.executable, *prof, "-m", "pipeline.stream", "--config",
                                 str(cfg), "--start", str(t_start)], env=env, cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT)
        t_wall0 = time.perf_counter()
        next_sample = 0.0
        for k in range(1, secs):
            ts = t_start + k * SEC
            while time.time_ns() < ts:  # a point is written when its second has come
                time.sleep(0.002)
            lines = fleet_lines(prefixes, ts, fleet_values(k, n))
            wix.write_lines(SRC_DB, lines)
            written[ts] = time.perf_counter()
            el = time.perf_counter() - t_wall0
            if el >= next_sample:
                samples.append((el, proc_cpu_s(proc.pid), proc_rss_mb(proc.pid),
                                proc_cpu_s(srv.proc.pid), sum(os.times()[:2])))
                next_sample += args.sample_every
            if proc.poll() is not None:
                raise RuntimeError(f"the stream exited early ({proc.returncode}); see "
                                   f"{root / 'follow.log'}")
        deadline = time.perf_counter() + args.poll + 10
        last = t_start + (secs - 1) * SEC
        while time.perf_counter() < deadline and last not in counter.done:
            time.sleep(0.05)
        samples.append((time.perf_counter() - t_wall0, proc_cpu_s(proc.pid),
                        proc_rss_mb(proc.pid), proc_cpu_s(srv.proc.pid), sum(os.times()[:2])))
        load = os.getloadavg()[0]
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()
        try:
            ix.query_json(f'DROP SUBSCRIPTION "bench" ON "{err}"."autogen"')
        except Exception:  # noqa: BLE001 - cleanup
            pass
        counter.shutdown()
    out_text = (root / "follow.log").read_text()
    lat = np.array([counter.done[t] - written[t] for t in sorted(written) if t in counter.done])
    fleet_lat = np.array([counter.fleet_done[t] - written[t] for t in sorted(written)
                          if t in counter.fleet_done])
    lat_t = np.array([(t - t_start) / SEC for t in sorted(written) if t in counter.done])
    s = np.array(samples)
    warm = s[:, 0] >= min(args.warmup, s[-1, 0] / 2)
    span = s[-1, 0] - s[warm][0, 0] if warm.sum() >= 2 else float("nan")
    cpu_share = (s[-1, 1] - s[warm][0, 1]) / span
    influxd_share = (s[-1, 3] - s[warm][0, 3]) / span
    bench_share = (s[-1, 4] - s[warm][0, 4]) / span
    slope = (float(np.polyfit(s[warm, 0] / 60, s[warm, 2], 1)[0]) if warm.sum() > 2 else 0.0)
    for db in (SRC_DB, err):
        ix.drop_database(db)
    return {"n": n, "secs": secs, "written": len(written), "complete": len(lat),
            "lat": lat, "lat_t": lat_t, "fleet_lat": fleet_lat, "cpu_share": cpu_share, "influxd_share": influxd_share,
            "bench_share": bench_share, "load": load, "cpu_total": s[-1, 1], "rss": s[:, 2],
            "t": s[:, 0], "slope": slope, "points": counter.points, "log": out_text,
            "rate": counter.points / max(1e-9, s[-1, 0])}


# --------------------------------------------------------------------------
# 2: fan-out backfill vs the raw read+write bound
# --------------------------------------------------------------------------
OUT_FIELDS = None  # filled from the model: {field: kind}


def write_history(ix: Influx, db: str, n: int, hours: float) -> tuple[int, float]:
    ix.create_database(db)
    names = sensor_names(n)
    prefixes = [f"{MEAS},sensor={s} value=" for s in names]
    total = int(hours * 3600)
    t0 = time.perf_counter()
    chunk = max(1, 500_000 // n)  # seconds per write
    for k0 in range(0, total, chunk):
        lines = []
        for k in range(k0, min(total, k0 + chunk)):
            lines += fleet_lines(prefixes, T0 + k * SEC, fleet_values(k, n))
        ix.write_lines(db, lines)
    return total * n, time.perf_counter() - t0


def out_fields(model_path: str) -> dict:
    """The per-sample fields the stream writes for this model: ``{field: (dtype, role)}`` with
    role score, threshold (written on alarm points only), alarm or extra."""
    lm = load_model(model_path)
    fields = {}
    for d in lm.enabled:
        out = d.new_state().update_many(np.arange(3, dtype=np.int64) * SEC, np.ones(3))
        for k, v in out.fields().items():
            role = {d.score_field: "score", d.threshold_field: "threshold",
                    d.alarm_field: "alarm"}.get(k, "extra")
            fields[k] = (np.asarray(v).dtype, role)
    return fields


def stream_output(ix: Influx, err_db: str, a: int, b: int, fields: dict):
    """What the stream wrote for ``[a, b)``: ``(sensors, times, {field: array})`` with the
    stream's types (NaN where a field was left out of a line)."""
    body = ix.query_csv(f'SELECT * FROM "zscore" WHERE time >= {a} AND time < {b} '
                        'GROUP BY "sensor"', err_db)
    if not body.strip():
        return np.empty(0, object), np.empty(0, np.int64), {}
    df = pd.read_csv(io.BytesIO(body), keep_default_na=True)
    sensors = df["tags"].astype(str).str.split("=", n=1).str[1].to_numpy(object)
    cols = {}
    for name, (dt, _) in fields.items():
        if name not in df:  # no point of the measurement has this field (yet)
            cols[name] = np.full(len(df), np.nan) if dt.kind == "f" else np.zeros(len(df), dt)
            continue
        col = df[name]
        if dt.kind == "b":
            cols[name] = col.astype(str).str.lower().eq("true").to_numpy()
        elif dt.kind in "iu":
            cols[name] = col.fillna(0).to_numpy(np.int64)
        else:
            cols[name] = col.to_numpy(np.float64)
    return sensors, df["time"].to_numpy(np.int64), cols


def raw_bound(ix: Influx, db: str, err_db: str, out_db: str, start: int, end: int, step: int,
              fields: dict) -> tuple[float, dict]:
    """Per slice: read the source points grouped by sensor, encode exactly the points the
    stream wrote for that slice (read back from its database beforehand, not timed) in one
    :func:`~pipeline.fanout.encode_rows` call, and write them; no scoring."""
    ix.create_database(out_db)
    t = {"read": 0.0, "encode": 0.0, "write": 0.0, "n_read": 0, "n_written": 0}
    prefixes: dict[str, int] = {}
    pre: list[str] = []
    for a in range(start, end, step):
        b = min(a + step, end)
        sensors, times, cols = stream_output(ix, err_db, a, b, fields)  # not timed
        for k in dict.fromkeys(sensors.tolist()):
            if k not in prefixes:
                prefixes[k] = len(pre)
                pre.append(series_prefix("zscore", {"sensor": k, "series": "temp",
                                                    "model": "0123456789ab"}, list(fields)))
        t1 = time.perf_counter()
        r = ix.read_field(db, MEAS, "value", a, b, None, "sensor")
        t2 = time.perf_counter()
        rows = np.fromiter((prefixes[k] for k in sensors.tolist()), np.int64, len(sensors))
        lines = encode_rows(np.array(pre, dtype=object), rows, times, cols)
        t3 = time.perf_counter()
        ix.write_lines(out_db, lines)
        t4 = time.perf_counter()
        t["read"] += t2 - t1
        t["encode"] += t3 - t2
        t["write"] += t4 - t3
        t["n_read"] += len(r)
        t["n_written"] += len(lines)
    ix.drop_database(out_db)
    return t["read"] + t["encode"] + t["write"], t


def backfill_run(args, root: Path, srv: LocalInfluxd, settings, model_path: str) -> dict:
    ix = Influx(settings)
    n, hours = args.backfill_sensors, args.backfill_hours
    db = "hist"
    print(f"backfill: writing {n:,} sensors x {hours:g} h at 1 Hz...", flush=True)
    n_pts, t_w = write_history(ix, db, n, hours)
    print(f"  {n_pts:,} points written in {t_w:.1f} s ({n_pts / t_w:,.0f} points/s)", flush=True)
    end = T0 + int(hours * 3600) * SEC
    fields = out_fields(model_path)
    rows = []
    for rep in range(args.repeats):
        out_db = f"bf_err_{rep}"
        cfg = StreamConfig(
            series=[SeriesConfig(name="temp", db=db, measurement=MEAS, fan_out="sensor",
                                 model=model_path)],
            output=OutputConfig(db=out_db), checkpoint_dir=str(root / f"ck_bf_{rep}"),
            batch_samples=args.batch, log_every=1e9)
        stream = Stream(cfg, Influx(settings))
        print(f"  repeat {rep + 1}/{args.repeats}: stream backfill...", flush=True)
        c0, i0 = sum(os.times()[:2]), proc_cpu_s(srv.proc.pid)
        t0 = time.perf_counter()
        totals = stream.backfill(T0, end, resume=False)
        t_stream = time.perf_counter() - t0
        cpu_stream = (sum(os.times()[:2]) - c0, proc_cpu_s(srv.proc.pid) - i0)
        if totals["samples"] != n_pts:
            print(f"WARNING: the stream scored {totals['samples']:,} of {n_pts:,} samples")
        step = _slice_ns(stream, n, args.batch)
        print(f"  repeat {rep + 1}/{args.repeats}: raw read+encode+write in slices of "
              f"{step / SEC:g} s...", flush=True)
        c0, i0 = sum(os.times()[:2]), proc_cpu_s(srv.proc.pid)
        t_raw, parts = raw_bound(ix, db, out_db, f"bf_raw_{rep}", T0, end, step, fields)
        parts["cpu"] = (sum(os.times()[:2]) - c0, proc_cpu_s(srv.proc.pid) - i0)
        ix.drop_database(out_db)
        parts["cpu_stream"] = cpu_stream
        if parts["n_written"] != totals["points_written"]:
            # the fleet detector's fields go in their own lines (written when a bin closes for
            # the whole fleet), which InfluxDB merges into the same points; the raw loop writes
            # each point's fields in one line
            print(f"  note: the raw loop wrote {parts['n_written']:,} lines (one per point), the "
                  f"stream {totals['points_written']:,} (a cross-key detector's fields in lines "
                  "of their own)")
        rows.append((t_stream, t_raw, totals, parts))
    ix.drop_database(db)
    return {"n": n_pts, "sensors": n, "hours": hours, "rows": rows}


def _slice_ns(stream, n_keys: int, batch: int) -> int:
    """The stream's read slice for ``n_keys`` keys read together (the same slices for the bound)."""
    s = stream.cfg.series[0]
    try:
        return int(stream._slice_ns(s, n_keys))
    except TypeError:  # the stream of before fleets: batch periods whatever the keys
        return int(SEC * batch)


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sensors", type=int, default=10_000, help="follow: sensors at 1 Hz")
    p.add_argument("--follow-seconds", type=float, default=180.0,
                   help="follow: seconds of real-time writing (default %(default)s)")
    p.add_argument("--poll", type=float, default=1.0, help="follow: poll interval (s)")
    p.add_argument("--warmup", type=float, default=30.0,
                   help="follow: seconds left out of the CPU share and memory slope")
    p.add_argument("--sample-every", type=float, default=5.0,
                   help="follow: CPU/RSS sampling interval (s)")
    p.add_argument("--backfill-sensors", type=int, default=1000)
    p.add_argument("--backfill-hours", type=float, default=24.0)
    p.add_argument("--batch", type=int, default=200_000, help="stream batch_samples")
    p.add_argument("--detectors", default="flatline,zscore,drift,fleet",
                   help="the sensor model's detectors (default %(default)s)")
    p.add_argument("--repeats", type=int, default=1, help="backfill repeats (interleaved)")
    p.add_argument("--skip-follow", action="store_true")
    p.add_argument("--profile", metavar="PATH", help="follow: run the stream under cProfile "
                   "and write its stats to PATH")
    p.add_argument("--skip-backfill", action="store_true")
    args = p.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="bench_fleet_", dir="/tmp"))
    free_gb = shutil.disk_usage(root).free / 2**30
    need_gb = 1 + args.backfill_sensors * args.backfill_hours * 3600 * 60e-9
    srv = LocalInfluxd(root / "influxd")
    try:
        if free_gb < need_gb:
            raise SystemExit(f"only {free_gb:.1f} GiB free in /tmp, need ~{need_gb:.1f}")
        srv.start()
        settings = InfluxSettings(host="127.0.0.1", port=srv.http_port, timeout=120)
        print(f"machine: {os.cpu_count()} CPU(s), load {os.getloadavg()[0]:.1f}, python "
              f"{platform.python_version()}, numpy {np.__version__}, influxd "
              f"{Influx(settings).ping()}, {free_gb:.0f} GiB free in /tmp", flush=True)
        model_path = train_model(root / "sensor.npz", args.detectors.split(","))
        fol = None if args.skip_follow else follow_run(args, root, srv, settings, model_path)
        bf = None if args.skip_backfill else backfill_run(args, root, srv, settings, model_path)
        report(args, fol, bf)
        return 0
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)


def report(args, fol, bf) -> None:
    print()
    if fol is not None:
        lat = fol["lat"]
        n, secs = fol["n"], fol["secs"]
        print(f"Follow: {n:,} sensors at 1 Hz for {secs} s, poll {args.poll:g} s "
              f"(CPU and memory after {args.warmup:g} s of warm-up)")
        print(f"  seconds written {fol['written']}, complete (every sensor scored) "
              f"{fol['complete']}; per-sample points received {fol['points']:,} "
              f"({fol['points'] / max(1, fol['written'] * n):.1%} of those written)")
        print(f"  scored: {fol['rate']:,.0f} samples/s over the run")
        print(f"  lag (write returned -> last sensor's score arrived), whole run: p50 "
              f"{pct(lat, 50):.2f} s, p95 {pct(lat, 95):.2f} s, p99 {pct(lat, 99):.2f} s, max "
              f"{(lat.max() if len(lat) else float('nan')):.2f} s; worst seconds: " + ", ".join(
                  f"{fol['lat_t'][i]:.0f} s: {lat[i]:.1f}" for i in np.argsort(-lat)[:5]))
        after = lat[fol["lat_t"] >= args.warmup]
        print(f"  lag after {args.warmup:g} s of warm-up: p50 {pct(after, 50):.2f} s, p99 "
              f"{pct(after, 99):.2f} s, max {(after.max() if len(after) else float('nan')):.2f} s;"
              f" target p99 <= poll + 1 s: "
              f"{met(len(after) > 0 and pct(after, 99) <= args.poll + 1.0)}")
        fl = fol["fleet_lat"]
        if len(fl):
            print(f"  fleet detector's points (written when a second's bin closes for the whole "
                  f"fleet): {len(fl)} seconds complete, lag p50 {pct(fl, 50):.2f} s, p99 "
                  f"{pct(fl, 99):.2f} s, max {fl.max():.2f} s")
        print(f"  CPU of the stream process: {fol['cpu_share']:.1%} of one core "
              f"(target <= 100 %: {met(fol['cpu_share'] <= 1.0)}), {fol['cpu_total']:.1f} CPU s "
              f"in total, {fol['cpu_share'] / max(1e-9, fol['rate']) * 1e6:.1f} us of CPU per "
              f"sample; influxd {fol['influxd_share']:.1%}, this script (the writer) "
              f"{fol['bench_share']:.1%}; load average at the end {fol['load']:.1f} on "
              f"{os.cpu_count()} CPUs")
        rss = fol["rss"]
        idx = np.linspace(0, len(rss) - 1, min(6, len(rss))).astype(int)
        print("  RSS (MB) over time: " + ", ".join(f"{fol['t'][i]:.0f} s {rss[i]:.0f}"
                                                    for i in idx))
        print(f"  RSS slope after warm-up: {fol['slope']:+.2f} MB/min "
              f"(x30 = {fol['slope'] * 30:+.1f} MB over 30 min, extrapolated)")
        tail = [ln for ln in fol["log"].splitlines() if "samples/s" in ln][-2:]
        for ln in tail:
            print("  stream log: " + ln[-160:])
    if bf is not None:
        print(f"Fan-out backfill: {bf['sensors']:,} sensors x {bf['hours']:g} h = {bf['n']:,} "
              "samples")
        print(f"  {'repeat':<7}{'stream s':>10}{'samples/s':>12}{'CPU s':>7}{'influxd':>9}"
              f"{'raw s':>8}{'read':>7}{'encode':>8}{'write':>7}{'CPU s':>7}{'influxd':>9}"
              f"{'% of raw':>10}")
        for i, (ts, tr, _totals, parts) in enumerate(bf["rows"]):
            cs, cr = parts["cpu_stream"], parts["cpu"]
            print(f"  {i + 1:<7}{ts:>10.1f}{bf['n'] / ts:>12,.0f}{cs[0]:>7.1f}{cs[1]:>9.1f}"
                  f"{tr:>8.1f}{parts['read']:>7.1f}{parts['encode']:>8.1f}{parts['write']:>7.1f}"
                  f"{cr[0]:>7.1f}{cr[1]:>9.1f}{tr / ts:>10.0%}")
        print("  (CPU s: this process, stream or raw loop; influxd: the server's CPU s meanwhile;"
              " the raw loop's CPU includes reading the stream's output back, untimed)")
        best = max(tr / ts for ts, tr, _, _ in bf["rows"])
        over = max(max(p["read"], p["encode"] + p["write"]) / ts for ts, _, _, p in bf["rows"])
        print(f"  stream throughput as a share of the raw read+write bound: {best:.0%} "
              f"(target >= 50 %: {met(best >= 0.5)}); of a raw loop that would read the next "
              f"slice while writing one, max(read, encode + write): {over:.0%}")


if __name__ == "__main__":
    sys.exit(main())
