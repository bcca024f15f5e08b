"""The fleet detector: a key against its fleet at the same time bin.

The streaming state (any chunking, any poll pattern, a checkpoint in between) equals one
update with everything followed by ``finish()``, and both equal the slow reference
``naive_fleet`` of ``tests/naive.py``.
"""

from __future__ import annotations

import io
import json
import math
import warnings

import numpy as np
import pytest
from conftest import assert_stored

from pipeline.calibrate import CalibrationWarning
from pipeline.detectors import REGISTRY, FleetDetector, default_detectors
from pipeline.detectors import fleet as fleet_mod
from pipeline.detectors.block import make_block
from pipeline.model_io import load_model, save_model
from pipeline.train import TrainError, train

from naive import naive_fleet, naive_fleet_relation

S = 10**9
P = 2 * S


def fleet_data(n_keys=6, n=600, seed=0, jitter=True, info=None):
    """Keys at a 2 s cadence with jitter, gaps, a NaN, one key starting late, one dying early,
    one reading twice in a bin; a common cycle plus own offsets and noise."""
    rng = np.random.default_rng(seed)
    common = np.sin(np.arange(n) / 40.0)
    out = {}
    for k in range(n_keys):
        t = np.arange(n, dtype=np.int64) * P + (rng.integers(-S // 3, S // 3, n) if jitter else 0)
        v = 20 + 0.3 * rng.standard_normal() + common + 0.05 * rng.standard_normal(n)
        keep = rng.random(n) > 0.05  # gaps
        if k == 1:
            keep[: n // 5] = False  # starts late
        if k == 2:
            keep[n // 2:] = False  # dies
        if k == 3:
            v[n // 3] = np.nan
            v[n // 2:] += np.linspace(0, 3, n - n // 2)  # drifts away
        if k == 4:  # two readings in one bin: the later one stands for the key
            t[100] = t[101] - S // 2
            keep[100:102] = True
            if info is not None:
                info["twice"] = (int(t[100]), int(t[101]))
        t, v = t[keep], v[keep]
        order = np.argsort(t, kind="stable")
        out[f"k{k}"] = (t[order], v[order])
    return out


RELATION = {"k0": (0.3, 0.08), "k1": (-0.2, 0.05), "k2": (0.0, 0.06), "k3": (0.1, 0.07),
            "k4": (-0.4, 0.1)}
"""Offsets and scales of the keys the test model knows (k5 and beyond: unknown keys)."""
UNKNOWN = 0.3


def detector(threshold=2.0, relation=RELATION, **kw):
    det = FleetDetector(**{"halflife_s": 10.0, "streak": 4, **kw})
    det.period_ns_, det.phase_ns_, det.std_floor_ = float(P), 0, 0.001
    det.threshold_ = threshold
    det.keys_ = list(relation)
    det.offsets_ = np.array([o for o, _ in relation.values()])
    det.scales_ = np.array([s for _, s in relation.values()])
    det.fleet_scale_, det.unknown_scale_ = 0.07, UNKNOWN
    return det


def block(det, keys):
    """The fleet block of ``keys``, named (as the stream's fleet names its rows)."""
    st = make_block(det, len(keys))
    st.set_keys(keys)
    return st


def batch(det, data):
    """One update with every key's data, then finish: ``{key: (times, z, alarm)}``."""
    keys = list(data)
    st = block(det, keys)
    lengths = [len(data[k][0]) for k in keys]
    outs = [st.update(np.arange(len(keys)), np.concatenate(([0], np.cumsum(lengths))),
                      np.concatenate([data[k][0] for k in keys]),
                      np.concatenate([data[k][1] for k in keys])), st.finish()]
    return collect(outs, keys)


def collect(outs, keys):
    got = {k: ([], [], []) for k in keys}
    for o in outs:
        for j, r in enumerate(o.rows.tolist()):
            a, b = int(o.starts[j]), int(o.starts[j + 1])
            g = got[keys[r]]
            g[0].extend(o.times[a:b].tolist())
            g[1].extend(o.score[a:b].tolist())
            g[2].extend(np.asarray(o.alarm[a:b], bool).tolist())
    return got


def stream(det, data, cuts, per_key_lag=None, state=None):
    """Feed slices ``[cuts[i], cuts[i+1])`` of data time, all keys together (each key's slice
    ends ``per_key_lag[key]`` earlier, the rest coming with the next slice)."""
    keys = list(data)
    st = state or block(det, keys)
    outs = []
    lag = per_key_lag or {}
    pos = dict.fromkeys(keys, 0)
    for hi in cuts[1:]:
        rows, starts, ts, vs = [], [0], [], []
        for j, k in enumerate(keys):
            t, v = data[k]
            end = int(np.searchsorted(t, hi - lag.get(k, 0) if hi < cuts[-1] else hi))
            a = pos[k]
            if end > a:
                rows.append(j)
                starts.append(starts[-1] + end - a)
                ts.append(t[a:end])
                vs.append(v[a:end])
                pos[k] = end
        if rows:
            outs.append(st.update(np.array(rows), np.array(starts), np.concatenate(ts),
                                  np.concatenate(vs)))
    outs.append(st.finish())
    return collect(outs, keys), st


def equal(a, b):
    for k in a:
        assert a[k][0] == b[k][0], k
        np.testing.assert_array_equal(a[k][1], b[k][1])
        assert a[k][2] == b[k][2], k


def test_batch_equals_the_naive_reference():
    info = {}
    data = fleet_data(info=info)
    det = detector()
    got = batch(det, data)
    ref = naive_fleet(data, P, 0, det._alpha(), det._warm(), 3, det.std_floor_, det.streak,
                      det.threshold_, det.hold_ns(), RELATION, UNKNOWN)
    n_alarms = 0
    for k in data:
        t, z, _, alarm = ref[k]
        assert got[k][0] == t
        np.testing.assert_allclose(got[k][1], z, rtol=1e-12, atol=1e-12)
        assert got[k][2] == alarm
        n_alarms += sum(alarm)
    assert n_alarms > 20  # the drifting key
    assert sum(ref["k3"][3]) > 10
    # the key with two readings in a bin: the later one stands for it
    early, late = info["twice"]
    assert early not in got["k4"][0] and late in got["k4"][0]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_any_chunking_equals_batch(seed):
    data = fleet_data(seed=seed)
    det = detector()
    whole = batch(det, data)
    rng = np.random.default_rng(seed)
    end = max(int(t[-1]) for t, _ in data.values()) + 1
    cuts = np.unique(np.r_[0, rng.integers(0, end, 40), end]).tolist()
    got, st = stream(det, data, cuts)
    equal(got, whole)
    assert st.n_late == 0
    # one bin's worth per poll, every key a little behind the others (within the wait)
    polls = list(range(-P, end + P, P))
    lag = {k: int(rng.integers(0, det.wait_ns() - 2 * P)) for k in data}
    got, st = stream(detector(), data, polls, lag)
    equal(got, whole)
    assert st.n_late == 0


def test_checkpoint_in_the_middle_changes_nothing():
    data = fleet_data(seed=4)
    det = detector()
    whole = batch(det, data)
    end = max(int(t[-1]) for t, _ in data.values()) + 1
    mid = end // 2
    first = {k: (t[t < mid], v[t < mid]) for k, (t, v) in data.items()}
    second = {k: (t[t >= mid], v[t >= mid]) for k, (t, v) in data.items()}
    keys = list(data)
    st = block(det, keys)
    lengths = [len(first[k][0]) for k in keys]
    o1 = st.update(np.arange(len(keys)), np.concatenate(([0], np.cumsum(lengths))),
                   np.concatenate([first[k][0] for k in keys]),
                   np.concatenate([first[k][1] for k in keys]))
    meta, arrays = st.get_data()
    assert len(st.p_row)  # readings wait for their bins across the checkpoint
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # as a checkpoint file holds them: JSON text and arrays
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    again = make_block(det, 0)
    again.set_data(json.loads(json.dumps(meta)), arrays, len(keys))
    again.set_keys(keys)  # the stream's fleet names the rows after restoring them
    rest, _ = stream(det, second, [mid, end], state=again)
    got = collect([o1], keys)
    for k in keys:
        for i in range(3):
            got[k][i].extend(rest[k][i])
    equal(got, whole)


def test_a_key_behind_by_more_than_the_wait_is_counted_not_scored():
    data = fleet_data(seed=5, jitter=False)
    det = detector()
    keys = list(data)
    st = block(det, keys)
    t0, v0 = data["k0"]
    others = [k for k in keys if k != "k0"]
    lengths = [len(data[k][0]) for k in others]
    # every key but k0 for the whole range first: k0's bins close after the wait
    st.update(np.array([keys.index(k) for k in others]), np.concatenate(([0], np.cumsum(lengths))),
              np.concatenate([data[k][0] for k in others]),
              np.concatenate([data[k][1] for k in others]))
    newest = max(int(data[k][0][-1]) for k in others)
    o = st.update(np.array([0]), np.array([0, len(t0)]), t0, v0)
    scored = det.bins(t0) <= det.bins([newest - det.wait_ns()])[0] - 1
    assert o.late == st.n_late == int(np.count_nonzero(scored))
    assert len(o) == 0 or int(o.times.min()) > int(t0[scored].max())


def test_fewer_than_three_keys_score_nan_and_never_alarm():
    data = fleet_data(n_keys=2)
    got = batch(detector(threshold=0.0), data)
    for k in data:
        assert np.isnan(got[k][1]).all() and not any(got[k][2])
    one = detector().new_state().update_many(*data["k0"])  # a fleet of one
    assert np.isnan(one.score).all() and not one.alarm.any()


def _fleet_runs(n_keys, n=8000, seed=0):
    rng = np.random.default_rng(seed)
    t = 10**18 + np.arange(n, dtype=np.int64) * P
    common = 2 * np.sin(np.arange(n) / 3000.0)
    return [(t, np.round(20 + 0.1 * rng.standard_normal() + common
                         + 0.05 * rng.standard_normal(n), 2)) for _ in range(n_keys)]


def test_fit_calibrate_and_the_model_file_round_trip(tmp_path):
    runs = _fleet_runs(6)
    keys = [f"k{i}" for i in range(6)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        det = FleetDetector(halflife_s=120).fit(runs, P, keys).calibrate(runs, P, 1 / 24, keys)
    assert det.enabled_ and math.isfinite(det.threshold_)
    assert det.phase_ns_ == 0 and det.std_floor_ == pytest.approx(0.005)
    assert "fleet" in REGISTRY
    save_model(tmp_path / "m.npz", [det], {"sample_period_ns": P})
    back = load_model(tmp_path / "m.npz").detectors[0]
    assert isinstance(back, FleetDetector)
    assert (back.threshold_, back.phase_ns_, back.std_floor_, back.get_params()) == \
        (det.threshold_, det.phase_ns_, det.std_floor_, det.get_params())
    assert back.keys_ == keys and back.unknown_scale_ == det.unknown_scale_
    np.testing.assert_array_equal(back.offsets_, det.offsets_)
    np.testing.assert_array_equal(back.scales_, det.scales_)
    data = dict(zip([f"k{i}" for i in range(6)], runs, strict=True))
    data["k2"] = (data["k2"][0], data["k2"][1] + np.linspace(0, 2, len(data["k2"][1])))
    a, b = batch(det, data), batch(back, data)
    equal(a, b)
    assert any(any(a[k][2]) for k in a)  # the comparison covers alarms
    # the alarm events on the calibration data are the ones calibration counted
    n_events = sum(int(np.count_nonzero(np.diff(np.r_[0, np.asarray(al, int)]) == 1))
                   for _, _, al in batch(det, dict(zip(keys, runs, strict=True))).values())
    assert n_events == det.calibration_["n_events"]


def test_the_grid_phase_is_learned_from_the_readings():
    t = np.arange(1000, dtype=np.int64) * P + 700_000_000  # every reading at .7 s
    det = FleetDetector().fit([(t, np.zeros(1000))] * 3, P)
    assert det.phase_ns_ == 700_000_000
    assert (np.diff(det.bins(t + np.arange(1000) % 7 * 10**8 - 3 * 10**8)) == 1).all()


def test_calibration_turns_it_off_without_a_fleet():
    runs = _fleet_runs(2, n=3000)
    det = FleetDetector(halflife_s=60).fit(runs, P).calibrate(runs, P, 1 / 24)
    assert not det.enabled_
    assert "at least 3 keys" in det.calibration_["why_off"]
    assert "at most 2 keys" in det.calibration_["why_off"]


@pytest.mark.parametrize("kw, message", [
    ({"streak": 0}, "streak must be an integer in [1, 100000], got 0"),
    ({"min_keys": 2}, "min_keys must be an integer in [3,"),
    ({"halflife_s": -1}, "halflife_s must be a number in (0,"),
    ({"wait_s": float("nan")}, "wait_s must be a number"),
    ({"std_floor": -1.0}, "std_floor must be a number >= 0 or None"),
])
def test_bad_parameters_are_named(kw, message):
    with pytest.raises(ValueError) as e:
        FleetDetector(**kw).fit(_fleet_runs(3, n=100), P)
    assert message in str(e.value)


def test_train_adds_the_fleet_detector_for_three_keys_and_refuses_it_for_one(tmp_path):
    runs = _fleet_runs(4, n=6000)
    half = 3000
    tt = [t[:half] for t, _ in runs]
    tv = [v[:half] for _, v in runs]
    vt = [t[half:] for t, _ in runs]
    vv = [v[half:] for _, v in runs]
    assert default_detectors(2)[-1] != "fleet" and default_detectors(3)[-1] == "fleet"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        res = train(tt, tv, vt, vv, out=tmp_path / "m.npz", detectors=["zscore", "fleet"],
                    params={"fleet": {"halflife_s": 60.0}})
    assert [d.name for d in res.detectors] == ["zscore", "fleet"]
    assert res.detectors[1].enabled_
    with pytest.raises(TrainError, match="--fan-out"):
        train(tt[0], tv[0], vt[0], vv[0], out=tmp_path / "one.npz", detectors=["fleet"])


# -- in the stream, against a real influxd ----------------------------------------------------
T0 = 1_767_225_600_000_000_000
KEYS = [f"s{i}" for i in range(6)]
OFFSETS = [0.1, -0.2, 0.3, 0.0, -0.1, 0.2]


@pytest.fixture(scope="module")
def fleet_model(tmp_path_factory):
    """z-score and fleet detectors on a fleet of 6 sensors at 2 s, 1 h + 1 h."""
    rng = np.random.default_rng(7)
    n = 3600
    t = T0 - n * P + np.arange(n, dtype=np.int64) * P
    common = np.sin(np.arange(n) / 300.0)
    vals = [np.round(20 + off + common + 0.03 * rng.standard_normal(n), 3) for off in OFFSETS]
    half = n // 2
    path = tmp_path_factory.mktemp("fleet") / "fleet.npz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        res = train([t[:half]] * 6, [v[:half] for v in vals], [t[half:]] * 6,
                    [v[half:] for v in vals], out=path, detectors=["zscore", "fleet"],
                    params={"fleet": {"halflife_s": 60.0, "streak": 5}})
    assert all(d.enabled_ for d in res.detectors), res.summary()
    return str(path)


def scored_data(n=900, seed=8):
    """The scored range: readings 10 ms off the grid at random; s3 drifts away after 10 min."""
    rng = np.random.default_rng(seed)
    common = np.sin(np.arange(n) / 300.0)
    out = {}
    for j, k in enumerate(KEYS):
        t = T0 + np.arange(n, dtype=np.int64) * P + rng.integers(-10**7, 10**7, n)
        v = 20 + OFFSETS[j] + common + 0.03 * rng.standard_normal(n)
        if k == "s3":
            v[300:] += np.linspace(0, 4, n - 300)
        out[k] = (t, np.round(v, 3))
    return out


def write(influx, db, data, lo=0, hi=None):
    for k, (t, v) in data.items():
        influx.write_series(db, "temp", t[lo:hi], {"value": v[lo:hi]}, {"sensor": k})


def assert_stream_equals_batch(influx, out_db, model, data, whole=False):
    """Every fleet point the stream wrote equals the batch's, and the stream wrote every bin
    the data closed (all but the last wait's worth; ``whole``: every bin, as a backfill
    scores its range's last bins at its end)."""
    det = model.get("fleet")
    want = batch(det, data)
    n_alarm = 0
    for k in KEYS:
        got_a = influx.read_field(out_db, "zscore", "fleet_alert", tags={"sensor": k})
        got_z = influx.read_field(out_db, "zscore", "fleet_z", tags={"sensor": k})
        t, z, alarm = (np.asarray(a) for a in want[k])
        m = len(got_a)
        assert m == len(t) if whole else m >= len(t) - det.wait_ns() // P - 2, (k, m, len(t))
        np.testing.assert_array_equal(got_a.times, t[:m], err_msg=k)
        np.testing.assert_array_equal(got_a.values, alarm[:m].astype(float), err_msg=k)
        fin = np.isfinite(z[:m])
        np.testing.assert_array_equal(got_z.times, t[:m][fin], err_msg=k)
        assert_stored(got_z.values, z[:m][fin], k)
        if k == "s3":
            n_alarm += int(alarm[:m].sum())
    assert n_alarm > 100  # the comparison covers alarms: the drifting sensor's
    # the fleet's fields joined the readings' per-sample points (z-score's fields)
    z = influx.read_field(out_db, "zscore", "alert", tags={"sensor": "s0"})
    assert set(influx.read_field(out_db, "zscore", "fleet_alert", tags={"sensor": "s0"})
               .times.tolist()) <= set(z.times.tolist())


def test_backfill_and_follow_with_a_restart_equal_the_batch(influx, fresh_db, tmp_path,
                                                            fleet_model):
    from pipeline.stream import OutputConfig, SeriesConfig, Stream, StreamConfig

    data = scored_data()
    write(influx, fresh_db, data)
    model = load_model(fleet_model)

    def cfg(out, ck, batch_samples, diagnostics=False):
        s = SeriesConfig(name="temp", db=fresh_db, measurement="temp", fan_out="sensor",
                         model=fleet_model)
        return StreamConfig(series=[s], output=OutputConfig(db=out, diagnostics=diagnostics),
                            checkpoint_dir=str(ck), batch_samples=batch_samples,
                            poll_interval=0.01)

    out = fresh_db + "_b"
    Stream(cfg(out, tmp_path / "b", 1000), influx).backfill(T0 - P, T0 + 10**13)
    assert_stream_equals_batch(influx, out, model, data, whole=True)
    # the range's end scores the held-back bins with the z-score's diagnostics on too
    Stream(cfg(out + "d", tmp_path / "d", 1000, True), influx).backfill(T0 - P, T0 + 10**13)
    assert_stream_equals_batch(influx, out + "d", model, data, whole=True)
    influx.drop_database(out + "d")
    # follow: a first part, a restart from the checkpoint, then polls of a few readings
    db2 = fresh_db + "_src"
    influx.create_database(db2)
    try:
        for k, (t, v) in data.items():
            influx.write_series(db2, "temp", t[:400], {"value": v[:400]}, {"sensor": k})
        c = cfg(fresh_db + "_f", tmp_path / "f", 500)
        c.series[0].db = db2
        Stream(c, influx).follow(start_ns=T0 - P, max_polls=3)
        st = Stream(c, influx)
        for lo in range(400, 900, 50):
            for k, (t, v) in data.items():
                influx.write_series(db2, "temp", t[lo:lo + 50], {"value": v[lo:lo + 50]},
                                    {"sensor": k})
            st.follow(start_ns=T0 - P, max_polls=2)
        assert_stream_equals_batch(influx, fresh_db + "_f", model, data)
    finally:
        influx.drop_database(db2)
        influx.drop_database(fresh_db + "_f")
        influx.drop_database(out)


def test_fleet_alarms_reach_the_alert_path(influx, fresh_db, tmp_path, fleet_model, caplog):
    """The alert engine gets the fleet detector's episodes like any detector's: an alert for the
    drifting sensor, naming the detector, its score and threshold (the log destination)."""
    import logging

    from pipeline.stream import Stream, load_config

    data = scored_data()
    write(influx, fresh_db, data)
    path = tmp_path / "s.toml"
    path.write_text(f"""
[output]
db = "{fresh_db}_o"
[stream]
checkpoint_dir = "{tmp_path / 'ck'}"
batch_samples = 1000
[[series]]
name = "temp"
db = "{fresh_db}"
measurement = "temp"
fan_out = "sensor"
model = "{fleet_model}"
[alerts]
max_per_minute = 100
[[alerts.destination]]
type = "log"
""")
    stream = Stream(load_config(str(path)), influx)
    try:
        with caplog.at_level(logging.WARNING, logger="pipeline.alerts"):
            stream.backfill(T0 - P, T0 + 10**13)
            stream.close(drain_s=10)
    finally:
        influx.drop_database(fresh_db + "_o")
    fleet_msgs = [r.getMessage() for r in caplog.records if "] fleet on temp" in r.getMessage()]
    assert any(m.startswith("[CRITICAL] fleet on temp (sensor=s3): fleet_z = ")
               and ", threshold " in m for m in fleet_msgs), fleet_msgs


def test_train_cli_refuses_the_fleet_detector_without_fan_out(tmp_path, capsys):
    from pipeline.train import main

    csv = tmp_path / "s.csv"
    t = np.arange(2000) * 2.0
    csv.write_text("time_s,value\n" + "\n".join(f"{a},{20 + np.sin(a / 100):.3f}" for a in t))
    assert main(["--csv", str(csv), "--train-end", "3000", "--detectors", "zscore,fleet",
                 "--out", str(tmp_path / "m.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the fleet detector compares the keys of a fleet") and \
        "--fan-out TAG" in err and "Traceback" not in err
    assert not (tmp_path / "m.npz").exists()


def test_extreme_values_are_missing_readings():
    """docs/extremes.md: a reading beyond 1e100 (or inf) is exactly a NaN; nothing overflows."""
    data = fleet_data(seed=9)
    rng = np.random.default_rng(9)
    bad = {k: (t, v.copy()) for k, (t, v) in data.items()}
    nan = {k: (t, v.copy()) for k, (t, v) in data.items()}
    for k in data:
        at = rng.choice(len(bad[k][1]), 8, replace=False)
        bad[k][1][at] = rng.choice([1.7e308, -1.7e308, 1e300, np.nextafter(1e100, np.inf),
                                    np.inf, -np.inf], 8)
        nan[k][1][at] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = batch(detector(), bad)
    want = batch(detector(), nan)
    equal(got, want)
    assert all(not np.isinf(got[k][1]).any() for k in got)
    # a value within the bound is a reading like any other
    huge = {k: (t, v.copy()) for k, (t, v) in data.items()}
    huge["k0"][1][300:] = 1e99
    hit = batch(detector(), huge)["k0"]
    assert any(hit[2]) and np.nanmax(np.abs(hit[1])) > 1e90


def test_fit_learns_each_keys_relation_as_the_naive_reference():
    data = fleet_data(n_keys=7, n=1200, seed=11)
    keys = list(data)
    det = FleetDetector(halflife_s=10.0, streak=4, std_floor=0.001)
    det.fit([data[k] for k in keys], P, keys)
    ref, unknown = naive_fleet_relation(data, P, det.phase_ns_, det._alpha(), det._warm(), 3,
                                        0.001, fleet_mod.MIN_FIT_BINS)
    assert det.keys_ == [k for k in keys if k in ref]
    np.testing.assert_allclose(det.offsets_, [ref[k][0] for k in det.keys_], rtol=1e-9,
                               atol=1e-12)
    np.testing.assert_allclose(det.scales_, [ref[k][1] for k in det.keys_], rtol=1e-9)
    assert det.unknown_scale_ == pytest.approx(unknown, rel=1e-9)


def test_a_sensor_in_a_warm_room_is_compared_with_its_own_level():
    """A key 1.5 degrees above the others all along is normal for it; the old design flagged it
    for ever.  A key the model does not know is scored at offset 0 with the wider scale."""
    runs = _fleet_runs(6, n=6000, seed=3)
    runs[0] = (runs[0][0], runs[0][1] + 1.5)
    keys = [f"k{i}" for i in range(6)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        det = FleetDetector(halflife_s=60).fit(runs, P, keys).calibrate(runs, P, 1 / 24, keys)
    assert det.offsets_[0] == pytest.approx(1.5, abs=0.2)
    later = {k: (t + 6000 * P, v) for k, (t, v) in zip(keys, runs, strict=True)}
    got = batch(det, later)
    assert not any(got["k0"][2])
    det.keys_, det.offsets_, det.scales_ = det.keys_[1:], det.offsets_[1:], det.scales_[1:]
    assert any(batch(det, later)["k0"][2])  # unknown: at the fleet's median, it is off
