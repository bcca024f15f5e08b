"""The alert engine: alarm episodes in, notifications out.  Pure: no I/O, no clock.

Vocabulary
----------
*Episode*
    A maximal run of consecutive ``alarm=True`` points of one
    (series, fan-out key, detector).  It starts at its first alarm point
    (one ALERT notification) and ends at the first non-alarm point after it
    (one RECOVERY notification, whose duration is the time between the two,
    as Kapacitor's alert duration).  Episodes may span any number of batches.
*Rule*
    One detector on one series, across all fan-out keys (``z-score on
    temperature`` covers sensors s01..s99).  The flood guard counts per rule.
*Flood guard*
    At most ``max_per_minute`` ALERTs per rule per minute of *data time*
    (minutes aligned on the epoch: ``time // 60 s``).  Past that, alerts are
    *suppressed*: they and their later recoveries still go to the alert
    history, but people get one SUMMARY per rule and minute instead.  A
    minute's summary is emitted once the rule's newest data (any key) has
    passed the end of that minute; a fan-out key lagging behind that can add
    to a minute already summarized, which then gets a second summary.  Counts
    are kept for :data:`KEEP_MINUTES` minutes behind the rule's newest data.

Time base: the data's timestamps, never the wall clock, so a backfill or a
replay gives the same notifications as the live run that saw the same data.

Replays: each (series, key, detector) remembers the time of the last point it
saw; points at or before it are ignored.  Feeding a batch twice (a restart
that redoes a batch whose notifications were already saved) is a no-op.

Order: :meth:`AlertEngine.feed` only records what changed; :meth:`AlertEngine.flush`
(once per batch) applies the flood guard to the batch's events in time order
(ties: series, key, detector), so the result does not depend on the order in
which keys were fed within a batch.

The engine knows no detector by name: it reads ``name``, ``label``,
``score_field``, ``threshold_field``, ``measurement``, ``times``, ``score``,
``threshold`` and ``alarm`` from what it is fed.

Examples
--------
>>> import numpy as np
>>> from types import SimpleNamespace as NS
>>> out = NS(name="zscore", label="z-score", score_field="z", threshold_field="z_threshold",
...          measurement="zscore", times=np.arange(4) * 2_000_000_000,
...          score=np.array([0.1, 4.0, 5.0, 0.2]), threshold=3.0,
...          alarm=np.array([False, True, True, False]))
>>> eng = AlertEngine(max_per_minute=5)
>>> eng.feed("temperature", "s01", {"series": "temperature", "sensor": "s01"}, "m1", out)
>>> for n in eng.flush():
...     print(n.text)
[CRITICAL] z-score on temperature (sensor=s01): z = 4, threshold 3, at 1970-01-01T00:00:02Z, model m1
[OK] z-score on temperature (sensor=s01) recovered after 4s: z = 0.2, threshold 3, peak 5, at 1970-01-01T00:00:06Z, model m1
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np

from .messages import (
    ALERT,
    RECOVERY,
    SUMMARY,
    Notification,
    alert_text,
    recovery_text,
    summary_text,
)

__all__ = ["AlertEngine", "MINUTE_NS", "KEEP_MINUTES", "STATE_VERSION"]

MINUTE_NS = 60_000_000_000
KEEP_MINUTES = 10
"""Minutes of flood-guard counts kept behind a rule's newest data."""
STATE_VERSION = 1
_KIND_ORDER = {ALERT: 0, RECOVERY: 1, SUMMARY: 2}


def _fin(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def _alert_id(series: str, det: str, key: str = "") -> str:
    """``series:detector[:key]``, each part with ``\\`` and ``:`` escaped, so that two alerts
    never share an id (``x:zscore`` + ``flatline`` against ``x`` + ``zscore`` + key ``flatline``).

    >>> _alert_id("ekg", "shape"), _alert_id("x:zscore", "flatline"), _alert_id("x", "zscore", "flatline")
    ('ekg:shape', 'x\\\\:zscore:flatline', 'x:zscore:flatline')
    """
    def part(s):
        return str(s).replace("\\", "\\\\").replace(":", "\\:")
    return ":".join(part(p) for p in (series, det, *((key,) if key else ())))


class AlertEngine:
    """Episodes and flood guard for every (series, fan-out key, detector).

    Parameters
    ----------
    max_per_minute : int, default=5
        ALERTs per rule and minute of data time before the flood guard
        suppresses the rest into one summary.
    """

    def __init__(self, max_per_minute: int = 5):
        self.max_per_minute = max_per_minute
        # keys[series][key][detector] = {"last": int|None, "open": episode|None}
        self._keys: dict = {}
        # rules[series][detector] = {"mark": int, "minutes": {str(minute): bucket}}
        self._rules: dict = {}
        self._pending: list = []
        self._marks: dict = {}

    # -- feeding -------------------------------------------------------------
    def feed(self, series: str, key: str, tags: Mapping, model: str | None, output) -> None:
        """Record the episode changes in one detector's output for one series key.

        Parameters
        ----------
        series : str
            The config's series name.
        key : str
            The fan-out tag value (``""`` when not fanned out).
        tags : mapping
            The tags of the output points (shown in messages, written to history).
        model : str or None
            The model version, shown in messages.
        output : DetectorOutput-like
            ``times`` (int64 ns, ascending), ``score``, ``threshold`` (float or
            array), ``alarm`` (bool array) and the detector's ``name``,
            ``label``, ``score_field``, ``threshold_field``, ``measurement``.
        """
        if not isinstance(self.max_per_minute, int) or self.max_per_minute < 1:
            raise ValueError(f"max_per_minute must be an integer >= 1, got {self.max_per_minute!r}")
        times = np.asarray(output.times)
        if times.dtype.kind not in "iu":
            raise ValueError(f"times must be int64 ns, got dtype {times.dtype}")
        n = len(times)
        if n == 0:
            return
        if n > 1 and np.any(np.diff(times) <= 0):
            raise ValueError(f"times of {series}/{key}/{output.name} must be strictly increasing")
        alarm = np.asarray(output.alarm, dtype=bool)
        score = np.asarray(output.score, dtype=np.float64)
        thr = np.broadcast_to(np.asarray(output.threshold, dtype=np.float64), (n,))
        if alarm.shape != (n,) or score.shape != (n,):
            raise ValueError(f"{output.name}: times, score and alarm must have the same length")
        det = output.name
        st = self._keys.setdefault(series, {}).setdefault(key, {}).setdefault(
            det, {"last": None, "open": None})
        i0 = 0 if st["last"] is None else int(np.searchsorted(times, st["last"], side="right"))
        if i0 >= n:
            return  # a replay: everything here was seen
        mark_key = (series, det)
        self._marks[mark_key] = max(self._marks.get(mark_key, -(2**63)), int(times[-1]))
        a = alarm[i0:]
        if st["open"] is None and not a.any():  # the common case: quiet, nothing to record
            st["last"] = int(times[-1])
            return
        info = {"series": series, "key": key, "tags": {str(k): str(v) for k, v in tags.items()},
                "model": model, "detector": det, "label": output.label,
                "score_field": output.score_field, "threshold_field": output.threshold_field,
                "measurement": output.measurement}
        prev = np.concatenate(([st["open"] is not None], a[:-1]))
        starts = np.flatnonzero(a & ~prev) + i0
        ends = np.flatnonzero(~a & prev) + i0
        # walk the runs: each alarm run [s, e) with e == n when still open
        bounds = sorted([(int(i), 1) for i in starts] + [(int(i), 0) for i in ends])
        run_from = i0 if st["open"] is not None else None
        for i, is_start in bounds:
            if is_start:
                ep = {"start": int(times[i]), "peak": None, "suppressed": None,
                      "alert_id": _alert_id(series, det, key)}
                st["open"] = ep
                run_from = i
                self._pending.append((int(times[i]), ALERT, info, ep,
                                      _fin(score[i]), _fin(thr[i])))
            else:
                ep = st["open"]
                _update_peak(ep, score[run_from:i])
                self._pending.append((int(times[i]), RECOVERY, info, ep,
                                      _fin(score[i]), _fin(thr[i])))
                st["open"] = None
                run_from = None
        if st["open"] is not None:
            _update_peak(st["open"], score[run_from:])
        st["last"] = int(times[-1])

    # -- flushing ------------------------------------------------------------
    def flush(self, final: bool = False) -> list[Notification]:
        """Apply the flood guard to what was fed since the last flush; return the notifications.

        Call once per batch, after every key was fed.  ``final=True`` also
        emits the summaries of minutes that are not over yet (end of a
        backfill).  Notifications come in time order.
        """
        pending, self._pending = self._pending, []
        pending.sort(key=lambda p: (p[0], p[2]["series"], p[2]["key"], p[2]["detector"],
                                    _KIND_ORDER[p[1]]))
        out = []
        for t, kind, info, ep, value, thr in pending:
            rule = self._rule(info["series"], info["detector"])
            if kind == ALERT:
                b = _bucket(rule, t)
                ep["suppressed"] = b["sent"] >= self.max_per_minute
                if ep["suppressed"]:
                    b["alerts"].append(info["key"])
                else:
                    b["sent"] += 1
            elif ep["suppressed"]:
                _bucket(rule, t)["recoveries"].append(info["key"])
            out.append(self._notification(kind, t, info, ep, value, thr))
        marks, self._marks = self._marks, {}
        for (series, det), mark in marks.items():
            rule = self._rule(series, det)
            rule["mark"] = max(rule["mark"], mark) if rule["mark"] is not None else mark
        for series, dets in self._rules.items():
            for det, rule in dets.items():
                out += self._close_minutes(series, det, rule, final)
        out.sort(key=lambda n: (n.time_ns, n.series, n.key, n.detector, _KIND_ORDER[n.kind]))
        return out

    def _rule(self, series: str, det: str) -> dict:
        return self._rules.setdefault(series, {}).setdefault(
            det, {"mark": None, "minutes": {}, "label": None})

    def _notification(self, kind, t, info, ep, value, thr) -> Notification:
        series, key, det = info["series"], info["key"], info["detector"]
        # the id the episode was opened with: its recovery pairs with its alert, also for an
        # episode opened before ids escaped their names (saved state without "alert_id")
        alert_id = ep.get("alert_id") or f"{series}:{det}" + (f":{key}" if key else "")
        self._rule(series, det)["label"] = info["label"]
        common = dict(alert_id=alert_id, series=series, key=key, detector=det,
                      label=info["label"], time_ns=t, tags=dict(info["tags"]),
                      score_field=info["score_field"], threshold_field=info["threshold_field"],
                      measurement=info["measurement"], value=value, threshold=thr,
                      model=info["model"], start_ns=ep["start"], suppressed=ep["suppressed"])
        if kind == ALERT:
            text = alert_text(info["label"], series, info["tags"], info["score_field"], value,
                              thr, t, info["model"])
            return Notification(kind=ALERT, id=f"{alert_id}:alert:{t}", text=text,
                                duration_ns=0, peak=value, **common)
        dur = t - ep["start"]
        text = recovery_text(info["label"], series, info["tags"], info["score_field"], value,
                             thr, ep["peak"], t, dur, info["model"])
        return Notification(kind=RECOVERY, id=f"{alert_id}:recovery:{t}", text=text,
                            duration_ns=dur, peak=ep["peak"], **common)

    def _close_minutes(self, series, det, rule, final) -> list[Notification]:
        out = []
        mark = rule["mark"]
        for m in sorted(rule["minutes"], key=int):
            b = rule["minutes"][m]
            start = int(m) * MINUTE_NS
            over = mark is not None and start + MINUTE_NS <= mark
            if (b["alerts"] or b["recoveries"]) and (over or final):
                label = rule["label"] or det
                rid = _alert_id(series, det)
                out.append(Notification(
                    kind=SUMMARY, id=f"{rid}:summary:{start}:{b['summaries']}", alert_id=rid,
                    series=series, key="", detector=det, label=label, time_ns=start + MINUTE_NS,
                    text=summary_text(label, series, start, self.max_per_minute, b["alerts"],
                                      b["recoveries"]),
                    tags={"series": series}, limit=self.max_per_minute,
                    suppressed_alerts=list(b["alerts"]),
                    suppressed_recoveries=list(b["recoveries"])))
                b["alerts"], b["recoveries"] = [], []
                b["summaries"] += 1
            if mark is not None and start + (KEEP_MINUTES + 1) * MINUTE_NS <= mark \
                    and not (b["alerts"] or b["recoveries"]):
                del rule["minutes"][m]
        return out

    # -- state ---------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to resume exactly, as plain JSON-able data.

        Raises ``RuntimeError`` if fed data was not flushed yet (its events
        would be lost).
        """
        if self._pending or self._marks:
            raise RuntimeError("AlertEngine.state_dict() before flush(): call flush() first")
        return {"version": STATE_VERSION, "max_per_minute": self.max_per_minute,
                "keys": copy.deepcopy(self._keys), "rules": copy.deepcopy(self._rules)}

    @classmethod
    def from_state(cls, state: Mapping, max_per_minute: int | None = None) -> AlertEngine:
        """Rebuild from :meth:`state_dict` (``max_per_minute`` overrides the saved limit)."""
        if not isinstance(state, Mapping) or state.get("version") != STATE_VERSION:
            raise ValueError("alert engine state is not from this version of pipeline.alerts")
        try:
            eng = cls(max_per_minute=int(max_per_minute or state["max_per_minute"]))
            eng._keys = copy.deepcopy(dict(state["keys"]))
            eng._rules = copy.deepcopy(dict(state["rules"]))
            for dets in eng._keys.values():
                for d in dets.values():
                    for st in d.values():
                        if set(st) != {"last", "open"}:
                            raise ValueError(f"bad key state {st!r}")
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"alert engine state is malformed ({type(e).__name__}: {e})") from None
        return eng


def _bucket(rule: dict, t: int) -> dict:
    return rule["minutes"].setdefault(str(t // MINUTE_NS),
                                      {"sent": 0, "alerts": [], "recoveries": [], "summaries": 0})


def _update_peak(ep: dict, scores: np.ndarray) -> None:
    """Keep the score of largest magnitude of the episode (NaN ignored)."""
    if len(scores) == 0:
        return
    mag = np.abs(scores)
    mag = np.where(mag == mag, mag, -1.0)  # NaN never peaks (cheaper than nanargmax)
    i = int(mag.argmax())
    if mag[i] < 0:
        return  # all NaN
    if ep["peak"] is None or mag[i] > abs(ep["peak"]):
        ep["peak"] = float(scores[i])
