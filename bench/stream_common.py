"""Shared parts of ``bench/bench_stream.py``: the data, the models, and the timed runs.

Not a test and not a script: ``bench_stream.py`` imports it (the ``bench``
directory is on ``sys.path`` when a script there runs).  Everything here
talks to the throwaway influxd the script started.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import influxdb
import numpy as np
from sklearn.cluster import KMeans

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.datasets import synthetic_ekg  # noqa: E402
from pipeline.influx import WRITE_PARALLEL, Influx, InfluxSettings, encode_lines  # noqa: E402
from pipeline.influxd import LocalInfluxd  # noqa: E402
from pipeline.model_io import load_model  # noqa: E402
from pipeline.stream import Stream  # noqa: E402
from pipeline.stream_config import OutputConfig, SeriesConfig, StreamConfig  # noqa: E402

RATE = 360
PERIOD = 1e9 / RATE
T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
TAGS = {"source": "synthetic"}
SRC_DB, MEAS = "ekg", "ekg"
OUT = OutputConfig()  # the stream's default output names (ERROR, zscore)
TILE_S, NORMAL_S = 300.0, 180.0  # one synthetic_ekg tile: normal for 180 s, anomalies after
TRAIN_S, VAL_S = 150, 30
L, SLIDE = 32, 16
CHUNK_MS = 100  # follow-mode writer: one write every 100 ms
CHUNK = RATE * CHUNK_MS // 1000
WRITE_CHUNK = 1_000_000  # samples generated and written at a time
DRIFT_HALFLIFE_S = 5.0  # 1,800 samples: warms up within the 30 s validation range
FORCE_ON = {"max_useful": 1e9}  # calibration cannot turn the detector off on the EKG
MODELS = {  # name: (what, detectors, params)
    "shape": ("shape only", ("shape",), {}),
    "shape+z": ("shape + z-score", ("shape", "zscore"), {"zscore": FORCE_ON}),
    "all": ("every detector", ("shape", "flatline", "step", "noise", "zscore", "drift"),
            {"zscore": FORCE_ON, "drift": dict(FORCE_ON, halflife_s=DRIFT_HALFLIFE_S)}),
}
LIVE_MODEL = "all"  # follow latency and memory: the heaviest model
TARGET_ALL = 80  # % of the shape+z backfill rate that every detector must keep (the issue)
BASELINE_OUTPUT = {"diagnostics": True, "precision": "float64"}
"""What the stream wrote when the issue was filed: the z-score's streak and zscore on every
point, every float64 digit."""
CASES = {  # backfill case: (model, [output] settings)
    "shape": ("shape", {}),
    "shape+z": ("shape+z", BASELINE_OUTPUT),  # the baseline: the "today's" output
    "shape+z new": ("shape+z", {}),  # like for like: the same model at the new default output
    "all": ("all", {}),  # every detector at the new default output
}


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------
def grid(k0: int, n: int, t0: int = T0) -> np.ndarray:
    """Exact integer-ns timestamps of samples k0..k0+n-1 (round(k * 1e9 / 360); no ties exist)."""
    k = np.arange(k0, k0 + n, dtype=np.int64)
    return t0 + (k * 10**9 + RATE // 2) // RATE


class Tiles:
    """Synthetic EKG tiled to any length: sample k is ``tile[k % len(tile)]``."""

    def __init__(self, seed: int = 208):
        data, _ = synthetic_ekg(duration_s=TILE_S, normal_s=NORMAL_S, seed=seed)
        self.tile = data["value"].to_numpy(np.float64)

    def values(self, k0: int, n: int) -> np.ndarray:
        return self.tile[np.arange(k0, k0 + n) % len(self.tile)]


def write_source(ix: Influx, db: str, tiles: Tiles, n: int) -> float:
    """Write n samples with Influx.write_series, a chunk at a time; return the seconds."""
    ix.create_database(db)
    t0 = time.perf_counter()
    for k0 in range(0, n, WRITE_CHUNK):
        m = min(WRITE_CHUNK, n - k0)
        ix.write_series(db, MEAS, grid(k0, m), {"value": tiles.values(k0, m)}, TAGS)
    return time.perf_counter() - t0


def train_models(root: Path, times, values) -> dict:
    """Train every model of MODELS; refuse to go on if calibration turned a detector off."""
    from pipeline.train import train  # noqa: PLC0415 - keeps the import cost out of the header

    tr, va = TRAIN_S * RATE, (TRAIN_S + VAL_S) * RATE
    paths = {}
    for name, (_, dets, params) in MODELS.items():
        path = str(root / f"ekg_{name.replace('+', '_')}.npz")
        t0 = time.perf_counter()
        res = train(times[:tr], values[:tr], times[tr:va], values[tr:va], out=path,
                    detectors=dets, params=params)
        on = [d.name for d in res.detectors if d.enabled_]
        if on != list(dets):
            raise RuntimeError(f"model {name}: calibration left {on} on, asked for {list(dets)}:\n"
                               + res.summary())
        print(f"model {name}: {time.perf_counter() - t0:.1f} s; " + "; ".join(
            f"{d.name} {d.threshold_:.4g}" + (f" (streak {d.streak_})" if hasattr(d, "streak_")
                                              else "") for d in res.detectors), flush=True)
        paths[name] = path
    return paths


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process so far, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(a, q) -> float:
    return float(np.percentile(a, q)) if len(a) else float("nan")


def mx(a) -> float:
    return float(np.max(a)) if len(a) else float("nan")


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def stream_cfg(model_path, out_db, ckpt, batch: int, db=SRC_DB, poll=1.0, output=None):
    s = SeriesConfig(name="ekg", db=db, measurement=MEAS, field="value", tags=dict(TAGS),
                     sample_period_ns=PERIOD, model=model_path)
    return StreamConfig(series=[s], output=OutputConfig(db=out_db, **(output or {})),
                        checkpoint_dir=str(ckpt), poll_interval=poll, batch_samples=batch,
                        log_every=1e9)


class Bench:
    def __init__(self, args, root: Path, srv: LocalInfluxd):
        self.args = args
        self.root = root
        self.srv = srv
        self.settings = InfluxSettings(host="127.0.0.1", port=srv.http_port, timeout=60)
        self.ix = Influx(self.settings)
        self.n_db = 0

    def fresh_db(self, prefix: str) -> str:
        self.n_db += 1
        name = f"{prefix}_{self.n_db}"
        self.ix.create_database(name)
        return name

    def ckpt(self) -> Path:
        self.n_db += 1
        return self.root / f"ckpt_{self.n_db}"

    def cpu(self) -> tuple[float, float]:
        """CPU seconds so far of this process (all threads) and of influxd."""
        return time.process_time(), proc_cpu(self.srv.proc.pid)

    # -- 1-3: the stream's backfill ---------------------------------------------
    def backfill(self, model_path, n: int, db=SRC_DB, sampler=None, profile=None, output=None):
        out_db = self.fresh_db("err")
        stream = Stream(stream_cfg(model_path, out_db, self.ckpt(), self.args.batch, db,
                                   output=output), Influx(self.settings))
        if sampler is not None:
            sampler.stream = stream
        c0 = self.cpu()
        t0 = time.perf_counter()
        if profile is not None:
            profile.enable()
        try:
            totals = stream.backfill(T0, int(grid(n, 1)[0]), resume=False)
        finally:
            if profile is not None:
                profile.disable()
        dt = time.perf_counter() - t0
        c1 = self.cpu()
        if totals["samples"] != n:
            raise RuntimeError(f"backfill scored {totals['samples']:,} samples, expected {n:,}")
        self.ix.drop_database(out_db)
        return dt, dict(totals, cpu_py=c1[0] - c0[0], cpu_db=c1[1] - c0[1])

    # -- 4: raw InfluxDB bound ------------------------------------------------
    def raw_slices(self, model_path, values, times, output=None):
        """Per read slice, the exact points the stream writes with this model (and these
        ``[output]`` settings: ``diagnostics``, ``precision``).

        The model's enabled detectors are fed slice by slice, as the stream
        feeds them (computed outside any timing): segment detectors' points go
        to ``ERROR``, the per-sample detectors' fields are merged into one
        ``zscore`` point per sample.
        """
        cfg = OutputConfig(**(output or {}))
        single = cfg.precision == "float32"
        lm = load_model(model_path)
        states = [d.new_state() for d in lm.enabled]
        tags = dict(TAGS, series="ekg", model=lm.version)
        step = int(PERIOD * self.args.batch)
        end = int(times[-1]) + 1
        slices = []
        for a in range(T0, end, step):
            b = min(a + step, end)
            i0, i1 = np.searchsorted(times, [a, b])
            t, v = times[i0:i1], values[i0:i1]
            out, per_sample = [], {}
            for st in states:
                o = st.update_many(t, v)
                if o.detector.per_sample:
                    per_sample.update(o.fields(cfg.diagnostics))
                elif len(o):
                    out.append((OUT.measurement, o.times, o.fields(cfg.diagnostics), tags))
            if per_sample:
                out.append((OUT.zscore_measurement, t, per_sample, tags))
            slices.append((a, b, single, out))
        return slices

    def raw(self, slices, mode: str):
        """mode: read | write | both (read a slice, then encode and write its output)."""
        ix = Influx(self.settings)
        out_db = self.fresh_db("raw") if mode != "read" else None
        t_read = t_enc = t_write = 0.0
        n_read = n_written = 0
        c0 = self.cpu()
        t0 = time.perf_counter()
        for a, b, single, out in slices:
            if mode in ("read", "both"):
                t1 = time.perf_counter()
                r = ix.read_field(SRC_DB, MEAS, "value", a, b, TAGS)
                n_read += len(r)
                t_read += time.perf_counter() - t1
            if mode in ("write", "both"):
                t1 = time.perf_counter()
                lines = []
                for meas, t, fields, tags in out:
                    lines += encode_lines(meas, t, fields, tags, single)
                t2 = time.perf_counter()
                n_written += ix.write_lines(out_db, lines, parallel=WRITE_PARALLEL)  # as the stream
                t3 = time.perf_counter()
                t_enc += t2 - t1
                t_write += t3 - t2
        dt = time.perf_counter() - t0
        c1 = self.cpu()
        if out_db:
            self.ix.drop_database(out_db)
        return dt, {"read": t_read, "encode": t_enc, "write": t_write, "n_read": n_read,
                    "n_written": n_written, "cpu_py": c1[0] - c0[0], "cpu_db": c1[1] - c0[1]}

    # -- 5: the tutorial's loop -------------------------------------------------
    def tutorial(self, km: KMeans, window, n_segments: int):
        port = self.settings.port
        errors = np.empty(n_segments)
        t0 = time.perf_counter()
        for i in range(n_segments):
            a, b = grid(i * SLIDE, L + 1)[[0, L]]
            client = influxdb.InfluxDBClient(host="127.0.0.1", port=port, database=SRC_DB)
            rs = client.query(f"SELECT value FROM {MEAS} WHERE time >= {a} AND time < {b}",
                              epoch="ns")
            segment = np.array([p["value"] for p in rs.get_points()])
            windowed = segment * window
            nearest = km.predict(windowed.reshape(1, -1))[0]
            errors[i] = np.max(np.abs(windowed - km.cluster_centers_[nearest]))
        return time.perf_counter() - t0, errors


