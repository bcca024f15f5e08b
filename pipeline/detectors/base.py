"""The detector protocol: fit on normal runs, calibrate to an alarm budget, stream as data.

Every detector (shape, flat line, baseline step, noise, z-score, drift,
fleet) is a small class with the same life cycle, so the stream, the alert
path and ``pipeline.evaluate`` loop over a list of them and name none:

1. ``fit(runs, period_ns)`` learns from normal data.  ``runs`` is a list of
   ``(times_ns, values)`` pairs, each a regular run without gaps.
2. ``calibrate(runs, period_ns, budget)`` sets ``threshold_`` on *held-out*
   normal runs so that alarm events stay within ``budget`` (events per
   hour; :mod:`pipeline.calibrate`), and records the evidence in
   ``calibration_``.  A detector whose fit learns only a number or two (a
   tolerance, a scale) has no in-sample optimism to fear, so
   ``calibrate_on_training = True`` asks :func:`pipeline.train.train` to
   calibrate it on the training runs *and* the held-out ones: more normal
   data, and data more like a whole day (a sensor trained 06:00-18:00 and
   validated 18:00-06:00 has seen the morning rise only in training).
   Only the drift detector does: its alarms come from the *slow* part of
   normal data, which needs hours to show.  The z-score and the flat line
   react to single events (a spike, a held value): one such event in the
   training range would set their threshold, so they stay on held-out data;
   the shape detector (thousands of centroid values) has in-sample optimism.
   A detector whose calibrated threshold would be useless for this series
   (the rolling z-score on an EKG) sets ``enabled_ = False`` with the
   reason in ``calibration_["why_off"]``.
3. ``new_state()`` gives a streaming :class:`DetectorState`.  Its
   ``update_many(times_ns, values)`` returns a :class:`DetectorOutput`:
   scores, the threshold and boolean alarms.  Feeding a series in any
   chunking gives the same output as feeding it at once.
4. ``to_data()`` / ``from_data()`` and ``DetectorState.get_data()`` /
   ``set_data()`` turn parameters, learned state and streaming state into
   JSON and numpy arrays: model files and checkpoints hold data only, so
   loading one can never run code.

Alarms and events
-----------------
A detector's raw alarm condition ("score above threshold", or a streak of
them) is *held* for ``hold_ns`` after its last raw hit, so flags closer
than the hold are one episode: the alarm events that calibration counts,
that ``evaluate`` counts, and that the alert path turns into one alert and
one recovery are the same maximal runs of ``alarm == True``.

Sign convention: higher ``|score|`` is more anomalous; NaN in, NaN out, and
NaN never alarms.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

__all__ = ["Detector", "DetectorState", "DetectorOutput", "Budget", "hold_alarm", "REGISTRY",
           "register", "default_hold_ns"]

REGISTRY: dict[str, type] = {}
"""Detector classes by ``name``: how model files and checkpoints find their class."""


def register(cls):
    """Class decorator: make a detector loadable from a model file by its ``name``."""
    REGISTRY[cls.name] = cls
    return cls


def default_hold_ns(period_ns: float) -> int:
    """How long an alarm is held after its last hit: 1 s, and at least 3 sample periods.

    >>> default_hold_ns(1e9 / 360), default_hold_ns(2e9)
    (1000000000, 6000000000)
    """
    return int(max(1e9, 3 * float(period_ns)))


@dataclass(frozen=True)
class Budget:
    """An alarm budget: at most ``per_hour`` alarm events per hour of normal data.

    >>> Budget.per_day(1).per_hour
    0.041666666666666664
    """

    per_hour: float

    def __post_init__(self):
        if not (isinstance(self.per_hour, (int, float)) and 0 < self.per_hour <= 3600):
            raise ValueError(f"the alarm budget must be in (0, 3600] events per hour, "
                             f"got {self.per_hour!r}")

    @classmethod
    def per_day(cls, n: float) -> Budget:
        return cls(float(n) / 24.0)

    def split(self, k: int) -> Budget:
        """The share of one of ``k`` detectors, so that their union stays within the budget."""
        return Budget(self.per_hour / max(1, k))

    def __str__(self) -> str:
        per_day = self.per_hour * 24
        return f"{per_day:.3g} per day" if per_day < 24 else f"{self.per_hour:.3g} per hour"


@dataclass
class DetectorOutput:
    """What a detector's streaming state returns for one chunk.

    Attributes
    ----------
    times : int64 array
        Where each score lies (a sample's time, or a segment's centre).
    score : float64 array
        Higher ``|score|`` is more anomalous.
    alarm : bool array
        The held alarm: maximal runs of True are episodes.
    threshold : float
        The calibrated threshold ``|score|`` is compared with.
    extra : dict
        The detector's diagnostics (``Detector.extra_fields``), each an array as long as
        ``times``: always computed, written only when asked (``fields(diagnostics=True)``).
    """

    detector: Detector
    times: np.ndarray
    score: np.ndarray
    alarm: np.ndarray
    threshold: float
    extra: dict = field(default_factory=dict)

    measurement: str | None = None
    """Where the stream writes it (set by the stream; the alert path shows it)."""

    def __len__(self) -> int:
        return len(self.times)

    def __getattr__(self, attr):
        # the detector's names: name, label, score_field, threshold_field, alarm_field
        if attr in ("name", "label", "score_field", "threshold_field", "alarm_field"):
            return getattr(self.detector, attr)
        raise AttributeError(attr)

    def fields(self, diagnostics: bool = False) -> dict:
        """The fields to write, under the detector's field names.

        Every detector writes its alarm on every point, and its score too,
        except where a per-sample detector's score is its ``score_omitted``
        (the flat line's 0 s) and the point is not in alarm.  A per-sample
        detector writes its threshold only on its alarm points (where an
        alert message shows it); elsewhere the field is left out (NaN): each
        value left out saves what influxd needs to ingest it, the bulk of the
        stream's cost per sample.  The threshold is in the model file too.  A
        segment detector writes it on every point (the tutorial's schema).
        The detector's diagnostics
        (``extra``: the z-score's ``streak`` and ``zscore``) are added only
        with ``diagnostics=True`` (``[output] diagnostics``): every field on
        every sample costs the stream rate (``bench/README.md``, bench_stream).

        >>> from pipeline.detectors import FlatLineDetector, ZScoreDetector
        >>> o = DetectorOutput(FlatLineDetector(), np.arange(5), np.zeros(5),
        ...                    np.array([False, False, True, False, False]), 2.0)
        >>> o.fields()["flat_threshold"].tolist()
        [nan, nan, 2.0, nan, nan]
        >>> o.fields()["flat_s"].tolist()                 # 0 s: the sample starts a run
        [nan, nan, 0.0, nan, nan]
        >>> z = DetectorOutput(ZScoreDetector(), np.arange(2), np.zeros(2), np.zeros(2, bool), 6.0,
        ...                    {"streak": np.zeros(2, np.int64), "zscore": np.zeros(2)})
        >>> sorted(z.fields()), sorted(z.fields(diagnostics=True))
        (['alert', 'z', 'z_threshold'], ['alert', 'streak', 'z', 'z_threshold', 'zscore'])
        """
        d = self.detector
        thr = np.full(len(self), self.threshold)
        score = self.score
        if d.per_sample and len(self):
            quiet = ~np.asarray(self.alarm, bool)
            thr[quiet] = np.nan
            if d.score_omitted is not None:
                score = np.where(quiet & (score == d.score_omitted), np.nan, score)
        out = {d.score_field: score, d.threshold_field: thr, d.alarm_field: self.alarm}
        if diagnostics:
            out.update(self.extra)
        return out


def hold_alarm(times, raw, hold_ns: int, last_hit_ns: int | None):
    """Hold a raw alarm for ``hold_ns`` after each hit; return ``(alarm, last_hit_ns)``.

    ``last_hit_ns`` carries the last hit across chunks (``None`` before any).

    >>> a, last = hold_alarm([0, 1, 2, 3, 10], [True, False, False, False, False], 2, None)
    >>> a.tolist(), last
    ([True, True, True, False, False], 0)
    >>> hold_alarm([11, 12], [False, False], 2, 10)[0].tolist()
    [True, True]
    """
    t = np.asarray(times, np.int64)
    raw = np.asarray(raw, bool)
    idx = np.where(raw, np.arange(len(t)), -1)
    last_idx = np.maximum.accumulate(idx) if len(t) else idx
    last_t = np.where(last_idx >= 0, t[np.maximum(last_idx, 0)],
                      np.iinfo(np.int64).min if last_hit_ns is None else last_hit_ns)
    if last_hit_ns is None:
        alarm = (last_idx >= 0) & (t - last_t <= hold_ns)
    else:
        alarm = t - last_t <= hold_ns
    if raw.any():
        last_hit_ns = int(t[np.flatnonzero(raw)[-1]])
    return alarm, last_hit_ns


class DetectorState(ABC):
    """Streaming state of one detector on one series key."""

    @abstractmethod
    def update_many(self, times_ns, values) -> DetectorOutput:
        """Absorb new samples (strictly after the previous ones); return their output."""

    @abstractmethod
    def get_data(self) -> tuple[dict, dict]:
        """The state as ``(json_dict, {name: ndarray})``."""

    @abstractmethod
    def set_data(self, meta: dict, arrays: dict) -> None:
        """Restore what :meth:`get_data` returned."""


class Detector(ABC):
    """One detector of a model file (see the module docstring for the life cycle).

    Subclasses set the class attributes below, store their constructor
    arguments unchanged (scikit-learn style), and implement ``fit``,
    ``calibration_scores``, ``new_state`` and the data round trip.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    per_sample: ClassVar[bool]
    score_field: ClassVar[str]
    threshold_field: ClassVar[str]
    alarm_field: ClassVar[str]
    extra_fields: ClassVar[tuple] = ()
    """Diagnostics beyond score, threshold and alarm (``DetectorOutput.extra``); the stream
    writes them only with ``[output] diagnostics = true``."""
    score_omitted: ClassVar[float | None] = None
    """A per-sample detector's score that is left out of the points it would fill with
    nothing to say (the flat line's 0 s: the sample differs from the one before), unless the
    point is in alarm: a reader takes a point without the score as this value.  ``None``:
    the score is on every point."""
    calibrate_on_training: ClassVar[bool] = False
    """True when ``fit`` learns so little that training data may calibrate too (see above)."""
    cross_key: ClassVar[bool] = False
    """True for a detector that compares the keys of a fleet with each other (the fleet
    baseline): ``fit`` and ``calibrate`` take every key's runs at once, and ``new_state()`` is
    one state for the whole fleet with the block interface of
    :mod:`pipeline.detectors.block` (``update(rows, starts, times, values)``, ``grow(n)``),
    whose output points lie where the detector puts them, not one per input point."""

    enabled_: bool = True
    threshold_: float | None = None
    calibration_: dict | None = None
    period_ns_: float | None = None

    @abstractmethod
    def fit(self, runs, period_ns: float) -> Detector:
        """Learn from normal runs ``[(times_ns, values), ...]``; return self."""

    @abstractmethod
    def calibration_scores(self, times_ns, values) -> tuple[np.ndarray, np.ndarray]:
        """``(times, stat)`` on one held-out run: an alarm starts where ``stat > threshold``."""

    def calibrate(self, runs, period_ns: float, budget: Budget) -> Detector:
        """Set ``threshold_`` so alarm events on held-out normal runs stay within ``budget``."""
        from ..calibrate import calibrate_threshold

        stats = [self.calibration_scores(t, v) for t, v in runs]
        hours = sum(max(0.0, (int(t[-1]) - int(t[0]) + period_ns) / 3.6e12)
                    for t, _ in runs if len(t))
        res = calibrate_threshold(stats, hours, budget, self.hold_ns(period_ns),
                                  decluster_ns=self.decluster_ns(period_ns))
        self.threshold_ = float(max(res.threshold, self._min_threshold()))
        self.calibration_ = res.evidence()
        self.calibration_["threshold"] = self.threshold_
        self._after_calibrate()
        return self

    def _min_threshold(self) -> float:
        return -np.inf

    def _after_calibrate(self) -> None:
        """Hook: decide ``enabled_`` from the calibrated threshold."""
        return None

    def hold_ns(self, period_ns: float | None = None) -> int:
        return default_hold_ns(period_ns or self.period_ns_ or 1e9)

    def output_period_ns(self) -> float:
        """Spacing of the output points: the sample period, or a segment detector's slide."""
        return float(self.period_ns_ or 1e9)

    def lookahead_ns(self) -> int:
        """How far after a point's time lies the last sample it needs (0 for a per-sample
        detector; a segment detector stamps its centre): what a reader of a window adds at
        its end to compute every point inside it."""
        return 0

    def lookback_ns(self) -> int:
        """How far before a point's time lies the first sample it needs (0 for a per-sample
        detector): what a reader adds before a window, beside the warm-up of a baseline."""
        return 0

    def decluster_ns(self, period_ns: float | None = None) -> int:
        """How far apart calibration's tail fit takes peaks to be independent (default: the
        hold; a slow statistic says how long its excursions last)."""
        return self.hold_ns(period_ns)

    @abstractmethod
    def new_state(self) -> DetectorState:
        """A fresh streaming state (requires a calibrated detector)."""

    # -- data round trip --------------------------------------------------
    def get_params(self) -> dict:
        """Constructor arguments (JSON-able), read off ``__init__``'s signature as scikit-learn
        does: ``__init__`` stores each argument under its own name."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {n: getattr(self, n) for n in names}

    def fitted_data(self) -> tuple[dict, dict]:
        """Learned state beyond threshold and calibration: ``(json, arrays)``."""
        return {}, {}

    def set_fitted(self, meta: dict, arrays: dict) -> None:
        """Restore :meth:`fitted_data`."""
        return None

    def to_data(self) -> tuple[dict, dict]:
        meta, arrays = self.fitted_data()
        return {"name": self.name, "params": self.get_params(), "fitted": meta,
                "enabled": bool(self.enabled_), "threshold": self.threshold_,
                "period_ns": self.period_ns_, "calibration": self.calibration_}, arrays

    @classmethod
    def from_data(cls, meta: dict, arrays: dict) -> Detector:
        kind = REGISTRY.get(meta.get("name"))
        if kind is None:
            raise ValueError(f"unknown detector {meta.get('name')!r} "
                             f"(known: {sorted(REGISTRY)})")
        det = kind(**meta["params"])
        det.set_fitted(meta.get("fitted") or {}, arrays)
        det.enabled_ = bool(meta.get("enabled", True))
        det.threshold_ = None if meta.get("threshold") is None else float(meta["threshold"])
        det.period_ns_ = None if meta.get("period_ns") is None else float(meta["period_ns"])
        det.calibration_ = meta.get("calibration")
        return det

    def describe(self) -> str:
        """One line for people: what it is, its threshold, or why it is off."""
        if not self.enabled_:
            why = (self.calibration_ or {}).get("why_off", "")
            return f"{self.label}: off ({why})" if why else f"{self.label}: off"
        c = self.calibration_ or {}
        return (f"{self.label}: threshold {self.threshold_:.4g} on {self.score_field} "
                f"({c.get('method', '?')}, {c.get('n_events', '?')} alarm events in "
                f"{c.get('hours', 0):.3g} h of held-out normal data)")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
