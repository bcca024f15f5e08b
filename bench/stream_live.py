"""Live parts of ``bench/bench_stream.py``: follow-mode latency and memory over a long backfill.

Imported by ``bench_stream.py`` (sections 6 and 7 of its docstring).
"""

from __future__ import annotations

import gzip
import http.server
import shutil
import threading
import time

import numpy as np
from stream_common import (
    CHUNK,
    CHUNK_MS,
    MEAS,
    OUT,
    SLIDE,
    TAGS,
    Bench,
    L,
    Tiles,
    grid,
    rss_mb,
    stream_cfg,
    write_source,
)

from pipeline.influx import Influx
from pipeline.stream import Stream


# --------------------------------------------------------------------------
# 6: follow-mode latency
# --------------------------------------------------------------------------
class _Receiver(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802 - http.server's naming
        now = time.perf_counter_ns()
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.sink.append((now, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def parse_arrivals(sink, measurement: str, field: str | None = None) -> dict[int, int]:
    """First arrival (perf_counter ns) of each point of ``measurement``, by timestamp; with
    ``field``, only the lines that carry it (one detector's points of a shared measurement)."""
    first: dict[int, int] = {}
    prefix = measurement.encode() + b","
    needle = None if field is None else (field + "=").encode()
    for now, body in sink:
        for line in body.splitlines():
            if line.startswith(prefix) and (needle is None or needle in line):
                ts = int(line.rsplit(b" ", 1)[1])
                if ts not in first:
                    first[ts] = now
    return first


def follow_latency(bench: Bench, model_path, tiles: Tiles, poll: float, seconds: float):
    ix = bench.ix
    src = bench.fresh_db("live")
    err = bench.fresh_db("liveerr")
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    srv.daemon_threads = True
    srv.sink = []
    th_srv = threading.Thread(target=srv.serve_forever, daemon=True)
    th_srv.start()
    ix.query_json(f'CREATE SUBSCRIPTION "bench" ON "{err}"."autogen" DESTINATIONS ALL '
                  f"'http://127.0.0.1:{srv.server_address[1]}'")
    n_chunks = int(round(seconds * 1000 / CHUNK_MS))
    n = n_chunks * CHUNK
    t_live0 = time.time_ns() + 200_000_000
    times = grid(0, n, t_live0)
    values = tiles.values(0, n)
    written = np.zeros(n_chunks, np.int64)  # perf_counter ns when each chunk's write returned
    stop = threading.Event()
    stream = Stream(stream_cfg(model_path, err, bench.ckpt(), bench.args.batch, src, poll),
                    Influx(bench.settings), stop)
    out: dict = {}

    def follow():
        try:
            out.update(stream.follow(t_live0, resume=False))
        except BaseException as e:  # re-raised below, in the main thread
            out["error"] = e

    th = threading.Thread(target=follow, daemon=True)
    th.start()
    wix = Influx(bench.settings)
    wix.create_database(src)
    try:
        for j in range(n_chunks):
            sl = slice(j * CHUNK, (j + 1) * CHUNK)
            delay = (int(times[sl.stop - 1]) - time.time_ns()) / 1e9
            if delay > 0:
                time.sleep(delay)  # a sample is written once its time has come
            wix.write_series(src, MEAS, times[sl], {"value": values[sl]}, TAGS)
            written[j] = time.perf_counter_ns()
        time.sleep(poll + 1.0)  # let the last polls and deliveries land
    finally:
        stop.set()
        th.join(60)
        srv.shutdown()
        srv.server_close()
    if "error" in out:
        raise RuntimeError("Stream.follow failed") from out["error"]
    if not srv.sink:
        raise RuntimeError("the subscription delivered nothing: is [subscriber] enabled in the "
                           "influxd config?")
    z_arr = parse_arrivals(srv.sink, OUT.zscore_measurement)
    # the shape's segments (the baseline-step and noise points in the same measurement are
    # stamped half a second before their last sample: their wait for data is not the stream's)
    seg_arr = parse_arrivals(srv.sink, OUT.measurement, "max_error")
    k = np.searchsorted(times, np.fromiter(z_arr, np.int64, len(z_arr)))
    lat_z = (np.fromiter(z_arr.values(), np.int64, len(z_arr)) - written[k // CHUNK]) / 1e6
    seg_t = np.fromiter(seg_arr, np.int64, len(seg_arr))
    last = np.searchsorted(times, seg_t) + (L - L // 2 - 1)  # a segment's last sample
    lat_s = (np.fromiter(seg_arr.values(), np.int64, len(seg_arr)) - written[last // CHUNK]) / 1e6
    n_seg_expected = (n - L) // SLIDE + 1
    ix.query_json(f'DROP SUBSCRIPTION "bench" ON "{err}"."autogen"')
    for db in (src, err):
        ix.drop_database(db)
    return {"poll": poll, "n": n, "n_z": len(z_arr), "lat_z": lat_z, "n_seg": len(seg_arr),
            "n_seg_expected": n_seg_expected, "lat_s": lat_s, "posts": len(srv.sink),
            "totals": out}


# --------------------------------------------------------------------------
# 7: memory over a long backfill
# --------------------------------------------------------------------------
class RssSampler(threading.Thread):
    def __init__(self, interval=0.5):
        super().__init__(daemon=True)
        self.interval = interval
        self.samples: list[tuple[float, int, float]] = []  # (t, samples done, RSS MB)
        self.stream = None
        self.halt = threading.Event()

    def run(self):
        t0 = time.perf_counter()
        while not self.halt.is_set():
            done = self.stream.totals["samples"] if self.stream is not None else 0
            self.samples.append((time.perf_counter() - t0, done, rss_mb()))
            self.halt.wait(self.interval)


def memory_run(bench: Bench, model_path, tiles: Tiles, n: int, label: str):
    db = bench.fresh_db("mem")
    free_gb = shutil.disk_usage(bench.root).free / 2**30
    print(f"memory test: writing {n:,} samples ({free_gb:.0f} GiB free in {bench.root})...",
          flush=True)
    t_w = write_source(bench.ix, db, tiles, n)
    print(f"  written in {t_w:.1f} s ({n / t_w:,.0f} points/s); backfilling (model {label})...",
          flush=True)
    rss0 = rss_mb()
    sampler = RssSampler()
    sampler.start()
    try:
        dt, totals = bench.backfill(model_path, n, db=db, sampler=sampler)
    finally:
        sampler.halt.set()
        sampler.join()
    bench.ix.drop_database(db)
    s = np.array(sampler.samples)
    prog = s[:, 1] / n
    marks = {}
    for p in (0.10, 0.25, 0.50, 0.75, 1.00):
        i = int(np.argmax(prog >= p - 1e-9)) if (prog >= p - 1e-9).any() else len(s) - 1
        marks[p] = s[i, 2]
    warm = prog >= 0.10
    slope = float(np.polyfit(s[warm, 1] / 1e6, s[warm, 2], 1)[0]) if warm.sum() > 2 else 0.0
    return {"n": n, "write_s": t_w, "seconds": dt, "rate": n / dt, "rss0": rss0, "marks": marks,
            "max": float(s[:, 2].max()), "slope_mb_per_m": slope, "totals": totals,
            "n_rss": len(s)}


