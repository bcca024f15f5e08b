"""The alert engine: episodes across batches, flood guard, exact texts, JSON state."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from pipeline.alerts import AlertEngine
from pipeline.alerts.rules import MINUTE_NS

from naive import naive_episodes

S = 1_000_000_000
T0 = 1_767_225_600 * S  # 2026-01-01T00:00:00Z


def out(times, alarm, score=None, threshold=3.0, name="zscore", label="z-score",
        score_field="z"):
    alarm = np.asarray(alarm, dtype=bool)
    if score is None:
        score = np.where(alarm, 4.0, 0.5)
    return SimpleNamespace(name=name, label=label, score_field=score_field,
                           threshold_field="z_threshold", measurement="zscore",
                           times=np.asarray(times, dtype=np.int64),
                           score=np.asarray(score, dtype=np.float64), threshold=threshold,
                           alarm=alarm)


def tags(series="temperature", key="s01"):
    t = {"series": series, "model": "m1"}
    if key:
        t["sensor"] = key
    return t


def feed_batches(eng, batches, series="temperature", key="s01", **kw):
    notes = []
    for t, a, *s in batches:
        eng.feed(series, key, tags(series, key), "m1", out(t, a, *s, **kw))
        notes += eng.flush()
    return notes


def kinds(notes):
    return [(n.kind, (n.time_ns - T0) // S) for n in notes]


# ---------------------------------------------------------------------------
# episodes: a table of small hand cases (times in seconds after T0)
# ---------------------------------------------------------------------------
CASES = [
    # (batches of (times s, alarm), expected (kind, t s))
    ("no alarm", [([0, 1, 2], [0, 0, 0])], []),
    ("one point episode", [([0, 1, 2], [0, 1, 0])], [("alert", 1), ("recovery", 2)]),
    ("starts at first point", [([0, 1, 2], [1, 1, 0])], [("alert", 0), ("recovery", 2)]),
    ("still open at end", [([0, 1, 2], [0, 1, 1])], [("alert", 1)]),
    ("two episodes", [([0, 1, 2, 3, 4], [1, 0, 1, 1, 0])],
     [("alert", 0), ("recovery", 1), ("alert", 2), ("recovery", 4)]),
    ("spans a batch boundary", [([0, 1], [0, 1]), ([2, 3], [1, 0])],
     [("alert", 1), ("recovery", 3)]),
    ("spans three batches", [([0], [1]), ([1], [1]), ([2], [1]), ([3, 4], [1, 0])],
     [("alert", 0), ("recovery", 4)]),
    ("ends on a batch's first point", [([0, 1], [1, 1]), ([2, 3], [0, 0])],
     [("alert", 0), ("recovery", 2)]),
    ("empty batch in between", [([0], [1]), ([], []), ([5], [0])],
     [("alert", 0), ("recovery", 5)]),
    ("replayed batch is ignored", [([0, 1], [0, 1]), ([0, 1], [0, 1]), ([2], [0])],
     [("alert", 1), ("recovery", 2)]),
    ("overlapping replay only adds the new points", [([0, 1], [0, 1]), ([1, 2], [1, 0])],
     [("alert", 1), ("recovery", 2)]),
]


@pytest.mark.parametrize("batches, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_episode_table(batches, expected):
    eng = AlertEngine(max_per_minute=100)
    b = [([T0 + t * S for t in ts], a) for ts, a in batches]
    assert kinds(feed_batches(eng, b)) == expected


def test_recovery_duration_value_and_peak():
    eng = AlertEngine()
    t = [T0 + s * S for s in (0, 2, 4, 6, 90)]
    notes = feed_batches(eng, [(t[:3], [0, 1, 1], [0.1, 3.5, -7.25]),
                               (t[3:], [1, 0], [5.0, 0.25])])
    alert, rec = notes
    assert (alert.kind, alert.value, alert.threshold, alert.duration_ns) == ("alert", 3.5, 3.0, 0)
    assert (rec.kind, rec.value, rec.peak, rec.start_ns) == ("recovery", 0.25, -7.25, t[1])
    assert rec.duration_ns == 88 * S
    assert rec.text == ("[OK] z-score on temperature (sensor=s01) recovered after 1m28s: "
                        "z = 0.25, threshold 3, peak -7.25, at 2026-01-01T00:01:30Z, model m1")
    assert alert.text == ("[CRITICAL] z-score on temperature (sensor=s01): z = 3.5, threshold 3, "
                          "at 2026-01-01T00:00:02Z, model m1")
    assert alert.id == f"temperature:zscore:s01:alert:{t[1]}"
    assert alert.alert_id == rec.alert_id == "temperature:zscore:s01"


def test_texts_of_a_segment_detector_without_fan_out():
    eng = AlertEngine()
    o = out([T0 + 250_000_000, T0 + 500_000_000], [1, 0], [12.3456, 2.0], threshold=8.8,
            name="shape", label="shape", score_field="max_error")
    eng.feed("ekg", "", {"series": "ekg", "source": "synthetic", "model": "0123456789ab"},
             "0123456789ab", o)
    a, r = eng.flush()
    assert a.text == ("[CRITICAL] shape on ekg (source=synthetic): max_error = 12.35, "
                      "threshold 8.8, at 2026-01-01T00:00:00.25Z, model 0123456789ab")
    assert r.text == ("[OK] shape on ekg (source=synthetic) recovered after 250ms: "
                      "max_error = 2, threshold 8.8, peak 12.35, at 2026-01-01T00:00:00.5Z, "
                      "model 0123456789ab")
    assert a.alert_id == "ekg:shape"


@pytest.mark.parametrize("seed", range(20))
def test_any_split_into_batches_equals_the_naive_reference(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    times = T0 + np.cumsum(rng.integers(1, 5, n)) * S
    alarm = rng.random(n) < rng.uniform(0.1, 0.9)
    score = rng.normal(0, 5, n)
    score[rng.random(n) < 0.1] = np.nan
    cuts = np.sort(rng.choice(np.arange(1, n + 1), size=min(n, 4), replace=False))
    eng = AlertEngine(max_per_minute=10_000)
    got, lo = [], 0
    for hi in [*cuts.tolist(), n]:
        eng.feed("s", "k", {}, None, out(times[lo:hi], alarm[lo:hi], score[lo:hi]))
        got += eng.flush()
        lo = hi
    want = naive_episodes(times, alarm, score)

    def nanfree(x):
        return None if x is None or x != x else x

    assert [(g.kind, g.time_ns, nanfree(g.value), g.start_ns, nanfree(g.peak)) for g in got] == \
        [(k, t, nanfree(v), s, nanfree(p)) for k, t, v, s, p in want]


# ---------------------------------------------------------------------------
# flood guard
# ---------------------------------------------------------------------------
def flood(eng, n_keys, t_alarm, t_end, recover_at=None):
    """Every key alarms at t_alarm (s); data runs to t_end; optional recovery time."""
    notes = []
    for i in range(n_keys):
        key = f"s{i + 1:02d}"
        ts = sorted({0, t_alarm, t_end} | ({recover_at} if recover_at else set()))
        alarm = [t_alarm <= t < (recover_at or 10**9) for t in ts]
        eng.feed("temperature", key, tags(key=key), "m1",
                 out([T0 + t * S for t in ts], alarm))
    notes += eng.flush()
    return notes


def test_flood_guard_sends_n_then_one_exact_summary():
    eng = AlertEngine(max_per_minute=5)
    notes = flood(eng, 12, t_alarm=70, t_end=130)  # all alarm in minute 1; data reaches 2:10
    sent = [n for n in notes if n.kind == "alert" and not n.suppressed]
    assert [n.key for n in sent] == ["s01", "s02", "s03", "s04", "s05"]
    assert sum(n.suppressed for n in notes) == 7
    (summary,) = [n for n in notes if n.kind == "summary"]
    assert summary.text == (
        "[SUPPRESSED] z-score on temperature, minute from 2026-01-01T00:01:00Z (limit 5 alerts "
        "per minute): 7 more alerts suppressed (s06, s07, s08, s09, s10, s11, s12)")
    assert summary.time_ns == T0 + 2 * MINUTE_NS
    assert summary.id == f"temperature:zscore:summary:{T0 + MINUTE_NS}:0"


def test_summary_waits_until_the_minute_is_over_in_data_time():
    eng = AlertEngine(max_per_minute=2)
    notes = flood(eng, 4, t_alarm=70, t_end=110)  # data only reaches 1:50
    assert not [n for n in notes if n.kind == "summary"]
    for i in range(4):  # next batch: data passes 2:00
        key = f"s{i + 1:02d}"
        eng.feed("temperature", key, tags(key=key), "m1", out([T0 + 121 * S], [True]))
    (summary,) = eng.flush()
    assert summary.kind == "summary" and summary.suppressed_alerts == ["s03", "s04"]


def test_recoveries_of_suppressed_alerts_are_folded_into_the_summary():
    eng = AlertEngine(max_per_minute=2)
    notes = flood(eng, 4, t_alarm=10, t_end=200, recover_at=70)
    people = [(n.kind, n.key) for n in notes if not n.suppressed]
    assert people == [("alert", "s01"), ("alert", "s02"), ("summary", ""),
                      ("recovery", "s01"), ("recovery", "s02"), ("summary", "")]
    s0, s1 = [n for n in notes if n.kind == "summary"]
    assert s0.text.endswith("2 more alerts suppressed (s03, s04)")
    assert s1.text == ("[SUPPRESSED] z-score on temperature, minute from 2026-01-01T00:01:00Z "
                       "(limit 2 alerts per minute): 2 suppressed alerts recovered (s03, s04)")
    history = [(n.kind, n.key) for n in notes if n.kind != "summary"]
    assert len(history) == 8  # every episode start and end, suppressed or not


def test_flood_guard_counts_per_rule_and_per_minute():
    eng = AlertEngine(max_per_minute=1)
    for det in ("zscore", "flatline"):
        for key in ("s01", "s02"):
            eng.feed("temperature", key, tags(key=key), "m1",
                     out([T0, T0 + 30 * S, T0 + 61 * S, T0 + 62 * S], [1, 0, 1, 0], name=det))
    notes = eng.flush()
    sent = [(n.detector, n.key, n.time_ns - T0) for n in notes
            if n.kind == "alert" and not n.suppressed]
    # one per detector and minute: minute 0 and minute 1 each let one through
    assert sent == [("flatline", "s01", 0), ("zscore", "s01", 0),
                    ("flatline", "s01", 61 * S), ("zscore", "s01", 61 * S)]


def test_flush_final_summarizes_open_minutes():
    eng = AlertEngine(max_per_minute=1)
    notes = flood(eng, 3, t_alarm=5, t_end=10)
    assert not [n for n in notes if n.kind == "summary"]
    (s,) = eng.flush(final=True)
    assert s.suppressed_alerts == ["s02", "s03"]
    assert eng.flush(final=True) == []


def test_result_does_not_depend_on_feed_order_within_a_batch():
    def run(order):
        eng = AlertEngine(max_per_minute=3)
        for i in order:
            key = f"s{i:02d}"
            eng.feed("temperature", key, tags(key=key), "m1",
                     out([T0 + t * S for t in (0, 10 + i, 100)], [0, 1, 1]))
        return [n.to_dict() for n in eng.flush()]

    assert run(range(8)) == run(reversed(range(8)))


# ---------------------------------------------------------------------------
# state
# ---------------------------------------------------------------------------
def test_state_json_round_trip_gives_identical_next_output():
    rng = np.random.default_rng(7)
    batches = []
    for b in range(6):
        t = T0 + (b * 40 + np.arange(40)) * S
        batches.append((t, rng.random((5, 40)) < 0.3))

    def run(restart_after):
        eng, got = AlertEngine(max_per_minute=3), []
        for i, (t, alarms) in enumerate(batches):
            for k in range(5):
                eng.feed("temperature", f"s{k}", tags(key=f"s{k}"), "m1", out(t, alarms[k]))
            got += [n.to_dict() for n in eng.flush()]
            if i == restart_after:
                eng = AlertEngine.from_state(json.loads(json.dumps(eng.state_dict())))
        return got

    whole = run(None)
    assert len(whole) > 20 and any(n["kind"] == "summary" for n in whole)
    for r in range(len(batches)):
        assert run(r) == whole


def test_state_requires_flush_and_rejects_foreign_data():
    eng = AlertEngine()
    eng.feed("s", "", {}, None, out([T0], [True]))
    with pytest.raises(RuntimeError, match="flush"):
        eng.state_dict()
    with pytest.raises(ValueError, match="version"):
        AlertEngine.from_state({"version": 99})
    with pytest.raises(ValueError, match="malformed"):
        AlertEngine.from_state({"version": 1, "max_per_minute": 5})


@pytest.mark.parametrize("bad, match", [
    (dict(times=np.array([2, 1])), "increasing"),
    (dict(times=np.array([1.0, 2.0])), "int64"),
    (dict(alarm=np.array([True])), "same length"),
])
def test_bad_input_is_a_clear_error(bad, match):
    o = out([T0, T0 + S], [0, 1])
    for k, v in bad.items():
        setattr(o, k, v)
    with pytest.raises(ValueError, match=match):
        AlertEngine().feed("s", "", {}, None, o)


def test_nan_score_alarm_prints_nan():
    eng = AlertEngine()
    eng.feed("s", "", {"series": "s"}, None, out([T0, T0 + S], [1, 0], [np.nan, np.nan]))
    a, r = eng.flush()
    assert "z = nan, threshold 3" in a.text and "peak nan" in r.text
    assert a.to_dict()["value"] is None
    json.dumps([a.to_dict(), r.to_dict()], allow_nan=False)


def test_alert_ids_of_different_rules_never_collide():
    """A series name holding ':' and a detector name cannot make two rules share an id (the
    outbox keeps one notification per id: the other would be lost)."""
    eng = AlertEngine()
    t = [T0, T0 + S, T0 + 2 * S]
    eng.feed("x:zscore", "", tags("x:zscore", ""), "m1",
             out(t, [0, 1, 0], name="flatline", label="flat line", score_field="flat_s"))
    eng.feed("x", "flatline", tags("x", "flatline"), "m1", out(t, [0, 1, 0]))
    notes = eng.flush()
    assert len(notes) == 4
    assert len({n.id for n in notes}) == 4 and len({n.alert_id for n in notes}) == 2
    assert {n.alert_id for n in notes} == {"x\\:zscore:flatline", "x:zscore:flatline"}


def test_an_episode_recovers_under_the_id_it_was_opened_with():
    """An episode left open in a state saved before ids escaped their names (no "alert_id" in
    the episode) recovers under the id its alert was sent with; new episodes use the escaped
    one.  A receiver pairs an alert with its recovery by that id."""
    eng = AlertEngine()
    t = [T0 + s * S for s in range(6)]
    key = "10.0.0.7:9100"  # a Prometheus-style key
    eng.feed("plant", key, tags("plant", key), "m1", out(t[:2], [0, 1]))
    (alert,) = eng.flush()
    state = json.loads(json.dumps(eng.state_dict()))
    episode = state["keys"]["plant"][key]["zscore"]["open"]
    assert episode["alert_id"] == alert.alert_id == "plant:zscore:10.0.0.7\\:9100"
    del episode["alert_id"]  # as an older version saved it
    old = AlertEngine.from_state(state)
    old.feed("plant", key, tags("plant", key), "m1", out(t[2:6], [1, 0, 1, 0]))
    rec, alert2, rec2 = old.flush()
    assert rec.kind == "recovery" and rec.alert_id == "plant:zscore:10.0.0.7:9100"
    assert alert2.alert_id == rec2.alert_id == "plant:zscore:10.0.0.7\\:9100"
