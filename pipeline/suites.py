"""Labelled development suites the project generates itself: ``python -m pipeline.suites --out DIR``.

A *suite* is a list of *cases*.  A case is one series (or one fleet of
series) with labelled events and three *parts*, in seconds from its start:

* ``train``: normal data to fit a detector on;
* ``calibrate``: other normal data, to set its threshold (an alarm budget);
* ``labelled``: data with injected faults, each a labelled event, scored
  with :mod:`pipeline.events` (the suite's :class:`~pipeline.events.EventRules`).

Every case belongs to a *split*: ``dev`` cases are for developing and tuning;
``test`` cases come from other seeds, other heart rates and other portions
of the real record, and are for reporting only.  **Nobody tunes on the test
split**: a number tuned on it measures nothing.

Suites (see ``docs/evaluation.md`` for what each fault looks like):

* :func:`ekg_suite`: EKG at 360 Hz and decimated to 90 Hz, from the real
  MIT-BIH record 208 excerpt (when present), the project's synthetic EKG and
  neurokit2's ECGSYN (when installed), with zeros, hold, spike, noise, step,
  amplitude and ectopic faults (11 of each per split and rate with all
  sources: 6 synthetic, 4 ECGSYN, 1 in the record; 7 without ECGSYN);
* :func:`sensor_suite`: a fleet of 50 temperature sensors (2 days) and 10
  humidity sensors (6 days) at a 2 s cadence, with finger, spike, freeze,
  drift, offset and humidity slide scenarios (3 of each, 18 per split).

Everything is deterministic by seed.  Files (not committed; regenerate them):
``DIR/<suite>/<split>/<case>.series.csv`` (``time_s,value``; fleets
``time_s,sensor,value``), ``<case>.events.csv`` (``start,end,type``
[``,sensor``], seconds) and ``DIR/<suite>/manifest.json`` (parts, rates,
rules, notes); :func:`read_suite` loads them back.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import ekg_faults as ekf
from . import sensor_sim as sim
from .events import EventRules, Labels

__all__ = ["Case", "Suite", "ekg_suite", "sensor_suite", "write_suite", "read_suite", "EKG_SOURCES",
           "EKG_RULES", "SENSOR_RULES", "SPLITS", "HOLDOUTS"]

SPLITS = ("dev", "test")
HOLDOUTS = ("holdout", "holdout2")
"""More splits, never part of ``all``, each asked for by name: other seeds and another ECGSYN heart
rate, each to be evaluated once.  ``holdout`` was made after the test split had been looked at
several times, ``holdout2`` after ``holdout`` had been looked at twice (``docs/evaluation.md``
says when and why).  Record 208 has no portion left for them (dev and test use its 5 minutes)."""
EKG_SOURCES = ("synthetic", "ecgsyn", "mitdb208")
EKG_RULES = EventRules(merge_gap_s=1.0, tol_before_s=0.5, tol_after_s=2.0)
SENSOR_RULES = EventRules(merge_gap_s=60.0, tol_before_s=10.0, tol_after_s=30.0)
"""Sensors at a 2 s cadence: 30 samples of silence still make one incident, a
detector may need 15 samples (a streak after a lag, a flat run) to react."""
_SEED = {"dev": 1000, "test": 2000, "holdout": 3000, "holdout2": 4000}
_ECGSYN_HR = {"dev": 72.0, "test": 63.0, "holdout": 80.0, "holdout2": 88.0}
EKG_LAYOUT = {
    "synthetic": {"train": (0, 180), "calibrate": (180, 300), "labelled": (300, 3900), "per_type": 6},
    "ecgsyn": {"train": (0, 180), "calibrate": (180, 300), "labelled": (300, 1500), "per_type": 4},
    "mitdb208": {"train": (101, 181), "calibrate": (181, 208), "per_type": 1,
                 "labelled": {"dev": (0, 84), "test": (215, 300)}},
}
"""Parts in seconds of each EKG source; the record's two labelled portions avoid its artifacts
at 84-100 s and 208-215 s; the one at 42-45 s lies in the dev portion and is labelled."""
MITDB_ARTIFACTS = [(42.0, 45.0, "natural_artifact")]
"""Artifacts of record 208 inside a labelled portion, labelled by eye (a saturating step)."""


@dataclass
class Case:
    """One labelled case: a series (``values`` 1-D) or a fleet (``values`` keys x samples)."""

    name: str
    suite: str
    split: str
    source: str
    period_s: float
    values: np.ndarray
    events: pd.DataFrame
    parts: dict
    unit: str
    keys: list | None = None
    notes: list = field(default_factory=list)

    @property
    def n_samples(self) -> int:
        return self.values.shape[-1]

    @property
    def time_s(self) -> np.ndarray:
        """Sample times in seconds from the case's start."""
        return np.arange(self.n_samples) * self.period_s

    def part(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(time_s, values)`` of a part (``train``, ``calibrate`` or ``labelled``)."""
        a, b = self.parts[name]
        i, j = (int(np.ceil(v / self.period_s - 1e-9)) for v in (a, b))
        return self.time_s[i:j], self.values[..., i:j]

    def labels(self, t0_ns: int = 0) -> Labels:
        """The events as :class:`~pipeline.events.Labels`, times from ``t0_ns``; fleets keyed by sensor."""
        key = self.events["sensor"].to_numpy(object) if self.keys else None
        return Labels.from_seconds(self.events["start"], self.events["end"], self.events["type"], t0_ns, key)

    def span_ns(self, part: str = "labelled", t0_ns: int = 0) -> tuple[int, int]:
        """``[start, end)`` of a part in ns (what :mod:`pipeline.events` scores)."""
        a, b = self.parts[part]
        return t0_ns + int(round(a * 1e9)), t0_ns + int(round(b * 1e9))

    def series_frame(self) -> pd.DataFrame:
        """``time_s, value`` (fleets: ``time_s, sensor, value``, one sensor after the other)."""
        t = self.time_s
        if not self.keys:
            return pd.DataFrame({"time_s": t, "value": self.values})
        k = len(self.keys)
        return pd.DataFrame({"time_s": np.tile(t, k), "sensor": np.repeat(np.asarray(self.keys), len(t)),
                             "value": self.values.ravel()})

    def counts(self) -> dict:
        """Labelled events by type."""
        return {str(k): int(v) for k, v in self.events["type"].value_counts().sort_index().items()}

    def summary(self) -> str:
        dur = self.n_samples * self.period_s
        size = f"{len(self.keys)} sensors x " if self.keys else ""
        parts = ", ".join(f"{k} {a:g}-{b:g} s" for k, (a, b) in self.parts.items())
        events = ", ".join(f"{k} {v}" for k, v in self.counts().items())
        return (f"{self.split}/{self.name}: {size}{dur / 3600:.2f} h at {1 / self.period_s:g} Hz "
                f"({parts}); events: {events}")


@dataclass
class Suite:
    """Cases with the event-matching rules they are scored by."""

    name: str
    cases: list
    rules: EventRules
    notes: list = field(default_factory=list)

    def split(self, name: str) -> list:
        return [c for c in self.cases if c.split == name]


def _splits(split) -> list:
    if split in (None, "all"):
        return list(SPLITS)
    splits = [split] if isinstance(split, str) else list(split)
    bad = [s for s in splits if s not in (*SPLITS, *HOLDOUTS)]
    if bad:
        raise ValueError(f"split must be one of {(*SPLITS, *HOLDOUTS)} or 'all', got {bad[0]!r}")
    return splits


def ekg_suite(split="all", rates=(360, 90), sources=EKG_SOURCES, mitdb=None) -> Suite:
    """The EKG suite: faults injected into the record 208 excerpt, the synthetic EKG and ECGSYN.

    Parameters
    ----------
    split : {"all", "dev", "test", "holdout", "holdout2"} or list
        The ``test`` split (other seeds, heart rate and record portion) is
        for reporting only: never tune a detector or a threshold on it.
        ``all`` is dev and test; :data:`HOLDOUTS` are asked for by name.
    rates : tuple of int
        Sample rates (divisors of 360); 90 Hz is decimated from 360 Hz.
    sources : tuple of str
        Any of :data:`EKG_SOURCES`.  ``mitdb208`` is skipped (with a note)
        when the excerpt is not found; ``ecgsyn`` when neurokit2 is missing.
    mitdb : path, optional
        The record's folder or CSV; default ``$PIPELINE_MITDB208``, else
        ``../shared/datasets/mitdb208_scipy_excerpt/`` beside the repository.

    Examples
    --------
    >>> s = ekg_suite(split="dev", rates=(90,), sources=("synthetic",))
    >>> c = s.cases[0]
    >>> c.name, c.counts()["spike"], c.parts["labelled"]
    ('synthetic_90', 6, (300, 3900))
    """
    unknown = set(sources) - set(EKG_SOURCES)
    if unknown:
        raise ValueError(f"unknown EKG source(s) {sorted(unknown)}; known: {', '.join(EKG_SOURCES)}")
    notes, cases = [], []
    mitdb_path = ekf.mitdb208_path(mitdb) if "mitdb208" in sources else None
    if "mitdb208" in sources and mitdb_path is None:
        notes.append(f"mitdb208 skipped: no {ekf.MITDB_FILE} (set ${ekf.MITDB_ENV} or pass --mitdb)")
    for sp in _splits(split):
        for src in sources:
            lay = EKG_LAYOUT[src]
            if isinstance(lay["labelled"], dict) and sp not in lay["labelled"]:
                notes.append(f"{src} skipped in the {sp} split: the record has no portion left for it")
                continue
            span = lay["labelled"][sp] if isinstance(lay["labelled"], dict) else lay["labelled"]
            extra, keep_out, case_notes = [], [], []
            if src == "synthetic":
                x360 = ekf.synthetic_clean(span[1], _SEED[sp] + 1)
                desc = "pipeline.datasets.synthetic_ekg (no own anomalies)"
            elif src == "ecgsyn":
                try:
                    x360 = ekf.ecgsyn_clean(span[1], _SEED[sp] + 2, _ECGSYN_HR[sp])
                except ImportError:
                    if not any(n.startswith("ecgsyn") for n in notes):
                        notes.append("ecgsyn skipped: neurokit2 is not installed (pip install neurokit2)")
                    continue
                desc = f"neurokit2 ECGSYN, heart rate {_ECGSYN_HR[sp]:g}/min"
            else:
                if mitdb_path is None:
                    continue
                x360 = ekf.load_mitdb208(mitdb_path)
                desc = "MIT-BIH record 208, 19:35-24:35, MLII (unlabelled; many natural PVCs)"
                extra = [a for a in MITDB_ARTIFACTS if span[0] <= a[0] < span[1]]
                keep_out = [(a - 1.0, b + 2.0) for a, b, _ in extra]
                case_notes.append("natural PVCs of record 208 are NOT labelled: an alarm on one counts "
                                  "as a false alarm (list the false alarms before trusting FA/h here)")
            rng = np.random.default_rng(_SEED[sp] + 3 + EKG_SOURCES.index(src))
            counts = {k: lay["per_type"] for k in ekf.EKG_FAULTS}
            faults = ekf.plan_faults(x360, span[0], span[1], counts, rng, keep_out)
            parts = {"train": lay["train"], "calibrate": lay["calibrate"], "labelled": span}
            for rate in rates:
                y, events = ekf.inject(ekf.decimate(x360, rate), rate, faults)
                if extra:
                    events = pd.concat([events, pd.DataFrame(extra, columns=["start", "end", "type"])])
                events = events.sort_values("start", kind="stable").reset_index(drop=True)
                cases.append(Case(f"{src}_{rate}", "ekg", sp, desc, 1.0 / rate, ekf.quantize(y), events,
                                  dict(parts), "mV", notes=list(case_notes)))
    return Suite("ekg", cases, EKG_RULES, notes)


def sensor_suite(split="all", n_temperature: int = 50, n_humidity: int = 10) -> Suite:
    """The sensor suite: a temperature fleet (2 days) and a humidity fleet (6 days) per split.

    Both start at 06:00.  Temperature: train 0-12 h, calibrate 12-24 h,
    labelled 24-48 h (a whole day and night) with 3 each of finger, spike,
    freeze, drift and offset on 15 distinct sensors.  Humidity: train day 1,
    calibrate day 2, labelled days 3-6 with 3 slides.  The ``test`` split
    uses other seeds and is for reporting only: never tune on it.

    Examples
    --------
    >>> s = sensor_suite(split="test", n_temperature=20, n_humidity=4)
    >>> [(c.name, len(c.keys), len(c.events)) for c in s.cases]
    [('temperature', 20, 15), ('humidity', 4, 3)]
    """
    if n_temperature < 15 or n_humidity < 3:
        raise ValueError(f"the scenarios need >= 15 temperature and >= 3 humidity sensors, "
                         f"got {n_temperature} and {n_humidity}")
    h = sim.H
    cases = []
    for sp in _splits(split):
        rng = np.random.default_rng(_SEED[sp] + 10)
        n = int(48 * h / sim.CADENCE_S)
        v = sim.fleet("temperature", n_temperature, n, 6.0, rng)
        ev = sim.temperature_scenarios(v, (24 * h, 48 * h), 6.0, rng)
        v = sim.finish("temperature", v)
        sim.apply_freezes(v, ev)
        keys = [f"t{k:02d}" for k in range(n_temperature)]
        ev["sensor"] = [keys[k] for k in ev["sensor"]]
        cases.append(Case("temperature", "sensors", sp, f"simulated fleet of {n_temperature} sensors",
                          sim.CADENCE_S, v, ev.sort_values("start").reset_index(drop=True),
                          {"train": (0.0, 12 * h), "calibrate": (12 * h, 24 * h), "labelled": (24 * h, 48 * h)},
                          "degC", keys))
        rng = np.random.default_rng(_SEED[sp] + 11)
        n = int(144 * h / sim.CADENCE_S)
        v = sim.fleet("humidity", n_humidity, n, 6.0, rng)
        ev = sim.humidity_scenarios(v, (48 * h, 144 * h), rng)
        v = sim.finish("humidity", v)
        keys = [f"h{k:02d}" for k in range(n_humidity)]
        ev["sensor"] = [keys[k] for k in ev["sensor"]]
        cases.append(Case("humidity", "sensors", sp, f"simulated fleet of {n_humidity} sensors",
                          sim.CADENCE_S, v, ev.sort_values("start").reset_index(drop=True),
                          {"train": (0.0, 24 * h), "calibrate": (24 * h, 48 * h), "labelled": (48 * h, 144 * h)},
                          "%RH", keys))
    return Suite("sensors", cases, SENSOR_RULES)


# ---------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------
def _float_format(case: Case) -> str:
    return "%.6f" if case.suite == "ekg" else "%.2f"


def _write_csv(frame: pd.DataFrame, path: Path, float_format: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    frame.to_csv(tmp, index=False, float_format=float_format)
    os.replace(tmp, path)


def write_suite(suite: Suite, out) -> Path:
    """Write a suite under ``out/<suite.name>/`` (each file atomically, the manifest last)."""
    root = Path(out) / suite.name
    entries = []
    for c in suite.cases:
        folder = root / c.split
        folder.mkdir(parents=True, exist_ok=True)
        series, events = folder / f"{c.name}.series.csv", folder / f"{c.name}.events.csv"
        frame = c.series_frame()
        if float(c.period_s).is_integer():
            frame["time_s"] = frame["time_s"].round().astype(np.int64)
        _write_csv(frame, series, _float_format(c))
        _write_csv(c.events, events, "%.6f")
        entries.append({"name": c.name, "split": c.split, "source": c.source, "rate_hz": 1.0 / c.period_s,
                        "unit": c.unit, "parts": {k: list(v) for k, v in c.parts.items()},
                        "sensors": c.keys, "counts": c.counts(), "notes": c.notes,
                        "series": str(series.relative_to(root)), "events": str(events.relative_to(root))})
    manifest = {"suite": suite.name, "rules": vars(suite.rules), "notes": suite.notes, "cases": entries}
    tmp = root / "manifest.json.tmp"
    root.mkdir(parents=True, exist_ok=True)
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, root / "manifest.json")
    return root


def read_suite(folder) -> Suite:
    """Load a suite written by :func:`write_suite` (``folder`` holds ``manifest.json``)."""
    root = Path(folder)
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{root} holds no readable manifest.json ({e}); "
                         "generate the suites with python -m pipeline.suites --out DIR") from None
    cases = []
    for m in manifest["cases"]:
        frame = pd.read_csv(root / m["series"])
        events = pd.read_csv(root / m["events"])
        if m["sensors"]:
            values = frame["value"].to_numpy(np.float64).reshape(len(m["sensors"]), -1)
        else:
            values = frame["value"].to_numpy(np.float64)
        cases.append(Case(m["name"], manifest["suite"], m["split"], m["source"], 1.0 / m["rate_hz"], values,
                          events, {k: tuple(v) for k, v in m["parts"].items()}, m["unit"], m["sensors"],
                          m["notes"]))
    return Suite(manifest["suite"], cases, EventRules(**manifest["rules"]), manifest["notes"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.suites", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder to write the suites into")
    p.add_argument("--suite", choices=["ekg", "sensors", "all"], default="all")
    p.add_argument("--split", choices=["dev", "test", *HOLDOUTS, "all"], default="all",
                   help="all: dev and test (the holdout split is asked for by name)")
    p.add_argument("--mitdb", default=None,
                   help=f"folder of the record 208 excerpt (default ${ekf.MITDB_ENV} or "
                        "../shared/datasets/mitdb208_scipy_excerpt beside the repository)")
    p.add_argument("--no-ecgsyn", action="store_true", help="skip the ECGSYN source (the slowest)")
    p.add_argument("--rates", default="360,90", help="EKG sample rates in Hz, divisors of 360 "
                                                     "(default: %(default)s)")
    args = p.parse_args(argv)
    try:
        rates = tuple(int(r) for r in args.rates.split(","))
        if any(r <= 0 or 360 % r for r in rates):
            raise ValueError
    except ValueError:
        print(f"error: --rates must be divisors of 360 separated by commas, got {args.rates!r}",
              file=sys.stderr)
        return 2
    try:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        if not os.access(args.out, os.W_OK):
            raise OSError(f"cannot write to {args.out}; pass a writable --out")
        suites = []
        if args.suite in ("ekg", "all"):
            sources = tuple(s for s in EKG_SOURCES if not (args.no_ecgsyn and s == "ecgsyn"))
            suites.append(lambda: ekg_suite(args.split, rates, sources, args.mitdb))
        if args.suite in ("sensors", "all"):
            suites.append(lambda: sensor_suite(args.split))
        for make in suites:
            t = time.perf_counter()
            suite = make()
            root = write_suite(suite, args.out)
            for c in suite.cases:
                print(c.summary())
            for note in suite.notes:
                print(f"note: {note}")
            print(f"wrote {root} ({len(suite.cases)} cases, {time.perf_counter() - t:.1f} s)")
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
