"""``python -m pipeline.evaluate``: event-level quality of a model's detectors on labelled data.

Reads a series CSV (``time_s,value``, plus a ``sensor`` column for a fleet)
and an events CSV (``start,end,type`` in the same seconds, plus ``sensor``
for a fleet), runs every detector the model keeps on through its streaming
state, the code ``pipeline.stream`` runs, and scores the alarms against the
labels at the event level (:mod:`pipeline.events`): recall, precision, F1,
false alarms per hour of normal time, the share of normal time in alarm,
median detection delay and recall per fault type, for each detector and for
their union (an alert fires when any of them fires).

With ``--tutorial-train-end S`` it also runs the original tutorials' exact
methods on the same data (:mod:`pipeline.tutorials`): K-Means with the
threshold at the max training error, and the z-score with the current
sample inside its own 15-sample window; both train on ``[0, S)`` seconds.

Example::

    python -m pipeline.evaluate --model models/ekg.npz series.csv events.csv --rules ekg

With ``--suite ekg|sensors [--split dev|test] [--rate 90|360]`` it runs the
labelled suites of :mod:`pipeline.suites` instead: every case is trained,
calibrated (``--false-alarms-per-day``/``--false-alarms-per-hour``), written
to a model file and scored through its streaming states (:func:`run_case`),
beside the tutorials' methods, per case and pooled (``docs/evaluation.md``)::

    python -m pipeline.evaluate --suite ekg --split test --false-alarms-per-hour 1

The point-level helpers ``flag_events``/``match_events`` the demo uses are
re-exported from :mod:`pipeline.flags`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .event_score import EventScore, Report
from .events import EventRules, Labels, compare
from .flags import Events, Match, flag_events, match_events
from .model_io import ModelFileError, load_model
from .series import validate_series

__all__ = ["Events", "flag_events", "Match", "match_events", "run_detectors", "run_fleet",
           "evaluate",
           "RULES", "main", "run_case", "evaluate_suite", "suite_table", "CaseResult"]

RULES = {"ekg": EventRules(), "sensor": EventRules(merge_gap_s=60.0, tol_before_s=10.0,
                                                   tol_after_s=30.0)}
"""Event rules by kind of data (README, "Evaluating"): EKG, and sensors at a 2 s cadence."""


class EvaluateError(ValueError):
    """Bad input to ``pipeline.evaluate``; the message says what to fix."""


def run_detectors(detectors, times_ns, values) -> dict:
    """``{label: (times, alarm)}`` of each detector's fresh streaming state over one series
    (a cross-key detector sees a fleet of one: no alarm).

    >>> from pipeline.detectors import FlatLineDetector
    >>> det = FlatLineDetector().fit([(np.arange(50) * 10**9, np.sin(np.arange(50.0)))], 1e9)
    >>> det.threshold_ = 3.0
    >>> t = np.arange(20, dtype=np.int64) * 10**9
    >>> times, alarm = run_detectors([det], t, np.r_[np.sin(np.arange(10.0)), np.zeros(10)])[
    ...     "flat line"]
    >>> len(times), int(np.argmax(alarm))
    (20, 14)
    """
    return {label: runs[0] for label, runs in _run_keyed(detectors, [(times_ns, values)]).items()}


FLEET_SLICE_NS = 3600 * 10**9
"""A cross-key detector is fed its fleet in slices of this much data time, all keys together,
as a stream's backfill reads them."""


def run_fleet(det, keyed, slice_ns: int = FLEET_SLICE_NS, keys=None) -> list:
    """``[(times, alarm), ...]`` per key: a cross-key detector's fleet state (the stream's
    block) fed every key's ``(times, values)`` in time slices, then finished (``keys``: the
    key names, as the stream's fleet gives them to the block).

    >>> from pipeline.detectors import FleetDetector
    >>> det = FleetDetector(); det.period_ns_, det.phase_ns_, det.std_floor_ = 1e9, 0, 0.0
    >>> det.threshold_ = 3.0
    >>> t = np.arange(5000, dtype=np.int64) * 10**9
    >>> runs = run_fleet(det, [(t, np.sin(t / 1e12) + k) for k in range(3)])
    >>> [len(r[0]) for r in runs], any(r[1].any() for r in runs)
    ([5000, 5000, 5000], False)
    """
    from .detectors.block import make_block

    blk = make_block(det, len(keyed))
    if keys is not None:
        blk.set_keys(keys)
    lo = min((int(t[0]) for t, _ in keyed if len(t)), default=0)
    hi = max((int(t[-1]) for t, _ in keyed if len(t)), default=-1) + 1
    got = [([], []) for _ in keyed]

    def take(o):
        for j, r in enumerate(o.rows.tolist()):
            a, b = int(o.starts[j]), int(o.starts[j + 1])
            got[r][0].append(o.times[a:b])
            got[r][1].append(np.asarray(o.alarm[a:b], bool))

    for a in range(lo, hi, max(1, int(slice_ns))):
        parts = [(t[i:k], v[i:k]) for t, v in keyed
                 for i, k in [np.searchsorted(t, [a, a + slice_ns])]]
        lengths = [len(p[0]) for p in parts]
        take(blk.update(np.arange(len(keyed)), np.concatenate(([0], np.cumsum(lengths))),
                        np.concatenate([p[0] for p in parts]),
                        np.concatenate([p[1] for p in parts])))
    take(blk.finish())
    return [(np.concatenate(ts) if ts else np.empty(0, np.int64),
             np.concatenate(al) if al else np.empty(0, bool)) for ts, al in got]


def _run_keyed(detectors, keyed, keys=None) -> dict:
    """``{label: [(times, alarm) per key]}``: per-key states, or the fleet's for a cross-key
    detector (the stream's code paths)."""
    out = {}
    for det in detectors:
        if det.cross_key:
            out[det.label] = run_fleet(det, keyed, keys=keys)
        else:
            out[det.label] = [(o.times, np.asarray(o.alarm, bool)) for o in
                              (det.new_state().update_many(t, v) for t, v in keyed)]
    return out


def _series(frame: pd.DataFrame, key_col: str | None):
    keys = [None] if key_col is None else sorted(frame[key_col].astype(str).unique())
    for k in keys:
        part = frame if k is None else frame[frame[key_col].astype(str) == k]
        t = np.round(part["time_s"].to_numpy(np.float64) * 1e9).astype(np.int64)
        yield k, t, part["value"].to_numpy(np.float64)


def evaluate(model, series: pd.DataFrame, events: pd.DataFrame, rules: EventRules,
             tutorial_train_end_s: float | None = None):
    """Score ``model``'s enabled detectors (and optionally the tutorials') on labelled data."""
    key_col = "sensor" if "sensor" in series.columns else None
    runs: dict = {}
    tut: dict = {}
    span = [None, None]
    keys, keyed = [], []
    for k, t, v in _series(series, key_col):
        rs = validate_series(t, v, period_ns=model.period_ns)
        keys.append(k)
        keyed.append((rs.times, rs.values))
        if tutorial_train_end_s is not None:
            from .tutorials import tutorial_runs
            for name, run in tutorial_runs(rs.times, rs.values, int(tutorial_train_end_s * 1e9),
                                           rs.period_ns).items():
                tut.setdefault(name, {})[k] = run
        lo, hi = int(rs.times[0]), int(rs.times[-1] + rs.period_ns)
        span = [lo if span[0] is None else min(span[0], lo),
                hi if span[1] is None else max(span[1], hi)]
    for name, per_key in _run_keyed(model.enabled, keyed,
                                    None if key_col is None else [str(k) for k in keys]).items():
        runs[name] = dict(zip(keys, per_key, strict=True))
    labels = Labels.from_frame(events, key_column="sensor" if key_col else None)
    if key_col is None:
        runs = {name: r[None] for name, r in runs.items()}
        tut = {name: r[None] for name, r in tut.items()}
    ours = [d.label for d in model.enabled]
    labels = labels.within(*span)
    rep = compare(runs, labels, span[0], span[1], rules,
                  union="any of ours" if len(ours) > 1 else None,
                  title=f"model {model.version}: {', '.join(ours)}")
    if tut:  # beside ours, never in their union
        rep.rows.update(compare(tut, labels, span[0], span[1], rules, union=None).rows)
    return rep


def _read(path: str, what: str, need: tuple) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise EvaluateError(f"{what} {path} not found") from None
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise EvaluateError(f"{what} {path} cannot be read as CSV: {e}") from None
    # the shipped datasets' labels (datasets/*_anomalies.csv) name them start_s, end_s, kind
    alias = {"start": "start_s", "end": "end_s", "type": "kind"}
    frame = frame.rename(columns={alias[c]: c for c in need
                                  if c not in frame.columns and alias.get(c) in frame.columns})
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise EvaluateError(f"{what} {path} lacks column(s) {missing} (has {list(frame.columns)})")
    for col in need:
        if col == "type":
            continue
        num = pd.to_numeric(frame[col], errors="coerce")
        bad = num.isna().to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            raise EvaluateError(f"{what} {path}, line {i + 2}, column {col!r}: "
                                f"{frame[col].iloc[i]!r} is not a number; fix or remove the row")
        frame[col] = num
    return frame


# ---------------------------------------------------------------------------
# suites: train, calibrate and score every case of a labelled suite
# ---------------------------------------------------------------------------
UNION = "any of ours"
_SHAPE_KW = ("n_clusters", "segment_len", "train_slide", "slide_len", "random_state")
"""Shape parameters that :func:`pipeline.train.train` takes as its own arguments."""


@dataclass
class CaseResult:
    """One case (or a pool of cases) of a suite: the report (our detectors, their union, the
    tutorials), the labels each row would find *by chance*, and the model's description."""

    key: str
    report: Report
    chance: dict
    describe: list
    notes: list
    seconds: float
    fleet_days: float = 0.0
    """Days of the labelled part, for a fleet (false alarms per day for the whole fleet)."""
    n_keys: int = 1


def chance_finds(row: EventScore, labels: Labels, start: int, end: int, rules: EventRules) -> float:
    """Labels an alarm process as frequent as ``row``'s false alarms would find by chance.

    A label widened by the rules' tolerances is found by chance with probability
    ``1 - exp(-rate * duration)`` (Poisson alarms at the row's false-alarm rate): a long label
    (a drift labelled to the end of a case) is "found" by a detector that fires at random.

    >>> S = 10**9
    >>> lab = Labels.from_seconds([0.0], [3600.0 * 10], ["slide"])
    >>> row = EventScore(np.array(["slide"], object), np.array([True]), np.array([0.0]),
    ...                  np.array([0]), np.array([1]), np.array([True]), 36000 * S, 0)
    >>> round(chance_finds(row, lab, 0, 36000 * S, EventRules(0, 0, 0)), 3)   # 0.1 FA/h, 10 h
    0.632
    """
    rate = row.false_alarms_per_hour
    if not rate > 0:
        return 0.0
    _, before, after = rules.ns
    a = np.maximum(labels.start_ns - before, start)
    b = np.minimum(np.maximum(labels.end_ns, labels.start_ns + 1) + after, end)
    hours = np.clip(b - a, 0, None) / 3.6e12
    return float(np.sum(1.0 - np.exp(-rate * hours)))


def _case_times(case) -> np.ndarray:
    return np.round(case.time_s * 1e9).astype(np.int64)


def _slice(case, part: str) -> slice:
    a, b = case.parts[part]
    return slice(*(int(np.ceil(v / case.period_s - 1e-9)) for v in (a, b)))


def _feed(case) -> slice:
    """What the streaming states see: the labelled part, after the calibration part when that
    directly precedes it (a stream that has been running since training), so that long baselines
    have warmed up; only the labelled part is scored."""
    lab, cal = _slice(case, "labelled"), _slice(case, "calibrate")
    return slice(cal.start if cal.stop == lab.start else lab.start, lab.stop)


def run_case(case, workdir, budget=None, detectors=None, params=None, tutorials=True):
    """Train on a case's training part, calibrate on its calibration part, score its labelled part.

    The model goes through a model file in ``workdir`` (what the stream would load); every
    detector it keeps on runs as a fresh streaming state (``det.new_state().update_many``; a
    cross-key detector's fleet state fed all keys in slices, :func:`run_fleet`).
    Fleets share one model over their sensors and are scored per sensor, then pooled.

    Returns
    -------
    CaseResult
    """
    from .train import DEFAULT_BUDGET, train
    from .tutorials import kmeans_tutorial, plexus_tutorial

    clock = time.perf_counter()
    t = _case_times(case)
    keys = list(case.keys) if case.keys else [None]
    vals = list(case.values) if case.keys else [case.values]
    tr, ca, fe = _slice(case, "train"), _slice(case, "calibrate"), _feed(case)
    fleet = case.keys is not None

    def part(s):
        return ([t[s]] * len(vals), [v[s] for v in vals]) if fleet else (t[s], vals[0][s])

    path = Path(workdir) / f"{case.split}-{case.name}.npz"
    params = {k: dict(v) for k, v in (params or {}).items()}
    shape_kw = {k: params["shape"].pop(k) for k in _SHAPE_KW if k in params.get("shape", {})}
    res = train(*part(tr), *part(ca), out=path, budget=budget or DEFAULT_BUDGET,
                detectors=tuple(detectors) if detectors else None, params=params,
                period_ns=case.period_s * 1e9, keys=keys if fleet else None, **shape_kw)
    model = load_model(path)
    p = int(round(case.period_s * 1e9))
    ours, theirs = {}, {}
    for label, per_key in _run_keyed(model.enabled, [(t[fe], v[fe]) for v in vals],
                                     keys if fleet else None).items():
        runs = dict(zip(keys, per_key, strict=True))
        ours[label] = runs if fleet else runs[None]
    if tutorials:
        t0 = int(t[fe][0])
        runs = {k: plexus_tutorial(v[fe], p, t0) for k, v in zip(keys, vals, strict=True)}
        if case.suite == "ekg":
            theirs["k-means tutorial"] = kmeans_tutorial(vals[0][tr], vals[0][fe], p, t0)
        theirs["plexus tutorial"] = runs if fleet else runs[None]
    start, end = case.span_ns("labelled")
    labels = case.labels().within(start, end)
    rows = {}
    if ours:
        rows.update(compare(ours, labels, start, end, case_rules(case), union=UNION).rows)
    if theirs:
        rows.update(compare(theirs, labels, start, end, case_rules(case), union=None).rows)
    key = f"{case.split}/{case.name}"
    rules = case_rules(case)
    if fleet:  # each sensor's labels at the fleet's false-alarm rate per sensor-hour
        chance = {n: sum(chance_finds(r, labels.select(labels.key == k), start, end, rules)
                         for k in keys) for n, r in rows.items()}
    else:
        chance = {n: chance_finds(r, labels, start, end, rules) for n, r in rows.items()}
    return CaseResult(key, Report(rows, title=key), chance, [d.describe() for d in model.detectors],
                      list(res.notes), time.perf_counter() - clock,
                      (end - start) / 86400e9 if fleet else 0.0, len(keys))


def case_rules(case) -> EventRules:
    from .suites import EKG_RULES, SENSOR_RULES
    return EKG_RULES if case.suite == "ekg" else SENSOR_RULES


def pool(results, title: str) -> CaseResult:
    """One result over several cases: labels, alarm events, normal time and chance finds added up.

    A detector that is off in some case (the z-score on most EKG) counts that case's labels as
    missed, with no alarms, so that every row covers the same labels; rows are ordered: our
    detectors, their union, the tutorials.
    """
    names = list(dict.fromkeys(n for r in results for n in r.report.rows))
    names.sort(key=lambda n: (n.endswith("tutorial"), n == UNION))

    def row(r, n):
        got = r.report.rows.get(n)
        if got is not None:
            return got
        ref = next(iter(r.report.rows.values()))
        return EventScore(ref.label_type, np.zeros(ref.n_labels, bool), np.full(ref.n_labels, np.nan),
                          np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, bool),
                          ref.normal_ns, 0, n)

    rep = Report({n: EventScore.pool([row(r, n) for r in results], n) for n in names}, title=title)
    chance = {n: sum(r.chance.get(n, 0.0) for r in results) for n in names}
    return CaseResult(title, rep, chance, [], [], sum(r.seconds for r in results))


def suite_table(res: CaseResult) -> str:
    """Recall, precision, F1, false alarms per hour and per day, alarm share, delay, by type.

    ``chance``: labels the row would find by chance at its own false-alarm rate
    (:func:`chance_finds`); a ``found`` count near it means little.
    """
    rep = res.report
    head = (f"{'detector':<18}{'found':>8}{'chance':>7}{'recall':>7}{'prec.':>6}{'F1':>6}"
            f"{'false':>6}{'FA/h':>7}{'FA/day':>7}{'alarm%':>8}{'delay s':>9}")
    lines = [rep.title, head, "-" * len(head)] if rep.title else [head, "-" * len(head)]
    for name, s in rep.rows.items():
        fa = s.false_alarms_per_hour
        lines.append(f"{name:<18}{f'{s.n_found}/{s.n_labels}':>8}"
                     f"{_num(res.chance.get(name, math.nan), '.1f'):>7}{_pct(s.recall):>7}"
                     f"{_pct(s.precision):>6}{_num(s.f1, '.3f'):>6}{s.n_false_alarms:>6}"
                     f"{_num(fa, '.2f'):>7}{_num(fa * 24, '.1f'):>7}{_pct(s.alarm_share, 3):>8}"
                     f"{_num(s.median_delay_s, '.1f'):>9}")
    first = next(iter(rep.rows.values()), None)
    if first is not None and first.n_labels:
        types = list(first.recall_by_type())
        lines.append(f"(normal time {first.normal_hours:.2f} h)")
        lines.append(f"{'found by type':<18}" + "".join(f"{ty[:9]:>10}" for ty in types))
        for name, s in rep.rows.items():
            by = s.recall_by_type()
            lines.append(f"{name:<18}" + "".join(f"{'/'.join(map(str, by.get(ty, (0, 0)))):>10}"
                                                 for ty in types))
    return "\n".join(lines)


def _pct(v, digits=0):
    return "-" if v != v else f"{100 * v:.{digits}f}%"


def _num(v, fmt):
    return "-" if v != v else format(v, fmt)


def evaluate_suite(suite, split="test", workdir=None, budget=None, detectors=None, params=None,
                   tutorials=True, log=None) -> dict:
    """Every case of one split: ``{key: CaseResult}`` per case, then pooled results.

    EKG cases pool per sample rate (``"<split>/all <rate> Hz"``); the sensor suite pools its
    fleets (``"<split>/all sensors"``).  ``log(CaseResult)`` is called after each case.
    """
    import tempfile

    out, pools = {}, {}
    with tempfile.TemporaryDirectory(prefix="pipeline-evaluate-") as tmp:
        for case in suite.split(split):
            r = run_case(case, workdir or tmp, budget, detectors, params, tutorials)
            out[r.key] = r
            tag = (f"{split}/all {1 / case.period_s:g} Hz" if case.suite == "ekg"
                   else f"{split}/all sensors")
            pools.setdefault(tag, []).append(r)
            if log:
                log(r)
    for tag, rs in pools.items():
        out[tag] = pool(rs, tag)
    return out


def _suite_main(args) -> int:
    from .detectors import Budget
    from .suites import ekg_suite, sensor_suite
    from .train import DEFAULT_BUDGET

    if args.false_alarms_per_hour is not None:
        budget = Budget(args.false_alarms_per_hour)
    elif args.false_alarms_per_day is not None:
        budget = Budget.per_day(args.false_alarms_per_day)
    else:
        budget = DEFAULT_BUDGET
    dets = [d.strip() for d in args.detectors.split(",") if d.strip()] if args.detectors else None
    clock = time.perf_counter()
    if args.suite == "ekg":
        rates = (args.rate,) if args.rate else (360, 90)
        sources = ("synthetic",) if args.quick else tuple(
            s for s in ("synthetic", "ecgsyn", "mitdb208") if not (args.no_ecgsyn and s == "ecgsyn"))
        suite = ekg_suite(args.split, rates, sources, args.mitdb)
    else:
        suite = sensor_suite(args.split, *((15, 3) if args.quick else (50, 10)))
    for note in suite.notes:
        print(f"note: {note}", file=sys.stderr if args.json else sys.stdout)
    seg = f"; shape segment {args.segment_len}" if args.segment_len else ""
    print(f"suite {suite.name}, split {args.split}: {len(suite.split(args.split))} case(s); alarm "
          f"budget {budget} per series (shared by the detectors){seg}; rules: merge gap "
          f"{suite.rules.merge_gap_s:g} s, tolerance -{suite.rules.tol_before_s:g} s / "
          f"+{suite.rules.tol_after_s:g} s", flush=True, file=sys.stderr if args.json else sys.stdout)

    def show(r):
        if args.json:
            return
        print(f"\n== {r.key} ({r.seconds:.0f} s)")
        for line in r.describe:
            print(f"  {line}")
        for n in r.notes if args.verbose else ():
            print(f"  note: {n}")
        print(suite_table(r), flush=True)
        if r.fleet_days:
            ours = r.report.rows.get(UNION)
            if ours is not None:
                print(f"  per fleet: {ours.n_false_alarms} false alarm events of {UNION} in "
                      f"{r.fleet_days:.3g} days = {ours.n_false_alarms / r.fleet_days:.1f} per day "
                      f"for the whole fleet of {r.n_keys}", flush=True)
        if args.false_alarms:
            for name, row in r.report.rows.items():
                fa = row.event_start_ns[row.event_false] / 1e9
                if len(fa):
                    print(f"  false alarms of {name} (s): {np.round(fa, 1).tolist()[:30]}"
                          + (" ..." if len(fa) > 30 else ""))

    params = {"shape": {"segment_len": args.segment_len}} if args.segment_len else None
    results = evaluate_suite(suite, args.split, budget=budget, detectors=dets, params=params,
                             tutorials=not args.no_tutorials, log=show)
    if args.json:
        print(json.dumps({"budget_per_hour": budget.per_hour, "reports": {
            k: r.report.to_dict() | {"chance": r.chance} for k, r in results.items()}},
            indent=1, default=float))
        return 0
    for key, r in results.items():
        if "/all " in key:
            print(f"\n== {key} (pooled; budget {budget} per series)")
            print(suite_table(CaseResult("", Report(r.report.rows), r.chance, [], [], 0.0)))
    print(f"\n({time.perf_counter() - clock:.0f} s)")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.evaluate",
                                description=__doc__.split("\n\n")[0].replace("``", ""))
    p.add_argument("series", nargs="?", help="CSV with time_s,value (and sensor for a fleet)")
    p.add_argument("events", nargs="?", help="CSV with start,end,type in seconds (and sensor)")
    p.add_argument("--model", help="model file from python -m pipeline.train")
    p.add_argument("--rules", choices=sorted(RULES), default="ekg",
                   help="event-matching rules (default: %(default)s)")
    p.add_argument("--tutorial-train-end", type=float, default=None, metavar="S",
                   help="also run the original tutorials' methods, trained on [0, S) s")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON")
    s = p.add_argument_group("suites (instead of SERIES EVENTS --model): train, calibrate and "
                             "score every case of a labelled suite (pipeline.suites)")
    s.add_argument("--suite", choices=["ekg", "sensors"])
    s.add_argument("--split", choices=["dev", "test", "holdout", "holdout2"], default="test",
                   help="tune on dev, report test (default: %(default)s); holdout, holdout2: other "
                        "seeds, each for one run after choices made while looking at test")
    s.add_argument("--rate", type=int, choices=[90, 360], help="EKG sample rate (default: both)")
    s.add_argument("--quick", action="store_true",
                   help="a small subset: the synthetic EKG only; 15 + 3 sensors")
    s.add_argument("--no-ecgsyn", action="store_true", help="skip the ECGSYN EKG source")
    s.add_argument("--no-tutorials", action="store_true", help="skip the tutorials' methods")
    s.add_argument("--mitdb", default=None, help="folder of the record 208 excerpt")
    s.add_argument("--detectors", default=None,
                   help="comma-separated detectors to train (default: all)")
    s.add_argument("--segment-len", type=int, default=None,
                   help="shape detector's segment length (default: the project's 32)")
    bud = s.add_mutually_exclusive_group()
    bud.add_argument("--false-alarms-per-day", type=float, default=None,
                     help="alarm budget per series (default: 1 per day)")
    bud.add_argument("--false-alarms-per-hour", type=float, default=None, help="the same per hour")
    s.add_argument("--false-alarms", action="store_true", help="list each case's false alarms")
    s.add_argument("--verbose", action="store_true", help="print calibration notes")
    args = p.parse_args(argv)
    try:
        if args.suite:
            if args.series or args.events or args.model:
                raise EvaluateError("give either --suite or SERIES EVENTS --model, not both")
            return _suite_main(args)
        if not (args.series and args.events and args.model):
            raise EvaluateError("give SERIES EVENTS --model MODEL (or --suite ekg|sensors)")
        model = load_model(args.model)
        series = _read(args.series, "series", ("time_s", "value"))
        events = _read(args.events, "events", ("start", "end", "type"))
        rep = evaluate(model, series, events, RULES[args.rules], args.tutorial_train_end)
    except (EvaluateError, ModelFileError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(rep.to_dict(), indent=1, default=float) if args.json else rep.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
