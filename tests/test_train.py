"""python -m pipeline.train: from a CSV or a real influxd, threshold from held-out scores."""

import numpy as np
import pytest
from conftest import PERIOD, RATE, T0

from pipeline.model_io import load_model
from pipeline.scoring import score_segments_batch
from pipeline.train import main, train


@pytest.fixture
def ekg_csv(tmp_path, ekg):
    t, v = ekg
    n = 60 * RATE
    path = tmp_path / "ekg.csv"
    rows = "\n".join(f"{(ti - T0) / 1e9:.9f},{vi!r}" for ti, vi in zip(t[:n].tolist(), v[:n].tolist(),
                                                                      strict=True))
    path.write_text("time_s,value\n" + rows + "\n")
    return str(path)


def test_threshold_is_learned_on_held_out_scores_of_the_live_function(ekg, tmp_path):
    t, v = ekg
    n_tr, n_val = 30 * RATE, 60 * RATE
    res = train(t[:n_tr], v[:n_tr], t[n_tr:n_val], v[n_tr:n_val], n_clusters=16,
                false_alarm_rate=0.01, out=str(tmp_path / "m.npz"))
    lm = load_model(tmp_path / "m.npz")
    # the calibration scores are exactly what the stream computes live on that range
    val = score_segments_batch(lm.model, t[n_tr:n_val], v[n_tr:n_val], PERIOD)
    assert res.n_val_segments == len(val) > 500
    assert lm.threshold.threshold_ == pytest.approx(np.quantile(val.errors, 0.99), rel=1e-12)
    assert res.val_exceed == int((val.errors > lm.threshold.threshold_).sum())
    assert lm.metadata["sample_period_ns"] == pytest.approx(PERIOD, rel=1e-6)
    assert lm.metadata["training_range_ns"] == [int(t[0]), int(t[n_tr - 1])]
    assert lm.version == res.version


def test_tutorial_rule_is_available_for_comparison(ekg, tmp_path):
    t, v = ekg
    n = 20 * RATE
    res = train(t[:n], v[:n], t[n:2 * n], v[n:2 * n], n_clusters=8, threshold_method="tutorial",
                out=str(tmp_path / "m.npz"))
    lm = load_model(tmp_path / "m.npz")
    recon = lm.model.reconstruct(v[:n])
    assert res.threshold == pytest.approx(np.nanmax(np.abs(recon - v[:n])))


def test_cli_from_csv(ekg_csv, tmp_path, capsys):
    out = tmp_path / "models" / "ekg.npz"
    rc = main(["--csv", ekg_csv, "--train-end", "40", "--val-start", "40", "--clusters", "12",
               "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    assert f"written to {out}" in text and "segments" in text and "threshold" in text
    assert "timings" in text and "12 clusters" in text
    assert "note: " in text and "cannot resolve false_alarm_rate" in text  # few scores: said, not hidden
    lm = load_model(out)
    assert lm.model.n_clusters == 12


def test_cli_from_influxdb(influx, fresh_db, ekg, influx_env, tmp_path, capsys):
    t, v = ekg
    influx.write_series(fresh_db, "ekg", t, {"value": v}, {"source": "p1"})
    out = tmp_path / "m.npz"
    rc = main(["--db", fresh_db, "--measurement", "ekg", "--tag", "source=p1", "--clusters", "12",
               "--train-start", "2026-01-01T00:00:00Z", "--train-end", "2026-01-01T00:00:30Z",
               "--val-start", "2026-01-01T00:00:30Z", "--val-end", "2026-01-01T00:01:00Z",
               "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    lm = load_model(out)
    assert lm.metadata["training_range_ns"] == [T0, int(t[30 * RATE - 1])]
    assert lm.metadata["source"] == f"{fresh_db}.ekg.value"


@pytest.mark.parametrize("args, message", [
    (["--train-end", "40"], "either --csv FILE or --db"),
    (["--csv", "CSV", "--train-start", "100", "--train-end", "200"], "no points"),
    (["--csv", "CSV", "--train-end", "not-a-time"], "cannot parse time"),
    (["--csv", "CSV", "--train-end", "2", "--clusters", "500"], "cannot fit"),
    (["--csv", "CSV", "--val-fraction", "1.5"], "--val-fraction must be in"),
    (["--csv", "CSV", "--tag", "oops"], "key=value"),
])
def test_cli_bad_input_is_a_clear_error(ekg_csv, args, message, capsys):
    rc = main([a.replace("CSV", ekg_csv) for a in args])
    assert rc == 2
    assert message in capsys.readouterr().err


def test_irregular_input_is_refused_then_resampled_on_request(tmp_path, ekg, capsys):
    t, v = ekg
    n = 30 * RATE
    jitter = np.random.default_rng(0).uniform(-0.3, 0.3, n) * PERIOD
    rows = "\n".join(f"{int(ti + ji - T0)},{vi!r}" for ti, ji, vi in
                     zip(t[:n].tolist(), jitter.tolist(), v[:n].tolist(), strict=True))
    path = tmp_path / "j.csv"
    path.write_text("time_ns,value\n" + rows + "\n")
    base = ["--csv", str(path), "--time-column", "time_ns", "--time-unit", "ns", "--clusters", "8",
            "--sample-rate", "360", "--out", str(tmp_path / "m.npz")]
    assert main(base) == 2
    assert "not regularly sampled" in capsys.readouterr().err
    assert main([*base, "--resample"]) == 0
    assert load_model(tmp_path / "m.npz").metadata["sample_period_ns"] == pytest.approx(PERIOD, 1e-6)
