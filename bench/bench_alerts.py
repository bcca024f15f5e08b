"""The alert path's cost and latency, against a real, throwaway influxd.

Run ``python bench/bench_alerts.py`` (not a test).  It starts its own
:class:`~pipeline.influxd.LocalInfluxd` in a temporary directory under /tmp
(stopped and deleted at the end, also on errors) and a loopback HTTP receiver
standing in for the webhook, then measures:

1. **Backfill rate with and without ``[alerts]``.**  ``--samples`` of
   synthetic EKG at 360 Hz (:func:`pipeline.datasets.synthetic_ekg`, 5 min
   tiles with anomalies in the last 2 min of each, so every tile raises
   alerts), a model with the default detectors trained on the first 150 s
   and calibrated on the next 30 s.  The same ``Stream.backfill`` runs
   without alerts and with a webhook + Chronograf-history ``[alerts]`` table,
   interleaved (alternating which goes first, after one warm-up run),
   ``--repeats`` times each (fresh output database, checkpoint directory and
   outbox every time); the medians are compared, and so are the CPU seconds
   of this process and the time the scoring thread spent in the alert
   manager.  1b. the same with a fleet of ``--fleet`` sensors (2 s cadence,
   1 h each, a spike every 5 min in each): a flood of alerts.  Target: the
   rate with alerts is at least 90 % of the rate without.  The time the
   senders need after the backfill to deliver everything is printed too.
The webhook receiver runs in a process of its own (as a real one would), logging
arrival times; the Chronograf history goes to the same influxd.

2. **Follow-mode latency, source write -> webhook.**  A sensor series at a
   2 s cadence, scored by a z-score / drift / flat-line model, followed by
   ``Stream.follow`` in a thread; a writer appends 20 samples at a time with
   one spike in each, at random wall-clock gaps (so the write lands anywhere
   in the poll cycle).  Latency is from the write's return to the receiver
   getting that spike's ALERT.  Target: p99 <= poll interval + 300 ms.

The machine is shared and noisy: the script prints what it measured beside
the target, and exits 0 whatever the numbers are.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.alerts import parse_alerts_config  # noqa: E402
from pipeline.calibrate import CalibrationWarning  # noqa: E402
from pipeline.datasets import synthetic_ekg, synthetic_temperature  # noqa: E402
from pipeline.influx import Influx, InfluxSettings  # noqa: E402
from pipeline.influxd import LocalInfluxd  # noqa: E402
from pipeline.stream import Stream  # noqa: E402
from pipeline.stream_config import OutputConfig, SeriesConfig, StreamConfig  # noqa: E402
from pipeline.train import train  # noqa: E402

RATE = 360
T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
S = 10**9
SENSOR_PERIOD = 2 * S
HOOK_ENV = "BENCH_ALERT_WEBHOOK_URL"
CHUNK = 20  # samples per follow-mode write (40 s of data), one spike in each
WRITE_CHUNK = 1_000_000


def grid(k0: int, n: int) -> np.ndarray:
    """Exact integer-ns timestamps of 360 Hz samples k0..k0+n-1."""
    k = np.arange(k0, k0 + n, dtype=np.int64)
    return T0 + (k * S + RATE // 2) // RATE


HOOK_SERVER = r"""
import http.server, json, sys, threading, time
log = open(sys.argv[1], "a", buffering=1)
lock = threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        t = time.time()
        with lock:
            log.write(json.dumps({"t": t, "kind": body["kind"], "time_ns": body["time_ns"]})
                      + "\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
srv.daemon_threads = True
print(srv.server_address[1], flush=True)
srv.serve_forever()
"""


class Hook:
    """A loopback webhook receiver in its own process (as a real receiver would be: it must not
    take this process's CPU or GIL); it logs the arrival (``time.time()``) of every POST."""

    def __init__(self, root: Path):
        self.path = root / "hook.jsonl"
        self.path.touch()
        self.proc = subprocess.Popen([sys.executable, "-c", HOOK_SERVER, str(self.path)],
                                     stdout=subprocess.PIPE, text=True)
        self.url = f"http://127.0.0.1:{int(self.proc.stdout.readline())}/alerts"
        self.seen = 0

    def got(self) -> list[tuple[float, dict]]:
        """What arrived since the last :meth:`take` (complete lines only)."""
        lines = self.path.read_text().splitlines()[self.seen:]
        return [(d["t"], d) for d in map(json.loads, lines)]

    def take(self) -> list[tuple[float, dict]]:
        got = self.got()
        self.seen += len(got)
        return got

    def close(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.proc.stdout.close()


def alerts_cfg(history_db: str, max_per_minute: int = 5):
    return parse_alerts_config({"max_per_minute": max_per_minute, "destination": [
        {"type": "webhook", "url_env": HOOK_ENV},
        {"type": "chronograf", "db": history_db}]})


def timed_backfill(stream: Stream, start_ns: int, end_ns: int) -> dict:
    """Run the backfill; wall and CPU seconds, and the seconds the scoring thread spent inside
    the alert manager (``feed`` + ``commit``), measured by wrapping its two methods."""
    spent = [0.0]
    m = stream.alerts
    if m is not None:
        def wrap(fn):
            def inner(*a, **k):
                t = time.perf_counter()
                try:
                    return fn(*a, **k)
                finally:
                    spent[0] += time.perf_counter() - t
            return inner

        m.feed, m.commit = wrap(m.feed), wrap(m.commit)
    c0, t0 = time.process_time(), time.perf_counter()
    totals = stream.backfill(start_ns, end_ns, resume=False)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    t1 = time.perf_counter()
    stream.close(drain_s=600)
    return {"totals": totals, "seconds": dt, "cpu": cpu, "in_alerts": spent[0],
            "drain": time.perf_counter() - t1}


class Bench:
    def __init__(self, args, root: Path, srv: LocalInfluxd):
        self.args = args
        self.root = root
        self.settings = InfluxSettings(host="127.0.0.1", port=srv.http_port, timeout=60)
        self.ix = Influx(self.settings)
        self.n = 0
        self.hook = Hook(root)
        os.environ[HOOK_ENV] = self.hook.url

    def fresh(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}_{self.n}"

    # -- 1: backfill with and without alerts ----------------------------------
    def ekg(self, n: int) -> str:
        data, _ = synthetic_ekg(duration_s=300, normal_s=180, seed=208)
        tile = data["value"].to_numpy(np.float64)
        self.ix.create_database("ekg")
        t0 = time.perf_counter()
        for k0 in range(0, n, WRITE_CHUNK):
            m = min(WRITE_CHUNK, n - k0)
            self.ix.write_series("ekg", "ekg", grid(k0, m),
                                 {"value": tile[np.arange(k0, k0 + m) % len(tile)]},
                                 {"source": "synthetic"})
        print(f"source: {n:,} EKG samples ({n / RATE / 60:.1f} min at {RATE} Hz) written in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
        tr, va = 150 * RATE, 180 * RATE
        t, v = grid(0, va), tile[:va]
        path = str(self.root / "ekg.npz")
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CalibrationWarning)
            res = train(t[:tr], v[:tr], t[tr:], v[tr:], out=path)
        print(f"model: {', '.join(d.label for d in res.detectors if d.enabled_)} "
              f"({time.perf_counter() - t0:.1f} s to train)", flush=True)
        return path

    def backfill(self, model_path: str, n: int, alerts: bool) -> dict:
        out_db = self.fresh("err")
        s = SeriesConfig(name="ekg", db="ekg", measurement="ekg", tags={"source": "synthetic"},
                         sample_period_ns=S / RATE, model=model_path)
        cfg = StreamConfig(series=[s], output=OutputConfig(db=out_db),
                           checkpoint_dir=str(self.root / self.fresh("ckpt")),
                           batch_samples=self.args.batch, log_every=1e9)
        hist = self.fresh("chronograf") if alerts else None
        if alerts:
            cfg.alerts = alerts_cfg(hist)
        r = timed_backfill(Stream(cfg, Influx(self.settings)), T0, int(grid(n, 1)[0]))
        totals = r["totals"]
        if totals["samples"] != n:
            raise RuntimeError(f"backfill scored {totals['samples']:,} samples, expected {n:,}")
        got = self.hook.take()
        out = dict(r, rate=n / r["seconds"], notes=totals.get("notifications", 0),
                   posts=len(got))
        if alerts:
            out["history"] = self.ix.count(hist, "alerts", "value")
            self.ix.drop_database(hist)
        self.ix.drop_database(out_db)
        return out

    def fleet(self, n_sensors: int, n: int, every: int, seed: int = 3) -> str:
        """``n_sensors`` sensors, ``n`` samples each at 2 s, a spike every ``every`` samples
        (at a random offset per sensor): a flood of alerts, most of them suppressed."""
        rng = np.random.default_rng(seed)
        db = self.fresh("fleet")
        self.ix.create_database(db)
        t = T0 + np.arange(n, dtype=np.int64) * SENSOR_PERIOD
        for i in range(n_sensors):
            v = np.round(21 + 0.1 * rng.standard_normal(n), 3)
            v[int(rng.integers(20, every))::every] += 4.0
            self.ix.write_series(db, "temp", t, {"value": v}, {"sensor": f"s{i:04d}"})
        return db

    def backfill_fleet(self, model_path: str, db: str, n: int, alerts: bool) -> dict:
        out_db = self.fresh("err")
        s = SeriesConfig(name="temp", db=db, measurement="temp", fan_out="sensor",
                         model=model_path)
        cfg = StreamConfig(series=[s], output=OutputConfig(db=out_db),
                           checkpoint_dir=str(self.root / self.fresh("ckpt")),
                           batch_samples=self.args.batch, log_every=1e9)
        hist = self.fresh("chronograf") if alerts else None
        if alerts:
            cfg.alerts = alerts_cfg(hist)
        r = timed_backfill(Stream(cfg, Influx(self.settings)), T0, T0 + n * SENSOR_PERIOD)
        totals = r["totals"]
        got = self.hook.take()
        out = dict(r, rate=totals["samples"] / r["seconds"],
                   notes=totals.get("notifications", 0), posts=len(got))
        if alerts:
            out["history"] = self.ix.count(hist, "alerts", "value")
            self.ix.drop_database(hist)
        self.ix.drop_database(out_db)
        return out

    # -- 2: follow latency ------------------------------------------------------
    def sensor_model(self) -> str:
        temp = synthetic_temperature(hours=6, n_sensors=1, seed=11)
        v = temp["value"].to_numpy()
        t = T0 + np.round(temp["time_s"].to_numpy() * S).astype(np.int64)
        half = len(v) // 2
        path = str(self.root / "sensor.npz")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CalibrationWarning)
            train(t[:half], v[:half], t[half:], v[half:], detectors=["zscore", "drift", "flatline"],
                  out=path)
        return path

    def follow_latency(self, model_path: str, poll: float, n_alerts: int, seed: int = 1) -> dict:
        db, out_db = self.fresh("sensors"), self.fresh("err")
        hist = self.fresh("chronograf")
        self.ix.create_database(db)
        rng = np.random.default_rng(seed)
        k = 0

        def chunk(n, spike_at=None):
            nonlocal k
            t = T0 + np.arange(k, k + n, dtype=np.int64) * SENSOR_PERIOD
            v = np.round(21 + 0.1 * rng.standard_normal(n), 3)
            if spike_at is not None:
                v[spike_at] += 4.0
            k += n
            return t, v

        t, v = chunk(100)  # a normal start: the rolling baselines are warm
        self.ix.write_series(db, "temp", t, {"value": v}, {"sensor": "s00"})
        s = SeriesConfig(name="temp", db=db, measurement="temp", model=model_path)
        cfg = StreamConfig(series=[s], output=OutputConfig(db=out_db), poll_interval=poll,
                           checkpoint_dir=str(self.root / self.fresh("ckpt")), log_every=1e9)
        cfg.alerts = alerts_cfg(hist, max_per_minute=10_000)
        stream = Stream(cfg, Influx(self.settings))
        th = threading.Thread(target=stream.follow, kwargs={"start_ns": T0}, daemon=True)
        th.start()
        time.sleep(2 * poll + 0.5)
        self.hook.take()
        writes = {}  # spike time -> (write started, write returned)
        try:
            for _ in range(n_alerts):
                t, v = chunk(CHUNK, spike_at=CHUNK // 2)
                w0 = time.time()
                self.ix.write_series(db, "temp", t, {"value": v}, {"sensor": "s00"})
                writes[int(t[CHUNK // 2])] = (w0, time.time())
                time.sleep(rng.uniform(0.5, 1.5) * poll + 0.05)
            deadline = time.time() + 10 + 2 * poll
            while time.time() < deadline:
                n = sum(b["kind"] == "alert" for _, b in self.hook.got())
                if n >= n_alerts:
                    break
                time.sleep(0.05)
        finally:
            stream.stop.set()
            th.join(30)
            stream.close(drain_s=10)
        lat, write_ms = [], []
        for arrived, b in self.hook.take():
            if b["kind"] == "alert" and b["time_ns"] in writes:
                w0, w1 = writes[b["time_ns"]]
                lat.append(1000 * (arrived - w1))
                write_ms.append(1000 * (w1 - w0))
        self.ix.drop_database(db)
        self.ix.drop_database(out_db)
        self.ix.drop_database(hist)
        return {"poll": poll, "n": n_alerts, "lat": np.array(lat), "write_ms": np.array(write_ms)}


def pct(a, q) -> float:
    return float(np.percentile(a, q)) if len(a) else float("nan")


def report(title, plain, alert, args) -> None:
    r0 = float(np.median([x["rate"] for x in plain]))
    r1 = float(np.median([x["rate"] for x in alert]))
    a = alert[0]
    print()
    print(f"{title}, batch {args.batch:,} (median of {args.repeats}):")
    print(f"  without alerts: {r0:>12,.0f} samples/s  ("
          + ", ".join(f"{x['seconds']:.2f}" for x in plain) + " s)")
    print(f"  with alerts:    {r1:>12,.0f} samples/s  ("
          + ", ".join(f"{x['seconds']:.2f}" for x in alert) + " s)")
    print(f"  notifications per run: {a['notes']:,} (webhook POSTs {a['posts']:,}, history "
          f"points {a['history']:,}); senders done "
          + ", ".join(f"{x['drain']:.2f}" for x in alert) + " s after the backfill returned")
    ratio = r1 / r0
    pairs = ", ".join(f"{100 * p_['seconds'] / a_['seconds']:.0f} %"
                      for p_, a_ in zip(plain, alert, strict=True))
    print(f"  with / without: {100 * ratio:.0f} % (target >= 90 %): "
          f"{'met' if ratio >= 0.9 else 'NOT met'}; same-repeat pairs: {pairs}")
    c0 = float(np.median([x["cpu"] for x in plain]))
    c1 = float(np.median([x["cpu"] for x in alert]))
    share = float(np.median([x["in_alerts"] / x["seconds"] for x in alert]))
    spent = ", ".join(f"{x['in_alerts']:.2f}" for x in alert)
    print(f"  CPU seconds of this process (steadier than wall time on a shared machine): "
          f"{c0:.2f} without, {c1:.2f} with ({100 * (c1 / c0 - 1):+.1f} %); the scoring thread "
          f"spent {100 * share:.1f} % of the backfill inside the alert manager (feed + commit: "
          f"{spent} s)", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=1_000_000,
                   help="EKG samples backfilled (default %(default)s)")
    p.add_argument("--repeats", type=int, default=5,
                   help="backfills with and without alerts, interleaved (default %(default)s)")
    p.add_argument("--batch", type=int, default=200_000, help="stream batch_samples")
    p.add_argument("--alerts", type=int, default=60,
                   help="alerts per follow-mode latency run (default %(default)s)")
    p.add_argument("--polls", type=float, nargs="+", default=[1.0, 0.25],
                   help="poll intervals of the latency runs, s (default 1.0 0.25)")
    p.add_argument("--fleet", type=int, default=200,
                   help="sensors of the flood backfill (0: skip it; default %(default)s)")
    p.add_argument("--skip-backfill", action="store_true")
    p.add_argument("--skip-latency", action="store_true")
    args = p.parse_args(argv)
    if args.samples < 180 * RATE:
        p.error(f"--samples must be >= {180 * RATE} (training and calibration)")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    root = Path(tempfile.mkdtemp(prefix="bench_alerts_", dir="/tmp"))
    srv = LocalInfluxd(root / "influxd")
    bench = None
    try:
        srv.start()
        bench = Bench(args, root, srv)
        print(f"machine: {os.cpu_count()} CPU(s), python {platform.python_version()}, "
              f"numpy {np.__version__}, influxd {bench.ix.ping()}", flush=True)
        return run(args, bench)
    finally:
        if bench is not None:
            bench.hook.close()
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)


def run(args, bench: Bench) -> int:
    n = args.samples
    if not args.skip_backfill:
        model = bench.ekg(n)
        bench.backfill(model, n, alerts=True)  # warm-up (imports, caches), not counted
        plain, alert = [], []
        for rep in range(args.repeats):
            print(f"repeat {rep + 1}/{args.repeats}: backfill with and without [alerts] "
                  "(alternating which goes first)...", flush=True)
            for with_alerts in (rep % 2 == 1, rep % 2 == 0):  # alternate which goes first
                (alert if with_alerts else plain).append(
                    bench.backfill(model, n, alerts=with_alerts))
        report(f"EKG backfill, {n:,} samples at {RATE} Hz", plain, alert, args)
    if not args.skip_latency or args.fleet:
        smodel = bench.sensor_model()
    if args.fleet:
        n_f = 1800  # 1 h at 2 s per sensor
        db = bench.fleet(args.fleet, n_f, every=150)
        bench.backfill_fleet(smodel, db, n_f, alerts=True)  # warm-up, not counted
        plain, alert = [], []
        for rep in range(args.repeats):
            print(f"repeat {rep + 1}/{args.repeats}: fleet backfill with and without "
                  "[alerts]...", flush=True)
            for with_alerts in (rep % 2 == 1, rep % 2 == 0):
                (alert if with_alerts else plain).append(
                    bench.backfill_fleet(smodel, db, n_f, alerts=with_alerts))
        report(f"Fleet backfill, {args.fleet} sensors x {n_f:,} samples (a spike every 5 min "
               "each: a flood)", plain, alert, args)
    if not args.skip_latency:
        model = smodel
        rows = []
        for poll in args.polls:
            print(f"\nfollow latency: poll_interval {poll} s, {args.alerts} alerts...", flush=True)
            rows.append(bench.follow_latency(model, poll, args.alerts))
        print()
        print("Follow mode, source write returned -> webhook got the ALERT (ms):")
        print(f"{'poll s':>7}{'alerts':>8}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}{'target':>8}"
              f"{'':>10}{'write p50':>11}")
        for x in rows:
            tgt = 1000 * x["poll"] + 300
            ok = "met" if pct(x["lat"], 99) <= tgt and len(x["lat"]) == x["n"] else "NOT met"
            print(f"{x['poll']:>7.2f}{len(x['lat']):>5}/{x['n']:<3}{pct(x['lat'], 50):>7.0f}"
                  f"{pct(x['lat'], 90):>8.0f}{pct(x['lat'], 99):>8.0f}{np.max(x['lat']):>8.0f}"
                  f"{tgt:>8.0f}{ok:>10}{pct(x['write_ms'], 50):>11.1f}")
    print("\n(measured on a shared machine: compare ratios, not seconds from other runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
