"""``python -m pipeline.evaluate``: the detectors' streaming states scored against labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.evaluate import main
from pipeline.model_io import load_model
from pipeline.train import train

S = 10**9


def _series(n, rate, seed):
    rng = np.random.default_rng(seed)
    t = (np.arange(n) * (S / rate)).astype(np.int64)
    return t, np.round(np.sin(np.arange(n) / 7.0) + 0.05 * rng.standard_normal(n), 2)


def test_evaluate_finds_a_zeroed_stretch_and_counts_false_alarms(tmp_path, capsys):
    t, x = _series(60_000, 100, 1)
    model = tmp_path / "m.npz"
    train(t[:30_000], x[:30_000], t[30_000:], x[30_000:], detectors=("flatline",),
          budget=1.0, out=model)
    t2, y = _series(20_000, 100, 2)      # 200 s of new normal data
    y[5000:5050] = 0.0                    # 0.5 s at zero, labelled, at 50 s
    y[15000:15030] = y[15000]             # 0.3 s held, NOT labelled: a false alarm by design
    pd.DataFrame({"time_s": t2 / S, "value": y}).to_csv(tmp_path / "s.csv", index=False)
    pd.DataFrame({"start": [50.0], "end": [50.5], "type": ["zero"]}).to_csv(
        tmp_path / "e.csv", index=False)
    assert main(["--model", str(model), str(tmp_path / "s.csv"), str(tmp_path / "e.csv"),
                 "--json"]) == 0
    import json
    rows = json.loads(capsys.readouterr().out)["rows"]
    flat = rows["flat line"]
    assert flat["found"] == 1 and flat["labels"] == 1
    assert flat["false_alarms"] == 1          # the unlabelled held value
    # every metric by hand (README, "Measuring alarm quality"; EKG rules: 0.5 s before and 2 s
    # after a label are neither normal time nor false alarms; flags closer than 1 s merge)
    thr = load_model(model).get("flatline").threshold_
    assert 0.01 < thr < 0.29                  # both runs reach it; the sample before each differs
    assert y[4999] != 0.0 and y[14999] != y[15000]
    k = int(np.floor(thr / 0.01 + 1e-9)) + 1  # flat_s after k repeats is k * 10 ms > thr
    normal_s = 200.0 - (0.5 + 0.5 + 2.0)      # the label plus its tolerances
    assert flat["events"] == 2                # the zeros and the held value, 100 s apart
    assert flat["recall"] == 1.0 and flat["precision"] == 0.5
    assert flat["f1"] == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    assert flat["normal_hours"] == pytest.approx(normal_s / 3600)
    assert flat["false_alarms_per_hour"] == pytest.approx(1 / (normal_s / 3600))
    # the held value alarms from its k-th repeat to its last (30 - k samples) and is held 1 s
    assert flat["alarm_share"] == pytest.approx(((30 - k) * 0.01 + 1.0) / normal_s)
    assert flat["median_delay_s"] == pytest.approx(k * 0.01)   # from 50.00 s, the label's start
    assert flat["recall_by_type"] == {"zero": [1, 1]}


def test_evaluate_bad_input_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "s.csv").write_text("t,v\n1,2\n")
    assert main(["--model", str(tmp_path / "none.npz"), str(tmp_path / "s.csv"),
                 str(tmp_path / "e.csv")]) == 2
    assert "retrain" in capsys.readouterr().err


def test_evaluate_names_the_line_of_a_value_that_is_not_a_number(tmp_path, capsys):
    (tmp_path / "s.csv").write_text("time_s,value\n0,1.0\n1,abc\n")
    (tmp_path / "e.csv").write_text("start,end,type\n0,1,x\n")
    (tmp_path / "m.npz").write_bytes(b"")
    assert main(["--model", str(tmp_path / "m.npz"), str(tmp_path / "s.csv"),
                 str(tmp_path / "e.csv")]) == 2  # the model is read first: refused cleanly
    t, x = _series(20_000, 100, 1)
    model = tmp_path / "ok.npz"
    train(t[:10_000], x[:10_000], t[10_000:], x[10_000:], detectors=("flatline",), budget=1.0,
          out=model)
    capsys.readouterr()
    assert main(["--model", str(model), str(tmp_path / "s.csv"), str(tmp_path / "e.csv")]) == 2
    err = capsys.readouterr().err
    assert "line 3, column 'value': 'abc' is not a number" in err and "Traceback" not in err


def test_evaluate_runs_the_tutorials_exact_methods_beside_the_model(tmp_path, capsys):
    """``--tutorial-train-end S``: both tutorials on the same CSV, trained on its first S s, scored
    by the same rules as the model's detectors (this used to raise AttributeError)."""
    from pipeline.events import Labels, compare
    from pipeline.tutorials import tutorial_runs

    t, x = _series(20_000, 100, 3)
    model = tmp_path / "m.npz"
    train(t[:10_000], x[:10_000], t[10_000:], x[10_000:], detectors=("flatline", "step"), budget=1.0,
          out=model)
    y = x.copy()
    y[15000:15003] += 50.0
    pd.DataFrame({"time_s": t / S, "value": y}).to_csv(tmp_path / "s.csv", index=False)
    # the shipped datasets' label columns (datasets/synthetic_ekg_anomalies.csv) are accepted too
    pd.DataFrame({"start_s": [150.0], "end_s": [150.03], "kind": ["spike"]}).to_csv(
        tmp_path / "e.csv", index=False)
    assert main(["--model", str(model), str(tmp_path / "s.csv"), str(tmp_path / "e.csv"),
                 "--tutorial-train-end", "60", "--json"]) == 0
    import json
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert {"plexus tutorial", "k-means tutorial", "flat line"} <= set(rows)
    assert rows["plexus tutorial"]["labels"] == rows["k-means tutorial"]["labels"] == 1
    assert rows["k-means tutorial"]["found"] == 1  # a 50-sigma spike: its max error is far out
    # the rows are the tutorials' own runs, scored by the same rules
    runs = tutorial_runs(t, y, 60 * S, S / 100)
    want = compare(runs, Labels.from_seconds([150.0], [150.03], ["spike"]), int(t[0]),
                   int(t[-1]) + S // 100).to_dict()["rows"]
    for name in runs:
        assert rows[name]["found"] == want[name]["found"]
        assert rows[name]["false_alarms"] == want[name]["false_alarms"]
    # and the union of ours is ours only (the tutorials' alarms used to join it)
    assert main(["--model", str(model), str(tmp_path / "s.csv"), str(tmp_path / "e.csv"),
                 "--json"]) == 0
    alone = json.loads(capsys.readouterr().out)["rows"]
    assert "any of ours" in alone
    for name in alone:
        assert rows[name] == alone[name], name
