"""Optional: the whole path on real EKG (MIT-BIH record 208, unlabeled), when ../shared has it.

The excerpt is never copied into the repository; without it these tests skip with a reason.
It holds PVCs and noise artefacts but no labels, so the checks are of consistency, not of recall.
"""

from pathlib import Path

import numpy as np
import pytest
from conftest import assert_stored

from pipeline.load import read_csv_series
from pipeline.model_io import load_model
from pipeline.stream import OutputConfig, SeriesConfig, Stream, StreamConfig
from pipeline.train import main as train_main

CSV = (Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mitdb208_scipy_excerpt"
       / "ecg208_mlii_360hz.csv")
pytestmark = pytest.mark.skipif(not CSV.exists(), reason=f"optional real data not present: {CSV}")


def test_real_ekg_train_cli_then_stream_equals_batch(influx, fresh_db, influx_env, tmp_path, capsys):
    s = read_csv_series(CSV, start="2026-01-01T00:00:00Z")
    assert len(s.times_ns) == 108_000
    influx.write_series(fresh_db, "ekg", s.times_ns, {"value": s.values}, {"record": "208"})
    model_path = tmp_path / "208.npz"
    rc = train_main(["--db", fresh_db, "--measurement", "ekg", "--tag", "record=208",
                     "--train-start", "2026-01-01T00:00:00Z", "--train-end", "2026-01-01T00:01:30Z",
                     "--val-start", "2026-01-01T00:01:30Z", "--val-end", "2026-01-01T00:02:30Z",
                     "--clusters", "64", "--out", str(model_path)])
    assert rc == 0, capsys.readouterr().err
    lm = load_model(model_path)
    shape = lm.get("shape")
    assert shape.enabled_ and shape.n_clusters == 64
    cfg = StreamConfig(series=[SeriesConfig(name="ekg", db=fresh_db, measurement="ekg",
                                            tags={"record": "208"}, model=str(model_path))],
                       output=OutputConfig(db=fresh_db + "_err"),
                       checkpoint_dir=str(tmp_path / "ck"), batch_samples=20_000)
    totals = Stream(cfg, influx).backfill(int(s.times_ns[0]), int(s.times_ns[-1]) + 1)
    got = influx.read_field(fresh_db + "_err", "ERROR", "max_error")
    want = shape.new_state().update_many(s.times_ns, s.values)  # the batch twin
    np.testing.assert_array_equal(got.times, want.times)
    assert_stored(got.values, want.score, exact=True)
    anomaly = influx.read_field(fresh_db + "_err", "ERROR", "anomaly")
    np.testing.assert_array_equal(anomaly.values, want.alarm)
    assert len(want) == (108_000 - 32) // 16 + 1
    # the points of every detector that stamps its own times (shape's segments among them)
    assert totals["points"] == {d.label: len(d.new_state().update_many(s.times_ns, s.values))
                                for d in lm.enabled if not d.per_sample}
    for d in lm.enabled:  # the per-sample detectors too
        if d.per_sample:
            out = d.new_state().update_many(s.times_ns, s.values)
            alarm = influx.read_field(fresh_db + "_err", "zscore", d.alarm_field)
            np.testing.assert_array_equal(alarm.times, s.times_ns)
            np.testing.assert_array_equal(alarm.values, out.alarm)
    errors = want.score
    # real beats are reconstructed well; PVCs and artefacts give a heavy upper tail
    assert np.median(errors) < 0.25 * np.ptp(s.values[:32_400]) and np.isfinite(errors).all()
    assert np.quantile(errors, 0.999) > 3 * np.median(errors)
    influx.drop_database(fresh_db + "_err")
