"""``python -m pipeline.train``: fit a K-Means reconstruction model and calibrate its threshold.

Reads a normal *training* range and a held-out normal *validation* range of
one series (from InfluxDB or a CSV file), fits
:class:`~pipeline.kmeans.KMeansReconstructor` on the training range, scores
the validation range with the same function the stream uses
(:func:`~pipeline.scoring.score_segments_batch`), learns the threshold from
those scores, and writes a model file (npz + JSON metadata, versioned by
content hash).

Examples
--------
From InfluxDB::

    python -m pipeline.train --db ekg --measurement ekg --tag source=synthetic \\
        --train-start 2026-01-01T00:00:00Z --train-end 2026-01-01T00:02:00Z \\
        --val-start 2026-01-01T00:02:00Z --val-end 2026-01-01T00:03:00Z \\
        --out models/ekg.npz

From a CSV (validation = the last ``--val-fraction`` of the training range)::

    python -m pipeline.train --csv datasets/synthetic_ekg.csv --train-end 180 --out models/ekg.npz
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from . import config
from .influx import Influx, InfluxError
from .kmeans import KMeansReconstructor
from .load import LoadError, add_influx_args, parse_tags, read_csv_series, settings_from_args
from .model_io import check_writable, save_model
from .scoring import score_segments_batch
from .series import (
    MAX_TIME_NS,
    MIN_TIME_NS,
    infer_period,
    parse_timestamp,
    resample_regular,
    validate_series,
)
from .threshold import ScoreThreshold, tutorial_threshold

log = logging.getLogger("pipeline.train")


class TrainError(ValueError):
    """Training cannot proceed; the message says what to change."""


@dataclass
class TrainResult:
    version: str
    path: str
    n_train_samples: int
    n_train_segments: int
    n_val_segments: int
    threshold: float
    threshold_method: str
    val_exceed: int
    seconds_read: float
    seconds_fit: float
    seconds_calibrate: float
    period_ns: float
    n_clusters: int = 0
    notes: list = field(default_factory=list)
    n_duplicates: int = 0
    """Samples dropped for a repeated timestamp (training and validation ranges)."""
    n_nonfinite: int = 0
    """Samples dropped for a NaN/inf value (training and validation ranges); they become gaps."""

    def summary(self) -> str:
        return "\n".join([
            f"model {self.version} written to {self.path}",
            f"  training: {self.n_train_samples:,} samples -> {self.n_train_segments:,} segments "
            f"-> {self.n_clusters} clusters (period {self.period_ns / 1e6:.6g} ms)",
            f"  threshold: {self.threshold:.6g} ({self.threshold_method}), calibrated on "
            f"{self.n_val_segments:,} held-out segments; {self.val_exceed} of them exceed it",
            f"  timings: read {self.seconds_read:.2f} s, fit {self.seconds_fit:.2f} s, "
            f"calibrate {self.seconds_calibrate:.2f} s",
            *([f"  dropped: {self.n_duplicates:,} sample(s) with a repeated timestamp, "
               f"{self.n_nonfinite:,} with a non-finite value (NaN/inf; they became gaps)"]
              if self.n_duplicates or self.n_nonfinite else []),
            *(f"  note: {n}" for n in self.notes),
        ])


def _runs(times, values, period_ns=None, resample=False):
    """Validate once at the boundary; return (RegularSeries, list of value arrays per run)."""
    try:
        if resample:
            times, values = resample_regular(times, values, period_ns or infer_period(times))
        rs = validate_series(times, values, period_ns=period_ns)
    except ValueError as e:  # IrregularSeriesError included
        raise TrainError(str(e)) from None
    return rs, rs.run_values()


def _check_threshold_params(threshold_method="quantile", false_alarm_rate=1e-3, margin=1.0) -> None:
    """Raise :class:`TrainError` on bad threshold parameters, before the (long) fit.

    The checks are :class:`~pipeline.threshold.ScoreThreshold`'s own: it is
    fitted on one dummy score, which validates exactly what the real fit
    will.  The tutorial rule is checked as ``"max"`` (its method).
    """
    method = "max" if threshold_method == "tutorial" else threshold_method
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # FewScoresWarning on one score
            ScoreThreshold(method=method, false_alarm_rate=false_alarm_rate, margin=margin).fit([1.0])
    except ValueError as e:
        raise TrainError(f"bad threshold parameter: {e}") from None


def train(train_times, train_values, val_times, val_values, *, n_clusters=config.N_CLUSTERS,
          segment_len=config.SEGMENT_LEN, train_slide=config.TRAIN_SLIDE, slide_len=None,
          threshold_method="quantile", false_alarm_rate=1e-3, margin=1.0, random_state=0,
          period_ns=None, resample=False, extra_metadata=None, out="models/model.npz",
          seconds_read=0.0) -> TrainResult:
    """Fit, calibrate and save.  The library entry point behind the command.

    The training and validation ranges are validated separately (sorted,
    deduplicated, split at gaps); segments never span a gap.  The threshold
    is learned on the validation scores, produced by
    :func:`~pipeline.scoring.score_segments_batch`, the very function the
    stream uses live.  The threshold parameters and ``out`` are checked
    before fitting (:class:`TrainError`).
    """
    _check_threshold_params(threshold_method, false_alarm_rate, margin)
    try:
        check_writable(out)
    except ValueError as e:
        raise TrainError(str(e)) from None
    rs, runs = _runs(train_times, train_values, period_ns, resample)
    period = float(rs.period_ns)
    log.info("fitting K-Means (k=%d, segment %d, slide %d) on %s samples in %d run(s)...",
             n_clusters, segment_len, train_slide, f"{len(rs.times):,}", len(runs))
    t0 = time.perf_counter()
    model = KMeansReconstructor(n_clusters=n_clusters, segment_len=segment_len,
                                train_slide=train_slide, slide_len=slide_len,
                                random_state=random_state)
    try:
        model.fit(runs)
    except ValueError as e:
        raise TrainError(f"cannot fit: {e}") from None
    t_fit = time.perf_counter() - t0

    t0 = time.perf_counter()
    vrs, _ = _runs(val_times, val_values, period, resample)
    val = score_segments_batch(model, vrs.times, vrs.values, period)
    notes = []
    if threshold_method == "tutorial":
        # the tutorial's rule is the "max" method applied to another quantity: the largest
        # stitched reconstruction error over the training runs (never stitched across a gap);
        # the model's metadata records threshold_method="tutorial"
        value = tutorial_threshold(model, runs)
        thr = ScoreThreshold(method="max", margin=margin).fit(np.array([value]))
    else:
        if len(val) == 0:
            raise TrainError("the validation range holds no complete segment; give a longer "
                             "--val-start/--val-end range")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            thr = ScoreThreshold(method=threshold_method, false_alarm_rate=false_alarm_rate,
                                 margin=margin).fit(val.errors)
        notes = [str(w.message) for w in caught]
    t_cal = time.perf_counter() - t0
    meta = {
        "sample_period_ns": period,
        "training_range_ns": [int(rs.times[0]), int(rs.times[-1])],
        "validation_range_ns": [int(vrs.times[0]), int(vrs.times[-1])] if len(vrs.times) else None,
        "n_train_samples": int(len(rs.times)),
        "n_validation_segments": int(len(val)),
        "threshold_method": threshold_method,
        "false_alarm_rate": false_alarm_rate if threshold_method == "quantile" else None,
        "margin": margin,
        "gaps_in_training": len(rs.gaps),
    }
    meta.update(extra_metadata or {})
    version = save_model(out, model, thr, meta)
    return TrainResult(
        version=version, path=str(out), n_train_samples=len(rs.times),
        n_train_segments=int(model.n_train_segments_),
        n_val_segments=len(val), threshold=float(thr.threshold_), threshold_method=threshold_method,
        val_exceed=int(np.count_nonzero(val.errors > thr.threshold_)), seconds_read=seconds_read,
        seconds_fit=t_fit, seconds_calibrate=t_cal, period_ns=period, n_clusters=n_clusters,
        notes=notes, n_duplicates=rs.n_duplicates + vrs.n_duplicates,
        n_nonfinite=rs.n_nonfinite + vrs.n_nonfinite)


def _time(text: str | None, csv_mode: bool, what: str = "time") -> int | None:
    """A range bound: :func:`~pipeline.series.parse_timestamp`, or with ``--csv`` also seconds."""
    if text is None:
        return None
    if csv_mode:
        try:
            sec = float(text)
        except ValueError:
            pass
        else:
            if not np.isfinite(sec):
                raise TrainError(f"{what}: {text!r} is not a finite time; give seconds of the "
                                 "CSV's time column or an ISO 8601 time")
            ns = sec * 1e9  # may overflow to inf: compare before converting to int
            if not MIN_TIME_NS <= ns <= MAX_TIME_NS:  # exact int/float comparison
                raise TrainError(f"{what}: {text!r} seconds is outside the range InfluxDB can "
                                 "store (1677-09-21 .. 2262-04-11)")
            return round(ns)
    try:
        return parse_timestamp(text, what=what)
    except ValueError as e:
        raise TrainError(str(e) + ("; with --csv also seconds of the CSV's time column"
                                   if csv_mode else "")) from None


def _refuse_mixed_series(times, tags, db, measurement) -> None:
    """Points sharing a timestamp come from several series: refuse, do not keep one."""
    st = np.sort(times)
    n = int(np.count_nonzero(st[1:] == st[:-1]))
    if n:
        raise TrainError(
            f"the filter {tags or '{}'} matches more than one series of {db}.{measurement} "
            f"({n:,} repeated timestamp(s)); add tags to narrow it (--tag KEY=VALUE)")


def _split(times, values, lo, hi):
    m = np.ones(len(times), bool)
    if lo is not None:
        m &= times >= lo
    if hi is not None:
        m &= times < hi
    return times[m], values[m]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.train", description=__doc__.split("\n\n")[0].replace("``", ""),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("source: InfluxDB (--db ...) or --csv")
    src.add_argument("--csv", help="CSV file (columns as for python -m pipeline.load)")
    src.add_argument("--time-column", default="time_s", help="CSV time column (default: %(default)s)")
    src.add_argument("--time-unit", default="s", choices=["s", "ms", "us", "ns", "iso"],
                     help="unit of the time column (default: %(default)s)")
    src.add_argument("--value-column", default="value", help="CSV value column (default: %(default)s)")
    src.add_argument("--db", help="InfluxDB database")
    src.add_argument("--measurement")
    src.add_argument("--field", default="value", help="field key (default: %(default)s)")
    src.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                     help="tag filter (repeatable)")
    rng = p.add_argument_group("ranges (ISO 8601; with --csv also seconds of the time column)")
    rng.add_argument("--train-start", help="start of the normal training range (inclusive)")
    rng.add_argument("--train-end", help="end of the training range (exclusive)")
    rng.add_argument("--val-start", help="default: the last --val-fraction of the training range")
    rng.add_argument("--val-end", help="end of the held-out normal validation range")
    rng.add_argument("--val-fraction", type=float, default=0.25,
                     help="held-out share when no validation range is given (default: %(default)s)")
    mp = p.add_argument_group("model")
    mp.add_argument("--clusters", type=int, default=config.N_CLUSTERS, help="default: %(default)s")
    mp.add_argument("--segment-len", type=int, default=config.SEGMENT_LEN, help="default: %(default)s")
    mp.add_argument("--train-slide", type=int, default=config.TRAIN_SLIDE, help="default: %(default)s")
    mp.add_argument("--slide", type=int, default=None, help="scoring slide (default segment/2)")
    mp.add_argument("--seed", type=int, default=0, help="K-Means random state (default: %(default)s)")
    th = p.add_argument_group("threshold")
    th.add_argument("--threshold-method", choices=["quantile", "max", "tutorial"], default="quantile",
                    help="quantile of held-out scores, their max, or the original tutorial's rule "
                         "(max stitched training error; for comparison) (default: %(default)s)")
    th.add_argument("--false-alarm-rate", type=float, default=1e-3,
                    help="target share of normal segments above the threshold (default: %(default)s)")
    th.add_argument("--margin", type=float, default=1.0,
                    help="multiply the threshold by this (default: %(default)s)")
    p.add_argument("--sample-rate", type=float, help="Hz (default: the median step of the data)")
    p.add_argument("--resample", action="store_true",
                   help="linearly resample an irregular series onto the sample period first")
    p.add_argument("--out", default="models/model.npz", help="model file (default: %(default)s)")
    add_influx_args(p)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        csv_mode = args.csv is not None
        if csv_mode == (args.db is not None):
            raise TrainError("give either --csv FILE or --db/--measurement")
        tags = parse_tags(args.tag)
        if args.sample_rate is not None and not args.sample_rate > 0:
            raise TrainError(f"--sample-rate must be > 0 Hz, got {args.sample_rate}")
        tr0 = _time(args.train_start, csv_mode, "--train-start")
        tr1 = _time(args.train_end, csv_mode, "--train-end")
        va0 = _time(args.val_start, csv_mode, "--val-start")
        va1 = _time(args.val_end, csv_mode, "--val-end")
        if va0 is None and va1 is None and not 0 < args.val_fraction < 1:
            raise TrainError(f"--val-fraction must be in (0, 1), got {args.val_fraction}")
        _check_threshold_params(args.threshold_method, args.false_alarm_rate, args.margin)
        try:
            check_writable(args.out)
        except ValueError as e:
            raise TrainError(str(e)) from None
        settings = None
        if not csv_mode:
            if not args.measurement:
                raise TrainError("--db needs --measurement")
            if tr0 is None or tr1 is None:
                raise TrainError("with --db give --train-start and --train-end")
            if (va0 is None) != (va1 is None):
                raise TrainError("with --db give both --val-start and --val-end, or neither (then "
                                 "the last --val-fraction of the training range is held out)")
            try:
                settings = settings_from_args(args)
            except ValueError as e:
                raise TrainError(f"InfluxDB settings: {e}") from None
        t0 = time.perf_counter()
        if csv_mode:
            s = read_csv_series(args.csv, args.value_column, args.time_column, args.time_unit)
            times, values = s.times_ns, s.values
            tt, tv = _split(times, values, tr0, tr1)
            if va0 is not None or va1 is not None:
                vt, vv = _split(times, values, va0, va1)
            else:
                vt = vv = None
        else:
            ix = Influx(settings)
            r = ix.read_field(args.db, args.measurement, args.field, tr0, tr1, tags)
            _refuse_mixed_series(r.times, tags, args.db, args.measurement)
            tt, tv = r.times, r.values
            if va0 is not None:
                r = ix.read_field(args.db, args.measurement, args.field, va0, va1, tags)
                _refuse_mixed_series(r.times, tags, args.db, args.measurement)
                vt, vv = r.times, r.values
            else:
                vt = vv = None
        if len(tt) == 0:
            raise TrainError("the training range holds no points; check the range and source")
        if vt is not None and len(vt) and vt.min() <= tt.max() and vt.max() >= tt.min():
            raise TrainError("the validation range overlaps the training range; the threshold "
                             "must be learned on held-out normal data: give disjoint ranges")
        if vt is None:
            k = int(len(tt) * (1 - args.val_fraction))
            tt, tv, vt, vv = tt[:k], tv[:k], tt[k:], tv[k:]
            log.info("no validation range given: holding out the last %.0f%% of the training range",
                     100 * args.val_fraction)
        res = train(tt, tv, vt, vv, n_clusters=args.clusters, segment_len=args.segment_len,
                    train_slide=args.train_slide, slide_len=args.slide,
                    threshold_method=args.threshold_method, false_alarm_rate=args.false_alarm_rate,
                    margin=args.margin, random_state=args.seed, out=args.out,
                    period_ns=1e9 / args.sample_rate if args.sample_rate else None,
                    resample=args.resample,
                    seconds_read=time.perf_counter() - t0,
                    extra_metadata={"source": args.csv or f"{args.db}.{args.measurement}.{args.field}"})
    except (TrainError, LoadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except InfluxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(res.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
