"""``python -m pipeline.stream``: the command line (flags, summary, exit codes).

The stream itself is :class:`pipeline.stream.Stream`; this module parses the
flags, runs backfill or follow mode, prints the summary
(:func:`pipeline.stream_summary.summary_text`) and turns every
expected failure into a message and an exit code (2: bad input, 1: InfluxDB
or a checkpoint could not be written), never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from .influx import Influx, InfluxQueryError, InfluxUnavailableError
from .load import add_influx_args, settings_from_args
from .model_io import ModelFileError
from .series import format_timestamp, parse_timestamp
from .stream_config import PRECISIONS, ConfigError, load_config
from .stream_summary import summary_text

__all__ = ["main", "build_parser", "parse_time", "summary_text"]

log = logging.getLogger("pipeline.stream")

DESCRIPTION = "python -m pipeline.stream: score InfluxDB series into the error database."

_fmt = format_timestamp


def parse_time(text: str, what: str = "time") -> int:
    """ISO 8601 (no zone means UTC), integer ns since the epoch, or ``now``.

    >>> parse_time("2026-01-01T00:00:00Z")
    1767225600000000000
    """
    try:
        return parse_timestamp(text, what=what)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.stream",
                                description=DESCRIPTION,
                                epilog="Modes: --start and --end = backfill; otherwise follow. "
                                       "See the README for a worked example.")
    p.add_argument("--config", help="TOML file with [[series]], [output], [stream] tables")
    p.add_argument("--start", help="backfill/follow start (ISO 8601, ns, or now)")
    p.add_argument("--end", help="backfill end, exclusive; given -> backfill mode, else follow")
    p.add_argument("--reset", action="store_true", help="delete checkpoints and start over")
    p.add_argument("--max-polls", type=int, default=None, help=argparse.SUPPRESS)
    g = p.add_argument_group("one series from the command line (instead of --config)")
    g.add_argument("--db")
    g.add_argument("--measurement")
    g.add_argument("--field", default="value")
    g.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                   help="source tag filter (repeatable)")
    g.add_argument("--fan-out", metavar="TAG", help="one state per value of this tag")
    g.add_argument("--sample-rate", type=float, help="Hz (default: from the model, or inferred)")
    g.add_argument("--model", help="model file from python -m pipeline.train")
    o = p.add_argument_group("output and loop (override the config file)")
    o.add_argument("--out-db", help="error database (default error_ekg)")
    o.add_argument("--out-measurement", help="segment score measurement (default ERROR)")
    o.add_argument("--zscore-measurement",
                   help="per-sample detectors' measurement (default zscore)")
    o.add_argument("--diagnostics", action="store_true", default=None,
                   help="also write each detector's diagnostics on every point (z-score: streak, "
                        "zscore); default: score and alarm only ([output] diagnostics)")
    o.add_argument("--precision", choices=PRECISIONS,
                   help="digits of the scores and thresholds written: float32's (about 7 significant, "
                        "the default: influxd ingests them faster) or every float64 digit "
                        "([output] precision)")
    o.add_argument("--checkpoint-dir", help="default var/checkpoints")
    o.add_argument("--poll-interval", type=float, help="seconds between polls (default 1)")
    o.add_argument("--batch-samples", type=int,
                   help="points per read, all fan-out keys of the read together (default 200000)")
    o.add_argument("--shard", metavar="K/N",
                   help="score only shard K of N of the series keys (stable hash; checkpoints in "
                        "<checkpoint dir>/shard-K-of-N)")
    add_influx_args(p)
    p.add_argument("-v", "--verbose", action="store_true", help="debug log lines")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    stop = threading.Event()

    def _on_signal(signum, _frame):
        log.info("received %s: finishing the current batch, then exiting",
                 signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    closers = []
    try:
        return _main(args, stop, closers)
    finally:
        for close in closers:
            close()


def _main(args, stop, closers) -> int:
    try:
        cfg = load_config(args.config, args)
        start = parse_time(args.start, "--start") if args.start else None
        end = parse_time(args.end, "--end") if args.end else None
        if end is not None and start is None:
            raise ConfigError("--end needs --start (backfill mode)")
        if end is not None and end <= start:
            raise ConfigError(f"--end must be after --start, got {args.start} .. {args.end}")
        influx = Influx(settings_from_args(args))
        influx.ping()  # fail fast: a one-shot command must not wait forever for a wrong address
        from .stream import Stream

        stream = Stream(cfg, influx, stop)
        closers.append(stream.close)
        if args.reset:
            log.info("removed %d checkpoints from %s", stream.store.reset(), stream.root)
        if end is not None:
            log.info("backfill %s .. %s", _fmt(start), _fmt(end))
            totals = stream.backfill(start, end, progress=sys.stderr.isatty())
        else:
            log.info("follow mode from %s, polling every %.3g s%s",
                     "the checkpoints, else " + ("now" if start is None else _fmt(start)),
                     cfg.poll_interval, f", shard {cfg.shard}" if cfg.shard else "")
            totals = stream.follow(start, max_polls=args.max_polls)
    except (ConfigError, ModelFileError) as e:
        log.error("%s", e)
        return 2
    except ValueError as e:  # settings from the environment (INFLUXDB_PORT=abc, ...)
        log.error("%s", e)
        return 2
    except InfluxUnavailableError as e:
        if stop.is_set():
            log.error("stopped while InfluxDB was unreachable: %s", e)
            return 0
        log.error("%s", e)
        return 1
    except InfluxQueryError as e:
        log.error("%s", e)
        return 1
    except OSError as e:  # a checkpoint or the alert outbox could not be written
        log.error("cannot write a checkpoint or the alert outbox: %s; the scores of the last "
                  "batch were written and will be rewritten identically on restart", e)
        return 1
    print(summary_text(totals, stream.flagged, max_flagged=stream.tally.max_flagged))
    return 0

