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

The point-level helpers ``flag_events``/``match_events`` the demo uses are
re-exported from :mod:`pipeline.flags`.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pandas as pd

from .events import EventRules, Labels, compare
from .flags import Events, Match, flag_events, match_events
from .model_io import ModelFileError, load_model
from .series import validate_series

__all__ = ["Events", "flag_events", "Match", "match_events", "run_detectors", "evaluate",
           "RULES", "main"]

RULES = {"ekg": EventRules(), "sensor": EventRules(merge_gap_s=60.0, tol_before_s=10.0,
                                                   tol_after_s=30.0)}
"""Event rules by kind of data (README, "Evaluating"): EKG, and sensors at a 2 s cadence."""


class EvaluateError(ValueError):
    """Bad input to ``pipeline.evaluate``; the message says what to fix."""


def run_detectors(detectors, times_ns, values) -> dict:
    """``{label: (times, alarm)}`` of each detector's fresh streaming state over one series."""
    out = {}
    for det in detectors:
        o = det.new_state().update_many(times_ns, values)
        out[det.label] = (o.times, np.asarray(o.alarm, bool))
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
    span = [None, None]
    for k, t, v in _series(series, key_col):
        rs = validate_series(t, v, period_ns=model.period_ns)
        for name, run in run_detectors(model.enabled, rs.times, rs.values).items():
            runs.setdefault(name, {})[k] = run
        if tutorial_train_end_s is not None:
            from .tutorials import tutorial_runs
            for name, run in tutorial_runs(rs.times, rs.values, int(tutorial_train_end_s * 1e9),
                                           rs.period_ns).items():
                runs.setdefault(name, {})[k] = run
        lo, hi = int(rs.times[0]), int(rs.times[-1] + rs.period_ns)
        span = [lo if span[0] is None else min(span[0], lo),
                hi if span[1] is None else max(span[1], hi)]
    labels = Labels.from_frame(events, key_column="sensor" if key_col else None)
    if key_col is None:
        runs = {name: r[None] for name, r in runs.items()}
    ours = [d.label for d in model.enabled]
    return compare(runs, labels.within(*span), span[0], span[1], rules,
                   union="any of ours" if len(ours) > 1 else None,
                   title=f"model {model.version}: {', '.join(ours)}")


def _read(path: str, what: str, need: tuple) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise EvaluateError(f"{what} {path} not found") from None
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise EvaluateError(f"{what} {path} cannot be read as CSV: {e}") from None
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise EvaluateError(f"{what} {path} lacks column(s) {missing} (has {list(frame.columns)})")
    return frame


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.evaluate",
                                description=__doc__.split("\n\n")[0].replace("``", ""))
    p.add_argument("series", help="CSV with time_s,value (and sensor for a fleet)")
    p.add_argument("events", help="CSV with start,end,type in seconds (and sensor)")
    p.add_argument("--model", required=True, help="model file from python -m pipeline.train")
    p.add_argument("--rules", choices=sorted(RULES), default="ekg",
                   help="event-matching rules (default: %(default)s)")
    p.add_argument("--tutorial-train-end", type=float, default=None, metavar="S",
                   help="also run the original tutorials' methods, trained on [0, S) s")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = p.parse_args(argv)
    try:
        model = load_model(args.model)
        series = _read(args.series, "series", ("time_s", "value"))
        events = _read(args.events, "events", ("start", "end", "type"))
        rep = evaluate(model, series, events, RULES[args.rules], args.tutorial_train_end)
    except (EvaluateError, ModelFileError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(rep.to_dict(), indent=1, default=float) if args.json else rep.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
