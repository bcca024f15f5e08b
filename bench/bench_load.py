"""Loading an a02-sized EKG CSV into InfluxDB, against a raw write of the same points.

Run ``python bench/bench_load.py`` (not a test).  It starts its own
:class:`~pipeline.influxd.LocalInfluxd` in a temporary directory under /tmp
(stopped and deleted at the end, also on errors), and makes, offline, a CSV
the size of PhysioNet Apnea-ECG record a02 (``--samples`` 3,174,000 = 529 min at
100 Hz) in the layout ``python -m pipeline.datasets fetch a02`` writes: synthetic
EKG (:func:`pipeline.datasets.synthetic_ekg` at 100 Hz, tiled), exact times
from :func:`pipeline.annotations.format_seconds`.  Then, ``--repeats`` times,
interleaved (in a rotating order), each into a fresh database:

1. ``load_csv``: the library path of ``python -m pipeline.load`` (read and
   validate the whole CSV, then ``write_loaded``: encode a batch while the previous one is written), timed as a whole and
   in its two parts (read; encode + write);
2. the raw bound: ``Influx.write_lines`` of the same points, encoded
   beforehand with ``encode_lines`` (not timed), in the same batches.

It prints samples/s and the ratio raw / load (best of the repeats), checks
that both databases hold every point, and with ``--profile`` prints where the
load spends its time.  The machine is shared and noisy: compare the ratio, not
absolute seconds from different runs.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.annotations import format_seconds, sample_times_ns  # noqa: E402
from pipeline.datasets import synthetic_ekg  # noqa: E402
from pipeline.influx import Influx, InfluxSettings, encode_lines  # noqa: E402
from pipeline.influxd import LocalInfluxd  # noqa: E402
from pipeline.load import load_csv, read_csv_series, write_loaded  # noqa: E402

RATE = 100
A02_SAMPLES = 3_174_000  # 529 minutes at 100 Hz
START = "2026-01-01T00:00:00Z"
TAGS = {"source": "a02"}


def make_csv(path: Path, n: int) -> float:
    """Write ``n`` samples of 100 Hz synthetic EKG as ``time_s,value``; return the seconds."""
    t0 = time.perf_counter()
    tile, _ = synthetic_ekg(duration_s=300, rate=RATE, normal_s=180, seed=2)
    values = tile["value"].to_numpy()[np.arange(n) % len(tile)]
    times = format_seconds(sample_times_ns(n, RATE))
    pd.DataFrame({"time_s": times, "value": values}).to_csv(path, index=False)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=A02_SAMPLES,
                   help="samples in the CSV (default %(default)s, record a02)")
    p.add_argument("--repeats", type=int, default=3, help="best of this many (default %(default)s)")
    p.add_argument("--profile", action="store_true", help="also profile one load (cProfile)")
    args = p.parse_args(argv)
    n = args.samples
    root = Path(tempfile.mkdtemp(prefix="bench_load_", dir="/tmp"))
    srv = LocalInfluxd(root / "influxd")
    try:
        srv.start()
        ix = Influx(InfluxSettings(port=srv.http_port, timeout=120))
        print(f"machine: {os.cpu_count()} CPU(s), python {platform.python_version()}, "
              f"numpy {np.__version__}, pandas {pd.__version__}, influxd {ix.ping()}")
        path = root / "a02.csv"
        t_csv = make_csv(path, n)
        print(f"CSV: {n:,} samples ({n / RATE / 3600:.2f} h at {RATE} Hz), "
              f"{path.stat().st_size / 2**20:.0f} MiB, written in {t_csv:.1f} s", flush=True)
        return run(args, ix, path, n)
    finally:
        srv.stop()
        shutil.rmtree(root, ignore_errors=True)


def run(args, ix: Influx, path: Path, n: int) -> int:
    series = read_csv_series(path, start=START)
    lines = encode_lines("ekg", series.times_ns, {"value": series.values}, TAGS)
    best = {"load": np.inf, "read": np.inf, "write": np.inf, "raw": np.inf}

    def load(db):
        t0 = time.perf_counter()
        _, written = load_csv(path, db, "ekg", "value", TAGS, START, influx=ix)
        best["load"] = min(best["load"], time.perf_counter() - t0)
        return written

    def raw(db):
        ix.create_database(db)
        t0 = time.perf_counter()
        written = ix.write_lines(db, lines)
        best["raw"] = min(best["raw"], time.perf_counter() - t0)
        return written

    def parts(db):
        t0 = time.perf_counter()
        s = read_csv_series(path, start=START)
        t1 = time.perf_counter()
        written = write_loaded(ix, db, "ekg", s, "value", TAGS)
        t2 = time.perf_counter()
        best["read"], best["write"] = min(best["read"], t1 - t0), min(best["write"], t2 - t1)
        return written

    order = [load, raw, parts]
    for i in range(args.repeats):
        k = i % len(order)  # rotate the order, so that no step always runs first
        for step in order[k:] + order[:k]:
            db = f"{step.__name__}_{i}"
            written = step(db)
            count = ix.count(db, "ekg", "value", TAGS)
            ix.drop_database(db)
            if written != n or count != n:
                print(f"ERROR: {step.__name__} wrote {written} points, {count} counted, "
                      f"expected {n}")
                return 1
        print(f"  run {i + 1}: best so far load {best['load']:.1f} s, raw {best['raw']:.1f} s",
              flush=True)
    print(f"\n{'what':<46}{'seconds':>9}{'samples/s':>14}")
    rows = [("load_csv (python -m pipeline.load's path)", best["load"]),
            ("  read + validate the CSV", best["read"]),
            ("  encode + write (write_loaded)", best["write"]),
            ("raw Influx.write_lines, lines encoded before", best["raw"])]
    for what, sec in rows:
        print(f"{what:<46}{sec:>9.2f}{n / sec:>14,.0f}")
    print(f"\nload speed = {best['raw'] / best['load']:.0%} of the raw write "
          f"(load takes {best['load'] / best['raw']:.2f}x the raw write's time); "
          f"target 'seconds, not minutes': {'met' if best['load'] < 60 else 'NOT met'}")
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        load_csv(path, "profile", "ekg", "value", TAGS, START, influx=ix)
        prof.disable()
        ix.drop_database("profile")
        print("\nprofile of one load_csv (top 12 by own time):")
        pstats.Stats(prof).sort_stats("tottime").print_stats(12)
    return 0


if __name__ == "__main__":
    sys.exit(main())
