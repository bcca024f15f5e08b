"""python -m pipeline.stream against a real influxd: backfill, follow, faults, fan-out.

Every test compares the stream's output with the batch twin of each detector of the model:
its fresh state fed all of the same points at once (``det.new_state().update_many``).
Segments must agree to the bit, per-sample scores to 1e-12 (chunk boundaries move the
anchors of the stable rolling sums), both as InfluxDB keeps them at the default ``[output]
precision = "float32"`` (``conftest.assert_stored``: so a per-sample score may come back one
float32 step from its twin's).
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import F32_STEP, PERIOD, RATE, T0, assert_stored

from pipeline.influx import Influx, InfluxQueryError, InfluxSettings, InfluxUnavailableError
from pipeline.influxd import LocalInfluxd, free_port
from pipeline.model_io import load_model, save_model
from pipeline.stream import (
    ConfigError,
    OutputConfig,
    SeriesConfig,
    Stream,
    StreamConfig,
    build_parser,
    summary_text,
)

ROOT = Path(__file__).resolve().parent.parent


def make_cfg(db, model_path, tmp_path, out_db, fan_out=None, tags=None, batch=5000, **kw):
    s = SeriesConfig(name="ekg", db=db, measurement="ekg", field="value", tags=tags or {},
                     fan_out=fan_out, sample_period_ns=PERIOD, model=model_path)
    return StreamConfig(series=[s], output=OutputConfig(db=out_db),
                        checkpoint_dir=str(tmp_path / f"ckpt-{out_db}"), batch_samples=batch,
                        poll_interval=0.05, **kw)


def out_fields(model_file, diagnostics=False) -> dict:
    """``{measurement: [field, ...]}`` the stream writes for this model."""
    seg, per = [], []
    for d in model_file.enabled:
        names = [d.score_field, d.threshold_field, d.alarm_field,
                 *(d.extra_fields if diagnostics else ())]
        (per if d.per_sample else seg).extend(names)
    return {m: f for m, f in (("ERROR", seg), ("zscore", per)) if f}


def batch_twin(model_file, t, v, diagnostics=False):
    """What the stream must write for one series key: ``{group: (measurement, times, {field:
    array})}``, the per-sample detectors in group ``"zscore"`` (one point per sample), each
    other detector in a group of its own name (its points lie where it puts them)."""
    want = {}
    for d in model_file.enabled:
        out = d.new_state().update_many(t, v)
        group = "zscore" if d.per_sample else d.name
        _, times, fields = want.setdefault(group, ("zscore" if d.per_sample else "ERROR",
                                                   out.times, {}))
        np.testing.assert_array_equal(times, out.times)
        fields.update(out.fields(diagnostics))
    return want


def _close(name, got, want, precision="float32"):
    segment = name in ("max_error", "threshold")  # segments to the bit
    if want.dtype.kind != "f":  # booleans and integers read back as numbers
        np.testing.assert_array_equal(got, want.astype(np.float64), err_msg=name)
    elif precision == "float32":
        assert_stored(got, want, name, exact=segment)
    elif segment:
        np.testing.assert_array_equal(got, want, err_msg=name)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=name)


def assert_equals_batch(ix, out_db, model_file, t, v, tags=None, diagnostics=False,
                        precision="float32"):
    """The stream's output in ``out_db`` equals every enabled detector's batch twin on (t, v)
    as InfluxDB keeps it at ``[output] precision``; the detectors' diagnostics are there with
    ``diagnostics``, else not written at all."""
    want = batch_twin(model_file, t, v, diagnostics)
    assert {m for m, _, _ in want.values()} == set(out_fields(model_file, diagnostics))
    for d in model_file.enabled:
        for name in d.extra_fields:
            n = ix.count(out_db, "zscore" if d.per_sample else "ERROR", name, tags)
            assert (n > 0) == diagnostics, f"{name}: {n} points"
    for meas, times, fields in want.values():
        assert len(times) > 0
        for name, arr in fields.items():
            arr = np.asarray(arr)
            keep = np.isfinite(arr) if arr.dtype.kind == "f" else np.ones(len(arr), bool)
            got = ix.read_field(out_db, meas, name, tags=tags)
            np.testing.assert_array_equal(got.times, times[keep], err_msg=f"{meas}.{name}")
            _close(name, got.values, arr[keep], precision)
    return want


def assert_same_output(ix, db_a, db_b, model_file, tags=None):
    """Two runs wrote the same points, field by field."""
    for meas, names in out_fields(model_file).items():
        n = 0
        for name in names:
            a = ix.read_field(db_a, meas, name, tags=tags)
            b = ix.read_field(db_b, meas, name, tags=tags)
            n += len(a)
            np.testing.assert_array_equal(a.times, b.times, err_msg=name)
            if meas == "ERROR":
                np.testing.assert_array_equal(a.values, b.values, err_msg=name)
            else:
                np.testing.assert_allclose(a.values, b.values, rtol=F32_STEP, atol=1e-12,
                                           err_msg=name)
        assert n > 0, f"nothing written to {db_a}.{meas}"


def n_scored(ix, out_db, tags=None):
    """Per-sample points written (every point has the flat-line alarm, a boolean)."""
    return ix.count(out_db, "zscore", "flat_alert", tags)


# -- backfill ---------------------------------------------------------------
@pytest.fixture
def loaded(influx, fresh_db, ekg):
    t, v = ekg
    influx.write_series(fresh_db, "ekg", t, {"value": v}, {"source": "p1"})
    return fresh_db


def test_backfill_equals_library_batch(influx, loaded, model_path, model_file, ekg, tmp_path):
    out_db = loaded + "_err"
    cfg = make_cfg(loaded, model_path, tmp_path, out_db)
    totals = Stream(cfg, influx).backfill(T0, T0 + 10**12)
    t, v = ekg
    assert {d.name for d in model_file.enabled} >= {"shape", "flatline"}
    want = assert_equals_batch(influx, out_db, model_file, t, v)
    seg = want["shape"][2]
    # the comparison covers alarms, not only quiet stretches
    n_anom = int(seg["anomaly"].sum())
    assert n_anom > 0  # the injected anomalies after 60 s are found
    assert totals["alarm_points"]["shape"] == n_anom
    for d in model_file.enabled:
        if d.per_sample:
            alarm = want["zscore"][2][d.alarm_field]
            assert totals["alarm_points"][d.label] == int(alarm.sum())
    assert totals["points"] == {d.label: len(want[d.name][1]) for d in model_file.enabled
                                if not d.per_sample}
    assert totals["samples"] == len(t)
    # tags: the series name and the model version are added
    assert influx.tag_values(out_db, "ERROR", "model") == [model_file.version]
    assert influx.tag_values(out_db, "zscore", "model") == [model_file.version]
    assert influx.tag_values(out_db, "zscore", "series") == ["ekg"]
    influx.drop_database(out_db)


def test_float64_precision_writes_every_digit_and_float32_a_third_of_the_bytes(
        influx, loaded, model_path, model_file, ekg, tmp_path):
    """``[output] precision = "float64"``: every score read back equals the batch twin's to
    1e-12 (segments to the bit); the default float32 digits are the same scores within one
    float32 step, and they differ from the float64 ones."""
    t, v = ekg
    db64, db32 = loaded + "_64", loaded + "_32"
    cfg = make_cfg(loaded, model_path, tmp_path, db64)
    cfg.output.precision = "float64"
    Stream(cfg, influx).backfill(T0, T0 + 10**12)
    Stream(make_cfg(loaded, model_path, tmp_path, db32), influx).backfill(T0, T0 + 10**12)
    want = assert_equals_batch(influx, db64, model_file, t, v, precision="float64")
    assert_equals_batch(influx, db32, model_file, t, v)
    n = 0
    for meas, _, fields in want.values():
        for name, arr in fields.items():
            if np.asarray(arr).dtype.kind == "f":
                a, b = influx.read_field(db64, meas, name), influx.read_field(db32, meas, name)
                n += int((a.values != b.values).sum())
    assert n > 1000  # float32's digits are not float64's
    influx.drop_database(db64)
    influx.drop_database(db32)


def test_rerun_overwrites_instead_of_duplicating(influx, loaded, model_path, tmp_path):
    out_db = loaded + "_err"
    for _ in range(2):
        Stream(make_cfg(loaded, model_path, tmp_path, out_db), influx).backfill(
            T0, T0 + 10**12, resume=False)
    n = influx.count(out_db, "ERROR", "max_error")
    t_seg = influx.read_field(out_db, "ERROR", "max_error").times
    assert n == len(np.unique(t_seg)) > 0
    assert n_scored(influx, out_db) == 43_200
    influx.drop_database(out_db)


def test_fan_out_keeps_series_apart(influx, fresh_db, ekg, model_path, model_file, tmp_path):
    t, v = ekg
    n = 20 * RATE
    rng = np.random.default_rng(5)
    sources = {"a": v[:n], "b": v[:n] * 1.5 + 0.1, "c": v[:n] + 0.05 * rng.standard_normal(n)}
    for k, vals in sources.items():
        influx.write_series(fresh_db, "ekg", t[:n], {"value": vals}, {"source": k})
    out_db = fresh_db + "_err"
    Stream(make_cfg(fresh_db, model_path, tmp_path, out_db, fan_out="source"), influx).backfill(
        T0, T0 + 10**12)
    for k, vals in sources.items():
        assert_equals_batch(influx, out_db, model_file, t[:n], vals, {"source": k})
    influx.drop_database(out_db)


def test_gap_in_source_is_skipped_and_logged(influx, fresh_db, ekg, model_path, model_file,
                                             tmp_path, caplog):
    t, v = ekg
    n = 10 * RATE
    keep = np.ones(n, bool)
    keep[1000:1100] = False
    influx.write_series(fresh_db, "ekg", t[:n][keep], {"value": v[:n][keep]})
    out_db = fresh_db + "_err"
    with caplog.at_level("WARNING", logger="pipeline.stream"):
        totals = Stream(make_cfg(fresh_db, model_path, tmp_path, out_db, batch=1000), influx).backfill(
            T0, T0 + 10**12)
    assert "gap between" in caplog.text
    assert totals["gaps"] == 1
    assert_equals_batch(influx, out_db, model_file, t[:n][keep], v[:n][keep])
    seg = influx.read_field(out_db, "ERROR", "max_error")
    assert not ((seg.times > t[1000 - 16]) & (seg.times < t[1100 + 16])).any()
    # a flat run ends at the gap: the first sample after it starts a new one (0 s: the stream
    # leaves flat_s out of that point, and writes its alarm)
    flat = influx.read_field(out_db, "zscore", "flat_s")
    assert t[1100] not in set(flat.times.tolist())
    assert t[1100] in set(influx.read_field(out_db, "zscore", "flat_alert").times.tolist())
    influx.drop_database(out_db)


# -- follow -----------------------------------------------------------------
def _writer(ix, db, t, v, chunk, pause, tags=None, done=None, errors=None):
    try:
        for i in range(0, len(t), chunk):
            while True:
                try:
                    ix.write_series(db, "ekg", t[i:i + chunk], {"value": v[i:i + chunk]}, tags)
                    break
                except Exception:  # the server restarts in one test; keep the data
                    time.sleep(0.05)
            time.sleep(pause)
    except Exception as e:  # pragma: no cover - surfaced by the assertion below
        errors.append(e)
    finally:
        if done is not None:
            done.set()


def _wait_caught_up(stream, t_last, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(t == t_last for t in stream.marks().values()):
            return True
        time.sleep(0.05)
    return False


def test_follow_equals_backfill(influx, fresh_db, ekg, model_path, model_file, tmp_path):
    t, v = ekg
    n = 15 * RATE
    out_f, out_b = fresh_db + "_f", fresh_db + "_b"
    stream = Stream(make_cfg(fresh_db, model_path, tmp_path, out_f), influx)
    th = threading.Thread(target=stream.follow, kwargs={"start_ns": T0})
    th.start()
    errors = []
    _writer(influx, fresh_db, t[:n], v[:n], chunk=257, pause=0.01, errors=errors)
    assert _wait_caught_up(stream, int(t[n - 1]))
    stream.stop.set()
    th.join(10)
    assert not errors
    Stream(make_cfg(fresh_db, model_path, tmp_path, out_b), influx).backfill(T0, T0 + 10**12)
    assert_same_output(influx, out_f, out_b, model_file)
    assert_equals_batch(influx, out_f, model_file, t[:n], v[:n])
    for d in (out_f, out_b):
        influx.drop_database(d)


def test_influxd_restart_mid_stream_loses_nothing(tmp_path, ekg, model_path, model_file):
    """A dedicated server is stopped and restarted while the stream follows it."""
    srv = LocalInfluxd(tmp_path / "srv").start()
    try:
        ix = Influx(InfluxSettings(port=srv.http_port, timeout=2))
        ix.create_database("src")
        t, v = ekg
        n = 12 * RATE
        stream = Stream(make_cfg("src", model_path, tmp_path, "out_f"), ix)
        th = threading.Thread(target=stream.follow, kwargs={"start_ns": T0})
        th.start()
        half = n // 2
        _writer(ix, "src", t[:half], v[:half], chunk=360, pause=0.01)
        assert _wait_caught_up(stream, int(t[half - 1]))
        srv.stop()  # SIGTERM; the stream now retries with backoff
        time.sleep(1.0)
        srv.start()
        _writer(ix, "src", t[half:n], v[half:n], chunk=360, pause=0.01)
        assert _wait_caught_up(stream, int(t[n - 1]))
        stream.stop.set()
        th.join(10)
        Stream(make_cfg("src", model_path, tmp_path, "out_b"), ix).backfill(T0, T0 + 10**12)
        assert_same_output(ix, "out_f", "out_b", model_file)
        assert n_scored(ix, "out_f") == n
    finally:
        srv.stop()


# -- the command: kill -9, SIGTERM, bad config --------------------------------
def _cmd(args):
    return [sys.executable, "-m", "pipeline.stream", *args]


def _run(args, env):
    """``python -m pipeline.stream ARGS`` as a user runs it, to completion, in a new process."""
    return subprocess.run(_cmd(args), env=env, capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


@pytest.fixture
def cli(influx_env, caplog, capsys):
    """``pipeline.stream.main(ARGS)`` in this process (a new one costs seconds of imports).

    Returns ``(returncode, stdout, stderr)`` like :func:`_run`, the log lines as stderr. An
    exception escaping ``main`` fails the test: what a user would see as a traceback.
    """
    from types import SimpleNamespace

    from pipeline.stream import main

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def run(args):
        caplog.clear()
        capsys.readouterr()
        with caplog.at_level("INFO", logger="pipeline.stream"):
            try:
                rc = main(args)
            except SystemExit as e:  # argparse
                rc = e.code
        out = capsys.readouterr()
        return SimpleNamespace(returncode=rc, stdout=out.out, stderr=out.err + caplog.text)

    yield run
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def _write_toml(path, db, model_path, out_db, ckpt, batch=2000):
    path.write_text(f"""
[output]
db = "{out_db}"
[stream]
checkpoint_dir = "{ckpt}"
batch_samples = {batch}
poll_interval = 0.05
[[series]]
name = "ekg"
db = "{db}"
measurement = "ekg"
sample_rate = {RATE}
model = "{model_path}"
""")
    return str(path)


def test_kill9_and_restart_equals_uninterrupted_run(cli, influx, loaded, model_path, model_file,
                                                   ekg, tmp_path, influx_env):
    out_k, out_u = loaded + "_k", loaded + "_u"
    ck = tmp_path / "ck"
    cfg_k = _write_toml(tmp_path / "k.toml", loaded, model_path, out_k, ck, batch=1000)
    cfg_u = _write_toml(tmp_path / "u.toml", loaded, model_path, out_u, tmp_path / "cu")
    rng = ["--start", str(T0), "--end", str(T0 + 10**12)]
    p = subprocess.Popen(_cmd(["--config", cfg_k, *rng]), env=influx_env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    _wait_for_checkpoint(ck)
    assert p.poll() is None, "the run finished before it could be killed; use a smaller batch"
    p.send_signal(signal.SIGKILL)
    p.wait()
    n_partial = n_scored(influx, out_k)
    assert 0 < n_partial < 43_200
    r = cli(["--config", cfg_k, *rng])
    assert r.returncode == 0, r.stderr
    assert "resuming after" in r.stderr
    r = cli(["--config", cfg_u, *rng])
    assert r.returncode == 0, r.stderr
    assert_same_output(influx, out_k, out_u, model_file)
    assert n_scored(influx, out_k) == n_scored(influx, out_u) == 43_200
    assert_equals_batch(influx, out_k, model_file, *ekg)
    assert not list(ck.rglob("*.ckpt"))  # a finished backfill leaves no checkpoint behind
    # running the same finished backfill again re-scores the range, overwriting: same points
    r = cli(["--config", cfg_k, *rng])
    assert r.returncode == 0 and "scored 43,200 samples" in r.stdout, r.stderr
    assert "alarm points per detector: shape " in r.stdout and "alarm events" in r.stdout
    assert_same_output(influx, out_k, out_u, model_file)
    for d in (out_k, out_u):
        influx.drop_database(d)


def _wait_for_checkpoint(ck, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not list(ck.rglob("*.ckpt")):
        time.sleep(0.005)


def test_sigterm_mid_backfill_checkpoints_what_was_written_and_exits_0(cli, influx, loaded,
                                                                       model_path, model_file,
                                                                       tmp_path, influx_env):
    from pipeline.checkpoint import CheckpointStore

    out_t, out_u = loaded + "_t", loaded + "_u"
    ck = tmp_path / "ck"
    cfg = _write_toml(tmp_path / "t.toml", loaded, model_path, out_t, ck, batch=1000)
    rng = ["--start", str(T0), "--end", str(T0 + 10**12)]
    p = subprocess.Popen(_cmd(["--config", cfg, *rng]), env=influx_env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    _wait_for_checkpoint(ck)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert "received SIGTERM" in err and "scored" in out
    # the checkpoint stands exactly at the newest point written, no further
    (path,) = ck.rglob("*.ckpt")
    st = CheckpointStore(path.parent).load("ekg", "")
    written = influx.read_field(out_t, "zscore", "flat_alert").times
    assert 0 < len(written) < 43_200, "stop earlier: the run had finished"
    assert st.last_time_ns == written[-1]
    # and a restart completes it with no gap and no duplicate
    r = cli(["--config", cfg, *rng])
    assert r.returncode == 0, r.stderr
    cfg_u = _write_toml(tmp_path / "u.toml", loaded, model_path, out_u, tmp_path / "cu")
    assert cli(["--config", cfg_u, *rng]).returncode == 0
    assert_same_output(influx, out_t, out_u, model_file)
    for d in (out_t, out_u):
        influx.drop_database(d)


def test_sigterm_in_follow_mode_exits_0_with_a_checkpoint(influx, loaded, model_path, tmp_path,
                                                           influx_env):
    ck = tmp_path / "ck"
    cfg = _write_toml(tmp_path / "f.toml", loaded, model_path, loaded + "_f", ck)
    p = subprocess.Popen(_cmd(["--config", cfg, "--start", str(T0)]), env=influx_env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    _wait_for_checkpoint(ck)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert "received SIGTERM" in err and "scored" in out
    assert list(ck.glob("*.ckpt"))
    influx.drop_database(loaded + "_f")


class _Marker:
    """Unpickling this creates a directory: proof that a loader ran code from a checkpoint."""

    path = None

    def __reduce__(self):
        return (os.mkdir, (str(self.path),))


def _pickled(protocol):
    return pickle.dumps({"last_time_ns": T0, "state": _Marker()}, protocol=protocol)


@pytest.mark.parametrize("content", [
    lambda: _pickled(0), lambda: _pickled(2), lambda: _pickled(pickle.HIGHEST_PROTOCOL),
    lambda: b"PK\x03\x04 torn", lambda: b"",
], ids=["pickle-0", "pickle-2", "pickle-highest", "torn", "empty"])
def test_old_or_broken_checkpoint_is_refused_with_reset_and_never_unpickled(
        cli, content, influx, loaded, model_path, tmp_path, influx_env):
    from pipeline.checkpoint import CheckpointStore

    marker = tmp_path / "pwned"
    _Marker.path = marker
    ck = tmp_path / "ck"
    ck.mkdir()
    path = CheckpointStore(ck).path("ekg", "")
    path.write_bytes(content())
    if path.read_bytes().startswith(b"\x80") or path.read_bytes()[:1] == b"(":
        pickle.loads(path.read_bytes())  # the trap is real: unpickling it runs code ...
        assert marker.exists()
        marker.rmdir()
    with pytest.raises(ConfigError, match="run with --reset"):
        CheckpointStore(ck).load("ekg", "")
    cfg = _write_toml(tmp_path / "f.toml", loaded, model_path, loaded + "_f", ck)
    r = cli(["--config", cfg, "--start", str(T0), "--max-polls", "1"])
    assert r.returncode == 2 and "--reset" in r.stderr and str(path) in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not marker.exists()  # ... and neither the loader nor the stream unpickled it
    r = cli(["--config", cfg, "--start", str(T0), "--max-polls", "1", "--reset"])
    assert r.returncode == 0 and "removed 1 checkpoints" in r.stderr, r.stderr
    assert not marker.exists()
    # the new checkpoint is data, private to its owner
    assert path.read_bytes()[:2] == b"PK" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert CheckpointStore(ck).load("ekg", "").last_time_ns > T0
    influx.drop_database(loaded + "_f")


_ONE = "[[series]]\ndb='a'\nmeasurement='x'\nmodel='m.npz'\n"


@pytest.mark.parametrize("toml, message", [
    ("[[series]]\nmeasurement = 'x'\n", "'db' is required"),
    (_ONE + "colour='red'\n", "unknown keys ['colour']"),
    (_ONE + "sample_rate=-1\n", "positive number"),
    ("[[series]]\ndb='a'\nmeasurement='x'\n", "series 'x' has no model file"),
    ("[[series]]\ndb='a'\nmeasurement='x'\nzscore=false\n", "['zscore'] tables are gone"),
    (_ONE + "zscore = { window = 30 }\n", "every detector and its threshold now come from the "
                                           "model file"),
    (_ONE + "long = { halflife = 900 }\n", "['long'] tables are gone"),
    ("[[series\n", "not valid TOML"),
    ("[stream]\nlog_every = 'x'\n" + _ONE, "log_every must be a number"),
    ("[stream]\ncheckpoint_dir = 5\n" + _ONE, "checkpoint_dir must be a path"),
    ("[stream]\npoll_interval = 0\n" + _ONE, "poll_interval must be a number"),
    ("[oops]\n" + _ONE, "unknown tables ['oops']"),
    ("[output]\ndiagnostics = 'yes'\n" + _ONE, "[output] diagnostics must be true or false, "
                                              "got 'yes'"),
    ("[output]\nprecision = 'half'\n" + _ONE, "[output] precision must be one of ['float32', "
                                              "'float64'], got 'half'"),
])
def test_bad_config_is_a_clear_error(cli, tmp_path, toml, message):
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    r = cli(["--config", str(path), "--max-polls", "1"])
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    if "tables are gone" in message:
        assert "python -m pipeline.train" in r.stderr  # and it says what to do instead


def test_diagnostics_are_off_unless_the_config_or_the_flag_asks(tmp_path):
    from pipeline.stream_config import load_config

    path = tmp_path / "c.toml"
    for head, flags, want in (("", [], False), ("[output]\ndiagnostics = true\n", [], True),
                              ("[output]\ndiagnostics = false\n", ["--diagnostics"], True)):
        path.write_text(head + _ONE)
        args = build_parser().parse_args(["--config", str(path), *flags])
        assert load_config(str(path), args).output.diagnostics is want, (head, flags)


def test_precision_is_float32_unless_the_config_or_the_flag_asks(tmp_path):
    from pipeline.stream_config import load_config

    path = tmp_path / "c.toml"
    for head, flags, want in (("", [], "float32"), ("[output]\nprecision = 'float64'\n", [],
                                                    "float64"),
                              ("", ["--precision", "float64"], "float64"),
                              ("[output]\nprecision = 'float64'\n", ["--precision", "float32"],
                               "float32")):
        path.write_text(head + _ONE)
        args = build_parser().parse_args(["--config", str(path), *flags])
        assert load_config(str(path), args).output.precision == want, (head, flags)
    # a config built in code goes through the same check: a typo is not a silent float64
    cfg = StreamConfig(series=[], output=OutputConfig(precision="float23"))
    with pytest.raises(ConfigError, match=r"precision must be one of \['float32', 'float64'\]"):
        Stream(cfg, Influx(InfluxSettings(host="127.0.0.1", port=free_port())))


def test_corrupt_model_in_a_new_process_is_a_clear_error(tmp_path, influx_env, loaded):
    """Across a real process boundary (logging set up by main), as a user runs it."""
    bad = tmp_path / "m.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    r = _run(["--db", loaded, "--measurement", "ekg", "--model", str(bad), "--max-polls", "1"],
             influx_env)
    assert r.returncode == 2
    assert "pipeline.train" in r.stderr and "Traceback" not in r.stderr


def test_old_kmeans_model_file_is_refused_with_retrain(cli, tmp_path, loaded, model):
    """A model file of the single-K-Means format (v1): refused, never half-used."""
    old = tmp_path / "v1.npz"
    meta = {"format": "pipeline.kmeans-reconstructor", "format_version": 1,
            "model": {"class": "KMeansReconstructor", "params": model.get_params()},
            "threshold": {"fitted": {"threshold": 0.5}}, "metadata": {"sample_period_ns": PERIOD},
            "version": "0123456789ab"}
    with open(old, "wb") as f:
        np.savez(f, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
                 centroids=model.cluster_centers_, window=model.window_)
    r = cli(["--db", loaded, "--measurement", "ekg", "--model", str(old), "--max-polls", "1",
              "--checkpoint-dir", str(tmp_path / "ck")])
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert str(old) in r.stderr and "retrain with `python -m pipeline.train`" in r.stderr


def test_model_with_every_detector_off_is_refused(model_path, tmp_path, loaded):
    lm = load_model(model_path)
    for d in lm.detectors:
        d.enabled_ = False
    path = tmp_path / "off.npz"
    save_model(path, lm.detectors, lm.metadata)
    with pytest.raises(ConfigError, match="has no detector switched on.*retrain"):
        Stream(make_cfg(loaded, str(path), tmp_path, loaded + "_o"), Influx(InfluxSettings()))


def test_no_zscore_flag_is_gone(cli):
    r = cli(["--db", "a", "--measurement", "m", "--model", "m.npz", "--no-zscore",
              "--max-polls", "1"])
    assert r.returncode == 2 and "unrecognized arguments: --no-zscore" in r.stderr
    assert "Traceback" not in r.stderr


def test_parse_series_rejects_unknown_keys():
    from pipeline.stream_config import parse_series
    with pytest.raises(ConfigError, match="unknown keys"):
        parse_series({"db": "a", "measurement": "b", "nope": 1}, "x")


def test_malformed_values_are_skipped_and_counted(influx, fresh_db, ekg, model_path, model_file,
                                                 tmp_path):
    """Strings in the source (a bad writer, in another shard) are counted, never a crash.

    InfluxDB fixes a field's type per shard and resolves one type per query, so the
    strings are only visible to a range that lies inside their shard.
    """
    t, v = ekg
    n = 5 * RATE
    influx.write_series(fresh_db, "ekg", t[:n], {"value": v[:n]})
    week = 8 * 86400 * 10**9
    influx.write_lines(fresh_db, [f'ekg value="oops" {T0 + week + i}' for i in range(7)])
    out_db = fresh_db + "_err"
    totals = Stream(make_cfg(fresh_db, model_path, tmp_path, out_db), influx).backfill(
        T0 + week - 10**9, T0 + week + 86400 * 10**9)
    assert totals["malformed"] == 7 and totals["samples"] == 0
    totals = Stream(make_cfg(fresh_db, model_path, tmp_path, out_db), influx).backfill(
        T0, T0 + 86400 * 10**9)
    assert totals["samples"] == n
    assert_equals_batch(influx, out_db, model_file, t[:n], v[:n])
    assert n_scored(influx, out_db) == n
    influx.drop_database(out_db)


def test_follow_crosses_a_source_gap_longer_than_a_batch(influx, fresh_db, ekg, model_path,
                                                         model_file, tmp_path):
    t, v = ekg
    keep = np.r_[0:3000, 9000:12000]  # 6000 samples missing; one read is 1000 samples
    influx.write_series(fresh_db, "ekg", t[keep], {"value": v[keep]})
    out_db = fresh_db + "_f"
    stream = Stream(make_cfg(fresh_db, model_path, tmp_path, out_db, batch=1000), influx)
    totals = stream.follow(start_ns=T0, max_polls=20)
    assert totals["samples"] == len(keep) and totals["gaps"] == 1
    assert_equals_batch(influx, out_db, model_file, t[keep], v[keep])
    influx.drop_database(out_db)


def test_two_series_under_one_filter_is_a_clear_error(influx, fresh_db, ekg, model_path, tmp_path):
    t, v = ekg
    for src in ("a", "b"):
        influx.write_series(fresh_db, "ekg", t[:1000], {"value": v[:1000]}, {"source": src})
    with pytest.raises(ConfigError, match="matches more than one series.*fan_out"):
        Stream(make_cfg(fresh_db, model_path, tmp_path, fresh_db + "_x"), influx).backfill(
            T0, T0 + 10**12)


def test_unreachable_influxdb_is_retried_with_backoff_then_stops_cleanly(tmp_path, model_path,
                                                                         caplog):
    from pipeline.influxd import free_port

    ix = Influx(InfluxSettings(port=free_port(), timeout=1))
    stream = Stream(make_cfg("src", model_path, tmp_path, "out"), ix)
    threading.Timer(1.5, stream.stop.set).start()
    with caplog.at_level("WARNING", logger="pipeline.stream"):
        with pytest.raises(InfluxUnavailableError):
            stream.follow(start_ns=T0)
    assert "retrying in 0.5 s" in caplog.text and "retrying in 1.0 s" in caplog.text
    assert stream.totals["retries"] >= 2


@pytest.mark.parametrize("args, message", [
    (["--db", "a", "--measurement", "m", "--tag", "oops"], "--tag must look like key=value"),
    (["--measurement", "m"], "--measurement needs --db"),
    (["--db", "a", "--measurement", "m", "--end", "2026-01-02"], "--end needs --start"),
    (["--db", "a", "--measurement", "m", "--start", "2026-01-02", "--end", "2026-01-01"],
     "--end must be after --start"),
    (["--db", "a", "--measurement", "m", "--start", "someday"], "cannot parse time"),
    (["--db", "a", "--measurement", "m", "--batch-samples", "10"], "batch_samples must be a number in [1000, 10000000], got 10"),
    (["--db", "a", "--measurement", "m"], "series 'm' has no model file"),
    (["--db", "a", "--measurement", "m", "--model", "/nonexistent/m.npz"],
     "model file '/nonexistent/m.npz' does not exist; retrain"),
    (["--config", "/nonexistent.toml"], "not found"),
])
def test_bad_flags_are_a_clear_error(cli, args, message, tmp_path):
    model = [] if "--model" in args or "--config" in args or message.endswith("no model file") \
        else ["--model", "m.npz"]
    r = cli([*args, *model, "--checkpoint-dir", str(tmp_path), "--max-polls", "1"])
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr


# -- follow with fan-out: keys that appear late, run ahead, or stall ------------------------
@pytest.fixture
def zcfg(sensor_model_path, tmp_path):
    """A sensor fleet at a 2 s cadence, scored by the sensor model (z-score, drift, flat line)."""
    def make(db, out_db, batch=1000):
        s = SeriesConfig(name="temp", db=db, measurement="temp", fan_out="sensor",
                         model=sensor_model_path)
        return StreamConfig(series=[s], output=OutputConfig(db=out_db), batch_samples=batch,
                            checkpoint_dir=str(tmp_path / f"ck-{out_db}"), poll_interval=0.01)
    return make


def _fleet(influx, db, sensor, i0, i1, offset_s=0):
    t = T0 + (np.arange(i0, i1) * 2 + offset_s) * 10**9
    v = 20 + np.sin(np.arange(i0, i1) / 7.0)
    influx.write_series(db, "temp", t, {"value": v}, {"sensor": sensor})
    return t


def _scored(influx, out_db, sensor):
    return influx.read_field(out_db, "zscore", "flat_alert", tags={"sensor": sensor}).times


def test_follow_fan_out_key_that_appears_late_loses_nothing(zcfg, influx, fresh_db, tmp_path):
    out = fresh_db + "_o"
    ta = _fleet(influx, fresh_db, "a", 0, 3000)
    stream = Stream(zcfg(fresh_db, out), influx)
    stream.follow(start_ns=T0, max_polls=5)
    tb = _fleet(influx, fresh_db, "b", 0, 3000)  # a new sensor, with its whole history
    stream._t_keys.clear()  # as if the key refresh interval had passed
    stream.follow(start_ns=T0, max_polls=10)
    np.testing.assert_array_equal(_scored(influx, out, "a"), ta)
    np.testing.assert_array_equal(_scored(influx, out, "b"), tb)


def test_follow_fan_out_key_with_a_clock_ahead_does_not_starve_the_others(zcfg, influx, fresh_db,
                                                                          tmp_path):
    out = fresh_db + "_o"
    ts = {k: _fleet(influx, fresh_db, k, 0, 3000) for k in ("a", "b")}
    ts["c"] = _fleet(influx, fresh_db, "c", 0, 3000, offset_s=4000)  # 4000 s in the future
    Stream(zcfg(fresh_db, out, batch=1000), influx).follow(start_ns=T0, max_polls=30)
    for k, t in ts.items():
        np.testing.assert_array_equal(_scored(influx, out, k), t)


def test_follow_fan_out_stalled_key_is_read_alone_not_with_everyone(zcfg, influx, fresh_db, tmp_path):
    out = fresh_db + "_o"
    _fleet(influx, fresh_db, "dead", 0, 10)
    for k in ("a", "b", "c"):
        _fleet(influx, fresh_db, k, 0, 3000)
    stream = Stream(zcfg(fresh_db, out), influx)
    stream.follow(start_ns=T0, max_polls=10)
    assert stream.totals["samples"] == 9010
    calls = []
    real = stream.reader.read_field
    stream.reader.read_field = lambda *a, **k: calls.append(real(*a, **k)) or calls[-1]
    stream.follow(start_ns=T0, max_polls=3)  # caught up: idle polls re-read nothing old
    assert sum(len(r) for r in calls) == 0


def test_follow_fan_out_bad_key_is_quarantined_not_fatal(influx, fresh_db, model_path, tmp_path,
                                                         ekg, caplog):
    t, v = ekg
    n = 2000
    influx.write_series(fresh_db, "ekg", t[:n], {"value": v[:n]}, {"source": "good"})
    slow = T0 + np.arange(n) * 4_000_000  # 250 Hz: not the model's rate
    influx.write_series(fresh_db, "ekg", slow, {"value": v[:n]}, {"source": "slow"})
    out = fresh_db + "_o"
    cfg = make_cfg(fresh_db, model_path, tmp_path, out, fan_out="source")
    cfg.series[0].sample_period_ns = None
    with caplog.at_level("ERROR", logger="pipeline.stream"):
        totals = Stream(cfg, influx).backfill(T0, T0 + 10**12)
    assert "sample period is 4 ms but the model was trained at 2.77778 ms" in caplog.text
    assert totals["quarantined"] == 1 and totals["samples"] == n
    assert n_scored(influx, out, {"source": "good"}) == n
    assert n_scored(influx, out, {"source": "slow"}) == 0


def test_rate_mismatch_of_a_single_series_is_an_error(influx, fresh_db, model_path, tmp_path, ekg):
    t, v = ekg
    influx.write_series(fresh_db, "ekg", T0 + np.arange(3000) * 4_000_000, {"value": v[:3000]})
    cfg = make_cfg(fresh_db, model_path, tmp_path, fresh_db + "_o")
    cfg.series[0].sample_period_ns = None  # the model's period applies
    with pytest.raises(ConfigError, match="retrain the model at this rate"):
        Stream(cfg, influx).backfill(T0, T0 + 10**12)
    cfg.series[0].sample_period_ns = 4e6
    with pytest.raises(ConfigError, match="sample_rate gives a period of 4 ms"):
        Stream(cfg, influx)


@pytest.fixture(scope="module")
def other_model_path(ekg, tmp_path_factory):
    """A second EKG model (8 clusters, other ranges): a retrained model."""
    from pipeline.train import train

    t, v = ekg
    path = tmp_path_factory.mktemp("other") / "other.npz"
    train(t[:20 * RATE], v[:20 * RATE], t[20 * RATE:40 * RATE], v[20 * RATE:40 * RATE],
          n_clusters=8, out=str(path))
    return str(path)


def test_backfill_with_a_retrained_model_rescores_the_range(influx, loaded, model_path, ekg,
                                                            other_model_path, tmp_path, caplog):
    t, v = ekg
    out = loaded + "_o"
    cfg = make_cfg(loaded, model_path, tmp_path, out, batch=1000)
    _interrupted_backfill(cfg, influx, commits=5)  # its checkpoint stays
    cfg.series[0].model = other_model_path
    with caplog.at_level("WARNING", logger="pipeline.stream"):
        totals = Stream(cfg, influx).backfill(T0, T0 + 10**12)
    assert "the model changed" in caplog.text and totals["samples"] == len(t)
    other = load_model(other_model_path)
    assert_equals_batch(influx, out, other, t, v, {"model": other.version})


def test_unreachable_server_fails_fast_on_the_command_line(tmp_path, model_path):
    from pipeline.influxd import free_port

    env = {"PATH": "/usr/bin:/bin", "INFLUXDB_PORT": str(free_port()), "INFLUXDB_TIMEOUT": "2"}
    r = _run(["--db", "a", "--measurement", "m", "--model", model_path, "--checkpoint-dir",
              str(tmp_path), "--start", str(T0), "--end", str(T0 + 10**9)], env)
    assert r.returncode == 1 and "cannot reach InfluxDB" in r.stderr and "Traceback" not in r.stderr


def test_unwritable_checkpoint_dir_is_a_clear_error_before_anything_is_written(
        influx, loaded, model_path, tmp_path):
    cfg = make_cfg(loaded, model_path, tmp_path, loaded + "_o")
    cfg.checkpoint_dir = "/proc/nope"
    with pytest.raises(ConfigError, match="checkpoint directory .* is not usable"):
        Stream(cfg, influx).backfill(T0, T0 + 10**12)
    assert loaded + "_o" not in influx.databases()


def test_reset_and_changed_model(cli, influx, loaded, model_path, other_model_path, tmp_path,
                                 influx_env):
    ck = tmp_path / "ck"
    cfg = _write_toml(tmp_path / "f.toml", loaded, model_path, loaded + "_f", ck)
    base = ["--config", cfg, "--start", str(T0), "--max-polls", "2"]
    r = cli(base)
    assert r.returncode == 0 and list(ck.glob("*.ckpt")), r.stderr
    # a retrained model: the position is kept, the rolling state restarts, and it says so
    text = open(cfg).read().replace(model_path, other_model_path)
    (tmp_path / "g.toml").write_text(text)
    r = cli(["--config", str(tmp_path / "g.toml"), "--max-polls", "1"])
    assert r.returncode == 0 and "the model changed" in r.stderr, r.stderr
    assert "rolling state restarts" in r.stderr and "resuming after" in r.stderr
    r = cli([*base, "--reset"])
    assert r.returncode == 0 and "removed 1 checkpoints" in r.stderr, r.stderr
    assert "resuming after" not in r.stderr
    influx.drop_database(loaded + "_f")


def test_summary_merges_alarm_points_into_events_per_detector():
    totals = {"samples": 10, "malformed": 0, "gaps": 0, "skipped_samples": 0,
              "points_written": 15, "retries": 0, "seconds": 1.0,
              "alarm_points": {"shape": 3, "flat line": 1, "z-score": 0}}
    s = 10**9
    h = s // 2  # the shape detector's output spacing here; the z-score's is 2 s
    flagged = [("ekg", "", "shape", T0, 0.5, h), ("ekg", "", "shape", T0 + h, 0.9, h),
               ("ekg", "", "flat line", T0 + h, 7.0, h),  # another detector: its own event
               ("ekg", "", "shape", T0 + 3 * s, 0.4, h),  # not the next point: a new episode
               ("t", "s1", "z-score", T0, 2.0, 2 * s), ("t", "s2", "z-score", T0, 3.0, 2 * s),
               # consecutive points at a 2 s cadence are one episode (they were 3 before)
               ("t", "s3", "z-score", T0, 1.0, 2 * s), ("t", "s3", "z-score", T0 + 2 * s, 5.0, 2 * s),
               ("t", "s3", "z-score", T0 + 4 * s, 4.0, 2 * s)]
    text = summary_text(totals, flagged)
    assert ("t[s3]  z-score   2026-01-01T00:00:00+00:00 .. 2026-01-01T00:00:04+00:00      3  5"
            in text)
    assert "alarm points per detector: shape 3, flat line 1, z-score 0" in text
    assert ("ekg  shape     2026-01-01T00:00:00+00:00 .. 2026-01-01T00:00:00.500000+00:00"
            "      2  0.9") in text
    assert ("ekg  flat line 2026-01-01T00:00:00.500000+00:00 .. "
            "2026-01-01T00:00:00.500000+00:00      1  7") in text
    assert ("ekg  shape     2026-01-01T00:00:03+00:00 .. 2026-01-01T00:00:03+00:00      1  0.4"
            in text)
    assert "t[s1]  z-score" in text and "t[s2]  z-score" in text
    assert "alarm points per detector: none" in summary_text({**totals, "alarm_points": {}}, [])
    assert "stamp their own times: none\n" in text  # no detector stamped its own times
    text = summary_text({**totals, "points": {"shape": 3, "baseline step": 2}},
                        [*flagged, ("ekg", "", "baseline step", T0, 0.3, h)])
    assert "stamp their own times: shape 3, baseline step 2" in text
    # the detector column fits the longest label
    assert "ekg  baseline step 2026-01-01T00:00:00+00:00 .." in text
    assert "ekg  shape         2026-01-01T00:00:00+00:00 .." in text


def test_the_summary_lists_the_first_alarm_points_of_every_detector(
        influx, loaded, model_path, model_file, tmp_path):
    """The list of alarm events keeps the first alarm points of *each* detector (it kept the
    first 1,000 overall, so a detector late in the model's list could be left out)."""
    out_db = loaded + "_flagged"
    st = Stream(make_cfg(loaded, model_path, tmp_path, out_db), influx)
    st.tally.max_flagged = 5
    totals = st.backfill(T0, T0 + 10**12)
    alarmed = {k for k, v in totals["alarm_points"].items() if v}
    assert len(alarmed) >= 2
    per = {}
    for f in st.flagged:
        per[f[2]] = per.get(f[2], 0) + 1
    assert set(per) == alarmed and all(n <= 5 for n in per.values())
    assert "(from the first 5 alarm points of each detector)" in summary_text(
        totals, st.flagged, max_flagged=st.tally.max_flagged)
    assert set(totals["points"]) == {d.label for d in model_file.enabled if not d.per_sample}
    influx.drop_database(out_db)


@pytest.mark.parametrize("diagnostics", [False, True])
def test_sensor_detectors_in_the_stream_equal_their_batch_twins(influx, fresh_db, tmp_path,
                                                                sensor_model_path,
                                                                sensor_model_file, diagnostics):
    """z-score, drift and flat line, streamed per fan-out key in slices, equal their twins;
    with ``[output] diagnostics`` the z-score's ``streak`` and ``zscore`` too."""
    from pipeline.datasets import synthetic_temperature

    temp = synthetic_temperature(hours=3, n_sensors=3)
    t_all = T0 + np.round(temp["time_s"].to_numpy() * 1e9).astype(np.int64)
    series = {}
    for sensor in ("s00", "s01", "s02"):
        m = (temp["sensor"] == sensor).to_numpy()
        series[sensor] = t_all[m], temp["value"].to_numpy()[m]
        influx.write_series(fresh_db, "temp", *series[sensor][:1],
                            {"value": series[sensor][1]}, {"sensor": sensor})
    out = fresh_db + "_o"
    s = SeriesConfig(name="temp", db=fresh_db, measurement="temp", fan_out="sensor",
                     model=sensor_model_path)
    cfg = StreamConfig(series=[s], output=OutputConfig(db=out, diagnostics=diagnostics),
                       batch_samples=1000, checkpoint_dir=str(tmp_path / "ck"))
    totals = Stream(cfg, influx).backfill(T0, T0 + 86400 * 10**9)
    assert [d.name for d in sensor_model_file.enabled] == ["zscore", "drift", "flatline"]
    for sensor, (t, v) in series.items():
        assert_equals_batch(influx, out, sensor_model_file, t, v, {"sensor": sensor}, diagnostics)
    if diagnostics:  # the comparison covers a streak and an emitted |z|
        assert influx.read_field(out, "zscore", "zscore", tags={"sensor": "s00"}).values.max() > 0
    # the comparison covers alarms: s00's 3-sample spike at 1 h raises the z-score alarm
    assert totals["alarm_points"]["z-score"] > 0
    alert = influx.read_field(out, "zscore", "alert", tags={"sensor": "s00"})
    first = alert.times[np.flatnonzero(alert.values)[0]]
    assert first == series["s00"][0][1800]
    assert influx.count(out, "ERROR", "max_error") == 0  # no segment detector in this model


def test_zscore_and_long_tables_are_gone_with_a_clear_error():
    from pipeline.stream_config import parse_series

    for table in ({"zscore": {"window": 30}}, {"zscore": False}, {"long": {"halflife": 900}}):
        with pytest.raises(ConfigError, match=r"tables are gone: every detector and its "
                                              r"threshold now come from the model file.*"
                                              r"python -m pipeline.train"):
            parse_series({"db": "a", "measurement": "m", "model": "m.npz", **table}, "x")


def test_follow_fan_out_group_keys_with_a_long_outage_are_not_starved(zcfg, influx, fresh_db, tmp_path):
    """a and b (the median) are silent for longer than one read while c goes on."""
    out = fresh_db + "_o"
    gap = np.r_[0:100, 2000:3000]
    ts = {k: T0 + idx * 2 * 10**9 for k, idx in (("a", gap), ("b", gap), ("c", np.arange(3000)))}
    for k, t in ts.items():
        influx.write_series(fresh_db, "temp", t, {"value": 20 + np.sin((t - T0) / 14e9)},
                            {"sensor": k})
    Stream(zcfg(fresh_db, out), influx).follow(start_ns=T0, max_polls=40)
    for k, t in ts.items():
        np.testing.assert_array_equal(_scored(influx, out, k), t)


def test_follow_moves_past_a_stretch_of_malformed_values(zcfg, influx, fresh_db, tmp_path):
    week = 8 * 86400 * 10**9
    # 1500 strings 2 s apart: longer than one read of 1000 samples
    influx.write_lines(fresh_db, [f'temp,sensor=a value="oops" {T0 + i * 2 * 10**9}'
                                  for i in range(1500)])
    t = T0 + 3 * week + np.arange(100) * 2 * 10**9
    influx.write_series(fresh_db, "temp", t, {"value": np.sin(np.arange(100.0))}, {"sensor": "a"})
    cfg = zcfg(fresh_db, fresh_db + "_o")
    totals = Stream(cfg, influx).follow(start_ns=T0, max_polls=20)
    assert totals["samples"] == 100 and totals["malformed"] == 1500  # each counted once
    np.testing.assert_array_equal(_scored(influx, fresh_db + "_o", "a"), t)


def test_follow_new_key_during_downtime_is_scored_after_restart(zcfg, influx, fresh_db, tmp_path):
    out = fresh_db + "_o"
    ta = _fleet(influx, fresh_db, "a", 0, 100)
    Stream(zcfg(fresh_db, out), influx).follow(start_ns=T0, max_polls=3)
    ta = np.r_[ta, _fleet(influx, fresh_db, "a", 100, 200)]
    tb = _fleet(influx, fresh_db, "b", 50, 200)  # appeared while the stream was down
    Stream(zcfg(fresh_db, out), influx).follow(start_ns=None, max_polls=5)
    np.testing.assert_array_equal(_scored(influx, out, "a"), ta)
    np.testing.assert_array_equal(_scored(influx, out, "b"), tb)


def test_fan_out_keys_respect_the_series_tag_filter(zcfg, influx, fresh_db, tmp_path):
    for site, sensors in (("x", ["a"]), ("y", ["b", "c", "d"])):
        for k in sensors:
            influx.write_series(fresh_db, "temp", T0 + np.arange(500) * 2 * 10**9,
                                {"value": np.sin(np.arange(500.0))}, {"sensor": k, "site": site})
    cfg = zcfg(fresh_db, fresh_db + "_o")
    cfg.series[0].tags = {"site": "x"}
    stream = Stream(cfg, influx)
    stream.follow(start_ns=T0, max_polls=3)
    assert sorted(k for _, k in stream.marks()) == ["a"] and stream.totals["samples"] == 500


def test_dropped_output_database_stops_the_stream_instead_of_losing_scores(zcfg, influx, fresh_db,
                                                                           tmp_path):
    from pipeline.checkpoint import CheckpointStore

    out = fresh_db + "_o"
    _fleet(influx, fresh_db, "a", 0, 100)
    stream = Stream(zcfg(fresh_db, out), influx)
    errors = []

    def run():
        try:
            stream.follow(start_ns=T0)
        except Exception as e:  # noqa: BLE001 - the test inspects it
            errors.append(e)

    th = threading.Thread(target=run)
    th.start()
    store, last = CheckpointStore(tmp_path / f"ck-{out}"), T0 + 99 * 2 * 10**9
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the first 100 points are written and checkpointed
        st = store.load("temp", "a") if store.path("temp").exists() else None
        if st is not None and st.last_time_ns == last:
            break
        time.sleep(0.01)
    influx.drop_database(out)
    _fleet(influx, fresh_db, "a", 100, 200)
    th.join(30)
    stream.stop.set()
    assert errors and isinstance(errors[0], InfluxQueryError), errors
    assert "database not found" in str(errors[0])
    assert store.load("temp", "a").last_time_ns == last  # it did not move past lost scores


def test_interrupted_backfill_resumes_from_its_checkpoint_data(influx, loaded, model_path,
                                                              model_file, ekg, tmp_path, caplog):
    out = loaded + "_o"
    cfg = make_cfg(loaded, model_path, tmp_path, out, batch=1000)
    first = _interrupted_backfill(cfg, influx, commits=5)
    with caplog.at_level("INFO", logger="pipeline.stream"):
        totals = Stream(cfg, influx).backfill(T0, T0 + 10**12)
    assert "resuming after" in caplog.text
    assert first.totals["samples"] + totals["samples"] == 43_200
    assert_equals_batch(influx, out, model_file, *ekg)
    assert influx.count(out, "ERROR", "max_error") == (43_200 - 32) // 16 + 1


def test_backfill_writes_behind_and_each_checkpoint_covers_only_what_was_written(
        influx, loaded, model_path, model_file, ekg, tmp_path):
    """A slow server: batch k+1 is scored while k is written, and the checkpoint saved after
    write k stands at k's newest sample, not at k+1's (kill -9 there redoes nothing missing)."""
    out = loaded + "_o"
    stream = Stream(make_cfg(loaded, model_path, tmp_path, out, batch=8000), influx)
    real, seen, busy, overlaps = stream._commit, [], [0], []

    def commit(lines, snapshots, **kw):
        busy[0] += 1
        overlaps.append(busy[0] > 1)  # two commits at once: order and checkpoints lost
        n0 = stream.totals["samples"]
        time.sleep(0.3)
        real(lines, snapshots, **kw)
        busy[0] -= 1
        per_sample = [int(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("zscore,")]
        if snapshots and per_sample:
            seen.append((stream.store.load("ekg", "").last_time_ns, max(per_sample),
                         stream.totals["samples"] > n0))

    stream._commit = commit
    assert stream.backfill(T0, T0 + 10**12)["samples"] == 43_200
    assert len(seen) >= 5 and not any(overlaps)  # the end of the range's commit included
    assert all(ckpt == newest for ckpt, newest, _ in seen), seen
    assert sum(ahead for *_, ahead in seen) >= len(seen) - 1, seen  # all but the last overlap
    assert_equals_batch(influx, out, model_file, *ekg)


def test_a_write_that_fails_behind_stops_the_backfill_with_the_checkpoint_before_it(
        influx, loaded, model_path, tmp_path):
    """Write 3 is refused: the backfill raises it, slice 4 (scored meanwhile) is neither
    written nor checkpointed, and the checkpoint stands at slice 2's newest sample."""
    out = loaded + "_o"
    stream = Stream(make_cfg(loaded, model_path, tmp_path, out, batch=8000), influx)
    real, n = stream._commit, [0]

    def commit(lines, snapshots, **kw):
        n[0] += 1
        if n[0] == 3:
            deadline = time.monotonic() + 30
            while stream.totals["samples"] < 4 * 8000 and time.monotonic() < deadline:
                time.sleep(0.01)  # slice 4 is scored meanwhile
            raise InfluxQueryError("refused (test)")
        real(lines, snapshots, **kw)

    stream._commit = commit
    with pytest.raises(InfluxQueryError, match="refused"):
        stream.backfill(T0, T0 + 10**12)
    assert n[0] == 3 and stream.totals["samples"] == 4 * 8000
    written = influx.read_field(out, "zscore", "flat_alert").times
    assert len(written) == 2 * 8000
    assert stream.store.load("ekg", "").last_time_ns == written[-1]


def _interrupted_backfill(cfg, influx, commits):
    """A backfill stopped deterministically after ``commits`` batches (its checkpoint stays)."""
    stream = Stream(cfg, influx)
    real, n = stream._commit, [0]

    def commit(lines, touched, **kw):
        real(lines, touched, **kw)
        n[0] += 1
        if n[0] >= commits:
            stream.stop.set()

    stream._commit = commit
    stream.backfill(T0, T0 + 10**12)
    assert 0 < stream.totals["samples"] < 43_200
    return stream


def test_progress_line_reports_throughput_and_lag_behind_the_source(zcfg, influx, fresh_db, tmp_path,
                                                                    caplog):
    _fleet(influx, fresh_db, "a", 0, 3000)
    cfg = zcfg(fresh_db, fresh_db + "_o")
    cfg.log_every = 0.0  # a line after every poll
    with caplog.at_level("INFO", logger="pipeline.stream"):
        Stream(cfg, influx).follow(start_ns=T0, max_polls=2)
    lines = [r.message for r in caplog.records if "samples/s" in r.message]
    # one read is 1000 samples at 2 s: after the first poll 2000 of the source's samples wait
    assert "1,000 samples" in lines[0] and "4000.00 s of source data behind" in lines[0]
