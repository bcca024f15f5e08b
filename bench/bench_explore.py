"""How long exploring a long record takes: loading an a02-sized EKG, and plotting one minute of it.

Run ``python bench/bench_explore.py`` (not a test).  It starts its own
:class:`~pipeline.influxd.LocalInfluxd` in a temporary directory (stopped and
deleted at the end, also on errors) and, offline, generates a synthetic EKG
as long as Apnea-ECG record a02 (``--samples``, default 3,000,000 at 100 Hz:
8.3 hours), written as the CSV ``python -m pipeline.datasets fetch a02``
writes (``time_s,value``).  Then it measures:

1. loading it: ``pipeline.load.load_csv`` (read and validate the whole CSV,
   then write), split into read and write, and ``python -m pipeline.load`` in
   a new process (what a user waits for);
2. training a model on 5 minutes and calibrating it on the next 5 (for the
   plots, not a target);
3. plotting one minute in the middle: :func:`pipeline.window.read_window`
   (scores computed from the model: the minute plus a minute of lead-in is
   read) + :func:`pipeline.plot.plot_window` + the PNG, in this process and as
   ``python -m pipeline.plot`` in a new one; then the same minute with scores
   from the error database after ``pipeline.stream`` scored 10 minutes
   around it; and one hour, to see how it grows;
4. each notebook of ``notebooks/``, executed headless with nbclient against
   the same server (kernel start included; skip with ``--no-notebooks``).

It prints the timings; the machine is shared and noisy, so it never fails on
a time.  The target: loading and plotting each take seconds, not minutes.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.datasets import synthetic_ekg  # noqa: E402
from pipeline.influx import Influx, InfluxSettings  # noqa: E402
from pipeline.influxd import LocalInfluxd  # noqa: E402
from pipeline.load import read_csv_series, write_loaded  # noqa: E402
from pipeline.plot import plot_window  # noqa: E402
from pipeline.stream import Stream  # noqa: E402
from pipeline.stream_config import OutputConfig, SeriesConfig, StreamConfig  # noqa: E402
from pipeline.train import train  # noqa: E402
from pipeline.window import read_window  # noqa: E402

START = "2026-01-01T00:00:00Z"
T0 = 1_767_225_600_000_000_000
S = 10**9
TAGS = {"source": "a02like"}


def timed(f, *a, **kw):
    t = time.perf_counter()
    out = f(*a, **kw)
    return out, time.perf_counter() - t


def run(cmd, env) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    dt = time.perf_counter() - t
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed ({r.returncode}): {r.stderr.strip()}")
    return dt


def notebooks(env: dict, tmp: Path) -> list:
    """Execute every notebook (a copy; nothing is saved) against the benchmark's server."""
    import nbformat
    from nbclient import NotebookClient

    rows = []
    saved = dict(os.environ)
    os.environ.update(env, PIPELINE_NOTEBOOK_OUT=str(tmp / "notebooks"))
    try:
        for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
            nb = nbformat.read(path, as_version=4)
            client = NotebookClient(nb, timeout=600, kernel_name="python3",
                                    resources={"metadata": {"path": str(ROOT / "notebooks")}})
            _, dt = timed(client.execute)
            rows.append((f"notebook {path.name}, headless (kernel start included)", dt))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=3_000_000, help="default: %(default)s")
    p.add_argument("--rate", type=int, default=100, help="Hz (default: %(default)s, as a02)")
    p.add_argument("--clusters", type=int, default=150, help="default: %(default)s")
    p.add_argument("--no-notebooks", action="store_true", help="skip timing the notebooks")
    args = p.parse_args(argv)
    n, rate = args.samples, args.rate
    print(f"python {platform.python_version()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}; {n:,} samples at {rate} Hz ({n / rate / 3600:.2f} h)")
    tmp = Path(tempfile.mkdtemp(prefix="bench_explore."))
    srv = None
    rows = []
    try:
        (data, _), dt = timed(synthetic_ekg, duration_s=n / rate, rate=rate, seed=2,
                              normal_s=n / rate - 1)
        csv = tmp / "a02like.csv"
        _, dt_csv = timed(data.to_csv, csv, index=False, float_format="%.6f")
        print(f"generated in {dt:.1f} s, CSV written in {dt_csv:.1f} s "
              f"({csv.stat().st_size / 1e6:.0f} MB)")
        srv = LocalInfluxd(tmp / "influxd").start()
        settings = InfluxSettings(host="127.0.0.1", port=srv.http_port, timeout=120)
        ix = Influx(settings)
        env = dict(os.environ, INFLUXDB_HOST="127.0.0.1", INFLUXDB_PORT=str(srv.http_port),
                   PYTHONPATH=str(ROOT), MPLBACKEND="Agg")

        # 1. loading
        series, t_read = timed(read_csv_series, csv, start=START)
        w, t_write = timed(write_loaded, ix, "ekg", "ekg", series, "value", TAGS)
        assert w == n, (w, n)
        rows += [("load: read + validate the CSV (load_csv)", t_read),
                 ("load: write to InfluxDB (load_csv)", t_write),
                 ("load: total in-process", t_read + t_write)]
        t_cli = run([sys.executable, "-m", "pipeline.load", str(csv), "--db", "ekg_cli",
                     "--measurement", "ekg", "--tag", "source=a02like", "--start", START], env)
        rows.append(("load: python -m pipeline.load (new process)", t_cli))

        # 2. a model (5 min training, 5 min held out)
        tr, va = int(300 * rate), int(600 * rate)
        model = tmp / "ekg.npz"
        _, t_train = timed(train, series.times_ns[:tr], series.values[:tr],
                           series.times_ns[tr:va], series.values[tr:va], out=model,
                           n_clusters=args.clusters)
        rows.append(("train on 5 min + calibrate on 5 min (not a target)", t_train))

        # 3. one minute in the middle, one hour
        mid = T0 + (n // 2 // rate) * S
        out = tmp / "minute.png"

        def picture(lo, hi, png, **kw):
            win = read_window(ix, "ekg", "ekg", tags=TAGS, start_ns=lo, end_ns=hi, model=model,
                              **kw)
            fig = plot_window(win)
            fig.savefig(png, dpi=100)
            return win

        win, t_min = timed(picture, mid, mid + 60 * S, out, error_db="none")
        rows.append((f"plot 1 min, scores computed (read {win.n_read:,} samples, draw, PNG)",
                     t_min))
        t_cli = run([sys.executable, "-m", "pipeline.plot", "--db", "ekg", "--measurement", "ekg",
                     "--tag", "source=a02like", "--model", str(model), "--error-db", "none",
                     "--start", str(mid), "--end", str(mid + 60 * S), "--out", str(out)], env)
        rows.append(("plot 1 min: python -m pipeline.plot (new process)", t_cli))
        cfg = StreamConfig(series=[SeriesConfig(name="ekg", db="ekg", measurement="ekg",
                                                tags=dict(TAGS), model=str(model))],
                           output=OutputConfig(db="error_ekg"),
                           checkpoint_dir=str(tmp / "ckpt"))
        _, t_stream = timed(Stream(cfg, ix).backfill, mid - 300 * S, mid + 300 * S, False)
        rows.append(("stream 10 min around it into error_ekg (not a target)", t_stream))
        win, t_db = timed(picture, mid, mid + 60 * S, out, error_db="error_ekg", scores="db")
        rows.append((f"plot 1 min, scores from error_ekg (read {win.n_read:,} samples)", t_db))
        win, t_hour = timed(picture, mid, mid + 3600 * S, tmp / "hour.png", error_db="none")
        rows.append((f"plot 1 hour, scores computed (read {win.n_read:,} samples)", t_hour))
        if not args.no_notebooks:
            rows += notebooks(env, tmp)
    finally:
        if srv is not None:
            srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(pd.DataFrame(rows, columns=["what", "seconds"]).to_string(index=False,
                                                                   float_format="%.2f"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
