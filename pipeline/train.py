"""``python -m pipeline.train``: fit every detector that suits a series and calibrate it to an alarm budget.

Reads a normal *training* range and a held-out normal *validation* range of
one series, or of a fleet with ``--fan-out`` (from InfluxDB or a CSV file),
fits each detector (shape: K-Means reconstruction error; flat line; baseline
step; rolling z-score; drift: EWMA) on the training range, calibrates each on the
validation range (the detectors that learn only a number or two, on the
training range too) so that its alarm *events* stay within its share of the
budget (``--false-alarms-per-day``, default 1 per series; see
:mod:`pipeline.calibrate`), and writes one model file holding them all
(data only, versioned by content hash).  A detector whose calibrated
threshold would be useless for this series is kept in the file, *off*, with
the reason.

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
import math
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from . import config
from .calibrate import CalibrationWarning
from .detectors import DEFAULT_DETECTORS, REGISTRY, Budget, default_detectors, make_detectors
from .influx import Influx, InfluxError
from .load import (
    LoadError,
    add_influx_args,
    parse_tags,
    read_csv_keyed,
    read_csv_series,
    settings_from_args,
)
from .model_io import check_writable, save_model
from .series import (
    MAX_TIME_NS,
    MIN_TIME_NS,
    infer_period,
    parse_timestamp,
    resample_regular,
    validate_series,
)

log = logging.getLogger("pipeline.train")

DEFAULT_BUDGET = Budget.per_day(1)
"""One false alarm per day per series: what a person on call accepts (README, "Alarm budget")."""


class TrainError(ValueError):
    """Training cannot proceed; the message says what to change."""


@dataclass
class TrainResult:
    version: str
    path: str
    detectors: list
    budget: Budget
    n_train_samples: int
    n_val_samples: int
    val_hours: float
    period_ns: float
    seconds_read: float
    seconds_fit: float
    seconds_calibrate: float
    n_keys: int = 1
    notes: list = field(default_factory=list)
    n_duplicates: int = 0
    n_nonfinite: int = 0

    def summary(self) -> str:
        keys = f" over {self.n_keys} series keys" if self.n_keys > 1 else ""
        on = [d for d in self.detectors if d.enabled_]
        return "\n".join([
            f"model {self.version} written to {self.path}",
            f"  training: {self.n_train_samples:,} samples{keys} (period "
            f"{self.period_ns / 1e6:.6g} ms); held out: {self.n_val_samples:,} samples "
            f"({self.val_hours:.3g} h)",
            f"  alarm budget: {self.budget} per series, shared by {len(on)} detector(s) on",
            *(f"  {d.describe()}" for d in self.detectors),
            f"  timings: read {self.seconds_read:.2f} s, fit {self.seconds_fit:.2f} s, "
            f"calibrate {self.seconds_calibrate:.2f} s",
            *([f"  dropped: {self.n_duplicates:,} sample(s) with a repeated timestamp, "
               f"{self.n_nonfinite:,} with a non-finite value (NaN/inf; they became gaps)"]
              if self.n_duplicates or self.n_nonfinite else []),
            *(f"  note: {n}" for n in self.notes),
        ])


def _regular(times, values, period_ns=None, resample=False):
    """Validate once at the boundary; return the RegularSeries."""
    try:
        if resample:
            times, values = resample_regular(times, values, period_ns or infer_period(times))
        return validate_series(times, values, period_ns=period_ns)
    except ValueError as e:  # IrregularSeriesError included
        raise TrainError(str(e)) from None


def _run_pairs(rs) -> list:
    return [(rs.times[a:b], rs.values[a:b]) for a, b in rs.runs]


def _as_keyed(times, values) -> list:
    """``[(times, values), ...]`` per series key: one pair, or a list of pairs for a fleet."""
    if isinstance(times, (list, tuple)):
        if not isinstance(values, (list, tuple)) or len(values) != len(times):
            raise TrainError("for a fleet give lists of times and values of the same length")
        return list(zip(times, values, strict=True))
    return [(times, values)]


def train(train_times, train_values, val_times, val_values, *, out,
          detectors=None, budget: Budget | float = DEFAULT_BUDGET,
          n_clusters=config.N_CLUSTERS, segment_len=config.SEGMENT_LEN,
          train_slide=config.TRAIN_SLIDE, slide_len=None, random_state=0, period_ns=None,
          resample=False, extra_metadata=None, seconds_read=0.0, params=None,
          keys=None) -> TrainResult:
    """Fit, calibrate and save every detector.  The library entry point behind the command.

    Parameters
    ----------
    train_times, train_values, val_times, val_values : arrays, or lists of arrays
        One series, or one list entry per series key of a fleet (all keys
        share one model).  Times in int64 ns.
    out : str or Path
        The model file (required: nothing is written anywhere by default).
    detectors : sequence of str, optional
        Detector names; default :func:`pipeline.detectors.default_detectors`: shape, flat
        line, baseline step, z-score and drift, and the fleet baseline for a fleet of at
        least 3 keys.
        A cross-key detector (``fleet``) needs a fleet (lists of times and values).
    budget : Budget or float
        Alarm events per hour per series key, shared equally by the
        detectors (a float is events per hour).
    params : dict, optional
        Constructor arguments per detector name, e.g. ``{"zscore": {"window": 30}}``.
    keys : list of str, optional
        For a fleet, the series key of each list entry (the same order in the training
        and validation lists): the fleet detector learns each key's relation to the fleet
        under this name; without it every key is scored as one the model does not know.

    Raises
    ------
    TrainError
        Bad parameters or output path (checked before fitting), no data, an
        irregular series, a detector that cannot be fitted.
    """
    if out is None:
        raise TrainError("give the model file to write (out=...)")
    if detectors is not None and not list(detectors):
        raise TrainError(f"give at least one detector (from {', '.join(DEFAULT_DETECTORS)})")
    keyed = isinstance(train_times, (list, tuple))
    if detectors is None:
        detectors = default_detectors(len(train_times) if keyed else 1)
    cross = [n for n in detectors if getattr(REGISTRY.get(n), "cross_key", False)]
    if cross and not keyed:
        raise TrainError(f"the {cross[0]} detector compares the series keys of a fleet with each "
                         "other: train it with --fan-out TAG on a fleet of at least 3 keys, or "
                         "leave it out of --detectors")
    budget = budget if isinstance(budget, Budget) else Budget(float(budget))
    try:
        check_writable(out)
    except ValueError as e:
        raise TrainError(str(e)) from None
    params = {k: dict(v) for k, v in (params or {}).items()}
    params.setdefault("shape", {}).update(n_clusters=n_clusters, segment_len=segment_len,
                                          train_slide=train_slide, slide_len=slide_len,
                                          random_state=random_state)
    if cross:  # the level of a slow signal is the fleet's and the drift's (detectors/shape.py)
        params["shape"].setdefault("slow", "off")
    try:
        dets = make_detectors(detectors, **{k: v for k, v in params.items() if k in detectors})
    except (TypeError, ValueError) as e:
        raise TrainError(f"bad detector parameter: {e}") from None
    tr = [_regular(t, v, period_ns, resample) for t, v in _as_keyed(train_times, train_values)]
    period = float(period_ns or np.median([r.period_ns for r in tr]))
    va = [_regular(t, v, period, resample) for t, v in _as_keyed(val_times, val_values)]
    train_runs = [p for r in tr for p in _run_pairs(r)]
    val_runs = [p for r in va for p in _run_pairs(r)]
    if keys is not None and (not keyed or len(keys) != len(tr) or len(va) != len(tr)):
        raise TrainError("give one key name per fleet entry (keys=...), as many as the "
                         "training and validation lists")
    names = None if keys is None else [str(k) for k in keys]
    train_keys = None if names is None else \
        [names[i] for i, r in enumerate(tr) for _ in _run_pairs(r)]
    val_keys = None if names is None else \
        [names[i] for i, r in enumerate(va) for _ in _run_pairs(r)]
    if not train_runs:
        raise TrainError("the training range holds no usable run of samples")
    if not val_runs:
        raise TrainError("the validation range holds no usable run of samples; give a longer "
                         "--val-start/--val-end range of normal data")
    _refuse_constant(train_runs, val_runs)
    if keyed:
        _refuse_stuck_fleet(tr, va, names)
    val_hours = sum((int(t[-1]) - int(t[0]) + period) / 3.6e12 for t, _ in val_runs)
    n_train = sum(len(r.times) for r in tr)
    t0 = time.perf_counter()
    for d in dets:
        log.info("fitting %s on %s samples in %d run(s)...", d.label, f"{n_train:,}",
                 len(train_runs))
        try:
            if d.cross_key:  # it learns each key's relation to the fleet
                d.fit(train_runs, period, train_keys)
            else:
                d.fit(train_runs, period)
        except ValueError as e:
            raise TrainError(f"cannot fit the {d.label} detector: {e}") from None
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    share = budget.split(len(dets))

    def _cal_runs(d):
        # a detector that learns a number or two calibrates on training data too (base.py)
        return train_runs + val_runs if d.calibrate_on_training else val_runs

    def _calibrate(d, share):
        if not d.cross_key:
            return d.calibrate(_cal_runs(d), period, share)
        ks = None if names is None else \
            (train_keys + val_keys if d.calibrate_on_training else val_keys)
        return d.calibrate(_cal_runs(d), period, share, ks)

    said: dict[int, list] = {}  # each detector's warnings from its last calibration

    def _calibrate_noting(d, share):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CalibrationWarning)
            try:
                _calibrate(d, share)
            except ValueError as e:
                raise TrainError(f"cannot calibrate the {d.label} detector: {e}") from None
        said[id(d)] = [str(w.message) for w in caught]

    for d in dets:
        _calibrate_noting(d, share)
    # the detectors that stay off do not use their share: recalibrate the others on it
    on = [d for d in dets if d.enabled_]
    if 0 < len(on) < len(dets):
        for d in on:
            _calibrate_noting(d, budget.split(len(on)))
    notes, seen = [], set()
    for d in dets:
        for msg in said[id(d)]:
            head = msg.split(";")[0]  # the same data-length note from two detectors: once
            if head not in seen:
                seen.add(head)
                notes.append(msg)
    t_cal = time.perf_counter() - t0
    meta = {
        "sample_period_ns": period,
        "training_range_ns": [int(min(r.times[0] for r in tr if len(r.times))),
                              int(max(r.times[-1] for r in tr if len(r.times)))],
        "validation_range_ns": [int(min(r.times[0] for r in va if len(r.times))),
                                int(max(r.times[-1] for r in va if len(r.times)))],
        "n_train_samples": int(n_train),
        "validation_hours": val_hours,
        "budget_per_hour": budget.per_hour,
        "n_keys": len(tr),
    }
    meta.update(extra_metadata or {})
    version = save_model(out, dets, meta)
    return TrainResult(
        version=version, path=str(out), detectors=dets, budget=budget, n_train_samples=n_train,
        n_val_samples=sum(len(r.times) for r in va), val_hours=val_hours, period_ns=period,
        seconds_read=seconds_read, seconds_fit=t_fit, seconds_calibrate=t_cal, n_keys=len(tr),
        notes=notes, n_duplicates=sum(r.n_duplicates for r in tr + va),
        n_nonfinite=sum(r.n_nonfinite for r in tr + va))


def _one_value(runs) -> float | None:
    """The one value every usable sample of ``runs`` holds; None when they vary or there are none.

    >>> _one_value([(None, np.array([21.0, 21.0])), (None, np.array([21.0, np.nan]))])
    21.0
    >>> _one_value([(None, np.array([1.0, 2.0]))]) is None, _one_value([]) is None
    (True, True)
    """
    vals = np.concatenate([np.asarray(v, np.float64) for _, v in runs] or [np.empty(0)])
    vals = vals[np.isfinite(vals) & (np.abs(vals) <= config.Z_MAX_ABS)]
    return float(vals[0]) if len(vals) and vals.min() == vals.max() else None


def _refuse_constant(train_runs, val_runs) -> None:
    """Training and validation ranges each on one value throughout are a stuck sensor or a
    dropout, not normal data: every threshold learned from them would be 0, and any change
    would alarm.  One of them varying is enough (a binary sensor may sit on 0 for the whole
    training range and toggle in the validation range).

    >>> one = [(None, np.array([21.0, 21.0])), (None, np.array([21.0]))]
    >>> _refuse_constant(one, [(None, np.array([1.0, 2.0]))])
    >>> _refuse_constant(one, one)
    Traceback (most recent call last):
    ...
    pipeline.train.TrainError: every training and validation sample is 21: a stuck sensor or a dropout is not normal data; give ranges where the series varies as it normally does
    """
    lo, vlo = _one_value(train_runs), _one_value(val_runs)
    if lo is not None and vlo is not None:
        same = f"{lo:g}" if lo == vlo else f"{lo:g} and {vlo:g}"
        raise TrainError(f"every training and validation sample is {same}: a stuck sensor or a "
                         "dropout is not normal data; give ranges where the series varies as it "
                         "normally does")


def _refuse_stuck_fleet(tr, va, names) -> None:
    """A fleet whose every key sits on one value of its own throughout training and validation is
    as stuck as one series on one value (the values differ only between keys): refuse it.  One
    key that varies is enough.

    >>> def entry(*v):
    ...     return _regular(np.arange(len(v)) * 10**9, np.array(v, float))
    >>> _refuse_stuck_fleet([entry(1, 1, 1), entry(2, 2, 2)], [entry(1, 1, 1), entry(2, 3, 2)], None)
    >>> _refuse_stuck_fleet([entry(1, 1, 1), entry(2, 2, 2)], [entry(1, 1, 1), entry(2, 2, 2)],
    ...                     ["a", "b"])
    Traceback (most recent call last):
    ...
    pipeline.train.TrainError: every key of the fleet sits on one value throughout training and validation (a: 1, b: 2): stuck sensors or dropouts are not normal data; give ranges where the sensors vary as they normally do
    """
    if len(tr) != len(va):
        return
    stuck = []
    for i, (r, q) in enumerate(zip(tr, va, strict=True)):
        lo, vlo = _one_value(_run_pairs(r)), _one_value(_run_pairs(q))
        if lo is None or vlo is None:
            return
        stuck.append(f"{names[i] if names else i}: {lo:g}")
    if stuck:
        shown = ", ".join(stuck[:5]) + (f", ... ({len(stuck)} keys)" if len(stuck) > 5 else "")
        raise TrainError(f"every key of the fleet sits on one value throughout training and "
                         f"validation ({shown}): stuck sensors or dropouts are not normal data; "
                         "give ranges where the sensors vary as they normally do")


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


def _budget(args) -> Budget:
    for flag, value, per in (("--false-alarms-per-hour", args.false_alarms_per_hour, 1.0),
                             ("--false-alarms-per-day", args.false_alarms_per_day, 24.0)):
        if value is None:
            continue
        if not (math.isfinite(value) and 0 < value <= 3600 * per):
            raise TrainError(f"{flag} must be a number in (0, {3600 * per:g}], got {value:g}")
        return Budget(value / per)
    return DEFAULT_BUDGET


def _read(ix, args, lo, hi, tags):
    """One series (refusing mixed ones), or with --fan-out a list per key; and the key names
    (``None`` without --fan-out)."""
    r = ix.read_field(args.db, args.measurement, args.field, lo, hi, tags, args.fan_out)
    if args.fan_out:
        parts = r.by_group()
        return ([p.times for p in parts.values()], [p.values for p in parts.values()],
                list(parts))
    _refuse_mixed_series(r.times, tags, args.db, args.measurement)
    return r.times, r.values, None


def _hold_out(tt, tv, vt, vv, fraction):
    """Check the ranges; without a validation range hold out the last ``fraction`` of each key."""
    keyed_t = _as_keyed(tt, tv)
    if sum(len(t) for t, _ in keyed_t) == 0:
        raise TrainError("the training range holds no points; check the range and source")
    if vt is not None:
        for (a, _), (b, _) in zip(_as_keyed(tt, tv), _as_keyed(vt, vv), strict=False):
            if len(a) and len(b) and b.min() <= a.max() and b.max() >= a.min():
                raise TrainError("the validation range overlaps the training range; the "
                                 "thresholds must be learned on held-out normal data: give "
                                 "disjoint ranges")
        return tt, tv, vt, vv
    log.info("no validation range given: holding out the last %.0f%% of the training range",
             100 * fraction)
    out_t, out_v, hold_t, hold_v = [], [], [], []
    for t, v in keyed_t:
        k = int(len(t) * (1 - fraction))
        out_t.append(t[:k])
        out_v.append(v[:k])
        hold_t.append(t[k:])
        hold_v.append(v[k:])
    if not isinstance(tt, (list, tuple)):
        return out_t[0], out_v[0], hold_t[0], hold_v[0]
    return out_t, out_v, hold_t, hold_v


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
    th = p.add_argument_group("alarm budget (per series key; shared by the detectors)")
    bud = th.add_mutually_exclusive_group()
    bud.add_argument("--false-alarms-per-day", type=float, default=None,
                     help="alarm events a person accepts per day on normal data (default: 1)")
    bud.add_argument("--false-alarms-per-hour", type=float, default=None,
                     help="the same per hour")
    th.add_argument("--detectors", default=None,
                    help=f"comma-separated detectors to fit (default: {','.join(DEFAULT_DETECTORS)}"
                         ", and fleet with --fan-out over at least 3 keys)")
    p.add_argument("--fan-out", metavar="TAG",
                   help="train one model for a fleet: every value of this tag (with --csv: of "
                        "this column) is a series key")
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
        budget = _budget(args)
        dets = None if args.detectors is None else \
            [d.strip() for d in args.detectors.split(",") if d.strip()]
        if dets is not None and not args.fan_out:
            cross = [n for n in dets if getattr(REGISTRY.get(n), "cross_key", False)]
            if cross:
                raise TrainError(f"the {cross[0]} detector compares the keys of a fleet with "
                                 "each other: give --fan-out TAG (a fleet of at least 3 keys), "
                                 "or leave it out of --detectors")
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
        names = None
        if csv_mode:
            if args.fan_out:  # one list entry per key, as a fan-out read from InfluxDB
                per_key = read_csv_keyed(args.csv, args.fan_out, args.value_column,
                                         args.time_column, args.time_unit)
                names = list(per_key)
                series = list(per_key.values())
            else:
                series = [read_csv_series(args.csv, args.value_column, args.time_column,
                                          args.time_unit)]
            tt, tv = map(list, zip(*(_split(x.times_ns, x.values, tr0, tr1) for x in series),
                                   strict=True))
            vt = vv = None  # none given: _hold_out takes the end of the training range
            if va0 is not None or va1 is not None:
                vt, vv = map(list, zip(*(_split(x.times_ns, x.values, va0, va1) for x in series),
                                       strict=True))
            if not args.fan_out:
                tt, tv = tt[0], tv[0]
                vt, vv = (None, None) if vt is None else (vt[0], vv[0])
        else:
            ix = Influx(settings)
            tt, tv, names = _read(ix, args, tr0, tr1, tags)
            vt, vv, vnames = _read(ix, args, va0, va1, tags) if va0 is not None else \
                (None, None, names)
            if args.fan_out and vnames != names:
                if sorted(vnames) == sorted(names):  # the same keys in another order
                    at = [vnames.index(k) for k in names]
                    vt, vv = [vt[i] for i in at], [vv[i] for i in at]
                else:
                    log.warning("the training and validation ranges hold different keys: the "
                                "fleet detector scores every key as one it does not know")
                    names = None
        tt, tv, vt, vv = _hold_out(tt, tv, vt, vv, args.val_fraction)
        res = train(tt, tv, vt, vv, n_clusters=args.clusters, keys=names, segment_len=args.segment_len,
                    train_slide=args.train_slide, slide_len=args.slide, detectors=dets,
                    budget=budget, random_state=args.seed, out=args.out,
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
