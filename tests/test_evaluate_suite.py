"""``python -m pipeline.evaluate --suite``: train, calibrate and score labelled suite cases through
model files and streaming states; checked against the same steps done by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from pipeline.evaluate import UNION, chance_finds, main, pool, run_case, suite_table
from pipeline.events import EventRules, Labels, compare
from pipeline.model_io import load_model
from pipeline.suites import SENSOR_RULES, Case

S = 10**9


def _fleet_case():
    """Three sensors at 2 s for 9 h: train 0-3 h, calibrate 3-6 h, labelled 6-9 h with a spike
    on s0, a 10-min freeze on s1 and nothing on s2."""
    rng = np.random.default_rng(3)
    n = 9 * 1800
    k = np.arange(n)
    v = 21 + 0.5 * np.sin(2 * np.pi * k / 43200)[None, :] + 0.05 * rng.standard_normal((3, n))
    v = np.round(v, 2)
    i = 7 * 1800
    v[0, i] += 6.0
    v[1, i:i + 300] = v[1, i - 1]
    events = pd.DataFrame({"start": [i * 2.0, i * 2.0], "end": [i * 2.0 + 2, i * 2.0 + 600],
                           "type": ["spike", "freeze"], "sensor": ["s0", "s1"]})
    return Case("tiny", "sensors", "dev", "test", 2.0, v, events,
                {"train": (0, 3 * 3600), "calibrate": (3 * 3600, 6 * 3600),
                 "labelled": (6 * 3600, 9 * 3600)}, "degC", ["s0", "s1", "s2"])


def test_run_case_scores_the_model_files_streaming_states(tmp_path):
    case = _fleet_case()
    r = run_case(case, tmp_path, detectors=("zscore", "flatline"), tutorials=True)
    # the same steps by hand: the model file run_case wrote, each sensor's state fed from the
    # start of the calibration part (it directly precedes the labelled part)
    model = load_model(tmp_path / "dev-tiny.npz")
    t = np.round(case.time_s * S).astype(np.int64)
    a = int(3 * 3600 / 2)
    runs = {}
    for det in model.enabled:
        runs[det.label] = {}
        for key, x in zip(case.keys, case.values, strict=True):
            o = det.new_state().update_many(t[a:], x[a:])
            runs[det.label][key] = (o.times, o.alarm)
    start, end = 6 * 3600 * S, 9 * 3600 * S
    want = compare(runs, case.labels().within(start, end), start, end, SENSOR_RULES, union=UNION)
    for name, row in want.rows.items():
        got = r.report.rows[name]
        assert (got.n_found, got.n_false_alarms, got.normal_ns) == (
            row.n_found, row.n_false_alarms, row.normal_ns), name
    assert r.report.rows[UNION].n_found == 2  # the spike (z-score) and the freeze (flat line)
    assert "plexus tutorial" in r.report.rows and "k-means tutorial" not in r.report.rows
    assert r.fleet_days == pytest.approx(3 / 24) and r.n_keys == 3
    assert set(r.chance) == set(r.report.rows) and all(c >= 0 for c in r.chance.values())
    table = suite_table(r)
    assert "chance" in table and "FA/day" in table and "freeze" in table


def test_chance_finds_is_one_minus_exp_of_rate_times_duration():
    rules = EventRules(merge_gap_s=0, tol_before_s=10, tol_after_s=30)
    labels = Labels.from_seconds([100.0, 5000.0], [110.0, 8600.0], ["spike", "drift"])
    r = compare({"d": (np.array([2000 * S, 3000 * S]), np.array([True, True]), S)}, labels, 0,
                10_000 * S, rules).rows["d"]
    rate = r.false_alarms_per_hour
    assert r.n_false_alarms == 2 and rate > 0
    want = sum(1 - math.exp(-rate * h) for h in ((10 + 10 + 30) / 3600, (3600 + 10 + 30) / 3600))
    assert chance_finds(r, labels, 0, 10_000 * S, rules) == pytest.approx(want, rel=1e-12)


def test_pool_adds_cases_up(tmp_path):
    case = _fleet_case()
    r = run_case(case, tmp_path, detectors=("zscore",), tutorials=False)
    p = pool([r, r], "both")
    row, one = p.report.rows["z-score"], r.report.rows["z-score"]
    assert (row.n_labels, row.n_found, row.normal_ns) == (2 * one.n_labels, 2 * one.n_found,
                                                          2 * one.normal_ns)
    assert p.chance["z-score"] == pytest.approx(2 * r.chance["z-score"])


def test_cli_suite_quick_ekg_at_90_hz(capsys):
    assert main(["--suite", "ekg", "--quick", "--rate", "90", "--split", "dev", "--detectors",
                 "shape,flatline", "--no-tutorials", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["budget_per_hour"] == pytest.approx(1 / 24)
    assert set(out["reports"]) == {"dev/synthetic_90", "dev/all 90 Hz"}
    rows = out["reports"]["dev/all 90 Hz"]["rows"]
    assert set(rows) == {"shape", "flat line", UNION}
    ours = rows[UNION]
    assert ours["labels"] == 42 and ours["found"] >= 30
    # zeros and holds are found by the flat line, every one
    assert rows["flat line"]["recall_by_type"]["zeros"] == [6, 6]
    assert rows["flat line"]["recall_by_type"]["hold"] == [6, 6]
    assert ours["false_alarms_per_hour"] <= 2.0


def test_cli_suite_prints_tables_with_the_budget(capsys):
    assert main(["--suite", "ekg", "--quick", "--rate", "90", "--split", "dev", "--detectors",
                 "flatline", "--false-alarms-per-hour", "1", "--false-alarms"]) == 0
    out = capsys.readouterr().out
    assert "alarm budget 1 per hour per series" in out
    assert "== dev/all 90 Hz (pooled; budget 1 per hour per series)" in out
    assert "k-means tutorial" in out and "plexus tutorial" in out


@pytest.mark.parametrize("argv,msg", [
    (["--suite", "ekg", "s.csv", "e.csv"], "either --suite or SERIES EVENTS --model"),
    (["s.csv"], "give SERIES EVENTS --model MODEL"),
    (["--suite", "sensors", "--quick", "--false-alarms-per-day", "0"], "alarm budget"),
    (["--suite", "ekg", "--quick", "--rate", "90", "--detectors", "nope"], "unknown detector"),
])
def test_cli_bad_input_is_a_clear_error(argv, msg, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err


def test_pool_counts_a_detector_that_is_off_in_a_case_as_missing_its_labels(tmp_path):
    case = _fleet_case()
    a = run_case(case, tmp_path, detectors=("zscore", "flatline"), tutorials=False)
    b = run_case(case, tmp_path, detectors=("flatline",), tutorials=False)
    p = pool([a, b], "both")
    assert list(p.report.rows) == ["z-score", "flat line", UNION]
    z = p.report.rows["z-score"]
    assert z.n_labels == 4 and z.n_found == a.report.rows["z-score"].n_found
    assert z.normal_ns == 2 * a.report.rows["z-score"].normal_ns
    # the union of a case with one detector on is that detector
    assert b.report.rows[UNION].n_found == b.report.rows["flat line"].n_found
    assert p.report.rows[UNION].n_found == a.report.rows[UNION].n_found + b.report.rows[
        UNION].n_found
