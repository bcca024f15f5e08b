"""Event-level scoring: a case computed by hand, edge cases, and the tick-by-tick reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.events import (
    EventRules,
    EventScore,
    Labels,
    alarm_episodes,
    compare,
    score_alarms,
    score_keyed,
)

from naive import naive_event_scores

S = 10**9


def _flags(times_s, span_s=100, rate=1):
    """A 1 Hz series over [0, span_s) with the given seconds flagged."""
    t = np.arange(0, span_s * rate) * (S // rate)
    alarm = np.isin(t, np.asarray(times_s, dtype=np.int64) * S)
    return t, alarm


def test_a_case_computed_by_hand():
    # span [0, 100) s at 1 Hz: each flag covers [t, t + 1); rules: gap 1 s, before 0.5 s, after 2 s
    labels = Labels.from_seconds([10, 30, 60, 80], [12, 35, 61, 90], ["spike", "hold", "spike", "noise"])
    # widened: A [9.5, 14)  B [29.5, 37)  C [59.5, 63)  D [79.5, 92)
    t, alarm = _flags([13, 20, 21, 23, 29, 50, 52, 70, 95, 96, 97, 98, 99])
    sc = score_alarms(t, alarm, labels, 0, 100 * S)
    # episodes [13,14) [20,22) [23,24) [29,30) [50,51) [52,53) [70,71) [95,100)
    # events (silence <= 1 s joins): [13,14) A | [20,24) false | [29,30) B | [50,53) false
    #                                | [70,71) false | [95,100) false (runs to the series end)
    assert sc.event_start_ns.tolist() == [s * S for s in (13, 20, 29, 50, 70, 95)]
    assert sc.event_end_ns.tolist() == [s * S for s in (14, 24, 30, 53, 71, 100)]
    assert sc.event_false.tolist() == [False, True, False, True, True, True]
    assert (sc.n_labels, sc.n_found, sc.n_events, sc.n_false_alarms) == (4, 2, 6, 4)
    assert sc.found.tolist() == [True, True, False, False]   # C and D missed
    assert sc.recall == 0.5                                  # 2 / 4
    assert sc.precision == pytest.approx(1 / 3)              # 2 true events / 6
    assert sc.f1 == pytest.approx(0.4)                       # 2 * .5 * (1/3) / (.5 + 1/3)
    # normal time: 100 - (4.5 + 7.5 + 3.5 + 12.5) = 72 s = 0.02 h
    assert sc.normal_ns == 72 * S
    assert sc.false_alarms_per_hour == pytest.approx(4 / 0.02)   # 200 per hour
    # alarm time in normal time: [20,24) 4 + [29,29.5) 0.5 + [50,53) 3 + [70,71) 1 + [95,100) 5
    assert sc.alarm_normal_ns == int(13.5 * S)
    assert sc.alarm_share == pytest.approx(13.5 / 72)
    # delays: A first covered at 13 -> 13 - 10 = 3 s; B first covered inside [29.5, 37) at 29.5
    # -> 29.5 - 30 < 0, clipped to 0; median of [3, 0] = 1.5 s
    assert sc.delay_ns[:2].tolist() == [3 * S, 0.0]
    assert sc.median_delay_s == 1.5
    assert sc.recall_by_type() == {"hold": (1, 1), "noise": (0, 1), "spike": (1, 2)}
    d = sc.to_dict()
    assert d["false_alarms"] == 4 and d["recall_by_type"]["spike"] == [1, 2]
    assert "found 2 of 4" in sc.summary() and "200.00 per hour" in sc.summary()


def test_no_labels_every_event_is_false_and_recall_is_undefined():
    t, alarm = _flags([5, 6, 40])
    sc = score_alarms(t, alarm, Labels.from_seconds([], [], []), 0, 100 * S)
    assert (sc.n_events, sc.n_false_alarms, sc.normal_ns) == (2, 2, 100 * S)
    assert math.isnan(sc.recall) and sc.precision == 0.0 and math.isnan(sc.f1)
    assert sc.false_alarms_per_hour == pytest.approx(2 / (100 / 3600))
    assert sc.alarm_normal_ns == 3 * S


def test_no_alarms():
    t, alarm = _flags([])
    sc = score_alarms(t, alarm, Labels.from_seconds([10], [11], ["spike"]), 0, 100 * S)
    assert (sc.n_found, sc.n_events, sc.false_alarms_per_hour, sc.alarm_share) == (0, 0, 0.0, 0.0)
    assert sc.recall == 0.0 and math.isnan(sc.precision) and math.isnan(sc.median_delay_s)
    assert "-" in sc.table()  # undefined numbers print as "-"


def test_one_alarm_spanning_two_labels_finds_both_and_is_one_true_event():
    labels = Labels.from_seconds([10, 13], [11, 14], ["spike", "spike"])
    t, alarm = _flags(range(9, 16))
    sc = score_alarms(t, alarm, labels, 0, 100 * S)
    assert (sc.n_found, sc.n_events, sc.n_false_alarms, sc.precision) == (2, 1, 0, 1.0)
    # the event [9, 16) lies inside the widened labels [9.5, 16) except [9, 9.5)
    assert sc.alarm_normal_ns == S // 2


def test_alarm_at_the_series_end_is_clipped_to_the_span():
    t = np.arange(10) * S
    alarm = t == 9 * S
    sc = score_alarms(t, alarm, Labels.from_seconds([], [], []), 0, 10 * S, period_ns=3 * S)
    assert sc.event_end_ns.tolist() == [10 * S] and sc.alarm_normal_ns == S


def test_label_at_the_series_start():
    # label [0, 1) widened to [-0.5, 3): only [0, 3) lies in the span
    labels = Labels.from_seconds([0], [1], ["zeros"])
    t, alarm = _flags([0], span_s=10)
    sc = score_alarms(t, alarm, labels, 0, 10 * S)
    assert (sc.n_found, sc.n_false_alarms, sc.normal_ns, sc.median_delay_s) == (1, 0, 7 * S, 0.0)


def test_a_one_sample_label_and_a_late_detection():
    # a spike labelled [20, 20) (zero length) is found by an alarm 2 s later, not 2.5 s later
    labels = Labels.from_seconds([20], [20], ["spike"])
    late = score_alarms(*_flags([22]), labels, 0, 100 * S)
    too_late = score_alarms(*_flags([23]), labels, 0, 100 * S)
    assert (late.n_found, late.median_delay_s, late.n_false_alarms) == (1, 2.0, 0)
    assert (too_late.n_found, too_late.n_false_alarms) == (0, 1)


def test_the_merge_gap_joins_flags_into_one_event():
    t, alarm = _flags([10, 12, 15])
    one = score_alarms(t, alarm, Labels.from_seconds([], [], []), 0, 100 * S, EventRules(merge_gap_s=2))
    two = score_alarms(t, alarm, Labels.from_seconds([], [], []), 0, 100 * S, EventRules(merge_gap_s=1))
    assert one.n_events == 1 and one.alarm_normal_ns == 6 * S     # [10, 16)
    assert two.n_events == 2                                     # [10, 13) and [15, 16)


def test_union_of_detectors_and_per_detector_rows():
    labels = Labels.from_seconds([10, 50], [11, 51], ["spike", "hold"])
    t = np.arange(100) * S
    rep = compare({"a": (t, t == 10 * S), "b": (t, (t == 50 * S) | (t == 80 * S)),
                   "c": (t, t == 81 * S)}, labels, 0, 100 * S)
    rows = {k: (r.n_found, r.n_events, r.n_false_alarms) for k, r in rep.rows.items()}
    # the union joins b's [80,81) and c's [81,82) into one false alarm
    assert rows == {"a": (1, 1, 0), "b": (1, 2, 1), "c": (0, 1, 1), "any": (2, 3, 1)}
    table = rep.table()
    assert "any" in table and "found by type" in table
    assert rep.to_dict()["rows"]["any"]["found"] == 2


def test_keyed_runs_are_scored_per_sensor_and_pooled():
    t = np.arange(100) * S
    labels = Labels.from_seconds([10, 10], [11, 11], ["spike", "offset"], key=["s1", "s2"])
    runs = {"s1": (t, t == 10 * S), "s2": (t, t == 70 * S), "s3": (t, t == 5 * S)}
    sc = score_keyed(runs, labels, 0, 100 * S)
    # s1 finds its spike; s2 misses its offset and raises a false alarm; s3 has no label: 1 false
    assert (sc.n_labels, sc.n_found, sc.n_events, sc.n_false_alarms) == (2, 1, 3, 2)
    # 3 sensors of 100 s; s1 and s2 lose their widened label [9.5, 13): 3.5 s each
    assert sc.normal_ns == int((96.5 + 96.5 + 100) * S)
    with pytest.raises(ValueError, match="keyed runs need labels with a key"):
        score_keyed(runs, Labels.from_seconds([10], [11], ["spike"]), 0, 100 * S)


def test_bad_input_is_a_clear_error():
    t = np.arange(10) * S
    with pytest.raises(ValueError, match="strictly increasing"):
        alarm_episodes(t[::-1], np.ones(10, bool))
    with pytest.raises(ValueError, match="same length"):
        alarm_episodes(t, np.ones(9, bool))
    with pytest.raises(ValueError, match="pass period_ns"):
        alarm_episodes(t[:1], [True])
    with pytest.raises(ValueError, match="booleans"):
        alarm_episodes(t, np.full(10, 0.5))
    with pytest.raises(ValueError, match="outside the scored span"):
        score_alarms(t, t > 0, Labels.from_seconds([20], [21], ["x"]), 0, 10 * S)
    with pytest.raises(ValueError, match="ends before it starts"):
        Labels.from_seconds([2], [1], ["x"])
    with pytest.raises(ValueError, match="merge_gap_s must be a finite number >= 0"):
        EventRules(merge_gap_s=-1)


runs_st = st.tuples(
    st.lists(st.integers(-5, 160), min_size=0, max_size=40, unique=True),
    st.integers(1, 6),
    st.randoms(use_true_random=False),
)


@settings(max_examples=300, deadline=None)
@given(runs=st.lists(runs_st, min_size=1, max_size=3),
       labels=st.lists(st.tuples(st.integers(-15, 165), st.integers(0, 25)), max_size=6),
       n=st.integers(20, 150), gap=st.integers(0, 12), before=st.integers(0, 6),
       after=st.integers(0, 6))
def test_fast_scoring_equals_the_tick_by_tick_reference(runs, labels, n, gap, before, after):
    runs = [(sorted(ts), [rnd.random() < 0.6 for _ in ts], p) for ts, p, rnd in runs]
    lab = Labels(np.array([s for s, _ in labels], np.int64), np.array([s + d for s, d in labels], np.int64),
                 np.array(["x"] * len(labels), object))
    lab = lab.within(0, n)
    rules = EventRules(gap / S, before / S, after / S)
    ref = naive_event_scores([(ts, a, p) for ts, a, p in runs],
                             list(zip(lab.start_ns.tolist(), lab.end_ns.tolist(), strict=True)),
                             0, n, gap, before, after)
    if len(runs) == 1:
        ts, a, p = runs[0]
        fast = score_alarms(np.array(ts, np.int64), np.array(a, bool), lab, 0, n, rules, period_ns=p)
    else:
        dets = {f"d{i}": (np.array(ts, np.int64), np.array(a, bool), p) for i, (ts, a, p) in enumerate(runs)}
        fast = compare(dets, lab, 0, n, rules).rows["any"]
    assert fast.found.tolist() == ref["found"]
    assert [None if np.isnan(d) else int(d) for d in fast.delay_ns] == ref["delay"]
    assert list(zip(fast.event_start_ns.tolist(), fast.event_end_ns.tolist(),
                    fast.event_false.tolist(), strict=True)) == ref["events"]
    assert (fast.normal_ns, fast.alarm_normal_ns) == (ref["normal"], ref["alarm_normal"])


def test_event_peaks_from_scores_and_detector_outputs_as_runs():
    from dataclasses import dataclass

    t = np.arange(100) * S
    score = np.zeros(100)
    score[[10, 11, 13, 50]] = [2.0, -5.0, 3.0, 4.0]
    alarm = score != 0
    # events [10, 12) + [13, 14) joined by the 1 s gap: peak max(|2|, |-5|, |3|) = 5; [50, 51): 4
    sc = score_alarms(t, alarm, Labels.from_seconds([10], [11], ["spike"]), 0, 100 * S, score=score)
    assert sc.event_peak.tolist() == [5.0, 4.0]
    assert np.isnan(score_alarms(t, alarm, Labels.from_seconds([], [], []), 0, 100 * S).event_peak).all()

    @dataclass
    class Output:  # the shape of a detector's output (times, score, threshold, alarm)
        times: np.ndarray
        score: np.ndarray
        threshold: float
        alarm: np.ndarray

    rep = compare({"z": Output(t, score, 1.0, alarm), "plain": (t, alarm)},
                  Labels.from_seconds([10], [11], ["spike"]), 0, 100 * S)
    assert rep.rows["z"].event_peak.tolist() == [5.0, 4.0]
    assert np.isnan(rep.rows["plain"].event_peak).all() and np.isnan(rep.rows["any"].event_peak).all()
    assert EventScore.pool([rep.rows["z"], rep.rows["plain"]]).event_peak.shape == (4,)
    with pytest.raises(ValueError, match="a detector run is"):
        compare({"bad": [t, alarm]}, Labels.from_seconds([], [], []), 0, 100 * S)
