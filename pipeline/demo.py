"""``python -m pipeline.demo``: the README's first command, end to end.

Starts a local influxd (unless ``INFLUXDB_HOST``/``--port`` point at a
running server), loads the shipped synthetic EKG, and prints a summary.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .influx import Influx, InfluxError, InfluxSettings
from .influxd import DEFAULT_DIR, LocalInfluxd, ping
from .load import LoadError, read_csv_series

DATA = Path(__file__).resolve().parent.parent / "datasets" / "synthetic_ekg.csv"
START = "2026-01-01T00:00:00Z"


def ensure_server(port: int, root: Path) -> InfluxSettings:
    settings = InfluxSettings.from_env(port=port)
    if settings.host in ("127.0.0.1", "localhost") and not ping(settings.port):
        srv = LocalInfluxd(root, http_port=settings.port, detach=True).start()
        print(f"started a local influxd at {srv.url} (data in {srv.root}); "
              f"stop it with `python -m pipeline.influxd stop --dir {root}`")
    return settings


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=None, help="InfluxDB HTTP port (default: $INFLUXDB_PORT or 8086)")
    p.add_argument("--dir", default=str(DEFAULT_DIR), help="local influxd directory (default: %(default)s)")
    p.add_argument("--db", default="ekg")
    args = p.parse_args(argv)
    try:
        settings = ensure_server(args.port or InfluxSettings.from_env().port, Path(args.dir))
        ix = Influx(settings)
        series = read_csv_series(DATA, start=START)
        ix.create_database(args.db)
        n = ix.write_series(args.db, "ekg", series.times_ns, {"value": series.values},
                            {"source": "synthetic"})
        print(f"loaded {n} points into {args.db}.ekg: {series.summary()}")
    except (InfluxError, LoadError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
