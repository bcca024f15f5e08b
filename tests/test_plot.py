"""``python -m pipeline.plot`` and :func:`pipeline.window.read_window` against a real influxd.

The picture is checked for its content: one axis per enabled detector, titles
that say where the scores came from, one shaded span per alarm episode of
the data (counted here by a plain loop over the alarm points read straight
from InfluxDB), and a PNG of the promised size that is not blank.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import F32_STEP
from PIL import Image

from pipeline.model_io import load_model
from pipeline.plot import main, plot_window
from pipeline.stream import Stream
from pipeline.stream_config import OutputConfig, SeriesConfig, StreamConfig
from pipeline.window import ExploreError, alarm_episodes, read_window

from loopback import free_port

T0 = 1_767_225_600_000_000_000
S = 10**9
ROOT = Path(__file__).resolve().parent.parent
TAGS = {"source": "synthetic"}


def naive_episodes(times, alarm):
    """Maximal runs of True, by a loop."""
    out, start, prev = [], None, None
    for t, a in zip(times, alarm, strict=True):
        if a and start is None:
            start = t
        if not a and start is not None:
            out.append((start, prev))
            start = None
        prev = t
    if start is not None:
        out.append((start, prev))
    return out


@pytest.mark.parametrize("alarm", [[], [1], [0], [1, 1, 0, 1], [0, 1, 1, 1, 0, 0, 1, 1],
                                   [1, 0, 1, 0, 1]])
def test_alarm_episodes_are_maximal_runs(alarm):
    t = np.arange(len(alarm), dtype=np.int64) * 7 + 3
    s, e = alarm_episodes(t, np.asarray(alarm, bool))
    assert list(zip(s.tolist(), e.tolist(), strict=True)) == naive_episodes(t.tolist(), alarm)


@pytest.fixture(scope="module")
def scored(influx_settings, ekg, model_path, tmp_path_factory):
    """The EKG fixture in a database and scored by the stream into an error database."""
    from pipeline.influx import Influx

    ix = Influx(influx_settings)
    db, err = f"plot_src_{os.getpid()}", f"plot_err_{os.getpid()}"
    ix.create_database(db)
    t, v = ekg
    ix.write_series(db, "ekg", t, {"value": v}, TAGS)
    cfg = StreamConfig(series=[SeriesConfig(name="ekg", db=db, measurement="ekg", tags=dict(TAGS),
                                            model=model_path)],
                       output=OutputConfig(db=err),
                       checkpoint_dir=str(tmp_path_factory.mktemp("ckpt")))
    Stream(cfg, ix).backfill(T0, T0 + 200 * S, resume=False)
    yield db, err
    ix.drop_database(db)
    ix.drop_database(err)


def _spans(ax, gid="alarm"):
    return [p for p in ax.patches if p.get_gid() == gid]


def test_window_from_the_error_db_marks_every_alarm_episode(influx, scored, model_path,
                                                            model_file):
    db, err = scored
    lo, hi = T0 + 55 * S, T0 + 115 * S  # normal until 60 s, labelled anomalies after
    win = read_window(influx, db, "ekg", tags=TAGS, start_ns=lo, end_ns=hi, model=model_path,
                      error_db=err)
    enabled = [d.label for d in model_file.enabled]
    assert [t.label for t in win.traces] == enabled and len(enabled) >= 2
    fig = plot_window(win)
    axes = fig.axes
    assert len(axes) == 1 + len(enabled)
    assert "ekg" in axes[0].get_title("left") and "scores from the error database" in fig._suptitle.get_text()
    total = 0
    for ax, det in zip(axes[1:], model_file.enabled, strict=True):
        meas = "zscore" if det.per_sample else "ERROR"
        r = influx.read_field(err, meas, det.alarm_field, lo, hi, dict(TAGS, series="ekg"))
        expected = naive_episodes(r.times.tolist(), (r.values > 0).tolist())
        assert len(_spans(ax)) == len(expected), det.label
        assert ax.get_title("left").startswith(f"{det.label}: {det.score_field} vs")
        assert f"{len(expected)} alarm episode(s)" in ax.get_title("left")
        assert f"scores {err}.{meas}" in ax.get_title("left")
        assert len(_spans(axes[0], f"alarm:{det.name}")) == len(expected)
        total += len(expected)
    assert total >= 5  # the labelled anomalies after 60 s are flagged
    assert win.recon is not None and np.isfinite(win.recon).mean() > 0.99


def test_scores_computed_from_the_model_equal_the_stored_ones(influx, scored, model_path):
    db, err = scored
    lo, hi = T0 + 70 * S, T0 + 100 * S
    stored = read_window(influx, db, "ekg", tags=TAGS, start_ns=lo, end_ns=hi, model=model_path,
                         error_db=err, scores="db")
    fresh = read_window(influx, db, "ekg", tags=TAGS, start_ns=lo, end_ns=hi, model=model_path,
                        error_db=err, scores="model")
    for a, b in zip(stored.traces, fresh.traces, strict=True):
        assert b.source.startswith("computed from model")
        np.testing.assert_array_equal(a.times, b.times)
        # as the stream wrote them: at float32's digits (and z to 1e-9 of max(1, |z|))
        np.testing.assert_allclose(a.score, b.score, rtol=F32_STEP, atol=1e-9)
        assert a.n_episodes == b.n_episodes
    assert {t.name for t in fresh.traces} >= {"shape", "step"}  # points stamped before their data
    # the window, one minute of lead-in and what its last points need after it are read, not the
    # whole series
    ahead = max(d.lookahead_ns() for d in load_model(model_path).enabled)
    assert 0 < ahead < S
    assert fresh.n_read <= (30 + 60) * 360 + 2 + ahead * 360 // S + 1
    assert len(fresh.values) <= 30 * 360 + 1


def test_without_scores_in_the_error_db_they_are_computed_and_the_title_says_so(
        influx, scored, model_path):
    db, _ = scored
    win = read_window(influx, db, "ekg", tags=TAGS, start_ns=T0 + 60 * S, end_ns=T0 + 90 * S,
                      model=model_path, error_db="no_such_error_db")
    assert win.traces and all(t.source.startswith("computed") for t in win.traces)
    assert "scores computed from the model" in plot_window(win)._suptitle.get_text()


def test_cli_writes_a_png_of_the_promised_size(scored, model_path, influx_env, tmp_path, capsys):
    db, err = scored
    out = tmp_path / "sub" / "ekg.png"
    code = main(["--db", db, "--measurement", "ekg", "--tag", "source=synthetic", "--model",
                 model_path, "--error-db", err, "--start", "2026-01-01T00:01:05Z", "--out",
                 str(out), "--dpi", "80"])
    msg = capsys.readouterr().out
    assert code == 0, msg
    img = Image.open(out)
    assert img.format == "PNG" and img.size[0] == 960  # 12 in at 80 dpi
    assert img.size[1] == round((2.8 + 1.9 * (msg.count("alarm episode") )) * 80)
    px = np.asarray(img.convert("L"), float)
    assert px.std() > 10  # not blank
    assert "2026-01-01T00:01:05+00:00 .. 2026-01-01T00:02:05+00:00" in msg  # the default minute
    assert not list(out.parent.glob(".*tmp*"))


@pytest.mark.parametrize("args, code, needle", [
    (["--start", "2025-01-01T00:00:00Z"], 2, "no points of"),
    (["--tag", "source=nope"], 2, "unknown series"),
    (["--measurement", "ekgx"], 2, "has no measurement 'ekgx'"),
    (["--field", "nope"], 2, "has no field 'nope'"),
    (["--series", "nope"], 2, "unknown series 'nope'"),
    (["--start", "2026-01-01T00:01:00Z", "--end", "2026-01-01T00:00:00Z"], 2, "end must be after"),
    (["--start", "yesterday-ish"], 2, "--start"),
    (["--scores", "db", "--error-db", "nowhere"], 2, "has no shape scores"),
    (["--db", "nope"], 2, "database 'nope' not found"),
])
def test_cli_bad_input_is_a_clear_error(scored, model_path, influx_env, tmp_path, capsys, args,
                                        code, needle):
    db, err = scored
    base = {"--db": db, "--measurement": "ekg", "--model": model_path, "--error-db": err,
            "--tag": "source=synthetic", "--out": str(tmp_path / "x.png")}
    for k, v in zip(args[::2], args[1::2], strict=True):
        base[k] = v
    argv = [x for kv in base.items() for x in kv]
    assert main(argv) == code
    cap = capsys.readouterr()
    assert needle in cap.err and "Traceback" not in cap.err
    assert not (tmp_path / "x.png").exists()


def test_cli_corrupt_model_and_several_series(scored, influx, influx_env, tmp_path, capsys):
    db, err = scored
    bad = tmp_path / "m.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    assert main(["--db", db, "--measurement", "ekg", "--model", str(bad), "--out",
                 str(tmp_path / "x.png")]) == 2
    assert "retrain" in capsys.readouterr().err
    t = T0 + np.arange(100, dtype=np.int64) * (S // 360)
    influx.write_series(db, "two", t, {"value": np.ones(100)}, {"k": "a"})
    influx.write_series(db, "two", t, {"value": np.zeros(100)}, {"k": "b"})
    with pytest.raises(ExploreError, match="matches more than one series.*tag keys: k"):
        read_window(influx, db, "two", start_ns=T0, end_ns=T0 + S)


def test_cli_unreachable_server_in_a_new_process(tmp_path):
    env = dict(os.environ, INFLUXDB_HOST="127.0.0.1", INFLUXDB_PORT=str(free_port()),
               PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "pipeline.plot", "--db", "ekg", "--measurement",
                        "ekg", "--out", str(tmp_path / "x.png")], capture_output=True, text=True,
                       env=env, timeout=60, cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert "cannot reach InfluxDB" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.png").exists()


def test_plot_scores_marks_the_alarms_given_not_the_scores_above_the_threshold():
    """The demo marks the segments the stream flagged (its ``anomaly``, decided on the float64
    score), not the stored score against the threshold (float32 digits may straddle it)."""
    import matplotlib

    matplotlib.use("Agg")
    from pipeline.plot import new_figure, plot_scores

    t = np.arange(5.0)
    scores = np.array([0.1, 0.2, 0.3, 0.2, 0.1])
    ax = new_figure(1, 1)[1]
    plot_scores(t, scores, 0.25, ax=ax, flagged=np.array([False, True, False, True, False]))
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == "flagged"]
    assert line.get_xdata().tolist() == [1.0, 3.0]
    ax = new_figure(1, 1)[1]
    plot_scores(t, scores, 0.25, ax=ax)  # without alarms: the scores above the threshold
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == "flagged"]
    assert line.get_xdata().tolist() == [2.0]
