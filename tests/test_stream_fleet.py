"""Fleets in the stream: late points, the data's sample period, shards, one checkpoint per series.

Against a real influxd; sensor fleets at a 2 s cadence scored by the sensor model (z-score,
drift, flat line) unless said otherwise.
"""

from __future__ import annotations

import hashlib
import threading
import time

import numpy as np
import pytest
from conftest import PERIOD, RATE, T0, assert_stored
from test_stream import assert_equals_batch, n_scored, out_fields

from pipeline.checkpoint import CheckpointStore
from pipeline.datafile import write_data
from pipeline.model_io import load_model, save_model
from pipeline.shard import Shard, shard_of
from pipeline.stream import (
    ConfigError,
    OutputConfig,
    SeriesConfig,
    Stream,
    StreamConfig,
    summary_text,
)

S = 10**9
STEP = 2 * S


def fleet_cfg(db, out_db, model, ckpt, batch=1000, **kw):
    s = SeriesConfig(name="temp", db=db, measurement="temp", fan_out="sensor", model=model)
    return StreamConfig(series=[s], output=OutputConfig(db=out_db), batch_samples=batch,
                        checkpoint_dir=str(ckpt), poll_interval=0.01, **kw)


def write_fleet(influx, db, keys, idx, offset=0.0):
    """Sensor ``k`` at sample indices ``idx`` (2 s apart); returns ``{k: (times, values)}``."""
    out = {}
    for j, k in enumerate(keys):
        t = T0 + np.asarray(idx, np.int64) * STEP
        v = 20 + np.sin(np.asarray(idx) / (7.0 + j)) + 0.05 * np.cos(np.asarray(idx) * 1.3 + j)
        influx.write_series(db, "temp", t, {"value": v + offset}, {"sensor": k})
        out[k] = (t, v + offset)
    return out


def scored_times(influx, out_db, key):
    return influx.read_field(out_db, "zscore", "flat_alert", tags={"sensor": key}).times


# -- late points ----------------------------------------------------------------------------
def test_late_points_are_counted_per_key_and_logged_not_scored(influx, fresh_db, tmp_path,
                                                               sensor_model_path, caplog):
    out = fresh_db + "_o"
    held = np.r_[2950:2953, 2990]  # 4 points of sensor a come late
    idx_a = np.setdiff1d(np.arange(3000), held)
    write_fleet(influx, fresh_db, ["a"], idx_a)
    write_fleet(influx, fresh_db, ["b"], np.arange(3000))
    cfg = fleet_cfg(fresh_db, out, sensor_model_path, tmp_path / "ck", late_window=600.0,
                    late_every=0.0)
    cfg.log_every = 0.0
    stream = Stream(cfg, influx)
    totals = stream.follow(start_ns=T0, max_polls=12)
    assert totals["samples"] == 2 * 3000 - 4 and totals["late"] == 0
    write_fleet(influx, fresh_db, ["a"], held)  # older than a's mark: late
    write_fleet(influx, fresh_db, ["b"], [3000, 3001])  # in order: scored, not late
    with caplog.at_level("INFO", logger="pipeline.stream"):
        totals = stream.follow(start_ns=T0, max_polls=3)
        # counted once the bucket of data time holding them (60 s here) is behind a's mark:
        # 2990 (5980 s) shares a's last bucket (5940-6000 s) until a's data moves on
        assert totals["late"] == 3
        write_fleet(influx, fresh_db, ["a"], np.arange(3000, 3040))
        totals = stream.follow(start_ns=T0, max_polls=3)
    assert totals["late"] == 4
    assert totals["samples"] == 2 * 3000 - 4 + 2 + 40
    assert "series temp: 3 late points in 1 keys" in caplog.text
    assert "temp[a] 3 from 2026-01-01T01:38:00+00:00" in caplog.text
    assert "a backfill of that range" in caplog.text
    assert any("late points: 4" in r.message for r in caplog.records if "samples/s" in r.message)
    assert "late points (not scored live): 4" in summary_text(totals, stream.flagged)
    # they are not scored live, and counted once
    assert not np.isin(T0 + held * STEP, scored_times(influx, out, "a")).any()
    assert stream.follow(start_ns=T0, max_polls=2)["late"] == 4
    # a restart counts nothing it scored before as late
    again = Stream(cfg, influx)
    assert again.follow(start_ns=T0, max_polls=3)["late"] == 0


def test_late_window_zero_turns_the_count_off(influx, fresh_db, tmp_path, sensor_model_path):
    write_fleet(influx, fresh_db, ["a"], np.arange(0, 500, 2))
    cfg = fleet_cfg(fresh_db, fresh_db + "_o", sensor_model_path, tmp_path / "ck",
                    late_window=0.0, late_every=0.0)
    stream = Stream(cfg, influx)
    stream.follow(start_ns=T0, max_polls=3)
    write_fleet(influx, fresh_db, ["a"], np.arange(1, 500, 2))
    calls = []
    real = stream.reader.count_buckets
    stream.reader.count_buckets = lambda *a, **k: calls.append(1) or real(*a, **k)
    assert stream.follow(start_ns=T0, max_polls=3)["late"] == 0 and not calls


# -- the data's own sample period; read slices -------------------------------------------
@pytest.fixture(scope="module")
def nanosecond_model(model_path, tmp_path_factory):
    """The EKG model as if trained with --sample-rate 1e9 (a period of 1 ns)."""
    lm = load_model(model_path)
    for d in lm.detectors:
        d.period_ns_ = 1.0
    path = tmp_path_factory.mktemp("ns") / "ns.npz"
    save_model(path, lm.detectors, dict(lm.metadata, sample_period_ns=1.0))
    return str(path)


def _counting_reads(stream):
    calls = []
    real = stream.reader.read_field
    stream.reader.read_field = lambda *a, **k: calls.append(1) or real(*a, **k)
    return calls


def test_data_period_far_from_the_model_is_a_clear_error_after_few_reads(
        influx, fresh_db, ekg, nanosecond_model, tmp_path, caplog):
    t, v = ekg
    influx.write_series(fresh_db, "ekg", t[:20 * RATE], {"value": v[:20 * RATE]})
    s = SeriesConfig(name="ekg", db=fresh_db, measurement="ekg", sample_period_ns=1.0,
                     model=nanosecond_model)
    cfg = StreamConfig(series=[s], output=OutputConfig(db=fresh_db + "_o"),
                       checkpoint_dir=str(tmp_path / "ck"))
    stream = Stream(cfg, influx)
    calls = _counting_reads(stream)
    with caplog.at_level("WARNING", logger="pipeline.stream"), \
            pytest.raises(ConfigError, match=r"the data's sample period is 2\.77778 ms but the "
                                             r"model was trained at 1e-06 ms; retrain"):
        stream.backfill(T0, T0 + 10**12)
    # 200,000 periods of 1 ns are 0.2 ms: a slice held one sample at most; once two samples
    # showed the data's period, the slices were clamped to hold 1000 samples
    assert "the data comes every 2.77778 ms, not every 1e-06 ms" in caplog.text
    assert "would hold ~0 samples; reading 2.77778 s at a time instead" in caplog.text
    assert len(calls) <= 10  # (before: two queries per sample, 14,400 for these 20 s)
    # the first reads, one sample each, were scored before 16 steps could be checked
    assert n_scored(influx, fresh_db + "_o") <= 3


def test_fleet_keys_at_another_rate_are_quarantined_the_others_scored(
        influx, fresh_db, tmp_path, sensor_model_path, sensor_model_file, caplog):
    ok = write_fleet(influx, fresh_db, ["a", "b"], np.arange(400))
    t_fast = T0 + np.arange(400) * S  # 1 Hz, the model says 0.5 Hz
    influx.write_series(fresh_db, "temp", t_fast, {"value": 20 + np.sin(np.arange(400) / 5)},
                        {"sensor": "fast"})
    out = fresh_db + "_o"
    cfg = fleet_cfg(fresh_db, out, sensor_model_path, tmp_path / "ck")
    with caplog.at_level("ERROR", logger="pipeline.stream"):
        totals = Stream(cfg, influx).follow(start_ns=T0, max_polls=5)
    assert "series temp[fast]: the data's sample period is 1000 ms but the model was trained " \
           "at 2000 ms" in caplog.text
    assert totals["quarantined"] == 1 and totals["samples"] == 800
    for k, (t, v) in ok.items():
        assert_equals_batch(influx, out, sensor_model_file, t, v, {"sensor": k})
    assert n_scored(influx, out, {"sensor": "fast"}) == 0


def test_a_period_checked_one_sample_per_poll_too(influx, fresh_db, tmp_path, sensor_model_path):
    """A key polled one sample at a time is checked across reads (16 steps)."""
    out = fresh_db + "_o"
    cfg = fleet_cfg(fresh_db, out, sensor_model_path, tmp_path / "ck")
    stream = Stream(cfg, influx)
    for i in range(20):  # 1 Hz, one new sample per poll
        influx.write_series(fresh_db, "temp", np.array([T0 + i * S]), {"value": np.array([20.0])},
                            {"sensor": "fast"})
        stream.follow(start_ns=T0, max_polls=1)
        stream._t_keys.clear()
    assert stream.totals["quarantined"] == 1
    assert 16 <= stream.totals["samples"] < 20


def test_slices_hold_batch_samples_over_the_keys_read_together(influx, sensor_model_path,
                                                               tmp_path, fresh_db):
    cfg = fleet_cfg(fresh_db, fresh_db + "_o", sensor_model_path, tmp_path / "ck", batch=10_000)
    stream = Stream(cfg, influx)
    s = cfg.series[0]
    assert stream._slice_ns(s, 1) == 10_000 * STEP
    assert stream._slice_ns(s, 100) == 100 * STEP
    assert stream._slice_ns(s, 10**6) == STEP  # never less than one period


# -- fleets followed one sample per key and poll ----------------------------------------
def test_live_fleet_one_sample_per_key_and_poll_equals_batch(influx, fresh_db, tmp_path,
                                                             sensor_model_path, sensor_model_file):
    keys = [f"s{i:02d}" for i in range(12)]
    n = 120
    out = fresh_db + "_o"
    write_fleet(influx, fresh_db, keys, [0])
    stream = Stream(fleet_cfg(fresh_db, out, sensor_model_path, tmp_path / "ck"), influx)
    th = threading.Thread(target=stream.follow, kwargs={"start_ns": T0})
    th.start()
    try:
        for i in range(1, n):  # every key's next sample, a few ms apart
            write_fleet(influx, fresh_db, keys, [i])
            time.sleep(0.005)
        deadline = time.monotonic() + 60
        last = T0 + (n - 1) * STEP
        while time.monotonic() < deadline and min(stream.marks().values(), default=0) < last:
            time.sleep(0.05)
    finally:
        stream.stop.set()
        th.join(30)
    for j, k in enumerate(keys):
        idx = np.arange(n)
        v = 20 + np.sin(idx / (7.0 + j)) + 0.05 * np.cos(idx * 1.3 + j)
        assert_equals_batch(influx, out, sensor_model_file, T0 + idx * STEP, v, {"sensor": k})
    # one checkpoint file for the whole fleet, holding every key
    files = list((tmp_path / "ck").glob("*.ckpt"))
    assert len(files) == 1
    assert CheckpointStore(tmp_path / "ck").load("temp", "s07").last_time_ns == last


# -- checkpoints of version 2 (one file per key) --------------------------------------------
def write_version_2(store, m, key, t, v):
    """The file version 2 saved for series ``temp``, key ``key``, after scoring ``t, v``."""
    dets, arrays = [], {}
    for i, d in enumerate(m.enabled):
        st = d.new_state()
        st.update_many(t, v)
        meta, arr = st.get_data()
        dets.append({"name": st.det.name, "state": meta})
        arrays.update({f"{i}.{name}": a for name, a in arr.items()})
    write_data(store.path("temp", key), {
        "version": 2, "series": "temp", "key": key, "origin_ns": T0, "last_time_ns": int(t[-1]),
        "period_checked": True, "model_version": m.version, "n_samples": len(t),
        "detectors": dets}, arrays)


def test_version_2_checkpoints_are_folded_into_one_file(influx, fresh_db, tmp_path,
                                                       sensor_model_path, sensor_model_file):
    data = write_fleet(influx, fresh_db, ["a", "b"], np.arange(600))
    ck = tmp_path / "ck"
    ck.mkdir()
    store = CheckpointStore(ck)
    m = sensor_model_file
    for k, (t, v) in data.items():  # what version 2 saved after the first 250 samples
        write_version_2(store, m, k, t[:250], v[:250])
    out = fresh_db + "_o"
    totals = Stream(fleet_cfg(fresh_db, out, sensor_model_path, ck), influx).follow(
        start_ns=T0, max_polls=5)
    assert totals["samples"] == 2 * 350
    for k, (t, v) in data.items():  # continued from the old states: the same numbers
        for d in m.enabled:
            want = d.new_state().update_many(t, v).fields()
            for name, arr in want.items():
                arr = np.asarray(arr)[250:].astype(np.float64)
                keep = np.isfinite(arr)
                got = influx.read_field(out, "zscore", name, tags={"sensor": k})
                np.testing.assert_array_equal(got.times, t[250:][keep], err_msg=name)
                assert_stored(got.values, arr[keep], name)
    assert [p.name for p in ck.glob("*.ckpt")] == [store.path("temp").name]


def test_version_2_files_of_a_quiet_series_outlive_another_series_commit(
        influx, fresh_db, tmp_path, sensor_model_path, sensor_model_file):
    """Series ``temp`` resumes from version 2 files but has nothing new yet; series ``temp2``
    scores and saves. ``temp``'s old files are its only checkpoint until its own fleet is saved:
    they were deleted by the other series' commit, and a restart then began ``temp`` afresh."""
    data = write_fleet(influx, fresh_db, ["a"], np.arange(250))
    ck = tmp_path / "ck"
    ck.mkdir()
    store = CheckpointStore(ck)
    m = sensor_model_file
    t, v = data["a"]
    write_version_2(store, m, "a", t, v)
    assert store.load("temp", "a").last_time_ns == int(t[-1])
    t2 = T0 + np.arange(400) * STEP
    influx.write_series(fresh_db, "temp2", t2, {"value": 20 + np.sin(np.arange(400) / 9.0)},
                        {"sensor": "c"})
    cfg = fleet_cfg(fresh_db, fresh_db + "_o", sensor_model_path, ck)
    cfg.series.append(SeriesConfig(name="temp2", db=fresh_db, measurement="temp2",
                                   fan_out="sensor", model=sensor_model_path))
    totals = Stream(cfg, influx).follow(start_ns=T0, max_polls=3)
    assert totals["samples"] == 400  # temp2's; temp had nothing after its checkpoint
    again = CheckpointStore(ck).load("temp", "a")
    assert again is not None and again.last_time_ns == int(t[-1])


# -- shards ---------------------------------------------------------------------------------
def test_shard_of_is_sha256_of_series_and_key_and_stable():
    keys = [f"s{i:03d}" for i in range(200)]
    for k in keys[:20]:
        h = int(hashlib.sha256(f"temp\0{k}".encode()).hexdigest()[:16], 16)
        assert shard_of("temp", k, 3) == h % 3 + 1
    before = {k: shard_of("temp", k, 4) for k in keys}
    more = keys + [f"new{i}" for i in range(100)]  # keys that appear later move nobody
    assert {k: shard_of("temp", k, 4) for k in more if k in before} == before
    assert sorted(set(before.values())) == [1, 2, 3, 4]
    owners = [sum(Shard(j, 4).owns("temp", k) for j in range(1, 5)) for k in keys]
    assert owners == [1] * len(keys)  # every key in exactly one shard


@pytest.mark.parametrize("text, message", [
    ("0/2", "must be K/N with 1 <= K <= N (shards are counted from 1), got '0/2'"),
    ("3/2", "must be K/N with 1 <= K <= N (shards are counted from 1), got '3/2'"),
    ("1/0", "must be K/N with 1 <= K <= N (shards are counted from 1), got '1/0'"),
    ("x", "must look like K/N (this process is shard K of N, 1 <= K <= N, e.g. 1/4), got 'x'"),
    ("1/2/3", "must look like K/N"),
])
def test_bad_shard_in_the_config_is_a_clear_error(text, message, tmp_path, sensor_model_path):
    from pipeline.stream_config import load_config

    path = tmp_path / "c.toml"
    path.write_text(f'[stream]\nshard = "{text}"\n[[series]]\ndb="a"\nmeasurement="m"\n'
                    f'model="{sensor_model_path}"\n')
    with pytest.raises(ConfigError) as e:
        load_config(str(path))
    assert f"{path}: [stream] shard {message}" in str(e.value)


def test_bad_shard_flag_exits_2_without_a_traceback(tmp_path, sensor_model_path, influx_env,
                                                    capsys, caplog):
    from pipeline.stream import main

    with caplog.at_level("ERROR", logger="pipeline.stream"):
        rc = main(["--db", "a", "--measurement", "m", "--model", sensor_model_path,
                   "--shard", "3/2", "--max-polls", "1", "--checkpoint-dir", str(tmp_path)])
    assert rc == 2 and "--shard must be K/N with 1 <= K <= N" in caplog.text


def test_shards_together_write_exactly_what_one_process_writes(influx, fresh_db, tmp_path,
                                                               sensor_model_path,
                                                               sensor_model_file):
    keys = [f"s{i:02d}" for i in range(11)]
    write_fleet(influx, fresh_db, keys, np.arange(300))
    one, many = fresh_db + "_one", fresh_db + "_many"
    # one read holds everything, so each key is scored in one chunk by both (z-scores depend
    # on the chunking in the last bits)
    big = 10_000_000
    Stream(fleet_cfg(fresh_db, one, sensor_model_path, tmp_path / "ck1", batch=big),
           influx).follow(start_ns=T0, max_polls=2)
    n = 3
    seen = {}
    for k in range(1, n + 1):
        cfg = fleet_cfg(fresh_db, many, sensor_model_path, tmp_path / "ckn", batch=big,
                        shard=Shard(k, n))
        stream = Stream(cfg, influx)
        stream.follow(start_ns=T0, max_polls=4)
        seen[k] = sorted(key for _, key in stream.marks())
        assert list((tmp_path / "ckn" / f"shard-{k}-of-{n}").glob("*.ckpt"))
    assert sorted(sum(seen.values(), [])) == keys  # each key in one shard ...
    assert all(seen.values())  # ... and every shard has some
    for k in range(1, n + 1):
        assert all(shard_of("temp", key, n) == k for key in seen[k])
    for meas, names in out_fields(sensor_model_file).items():
        for name in names:
            a = influx.read_field(one, meas, name, group_by="sensor")
            b = influx.read_field(many, meas, name, group_by="sensor")
            ga, gb = a.by_group(), b.by_group()
            assert sorted(ga) == sorted(gb), name
            if name in ("flat_alert", "z", "alert"):  # (drift warms up for 900 samples;
                assert sorted(ga) == keys  # thresholds are on alarm points only, flat_s on runs)
            for key in ga:
                np.testing.assert_array_equal(ga[key].times, gb[key].times, err_msg=name)
                np.testing.assert_array_equal(ga[key].values, gb[key].values, err_msg=name)
    # the same shard again picks up where it stood, and the split has not moved
    again = Stream(fleet_cfg(fresh_db, many, sensor_model_path, tmp_path / "ckn", batch=big,
                             shard=Shard(2, n)), influx)
    assert again.follow(start_ns=T0, max_polls=1)["samples"] == 0
    assert sorted(key for _, key in again.marks()) == seen[2]


def test_shard_key_in_config_and_flag(tmp_path, sensor_model_path):
    from argparse import Namespace

    from pipeline.stream_config import load_config

    path = tmp_path / "c.toml"
    path.write_text(f'[stream]\nshard = "2/5"\n[[series]]\ndb="a"\nmeasurement="m"\n'
                    f'model="{sensor_model_path}"\n')
    assert load_config(str(path)).shard == Shard(2, 5)
    args = Namespace(shard="1/5", measurement=None, model=None, checkpoint_dir=None,
                     poll_interval=None, batch_samples=None, out_db=None, out_measurement=None,
                     zscore_measurement=None)
    assert load_config(str(path), args).shard == Shard(1, 5)  # the flag wins


def test_unsharded_series_belongs_to_one_shard(influx, loaded_ekg, model_path, tmp_path):
    db = loaded_ekg
    s = SeriesConfig(name="ekg", db=db, measurement="ekg", sample_period_ns=PERIOD,
                     model=model_path)
    owner = shard_of("ekg", "", 2)
    for k in (1, 2):
        cfg = StreamConfig(series=[s], output=OutputConfig(db=db + f"_{k}"),
                           checkpoint_dir=str(tmp_path / "ck"), shard=Shard(k, 2))
        totals = Stream(cfg, influx).backfill(T0, T0 + 10**12)
        assert totals["samples"] == (5 * RATE if k == owner else 0)


@pytest.fixture
def loaded_ekg(influx, fresh_db, ekg):
    t, v = ekg
    influx.write_series(fresh_db, "ekg", t[:5 * RATE], {"value": v[:5 * RATE]})
    return fresh_db


def test_period_constant_is_the_models(sensor_model_file):
    assert sensor_model_file.period_ns == STEP and PERIOD == 1e9 / RATE


# -- alerts: only keys whose alarms changed are fed, with the same notifications -------------
def test_fleet_alerts_equal_feeding_every_key_its_whole_output(influx, fresh_db, tmp_path,
                                                               sensor_model_path,
                                                               sensor_model_file):
    from pipeline.alerts import parse_alerts_config
    from pipeline.alerts.rules import AlertEngine
    from pipeline.datasets import synthetic_temperature

    temp = synthetic_temperature(hours=3, n_sensors=4, seed=5)
    t_all = T0 + np.round(temp["time_s"].to_numpy() * 1e9).astype(np.int64)
    series = {}
    for k in sorted(temp["sensor"].unique()):
        m = (temp["sensor"] == k).to_numpy()
        v = temp["value"].to_numpy()[m].copy()
        v[2000 + 300 * len(series):2000 + 300 * len(series) + 40] = v[1999]  # stuck: flat line
        series[k] = t_all[m], v
        influx.write_series(fresh_db, "temp", t_all[m], {"value": v}, {"sensor": k})
    cfg = fleet_cfg(fresh_db, fresh_db + "_o", sensor_model_path, tmp_path / "ck", batch=500)
    cfg.alerts = parse_alerts_config({"max_per_minute": 1000, "destination": [{"type": "log"}]},
                                     environ={})
    stream = Stream(cfg, influx)
    got = []
    real = stream.alerts.commit
    stream.alerts.commit = lambda final=False: got.extend(real(final)) or []
    try:
        stream.follow(start_ns=T0, max_polls=60)
    finally:
        stream.close(drain_s=1)
    assert stream.totals["samples"] == sum(len(t) for t, _ in series.values())
    eng = AlertEngine(max_per_minute=1000)
    for k, (t, v) in series.items():
        for d in sensor_model_file.enabled:
            out = d.new_state().update_many(t, v)
            out.measurement = "zscore"
            eng.feed("temp", k, {"sensor": k, "series": "temp",
                                 "model": sensor_model_file.version}, sensor_model_file.version,
                     out)
    want = eng.flush()

    def key(n):
        return (n.kind, n.key, n.detector, n.time_ns, n.text)

    assert len(want) >= 8 and {n.kind for n in want} == {"alert", "recovery"}
    assert {n.detector for n in want} >= {"flatline", "zscore"}
    assert sorted(map(key, got)) == sorted(map(key, want))


def test_backfill_scores_a_key_that_appears_after_the_keys_were_listed(
        influx, fresh_db, tmp_path, sensor_model_path, sensor_model_file):
    data = write_fleet(influx, fresh_db, ["a", "b"], np.arange(500))
    out = fresh_db + "_o"
    stream = Stream(fleet_cfg(fresh_db, out, sensor_model_path, tmp_path / "ck"), influx)
    stream._keys = lambda s: ["a"]  # b appeared just after the listing
    assert stream.backfill(T0, T0 + 10**13)["samples"] == 1000
    for k, (t, v) in data.items():
        assert_equals_batch(influx, out, sensor_model_file, t, v, {"sensor": k})
